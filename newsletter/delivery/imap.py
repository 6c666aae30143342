"""Reading a mailbox over IMAP (``newsletter bounces fetch --imap``), with stdlib imaplib.

This module only talks IMAP: it lists the messages waiting in one folder, downloads one
at a time without marking it read (``BODY.PEEK[]``), and files the ones it is told are
done (``MOVE``, or ``COPY`` + ``\\Deleted`` + ``UID EXPUNGE`` of exactly those UIDs on a
server without ``MOVE``) or flags them (``\\Seen`` plus a keyword). What a message means
is decided elsewhere (:func:`newsletter.services.bounces.fetch_imap`).

Network mail protocols live in ``delivery`` (like ``smtplib`` and ``aiosmtpd``); an
import-linter contract keeps ``imaplib`` out of every other package.

The password is kept out of ``repr``, logs and error messages: every text that comes
back from the server or from the socket layer is scrubbed of it before it is shown.
TLS is verified against the system's authorities plus, optionally, one CA file; there
is no switch to turn verification off.
"""

from __future__ import annotations

import base64
import imaplib
import logging
import re
import ssl
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from newsletter.config import redact_url
from newsletter.errors import ConfigError, MissingSettingError, NewsletterError
from newsletter.rules.links import is_loopback_host

log = logging.getLogger("newsletter.delivery.imap")

URL_HINT = (
    "write bounce_imap_url as imaps://user@host:993/INBOX, or "
    "imap://user@host:143/INBOX?starttls=true (the password goes in bounce_imap_password)"
)


class ImapError(NewsletterError):
    """The IMAP server refused something, or answered what we cannot use."""


class ImapLoginError(ImapError):
    """The IMAP server refused the user name or password."""


class ImapTlsError(ImapError):
    """TLS with the IMAP server failed (most often: its certificate is not trusted)."""


class ImapUnavailableError(ImapError):
    """The IMAP server cannot be reached, or the connection was lost."""


@dataclass(frozen=True)
class ImapConfig:
    """Where the mailbox is and how to log in. ``password`` is left out of ``repr``."""

    host: str
    port: int
    username: str
    folder: str = "INBOX"
    implicit_tls: bool = True  # imaps://; else imap:// with (or, on loopback, without) STARTTLS
    starttls: bool = False
    password: str = field(default="", repr=False)
    ca_file: Path | None = None
    timeout: float = 60.0

    @property
    def address(self) -> str:
        """``host:port``, for messages."""
        return f"{self.host}:{self.port}"

    @property
    def tls(self) -> bool:
        """True when the connection is encrypted."""
        return self.implicit_tls or self.starttls


def parse_imap_url(
    url: str,
    *,
    password: str,
    ca_file: str | Path = "",
    timeout: float = 60.0,
    root: Path | None = None,
) -> ImapConfig:
    """Parse ``bounce_imap_url`` into an :class:`ImapConfig`; :class:`ConfigError` if bad.

    Forms: ``imaps://user@host[:993][/FOLDER]`` and
    ``imap://user@host[:143][/FOLDER][?starttls=true]``; the folder is percent-decoded
    (default ``INBOX``), so is the user name (``user%40example.org``). A password in the
    URL is refused: URLs end up in shell histories, process lists and messages, so it
    comes from ``bounce_imap_password`` only. Plain ``imap://`` without STARTTLS is only
    accepted to a loopback host, so the password never crosses a network in the clear.
    ``ca_file`` (relative to ``root``) is trusted besides the system's authorities.
    """
    shown = redact_url(url.strip())
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in ("imap", "imaps"):
        raise ConfigError(
            f"bounce_imap_url {shown!r} is not an imap:// or imaps:// address", URL_HINT
        )
    try:
        host, port = parts.hostname or "", parts.port
    except ValueError:
        raise ConfigError(
            f"bounce_imap_url {shown!r}: the port is not a number from 1 to 65535", URL_HINT
        ) from None
    if not host:
        raise ConfigError(f"bounce_imap_url {shown!r} names no host", URL_HINT)
    if parts.password is not None:
        raise ConfigError(
            f"bounce_imap_url {shown!r} holds a password",
            hint="remove it from the URL and set bounce_imap_password (best as the "
            "environment variable NEWSLETTER_BOUNCE_IMAP_PASSWORD)",
        )
    username = unquote(parts.username or "")
    if not username:
        raise ConfigError(f"bounce_imap_url {shown!r} names no user", URL_HINT)
    starttls = False
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key != "starttls":
            raise ConfigError(
                f"bounce_imap_url {shown!r}: unknown option {key!r}",
                hint="the only option is ?starttls=true (for imap://, port 143)",
            )
        text = value.strip().lower()
        if text not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            raise ConfigError(
                f"bounce_imap_url {shown!r}: starttls={value!r} is not true or false",
                hint="write ?starttls=true",
            )
        starttls = text in ("1", "true", "yes", "on")
    if scheme == "imaps" and starttls:
        raise ConfigError(
            f"bounce_imap_url {shown!r}: imaps:// is already encrypted, starttls does not apply",
            hint="use imaps://host:993/INBOX, or imap://host:143/INBOX?starttls=true",
        )
    if scheme == "imap" and not starttls and not is_loopback_host(host):
        raise ConfigError(
            f"bounce_imap_url {shown!r} would send the password unencrypted",
            hint="use imaps://host:993/..., or add ?starttls=true",
        )
    if parts.fragment:
        raise ConfigError(f"bounce_imap_url {shown!r}: unexpected #fragment", URL_HINT)
    folder = unquote(parts.path.lstrip("/")) or "INBOX"
    if not password:
        raise MissingSettingError("bounce_imap_password", "to log in to the IMAP server")
    ca_path: Path | None = None
    if ca_file:
        ca_path = Path(ca_file).expanduser()
        if not ca_path.is_absolute():
            ca_path = (root or Path.cwd()) / ca_path
        if not ca_path.is_file():
            raise ConfigError(
                f"bounce_imap_ca_file {ca_path} does not exist",
                hint="point it at the PEM file of the certificate authority to trust",
            )
    return ImapConfig(
        host=host,
        port=port or (993 if scheme == "imaps" else 143),
        username=username,
        folder=folder,
        implicit_tls=scheme == "imaps",
        starttls=starttls,
        password=password,
        ca_file=ca_path,
        timeout=timeout,
    )


# --------------------------------------------------------------------------- wire format


def mailbox_name(name: str) -> str:
    """``name`` as an IMAP mailbox argument: modified UTF-7 (RFC 3501 5.1.3), quoted."""
    if not name or any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise ConfigError(f"IMAP folder name {name!r} is empty or holds a control character")
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            out.append("&" + base64.b64encode(raw).decode().rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    encoded = "".join(out)
    return '"' + encoded.replace("\\", "\\\\").replace('"', '\\"') + '"'


def uid_set(uids: Iterable[int]) -> str:
    """``1:3,7`` for UIDs 1, 2, 3, 7: keeps the command short for a long list."""
    ordered = sorted(set(uids))
    runs: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        runs.append(str(ordered[i]) if i == j else f"{ordered[i]}:{ordered[j]}")
        i = j + 1
    return ",".join(runs)


_FETCH_UID = re.compile(rb"\bUID (\d+)")
_FETCH_SIZE = re.compile(rb"\bRFC822\.SIZE (\d+)")
_KEYWORD = re.compile(r"^\$?[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True)
class Waiting:
    """A message waiting in the folder: its UID and size (bytes, as the server says)."""

    uid: int
    size: int


# --------------------------------------------------------------------------- the mailbox


class ImapMailbox:
    """One logged-in connection with the configured folder selected (read-write).

    Use as a context manager; every method raises an :class:`ImapError` subclass (with a
    hint, without the password) rather than an imaplib or socket exception.
    """

    def __init__(self, config: ImapConfig) -> None:
        self.config = config
        self._imap: imaplib.IMAP4 | None = None
        self.capabilities: frozenset[str] = frozenset()
        self.permanent_flags: frozenset[str] = frozenset()
        self._known_folders: set[str] = set()

    # ------------------------------------------------------------------ session

    def __enter__(self) -> ImapMailbox:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> ImapMailbox:
        """Connect, start TLS, log in and select the folder."""
        cfg = self.config
        context = self._ssl_context() if cfg.tls else None
        with self._talking("connecting"):
            if cfg.implicit_tls:
                self._imap = imaplib.IMAP4_SSL(
                    cfg.host, cfg.port, ssl_context=context, timeout=cfg.timeout
                )
            else:
                self._imap = imaplib.IMAP4(cfg.host, cfg.port, timeout=cfg.timeout)
        try:
            self._log_in(context)
            self._select()
        except BaseException:
            self._drop()
            raise
        log.info(
            "IMAP: logged in to %s as %s (%s), folder %s",
            cfg.address,
            cfg.username,
            "TLS" if cfg.tls else "no TLS, loopback",
            cfg.folder,
        )
        return self

    def close(self) -> None:
        """Log out (quietly: the work is already done or already failed)."""
        if self._imap is None:
            return
        with suppress(imaplib.IMAP4.error, OSError):
            self._imap.logout()
        self._drop()

    @property
    def can_move(self) -> bool:
        """True when the server has ``MOVE`` (RFC 6851)."""
        return "MOVE" in self.capabilities

    def can_keep(self, *keywords: str) -> bool:
        """True when messages in the folder may carry ``keywords`` for good: any new
        keyword (``\\*`` in PERMANENTFLAGS) or these ones."""
        return "\\*" in self.permanent_flags or set(keywords) <= self.permanent_flags

    # ------------------------------------------------------------------ reading

    def waiting(self, skip_keyword: str | None = None) -> list[Waiting]:
        """The messages to look at, oldest first: not flagged ``\\Deleted`` (a move
        half done by a server without MOVE), nor carrying ``skip_keyword``."""
        criteria = ["UNDELETED"]
        if skip_keyword:
            criteria += ["UNKEYWORD", _keyword(skip_keyword)]
        data = self._ok("listing the messages", "SEARCH", *criteria)
        uids = sorted({int(n) for line in data if isinstance(line, bytes) for n in line.split()})
        if not uids:
            return []
        sizes: dict[int, int] = {}
        for line in self._ok("reading the message sizes", "FETCH", uid_set(uids), "(RFC822.SIZE)"):
            head = line[0] if isinstance(line, tuple) else line
            if not isinstance(head, bytes):
                continue
            uid, size = _FETCH_UID.search(head), _FETCH_SIZE.search(head)
            if uid and size:
                sizes[int(uid.group(1))] = int(size.group(1))
        # A UID with no size was expunged by someone else meanwhile: nothing to read.
        return [Waiting(uid, sizes[uid]) for uid in uids if uid in sizes]

    def fetch(self, uid: int) -> bytes | None:
        """The whole message ``uid`` without marking it read; None if it is gone."""
        for part in self._ok(f"reading message {uid}", "FETCH", str(uid), "(BODY.PEEK[])"):
            if isinstance(part, tuple) and len(part) == 2 and isinstance(part[1], bytes):
                head = part[0]
                found = _FETCH_UID.search(head) if isinstance(head, bytes) else None
                if found is None or int(found.group(1)) == uid:
                    return part[1]
        return None

    # ------------------------------------------------------------------ filing

    def ensure_folder(self, name: str) -> None:
        """Create the folder ``name`` unless it exists (and subscribe to it, so mail
        programs show it)."""
        if name in self._known_folders:
            return
        if name == self.config.folder:
            raise ConfigError(
                f"the IMAP folder {name!r} is the folder being read",
                hint="name different folders for bounce_imap_processed_folder and "
                "bounce_imap_set_aside_folder",
            )
        arg = mailbox_name(name)
        if not self._exists(arg):
            typ, data = self._call(f"creating the folder {name!r}", "CREATE", arg)
            # Another client may have made it meanwhile: that is fine.
            if typ != "OK" and not self._exists(arg):
                raise ImapError(
                    f"the IMAP server {self.config.address} would not create the folder "
                    f"{name!r}: {self._text(data)}",
                    hint="create it by hand, or name an existing folder in the settings",
                )
            self._call(f"subscribing to {name!r}", "SUBSCRIBE", arg)  # a nicety: not checked
        self._known_folders.add(name)

    def move(self, uids: Sequence[int], folder: str, *, seen: bool = False) -> None:
        """Move the messages ``uids`` to ``folder`` (marked ``\\Seen`` first if asked).

        Without MOVE: COPY, flag ``\\Deleted`` and ``UID EXPUNGE`` those UIDs only (never
        a plain EXPUNGE, which would also remove what others flagged). A server without
        UIDPLUS keeps them flagged ``\\Deleted``; they are skipped next time.
        """
        if not uids:
            return
        where, arg = uid_set(uids), mailbox_name(folder)
        if seen:
            self._ok("marking messages read", "STORE", where, "+FLAGS.SILENT", "(\\Seen)")
        if self.can_move:
            self._ok(f"moving messages to {folder!r}", "MOVE", where, arg)
            return
        self._ok(f"copying messages to {folder!r}", "COPY", where, arg)
        self._ok("flagging copied messages deleted", "STORE", where, "+FLAGS.SILENT", "(\\Deleted)")
        if "UIDPLUS" in self.capabilities:
            self._ok("removing the copied messages", "EXPUNGE", where)
        else:
            log.warning(
                "IMAP: %s has neither MOVE nor UIDPLUS; the copied messages stay in %s "
                "flagged deleted (skipped from now on) until the folder is expunged",
                self.config.address,
                self.config.folder,
            )

    def flag(self, uids: Sequence[int], keywords: Sequence[str]) -> None:
        """Mark the messages ``uids`` ``\\Seen`` and add ``keywords`` to them."""
        if not uids:
            return
        flags = " ".join(["\\Seen", *(_keyword(k) for k in keywords)])
        self._ok("flagging messages", "STORE", uid_set(uids), "+FLAGS.SILENT", f"({flags})")

    # ------------------------------------------------------------------ internals

    def _log_in(self, context: ssl.SSLContext | None) -> None:
        cfg = self.config
        imap = self._conn()
        with self._talking("starting the session"):
            if cfg.starttls:
                if "STARTTLS" not in imap.capabilities:
                    raise ImapTlsError(
                        f"the IMAP server {cfg.address} does not offer STARTTLS",
                        hint="use imaps:// (port 993), or ask the server's administrator",
                    )
                imap.starttls(context)
            if "LOGINDISABLED" in imap.capabilities:
                raise ImapLoginError(
                    f"the IMAP server {cfg.address} does not allow logging in here without TLS",
                    hint="use imaps:// (port 993), or add ?starttls=true",
                )
            try:
                if "AUTH=PLAIN" in imap.capabilities:
                    # SASL PLAIN carries UTF-8; LOGIN would only take an ASCII password.
                    secret = f"\0{cfg.username}\0{cfg.password}".encode()
                    imap.authenticate("PLAIN", lambda _challenge: secret)
                else:
                    if not (cfg.username + cfg.password).isascii():
                        raise ImapLoginError(
                            f"the IMAP server {cfg.address} only offers LOGIN, which cannot "
                            "carry a user name or password with non-ASCII characters",
                            hint="use an ASCII password for this mailbox",
                        )
                    imap.login(cfg.username, cfg.password)
            except imaplib.IMAP4.abort:
                raise
            except imaplib.IMAP4.error as exc:
                raise ImapLoginError(
                    f"the IMAP server {cfg.address} refused the login of user "
                    f"{cfg.username!r}: {self._text(exc)}",
                    hint="check the user in bounce_imap_url and bounce_imap_password "
                    "(or NEWSLETTER_BOUNCE_IMAP_PASSWORD)",
                ) from None
            # What a server offers changes once logged in (MOVE is often announced only
            # then), so ask again.
            typ, data = imap.capability()
        if typ == "OK" and data and isinstance(data[-1], bytes):
            self.capabilities = frozenset(data[-1].decode("ascii", "replace").upper().split())
        else:
            self.capabilities = frozenset(imap.capabilities)

    def _select(self) -> None:
        cfg = self.config
        imap = self._conn()
        typ, data = self._call(
            f"opening the folder {cfg.folder!r}", "SELECT", mailbox_name(cfg.folder)
        )
        if typ != "OK":
            raise ImapError(
                f"the IMAP server {cfg.address} would not open the folder {cfg.folder!r}: "
                f"{self._text(data)}",
                hint="check the folder at the end of bounce_imap_url (e.g. /INBOX)",
            )
        if imap.untagged_responses.get("READ-ONLY"):
            raise ImapError(
                f"the IMAP folder {cfg.folder!r} on {cfg.address} is read-only",
                hint="give the user write access to it: processed mail is moved or flagged",
            )
        flags = imap.untagged_responses.get("PERMANENTFLAGS") or []
        text = b" ".join(f for f in flags if isinstance(f, bytes)).decode("ascii", "replace")
        self.permanent_flags = frozenset(text.strip("()").split())

    def _exists(self, arg: str) -> bool:
        typ, data = self._call("listing folders", "LIST", '""', arg)
        return typ == "OK" and any(d for d in data if d)

    def _conn(self) -> imaplib.IMAP4:
        if self._imap is None:
            raise ImapUnavailableError(f"not connected to the IMAP server {self.config.address}")
        return self._imap

    def _drop(self) -> None:
        imap, self._imap = self._imap, None
        if imap is not None:
            with suppress(OSError, imaplib.IMAP4.error):
                imap.shutdown()

    def _call(self, doing: str, command: str, *args: str) -> tuple[str, list[object]]:
        """Run one plain (non-UID) command; (status, data), never an imaplib exception."""
        imap = self._conn()
        commands: dict[str, Callable[..., tuple[str, Sequence[object]]]] = {
            "SELECT": imap.select,
            "LIST": imap.list,
            "CREATE": imap.create,
            "SUBSCRIBE": imap.subscribe,
        }
        run = commands[command]
        with self._talking(doing):
            typ, data = run(*args)
        return typ, list(data)

    def _ok(self, doing: str, command: str, *args: str) -> list[object]:
        """Run ``UID command args``; its data, or :class:`ImapError` if not OK."""
        imap = self._conn()
        with self._talking(doing):
            typ, data = imap.uid(command, *args)
        if typ != "OK":
            raise ImapError(
                f"the IMAP server {self.config.address} refused {doing}: {self._text(data)}",
                hint="look at the folder with a mail program; run the command again later",
            )
        return list(data)

    @contextmanager
    def _talking(self, doing: str) -> Iterator[None]:
        """Turn what imaplib, ssl and the socket raise into our errors, scrubbed."""
        cfg = self.config
        try:
            yield
        except ssl.SSLCertVerificationError as exc:
            self._drop()
            raise ImapTlsError(
                f"the certificate of the IMAP server {cfg.address} cannot be verified: "
                f"{exc.verify_message or exc.reason}",
                hint="fix the server's certificate, or trust its authority with "
                "bounce_imap_ca_file (or --ca-file /path/ca.pem)",
            ) from None
        except ssl.SSLError as exc:
            self._drop()
            raise ImapTlsError(
                f"TLS with the IMAP server {cfg.address} failed: {self._text(exc.reason or exc)}",
                hint="imaps:// is for implicit TLS (port 993); port 143 needs "
                "imap://...:143/INBOX?starttls=true",
            ) from None
        except imaplib.IMAP4.abort as exc:  # the connection broke or the server said BYE
            self._drop()
            raise ImapUnavailableError(
                f"the connection to the IMAP server {cfg.address} was lost while {doing}: "
                f"{self._text(exc)}",
                hint="run the command again: what was processed is filed or will be "
                "recognised as already recorded",
            ) from None
        except imaplib.IMAP4.error as exc:
            raise ImapError(
                f"the IMAP server {cfg.address} refused {doing}: {self._text(exc)}",
                hint="check bounce_imap_url",
            ) from None
        except OSError as exc:  # refused, unreachable, timed out, reset
            self._drop()
            raise ImapUnavailableError(
                f"cannot talk to the IMAP server {cfg.address} ({doing}): "
                f"{self._text(exc.strerror or exc)}",
                hint="check the host and port in bounce_imap_url and that the server runs; "
                "run the command again later",
            ) from None

    def _ssl_context(self) -> ssl.SSLContext:
        cfg = self.config
        try:
            context = ssl.create_default_context()
            if cfg.ca_file is not None:
                context.load_verify_locations(cafile=str(cfg.ca_file))
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f"bounce_imap_ca_file {cfg.ca_file} is not a usable PEM certificate: {exc}",
                hint="point it at the PEM certificate of the authority to trust",
            ) from None
        return context

    def _text(self, value: object) -> str:
        """A server reply or error as one line, without the password in any form."""
        if isinstance(value, list | tuple):
            value = b" ".join(v if isinstance(v, bytes) else str(v).encode() for v in value if v)
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        text = " ".join(text.split())[:300]
        secret = self.config.password
        if secret:
            plain = f"\0{self.config.username}\0{secret}".encode()
            for form in (
                secret,
                base64.b64encode(plain).decode(),
                base64.b64encode(secret.encode()).decode(),
            ):
                text = text.replace(form, "***")
        return text or "no reason given"


def _keyword(name: str) -> str:
    if not _KEYWORD.match(name):
        raise ConfigError(f"{name!r} is not an IMAP keyword", hint="use letters, digits, $, _, -")
    return name
