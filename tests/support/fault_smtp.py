"""A scripted, misbehaving SMTP server for the fault-injection tests (aiosmtpd).

:class:`FaultSmtpServer` is a :class:`~tests.support.smtpserver.SmtpTestServer` (same
start/stop/restart on a free 127.0.0.1 port, same ``messages`` of accepted mail) that
follows a script of faults and keeps a log of every message it received in full.

Use it through the ``fault_smtp`` fixture (``tests/plugin.py``)::

    fault_smtp.refuse("rcpt", 451, recipient="ann@example.org")   # once, at RCPT
    fault_smtp.refuse("data", 554, message=3)         # the 3rd transaction, at DATA
    fault_smtp.drop_after_data(recipient="bob")       # take it, then hang up, no reply
    gate = threading.Event()
    fault_smtp.stall("data", until=gate)              # no reply until gate.set()
    fault_smtp.stall("rcpt", seconds=2.0)             # no reply for 2 seconds
    fault_smtp.greet = False                          # accept TCP, never say 220
    fault_smtp.stop(); fault_smtp.start()             # down, then back on the same port

A rule matches by ``recipient`` (a whole address or a local part, any case) or by
``message``, the number of the transaction: the n-th MAIL FROM the server has seen, from
1, over every connection (a retry is a new transaction with a new number). A rule with
neither matches every transaction. ``times`` is how often it applies (``None``: always);
the first rule that matches, in the order they were added, is used. A 421 reply closes
the connection after it is sent, as a real server does.

The log (:meth:`FaultSmtpServer.log`) has one :class:`LogEntry` per message received in
full, whatever was answered: when it arrived, its number, envelope recipients, Message-ID,
bytes and what the server did with it (``accepted``, ``refused``, ``dropped``, or
``abandoned`` when the client left while the server stalled). Refusals at RCPT are in
:attr:`FaultSmtpServer.rcpt_refusals`. Every method may be called from any thread;
:meth:`FaultSmtpServer.wait_for` waits on a condition of the log instead of sleeping.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.message
import email.policy
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.support.smtpserver import (
    ReceivedMessage,
    SmtpTestServer,
    _CountingSMTP,
    _Handler,
)

STAGES = ("rcpt", "data")

#: The reply text used when a rule names only a code.
REPLIES = {
    421: "421 4.4.2 fault server: closing the connection",
    450: "450 4.2.1 fault server: mailbox unavailable, try again",
    451: "451 4.3.0 fault server: local error, try again later",
    452: "452 4.3.1 fault server: insufficient system storage",
    550: "550 5.1.1 fault server: no such user",
    552: "552 5.2.2 fault server: mailbox full",
    554: "554 5.7.1 fault server: message refused",
}

_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(.+?)\r?$", re.IGNORECASE | re.MULTILINE)


def reply_for(code_or_reply: int | str) -> str:
    """``451`` -> the full reply line of :data:`REPLIES`; a string is used as it is."""
    if isinstance(code_or_reply, int):
        return REPLIES.get(code_or_reply, f"{code_or_reply} fault server: scripted reply")
    return code_or_reply


@dataclass
class Fault:
    """What to do instead of the normal answer at one stage of one transaction.

    ``stall``: wait this many seconds before answering; ``until``: wait until this event
    is set (``stall`` then caps the wait). ``reply``: answer this instead of 250.
    ``drop`` (DATA only): take the whole message, then cut the connection, no reply.
    """

    stage: str
    reply: str | None = None
    drop: bool = False
    stall: float | None = None
    until: threading.Event | None = None

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"stage is one of {STAGES}, not {self.stage!r}")
        if self.drop and self.stage != "data":
            raise ValueError("only a message can be dropped after DATA")
        if self.reply is not None and not re.match(r"^[2-5]\d\d[ -]", self.reply + " "):
            raise ValueError(f"a reply starts with a three-digit code: {self.reply!r}")


@dataclass
class _Rule:
    fault: Fault
    recipient: str | None
    message: int | None
    remaining: int | None  # None: always

    def matches(self, stage: str, number: int, recipients: list[str]) -> bool:
        if self.fault.stage != stage or self.remaining == 0:
            return False
        if self.message is not None and self.message != number:
            return False
        if self.recipient is not None:
            wanted = self.recipient.lower()
            return any(wanted in (r.lower(), r.rsplit("@", 1)[0].lower()) for r in recipients)
        return True


@dataclass
class LogEntry:
    """One message the server received in full (``data`` has dot-stuffing undone)."""

    number: int  # the transaction number (n-th MAIL FROM seen)
    received_at: dt.datetime  # aware UTC time it was received
    monotonic: float  # time.monotonic() when it was received
    mail_from: str
    rcpt_tos: list[str]
    message_id: str | None
    data: bytes
    outcome: str = "pending"  # accepted | refused | dropped | abandoned
    reply: str | None = None  # what the server answered (None: nothing)

    def parsed(self) -> email.message.EmailMessage:
        """The message parsed with the standard library's modern policy."""
        msg = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(msg, email.message.EmailMessage)
        return msg


def message_id_of(data: bytes) -> str | None:
    """The Message-ID header of raw message bytes (None when there is none)."""
    head = data.split(b"\r\n\r\n", 1)[0]
    found = _MESSAGE_ID.search(head)
    return found.group(1).strip().decode("ascii", "replace") if found else None


async def _wait(fault: Fault) -> None:
    """Stall as the fault says, without blocking the server's event loop."""
    if fault.stall is None and fault.until is None:
        return
    deadline = None if fault.stall is None else time.monotonic() + fault.stall
    while True:
        if fault.until is not None and fault.until.is_set():
            return
        if deadline is not None and time.monotonic() >= deadline:
            return
        await asyncio.sleep(0.01)


def _closing(smtp: SMTP) -> bool:
    return smtp.transport is None or smtp.transport.is_closing()


class _FaultHandler(_Handler):
    server: FaultSmtpServer

    async def handle_MAIL(
        self, smtp: SMTP, session: Session, envelope: Envelope, address: str, options: list
    ) -> str:
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        envelope.fault_number = self.server._next_number()  # type: ignore[attr-defined]
        return "250 OK"

    async def handle_RCPT(
        self, smtp: SMTP, session: Session, envelope: Envelope, address: str, options: list
    ) -> str:
        number = getattr(envelope, "fault_number", 0)
        fault = self.server._take("rcpt", number, [address])
        if fault is None:
            return await super().handle_RCPT(smtp, session, envelope, address, options)
        await _wait(fault)
        if fault.reply is None:
            return await super().handle_RCPT(smtp, session, envelope, address, options)
        self.server._refused_at_rcpt(number, address, fault.reply)
        if fault.reply.startswith("421"):
            _close_after_reply(smtp)
        return fault.reply

    async def handle_DATA(self, smtp: SMTP, session: Session, envelope: Envelope) -> str:
        number = getattr(envelope, "fault_number", 0)
        data = bytes(envelope.original_content or b"")
        entry = LogEntry(
            number=number,
            received_at=dt.datetime.now(dt.UTC),
            monotonic=time.monotonic(),
            mail_from=envelope.mail_from or "",
            rcpt_tos=list(envelope.rcpt_tos),
            message_id=message_id_of(data),
            data=data,
        )
        self.server._append(entry)
        fault = self.server._take("data", number, entry.rcpt_tos)
        if fault is None:
            return self._accept(entry)
        try:
            await _wait(fault)
        except asyncio.CancelledError:  # the client hung up while the server stalled
            self.server._settle(entry, "abandoned", None)
            raise
        if _closing(smtp):
            self.server._settle(entry, "abandoned", None)
            return "250 OK (never seen: the client is gone)"
        if fault.drop:
            self.server._settle(entry, "dropped", None)
            assert smtp.transport is not None
            smtp.transport.abort()  # the message came in full; no reply ever goes out
            return "250 OK (never seen: the connection is gone)"
        if fault.reply is None or fault.reply.startswith("2"):
            return self._accept(entry, fault.reply)
        self.server._settle(entry, "refused", fault.reply)
        with self.server._lock:
            self.server.rejected.append(_received(entry))
        if fault.reply.startswith("421"):
            _close_after_reply(smtp)
        return fault.reply

    def _accept(self, entry: LogEntry, reply: str | None = None) -> str:
        reply = reply or "250 2.0.0 OK queued"
        self.server._settle(entry, "accepted", reply)
        with self.server._lock:
            self.server.messages.append(_received(entry))
        return reply


def _received(entry: LogEntry) -> ReceivedMessage:
    return ReceivedMessage(mail_from=entry.mail_from, rcpt_tos=entry.rcpt_tos, data=entry.data)


def _close_after_reply(smtp: SMTP) -> None:
    # The reply is written before the loop runs this; close() sends what is buffered.
    transport = smtp.transport
    if transport is not None:
        smtp.loop.call_soon(transport.close)


class _FaultSMTP(_CountingSMTP):
    """The protocol: never greets when the server says so (``greet = False``)."""

    _owner: FaultSmtpServer

    async def _handle_client(self) -> None:
        if self._owner.greet:
            await super()._handle_client()
            return
        # Accept the TCP connection and say nothing, ever, until the client goes away.
        self._owner._silent(self)
        while self.transport is not None and not self.transport.is_closing():
            if not await self._reader.read(4096):
                break
        if self.transport is not None:
            self.transport.close()


class FaultSmtpServer(SmtpTestServer):
    """See the module docstring."""

    handler_class = _FaultHandler
    protocol_class = _FaultSMTP

    def __init__(self, **options: Any) -> None:
        self.greet = True  # False: accept connections and never send the 220 greeting
        self.silent_connections = 0  # connections accepted while not greeting
        self._rules: list[_Rule] = []
        self._entries: list[LogEntry] = []
        self._number = 0
        self.rcpt_refusals: list[tuple[int, str, str]] = []  # (number, address, reply)
        super().__init__(**options)
        self._changed = threading.Condition(self._lock)

    # ------------------------------------------------------------------ the script

    def script(
        self,
        fault: Fault,
        *,
        recipient: str | None = None,
        message: int | None = None,
        times: int | None = 1,
    ) -> None:
        """Add a rule: ``fault`` for ``recipient`` or transaction ``message``."""
        if times is not None and times < 1:
            raise ValueError("times is at least 1 (or None for always)")
        with self._lock:
            self._rules.append(_Rule(fault, recipient, message, times))

    def refuse(
        self,
        stage: str,
        code_or_reply: int | str,
        *,
        recipient: str | None = None,
        message: int | None = None,
        times: int | None = 1,
    ) -> None:
        """Answer ``code_or_reply`` (e.g. ``451`` or ``"554 5.7.1 spam"``) at ``stage``."""
        fault = Fault(stage, reply=reply_for(code_or_reply))
        self.script(fault, recipient=recipient, message=message, times=times)

    def drop_after_data(
        self, *, recipient: str | None = None, message: int | None = None, times: int | None = 1
    ) -> None:
        """Take the whole message, then cut the connection without any reply."""
        self.script(Fault("data", drop=True), recipient=recipient, message=message, times=times)

    def stall(
        self,
        stage: str,
        *,
        seconds: float | None = None,
        until: threading.Event | None = None,
        reply: int | str | None = None,
        recipient: str | None = None,
        message: int | None = None,
        times: int | None = 1,
    ) -> None:
        """Say nothing for ``seconds`` or until ``until`` is set, then answer ``reply``
        (the normal answer when None)."""
        if seconds is None and until is None:
            raise ValueError("stall needs seconds=, until= or both")
        fault = Fault(
            stage,
            reply=None if reply is None else reply_for(reply),
            stall=seconds,
            until=until,
        )
        self.script(fault, recipient=recipient, message=message, times=times)

    def clear_script(self) -> None:
        """Forget every rule (what is logged stays)."""
        with self._lock:
            self._rules.clear()

    # ------------------------------------------------------------------ the log

    def log(self) -> list[LogEntry]:
        """A copy of the log: every message received in full, in arrival order."""
        with self._lock:
            return list(self._entries)

    def accepted(self) -> list[LogEntry]:
        """The logged messages the server said 2xx to."""
        return [e for e in self.log() if e.outcome == "accepted"]

    def count(self, outcome: str | None = None) -> int:
        """How many messages were logged (with that ``outcome``, when given)."""
        with self._lock:
            if outcome is None:
                return len(self._entries)
            return sum(1 for e in self._entries if e.outcome == outcome)

    def wait_for(self, condition: Callable[[list[LogEntry]], bool], timeout: float) -> bool:
        """Wait until ``condition(log)`` is true (re-checked at every change of the log);
        False when ``timeout`` seconds passed first."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not condition(list(self._entries)):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(min(left, 0.5))
            return True

    def reset(self) -> None:
        """Forget the log, the script and the counters."""
        super().reset()
        with self._lock:
            self._rules = []
            self._entries = []
            self._number = 0
            self.rcpt_refusals = []
            self.silent_connections = 0

    # ------------------------------------------------------------------ internals

    def _next_number(self) -> int:
        with self._lock:
            self._number += 1
            return self._number

    def _take(self, stage: str, number: int, recipients: list[str]) -> Fault | None:
        with self._lock:
            for rule in self._rules:
                if rule.matches(stage, number, recipients):
                    if rule.remaining is not None:
                        rule.remaining -= 1
                    return rule.fault
        return None

    def _append(self, entry: LogEntry) -> None:
        with self._changed:
            self._entries.append(entry)
            self._changed.notify_all()

    def _settle(self, entry: LogEntry, outcome: str, reply: str | None) -> None:
        with self._changed:
            entry.outcome, entry.reply = outcome, reply
            self._changed.notify_all()

    def _refused_at_rcpt(self, number: int, address: str, reply: str) -> None:
        with self._lock:
            self.rcpt_refusals.append((number, address, reply))

    def _silent(self, proto: SMTP) -> None:
        with self._lock:
            self.silent_connections += 1
            # Registered like a greeted connection, so stop() cuts it too.
            self._protocols[id(proto)] = proto
