"""The transport interface: what every way of delivering a finished message shares.

A transport knows nothing about subscribers, issues or the ledger, and this module knows
nothing about SMTP. A transport takes one :class:`OutgoingMessage` (envelope, bytes and
Message-ID) and answers with a :class:`SendOutcome` that says what the caller should do
with that delivery:

=============== ==================================================================
``status``      meaning for the caller
=============== ==================================================================
``sent``        the server took the message (SMTP: 2xx after DATA): mark the
                delivery sent.
``retry``       a temporary refusal (SMTP: 4xx), or the connection dropped or timed
                out during the transaction: try this message again later. When
                ``connection_lost`` is true the server may or may not have the
                message, so the retry MUST reuse the same Message-ID.
``failed``      a permanent refusal (SMTP: 5xx): record it, never retry.
``unavailable`` the server cannot be reached at all (connection refused, timeout, a
                temporary refusal while connecting, a full disk). Nothing was sent
                and nothing is wrong with this message: do not count it as an
                attempt; pause the send and resume when :meth:`Transport.probe` (or
                a later send) succeeds.
=============== ==================================================================

Problems no retry can fix, because the settings are wrong (a refused login, a certificate
that cannot be verified, a feature the server does not offer), are not outcomes: they raise
:class:`TransportConfigError` (a :class:`~newsletter.errors.ConfigError`), so a worker stops
the whole send instead of failing every subscriber one by one. Envelope addresses with line
breaks or other control characters raise :class:`EnvelopeError` (a ``ValueError``) before
anything is sent; :meth:`Transport.send` checks every envelope with :func:`validate_envelope`
and DKIM-signs the message when the transport has a ``signer``, so no implementation can
skip either.

An implementation subclasses :class:`Transport`, sets ``name`` and writes ``_deliver``;
it registers a factory for its URL scheme with
:func:`newsletter.delivery.transports.registry.register`.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Literal, NamedTuple

from newsletter.errors import ConfigError, NewsletterError

if TYPE_CHECKING:
    from newsletter.delivery.dkimsign import DkimSigner

Status = Literal["sent", "retry", "failed", "unavailable"]
STATUSES: tuple[Status, ...] = ("sent", "retry", "failed", "unavailable")


# --------------------------------------------------------------------------- errors


class TransportConfigError(ConfigError):
    """The transport settings do not work with this server (login, TLS, missing feature)."""


class EnvelopeError(NewsletterError, ValueError):
    """An envelope address or Message-ID that must not reach the server."""


class TransportClosedError(NewsletterError):
    """``send`` was called after ``close``."""


# --------------------------------------------------------------------------- values


class OutgoingMessage(NamedTuple):
    """One finished message with its envelope, as :meth:`Transport.send` takes it.

    ``message_id`` is the Message-ID with its angle brackets (as in the header): the
    outbox names files by it and logs mention it. ``recipients`` are the envelope
    recipients, ``data`` the complete RFC 5322 message with CRLF line ends,
    ``envelope_from`` the envelope sender ("" is the null sender).

    ``canonical`` promises CRLF line ends, no line starting with "." and a body already in
    DKIM's relaxed canonical form (what :mod:`newsletter.delivery.message` makes), so a
    transport may skip its own line-end checks and dot-stuffing, and the DKIM signer its
    canonicalisation, which cost more than the rest of a send on a large list.

    A named tuple on purpose: one is made per recipient on the hot path, and it costs a
    quarter of a frozen dataclass.
    """

    message_id: str
    recipients: tuple[str, ...]
    data: bytes
    envelope_from: str = ""
    canonical: bool = False

    @property
    def envelope_to(self) -> str:
        """The first envelope recipient ("" when there is none)."""
        return self.recipients[0] if self.recipients else ""


@dataclass(frozen=True)
class SendOutcome:
    """What happened to one message; see the module docstring for what to do with it.

    ``code`` is the server's reply code (None when there was no reply, e.g. a dropped
    connection), ``reply`` the reply text or a description of the failure (never a
    secret), ``connection_lost`` true when the connection broke mid-transaction so the
    server may hold the message. ``refused`` lists recipients refused while others were
    accepted (a multi-recipient message counts as sent); it is empty otherwise.
    """

    status: Status
    code: int | None = None
    reply: str = ""
    connection_lost: bool = False
    refused: dict[str, tuple[int, str]] = field(default_factory=dict)

    @property
    def sent(self) -> bool:
        """True when the server took the message."""
        return self.status == "sent"


# --------------------------------------------------------------------------- envelope

# Control characters would let an address smuggle extra commands into a dialogue with the
# server ("a@b.c\r\nRCPT TO:<...>"); angle brackets would break the <...> framing.
_BAD_ENVELOPE = re.compile(r"[\x00-\x1f\x7f<>]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def validate_envelope(envelope_from: str, recipients: Sequence[str], message_id: str) -> None:
    """Raise :class:`EnvelopeError` unless the envelope is safe to put on the wire.

    ``envelope_from`` may be empty (the null sender); recipients must be non-empty
    addresses with an ``@``; nothing may hold control characters (CR, LF...) or ``<>``.
    """
    if not isinstance(envelope_from, str) or _BAD_ENVELOPE.search(envelope_from):
        raise EnvelopeError(
            f"envelope sender {envelope_from!r} holds a line break or another "
            "character not allowed in an address",
            hint="check the sender_address setting",
        )
    if not recipients:
        raise EnvelopeError("a message needs at least one recipient")
    for rcpt in recipients:
        if not isinstance(rcpt, str) or "@" not in rcpt or _BAD_ENVELOPE.search(rcpt):
            raise EnvelopeError(
                f"recipient {rcpt!r} is not a plain email address",
                hint="an envelope address cannot hold line breaks, control characters or <>",
            )
    if not message_id.strip("<> ") or _CONTROL.search(message_id):
        raise EnvelopeError(f"Message-ID {message_id!r} is empty or holds control characters")


# --------------------------------------------------------------------------- interface


class Transport(abc.ABC):
    """Something that delivers messages: :meth:`send` each one, then :meth:`close`.

    Subclasses set ``name`` and implement :meth:`_deliver`; they may override
    :meth:`flush`, :meth:`probe` and :meth:`close`. A transport is a context manager that
    closes itself. Thread-safe: several worker threads may call :meth:`send` on one
    transport at once, so implementations must be too.
    """

    #: What logs and reports call this kind of transport, e.g. ``"smtp"``.
    name: ClassVar[str]
    #: Signs every message in :meth:`send` when set (``open_transport`` sets it from the
    #: DKIM settings).
    signer: DkimSigner | None = None

    def send(self, message: OutgoingMessage) -> SendOutcome:
        """Deliver ``message`` to its recipients; the outcome says sent, retry, failed...

        The envelope is checked first and the message DKIM-signed when the transport has
        a ``signer`` (a ``canonical`` message stays canonical: the DKIM-Signature fields
        have CRLF line ends and no line starting with "."). Raises :class:`EnvelopeError`
        for unsafe addresses, ``TypeError`` for recipients given as one string or data
        that is not bytes, and :class:`TransportConfigError` when the settings cannot work
        (see module doc).
        """
        recipients = message.recipients
        if type(recipients) is not tuple:
            if isinstance(recipients, str):  # tuple("a@b") would be one recipient per letter
                raise TypeError("recipients must be a sequence of addresses, not one string")
            message = message._replace(recipients=tuple(recipients))
        validate_envelope(message.envelope_from, message.recipients, message.message_id)
        data = message.data
        if type(data) is not bytes:
            if not isinstance(data, bytes | bytearray | memoryview):
                raise TypeError("message data must be bytes")
            message = message._replace(data=bytes(data))
        if self.signer is not None:
            signed = self.signer.sign(message.data, relaxed_body=message.canonical)
            message = message._replace(data=signed)
        return self._deliver(message)

    @abc.abstractmethod
    def _deliver(self, message: OutgoingMessage) -> SendOutcome:
        """Deliver an already validated (and, with a signer, signed) message."""

    @property
    def paced(self) -> bool:
        """Whether :meth:`send` may wait for a rate limit (see :meth:`reserve`)."""
        return False

    def reserve(self) -> None:  # noqa: B027 - deliberately a no-op by default
        """Wait for, and take, the rate-limit slot of the next message this thread sends.

        A worker calls it before it marks a message started (the wire fence), so a
        message never waits for its slot while it counts as being on the wire: an
        unsubscribe waits only for messages really going out. :meth:`send` then uses
        the slot instead of waiting again. A no-op for transports without a rate limit.
        """

    def flush(self) -> None:  # noqa: B027 - deliberately a no-op by default
        """Deliver whatever this transport holds back to send in batches.

        A no-op for transports that deliver in :meth:`send` (SMTP, the outbox). A batching
        transport (an HTTP API taking many messages per request) sends its batch here;
        callers flush before they record outcomes, and such a transport's :meth:`close`
        flushes first.
        """

    def probe(self) -> SendOutcome:
        """Whether the transport can deliver now, without sending anything.

        ``sent`` means usable, ``unavailable`` that the server still cannot be reached. A
        paused send calls this to learn when to resume. By default a transport is always
        usable; transports with a server to reach (SMTP) override this.
        """
        return SendOutcome("sent", None, f"the {self.name} transport is ready")

    def close(self) -> None:  # noqa: B027 - deliberately a no-op by default
        """Release connections and files; the transport cannot send afterwards."""

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
