"""Reading bounces that come back by mail: one parser for every way they arrive.

:func:`parse_bounce` reads one message and says what it is:

- a **DSN** (RFC 3464, ``multipart/report; report-type=delivery-status``): each failed
  recipient with its ``Status`` and ``Diagnostic-Code``, classified by
  :func:`newsletter.rules.bounces.classify_reply` like a reply at send time (a DSN's
  ``Action: delayed`` is a warning, not a bounce);
- a **complaint** (ARF, RFC 5965, ``report-type=feedback-report``);
- an **auto-reply** (``Auto-Submitted`` other than ``no``, vacation headers, "out of
  office" subjects): recognised and ignored, never counted;
- another server's own bounce format: ``flufl.bounce`` (Mailman's detectors) finds the
  failed addresses, permanent or temporary;
- anything else: ``unknown``, set aside.

Which delivery a bounce is about comes from the VERP tag in the address it was sent back
to (``bounces+TAG@``, see :func:`newsletter.tokens.verp_tag`), or else from the returned
message's Message-ID (``<MONTH.SUBSCRIBER.hash@domain>``, see
:func:`newsletter.delivery.message.message_id`), or else from the failed address. The
parser never raises for a malformed message: a problem is a result.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import logging
import re
from dataclasses import dataclass, field
from email.message import Message

from newsletter.rules.bounces import COMPLAINT, HARD, SOFT, classify_reply

#: Larger messages are not read (a bounce with a huge attachment is set aside).
MAX_BOUNCE_BYTES = 2 * 1024 * 1024

_VERP = re.compile(r"\+([0-9a-z]{6}-\d{1,19}-[0-9a-f]{10})@", re.IGNORECASE)
_OUR_MESSAGE_ID = re.compile(r"<?(\d{4}-\d{2})\.(\d{1,19})\.[0-9a-f]+@[^>\s]+>?")
_OUT_OF_OFFICE = re.compile(
    r"\b(out of (the )?office|auto(matic)?[- ]?(reply|response)|vacation|abwesenheit|"
    r"absence|away from)\b",
    re.IGNORECASE,
)
_STATUS = re.compile(r"^\s*([245]\.\d{1,3}\.\d{1,3})")
_STATUS_TYPES = ("message/delivery-status", "message/global-delivery-status")
_CODE = re.compile(r"(?:smtp;\s*)?([245]\d\d)\b", re.IGNORECASE)


@dataclass(frozen=True)
class FailedRecipient:
    """One recipient a bounce reports on."""

    address: str  # as the report gives it (lower case), may be empty
    kind: str | None  # hard / soft / block / complaint, None for a mere warning
    code: int | None
    diagnostic: str


@dataclass(frozen=True)
class ParsedBounce:
    """What one message coming back is (see the module docstring)."""

    report_id: str  # the message's own Message-ID, or a hash of its bytes
    what: str  # dsn, complaint, autoreply, other-bounce, unknown, too-big
    recipients: tuple[FailedRecipient, ...] = ()
    verp_tag: str | None = None
    original: tuple[str, int] | None = None  # (month, subscriber id) from a Message-ID
    original_message_id: str | None = None
    note: str = ""


def parse_bounce(raw: bytes) -> ParsedBounce:
    """What the message ``raw`` is, never raising for a malformed one."""
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    if len(raw) > MAX_BOUNCE_BYTES:
        return ParsedBounce(digest, "too-big", note=f"{len(raw)} bytes; not read")
    try:
        # compat32: the fast parser (headers as text); the modern policy parses every
        # header into objects, which took most of the time here.
        msg = email.message_from_bytes(raw, policy=email.policy.compat32)
        return _parse(msg, digest)
    except Exception as exc:  # a hostile message must never stop the reader
        return ParsedBounce(digest, "unknown", note=f"unreadable: {type(exc).__name__}")


def _parse(msg: Message, digest: str) -> ParsedBounce:
    original_id, original = _original(msg)

    def result(
        what: str, recipients: tuple[FailedRecipient, ...] = (), note: str = ""
    ) -> ParsedBounce:
        return ParsedBounce(
            report_id=_header(msg, "Message-ID") or digest,
            what=what,
            recipients=recipients,
            verp_tag=_verp_tag(msg),
            original=original,
            original_message_id=original_id,
            note=note,
        )

    param = msg.get_param("report-type") if msg.is_multipart() else None
    report_type = param.lower() if isinstance(param, str) else ""
    is_report = msg.get_content_type() == "multipart/report"
    if is_report and report_type == "feedback-report":
        return result("complaint", _complaint_recipients(msg), _feedback_type(msg))
    if is_report and report_type == "delivery-status":
        recipients = _dsn_recipients(msg)
        if recipients:
            return result("dsn", recipients)
    if _is_autoreply(msg):
        return result("autoreply")
    other = _flufl(msg)
    if other:
        return result("other-bounce", other)
    return result("unknown", note="not a bounce this reader knows")


def _header(msg: Message, name: str) -> str:
    try:
        value = msg.get(name)
    except Exception:
        return ""
    return " ".join(str(value).split()) if value else ""


def _verp_tag(msg: Message) -> str | None:
    """The VERP tag in the address the bounce came back to (the envelope recipient the
    receiving server wrote into a header), if any."""
    for name in ("Delivered-To", "X-Original-To", "Envelope-To", "To", "Return-Path"):
        for value in msg.get_all(name) or ():
            m = _VERP.search(str(value))
            if m:
                return m.group(1).lower()
    return None


def _returned_headers(msg: Message) -> Message | None:
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype in ("message/rfc822", "message/rfc822-headers", "text/rfc822-headers"):
            payload = part.get_payload()
            if isinstance(payload, list) and payload:
                inner = payload[0]
                return inner if isinstance(inner, Message) else None
            if isinstance(payload, str):
                return email.message_from_string(payload, policy=email.policy.compat32)
    return None


def _original(msg: Message) -> tuple[str | None, tuple[str, int] | None]:
    inner = _returned_headers(msg)
    if inner is None:
        return None, None
    mid = _header(inner, "Message-ID")
    m = _OUR_MESSAGE_ID.fullmatch(mid) if mid else None
    return (mid or None), ((m.group(1), int(m.group(2))) if m else None)


def _fields(text: str) -> list[dict[str, str]]:
    """The per-recipient field groups of a delivery-status body (blank-line separated)."""
    groups: list[dict[str, str]] = []
    for block in re.split(r"\r?\n\s*\r?\n", text):
        fields: dict[str, str] = {}
        last = None
        for line in block.splitlines():
            if line[:1] in (" ", "\t") and last:
                fields[last] += " " + line.strip()
                continue
            name, sep, value = line.partition(":")
            if sep:
                last = name.strip().lower()
                fields[last] = value.strip()
        if fields:
            groups.append(fields)
    return groups


def _status_text(part: Message) -> str:
    payload = part.get_payload()
    if isinstance(payload, list):  # the email package parses it as header blocks
        return "\n\n".join(str(p).strip() for p in payload if isinstance(p, Message))
    data = part.get_payload(decode=True)
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return str(payload or "")


def _dsn_recipients(msg: Message) -> tuple[FailedRecipient, ...]:
    found: list[FailedRecipient] = []
    for part in msg.walk():
        if part.get_content_type() not in _STATUS_TYPES:
            continue
        for fields in _fields(_status_text(part)):
            if "action" not in fields and "status" not in fields:
                continue  # the per-message group
            action = fields.get("action", "").lower()
            recipient = fields.get("final-recipient") or fields.get("original-recipient") or ""
            address = recipient.split(";", 1)[-1].strip().strip("<>").lower()
            status = fields.get("status", "")
            diagnostic = " ".join(fields.get("diagnostic-code", "").split(";", 1)[-1].split())
            if action in ("delivered", "relayed", "expanded"):
                continue
            m = _STATUS.match(status)
            enhanced = m.group(1) if m else ""
            code_m = _CODE.search(fields.get("diagnostic-code", ""))
            code = int(code_m.group(1)) if code_m else None
            if code is None and enhanced:
                code = 550 if enhanced.startswith("5") else 450
            said = diagnostic or f"{enhanced} (no diagnostic)".strip()
            kind = None if action == "delayed" else classify_reply(code, f"{enhanced} {said}")
            found.append(FailedRecipient(address, kind, code, said[:2000]))
    return tuple(found)


def _complaint_recipients(msg: Message) -> tuple[FailedRecipient, ...]:
    inner = _returned_headers(msg)
    address = ""
    if inner is not None:
        address = _header(inner, "To")
    for part in msg.walk():
        if part.get_content_type() == "message/feedback-report":
            for fields in _fields(_status_text(part)):
                address = fields.get("original-rcpt-to", address) or address
    m = re.search(r"[^\s<>\"']+@[^\s<>\"']+", address)
    return (FailedRecipient(m.group(0).lower() if m else "", COMPLAINT, None, "complaint"),)


def _feedback_type(msg: Message) -> str:
    for part in msg.walk():
        if part.get_content_type() == "message/feedback-report":
            for fields in _fields(_status_text(part)):
                if "feedback-type" in fields:
                    return f"feedback-type: {fields['feedback-type']}"
    return ""


def _is_autoreply(msg: Message) -> bool:
    auto = _header(msg, "Auto-Submitted").lower()
    if auto and auto != "no":
        return True
    if any(msg.get(h) for h in ("X-Autoreply", "X-Autorespond", "X-Vacation")):
        return True
    if _header(msg, "Precedence").lower() in ("auto_reply",):
        return True
    return bool(_OUT_OF_OFFICE.search(_header(msg, "Subject")))


def _flufl(msg: Message) -> tuple[FailedRecipient, ...]:
    try:
        from flufl.bounce import all_failures
    except ImportError:  # pragma: no cover - a dependency
        return ()
    # Its detectors log a traceback for every message one of them cannot read (a hostile
    # or odd message is normal input here): keep that out of the output and the logs.
    logging.getLogger("flufl.bounce").setLevel(logging.CRITICAL + 1)
    try:
        permanent, temporary = all_failures(msg)
    except Exception:
        return ()
    # flufl.bounce finds the addresses; whether the failure is permanent it often cannot
    # tell (Exim's X-Failed-Recipients comes back as "temporary"). The reply quoted in
    # the text decides where there is one: the same rule as a reply at send time.
    text = _plain_text(msg)
    quoted = re.search(r"\b([45]\d\d)[ -]+((?:[245]\.\d{1,3}\.\d{1,3} )?[^\n]{0,200})", text)
    code = int(quoted.group(1)) if quoted else None
    said = f"{quoted.group(1)} {quoted.group(2).strip()}" if quoted else ""
    found = []
    for raw in sorted(permanent | temporary):
        address = _address(raw)
        if not address:
            continue
        if quoted is not None:
            kind = classify_reply(code, quoted.group(2))
        elif raw in permanent or "permanent error" in text.lower():
            kind = HARD
        else:
            kind = SOFT
        if kind is None:  # a 4xx quoted: the server will try again, not a bounce yet
            continue
        found.append(FailedRecipient(address, kind, code, said or "non-standard bounce"))
    return tuple(found)


def _plain_text(msg: Message) -> str:
    for part in msg.walk():
        if part.get_content_type() == "text/plain":
            data = part.get_payload(decode=True)
            if isinstance(data, bytes):
                return data.decode("utf-8", "replace")[:20000]
    return ""


def _address(raw: object) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return text.strip().strip("<>").lower()


@dataclass
class FetchReport:
    """What reading a mailbox did."""

    read: int = 0
    recorded: int = 0  # bounces and complaints recorded
    marked: list[str] = field(default_factory=list)  # addresses marked bounced/unsubscribed
    ignored: dict[str, int] = field(default_factory=dict)  # by reason
    already: int = 0  # processed before
    moved: dict[str, int] = field(default_factory=dict)  # IMAP: messages filed, by folder
    flagged: int = 0  # IMAP --keep: messages flagged done where they are


__all__ = [
    "MAX_BOUNCE_BYTES",
    "FailedRecipient",
    "FetchReport",
    "ParsedBounce",
    "parse_bounce",
]
