"""DSNs a real Postfix wrote (``tests/fixtures/bounces/postfix_real_*.eml``), read by the
parser and recorded by the store, without Postfix.

The fixtures come from the end-to-end test ``tests/delivery/test_postfix_dsn.py`` (run
with ``NEWSLETTER_TEST_SAVE_POSTFIX_DSNS=FOLDER``): a 550 at RCPT, a 452 that Postfix
retried until its queue lifetime ran out ("expired, returned to sender": ``Action:
failed`` with a 4.x.x status), and the "delayed" warning sent before that. The first two
return the whole digest as Postfix sends it back (``message/rfc822``), the warning its
headers only.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.importers.bounce_mail import parse_bounce
from newsletter.services import App, bounces, subscribers
from newsletter.tokens import verp_address, verp_tag
from tests.support.delivery_runs import ledger_rows, settings_of
from tests.support.services import (
    SAMPLE_MONTH,
    SAMPLE_PEOPLE,
    WorkerOptions,
    add_people,
    plan_issue_send,
    run_worker,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bounces"
BOUNCES = "bounces@bounces.example.org"
MONTH = SAMPLE_MONTH
#: fixture -> (kind the parser gives, SMTP code, enhanced status)
REAL = {
    "postfix_real_550_user_unknown.eml": ("hard", 550, "5.1.1"),
    "postfix_real_452_storage_expired.eml": ("soft", 452, "4.3.1"),
    "postfix_real_452_delayed.eml": (None, 452, "4.3.1"),
}


def _fill(name: str, bounce_to: str, rcpt: str, message_id: str) -> bytes:
    text = (FIXTURES / name).read_bytes().decode("latin-1")
    for key, value in {
        "{BOUNCE_TO}": bounce_to,
        "{RCPT}": rcpt,
        "{MESSAGE_ID}": message_id,
    }.items():
        text = text.replace(key, value)
    return text.encode("latin-1")


def test_every_real_fixture_is_known() -> None:
    assert {p.name for p in FIXTURES.glob("postfix_real_*.eml")} == set(REAL)


@pytest.mark.parametrize("name", sorted(REAL))
def test_a_real_postfix_dsn_is_read(name: str) -> None:
    kind, code, status = REAL[name]
    tag = "202611-7-0123456789"
    message_id = "<2026-11.7.0a1b2c3d@news.example.org>"
    raw = _fill(name, f"bounces+{tag}@bounces.example.org", "ann@example.org", message_id)
    parsed = parse_bounce(raw)
    assert parsed.what == "dsn"
    [r] = parsed.recipients
    assert (r.address, r.kind, r.code) == ("ann@example.org", kind, code)
    assert status in r.diagnostic
    assert parsed.verp_tag == tag  # from the To header Postfix wrote
    assert parsed.original_message_id == message_id  # from the returned message/headers
    assert parsed.original == ("2026-11", 7)
    assert parsed.report_id.endswith("@postfix-test.example.org>")


def test_a_give_up_reads_as_a_soft_bounce_with_the_last_reply() -> None:
    """Postfix gives a 4xx up after maximal_queue_lifetime: a failure, not a warning."""
    raw = _fill("postfix_real_452_storage_expired.eml", BOUNCES, "ann@example.org", "<x@y>")
    [r] = parse_bounce(raw).recipients
    assert r.kind == "soft"
    assert r.diagnostic == "gave up after retries: 452 4.3.1 Insufficient system storage"


def test_real_dsns_are_recorded_once_against_the_right_person(send_project: Path) -> None:
    with open(send_project / "newsletter.toml", "a") as f:
        f.write(f'bounce_address = "{BOUNCES}"\n')
    settings = settings_of(send_project)
    add_people(settings, {a: topics for a, (topics, _) in SAMPLE_PEOPLE.items()})
    plan_issue_send(settings, MONTH)
    run_worker(settings, WorkerOptions(months=[MONTH]))
    rows = ledger_rows(settings, MONTH)
    dead, full = "pdt@example.org", "efficacy@example.org"
    with App(settings) as app:
        dead_id = subscribers.get_subscriber(app, dead).id
        full_id = subscribers.get_subscriber(app, full).id
    dead_verp = verp_address(BOUNCES, verp_tag(settings, MONTH, dead_id))
    full_verp = verp_address(BOUNCES, verp_tag(settings, MONTH, full_id))
    reports = [
        # found by the VERP tag
        _fill("postfix_real_550_user_unknown.eml", dead_verp, dead, str(rows[dead].message_id)),
        # the plain bounce address: found by the returned message's Message-ID
        _fill("postfix_real_452_storage_expired.eml", BOUNCES, full, str(rows[full].message_id)),
        _fill("postfix_real_452_delayed.eml", full_verp, full, str(rows[full].message_id)),
    ]
    with App(settings) as app:
        got = [bounces.process_bounce(app, raw, "smtp-in") for raw in reports]
        assert got == [("recorded", [dead]), ("recorded", []), ("warning", [])]
        again = [bounces.process_bounce(app, raw, "smtp-in") for raw in reports]
        assert again == [("already", []), ("already", []), ("warning", [])]
        status = {a: subscribers.get_subscriber(app, a).status for a in SAMPLE_PEOPLE}
        assert status == {a: "bounced" if a == dead else "active" for a in SAMPLE_PEOPLE}
        [hard] = bounces.show_bounces(app, dead)[1]
        assert (hard.kind, hard.code, hard.status, hard.month) == ("hard", 550, "5.1.1", MONTH)
        assert "User unknown in virtual mailbox table" in hard.diagnostic
        [soft] = bounces.show_bounces(app, full)[1]
        assert (soft.kind, soft.code, soft.status, soft.month) == ("soft", 452, "4.3.1", MONTH)
        assert soft.message_id == rows[full].message_id
        assert len(bounces.list_bounces(app)) == 2
