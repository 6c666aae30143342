"""The bounce corpus, parsed: every fixture of ``tests/fixtures/bounces/`` gives the kind,
address and status its server's report means, and hostile messages are set aside.

Fast (no store): :func:`newsletter.importers.bounce_mail.parse_bounce` only. What the
store does with each report is ``tests/services/test_bounce_corpus_store.py``.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.importers.bounce_mail import (
    MAX_BOUNCE_BYTES,
    MAX_REPORT_RECIPIENTS,
    ParsedBounce,
    parse_bounce,
)
from tests.support.bounce_corpus import corpus_names, fill, kind_of

TAG = "202611-17-3fa9c2d1e0"
BOUNCE_TO = f"bounces+{TAG}@news.example.org"
RCPT = "reader@example.org"
MESSAGE_ID = "<2026-11.17.abcdef0123456789@example.org>"

# fixture -> (kind, the address it names, enhanced status, SMTP code it quotes)
EXPECTED: dict[str, tuple[str, str | None, str | None, int | None]] = {
    # Office 365 / Exchange
    "o365_recipient_not_found.eml": ("hard", RCPT, "5.1.10", 550),
    "o365_access_denied_541.eml": ("hard", RCPT, "5.4.1", 550),
    "o365_mailbox_full.eml": ("soft", RCPT, "5.2.2", 554),
    "exchange_ndr_german_latin1.eml": ("hard", RCPT, "5.1.1", 550),
    "exchange_oof.eml": ("autoreply", None, None, None),
    # Gmail (its own reports, and Postfix relaying its replies)
    "gmail_no_such_user.eml": ("hard", RCPT, "5.1.1", 550),
    "gmail_over_quota_relayed.eml": ("soft", RCPT, "4.2.2", 452),
    "gmail_delay_warning.eml": ("warning", RCPT, "4.2.2", 452),
    "gmail_policy_block.eml": ("block", RCPT, "5.7.1", 550),
    "gmail_dmarc_block.eml": ("block", RCPT, "5.7.26", 550),
    # Yahoo and qmail (QSBMF, no DSN)
    "yahoo_no_account.eml": ("hard", RCPT, None, 554),
    "qmail_remote_user_unknown.eml": ("hard", RCPT, "5.1.1", 550),
    "qmail_no_mailbox_here.eml": ("hard", RCPT, "5.1.1", None),
    "qmail_queue_too_long.eml": ("soft", RCPT, "4.3.0", 451),
    # Exim
    "exim_failed_recipients.eml": ("hard", RCPT, None, 550),
    "exim_retry_timeout.eml": ("soft", RCPT, "5.0.0", None),
    "exim_over_quota_plain.eml": ("soft", RCPT, "5.2.2", 552),
    # Sendmail
    "sendmail_user_unknown.eml": ("hard", RCPT, "5.1.1", 550),
    "sendmail_warning_4h.eml": ("warning", RCPT, "4.4.1", None),
    # Postfix
    "dsn_postfix_user_unknown.eml": ("hard", RCPT, "5.1.1", 550),
    "postfix_mailbox_full.eml": ("soft", RCPT, "5.2.2", None),
    "postfix_host_not_found.eml": ("hard", RCPT, "5.4.4", None),
    "postfix_message_too_large.eml": ("block", RCPT, "5.3.4", 552),
    "dsn_delayed_warning.eml": ("warning", RCPT, "4.4.1", None),
    "dsn_mailbox_full.eml": ("soft", RCPT, "5.2.2", 552),
    # written by a real Postfix (tests/delivery/test_postfix_dsn.py regenerates them)
    "postfix_real_550_user_unknown.eml": ("hard", RCPT, "5.1.1", 550),
    "postfix_real_452_storage_expired.eml": ("soft", RCPT, "4.3.1", 452),
    "postfix_real_452_delayed.eml": ("warning", RCPT, "4.3.1", 452),
    # Forwarding: Original-Recipient is the address we mailed; without it, the new one.
    "postfix_forwarded.eml": ("hard", RCPT, "5.1.1", 550),
    "dsn_forwarded_verp_only.eml": ("hard", "someone.else-1@forward.example", "5.1.1", 550),
    # Encodings and charsets
    "dsn_base64_parts.eml": ("hard", "reader.b64@example.net", "5.1.1", 550),
    "dsn_quoted_printable_utf8.eml": ("soft", RCPT, "5.2.2", 552),
    "dsn_global_utf8.eml": ("hard", RCPT, "5.1.1", 550),
    # Complaints (ARF); a DMARC failure report is not one
    "arf_complaint.eml": ("complaint", RCPT, None, None),
    "arf_yahoo.eml": ("complaint", RCPT, None, None),
    "arf_microsoft_jmrp.eml": ("complaint", RCPT, None, None),
    "arf_generic_no_original.eml": ("complaint", RCPT, None, None),
    "arf_auth_failure.eml": ("unknown", None, None, None),
    # Auto-replies and challenge-response: recognised, never counted
    "autoreply_vacation.eml": ("autoreply", None, None, None),
    "autoreply_x_autoreply.eml": ("autoreply", None, None, None),
    "autoreply_precedence.eml": ("autoreply", None, None, None),
    "autoreply_suppress_header.eml": ("autoreply", None, None, None),
    "autoreply_quotes_undeliverable.eml": ("autoreply", None, None, None),
    "autoreply_subject_only.eml": ("autoreply", None, None, None),
    "challenge_response_tmda.eml": ("autoreply", None, None, None),
    "challenge_response_verify.eml": ("autoreply", None, None, None),
    # Hostile: set aside, or read for what it provably says
    "garbage.eml": ("unknown", None, None, None),
    "forged_verp.eml": ("hard", "nobody-we-know@example.org", "5.1.1", None),
    "hostile_no_dsn_part.eml": ("unknown", None, None, None),
    "hostile_garbage_fields.eml": ("unknown", None, None, None),
    "hostile_bad_base64.eml": ("unknown", None, None, None),
    "hostile_nested_wrapped.eml": ("unknown", None, None, None),
    "hostile_stranger.eml": ("hard", "never.mailed-1@elsewhere.example", "5.1.1", 550),
    "hostile_unknown_charset.eml": ("hard", RCPT, "5.1.1", 550),
    "hostile_8bit_headers.eml": ("hard", RCPT, "5.1.1", 550),
}


def _parsed(name: str) -> ParsedBounce:
    return parse_bounce(fill(name, bounce_to=BOUNCE_TO, rcpt=RCPT, message_id=MESSAGE_ID))


def test_every_fixture_has_an_expectation() -> None:
    assert sorted(EXPECTED) == corpus_names()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_report_means_what_its_server_said(name: str) -> None:
    kind, address, status, code = EXPECTED[name]
    parsed = _parsed(name)
    assert kind_of(parsed) == kind, parsed
    if address is None:
        assert parsed.recipients == () or kind == "unknown"
        return
    [r] = parsed.recipients
    assert (r.address, r.status, r.code) == (address, status, code)
    assert r.diagnostic  # the evidence kept for the person's history
    # Text a database will store: no NUL, nothing undecodable.
    for text in (r.diagnostic, parsed.report_id, parsed.note):
        assert "\x00" not in text
        text.encode("utf-8")  # raises for a lone surrogate


@pytest.mark.parametrize(
    "name",
    [
        n
        for n, (kind, *_) in EXPECTED.items()
        if kind not in ("unknown", "autoreply") and n != "forged_verp.eml"  # its own tag
    ]
    + ["arf_auth_failure.eml"],
)
def test_the_returned_message_and_the_verp_tag_are_found(name: str) -> None:
    parsed = _parsed(name)
    assert parsed.verp_tag == TAG
    returned = MESSAGE_ID.encode() in fill(
        name, bounce_to=BOUNCE_TO, rcpt=RCPT, message_id=MESSAGE_ID
    )
    if returned:  # attached, as headers, or quoted in the text (qmail, Yahoo, Exim)
        assert parsed.original_message_id == MESSAGE_ID
        assert parsed.original == ("2026-11", 17)


def test_a_mangled_outer_tag_leaves_the_one_in_the_report_as_a_candidate() -> None:
    """A relay that rewrote the address the bounce came back to: the tag Postfix keeps in
    X-Postfix-Sender (and the returned Return-Path) is the next candidate."""
    raw = fill(
        "gmail_over_quota_relayed.eml", bounce_to=BOUNCE_TO, rcpt=RCPT, message_id=MESSAGE_ID
    )
    mangled = raw.replace(b"To: " + BOUNCE_TO.encode(), b"To: bounces+202611-17-0000000000@x")
    mangled = mangled.replace(
        b"Delivered-To: " + BOUNCE_TO.encode(), b"Delivered-To: bounces+202611-17-0000000000@x"
    )
    parsed = parse_bounce(mangled)
    assert parsed.verp_tags == ("202611-17-0000000000", TAG)


# --- hostile messages made here ------------------------------------------------------------


def _dsn(groups: str, extra_parts: str = "", headers: str = "") -> bytes:
    return (
        f"From: MAILER-DAEMON@mx.example.net\r\nTo: {BOUNCE_TO}\r\n{headers}"
        "Subject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: message/delivery-status\r\n\r\n"
        f"Reporting-MTA: dns; mx.example.net\r\n\r\n{groups}\r\n{extra_parts}--b--\r\n"
    ).encode("utf-8", "surrogateescape")


def _group(address: str) -> str:
    return f"Final-Recipient: rfc822; {address}\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"


def test_a_report_naming_200_recipients_is_set_aside() -> None:
    parsed = parse_bounce(_dsn("".join(_group(f"p{i}@example.org") for i in range(200))))
    assert (parsed.what, parsed.recipients) == ("unknown", ())
    assert "200 recipients" in parsed.note
    few = parse_bounce(_dsn("".join(_group(f"p{i}@example.org") for i in range(2))))
    assert len(few.recipients) == 2 <= MAX_REPORT_RECIPIENTS


def test_a_huge_attachment_is_not_read() -> None:
    blob = "QUFB" * (MAX_BOUNCE_BYTES // 4 + 10)
    attachment = (
        "--b\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Transfer-Encoding: base64\r\n\r\n{blob}\r\n"
    )
    raw = _dsn(_group(RCPT), attachment)
    assert len(raw) > MAX_BOUNCE_BYTES
    parsed = parse_bounce(raw)
    assert (parsed.what, parsed.recipients) == ("too-big", ())


def test_deeply_nested_multiparts_are_set_aside_quickly() -> None:
    depth = 3000
    head = "".join(
        f'Content-Type: multipart/mixed; boundary="n{i}"\r\n\r\n--n{i}\r\n' for i in range(depth)
    )
    tail = "".join(f"\r\n--n{i}--\r\n" for i in reversed(range(depth)))
    raw = (
        f"From: MAILER-DAEMON@mx.example.net\r\nTo: {BOUNCE_TO}\r\nMIME-Version: 1.0\r\n"
        f"{head}Content-Type: text/plain\r\n\r\n<{RCPT}>: 550 5.1.1 User unknown\r\n{tail}"
    ).encode()
    parsed = parse_bounce(raw)
    assert parsed.recipients == () and parsed.what == "unknown"


def test_nul_bytes_and_overlong_ids_never_reach_the_store() -> None:
    long_id = "<" + "x" * 400 + "@example.net>"
    raw = _dsn(
        f"Final-Recipient: rfc822; {RCPT}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 no\x00such\x00user \udcff\r\n",
        f"--b\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: {long_id}\r\n\r\n",
        headers=f"Message-ID: {long_id}\r\n",
    )
    parsed = parse_bounce(raw)
    [r] = parsed.recipients
    assert r.kind == "hard" and "\x00" not in r.diagnostic
    assert parsed.report_id.startswith("sha256:")  # a Message-ID too long to store
    assert parsed.original_message_id is None


def test_a_forwarded_auto_reply_or_a_bounce_without_daemon_is_not_a_bounce() -> None:
    """flufl.bounce reads any text that names an address near "550": only a message from a
    mailer daemon, or one without auto-reply marks that is not a forward, is asked."""
    raw = fill(
        "autoreply_quotes_undeliverable.eml", bounce_to=BOUNCE_TO, rcpt=RCPT, message_id=MESSAGE_ID
    )
    assert parse_bounce(raw).what == "autoreply"
    assert parse_bounce(raw.replace(b"Auto-Submitted: auto-replied\r\n", b"")).recipients == ()


# --- hypothesis: mutated fixtures ----------------------------------------------------------


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A fixture truncated, with bytes flipped, or with header lines deleted."""
    name = draw(st.sampled_from(corpus_names()))
    raw = bytearray(fill(name, bounce_to=BOUNCE_TO, rcpt=RCPT, message_id=MESSAGE_ID))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = random.Random(seed)
    for _ in range(draw(st.integers(1, 4))):
        how = draw(st.sampled_from(["truncate", "flip", "delete-line", "insert"]))
        if how == "truncate" and raw:
            del raw[rng.randrange(len(raw)) :]
        elif how == "flip" and raw:
            for _ in range(rng.randint(1, 20)):
                raw[rng.randrange(len(raw))] = rng.randrange(256)
        elif how == "delete-line":
            lines = bytes(raw).split(b"\r\n")
            if len(lines) > 1:
                del lines[rng.randrange(len(lines))]
            raw = bytearray(b"\r\n".join(lines))
        else:
            at = rng.randrange(len(raw) + 1)
            raw[at:at] = draw(
                st.sampled_from([b"\x00", b"\r\n\r\n", b"--", b":", b"=?utf-8?b?", b"\xff" * 3])
            )
    return bytes(raw)


@settings(max_examples=300, deadline=None)
@given(raw=mutated())
def test_mutated_reports_never_raise(raw: bytes) -> None:
    parsed = parse_bounce(raw)
    assert parsed.what in ("dsn", "complaint", "autoreply", "other-bounce", "unknown")
    assert len(parsed.recipients) <= MAX_REPORT_RECIPIENTS
    for r in parsed.recipients:
        # A complaint may name nobody (its VERP tag or Message-ID may still prove whom).
        assert "@" in r.address or r.kind == "complaint"
        assert "\x00" not in r.diagnostic
        r.diagnostic.encode("utf-8")  # storable text
    parsed.report_id.encode("utf-8")
    assert len(parsed.report_id) <= 255
