"""A private Postfix instance for tests: real mail relaying, real bounces (RFC 3464 DSNs).

:class:`PostfixInstance` runs this machine's Postfix (the Debian package ``postfix``) as a
second, throw-away instance that shares nothing with the system one:

- its own config directory (``main.cf`` and ``master.cf`` written here), queue directory
  and data directory, in a fresh folder under the system temp folder (the daemons run as
  the ``postfix`` user and must reach the queue, so not under pytest's root-only
  ``tmp_path``); removed by :meth:`PostfixInstance.stop`;
- ``smtpd`` on a free high port of 127.0.0.1 (``inet_interfaces = 127.0.0.1``), never
  port 25; the system Postfix may be stopped, running, or misconfigured: it is not used;
- everything it accepts goes to ``relayhost`` (a test SMTP server, e.g. the scripted
  fault server answering ``550``/``452`` per recipient), except domains in ``routes``,
  which ``transport_maps`` sends to other local ports (the bounce receiver);
- ``bcc`` (``recipient_bcc_maps``) copies mail for an address or ``@domain`` to another
  address, so a test can keep the raw DSNs that a receiver consumed;
- retries come fast: the queue is scanned every second, the back-off is one second, and
  ``maximal_queue_lifetime`` (``lifetime``) is a few seconds, so a recipient refused with
  a 4xx is given up (a "delivery failed" DSN) in seconds instead of days;
  ``delay_warning`` sets ``delay_warning_time`` for a "still being retried" DSN first (a
  warning is due when the message is deferred at most two seconds before that time, so
  with one second it comes with the first deferral).

How it runs without touching the system instance. Postfix refuses a non-default config
directory unless the *default* ``/etc/postfix/main.cf`` lists it in
``alternate_config_directories`` (or ``multi_instance_directories``, for ``postmulti``).
Editing that file, or enabling ``postmulti``, would change the machine's own mail set-up.
The check, though, is made by the set-gid commands (``postqueue``, ``postdrop``) for
users other than root: it keeps local users away from other queues. We need neither
command to move mail (it enters by SMTP only), and we start the ``master`` daemon directly
(``$daemon_directory/master -s -c CONFIG``: it stays in the foreground, ``-s`` keeps its
output) as a child process of the test, as root (it must be root to hand its daemons to
the ``postfix`` user). So nothing in ``/etc/postfix`` is read or edited, the process is
ours to stop by its own pid, and it works the same on a fresh CI machine right after
``apt-get install postfix`` with debconf's "No configuration" (which leaves the default
instance unconfigured and stopped; tried with an empty ``/etc/postfix`` bind-mounted in a
private mount namespace). The queue directories that ``postfix check`` would create are
created here, with its owners and modes. ``postqueue -c CONFIG -j`` (used to explain a
failed wait) works as root without any authorisation.

Its log (``maillog_file`` through ``postlogd``) is ``log_path``; :meth:`log` reads it, which
is the first place to look when a test waits in vain.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from tests.support.smtpserver import free_port

#: Where Debian keeps the daemons (``postconf -d -h daemon_directory`` says it too).
DEFAULT_DAEMON_DIRECTORY = "/usr/lib/postfix/sbin"

#: The queue sub-folders and their (owner, group, mode), as ``postfix-files`` makes them.
_QUEUE_DIRS = {
    "active": ("postfix", "root", 0o700),
    "bounce": ("postfix", "root", 0o700),
    "corrupt": ("postfix", "root", 0o700),
    "defer": ("postfix", "root", 0o700),
    "deferred": ("postfix", "root", 0o700),
    "flush": ("postfix", "root", 0o700),
    "hold": ("postfix", "root", 0o700),
    "incoming": ("postfix", "root", 0o700),
    "maildrop": ("postfix", "postdrop", 0o730),
    "pid": ("root", "root", 0o755),
    "private": ("postfix", "root", 0o700),
    "public": ("postfix", "postdrop", 0o710),
    "saved": ("postfix", "root", 0o700),
    "trace": ("postfix", "root", 0o700),
}

#: The queues a message waits in until it is delivered, bounced or expired.
_WAITING = ("maildrop", "incoming", "active", "deferred", "hold")

# Only the services SMTP in, SMTP out and bounces need. No chroot (nothing is set up in
# the queue folder for one), no pickup/local delivery (mail enters and leaves by SMTP).
_MASTER_CF = """\
# service type  private unpriv  chroot  wakeup  maxproc command
{port}     inet  n       -       n       -       -       smtpd
cleanup    unix  n       -       n       -       0       cleanup
qmgr       unix  n       -       n       300     1       qmgr
rewrite    unix  -       -       n       -       -       trivial-rewrite
bounce     unix  -       -       n       -       0       bounce
defer      unix  -       -       n       -       0       bounce
trace      unix  -       -       n       -       0       bounce
verify     unix  -       -       n       -       1       verify
flush      unix  n       -       n       1000?   0       flush
proxymap   unix  -       -       n       -       -       proxymap
smtp       unix  -       -       n       -       -       smtp
relay      unix  -       -       n       -       -       smtp
showq      unix  n       -       n       -       -       showq
error      unix  -       -       n       -       -       error
retry      unix  -       -       n       -       -       error
discard    unix  -       -       n       -       -       discard
anvil      unix  -       -       n       -       1       anvil
scache     unix  -       -       n       -       1       scache
postlog    unix-dgram n  -       n       -       1       postlogd
"""


def daemon_directory() -> Path:
    """Where the Postfix daemons are (``postconf -d``), or Debian's default."""
    postconf = shutil.which("postconf") or "/usr/sbin/postconf"
    try:
        out = subprocess.run(
            [postconf, "-d", "-h", "daemon_directory"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return Path(DEFAULT_DAEMON_DIRECTORY)
    return Path(out or DEFAULT_DAEMON_DIRECTORY)


def missing() -> str | None:
    """Why a private instance cannot run here (None when it can)."""
    if shutil.which("postconf") is None and not Path("/usr/sbin/postconf").exists():
        return "Postfix is not installed (apt-get install postfix)"
    if not (daemon_directory() / "master").exists():
        return f"the Postfix master daemon is not in {daemon_directory()}"
    if os.geteuid() != 0:
        return "a private Postfix instance must be started as root"
    try:
        pwd.getpwnam("postfix")
        grp.getgrnam("postdrop")
    except KeyError:
        return "the postfix user or the postdrop group is missing"
    return None


def _inline(mapping: Mapping[str, str]) -> str:
    """A Postfix ``inline:`` table (Postfix 3.0 and later); empty when there is nothing."""
    if not mapping:
        return ""
    return "inline:{ " + ", ".join(f"{{ {k} = {v} }}" for k, v in mapping.items()) + " }"


class PostfixInstance:
    """A private Postfix on 127.0.0.1 (see the module docstring).

    ``relay``: (host, port) of the server everything is relayed to. ``routes``: domain ->
    local port for mail to that domain (``transport_maps``). ``bcc``: address or
    ``@domain`` -> an address that gets a copy. ``lifetime``: seconds before a message
    refused with a 4xx is given up and bounced. ``delay_warning``: seconds before a
    "delayed" DSN (None: none). ``extra``: more ``main.cf`` settings. ``max_life``:
    seconds after which the master stops by itself (``master -e``), should the test run
    that started it be killed before :meth:`stop`.
    """

    def __init__(
        self,
        relay: tuple[str, int],
        *,
        routes: Mapping[str, int] | None = None,
        bcc: Mapping[str, str] | None = None,
        lifetime: int = 4,
        delay_warning: int | None = None,
        extra: Mapping[str, str] | None = None,
        max_life: int = 1800,
    ) -> None:
        self.relay = relay
        self.routes = dict(routes or {})
        self.bcc = dict(bcc or {})
        self.lifetime = lifetime
        self.delay_warning = delay_warning
        self.extra = dict(extra or {})
        self.max_life = max_life
        self.port = free_port()
        self.daemons = daemon_directory()
        self.folder = Path(tempfile.mkdtemp(prefix="newsletter-postfix-"))
        self.config = self.folder / "config"
        self.queue = self.folder / "queue"
        self.data = self.folder / "data"
        self.log_path = self.folder / "maillog"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The ``smtp_url`` that sends through this instance."""
        return f"smtp://127.0.0.1:{self.port}"

    # ------------------------------------------------------------------ set-up

    def main_cf(self) -> str:
        """The instance's ``main.cf``."""
        host, port = self.relay
        settings = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.queue),
            "data_directory": str(self.data),
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "maillog_file": str(self.log_path),
            "maillog_file_prefixes": str(self.folder),
            "myhostname": "postfix-test.example.org",
            "mydomain": "example.org",
            "myorigin": "$myhostname",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            # Nothing is delivered here: every domain is relayed (or routed).
            "mydestination": "",
            "local_recipient_maps": "",
            "alias_maps": "",
            "alias_database": "",
            "relay_domains": "",
            "smtpd_relay_restrictions": "permit_mynetworks, reject",
            "relayhost": f"[{host}]:{port}",
            "transport_maps": _inline({d: f"smtp:[127.0.0.1]:{p}" for d, p in self.routes.items()}),
            # A copy of each DSN: Postfix's own notices skip recipient_bcc_maps, but
            # header_checks see them when internal_mail_filter_classes says so.
            "internal_mail_filter_classes": "bounce" if self.bcc else "",
            "header_checks": f"regexp:{self.config / 'copies.regexp'}" if self.bcc else "",
            "smtp_tls_security_level": "none",
            "smtpd_tls_security_level": "none",
            "smtp_dns_support_level": "disabled",
            "biff": "no",
            "append_dot_mydomain": "no",
            # Fast, for a test: no pause for a busy queue or a client's mistakes, a queue
            # scan every second and retries one second apart.
            "in_flow_delay": "0",
            "smtpd_error_sleep_time": "0",
            "smtpd_soft_error_limit": "1000",
            "smtpd_hard_error_limit": "1000",
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "1s",
            "maximal_queue_lifetime": f"{self.lifetime}s",
            # A DSN that cannot be handed to the receiver yet is kept and retried; the
            # receiver answers 451 while the database is away.
            "bounce_queue_lifetime": "1h",
            "delay_warning_time": f"{self.delay_warning}s" if self.delay_warning else "0h",
            "smtp_connect_timeout": "10s",
        }
        settings.update(self.extra)
        return "".join(f"{k} = {v}\n" for k, v in settings.items())

    def _prepare(self) -> None:
        self.folder.chmod(0o755)  # the daemons (user postfix) must reach the queue
        self.config.mkdir()
        (self.config / "main.cf").write_text(self.main_cf())
        (self.config / "copies.regexp").write_text(
            "".join(
                f"/^To:.*@{re.escape(domain)}>?\\s*$/ BCC {copy}\n"
                for domain, copy in self.bcc.items()
            )
        )
        (self.config / "master.cf").write_text(_MASTER_CF.format(port=f"127.0.0.1:{self.port}"))
        self.queue.mkdir(mode=0o755)
        for name, (owner, group, mode) in _QUEUE_DIRS.items():
            path = self.queue / name
            path.mkdir()
            os.chown(path, pwd.getpwnam(owner).pw_uid, grp.getgrnam(group).gr_gid)
            path.chmod(mode)
        self.data.mkdir(mode=0o700)
        os.chown(self.data, pwd.getpwnam("postfix").pw_uid, grp.getgrnam("root").gr_gid)
        self.log_path.touch()

    # ------------------------------------------------------------------ life

    def start(self, timeout: float = 60.0) -> PostfixInstance:
        """Start the master daemon and wait until smtpd greets on :attr:`port`."""
        self._prepare()
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
        with (self.folder / "master.out").open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    str(self.daemons / "master"),
                    "-s",
                    "-c",
                    str(self.config),
                    # An instance whose test run was killed stops by itself.
                    "-e",
                    str(self.max_life),
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postfix master exited ({self.proc.returncode}):\n{self.log()}")
            if self._greets():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"postfix did not greet on port {self.port} in {timeout} s")

    def _greets(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
                banner = sock.recv(512)
                sock.sendall(b"QUIT\r\n")
                return banner.startswith(b"220")
        except OSError:
            return False

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the master (it stops its daemons) and remove the instance's folder."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        shutil.rmtree(self.folder, ignore_errors=True)

    # ------------------------------------------------------------------ the queue

    def queued(self) -> list[str]:
        """Queue ids of the messages still waiting (not yet delivered, bounced or
        expired), read from the queue folders (root may read them)."""
        found: list[str] = []
        for name in _WAITING:
            for _root, _dirs, files in os.walk(self.queue / name):
                found.extend(files)
        return found

    def queue_json(self) -> list[dict[str, object]]:
        """``postqueue -j``: each waiting message with its recipients and the reason it
        waits (for test failure messages)."""
        try:
            out = subprocess.run(
                ["postqueue", "-c", str(self.config), "-j"],
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout
            return [json.loads(line) for line in out.splitlines() if line.strip()]
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            return [{"error": f"postqueue -j: {exc}"}]

    def log(self) -> str:
        """What the instance logged so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def __enter__(self) -> PostfixInstance:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
