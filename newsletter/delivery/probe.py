"""Is the transport of ``smtp_url`` usable? A probe for ``newsletter doctor``, sending nothing.

For ``smtp://`` and ``smtps://`` it opens one real connection the way a send does
(:meth:`SmtpTransport.probe <newsletter.delivery.transports.smtp.SmtpTransport.probe>`):
connect, EHLO, STARTTLS when the URL asks for it (the certificate verified unless the URL
says ``verify=false``), AUTH with the configured user, then QUIT. For ``outbox://`` it
checks that the folder can be written. The password never appears in a result: the
transport keeps it out of its messages.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from newsletter.config import redact_url
from newsletter.delivery.transports.outbox import parse_outbox_url
from newsletter.delivery.transports.registry import scheme_of
from newsletter.delivery.transports.smtp import SmtpTransport, parse_smtp_url
from newsletter.errors import NewsletterError
from newsletter.rules.links import is_loopback_host

if TYPE_CHECKING:
    from newsletter.config import Settings

ProbeStatus = Literal["ok", "warn", "fail", "skip"]


@dataclass(frozen=True)
class ProbeResult:
    """What the probe found: ``ok``, ``warn`` (usable, but see ``detail``), ``fail`` or
    ``skip`` (nothing to probe); ``fix`` says what to do about a ``fail`` or ``warn``."""

    status: ProbeStatus
    detail: str
    fix: str = ""


def probe_transport(settings: Settings) -> ProbeResult:
    """Probe the transport ``settings.smtp_url`` names (see the module docstring)."""
    scheme = scheme_of(settings.smtp_url)
    try:
        if scheme in ("smtp", "smtps"):
            return _probe_smtp(settings)
        if scheme == "outbox":
            return _probe_outbox(parse_outbox_url(settings.smtp_url, root=settings.root))
    except NewsletterError as exc:
        return ProbeResult("fail", exc.message, exc.hint or "check smtp_url")
    return ProbeResult(
        "skip", f"no probe for {redact_url(settings.smtp_url)!r}; send a test to yourself"
    )


def _probe_smtp(settings: Settings) -> ProbeResult:
    config = parse_smtp_url(settings.smtp_url, root=settings.root)
    transport = SmtpTransport(config, pool_size=1, timeout=settings.smtp_timeout)
    try:
        outcome = transport.probe()
    finally:
        transport.close()
    if not outcome.sent:
        code = f"{outcome.code} " if outcome.code else ""
        return ProbeResult(
            "fail",
            f"cannot use the SMTP server {config.address}: {code}{outcome.reply}",
            "check the host and port in smtp_url, and that the server is running and "
            "reachable from this machine",
        )
    done = [f"connected to {config.address}"]
    if config.scheme == "smtps":
        done.append("TLS")
    elif config.starttls:
        done.append("STARTTLS")
    if config.tls:
        done.append("certificate verified" if config.verify else "certificate NOT verified")
    done.append(f"logged in as {config.username}" if config.username else "no login")
    detail = ", ".join(done)
    if config.tls and not config.verify:
        return ProbeResult(
            "warn", detail, "remove ?verify=false (use ?ca_file=/path/ca.pem for a private CA)"
        )
    if not config.tls and not is_loopback_host(config.host):
        return ProbeResult(
            "warn",
            detail + ", not encrypted",
            "use smtp://host:587?starttls=true or smtps://host:465",
        )
    return ProbeResult("ok", detail)


def _probe_outbox(folder: Path) -> ProbeResult:
    fix = "set smtp_url to outbox:///a-folder-you-can-write, or to your SMTP server"
    if folder.exists() and not folder.is_dir():
        return ProbeResult("fail", f"the outbox {folder} is not a folder", fix)
    if folder.is_dir():
        try:
            fd, name = tempfile.mkstemp(dir=folder, prefix=".doctor-", suffix=".tmp")
        except OSError as exc:
            return ProbeResult("fail", f"cannot write in {folder}: {exc.strerror or exc}", fix)
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(name)
    else:
        # Made by the first send: the nearest folder that exists must let us create it.
        parent = folder.parent
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            return ProbeResult("fail", f"cannot create the outbox {folder}", fix)
    return ProbeResult(
        "warn",
        f"outbox transport: messages are written as .eml files to {folder}, not sent",
        "set smtp_url to your SMTP server (smtp://... or smtps://...) before a real send",
    )
