"""Reading bounces that come back by mail: one parser for every way they arrive.

:func:`parse_bounce` reads one message and says what it is:

- a **DSN** (RFC 3464, ``multipart/report; report-type=delivery-status``): each failed
  recipient with its ``Status`` and ``Diagnostic-Code``, classified by
  :func:`newsletter.rules.bounces.classify_reply` like a reply at send time (a DSN's
  ``Action: delayed`` is a warning, not a bounce; ``Action: failed`` with a 4xx status
  is a delivery the server gave up after retries, a soft bounce);
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

from newsletter.rules.bounces import (
    COMPLAINT,
    GIVEN_UP,
    HARD,
    SOFT,
    classify_reply,
    enhanced_status,
)

#: Larger messages are not read (a bounce with a huge attachment is set aside).
MAX_BOUNCE_BYTES = 2 * 1024 * 1024
#: Each of our messages has one recipient: a report naming more than this many is not
#: about one of them (a forwarded list, or someone trying to stop many people at once).
MAX_REPORT_RECIPIENTS = 10
#: Feedback types of an ARF report that are a person's complaint (RFC 5965, 6650); an
#: ``auth-failure`` (a DMARC failure report) or ``not-spam`` report is not.
COMPLAINT_TYPES = frozenset({"abuse", "fraud", "virus", "other", ""})
#: The store's limit for an identifier (report and Message-IDs are VARCHAR(255)).
_MAX_ID = 255

_VERP = re.compile(r"\+([0-9a-z]{6}-\d{1,19}-[0-9a-f]{10})@", re.IGNORECASE)
_OUR_MESSAGE_ID = re.compile(r"<?(\d{4}-\d{2})\.(\d{1,19})\.[0-9a-f]+@[^>\s]+>?")
_INLINE_MESSAGE_ID = re.compile(r"^Message-I[Dd]:[ \t]*(<[^>\s]{1,250}>)", re.MULTILINE)
_OUT_OF_OFFICE = re.compile(
    r"\b(out of (the )?office|auto(matic)?[- ]?(reply|response)|vacation|abwesenheit|"
    r"absence|away from|r[ée]ponse automatique|automatische antwort|"
    # challenge-response systems: "please confirm your message", "requires verification"
    r"confirm your (message|e-?mail)|requires? verification|verify your (message|e-?mail))\b",
    re.IGNORECASE,
)
_DAEMON = re.compile(
    r"mailer[-_]?daemon|postmaster|mail delivery (system|subsystem)|mail ?administrator",
    re.IGNORECASE,
)
_FORWARDED = re.compile(r"^\s*(fwd?|wg|tr|re)\s*:", re.IGNORECASE)
_WARNING = re.compile(
    r"^\s*warning\b|\(delay\)|delayed mail|this is a warning message only|"
    r"has not yet been delivered|will (continue to )?(re)?try",
    re.IGNORECASE | re.MULTILINE,
)
_STATUS = re.compile(r"^\s*([245]\.\d{1,3}\.\d{1,3})")
# compat32 parses a message/delivery-status body into header blocks, which loses a base64
# or quoted-printable one; renamed before parsing, it is text the reader decodes itself.
_DSN_TYPE = re.compile(
    rb"(?im)^(content-type:\s*)message/((?:global-)?delivery-status)",
)
_STATUS_TYPES = (
    "text/x-delivery-status",
    "text/x-global-delivery-status",
    "message/delivery-status",
    "message/global-delivery-status",
)
_RETURNED_TYPES = (
    "message/rfc822",
    "message/global",
    "message/rfc822-headers",
    "message/global-headers",
    "text/rfc822-headers",
)
_CODE = re.compile(r"(?:smtp;\s*)?\b([245]\d\d)\b", re.IGNORECASE)
_QUOTED = re.compile(r"\b([45]\d\d)(?:[ -]|: )")
_ADDRESS = re.compile(
    r"[^\s<>\"'(),;:@\[\]\\]{1,200}@[^\s<>\"'(),;:@\[\]\\]{1,200}\.[^\s<>\"'(),;:@\[\]\\.]+"
)
_COPY_MARKER = re.compile(
    r"^-{2,} ?(below this line is a copy of the message|enclosed are the original headers|"
    r"this is a copy of the message)",
    re.IGNORECASE | re.MULTILINE,
)


@dataclass(frozen=True)
class FailedRecipient:
    """One recipient a bounce reports on."""

    address: str  # the address we mailed, as the report gives it (lower case)
    kind: str | None  # hard / soft / block / complaint, None for a mere warning
    code: int | None  # the SMTP reply code the report quotes, if it quotes one
    diagnostic: str
    status: str | None = None  # the enhanced status code (RFC 3463), e.g. 5.1.1


@dataclass(frozen=True)
class ParsedBounce:
    """What one message coming back is (see the module docstring)."""

    report_id: str  # the message's own Message-ID, or a hash of its bytes
    what: str  # dsn, complaint, autoreply, other-bounce, unknown, too-big
    recipients: tuple[FailedRecipient, ...] = ()
    verp_tag: str | None = None  # the first of verp_tags
    original: tuple[str, int] | None = None  # (month, subscriber id) from a Message-ID
    original_message_id: str | None = None
    note: str = ""
    #: Every VERP tag the message carries, the address it came back to first, then those
    #: in the report and the returned message (whoever reads them checks each one's MAC).
    verp_tags: tuple[str, ...] = ()


def parse_bounce(raw: bytes) -> ParsedBounce:
    """What the message ``raw`` is, never raising for a malformed one."""
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    if len(raw) > MAX_BOUNCE_BYTES:
        return ParsedBounce(digest, "too-big", note=f"{len(raw)} bytes; not read")
    try:
        # compat32: the fast parser (headers as text); the modern policy parses every
        # header into objects, which took most of the time here.
        msg = email.message_from_bytes(
            _DSN_TYPE.sub(rb"\1text/x-\2", raw), policy=email.policy.compat32
        )
        return _parse(msg, raw, digest)
    except Exception as exc:  # a hostile message must never stop the reader
        return ParsedBounce(digest, "unknown", note=f"unreadable: {type(exc).__name__}")


def _parse(msg: Message, raw: bytes, digest: str) -> ParsedBounce:
    original_id, original = _original(msg)
    tags = _verp_tags(msg, raw)
    own_id = _header(msg, "Message-ID")

    def result(
        what: str, recipients: tuple[FailedRecipient, ...] = (), note: str = ""
    ) -> ParsedBounce:
        if len(recipients) > MAX_REPORT_RECIPIENTS:
            what, note = "unknown", f"names {len(recipients)} recipients; ours have one"
            recipients = ()
        return ParsedBounce(
            report_id=own_id if own_id and len(own_id) <= _MAX_ID else digest,
            what=what,
            recipients=recipients,
            verp_tag=tags[0] if tags else None,
            original=original,
            original_message_id=original_id,
            note=_clean(note),
            verp_tags=tags,
        )

    param = msg.get_param("report-type") if msg.is_multipart() else None
    report_type = param.lower() if isinstance(param, str) else ""
    is_report = msg.get_content_type() == "multipart/report"
    if is_report and report_type == "feedback-report":
        feedback = _feedback_type(msg)
        if feedback not in COMPLAINT_TYPES:
            return result("unknown", note=f"feedback-type: {feedback}; not a complaint")
        return result("complaint", _complaint_recipients(msg), f"feedback-type: {feedback or '?'}")
    if is_report and report_type == "delivery-status":
        recipients = _dsn_recipients(msg)
        if recipients:
            return result("dsn", recipients)
        return result("unknown", note="a delivery report with no readable recipient")
    # A server's own bounce format. Exim and others mark their bounces Auto-Submitted too,
    # so a message from a mailer daemon is read as a bounce before anything else.
    from_daemon = bool(_DAEMON.search(_header(msg, "From"))) or bool(msg.get("X-Failed-Recipients"))
    if from_daemon:
        other = _text_bounce(msg)
        if other:
            return result("other-bounce", other)
    if _is_autoreply(msg):
        return result("autoreply")
    if not from_daemon and not _FORWARDED.match(_header(msg, "Subject")):
        other = _text_bounce(msg)
        if other:
            return result("other-bounce", other)
    return result("unknown", note="not a bounce this reader knows")


def _clean(text: str) -> str:
    """Text safe to store: undecodable bytes (kept by the parser as surrogates) replaced,
    no NUL (PostgreSQL refuses it in text)."""
    if text.isascii():
        return text.replace("\x00", "")
    data = text.encode("utf-8", "surrogateescape")
    return data.decode("utf-8", "replace").replace("\x00", "")


def _header(msg: Message, name: str) -> str:
    try:
        value = msg.get(name)
    except Exception:
        return ""
    return _clean(" ".join(str(value).split())) if value else ""


def _verp_tags(msg: Message, raw: bytes) -> tuple[str, ...]:
    """The VERP tags of the message: first those of the address the bounce came back to
    (the envelope recipient the receiving server wrote into a header), then any other
    (Postfix's X-Postfix-Sender, the returned message's Return-Path), at most five."""
    found: list[str] = []
    for name in ("Delivered-To", "X-Original-To", "Envelope-To", "To", "Return-Path"):
        for value in msg.get_all(name) or ():
            for m in _VERP.finditer(str(value)):
                if m.group(1).lower() not in found:
                    found.append(m.group(1).lower())
    for m in _VERP.finditer(raw.decode("latin-1")):
        if len(found) >= 5:
            break
        if m.group(1).lower() not in found:
            found.append(m.group(1).lower())
    return tuple(found[:5])


def _decoded(part: Message) -> str:
    """The text of a part, its transfer encoding undone, in its charset where known."""
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        payload = part.get_payload()
        return _clean(payload) if isinstance(payload, str) else ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return _clean(data.decode(charset, "replace"))
    except LookupError:  # an unknown charset
        return _clean(data.decode("utf-8", "replace"))


def _returned_headers(msg: Message) -> Message | None:
    for part in msg.walk():
        if part.get_content_type() not in _RETURNED_TYPES:
            continue
        payload = part.get_payload()
        if isinstance(payload, list) and payload:
            inner = payload[0]
            return inner if isinstance(inner, Message) else None
        if isinstance(payload, str):
            return email.message_from_string(_decoded(part), policy=email.policy.compat32)
    return None


def _original(msg: Message) -> tuple[str | None, tuple[str, int] | None]:
    inner = _returned_headers(msg)
    mid = _header(inner, "Message-ID") if inner is not None else ""
    if not mid:
        # qmail, Yahoo and Exim's plain bounces quote the message in their text.
        for quoted in _INLINE_MESSAGE_ID.finditer(_plain_text(msg)):
            if _OUR_MESSAGE_ID.fullmatch(quoted.group(1)):
                mid = quoted.group(1)
                break
    if not mid or len(mid) > _MAX_ID:
        return None, None
    m = _OUR_MESSAGE_ID.fullmatch(mid)
    return mid, ((m.group(1), int(m.group(2))) if m else None)


def _fields(text: str) -> list[dict[str, str]]:
    """The per-recipient field groups of a delivery-status body (blank-line separated)."""
    groups: list[dict[str, str]] = []
    for block in re.split(r"\r?\n[ \t]*\r?\n", text):
        fields: dict[str, str] = {}
        last = None
        for line in block.splitlines():
            if line[:1] in (" ", "\t") and last:
                fields[last] += " " + line.strip()
                continue
            name, sep, value = line.partition(":")
            if sep and name.strip():
                last = name.strip().lower()
                fields[last] = value.strip()
        if fields:
            groups.append(fields)
    return groups


def _status_text(part: Message) -> str:
    payload = part.get_payload()
    if isinstance(payload, list):  # a message/* type the parser read as header blocks
        return "\n\n".join(_clean(str(p)).strip() for p in payload if isinstance(p, Message))
    return _decoded(part)


def _address(value: str) -> str:
    """The address in a recipient field or header (``rfc822; <a@b>``), lower case, or ""."""
    m = _ADDRESS.search(value.split(";", 1)[-1] if ";" in value else value)
    return m.group(0).lower() if m else ""


def _dsn_recipients(msg: Message) -> tuple[FailedRecipient, ...]:
    found: list[FailedRecipient] = []
    for part in msg.walk():
        if part.get_content_type() not in _STATUS_TYPES:
            continue
        for fields in _fields(_status_text(part)):
            recipient = _dsn_recipient(fields)
            if recipient is not None:
                found.append(recipient)
    return tuple(found)


def _dsn_recipient(fields: dict[str, str]) -> FailedRecipient | None:
    """One per-recipient group of a DSN, or None when it is not a failure we can read."""
    if "final-recipient" not in fields and "original-recipient" not in fields:
        return None  # the per-message group
    # Original-Recipient is the address we mailed; Final-Recipient may be where a
    # forwarding sent it on.
    address = _address(fields.get("original-recipient", "")) or _address(
        fields.get("final-recipient", "")
    )
    action = fields.get("action", "").lower().strip()
    if not address or action in ("delivered", "relayed", "expanded"):
        return None
    raw_diagnostic = fields.get("diagnostic-code") or fields.get("x-exim-diagnostic") or ""
    diagnostic = " ".join(raw_diagnostic.split(";", 1)[-1].split())
    m = _STATUS.match(fields.get("status", ""))
    status = m.group(1) if m else None
    said_status = enhanced_status(diagnostic)
    if status is None or (status.endswith(".0.0") and said_status):
        status = said_status or status  # a generic x.0.0 (Exim): the reply says more
    code_m = _CODE.search(raw_diagnostic)
    code = int(code_m.group(1)) if code_m else None
    if status is None and code is None:
        return None  # no status we can read: garbage, not evidence
    if action not in ("failed", "delayed"):
        action = "failed" if (status or str(code))[0] == "5" else "delayed"
    said = diagnostic or "(no diagnostic)"
    if status and enhanced_status(said) != status:
        said = f"{status} {said}"  # the Status field decides; keep it with the evidence
    kind = None
    if action == "failed":
        klass = code or (550 if (status or "5").startswith("5") else 450)
        kind = classify_reply(klass, said)
        if kind is None:
            # A 4xx that never cleared: the reporting server retried until its queue
            # lifetime ran out and gave up (Postfix's "expired, returned to sender").
            # Like a give-up at send time, that is a soft bounce.
            kind, said = SOFT, f"gave up after retries: {said}"
    return FailedRecipient(address, kind, code, _clean(said)[:2000], status)


def _complaint_recipients(msg: Message) -> tuple[FailedRecipient, ...]:
    inner = _returned_headers(msg)
    candidates: list[str] = []
    for part in msg.walk():
        if part.get_content_type() == "message/feedback-report":
            for fields in _fields(_status_text(part)):
                candidates.append(fields.get("original-rcpt-to", ""))
    # Microsoft's JMRP names the recipient in its own header (and may redact To:).
    candidates.append(_header(msg, "X-HmXmrOriginalRecipient"))
    if inner is not None:
        candidates.append(_header(inner, "X-HmXmrOriginalRecipient"))
        candidates.append(_header(inner, "To"))
    address = next((a for a in map(_address, candidates) if a), "")
    return (FailedRecipient(address, COMPLAINT, None, "complaint"),)


def _feedback_type(msg: Message) -> str:
    for part in msg.walk():
        if part.get_content_type() == "message/feedback-report":
            for fields in _fields(_status_text(part)):
                if "feedback-type" in fields:
                    return fields["feedback-type"].strip().lower()
    return ""


def _is_autoreply(msg: Message) -> bool:
    auto = _header(msg, "Auto-Submitted").lower()
    if auto and auto != "no":
        return True
    if any(
        msg.get(h)
        for h in ("X-Autoreply", "X-Autorespond", "X-Vacation", "X-Auto-Response-Suppress")
    ):
        return True
    if _header(msg, "Precedence").lower() in ("auto_reply",):
        return True
    return bool(_OUT_OF_OFFICE.search(_header(msg, "Subject")))


def _text_bounce(msg: Message) -> tuple[FailedRecipient, ...]:
    """The failures of a bounce in a server's own text format: qmail's QSBMF (which Yahoo
    writes too), Exim's, or any other flufl.bounce recognises."""
    text = _plain_text(msg)
    if _WARNING.search(_header(msg, "Subject")) or _WARNING.search(text[:1500]):
        return ()  # a delay warning: the server is still trying
    body = _COPY_MARKER.split(text, maxsplit=1)[0]
    pairs = _qsbmf(body) or _exim(body) or _flufl_pairs(msg, body)
    found = []
    for address, said in pairs[: MAX_REPORT_RECIPIENTS + 1]:
        failure = _text_failure(address, said)
        if failure is not None:
            found.append(failure)
    return tuple(found)


def _qsbmf(body: str) -> list[tuple[str, str]]:
    """qmail's bounce format (QSBMF): a paragraph ``<address>:`` per failed recipient."""
    pairs = []
    for para in re.split(r"\n[ \t]*\n", body):
        m = re.match(r"\s*<([^<>\s]+@[^<>\s]+)>:\s*\n?(.*)", para, re.DOTALL)
        if m:
            pairs.append((m.group(1), " ".join(m.group(2).split())))
    return pairs


def _exim(body: str) -> list[tuple[str, str]]:
    """Exim's plain bounce: after "address(es) failed:", each address on a line of its
    own, indented by two spaces, and its reason indented further."""
    m = re.search(r"address(?:\(es\)|es)? failed:[ \t]*\n", body)
    if not m:
        return []
    pairs: list[tuple[str, str]] = []
    for line in body[m.end() :].splitlines():
        head = re.match(r"^ {1,3}(\S+@\S+)\s*$", line)
        if head:
            pairs.append((head.group(1), ""))
        elif line.startswith("    ") and pairs:
            address, said = pairs[-1]
            generated = re.search(r"generated from (\S+@\S+)\)?", line)
            if generated:  # an alias: the address we mailed is the one it came from
                address = generated.group(1).rstrip(")")
            pairs[-1] = (address, f"{said} {line.strip()}".strip())
    return pairs


def _flufl_pairs(msg: Message, body: str) -> list[tuple[str, str]]:
    try:
        from flufl.bounce import all_failures
    except ImportError:  # pragma: no cover - a dependency
        return []
    # Its detectors log a traceback for every message one of them cannot read (a hostile
    # or odd message is normal input here): keep that out of the output and the logs.
    logging.getLogger("flufl.bounce").setLevel(logging.CRITICAL + 1)
    try:
        permanent, temporary = all_failures(msg)
    except Exception:
        return []
    pairs = []
    for raw in sorted(permanent | temporary):
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        address = text.strip().strip("<>")
        # The words near the address are its reason (one recipient: the whole text).
        at = body.lower().find(address.lower())
        said = body[at : at + 600] if at >= 0 else body[:600]
        if raw in permanent and "permanent" not in said.lower():
            said += " (a permanent error)"
        pairs.append((address, " ".join(said.split())))
    return pairs


def _text_failure(address: str, said: str) -> FailedRecipient | None:
    address = _address(address)
    if not address:
        return None
    quoted = _QUOTED.search(said)
    code = int(quoted.group(1)) if quoted else None
    status = enhanced_status(said) or _first_status(said)
    reply = said[quoted.start() :] if quoted else said
    if GIVEN_UP.search(said):
        kind: str | None = SOFT
    elif code is not None:
        kind = classify_reply(code, reply)
    elif status is not None:
        kind = classify_reply(550 if status.startswith("5") else 450, said)
    else:
        kind = HARD if "permanent" in said.lower() else SOFT
    if kind is None:
        kind = SOFT  # a temporary refusal the server has given up retrying
    return FailedRecipient(
        address, kind, code, _clean(said)[:2000] or "non-standard bounce", status
    )


def _first_status(text: str) -> str | None:
    m = re.search(r"#([245]\.\d{1,3}\.\d{1,3})", text)  # qmail writes (#5.1.1)
    return m.group(1) if m else None


def _plain_text(msg: Message) -> str:
    for part in msg.walk():
        if part.get_content_type() == "text/plain":
            return _decoded(part)[:20000]
    return ""


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
    "MAX_REPORT_RECIPIENTS",
    "FailedRecipient",
    "FetchReport",
    "ParsedBounce",
    "parse_bounce",
]
