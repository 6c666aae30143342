"""Real bounces, end to end: a send through a real Postfix whose relay refuses some
recipients, the RFC 3464 DSNs Postfix writes back to the VERP address, received by a real
``newsletter bounces serve`` process, and the next month's plan.

The chain (``tests/support/postfix.py`` for the instance)::

    newsletter send --> Postfix (private instance) --relayhost--> fault server
                          |   550 5.1.1 for HARD, 452 for SOFT, 250 for the rest
                          +--DSNs to bounces+TAG@bounces.example.org--> bounces serve
                          +--a copy of each DSN (header_checks BCC)----> recorder

Postfix bounces a 550 at once. A 452 is retried every second; the instance sends a
"delayed" DSN (``delay_warning_time``) and gives the message up after a few seconds
(``maximal_queue_lifetime``): an "expired" DSN with ``Action: failed`` and the 4.x.x
status. The hard bounces must mark exactly their people ``bounced`` with the evidence;
the give-ups are soft bounces (a score); warnings change nothing; the same DSNs again
change nothing; the next month's plan leaves out exactly the hard bounces.

``NEWSLETTER_TEST_SAVE_POSTFIX_DSNS=FOLDER`` also writes one DSN of each kind, templated
like the hand-written ones (``{BOUNCE_TO}``, ``{RCPT}``, ``{MESSAGE_ID}``), into FOLDER:
how ``tests/fixtures/bounces/postfix_real_*.eml`` were made.
"""

from __future__ import annotations

import os
import re
import smtplib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from newsletter.services import App, bounces, sends, subscribers
from newsletter.store.ledger import DeliveryRow
from tests.plugin import SAMPLE_ISSUES, require_or_skip
from tests.support import postfix
from tests.support.delivery_runs import (
    NewsletterProcess,
    bulk_people,
    ledger_rows,
    settings_of,
    write_send_project,
)
from tests.support.fault_smtp import FaultSmtpServer
from tests.support.services import SAMPLE_MONTH, add_people
from tests.support.smtpserver import SmtpTestServer, free_port

pytestmark = pytest.mark.slow

MONTH = SAMPLE_MONTH
NEXT = "2026-12"
BOUNCE_DOMAIN = "bounces.example.org"
COPIES = "dsn-copies@copies.test"
PEOPLE = bulk_people(10)  # p0005 has no matching topic: planned as skipped, never sent
#: What the relay answers at RCPT, for the people it refuses (everyone else: 250).
HARD = {
    "p0001@example.org": "550 5.1.1 <p0001@example.org>: Recipient address rejected: "
    "User unknown in virtual mailbox table",
    "p0006@example.org": "550 5.1.1 <p0006@example.org>: Recipient address rejected: "
    "User unknown in virtual mailbox table",
}
SOFT = {
    "p0002@example.org": "452 4.2.2 <p0002@example.org>: Mailbox full",
    "p0007@example.org": "452 4.3.1 Insufficient system storage",
}
#: Generous bounds for a loaded two-core machine; the test waits on conditions, these
#: only stop it from hanging.
SEND_BOUND = 180.0
DSN_BOUND = 120.0


@dataclass(frozen=True)
class Dsn:
    """One DSN the recorder got a copy of, read with plain regular expressions (not with
    the parser under test)."""

    raw: bytes
    to: str
    recipient: str
    action: str
    status: str


def _dsn(raw: bytes) -> Dsn:
    text = raw.decode("latin-1")

    def field(name: str) -> str:
        m = re.search(rf"^{name}:[ \t]*(.+)$", text, re.MULTILINE | re.IGNORECASE)
        return m.group(1).strip() if m else ""

    return Dsn(
        raw=raw,
        to=field("To"),
        recipient=field("Final-Recipient").split(";", 1)[-1].strip().lower(),
        action=field("Action").lower(),
        status=field("Status"),
    )


def _wait(condition: Callable[[], bool], bound: float, explain: Callable[[], str]) -> None:
    deadline = time.monotonic() + bound
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting after {bound} s: {explain()}")
        time.sleep(0.2)


@dataclass
class Chain:
    project: Path
    postfix: postfix.PostfixInstance
    relay: FaultSmtpServer
    recorder: SmtpTestServer
    serve: NewsletterProcess
    receiver_port: int

    def dsns(self) -> list[Dsn]:
        return [_dsn(m.data) for m in list(self.recorder.messages)]


@pytest.fixture
def chain(
    isolated_env: Path, store_url: str, fault_smtp: FaultSmtpServer, smtp_server: SmtpTestServer
) -> Iterator[Chain]:
    reason = postfix.missing()
    if reason is not None:
        require_or_skip("NEWSLETTER_REQUIRE_POSTFIX", reason)
    receiver_port = free_port()
    instance = postfix.PostfixInstance(
        ("127.0.0.1", fault_smtp.port),
        routes={BOUNCE_DOMAIN: receiver_port, "copies.test": smtp_server.port},
        bcc={BOUNCE_DOMAIN: COPIES},
        lifetime=4,
        delay_warning=1,
    ).start()
    serve: NewsletterProcess | None = None
    try:
        project = write_send_project(
            isolated_env,
            store_url,
            instance.url,
            f'bounce_address = "bounces@{BOUNCE_DOMAIN}"\n',
        )
        # Next month's issue: the sample one, ready, under the next month.
        text = (SAMPLE_ISSUES / f"{MONTH}.md").read_text()
        (project / "issues" / f"{NEXT}.md").write_text(
            text.replace(f"month: {MONTH}", f"month: {NEXT}")
        )
        add_people(settings_of(project), {a: topics for a, (topics, _) in PEOPLE.items()})
        serve = NewsletterProcess(project, "bounces", "serve", "--port", str(receiver_port))
        running = serve
        _wait(
            lambda: "receiving bounces on" in running.output() or running.poll() is not None,
            60,
            running.output,
        )
        assert serve.poll() is None, serve.output()
        yield Chain(project, instance, fault_smtp, smtp_server, serve, receiver_port)
    finally:
        if serve is not None:
            serve.terminate(30)
            if serve.poll() is None:
                serve.kill()
        instance.stop()


def _statuses(app: App) -> dict[str, str]:
    return {a: subscribers.get_subscriber(app, a).status for a in PEOPLE}


def test_postfix_dsns_bounce_exactly_the_refused_addresses(chain: Chain) -> None:
    settings = settings_of(chain.project)
    for address, reply in {**HARD, **SOFT}.items():
        chain.relay.refuse("rcpt", reply, recipient=address, times=None)
    sent_to = {a for a, (_, want) in PEOPLE.items() if want is not None}

    send = NewsletterProcess(chain.project, "send", MONTH, "--yes")
    assert send.wait(SEND_BOUND) == 0, send.output()
    rows = ledger_rows(settings, MONTH)
    # Postfix took every message: the refusals come later, by mail.
    assert {a for a, r in rows.items() if r.status == "sent"} == sent_to

    def given_up(d: Dsn) -> bool:
        return d.action == "failed"

    def settled() -> bool:
        # Every refused person's final DSN is here, and Postfix holds nothing more: each
        # DSN reached the receiver too (it answers 250 only once it has recorded one).
        final = {d.recipient for d in chain.dsns() if given_up(d)}
        return final == set(HARD) | set(SOFT) and not chain.postfix.queued()

    _wait(
        settled,
        DSN_BOUND,
        lambda: (
            f"DSNs {[(d.recipient, d.action) for d in chain.dsns()]}, queue "
            f"{chain.postfix.queue_json()}\nserve: {chain.serve.output()}\n"
            f"postfix: {chain.postfix.log()[-4000:]}"
        ),
    )
    dsns = chain.dsns()
    final = [d for d in dsns if given_up(d)]
    warnings = [d for d in dsns if d.action == "delayed"]
    assert len(final) == len(HARD) + len(SOFT)  # one each, no duplicates
    assert {d.recipient: d.status for d in final} == {
        **{a: "5.1.1" for a in HARD},
        **{a: reply.split()[1] for a, reply in SOFT.items()},
    }
    # A warning comes before the give-up, at most one per message (delay_warning_time).
    assert {d.recipient for d in warnings} <= set(SOFT) and len(warnings) <= len(SOFT)
    assert all(d.to.startswith("bounces+") for d in dsns)  # each back to its VERP address
    assert chain.serve.poll() is None, chain.serve.output()

    with App(settings) as app:
        after = _statuses(app)
        assert after == {a: "bounced" if a in HARD else "active" for a in PEOPLE}
        for address, reply in HARD.items():
            [hard] = bounces.show_bounces(app, address)[1]
            assert (hard.kind, hard.code, hard.status, hard.month, hard.source) == (
                "hard",
                550,
                "5.1.1",
                MONTH,
                "smtp-in",
            )
            assert hard.message_id == rows[address].message_id
            assert hard.diagnostic == reply  # the relay's words, as Postfix reported them
            events = subscribers.get_subscriber(app, address, history=True).events
            [event] = [e for e in events if e.event == "bounced"]
            assert event.source == "delivery" and event.detail is not None
            assert event.detail == f"hard bounce (issue {MONTH}): {reply}"
        for address, reply in SOFT.items():
            [soft] = bounces.show_bounces(app, address)[1]
            assert (soft.kind, soft.code, soft.status) == ("soft", 452, reply.split()[1])
            # Mailbox full is soft by its status; 4.3.1 is soft because Postfix gave up.
            assert soft.diagnostic.endswith(reply)
        recorded = bounces.list_bounces(app)
        assert sorted(b.email for b in recorded) == sorted([*HARD, *SOFT])

    # The same DSNs again, as a relay retrying would hand them over: nothing changes.
    with smtplib.SMTP("127.0.0.1", chain.receiver_port, timeout=60) as relay:
        relay.ehlo()
        for d in dsns:
            relay.mail("")
            code, _ = relay.rcpt(d.to)
            assert code == 250
            code, said = relay.data(d.raw)
            assert code == 250 and said.split()[-1] in (b"already", b"warning"), said
            relay.rset()
    with App(settings) as app:
        assert _statuses(app) == after
        assert len(bounces.list_bounces(app)) == len(recorded)
        # Next month: everyone who gets it but the hard bounces (soft ones stay).
        sends.plan(app, NEXT)
    planned = ledger_rows(settings, NEXT)
    assert {a for a, r in planned.items() if r.status == "pending"} == sent_to - set(HARD)
    assert not set(HARD) & set(planned)

    folder = os.environ.get("NEWSLETTER_TEST_SAVE_POSTFIX_DSNS")
    if folder:
        _save_fixtures(Path(folder), dsns, rows)


def _save_fixtures(folder: Path, dsns: list[Dsn], rows: dict[str, DeliveryRow]) -> None:
    """One DSN of each kind, templated like the hand-written fixtures."""
    picks = {
        "postfix_real_550_user_unknown.eml": ("failed", "5.1.1"),
        "postfix_real_452_storage_expired.eml": ("failed", "4.3.1"),
        "postfix_real_452_delayed.eml": ("delayed", "4.3.1"),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, (action, status) in picks.items():
        found = [d for d in dsns if (d.action, d.status) == (action, status)]
        if not found:
            continue  # no warning this time (see the test)
        d = found[0]
        text = d.raw.decode("latin-1")
        for value, key in (
            (d.to, "{BOUNCE_TO}"),
            (rows[d.recipient].message_id, "{MESSAGE_ID}"),
            (d.recipient, "{RCPT}"),
        ):
            text = text.replace(value, key)
        (folder / name).write_bytes(text.replace("\r\n", "\n").encode("latin-1"))
