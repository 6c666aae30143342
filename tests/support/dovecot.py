"""A private Dovecot IMAP server for the tests: real IMAP, on loopback, gone afterwards.

:class:`DovecotServer` writes its own configuration into a temporary folder and starts
``dovecot -c FILE -F`` (the Debian package ``dovecot-imapd``). Nothing of the system's
Dovecot is used or touched: no ``/etc/dovecot`` include, its own ``base_dir`` (sockets,
pid file) and ``state_dir``, its own ``instance_name``, and listeners only on
127.0.0.1, on two free high ports (IMAP with STARTTLS, and IMAPS), with the test
certificate. A system Dovecot on 143/993 may run beside it.

Each user has a passwd-file of its own (``users/NAME``; a new file is read at once,
where a changed shared one is noticed only seconds later), so
:meth:`DovecotServer.add_user` gives each test a fresh user with an empty Maildir (no
test sees another's mail). The same server also listens on :data:`OLD_SERVER`
(127.0.0.2, plain IMAP) announcing no ``MOVE``, for a client's fallback path.

Run as root (as CI does), Dovecot's master stays root, its helpers run as the package's
``dovecot``/``dovenull`` users and mail is accessed as ``nobody``; run as another user,
everything runs as that user. Its folder is made with :func:`tempfile.mkdtemp`, not
pytest's (private to the test user, so Dovecot's helpers could not read the user list).
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from tests.support.smtpserver import free_port

OLD_SERVER = "127.0.0.2"  # a second loopback address: the server without MOVE
DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"


def dovecot_available() -> bool:
    """True when the dovecot binary (with its IMAP server) is installed."""
    return Path(DOVECOT).exists() and Path("/usr/lib/dovecot/imap").exists()


class DovecotServer:
    """One private Dovecot instance: :meth:`start`, use, :meth:`stop`."""

    def __init__(self, certificate: tuple[Path, Path]) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="newsletter-dovecot-"))
        self.folder.chmod(0o755)
        # Dovecot's own copy of the certificate: the test's copy sits in a private folder.
        self.cert, self.key = self.folder / "cert.pem", self.folder / "key.pem"
        shutil.copyfile(certificate[0], self.cert)
        shutil.copyfile(certificate[1], self.key)
        self.key.chmod(0o600)
        self.imap_port = free_port()
        self.imaps_port = free_port()
        self.config = self.folder / "dovecot.conf"
        self.users = self.folder / "users"
        self.log = self.folder / "dovecot.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self.as_root = os.geteuid() == 0
        if self.as_root:
            # Dovecot refuses mail access as root; "nobody" owns the mail folders.
            owner = pwd.getpwnam("nobody")
            self._internal = ("dovecot", "dovenull")
        else:
            owner = pwd.getpwuid(os.geteuid())
            self._internal = (owner.pw_name, owner.pw_name)
        self.uid, self.gid = owner.pw_uid, owner.pw_gid
        self.mail_root = self.folder / "mail"
        self.mail_root.mkdir(mode=0o700)
        os.chown(self.mail_root, self.uid, self.gid)

    # ------------------------------------------------------------------ life cycle

    def start(self) -> DovecotServer:
        """Write the configuration, start Dovecot and wait for its IMAP greeting."""
        for sub in ("run", "state"):
            (self.folder / sub).mkdir(exist_ok=True)
        self.users.mkdir(mode=0o755)
        self.config.write_text(self._config_text())
        self._proc = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=open(self.folder / "dovecot.stderr", "wb"),  # noqa: SIM115 (kept open)
        )
        deadline = time.monotonic() + 30
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"dovecot stopped at start-up:\n{self.diagnostics()}")
            if self._greets(self.imap_port) and self._greets(self.imaps_port, tls=True):
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"dovecot did not answer within 30 s:\n{self.diagnostics()}")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop Dovecot (and its children) and remove the mail folders."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()  # the master stops its children on SIGTERM
            try:
                self._proc.wait(30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(30)
        self._proc = None
        shutil.rmtree(self.folder, ignore_errors=True)

    def diagnostics(self) -> str:
        """Dovecot's log and error output, for a failing test's message."""
        parts = []
        for path in (self.log, self.folder / "dovecot.stderr"):
            if path.exists():
                parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-4000:]}")
        return "\n".join(parts)

    # ------------------------------------------------------------------ users

    def add_user(self, password: str) -> str:
        """A new user with an empty mailbox; returns its name."""
        if ":" in password or "\n" in password:
            raise ValueError("a passwd-file password cannot hold ':' or a line break")
        name = "u" + uuid.uuid4().hex[:10]
        home = self.mail_root / name
        (self.users / name).write_text(
            f"{name}:{{PLAIN}}{password}:{self.uid}:{self.gid}::{home}::\n"
        )
        (self.users / name).chmod(0o644)
        if not self._can_log_in(name, password):
            raise RuntimeError(
                f"dovecot does not accept the new user {name}:\n{self.diagnostics()}"
            )
        return name

    # ------------------------------------------------------------------ helpers

    def _can_log_in(self, user: str, password: str) -> bool:
        try:
            imap = imaplib.IMAP4("127.0.0.1", self.imap_port, timeout=10)
        except OSError:
            return False
        try:
            imap.login(user, password)
            return True
        except imaplib.IMAP4.error:
            return False
        finally:
            with contextlib.suppress(imaplib.IMAP4.error, OSError):
                imap.logout()

    def _greets(self, port: int, tls: bool = False) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                if tls:
                    ctx = ssl.create_default_context(cafile=str(self.cert))
                    with ctx.wrap_socket(sock, server_hostname="127.0.0.1") as tsock:
                        return tsock.recv(100).startswith(b"* OK")
                return sock.recv(100).startswith(b"* OK")
        except (OSError, ssl.SSLError):
            return False

    def _config_text(self) -> str:
        internal, login = self._internal
        f = self.folder
        # Login processes chroot into base_dir, which only root may do.
        chroot = "" if self.as_root else "  chroot =\n"
        return f"""\
# A private test instance (tests/support/dovecot.py); no system configuration is read.
instance_name = newsletter-test-{self.imap_port}
base_dir = {f}/run
state_dir = {f}/state
log_path = {self.log}
info_log_path = {self.log}
protocols = imap
listen = 127.0.0.1, {OLD_SERVER}
default_internal_user = {internal}
default_internal_group = {internal}
default_login_user = {login}
first_valid_uid = {self.uid}
last_valid_uid = {self.uid}
mail_location = maildir:~/Maildir
mail_privileged_group =
ssl = yes
ssl_cert = <{self.cert}
ssl_key = <{self.key}
disable_plaintext_auth = no
auth_mechanisms = plain login
# A wrong password is answered at once (the default waits 2 s, against guessing)...
auth_failure_delay = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {self.users}/%n
}}
userdb {{
  driver = passwd-file
  args = {self.users}/%n
}}
namespace inbox {{
  inbox = yes
  separator = /
}}
service imap-login {{
{chroot}  inet_listener imap {{
    address = 127.0.0.1
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.imaps_port}
    ssl = yes
  }}
  inet_listener imap_old {{
    address = {OLD_SERVER}
    port = {self.imap_port}
  }}
}}
# The same server as one that predates MOVE (RFC 6851), for clients' fallback path.
local {OLD_SERVER} {{
  protocol imap {{
    imap_capability = IMAP4rev1 LITERAL+ SASL-IR LOGIN-REFERRALS ID ENABLE IDLE UIDPLUS
  }}
}}
# ... and the next login from the same address is not slowed down for it (no penalty).
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
# Mail processes run as the mail user, not in the dovecot group: let them reach stats.
service stats {{
  unix_listener stats-reader {{
    mode = 0600
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"""
