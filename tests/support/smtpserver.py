"""A real, controllable SMTP server for tests (aiosmtpd on 127.0.0.1).

It speaks real SMTP on a free loopback port, records what it is given and can be told how
to misbehave, so delivery code is tested against a server, not a mock.

Use it through the ``smtp_server`` fixture (``tests/plugin.py``), or directly::

    server = SmtpTestServer()            # plain SMTP, no AUTH
    server.start()
    ...  # send to smtp://127.0.0.1:{server.port}  (server.url)
    server.stop()

Constructor options (keyword only):

``auth={"user": "password"}``
    Offer AUTH PLAIN/LOGIN, accept only these logins and refuse MAIL before a login
    (530). AUTH is allowed over plain text here (``auth_require_tls=False``) because
    the server only listens on loopback.
``tls="starttls"`` / ``tls="implicit"``, with ``certificate=(cert_pem, key_pem)``
    Offer STARTTLS (``require_starttls=True`` refuses MAIL before it), or speak TLS
    from the first byte (smtps). ``make_certificate`` writes a self-signed
    certificate for 127.0.0.1/localhost; the client trusts it with ``?ca_file=``.

What it records (read these from the test thread):

``messages``        accepted messages, a list of :class:`ReceivedMessage`
``rejected``        messages that got a chosen failure reply to DATA
``dropped``         messages received in full whose connection was then cut
``sessions``        how many client connections said EHLO/HELO (the probe made
                    by aiosmtpd's start-up is not counted)
``max_concurrent``  the most such connections open at the same time
``logins``          user names that logged in successfully

How to make it misbehave:

- a recipient whose local part is ``temp-fail`` gets ``451 4.2.1 ...`` at RCPT and
  ``perm-fail`` gets ``550 5.1.1 ...``; ``rcpt_replies[local_part_or_address] = "452 ..."``
  adds more rules;
- ``fail_next_data(n, "451 4.3.0 Try again")`` answers the next ``n`` DATA with that;
- ``drop_next_data(n)`` takes the next ``n`` messages in full, then closes the
  connection without any reply (the "did it arrive?" case);
- ``delay_next_data(seconds)`` waits that long before replying to the next DATA (for
  client timeouts); ``delay_all = seconds`` slows every DATA (to stop a send mid-way);
- ``pipelining = False`` stops advertising PIPELINING (the client's slow path);
- ``stop()`` closes every client connection and the listener (server down);
  ``start()`` again listens on the same port (server back);
- ``reset()`` forgets the records and the queued misbehaviour.
"""

from __future__ import annotations

import asyncio
import email
import email.message
import email.policy
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

#: aiosmtpd warns about AUTH without TLS; on loopback that is what the tests want.
AUTH_WARNING_FILTER = "ignore:Requiring AUTH while not requiring TLS:UserWarning"

DEFAULT_RCPT_REPLIES = {
    "temp-fail": "451 4.2.1 Mailbox busy, try again later",
    "perm-fail": "550 5.1.1 No such user here",
}


@dataclass
class ReceivedMessage:
    """One message as the server received it (``data`` has dot-stuffing undone)."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    tls: bool = False
    login: str | None = None
    started: float = 0.0  # time.monotonic() when its MAIL FROM arrived (it went on the wire)
    received: float = 0.0  # time.monotonic() when its data had arrived

    def parsed(self) -> email.message.EmailMessage:
        """The message parsed with the standard library's modern policy."""
        msg = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(msg, email.message.EmailMessage)
        return msg


@dataclass
class _Plan:
    """Queued misbehaviour, shared between the test thread and the server's loop."""

    data_failures: list[str] = field(default_factory=list)
    data_drops: int = 0
    data_delays: list[float] = field(default_factory=list)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """Write a self-signed certificate for 127.0.0.1 and localhost; (cert, key) paths."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


class _Handler:
    def __init__(self, server: SmtpTestServer) -> None:
        self.server = server

    async def handle_EHLO(
        self, smtp: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list
    ) -> list:
        session.host_name = hostname
        if self.server.pipelining:
            # aiosmtpd reads commands in order from the stream, so pipelined commands
            # work; advertising it lets clients use the fast path (RFC 2920).
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses

    async def handle_MAIL(
        self, smtp: SMTP, session: Session, envelope: Envelope, address: str, options: list
    ) -> str:
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        envelope.started = time.monotonic()  # type: ignore[attr-defined]
        return "250 OK"

    async def handle_RCPT(
        self, smtp: SMTP, session: Session, envelope: Envelope, address: str, options: list
    ) -> str:
        reply = self.server._rcpt_reply(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, smtp: SMTP, session: Session, envelope: Envelope) -> str:
        received = ReceivedMessage(
            mail_from=envelope.mail_from or "",
            rcpt_tos=list(envelope.rcpt_tos),
            data=bytes(envelope.original_content or b""),
            tls=smtp._tls_protocol is not None or self.server.tls == "implicit",
            login=session.auth_data.login.decode() if session.auth_data else None,
            started=getattr(envelope, "started", 0.0),
            received=time.monotonic(),
        )
        action, value = self.server._data_action()
        if action == "delay":
            await asyncio.sleep(float(value))
        if action == "drop":
            with self.server._lock:
                self.server.dropped.append(received)
            # Cut the connection with no reply: the client cannot know the message came.
            assert smtp.transport is not None
            smtp.transport.abort()
            return "250 OK (never seen: the connection is gone)"
        if action == "fail":
            with self.server._lock:
                self.server.rejected.append(received)
            return str(value)
        with self.server._lock:
            self.server.messages.append(received)
        return "250 2.0.0 OK queued"


class _CountingSMTP(SMTP):
    """aiosmtpd's SMTP that tells the test server about greeted connections."""

    def __init__(self, owner: SmtpTestServer, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._owner = owner

    async def smtp_EHLO(self, hostname: str) -> None:
        self._owner._greeted(self)
        await super().smtp_EHLO(hostname)

    async def smtp_HELO(self, hostname: str) -> None:
        self._owner._greeted(self)
        await super().smtp_HELO(hostname)

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner._gone(self)
        super().connection_lost(exc)


class _Controller(Controller):
    def __init__(self, owner: SmtpTestServer, *args: Any, **kwargs: Any) -> None:
        self._owner = owner
        super().__init__(*args, **kwargs)

    def factory(self) -> SMTP:
        return self._owner.protocol_class(self._owner, self.handler, **self.SMTP_kwargs)


class SmtpTestServer:
    """See the module docstring."""

    #: The aiosmtpd handler and protocol classes; a subclass (``fault_smtp``) swaps them.
    handler_class: type[_Handler] = _Handler
    protocol_class: type[_CountingSMTP] = _CountingSMTP

    def __init__(
        self,
        *,
        port: int | None = None,
        auth: dict[str, str] | None = None,
        tls: str | None = None,
        certificate: tuple[Path, Path] | None = None,
        require_starttls: bool = False,
    ) -> None:
        if tls not in (None, "starttls", "implicit"):
            raise ValueError("tls is None, 'starttls' or 'implicit'")
        if tls and certificate is None:
            raise ValueError("tls needs certificate=(cert_pem, key_pem)")
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.auth = dict(auth or {})
        self.tls = tls
        self.certificate = certificate
        self.require_starttls = require_starttls
        self.rcpt_replies: dict[str, str] = dict(DEFAULT_RCPT_REPLIES)
        self.delay_all = 0.0  # seconds to wait before accepting every DATA (a slow server)
        self.pipelining = True  # advertise PIPELINING in the EHLO reply
        self._lock = threading.Lock()
        self._controller: _Controller | None = None
        self._live: set[int] = set()
        self._protocols: dict[int, SMTP] = {}
        self.reset()

    # ------------------------------------------------------------------ control

    @property
    def url(self) -> str:
        """``smtp://127.0.0.1:PORT`` (``smtps://`` for implicit TLS), without a login."""
        scheme = "smtps" if self.tls == "implicit" else "smtp"
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._controller is not None

    def start(self) -> SmtpTestServer:
        """Listen on :attr:`port` (the same port after a :meth:`stop`)."""
        if self._controller is not None:
            return self
        server_context = None
        if self.certificate:
            server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            server_context.load_cert_chain(*map(str, self.certificate))
        kwargs: dict[str, Any] = {
            "hostname": self.host,
            "port": self.port,
            "server_hostname": "smtp.test.invalid",
            "ready_timeout": 5.0,
        }
        if self.tls == "implicit":
            kwargs["ssl_context"] = server_context
        if self.tls == "starttls":
            kwargs["tls_context"] = server_context
            kwargs["require_starttls"] = self.require_starttls
        if self.auth:
            kwargs.update(
                authenticator=self._authenticate,
                auth_required=True,
                auth_require_tls=False,  # loopback only; lets tests log in without TLS
            )
        controller = _Controller(self, self.handler_class(self), **kwargs)
        controller.start()
        self._controller = controller
        with self._lock:  # forget the start-up probe connection
            self._live.clear()
        return self

    def stop(self) -> None:
        """Close every client connection, then stop listening (like a server going down)."""
        controller = self._controller
        if controller is None:
            return
        self._controller = None

        async def close_all() -> None:
            with self._lock:
                protocols = list(self._protocols.values())
            for proto in protocols:
                if proto.transport is not None:
                    proto.transport.abort()
            await asyncio.sleep(0)

        asyncio.run_coroutine_threadsafe(close_all(), controller.loop).result(timeout=5)
        controller.stop()
        with self._lock:
            self._live.clear()
            self._protocols.clear()

    def restart(self) -> None:
        """:meth:`stop`, then :meth:`start` on the same port."""
        self.stop()
        self.start()

    def reset(self) -> None:
        """Forget recorded messages, counters and queued misbehaviour."""
        with self._lock:
            self.messages: list[ReceivedMessage] = []
            self.rejected: list[ReceivedMessage] = []
            self.dropped: list[ReceivedMessage] = []
            self.logins: list[str] = []
            self.sessions = 0
            self.max_concurrent = 0
            self._plan = _Plan()
            self._live.clear()

    def fail_next_data(self, count: int = 1, reply: str = "451 4.3.0 Try again later") -> None:
        """Answer the next ``count`` DATA commands with ``reply`` (e.g. ``"554 ..."``)."""
        with self._lock:
            self._plan.data_failures.extend([reply] * count)

    def drop_next_data(self, count: int = 1) -> None:
        """Take the next ``count`` messages in full, then cut the connection, no reply."""
        with self._lock:
            self._plan.data_drops += count

    def delay_next_data(self, seconds: float) -> None:
        """Wait ``seconds`` before answering the next DATA."""
        with self._lock:
            self._plan.data_delays.append(seconds)

    def __enter__(self) -> SmtpTestServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ internals

    def _rcpt_reply(self, address: str) -> str | None:
        local = address.rsplit("@", 1)[0].lower()
        with self._lock:
            return self.rcpt_replies.get(address.lower()) or self.rcpt_replies.get(local)

    def _data_action(self) -> tuple[str, object]:
        with self._lock:
            plan = self._plan
            if plan.data_delays:
                return "delay", plan.data_delays.pop(0)
            if plan.data_drops:
                plan.data_drops -= 1
                return "drop", None
            if plan.data_failures:
                return "fail", plan.data_failures.pop(0)
            if self.delay_all:
                return "delay", self.delay_all
        return "accept", None

    def _authenticate(
        self, smtp: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user, password = data.login.decode(), data.password.decode()
        ok = user in self.auth and self.auth[user] == password
        if ok:
            with self._lock:
                self.logins.append(user)
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

    def _greeted(self, proto: SMTP) -> None:
        with self._lock:
            key = id(proto)
            if key not in self._live:
                self._live.add(key)
                self._protocols[key] = proto
                self.sessions += 1
                self.max_concurrent = max(self.max_concurrent, len(self._live))

    def _gone(self, proto: SMTP) -> None:
        with self._lock:
            self._live.discard(id(proto))
            self._protocols.pop(id(proto), None)


def received(server: SmtpTestServer) -> dict[str, list[email.message.EmailMessage]]:
    """The messages ``server`` accepted, parsed, by envelope recipient."""
    out: dict[str, list[email.message.EmailMessage]] = {}
    for m in server.messages:
        for rcpt in m.rcpt_tos:
            out.setdefault(rcpt, []).append(m.parsed())
    return out
