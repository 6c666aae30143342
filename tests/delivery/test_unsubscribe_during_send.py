"""An unsubscribe is final the moment it returns, also in the middle of a live send.

A real ``newsletter send`` process sends to a few hundred people through the aiosmtpd
test server, which notes when each message went on the wire (its MAIL FROM). Meanwhile
this test unsubscribes people just ahead of the send, three ways: the service call the
CLI makes, the RFC 8058 one-click POST and the preference page's button. Each call's
return time is compared with the server's log: no message to a person may start after
their unsubscribe returned. Most of those people are already claimed by the worker
(``sending``) when they leave, so the test exercises the fence, not just the queue.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from newsletter.config import load_settings
from newsletter.services import App, subscribers
from tests.support.services import SAMPLE_MONTH, add_people

pytestmark = pytest.mark.slow

PEOPLE = 360
LEAVERS = range(30, PEOPLE, 10)  # every tenth person, unsubscribed while the send runs


def _wait_for(condition, what: str, limit: float = 120.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def _delivery_status(app: App, email: str) -> str:
    rows = subscribers.subscriber_record(app, email).deliveries
    return rows[0].status if rows else "none"


def test_no_message_starts_after_an_unsubscribe_returned(send_project: Path, smtp_server) -> None:
    from newsletter.web import create_app

    settings = load_settings(send_project / "newsletter.toml", environ={})
    add_people(settings, {f"p{i:03d}@example.org": "Training" for i in range(PEOPLE)})
    smtp_server.delay_all = 0.02  # about 100 messages a second over two connections
    proc = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "send", SAMPLE_MONTH, "--yes", "--workers", "2"],
        cwd=send_project,
        env={**os.environ, "NEWSLETTER_DATABASE_URL": settings.database_url},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    web = create_app(settings)
    web.config["TESTING"] = True
    client = web.test_client()
    returned: dict[str, float] = {}
    claimed_when_left = 0
    try:
        _wait_for(lambda: len(smtp_server.messages) >= 20, "the send to start")
        with App(settings) as app:
            for n, i in enumerate(LEAVERS):
                email = f"p{i:03d}@example.org"
                # Stay just ahead of the send: the person is claimed, not yet sent.
                _wait_for(
                    lambda i=i: len(smtp_server.messages) >= i - 25 or proc.poll() is not None,
                    "the send to come near",
                )
                if _delivery_status(app, email) == "sending":
                    claimed_when_left += 1
                sub = subscribers.get_subscriber(app, email)
                way = n % 3
                if way == 0:  # what `newsletter subscribers unsubscribe` calls
                    subscribers.unsubscribe(app, email, source="cli")
                elif way == 1:  # the List-Unsubscribe-Post one-click POST
                    from newsletter.tokens import make_token

                    token = make_token(settings, "unsubscribe", sub.id)
                    start = time.monotonic()
                    got = client.post(
                        f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"}
                    )
                    assert got.status_code == 200
                    assert time.monotonic() - start < 5.0, "one-click must not wait for the send"
                else:  # the preference page's button
                    from newsletter.tokens import make_token

                    token = make_token(settings, "preferences", sub.id)
                    page = client.get(f"/preferences/{token}")
                    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
                    assert csrf, page.text[:500]
                    got = client.post(
                        f"/preferences/{token}",
                        data={"action": "unsubscribe", "csrf_token": csrf.group(1)},
                    )
                    assert got.status_code == 200, got.text[:500]
                returned[email] = time.monotonic()
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
        web.extensions["newsletter"].close()
    assert proc.returncode == 0, out
    assert len(returned) == len(LEAVERS)
    late = [
        (m.rcpt_tos[0], round(m.started - returned[m.rcpt_tos[0]], 3))
        for m in smtp_server.messages
        if m.rcpt_tos[0] in returned and m.started > returned[m.rcpt_tos[0]]
    ]
    assert late == [], f"messages started after the unsubscribe returned: {late}"
    # The fence was exercised: most leavers were held by the worker when they left.
    assert claimed_when_left >= len(LEAVERS) // 2, claimed_when_left
    # Everyone else got exactly one message.
    got = [m.rcpt_tos[0] for m in smtp_server.messages]
    stayed = {f"p{i:03d}@example.org" for i in range(PEOPLE)} - set(returned)
    assert sorted(r for r in got if r in stayed) == sorted(stayed)
