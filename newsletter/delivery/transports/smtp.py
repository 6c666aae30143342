"""SMTP (``smtp://`` and ``smtps://``): a pool of persistent connections to a mail server.

:class:`SmtpTransport` shares up to ``smtp_pool_size`` smtplib connections among any
number of sender threads, with STARTTLS, AUTH, reconnection, RSET after failed
transactions and a :class:`~newsletter.delivery.ratelimit.RateLimiter` (``rate_per_second``,
``rate_per_hour``) called before every message.

Reply codes map onto the outcomes of :mod:`newsletter.delivery.transports.base` by
:func:`classify_code`: 2xx after DATA is ``sent``, 4xx ``retry``, 5xx ``failed``; a
connection dropped or timed out during the transaction is ``retry`` with
``connection_lost`` (the server may hold the message, so the retry reuses the
Message-ID); connection refused, a timeout or a 4xx greeting (or 4xx to AUTH) while
connecting is ``unavailable``, and :meth:`SmtpTransport.probe` tells when the server is
back. A login refused with 5xx (:class:`SmtpAuthError`), a certificate that cannot be
verified, and STARTTLS or AUTH not offered raise
:class:`~newsletter.delivery.transports.base.TransportConfigError`.

With one recipient and a server offering PIPELINING, MAIL, RCPT and DATA go in one write
(RFC 2920). A ``canonical`` message (CRLF line ends, no line starting with ".", as the
assembler makes them, DKIM-signed or not) is written after DATA as it is; anything else
first gets its line ends fixed and is dot-stuffed.

Secrets: the SMTP password is kept out of ``repr``, log records, outcome replies and
exception messages; :func:`~newsletter.config.redact_url` is the form of the URL that may
be shown.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import logging
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, unquote, urlsplit

from newsletter.config import redact_url
from newsletter.delivery.ratelimit import RateLimiter
from newsletter.delivery.transports.base import (
    OutgoingMessage,
    SendOutcome,
    Status,
    Transport,
    TransportClosedError,
    TransportConfigError,
)
from newsletter.delivery.transports.outbox import parse_outbox_url
from newsletter.delivery.transports.registry import (
    URL_HINT,
    register,
    scheme_of,
    unknown_scheme_error,
)
from newsletter.errors import ConfigError
from newsletter.rules.links import is_loopback_host

if TYPE_CHECKING:
    from newsletter.config import Settings
    from newsletter.delivery.dkimsign import DkimSigner

# The logger every transport has always logged to (log filters may name it).
log = logging.getLogger("newsletter.delivery.transport")

#: The schemes parse_smtp_url accepts (outbox:// is handed to the outbox module).
SMTP_URL_SCHEMES = ("smtp", "smtps", "outbox")


class SmtpAuthError(TransportConfigError):
    """The server refused the user name and password (the message never shows them)."""


def classify_code(code: int) -> Status:
    """The status for an SMTP reply code: 2xx sent, 4xx retry, 5xx failed.

    Codes that make no sense at the end of a transaction (1xx, 3xx) are treated as
    temporary: retrying is safer than losing the message.
    """
    if 200 <= code < 300:
        return "sent"
    if 500 <= code < 600:
        return "failed"
    return "retry"


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class TransportConfig:
    """The parts of ``smtp_url``. ``password`` is left out of ``repr``.

    ``scheme`` is ``smtp``, ``smtps`` (TLS from the first byte) or ``outbox``; for
    ``outbox`` only ``outbox`` (the folder) is set. ``verify`` false skips certificate
    checks (for testing against a self-signed server only); ``ca_file`` trusts a
    private certificate authority while keeping the checks on.
    """

    scheme: str
    host: str = ""
    port: int = 0
    username: str = ""
    password: str = field(default="", repr=False)
    starttls: bool = False
    verify: bool = True
    ca_file: Path | None = None
    outbox: Path | None = None

    @property
    def tls(self) -> bool:
        """True when the connection is encrypted (smtps, or smtp with STARTTLS)."""
        return self.scheme == "smtps" or self.starttls

    @property
    def address(self) -> str:
        """``host:port`` (or the outbox folder), for messages."""
        return str(self.outbox) if self.scheme == "outbox" else f"{self.host}:{self.port}"


def _flag(name: str, value: str, shown: str) -> bool:
    text = value.strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"smtp_url {shown}: {name}={value!r} is not true or false", hint=URL_HINT)


def parse_smtp_url(url: str, root: Path | None = None) -> TransportConfig:
    """Parse ``smtp_url`` into a :class:`TransportConfig`; :class:`ConfigError` if bad.

    Forms: ``smtp://[user:pass@]host[:port][?starttls=true]`` (port 25, or 587 with
    STARTTLS), ``smtps://[user:pass@]host[:port]`` (port 465) and ``outbox://PATH``.
    Query parameters: ``starttls``, ``verify`` (default true) and ``ca_file``. User
    name and password are percent-decoded. A password is only accepted over TLS or to
    a loopback host, so it never crosses a network in the clear.

    ``url`` is expected as :func:`newsletter.config.load_settings` leaves it (an outbox
    path is already absolute there); a relative outbox path or ``ca_file`` is taken
    relative to ``root`` (default: the working folder). An ``outbox://`` URL is parsed by
    :func:`~newsletter.delivery.transports.outbox.parse_outbox_url` and gives a config
    with only ``outbox`` set. Other schemes are refused here even when registered: this
    parses the URL forms this module and the outbox understand.
    """
    shown = redact_url(url)
    base = Path.cwd() if root is None else root
    scheme = scheme_of(url)
    if scheme not in SMTP_URL_SCHEMES:
        raise unknown_scheme_error(url, SMTP_URL_SCHEMES)
    if scheme == "outbox":
        return TransportConfig(scheme="outbox", outbox=parse_outbox_url(url, root=base))

    parts = urlsplit(url.strip())
    try:
        port = parts.port
        host = parts.hostname or ""
    except ValueError:
        raise ConfigError(
            f"smtp_url {shown!r}: the port is not a number from 1 to 65535", hint=URL_HINT
        ) from None
    if not host:
        raise ConfigError(f"smtp_url {shown!r} names no host", hint=URL_HINT)
    if parts.path not in ("", "/") or parts.fragment:
        raise ConfigError(
            f"smtp_url {shown!r}: unexpected text after the host and port", hint=URL_HINT
        )
    query: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key not in ("starttls", "verify", "ca_file"):
            raise ConfigError(
                f"smtp_url {shown!r}: unknown option {key!r}",
                hint="the options are starttls=true, verify=false and ca_file=/path/ca.pem",
            )
        query[key] = value
    starttls = _flag("starttls", query.get("starttls", "false"), repr(shown))
    verify = _flag("verify", query.get("verify", "true"), repr(shown))
    if scheme == "smtps" and starttls:
        raise ConfigError(
            f"smtp_url {shown!r}: smtps:// is already encrypted, starttls does not apply",
            hint="use smtps://host:465, or smtp://host:587?starttls=true",
        )
    ca_file: Path | None = None
    if query.get("ca_file"):
        ca_file = Path(query["ca_file"]).expanduser()
        ca_file = ca_file if ca_file.is_absolute() else base / ca_file
        if not ca_file.is_file():
            raise ConfigError(
                f"smtp_url {shown!r}: ca_file {ca_file} does not exist",
                hint="point ca_file at the PEM file of the certificate authority to trust",
            )
    if (ca_file or "verify" in query) and not (scheme == "smtps" or starttls):
        raise ConfigError(
            f"smtp_url {shown!r}: verify and ca_file only apply to encrypted connections",
            hint="add ?starttls=true, or use smtps://",
        )
    username = unquote(parts.username or "")
    password = unquote(parts.password or "")
    if password and not username:
        raise ConfigError(f"smtp_url {shown!r} has a password but no user name", hint=URL_HINT)
    if username and not password:
        raise ConfigError(f"smtp_url {shown!r} has a user name but no password", hint=URL_HINT)
    if username and not (scheme == "smtps" or starttls) and not is_loopback_host(host):
        raise ConfigError(
            f"smtp_url {shown!r} would send the password unencrypted",
            hint="add ?starttls=true (port 587) or use smtps:// (port 465)",
        )
    if port is None:
        port = 465 if scheme == "smtps" else 587 if starttls else 25
    return TransportConfig(
        scheme=scheme,
        host=host,
        port=port,
        username=username,
        password=password,
        starttls=starttls,
        verify=verify,
        ca_file=ca_file,
    )


# --------------------------------------------------------------------------- transport


class _Unavailable(Exception):
    """Raised inside the pool when no connection can be made."""

    def __init__(self, code: int | None, reply: str) -> None:
        super().__init__(reply)
        self.code = code
        self.reply = reply


class _StaleConnection(Exception):
    """A reused connection died before the server accepted anything for this message."""


@dataclass
class _Pooled:
    smtp: smtplib.SMTP
    last_used: float
    uses: int = 0
    broken: bool = False


@functools.cache
def _local_hostname() -> str:
    # smtplib looks the name up for every connection when not given one; once is enough.
    return socket.getfqdn()


class SmtpTransport(Transport):
    """Sends through an SMTP server over a pool of persistent connections.

    - ``pool_size`` connections at most are open at once; a thread that finds all in
      use waits for one. Connections open lazily and stay open between messages.
    - A connection idle for more than ``idle_check_after`` seconds is checked with NOOP
      before reuse; a reused connection that turns out dead at MAIL FROM is replaced and
      the message sent on the new one (nothing can have been delivered on the old one).
    - After a refused transaction the connection is RSET so it stays usable; after a
      dropped one it is discarded and the next send opens a fresh one.
    - ``rate_limiter.acquire()`` is called before every message.
    """

    name = "smtp"

    def __init__(
        self,
        config: TransportConfig,
        *,
        pool_size: int = 2,
        timeout: float = 30.0,
        rate_limiter: RateLimiter | None = None,
        signer: DkimSigner | None = None,
        idle_check_after: float = 30.0,
        local_hostname: str | None = None,
    ) -> None:
        if config.scheme not in ("smtp", "smtps"):
            raise ValueError(f"SmtpTransport needs an smtp:// or smtps:// config, not {config}")
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        self.config = config
        self.pool_size = pool_size
        self.timeout = timeout
        self.rate_limiter = rate_limiter or RateLimiter()
        self._prepaid = threading.local()  # slots taken by reserve(), per sender thread
        self.signer = signer
        self.idle_check_after = idle_check_after
        self.local_hostname = local_hostname
        self.connections_opened = 0  # how many connections were made (for tests, stats)
        self._idle: list[_Pooled] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(pool_size)
        self._closed = False
        self._ssl_context = self._make_ssl_context() if config.tls else None

    def __repr__(self) -> str:
        return (
            f"SmtpTransport({self.config.scheme}://{self.config.address}, "
            f"user={self.config.username!r}, pool_size={self.pool_size})"
        )

    # ----------------------------------------------------------------- public API

    def probe(self) -> SendOutcome:
        """Connect (and log in) without sending: ``sent`` when the server is usable.

        A paused send calls this to learn whether the server is back; answers
        ``unavailable`` otherwise, and raises :class:`TransportConfigError` like send.
        """
        with self._slot():
            try:
                conn = self._checkout()
            except _Unavailable as exc:
                return SendOutcome("unavailable", exc.code, exc.reply)
            self._checkin(conn)
        return SendOutcome("sent", 250, f"connected to {self.config.address}")

    def close(self) -> None:
        """Say QUIT on every idle connection; connections in use close when returned."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            self._quit(conn)

    # ----------------------------------------------------------------- delivery

    @property
    def paced(self) -> bool:
        """True when ``rate_per_second`` or ``rate_per_hour`` is set."""
        return not self.rate_limiter.unlimited

    def reserve(self) -> None:
        """Take the rate-limit slot of this thread's next message now (see Transport)."""
        self.rate_limiter.acquire()
        self._prepaid.n = getattr(self._prepaid, "n", 0) + 1

    def _deliver(self, message: OutgoingMessage) -> SendOutcome:
        if self._closed:
            raise TransportClosedError("the SMTP transport was closed")
        if getattr(self._prepaid, "n", 0) > 0:
            self._prepaid.n -= 1  # reserved before the fence
        else:
            self.rate_limiter.acquire()
        with self._slot():
            for attempt in range(2):
                try:
                    # After a stale connection, take a new one: other idle connections
                    # probably died the same way (a server restart kills them all).
                    conn = self._checkout(fresh=attempt > 0)
                except _Unavailable as exc:
                    log.warning("SMTP %s unavailable: %s", self.config.address, exc.reply)
                    return SendOutcome("unavailable", exc.code, exc.reply)
                try:
                    outcome = self._transaction(conn, message)
                except _StaleConnection:
                    log.info("SMTP connection to %s went stale; reconnecting", self.config.address)
                    self._discard(conn)
                    continue
                except BaseException:
                    self._discard(conn)
                    raise
                self._checkin(conn)
                log.log(
                    logging.DEBUG if outcome.sent else logging.INFO,
                    "SMTP %s %s: %s%s%s",
                    message.message_id,
                    outcome.status,
                    f"{outcome.code} " if outcome.code else "",
                    outcome.reply,
                    " (connection lost)" if outcome.connection_lost else "",
                )
                return outcome
        raise AssertionError("unreachable: a fresh connection is never stale")

    def _transaction(self, conn: _Pooled, message: OutgoingMessage) -> SendOutcome:
        envelope_from, recipients, body = message.envelope_from, message.recipients, message.data
        smtp = conn.smtp
        reused = conn.uses > 0
        conn.uses += 1
        options: list[str] = []
        if smtp.has_extn("size"):
            options.append(f"SIZE={len(body)}")
        if not body.isascii() and smtp.has_extn("8bitmime"):
            options.append("BODY=8BITMIME")
        if not (envelope_from + "".join(recipients)).isascii():
            if not smtp.has_extn("smtputf8"):
                return SendOutcome(
                    "failed", None, "the server does not accept non-ASCII addresses (SMTPUTF8)"
                )
            options.append("SMTPUTF8")

        stage = "MAIL FROM"
        try:
            if len(recipients) == 1 and smtp.has_extn("pipelining"):
                # RFC 2920: MAIL, RCPT and DATA in one write, three replies in one read;
                # one round trip instead of three per message.
                smtp.send(
                    f"MAIL FROM:<{envelope_from}>{''.join(' ' + o for o in options)}\r\n"
                    f"RCPT TO:<{recipients[0]}>\r\nDATA\r\n"
                )
                mail = smtp.getreply()
                stage = "RCPT TO"
                rcpt = smtp.getreply()
                stage = "DATA"
                data = smtp.getreply()
                if mail[0] != 250:
                    return self._after_pipelined_refusal(conn, data, mail)
                if rcpt[0] not in (250, 251):
                    if rcpt[0] != 421:
                        return self._after_pipelined_refusal(conn, data, rcpt)
                    return self._refused(conn, rcpt[0], rcpt[1])
                if data[0] != 354:
                    return self._refused(conn, data[0], data[1])
                code, resp = self._send_data(smtp, body, message.canonical)
                if 200 <= code < 300:
                    return SendOutcome("sent", code, self._text(resp))
                return self._refused(conn, code, resp)
            code, resp = smtp.mail(envelope_from, options)
            if code != 250:
                return self._refused(conn, code, resp)
            stage = "RCPT TO"
            refused: dict[str, tuple[int, str]] = {}
            for rcpt_to in recipients:
                code, resp = smtp.rcpt(rcpt_to)
                if code not in (250, 251):
                    refused[rcpt_to] = (code, self._text(resp))
                if code == 421:  # the server is closing this connection
                    return self._refused(conn, code, resp)
            if len(refused) == len(recipients):
                return self._all_refused(conn, refused)
            stage = "DATA"
            smtp.putcmd("data")
            code, resp = smtp.getreply()
            if code != 354:  # DATA itself refused
                return self._refused(conn, code, resp)
            code, resp = self._send_data(smtp, body, message.canonical)
            if 200 <= code < 300:
                return SendOutcome("sent", code, self._text(resp), refused=refused)
            return self._refused(conn, code, resp)
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            conn.broken = True
            if reused and stage == "MAIL FROM":
                raise _StaleConnection from exc
            return SendOutcome(
                "retry",
                None,
                f"connection to {self.config.address} lost during {stage}: {self._error(exc)}",
                connection_lost=True,
            )

    @staticmethod
    def _send_data(smtp: smtplib.SMTP, message: bytes, canonical: bool) -> tuple[int, bytes]:
        """Send the message after a 354 and read the final reply.

        smtplib's ``data()`` runs two regular expressions over every message (line
        endings, then dot-stuffing), which cost more than the rest of the send. A
        ``canonical`` message (the assembler's, signed or not) needs neither and goes as it is;
        for others plain byte counts and replaces do (the regex path stays for anything
        with bare line feeds).
        """
        if canonical:
            smtp.send(message + b".\r\n")
            return smtp.getreply()
        crlf = message.count(b"\r\n")
        if message.count(b"\n") != crlf or message.count(b"\r") != crlf:
            message = smtplib._fix_eols(message)  # type: ignore[attr-defined]
        if message.startswith(b"."):
            message = b"." + message
        if b"\r\n." in message:  # the assembler's quoted-printable avoids these
            message = message.replace(b"\r\n.", b"\r\n..")
        if not message.endswith(b"\r\n"):
            message += b"\r\n"
        smtp.send(message + b".\r\n")
        return smtp.getreply()

    def _after_pipelined_refusal(
        self, conn: _Pooled, data_reply: tuple[int, bytes], refusal: tuple[int, bytes]
    ) -> SendOutcome:
        """MAIL or RCPT was refused in a pipelined transaction; end it and report that."""
        if data_reply[0] == 354:
            # The server wants the message although the envelope was refused: ending it
            # would deliver an empty message, so drop the connection instead.
            conn.broken = True
            return SendOutcome(classify_code(refusal[0]), refusal[0], self._text(refusal[1]))
        return self._refused(conn, refusal[0], refusal[1])

    def _refused(self, conn: _Pooled, code: int, resp: bytes | str) -> SendOutcome:
        self._reset(conn, code)
        return SendOutcome(classify_code(code), code, self._text(resp))

    def _all_refused(self, conn: _Pooled, refused: dict[str, tuple[int, str]]) -> SendOutcome:
        codes = [code for code, _ in refused.values()]
        # Several recipients all refused: permanent only when every refusal is.
        status: Status = "failed" if all(500 <= c < 600 for c in codes) else "retry"
        first = next(iter(refused.values()))
        chosen = first if status == "failed" else next(r for r in refused.values() if r[0] < 500)
        self._reset(conn, chosen[0])
        return SendOutcome(status, chosen[0], chosen[1])

    def _reset(self, conn: _Pooled, code: int) -> None:
        """End a refused transaction so the connection can carry the next message."""
        if code == 421:  # "service closing": the server hangs up after this reply
            conn.broken = True
            return
        try:
            rset_code, _ = conn.smtp.rset()
        except (smtplib.SMTPException, OSError):
            conn.broken = True
            return
        if rset_code != 250:
            conn.broken = True

    # ----------------------------------------------------------------- the pool

    @contextlib.contextmanager
    def _slot(self) -> Iterator[None]:
        self._slots.acquire()
        try:
            yield
        finally:
            self._slots.release()

    def _checkout(self, fresh: bool = False) -> _Pooled:
        """An open connection: an idle one if any still works (unless ``fresh``), else new."""
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle and not fresh else None
            if conn is None:
                return self._connect()
            if time.monotonic() - conn.last_used <= self.idle_check_after:
                return conn
            # Long idle: the server may have timed the connection out; NOOP is cheaper
            # than finding out at MAIL FROM.
            try:
                code, _ = conn.smtp.noop()
            except (smtplib.SMTPException, OSError):
                code = 0
            if code == 250:
                return conn
            self._discard(conn)

    def _checkin(self, conn: _Pooled) -> None:
        conn.last_used = time.monotonic()
        if conn.broken or conn.smtp.sock is None:
            self._discard(conn)
            return
        with self._lock:
            if not self._closed:
                self._idle.append(conn)
                return
        self._quit(conn)

    def _discard(self, conn: _Pooled) -> None:
        with contextlib.suppress(Exception):
            conn.smtp.close()

    def _quit(self, conn: _Pooled) -> None:
        try:
            conn.smtp.quit()
        except (smtplib.SMTPException, OSError):
            self._discard(conn)

    def _connect(self) -> _Pooled:
        """Open, greet, STARTTLS and log in; :class:`_Unavailable` if the server is down."""
        cfg = self.config
        hostname = self.local_hostname or _local_hostname()
        try:
            smtp: smtplib.SMTP
            if cfg.scheme == "smtps":
                smtp = smtplib.SMTP_SSL(
                    cfg.host,
                    cfg.port,
                    local_hostname=hostname,
                    timeout=self.timeout,
                    context=self._ssl_context,
                )
            else:
                smtp = smtplib.SMTP(
                    cfg.host, cfg.port, local_hostname=hostname, timeout=self.timeout
                )
        except smtplib.SMTPConnectError as exc:
            raise self._connect_refused(exc.smtp_code, exc.smtp_error) from None
        except ssl.SSLError as exc:
            raise self._tls_error(exc) from None
        except OSError as exc:  # refused, unreachable, timed out, name not found
            raise _Unavailable(
                None, f"cannot connect to {cfg.address}: {self._error(exc)}"
            ) from None
        try:
            self._start_session(smtp)
        except BaseException:
            with contextlib.suppress(Exception):
                smtp.close()
            raise
        with self._lock:
            self.connections_opened += 1
        log.info(
            "SMTP connected to %s (%s%s)",
            cfg.address,
            "TLS" if cfg.tls else "no TLS",
            f", user {cfg.username}" if cfg.username else "",
        )
        return _Pooled(smtp, time.monotonic())

    def _start_session(self, smtp: smtplib.SMTP) -> None:
        cfg = self.config
        try:
            smtp.ehlo_or_helo_if_needed()
            if cfg.starttls:
                if not smtp.has_extn("starttls"):
                    raise TransportConfigError(
                        f"the SMTP server {cfg.address} does not offer STARTTLS",
                        hint="remove ?starttls=true, or use smtps:// if the port expects TLS",
                    )
                smtp.starttls(context=self._ssl_context)
                smtp.ehlo()
            if cfg.username:
                if not smtp.has_extn("auth"):
                    raise TransportConfigError(
                        f"the SMTP server {cfg.address} does not offer AUTH (login)",
                        hint="remove user:password from smtp_url, or use the submission "
                        "port with ?starttls=true",
                    )
                smtp.login(cfg.username, cfg.password)
        except smtplib.SMTPAuthenticationError as exc:
            if 400 <= exc.smtp_code < 500:
                raise _Unavailable(exc.smtp_code, self._text(exc.smtp_error)) from None
            raise SmtpAuthError(
                f"the SMTP server {cfg.address} refused the login of user "
                f"{cfg.username!r}: {exc.smtp_code} {self._text(exc.smtp_error)}",
                hint="check the user name and password in smtp_url",
            ) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise TransportConfigError(
                f"the SMTP server {cfg.address}: {self._error(exc)}",
                hint="check the smtp_url options",
            ) from None
        except smtplib.SMTPResponseException as exc:  # EHLO or STARTTLS refused
            if 400 <= exc.smtp_code < 500:
                raise self._connect_refused(exc.smtp_code, exc.smtp_error) from None
            raise TransportConfigError(
                f"the SMTP server {cfg.address} refused the session: "
                f"{exc.smtp_code} {self._text(exc.smtp_error)}",
                hint="check the smtp_url (port, starttls, user)",
            ) from None
        except ssl.SSLError as exc:
            raise self._tls_error(exc) from None
        except OSError as exc:  # includes SMTPServerDisconnected
            raise _Unavailable(
                None, f"connection to {cfg.address} lost while opening: {self._error(exc)}"
            ) from None

    def _connect_refused(self, code: int, resp: bytes | str) -> _Unavailable:
        return _Unavailable(code, self._text(resp))

    def _tls_error(self, exc: ssl.SSLError) -> TransportConfigError:
        if isinstance(exc, ssl.SSLCertVerificationError):
            return TransportConfigError(
                f"the certificate of the SMTP server {self.config.address} cannot be "
                f"verified: {exc.verify_message or exc.reason}",
                hint="fix the server's certificate, or add ?ca_file=/path/ca.pem to trust "
                "its authority (?verify=false only for testing)",
            )
        return TransportConfigError(
            f"TLS with the SMTP server {self.config.address} failed: {exc.reason or exc}",
            hint="smtps:// is for implicit TLS (port 465); port 587 needs "
            "smtp://...:587?starttls=true",
        )

    def _make_ssl_context(self) -> ssl.SSLContext:
        cfg = self.config
        try:
            context = ssl.create_default_context(cafile=str(cfg.ca_file) if cfg.ca_file else None)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f"smtp_url ca_file {cfg.ca_file} is not a usable PEM certificate: {exc}",
                hint="point ca_file at the PEM certificate of the authority to trust",
            ) from None
        if not cfg.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    # ----------------------------------------------------------------- text hygiene

    def _text(self, resp: bytes | str) -> str:
        """Reply text, decoded, on one line, with any trace of the password removed."""
        text = resp.decode("utf-8", "replace") if isinstance(resp, bytes) else str(resp)
        text = " ".join(text.split())
        return _scrub(text, self.config.password)

    def _error(self, exc: BaseException) -> str:
        return _scrub(str(exc) or type(exc).__name__, self.config.password)


def _scrub(text: str, secret: str) -> str:
    """``text`` without ``secret`` or the base64 forms AUTH would carry it in."""
    if not secret:
        return text
    # AUTH LOGIN carries the password alone in base64.
    forms = {secret, base64.b64encode(secret.encode("utf-8")).decode("ascii")}
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, "***")
    return text


@register("smtp", "smtps")
def open_smtp(url: str, settings: Settings) -> SmtpTransport:
    """The SMTP transport ``url`` names, with the pool, timeout and rate limit of ``settings``.

    Opens no connection yet (the first send does).
    """
    return SmtpTransport(
        parse_smtp_url(url, root=settings.root),
        pool_size=settings.smtp_pool_size,
        timeout=settings.smtp_timeout,
        rate_limiter=RateLimiter(settings.rate_per_second, settings.rate_per_hour),
    )
