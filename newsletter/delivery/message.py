"""Message assembly: a variant's MIME bytes built once, one recipient's bytes in microseconds.

A :class:`MessageTemplate` is made once per variant by :func:`build_message_template`. It
holds, already encoded, everything that is the same for every recipient: the static
header fields (From, Subject, Reply-To, List-Id, List-Unsubscribe-Post, MIME-Version,
Content-Type) and both body parts (``text/plain`` then ``text/html``, UTF-8,
quoted-printable), split around the personal holes of their
:class:`~newsletter.render.prepared.PreparedPart`.

:func:`assemble` then makes one recipient's message: it signs the recipient's tokens
(:func:`~newsletter.delivery.personalise.recipient_values`), QP-encodes each short value
and joins it between the pre-encoded pieces, and adds the personal header fields (To,
Date, Message-ID, List-Unsubscribe, and X-Original-To under ``dev_redirect``). Nothing
static is re-encoded, which keeps a message at tens of microseconds where the standard
library's ``EmailMessage`` path costs milliseconds (``bench/bench_message.py``). The
result is the transports' :class:`~newsletter.delivery.transports.base.OutgoingMessage`,
ready for ``Transport.send``, with one envelope recipient and ``canonical`` set: its
bytes have CRLF line ends and no line starting with ".".

How the holes stay valid quoted-printable: every static segment is encoded on its own as
if it started a line, and ends either at the start of a line (after a hard line break) or
mid-line, in which case a soft line break (``=`` CRLF) is added after it. Each value is
encoded the same way and followed by a soft break unless it ends a line. A soft break
decodes to nothing, so the decoded part is exactly ``PreparedPart.fill(values)`` with
CRLF line ends, and no encoded line is longer than 76 characters. Whitespace before a
soft break is kept as it is (the ``=`` protects it); before a hard break or the part's
end it is encoded (``=20``), because relays may strip trailing whitespace.

The body is also already in DKIM's relaxed canonical form (RFC 6376, 3.4.4), so signing
it needs no rewriting pass: a tab is always encoded (``=09``), no two blanks are ever
next to each other on a line (in a run of spaces every second one is ``=20``), no line
ends in a blank, and the body ends in one line break. These only choose between
encodings QP allows for the same character; what a reader sees does not change.

Every header value is checked: a CR, LF or NUL (from a subscriber's name or address, an
issue's subject or a setting) raises :class:`HeaderInjectionError` instead of letting the
value start a header field of its own.

The Message-ID is stable per (issue month, subscriber): a retry after a dropped
connection carries the same one, as the transport requires. It carries an HMAC made with
the first ``secret_key`` so nobody can guess another subscriber's Message-ID. (Rotating
the signing key between a send and its retry changes the ID of the retried messages.)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import operator
import re
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from functools import lru_cache
from html import escape
from typing import Protocol

from newsletter.config import Settings
from newsletter.delivery.personalise import (
    Recipient,
    SlottedValue,
    SummaryTopics,
    recipient_values,
)
from newsletter.delivery.transports.base import OutgoingMessage
from newsletter.errors import ConfigError, MissingSettingError, NewsletterError
from newsletter.rules.addresses import is_sendable
from newsletter.rules.links import page_url
from newsletter.rules.personal import FEWER_FIELDS, MARKUP_FIELDS
from newsletter.store.views import MessageHeaders, PartContent
from newsletter.tokens import verp_address, verp_tag


class Part(Protocol):
    """A rendered part split around its holes (render's ``PreparedPart``, a snapshot's
    ``PartContent``): ``segments`` has one more item than ``names``."""

    @property
    def kind(self) -> str: ...

    @property
    def segments(self) -> Sequence[str]: ...

    @property
    def names(self) -> Sequence[str]: ...


class Content(Protocol):
    """What a message says: a variant of a digest, or a one-off mail."""

    @property
    def subject(self) -> str: ...

    @property
    def web_view_url(self) -> str: ...

    @property
    def html(self) -> Part: ...

    @property
    def text(self) -> Part: ...


class MissingFieldError(KeyError):
    """No value was given for a field a part needs (a bug in the caller)."""


@dataclass(frozen=True)
class _OneOff:
    """The content of a one-off mail: final HTML and text, no holes."""

    subject: str
    web_view_url: str
    html: PartContent
    text: PartContent


TEST_PREFIX = "[TEST] "
ONE_CLICK = "List-Unsubscribe=One-Click"
QP_LINE = 76  # longest quoted-printable line (RFC 2045), the soft break's "=" included
MAX_LINE = 998  # the hard limit on any line (RFC 5322)
HEADER_LINE = 78  # folded header lines stay within this where the content allows

_CRLF = "\r\n"
_SOFT = "=\r\n"
# The hex escape of every byte value, e.g. 61 -> "=3D".
_HEX = tuple(f"={b:02X}" for b in range(256))
# Characters written as they are in quoted-printable: printable ASCII but "=", plus
# space (which is encoded where it would end a line or follow another space). A tab is
# always encoded, so the body needs no relaxed canonicalisation for DKIM.
_LITERAL = frozenset(chr(c) for c in range(33, 127) if c != 61) | {" "}
# A value that can be inserted without any encoding: literal characters only (and no two
# spaces in a row, checked apart), short enough to fit on one line with its soft break.
_SAFE_VALUE = re.compile(r"[ !-<>-~]{0,75}")
# Longer values of printable ASCII without spaces or "=" (signed tokens, URLs): they only
# need soft line breaks every 75 characters.
_SAFE_LONG = re.compile(r"[!-<>-~]+")
_MONTH = re.compile(r"[A-Za-z0-9_-]+")
_FORBIDDEN = ("\r", "\n", "\0")
# Printable ASCII: a display name or subject made only of these needs no RFC 2047 encoding.
_PRINTABLE = re.compile(r"[ -~]*")
_CONTROLS_TO_SPACE = {c: " " for c in [*range(32), *range(127, 160)]}
_WORD_BYTES = 39  # bytes of text per encoded word: "=?utf-8?b?" + 52 chars + "?=" = 64


# --------------------------------------------------------------------------- errors


class MessageError(NewsletterError):
    """A value cannot be put into an email message."""


class HeaderInjectionError(MessageError, ValueError):
    """A header value holds CR, LF or NUL, which could start a header field of its own."""

    def __init__(self, what: str, value: str) -> None:
        shown = repr(value[:60]) + ("..." if len(value) > 60 else "")
        super().__init__(
            f"{what} {shown} holds a line break or NUL character",
            hint="line breaks are not allowed in names, addresses or subjects: correct the value",
        )
        self.what = what


class BadAddressError(MessageError, ValueError):
    """An email address that cannot be written into a message header."""

    def __init__(self, what: str, value: str) -> None:
        super().__init__(
            f"{what} {value!r} is not a plain email address",
            hint="write it as name@example.org (no spaces, quotes, <> or non-ASCII letters)",
        )
        self.what = what


@dataclass(frozen=True)
class _EncodedPart:
    """One body part QP-encoded around its holes: ``segments`` has one more item than
    ``names`` (see the module docstring for how they join)."""

    kind: str  # "html" (values are HTML-escaped) or "text"
    segments: tuple[bytes, ...]
    names: tuple[str, ...]


@dataclass(frozen=True)
class MessageTemplate:
    """A variant's message with everything static pre-encoded; see :func:`assemble`."""

    settings: Settings
    issue_month: str
    subject: str
    web_view_url: str
    domain: str
    boundary: str
    envelope_from: str
    dev_redirect: str
    unsubscribe_mailto: str
    base_url: str  # where List-Unsubscribe points
    # Topic slugs of each summary of the issue, by position: the "fewer emails" lines.
    summary_topics: SummaryTopics
    # The whole message as static pieces with the holes at the odd positions: first the
    # personal header fields, then the values. ``hole_keys`` name each value hole: the
    # field name in the text part, "html:" + name in the HTML part (except tokens, which
    # HTML escaping never changes: they share the text part's key). Static pieces are
    # already QP-encoded.
    pieces: tuple[bytes, ...]
    hole_keys: tuple[str, ...]
    # (key, field, encoder) for every distinct hole: how to encode each value.
    _plan: tuple[tuple[str, str, Callable[[str], bytes]], ...]
    _pick: Callable[[Mapping[str, bytes]], tuple[bytes, ...]]
    _mid_key: hashlib.blake2b

    def __repr__(self) -> str:  # the MAC key and the settings' secret stay out of logs
        return (
            f"MessageTemplate(issue_month={self.issue_month!r}, subject={self.subject!r}, "
            f"boundary={self.boundary!r})"
        )


# --------------------------------------------------------------------------- quoted-printable


def _unit(ch: str) -> str:
    # One character's encoding; a multi-byte character stays one unit so a soft break
    # never splits it (allowed by QP, but kinder to readers of the raw source).
    if ch in _LITERAL:
        return ch
    return "".join(_HEX[b] for b in ch.encode("utf-8"))


# A line of literal characters only; one with two spaces in a row takes the slower path.
_PLAIN_LINE = re.compile(r"[ !-<>-~]*")


def _plain_chunks(line: str, out: list[str]) -> int:
    """Append ``line`` (literal characters only) as lines of at most 75 characters joined
    by soft breaks, a leading "." written "=2E"; returns the column after the last one."""
    i, n, col = 0, len(line), 0
    while i < n:
        if col:
            out.append(_SOFT)
        if line[i] == ".":
            chunk = line[i + 1 : i + QP_LINE - 3]
            out.append("=2E" + chunk)
            col = 3 + len(chunk)
            i += 1 + len(chunk)
        else:
            chunk = line[i : i + QP_LINE - 1]
            out.append(chunk)
            col = len(chunk)
            i += len(chunk)
    return col


def qp_encode(text: str, *, ends_part: bool = True) -> str:
    """Quoted-printable of ``text`` (UTF-8), CRLF line breaks, lines of at most 76 chars.

    The encoding starts at the beginning of a line. ``ends_part``: the text is followed
    by a hard line break or the end of the part, so whitespace at its very end is encoded;
    pass False when a soft break follows. ``"\\n"`` is a line break; a ``"\\r"`` is
    encoded as ``=0D``. The output is in DKIM's relaxed canonical form (see the module
    docstring): tabs are ``=09`` and no two blanks stand together.
    """
    out: list[str] = []
    lines = text.split("\n")
    last = len(lines) - 1
    for i, line in enumerate(lines):
        if _PLAIN_LINE.fullmatch(line) and "  " not in line:
            # Most lines need no escapes: cut them into lines by slicing, not per character.
            tail = ""
            if line and line[-1] == " " and (i < last or ends_part):
                tail, line = _HEX[32], line[:-1]
            col = _plain_chunks(line, out)
            if tail:
                if col + len(tail) > QP_LINE - 1:
                    out.append(_SOFT)
                out.append(tail)
            if i < last:
                out.append(_CRLF)
            continue
        units = [_unit(ch) for ch in line]
        if units and units[-1] == " " and (i < last or ends_part):
            units[-1] = _HEX[32]
        if "  " in line:
            # A run of spaces: every second one is encoded, so no two stand together
            # (relaxed canonicalisation would make one of them).
            for k in range(1, len(units)):
                if units[k] == " " and units[k - 1] == " ":
                    units[k] = _HEX[32]
        col = 0
        for u in units:
            # 75 leaves room for the "=" of a soft break (or of a soft break added later).
            if col + len(u) > QP_LINE - 1:
                out.append(_SOFT)
                col = 0
            if col == 0 and u == ".":
                # No line starts with "." so the SMTP transport need not dot-stuff.
                u = "=2E"
            out.append(u)
            col += len(u)
        if i < last:
            out.append(_CRLF)
    return "".join(out)


def _ends_line(text: str) -> bool:
    return not text or text.endswith("\n")


def _chunk_lines(value: str) -> str:
    """Literal ASCII cut into lines of at most 75 characters, each ending in a soft break.

    A line that would start with "." starts with "=2E" instead (see :func:`qp_encode`).
    """
    out: list[str] = []
    i, n = 0, len(value)
    while i < n:
        if value[i] == ".":
            out.append("=2E" + value[i + 1 : i + QP_LINE - 3])
            i += QP_LINE - 3
        else:
            out.append(value[i : i + QP_LINE - 1])
            i += QP_LINE - 1
        out.append(_SOFT)
    return "".join(out)


def encode_value(value: str) -> bytes:
    """A value's QP form for a hole: it starts a line and ends at the start of one."""
    if _SAFE_VALUE.fullmatch(value) and not value.startswith(".") and "  " not in value:
        # short tokens, addresses, URLs, most names
        return (value + _SOFT).encode("ascii") if value else b""
    if _SAFE_LONG.fullmatch(value):  # long tokens and URLs: per recipient, keep it cheap
        return _chunk_lines(value).encode("ascii")
    encoded = qp_encode(value, ends_part=False)
    if not _ends_line(value):
        encoded += _SOFT
    return encoded.encode("ascii")


def encode_slotted(value: str) -> bytes:
    """As :func:`encode_value`, for a :class:`~newsletter.delivery.personalise.SlottedValue`
    in pieces: each piece's encoding (cached) and the token's, one after the other (each
    starts a line and ends at the start of one, so together they decode to the value)."""
    if not isinstance(value, SlottedValue):
        return encode_value(value)
    token = encode_value(value.token)
    return token.join([_cached_text(piece) for piece in value.pieces])


# Names, topic lists and web addresses repeat across recipients: cache their encodings.
# (Tokens are unique per recipient and skip the caches.)
_cached_text = lru_cache(maxsize=16384)(encode_value)


def _html_value(value: str) -> bytes:
    return encode_value(escape(value))


_cached_html = lru_cache(maxsize=16384)(_html_value)
# Fields whose values differ for (nearly) every recipient.
_UNIQUE_FIELDS = frozenset({"first_name", "email"})
# What a signed token is made of (base64url and "."): HTML escaping never changes it.
_TOKEN = re.compile(r"[A-Za-z0-9_.=-]*")


def _encode_part(part: Part) -> _EncodedPart:
    segments: list[bytes] = []
    last = len(part.segments) - 1
    for i, seg in enumerate(part.segments):
        encoded = qp_encode(seg, ends_part=i == last)
        if i < last and not _ends_line(seg):
            encoded += _SOFT
        segments.append(encoded.encode("ascii"))
    return _EncodedPart(part.kind, tuple(segments), tuple(part.names))


# --------------------------------------------------------------------------- headers


def check_header_value(what: str, value: str) -> str:
    """``value``, or :class:`HeaderInjectionError` if it holds CR, LF or NUL."""
    if "\r" in value or "\n" in value or "\0" in value:
        raise HeaderInjectionError(what, value)
    return value


def check_address(what: str, address: str) -> str:
    """``address`` if it is a plain ``local@domain`` address safe in a header."""
    check_header_value(what, address)
    if not is_sendable(address):
        raise BadAddressError(what, address)
    return address


def _encoded_words(text: str) -> list[str]:
    """RFC 2047 B-encoded words for ``text``, each at most 64 chars, characters unsplit."""
    words: list[bytes] = []
    chunk = b""
    for ch in text:
        b = ch.encode("utf-8")
        if len(chunk) + len(b) > _WORD_BYTES:
            words.append(chunk)
            chunk = b""
        chunk += b
    if chunk or not words:
        words.append(chunk)
    return ["=?utf-8?b?" + base64.b64encode(w).decode("ascii") + "?=" for w in words]


def _fold_words(start: str, words: list[str]) -> str:
    """``start`` followed by ``words`` separated by single spaces, folded at them."""
    lines = [start]
    for w in words:
        if len(lines[-1]) + 1 + len(w) > HEADER_LINE and lines[-1].strip(" :"):
            lines.append(" " + w)
        else:
            lines[-1] += " " + w
    return _CRLF.join(lines)


def unstructured(name: str, value: str) -> str:
    """One header field (``Name: value``, folded, no final CRLF) for free text.

    Printable ASCII stays readable, folded at spaces; anything else, or text that
    contains ``=?`` (which a reader would take for an encoded word), is RFC 2047 encoded.
    """
    check_header_value(name, value)
    if _PRINTABLE.fullmatch(value) and "=?" not in value:
        line = f"{name}: {value}"
        if len(line) <= HEADER_LINE:
            return line
        # Fold before existing spaces: unfolding (removing the CRLF) gives the value back.
        folded = [f"{name}:"]
        for piece in re.split(r"(?= )", " " + value):
            if not piece:
                continue
            if len(folded[-1]) + len(piece) > HEADER_LINE and folded[-1].strip(" :"):
                folded.append(piece)
            else:
                folded[-1] += piece
        if all(len(x) <= HEADER_LINE and x.strip() for x in folded):
            return _CRLF.join(folded)
    return _fold_words(f"{name}:", _encoded_words(value))


def _quoted(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def address_header(field: str, display_name: str | None, address: str) -> str:
    """``Field: "Display Name" <address>`` (folded, no final CRLF), checking both parts.

    An ASCII name is a quoted string (fast path); a non-ASCII one, or one with control
    characters, is RFC 2047 encoded. No name gives ``Field: address``.
    """
    check_address(f"{field} address", address)
    if not display_name:
        return f"{field}: {address}"
    check_header_value(f"{field} name", display_name)
    printable = display_name.isprintable()  # str methods, not a regex: runs per recipient
    if not printable:
        # Tabs and other control characters in a name (user input) become spaces.
        display_name = display_name.translate(_CONTROLS_TO_SPACE)
    if printable and display_name.isascii() and "=?" not in display_name:
        quoted = (
            _quoted(display_name)
            if '"' in display_name or "\\" in display_name
            else f'"{display_name}"'
        )
        line = f"{field}: {quoted} <{address}>"
        if len(line) <= HEADER_LINE:
            return line
        # A long quoted string stays whole (every reader understands it): its own line
        # may pass 78 characters, never the hard limit of 998.
        if len(quoted) + len(field) + 2 <= MAX_LINE:
            return f"{field}: {quoted}{_CRLF} <{address}>"
    # Non-ASCII: RFC 2047 encoded words. Readers drop the space between two encoded
    # words, so a long name split over several decodes back without extra spaces
    # (Python's address parser is the exception: it inserts one).
    return _fold_words(f"{field}:", [*_encoded_words(display_name), f"<{address}>"])


# --------------------------------------------------------------------------- building


def list_id(newsletter_name: str, domain: str) -> str:
    """The List-Id value: ``"Name" <slug.domain>`` (RFC 2919)."""
    slug = re.sub(r"[^a-z0-9]+", "-", newsletter_name.lower()).strip("-")[:60] or "newsletter"
    return f"<{slug}.{domain}>"


def _message_id_key(settings: Settings) -> hashlib.blake2b:
    keys = settings.secret_keys
    if not keys:
        settings.require("secret_key", "to sign the links and Message-IDs of emails")
    # A key derived for this one use: the Message-ID MAC never reuses the link-signing key.
    key = hmac.digest(keys[0].encode("utf-8"), b"newsletter.message-id", "sha256")
    return hashlib.blake2b(key=key, digest_size=8)


def _checked_setting(name: str, address: str) -> str:
    """``address`` (a setting's value) if it is usable in a header; ConfigError if not."""
    if address:
        try:
            check_address(name, address)
        except MessageError as exc:
            raise ConfigError(f"setting {exc.message}", hint=exc.hint) from None
    return address


def headers_from_settings(settings: Settings) -> MessageHeaders:
    """The header values of messages sent now, from the settings as they are."""
    return MessageHeaders(
        # The newsletter's one name, as in its header, footer and List-Id; sender_name
        # (who sends it) is named in the footer beside the postal address.
        from_name=settings.newsletter_name,
        from_address=settings.require("sender_address", "in the From header of every email"),
        reply_to=settings.reply_to,
        list_name=settings.newsletter_name,
        unsubscribe_mailto=settings.unsubscribe_mailto,
        base_url=settings.base_url,
    )


def build_message_template(
    variant: Content,
    settings: Settings,
    *,
    issue_month: str,
    headers: MessageHeaders | None = None,
    test: bool = False,
    unsubscribe_mailto: str | None = None,
    bulk: bool = True,
    summary_topics: SummaryTopics | None = None,
) -> MessageTemplate:
    """Pre-encode ``variant`` as a message for :func:`assemble`; once per variant and send.

    ``headers`` are who it comes from and the list's identity (a send's snapshot keeps
    them; default: from the settings as they are now); ``settings`` give the keys that
    sign links and Message-IDs and ``dev_redirect``. ``issue_month`` ("2026-10") goes
    into the Message-IDs; ``test`` prefixes the subject with "[TEST] ".
    ``unsubscribe_mailto`` (default: the headers') adds a ``mailto:`` address to
    List-Unsubscribe. ``bulk`` (digests) adds List-Id and List-Unsubscribe-Post.
    ``summary_topics``: each summary's topic slugs by position in the issue (a digest's
    "fewer emails on" lines are made from them per recipient; default: the variant's own
    ``summary_topics`` when it has them, as a freshly rendered one does). Raises
    :class:`~newsletter.errors.ConfigError` for missing or bad sender settings and
    :class:`HeaderInjectionError` for a subject with a line break.
    """
    if not _MONTH.fullmatch(issue_month):
        raise ValueError(f"issue_month {issue_month!r} must look like 2026-10")
    if headers is None:
        headers = headers_from_settings(settings)
    if not headers.from_address:
        raise MissingSettingError("sender_address", "in the From header of every email")
    domain = _checked_setting("sender_address", headers.from_address).rsplit("@", 1)[1].lower()
    mid_key = _message_id_key(settings)
    reply_to = _checked_setting("reply_to", headers.reply_to)
    dev_redirect = _checked_setting("dev_redirect", settings.dev_redirect)
    if unsubscribe_mailto is None:
        unsubscribe_mailto = headers.unsubscribe_mailto
    _checked_setting("unsubscribe_mailto", unsubscribe_mailto)
    subject = (TEST_PREFIX if test else "") + variant.subject
    try:
        from_field = address_header("From", headers.from_name, headers.from_address)
    except MessageError as exc:
        raise ConfigError(f"setting newsletter_name: {exc.message}", hint=exc.hint) from None
    try:
        # The footer names the sender on one line: a line break would break it.
        check_header_value("sender_name", settings.sender_name)
    except MessageError as exc:
        raise ConfigError(f"setting {exc.message}", hint=exc.hint) from None

    text = _encode_part(variant.text)
    html = _encode_part(variant.html)
    static = b"".join(text.segments + html.segments)
    while True:  # "=_" never occurs in QP output, but check rather than rely on it
        boundary = "=_nl" + secrets.token_hex(12)
        if boundary.encode("ascii") not in static:
            break

    head = [from_field, unstructured("Subject", subject)]
    if reply_to:
        head.append(f"Reply-To: {reply_to}")
    if bulk:
        head.append(
            _fold_words(
                "List-Id:",
                [*_list_phrase(headers.list_name), list_id(headers.list_name, domain)],
            )
        )
        # Always sent: the web page answers the one-click POST at that address. RFC 8058
        # wants it https, so mail providers ignore it on an http base_url (`send` warns).
        tail = [f"List-Unsubscribe-Post: {ONE_CLICK}"]
    else:
        # A one-off mail to one person: auto-responders should not answer it.
        tail = ["Auto-Submitted: auto-generated"]
    tail += [
        "MIME-Version: 1.0",
        f'Content-Type: multipart/alternative; boundary="{boundary}"',
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: quoted-printable",
        "",
        "",
    ]
    part_head = (
        f"\r\n--{boundary}\r\n"
        "Content-Type: text/html; charset=utf-8\r\n"
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    ).encode("ascii")
    # Static pieces and holes alternate: [head, <headers>, tail + text[0], <value>, ...].
    pieces = [(_CRLF.join(head) + _CRLF).encode("ascii"), b""]
    static = _CRLF.join(tail).encode("ascii") + text.segments[0]
    for seg in text.segments[1:]:
        pieces += [static, b""]
        static = seg
    static += part_head + html.segments[0]
    for seg in html.segments[1:]:
        pieces += [static, b""]
        static = seg
    pieces.append(static + f"\r\n--{boundary}--\r\n".encode("ascii"))
    hole_keys = text.names + tuple(n if _is_token(n) else "html:" + n for n in html.names)
    return MessageTemplate(
        settings=settings,
        issue_month=issue_month,
        subject=subject,
        web_view_url=variant.web_view_url,
        domain=domain,
        boundary=boundary,
        envelope_from=headers.from_address,
        dev_redirect=dev_redirect,
        unsubscribe_mailto=unsubscribe_mailto,
        base_url=headers.base_url,
        summary_topics=dict(summary_topics or getattr(variant, "summary_topics", None) or {}),
        pieces=tuple(pieces),
        hole_keys=hole_keys,
        _plan=_encoding_plan(hole_keys),
        _pick=_picker(hole_keys),
        _mid_key=mid_key,
    )


def _is_token(name: str) -> bool:
    return name.endswith("_token")


def _encoding_plan(keys: tuple[str, ...]) -> tuple[tuple[str, str, Callable[[str], bytes]], ...]:
    plan = []
    for key in dict.fromkeys(keys):
        html = key.startswith("html:")
        name = key.removeprefix("html:")
        # Values unique to a recipient skip the caches (a miss costs more than encoding).
        unique = name in _UNIQUE_FIELDS or _is_token(name)
        if name in (MARKUP_FIELDS if html else FEWER_FIELDS):
            # Made (and the HTML ones escaped) by personalise, in pieces; a text line in
            # an HTML part is escaped like any other value, below.
            plan.append((key, name, encode_slotted))
        elif html:
            plan.append((key, name, _html_value if unique else _cached_html))
        else:
            plan.append((key, name, encode_value if unique else _cached_text))
    return tuple(plan)


def _picker(keys: tuple[str, ...]) -> Callable[[Mapping[str, bytes]], tuple[bytes, ...]]:
    # itemgetter returns a bare item for one key; always give a tuple.
    if len(keys) == 1:
        return lambda enc: (enc[keys[0]],)
    return operator.itemgetter(*keys) if keys else lambda enc: ()


def _list_phrase(name: str) -> list[str]:
    check_header_value("newsletter_name", name)
    if not name.strip():
        return []
    if _PRINTABLE.fullmatch(name) and "=?" not in name:
        return [_quoted(name)]
    return _encoded_words(name)


# --------------------------------------------------------------------------- per recipient

_date_cache: tuple[int, str] = (-1, "")


def date_header(now: float | None = None) -> str:
    """``Date: ...`` for ``now`` (default: the current time), cached per second."""
    global _date_cache
    second = int(time.time() if now is None else now)
    cached = _date_cache
    if cached[0] == second:
        return cached[1]
    value = "Date: " + format_datetime(datetime.fromtimestamp(second, UTC))
    _date_cache = (second, value)  # one tuple: safe to swap while other threads read
    return value


def message_id(template: MessageTemplate, subscriber_id: int) -> str:
    """The stable Message-ID of ``template``'s issue for ``subscriber_id`` (with <>)."""
    base = f"{template.issue_month}.{subscriber_id}"
    mac = template._mid_key.copy()  # keyed BLAKE2b: a MAC, and 5x cheaper than an HMAC here
    mac.update(base.encode("ascii"))
    tag = mac.hexdigest()
    return f"<{base}.{tag}@{template.domain}>"


def _unsubscribe_header(template: MessageTemplate, token: str) -> str:
    https = page_url(template.base_url, "unsubscribe", token)
    if not template.unsubscribe_mailto:
        return f"List-Unsubscribe: <{https}>"
    # The token in the subject lets whoever reads that mailbox find the subscriber.
    mailto = f"<mailto:{template.unsubscribe_mailto}?subject=unsubscribe%20{token}>"
    return f"List-Unsubscribe: <{https}>,{_CRLF} {mailto}"


def assemble_values(
    template: MessageTemplate,
    recipient: Recipient,
    message_id: str,
    values: Mapping[str, str],
) -> OutgoingMessage:
    """The message for ``recipient`` with its personal ``values`` already computed.

    :func:`assemble` computes the values (signed tokens and all) and the Message-ID
    itself; this is for callers that have their own values (previews, tests). Raises
    :class:`MissingFieldError` when ``values`` lacks a field the parts use and
    :class:`HeaderInjectionError` for a line break in the Message-ID, and ValueError
    when a ``*_token`` value is not made of a token's characters (base64url and ".").
    """
    check_header_value("Message-ID", message_id)
    if "unsubscribe_token" not in values:
        raise MissingFieldError("no value for field 'unsubscribe_token'")
    for name, value in values.items():
        if _is_token(name) and not _TOKEN.fullmatch(value):
            raise ValueError(f"{name} {value!r} is not a signed token")
    return _assemble(template, recipient, message_id, values)


def _assemble(
    template: MessageTemplate,
    recipient: Recipient,
    message_id: str,
    values: Mapping[str, str],
    extra_headers: Sequence[str] | None = None,
) -> OutgoingMessage:
    headers = [
        address_header("To", recipient.name, recipient.email),
        date_header(),
        f"Message-ID: {message_id}",
    ]
    if extra_headers is None:  # a digest: the recipient's own unsubscribe link
        headers.append(_unsubscribe_header(template, values["unsubscribe_token"]))
    else:
        headers.extend(extra_headers)
    envelope_to = recipient.email
    if template.dev_redirect:
        headers.append(f"X-Original-To: {recipient.email}")
        envelope_to = template.dev_redirect
    headers.append("")
    try:
        enc = {key: encode(values[name]) for key, name, encode in template._plan}
    except KeyError as exc:
        raise MissingFieldError(f"no value for field {exc.args[0]!r}") from None
    pieces = list(template.pieces)
    pieces[1::2] = (_CRLF.join(headers).encode("ascii"), *template._pick(enc))
    # canonical: CRLF throughout and no line starting with "." (QP writes =2E), so SMTP
    # can skip its line-end scan and dot-stuffing.
    envelope_from = template.envelope_from
    bounce_address = template.settings.bounce_address
    if bounce_address and extra_headers is None and recipient.subscriber_id is not None:
        # VERP: a bounce names the delivery by its envelope address, however mangled
        # the returned message is (tokens.read_verp_tag reads it back).
        tag = verp_tag(template.settings, template.issue_month, recipient.subscriber_id)
        envelope_from = verp_address(bounce_address, tag)
    return OutgoingMessage(message_id, (envelope_to,), b"".join(pieces), envelope_from, True)


def assemble(template: MessageTemplate, recipient: Recipient) -> OutgoingMessage:
    """One recipient's complete message (CRLF, ready for ``Transport.send``).

    ``recipient.subscriber_id`` must be set: it makes the Message-ID, stable across
    retries. Raises :class:`HeaderInjectionError` for a line break in the name or address
    and :class:`BadAddressError` for an address that is not a plain one.
    """
    sid = recipient.subscriber_id
    if not isinstance(sid, int) or isinstance(sid, bool):
        raise TypeError("assemble() needs the recipient's subscriber_id (an int)")
    check_address("recipient address", recipient.email)
    values = recipient_values(
        template.settings, recipient, template.web_view_url, template.summary_topics
    )
    return _assemble(template, recipient, message_id(template, sid), values)


def assemble_test(
    template: MessageTemplate,
    to_address: str,
    *,
    name: str | None = None,
    recipient: Recipient | None = None,
) -> OutgoingMessage:
    """A one-off message to ``to_address`` (``send-test``): a fresh random Message-ID.

    The personal values are those of ``recipient`` when given (to preview what one
    subscriber gets), else of a recipient ``to_address`` named ``name``. Build the
    template with ``test=True`` for the "[TEST] " subject prefix.
    """
    check_address("test address", to_address)
    person = recipient or Recipient(email=to_address, name=name)
    values = recipient_values(
        template.settings, person, template.web_view_url, template.summary_topics
    )
    mid = f"<test.{secrets.token_hex(10)}@{template.domain}>"
    shown = Recipient(email=to_address, name=name if name is not None else person.name)
    return _assemble(template, shown, mid, values)


def build_single(
    headers: MessageHeaders,
    settings: Settings,
    *,
    to: str,
    subject: str,
    html: str,
    text: str,
    kind: str,
    to_name: str | None = None,
    unsubscribe_url: str | None = None,
) -> OutgoingMessage:
    """A one-off message to one person (confirmation, welcome, a report to the author).

    Built like a digest (same From, Reply-To, encoding and ``dev_redirect``), with
    ``Auto-Submitted: auto-generated`` instead of the list headers, a fresh Message-ID
    and, when ``unsubscribe_url`` is given, List-Unsubscribe with one-click.
    """
    check_address("recipient address", to)
    content = _OneOff(
        subject, "", PartContent("html", (html,), ()), PartContent("text", (text,), ())
    )
    template = build_message_template(
        content, settings, issue_month=kind, headers=headers, bulk=False
    )
    extra = []
    if unsubscribe_url:
        check_header_value("List-Unsubscribe", unsubscribe_url)
        extra = [f"List-Unsubscribe: <{unsubscribe_url}>", f"List-Unsubscribe-Post: {ONE_CLICK}"]
    mid = f"<{kind}.{secrets.token_hex(10)}@{template.domain}>"
    return _assemble(template, Recipient(email=to, name=to_name), mid, {}, extra_headers=extra)
