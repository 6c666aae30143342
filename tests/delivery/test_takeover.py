"""Claims are leases: a slow but live worker keeps its rows, a silent one gives them up.

Real ``newsletter worker`` processes against the aiosmtpd test server, on SQLite and
PostgreSQL. Worker A sends slowly. Its claims are made to look an hour old (the old rule
took rows over after 15 minutes, and a second worker then sent them again while A went
on): worker B must leave them alone, because A renews its lease. Then A is frozen
(SIGSTOP) and its lease made to run out: B takes the rows over and finishes the send.
A, woken up, finds its lease gone and stops; the outcome of the message it had on the
wire is refused (logged), never counted twice.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from newsletter.config import load_settings
from tests.support.delivery_runs import NewsletterProcess, ledger_rows
from tests.support.services import SAMPLE_MONTH, add_people, plan_issue_send

pytestmark = pytest.mark.slow

PEOPLE = 80  # at 0.3 s a message, A is still sending while B starts on a loaded machine


def _wait_for(condition, what: str, limit: float = 120.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _sql(url: str, statement: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text(statement))
    finally:
        engine.dispose()


def test_a_live_worker_keeps_its_claims_and_a_silent_one_is_taken_over(
    send_project: Path, smtp_server
) -> None:
    settings = load_settings(send_project / "newsletter.toml", environ={})
    url = settings.database_url
    add_people(settings, {f"p{i:02d}@example.org": "Training" for i in range(PEOPLE)})
    plan_issue_send(settings, SAMPLE_MONTH)
    smtp_server.delay_all = 0.3  # a slow, rate-limited send
    a = NewsletterProcess(send_project, "worker", "--once", "--workers", "1")
    try:
        _wait_for(lambda: len(smtp_server.messages) >= 3, "worker A to send")
        # Make A's claims look an hour old: only a lapsed lease may hand them over.
        _sql(url, "UPDATE deliveries SET claimed_at = '2000-01-01 00:00:00'")
        b = NewsletterProcess(send_project, "worker", "--once")
        assert b.wait(120) == 0, b.output()
        assert "back in the queue" not in b.output(), b.output()
        assert "sent 0," in b.output(), b.output()

        # A goes silent: frozen, and its lease runs out.
        os.kill(a.pid, signal.SIGSTOP)
        on_wire_before = len(smtp_server.messages)
        _sql(url, "UPDATE worker_leases SET expires_at = '2000-01-01 00:00:00'")
        smtp_server.delay_all = 0
        c = NewsletterProcess(send_project, "worker", "--once")
        assert c.wait(120) == 0, c.output()
        assert "back in the queue" in c.output(), c.output()
        os.kill(a.pid, signal.SIGCONT)
        a.wait(120)
        assert a.poll() is not None, "worker A did not stop after losing its lease"
    finally:
        os.kill(a.pid, signal.SIGCONT) if a.poll() is None else None
        a.kill()
    out = a.output()
    assert "Traceback" not in out, out
    assert "lease" in out, out  # it says why it stopped
    got = Counter(m.rcpt_tos[0] for m in smtp_server.messages)
    everyone = {f"p{i:02d}@example.org" for i in range(PEOPLE)}
    assert set(got) == everyone
    twice = [r for r, n in got.items() if n > 1]
    # At most the one message A had on the wire when it froze went out twice.
    assert len(twice) <= 1, twice
    assert on_wire_before >= 3
    rows = ledger_rows(settings, SAMPLE_MONTH)
    mine = {e: r for e, r in rows.items() if e in everyone}
    assert {r.status for r in mine.values()} == {"sent"}
    # Each row counts one attempt: a late outcome of A was refused, not added.
    assert {r.attempts for r in mine.values()} == {1}, {e: r.attempts for e, r in mine.items()}
    if twice:
        assert "did not record" in out, out
