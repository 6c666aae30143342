"""The bounce corpus through the store, on SQLite and PostgreSQL: each report lands on the
right subscriber with the right change, nothing changes for an address it cannot prove,
and a second pass over the whole corpus changes nothing.

One person per report is mailed the sample issue (a real send to the file outbox, with a
VERP bounce address); each fixture of ``tests/fixtures/bounces/`` is filled with that
person's address, Message-ID and a VERP address that is genuine, forged (wrong MAC), for
another month, or absent; then every report goes through
:func:`newsletter.services.bounces.process_bounce`.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from newsletter.config import Settings
from newsletter.importers.bounce_mail import MAX_BOUNCE_BYTES
from newsletter.services import App, bounces, subscribers
from newsletter.store import open_store
from newsletter.store.models import Bounce, ConsentRecord, Subscriber
from newsletter.tokens import verp_address, verp_tag
from tests.support.bounce_corpus import corpus_names, fill
from tests.support.delivery_runs import add_many, ledger_rows, settings_of, write_send_project
from tests.support.services import SAMPLE_MONTH, WorkerOptions, plan_issue_send, run_worker

MONTH = SAMPLE_MONTH
BOUNCES = "bounces@news.example.org"

# (fixture, how {BOUNCE_TO} is filled, the person's status after, their bounces' kinds)
# verp: a genuine tag; plain: no tag; forged: right month and person, wrong MAC;
# other-month: a genuine tag for a month nothing was sent in.
ROWS: list[tuple[str, str, str, list[str]]] = [
    # proven by the VERP tag
    ("o365_mailbox_full.eml", "verp", "active", ["soft"]),
    ("exim_retry_timeout.eml", "verp", "active", ["soft"]),
    ("qmail_queue_too_long.eml", "verp", "active", ["soft"]),
    ("postfix_mailbox_full.eml", "verp", "active", ["soft"]),
    ("dsn_quoted_printable_utf8.eml", "verp", "active", ["soft"]),
    ("postfix_host_not_found.eml", "verp", "bounced", ["hard"]),
    ("sendmail_user_unknown.eml", "verp", "bounced", ["hard"]),
    ("dsn_base64_parts.eml", "verp", "bounced", ["hard"]),  # names a rewritten address
    ("dsn_forwarded_verp_only.eml", "verp", "bounced", ["hard"]),  # forwarded elsewhere
    ("hostile_unknown_charset.eml", "verp", "bounced", ["hard"]),
    ("hostile_8bit_headers.eml", "verp", "bounced", ["hard"]),
    ("postfix_message_too_large.eml", "verp", "active", ["block"]),
    ("gmail_dmarc_block.eml", "verp", "active", ["block"]),
    ("arf_yahoo.eml", "verp", "unsubscribed", ["complaint"]),
    # proven by the returned message's Message-ID (attached, headers, or quoted in text)
    ("o365_access_denied_541.eml", "plain", "bounced", ["hard"]),
    ("exchange_ndr_german_latin1.eml", "plain", "bounced", ["hard"]),
    ("dsn_global_utf8.eml", "plain", "bounced", ["hard"]),
    ("yahoo_no_account.eml", "plain", "bounced", ["hard"]),
    ("qmail_no_mailbox_here.eml", "plain", "bounced", ["hard"]),
    ("dsn_mailbox_full.eml", "plain", "active", ["soft"]),
    ("exim_over_quota_plain.eml", "plain", "active", ["soft"]),
    ("gmail_over_quota_relayed.eml", "plain", "active", ["soft"]),
    ("gmail_policy_block.eml", "plain", "active", ["block"]),
    ("arf_complaint.eml", "plain", "unsubscribed", ["complaint"]),
    # a forged or mangled tag is not trusted: the Message-ID decides
    ("o365_recipient_not_found.eml", "forged", "bounced", ["hard"]),
    ("gmail_no_such_user.eml", "forged", "bounced", ["hard"]),
    ("qmail_remote_user_unknown.eml", "forged", "bounced", ["hard"]),
    ("arf_microsoft_jmrp.eml", "forged", "unsubscribed", ["complaint"]),
    ("dsn_postfix_user_unknown.eml", "other-month", "bounced", ["hard"]),
    ("postfix_real_550_user_unknown.eml", "verp", "bounced", ["hard"]),
    ("postfix_real_452_storage_expired.eml", "forged", "active", ["soft"]),
    # proven by the failed address alone (someone we mailed)
    ("exim_failed_recipients.eml", "plain", "bounced", ["hard"]),
    ("postfix_forwarded.eml", "plain", "bounced", ["hard"]),  # by Original-Recipient
    ("arf_generic_no_original.eml", "plain", "unsubscribed", ["complaint"]),
    # unprovable: a forged tag and an address we never mailed
    ("dsn_forwarded_verp_only.eml", "forged", "active", []),
    ("hostile_stranger.eml", "plain", "active", []),
    ("forged_verp.eml", "plain", "active", []),
    # warnings, auto-replies, challenges, other reports and hostile messages: nothing
    ("dsn_delayed_warning.eml", "verp", "active", []),
    ("postfix_real_452_delayed.eml", "verp", "active", []),
    ("gmail_delay_warning.eml", "verp", "active", []),
    ("sendmail_warning_4h.eml", "verp", "active", []),
    ("arf_auth_failure.eml", "verp", "active", []),
    ("autoreply_vacation.eml", "verp", "active", []),
    ("autoreply_x_autoreply.eml", "verp", "active", []),
    ("autoreply_precedence.eml", "verp", "active", []),
    ("autoreply_suppress_header.eml", "verp", "active", []),
    ("autoreply_quotes_undeliverable.eml", "verp", "active", []),
    ("autoreply_subject_only.eml", "verp", "active", []),
    ("exchange_oof.eml", "verp", "active", []),
    ("challenge_response_tmda.eml", "verp", "active", []),
    ("challenge_response_verify.eml", "verp", "active", []),
    ("garbage.eml", "verp", "active", []),
    ("hostile_no_dsn_part.eml", "verp", "active", []),
    ("hostile_garbage_fields.eml", "verp", "active", []),
    ("hostile_bad_base64.eml", "verp", "active", []),
    ("hostile_nested_wrapped.eml", "verp", "active", []),
]


def _person(i: int) -> str:
    return f"c{i:02d}@example.org"


@pytest.fixture
def mailed(isolated_env: Path, store_url: str) -> Settings:
    """One person per row, each sent the sample issue through the outbox."""
    project = write_send_project(
        isolated_env / "project",
        store_url,
        "outbox:///outbox",
        extra=f'bounce_address = "{BOUNCES}"\n',
    )
    settings = settings_of(project)
    add_many(settings, {_person(i): (None, None) for i in range(len(ROWS))}, isolated_env)
    plan_issue_send(settings, MONTH)
    result = run_worker(settings, WorkerOptions(months=[MONTH]))
    assert result is not None
    assert len(list((project / "outbox").glob("*.eml"))) == len(ROWS)
    return settings


def _report(settings: Settings, i: int, name: str, mode: str) -> bytes:
    rcpt = _person(i)
    with App(settings) as app:
        sub_id = subscribers.get_subscriber(app, rcpt).id
    tag = {
        "verp": lambda: verp_tag(settings, MONTH, sub_id),
        "forged": lambda: f"{MONTH.replace('-', '')}-{sub_id}-0123456789",
        "other-month": lambda: verp_tag(settings, "2026-10", sub_id),
        "plain": lambda: "",
    }[mode]()
    message_id = ledger_rows(settings, MONTH)[rcpt].message_id
    assert message_id
    to = verp_address(BOUNCES, tag) if tag else BOUNCES
    return fill(name, bounce_to=to, rcpt=rcpt, message_id=message_id, n=i)


def _dump(settings: Settings) -> dict[str, list[Any]]:
    """Everything a report may change: people, their consent log, their bounces."""
    with open_store(settings) as store, store.transaction() as s:
        return {
            "subscribers": sorted(s.execute(select(Subscriber.email, Subscriber.status)).all()),
            "events": sorted(
                s.execute(
                    select(
                        ConsentRecord.subscriber_id,
                        ConsentRecord.event,
                        ConsentRecord.source,
                        ConsentRecord.detail,
                    )
                ).all(),
                key=repr,
            ),
            "bounces": sorted(
                s.execute(
                    select(
                        Bounce.subscriber_id,
                        Bounce.delivery_id,
                        Bounce.kind,
                        Bounce.code,
                        Bounce.status,
                        Bounce.diagnostic,
                        Bounce.report_id,
                        Bounce.message_id,
                        Bounce.source,
                    )
                ).all(),
                key=repr,
            ),
        }


def _hostile(settings: Settings) -> list[bytes]:
    """Reports made here: 200 recipients (all our people among them), a huge attachment."""
    groups = "".join(
        f"Final-Recipient: rfc822; {a}\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
        for a in [_person(i) for i in range(len(ROWS))]
        + [f"x{i}@elsewhere.example" for i in range(200 - len(ROWS))]
    )
    head = (
        f"From: MAILER-DAEMON@mx.example.net\r\nTo: {BOUNCES}\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx\r\n\r\n"
    )
    many = (head + groups + "--b--\r\n").encode()
    tag = verp_tag(settings, MONTH, 1)
    huge = (
        head.replace(BOUNCES, verp_address(BOUNCES, tag))
        + f"Final-Recipient: rfc822; {_person(0)}\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
        + "--b\r\nContent-Type: application/octet-stream\r\n"
        + "Content-Transfer-Encoding: base64\r\n\r\n"
        + "QUFB" * (MAX_BOUNCE_BYTES // 4)
        + "\r\n--b--\r\n"
    ).encode()
    return [many, huge]


def test_the_corpus_lands_on_the_right_people_once(mailed: Settings) -> None:
    settings = mailed
    assert {name for name, *_ in ROWS} == set(corpus_names())
    reports = [_report(settings, i, name, mode) for i, (name, mode, _, _) in enumerate(ROWS)]
    hostile = _hostile(settings)
    before = _dump(settings)
    assert before["bounces"] == [] and {status for _, status in before["subscribers"]} == {"active"}
    with App(settings) as app:
        first = [bounces.process_bounce(app, raw) for raw in reports]
        assert [bounces.process_bounce(app, raw)[0] for raw in hostile] == ["unknown", "too-big"]
        for i, (name, _, status, kinds) in enumerate(ROWS):
            view, found = bounces.show_bounces(app, _person(i))
            assert (name, view.status, [b.kind for b in found]) == (name, status, kinds)
            outcome, marked = first[i]
            assert (outcome == "recorded") == bool(kinds), (name, outcome)
            assert marked == ([_person(i)] if status != "active" else []), name
            if kinds and kinds != ["complaint"]:
                assert found[0].month == MONTH and found[0].diagnostic
        # The consent log says why, with the evidence.
        view = subscribers.get_subscriber(app, _person(5), history=True)
        [event] = [e for e in view.events if e.event == "bounced"]
        assert event.source == "delivery" and "5.4.4" in (event.detail or "")
    after_first = _dump(settings)
    # Nobody but the people the reports prove changed.
    changed = {email for email, status in after_first["subscribers"] if status != "active"}
    assert changed == {_person(i) for i, row in enumerate(ROWS) if row[2] != "active"}
    # A second pass over everything changes nothing.
    with App(settings) as app:
        again = [bounces.process_bounce(app, raw) for raw in reports + hostile]
    assert {outcome for outcome, _ in again} <= {
        "already",
        "autoreply",
        "unknown",
        "warning",
        "too-big",
    }
    assert all(marked == [] for _, marked in again)
    assert _dump(settings) == after_first


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 2**32 - 1), row=st.integers(0, len(ROWS) - 1))
def test_mutated_reports_never_stop_process_bounce(mailed: Settings, seed: int, row: int) -> None:
    """Truncated, byte-flipped or header-deleted reports: whatever they are, process_bounce
    answers, and a report it cannot read proves nothing about anyone."""
    name, mode, _, _ = ROWS[row]
    raw = bytearray(_report(mailed, row, name, mode))
    rng = random.Random(seed)
    how = rng.choice(["truncate", "flip", "delete-header"])
    if how == "truncate":
        del raw[rng.randrange(len(raw)) :]
    elif how == "flip":
        for _ in range(rng.randint(1, 30)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
    else:
        head, sep, body = bytes(raw).partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        del lines[rng.randrange(len(lines))]
        raw = bytearray(b"\r\n".join(lines) + sep + body)
    with App(mailed) as app:
        outcome, marked = bounces.process_bounce(app, bytes(raw))
    assert outcome in ("recorded", "already", "autoreply", "unknown", "warning", "too-big")
    assert set(marked) <= {_person(row)}
