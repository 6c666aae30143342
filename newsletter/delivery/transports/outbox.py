"""The file outbox (``outbox://PATH``): messages written to a folder instead of sent.

:class:`OutboxTransport` writes one ``.eml`` file per Message-ID (named by
:func:`outbox_file_name`), atomically: a reader never sees half a message, and a retry with
the same Message-ID replaces the file instead of adding one. It is the default transport
(``outbox:///outbox`` in the project folder), for trying a send without a mail server.
Every write answers ``sent``; a write error (disk full...) answers ``unavailable``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote

from newsletter.config import redact_url
from newsletter.delivery.transports.base import OutgoingMessage, SendOutcome, Transport
from newsletter.delivery.transports.registry import URL_HINT, register
from newsletter.errors import ConfigError

if TYPE_CHECKING:
    from newsletter.config import Settings
    from newsletter.delivery.dkimsign import DkimSigner

log = logging.getLogger("newsletter.delivery.transport")


def parse_outbox_url(url: str, root: Path | None = None) -> Path:
    """The folder of an ``outbox://PATH`` URL; :class:`ConfigError` if it names none.

    The path is percent-decoded and ``~`` expanded; a relative path is taken relative to
    ``root`` (default: the working folder). ``load_settings`` already makes it absolute.
    """
    scheme, _, rest = url.strip().partition("://")
    if scheme.lower() != "outbox":
        raise ValueError(f"not an outbox:// URL: {redact_url(url)!r}")
    path_text = unquote(rest.split("?", 1)[0])
    if not path_text.strip("/"):
        raise ConfigError(f"smtp_url {redact_url(url)!r} names no outbox folder", hint=URL_HINT)
    path = Path(path_text).expanduser()
    return path if path.is_absolute() else (Path.cwd() if root is None else root) / path


def outbox_file_name(message_id: str) -> str:
    """The file name for a Message-ID: ``<abc@host>`` gives ``abc@host.eml``.

    Characters unsafe in file names become ``_``; then a short hash of the original
    Message-ID is added, so two different IDs can never share a file.
    """
    core = message_id.strip().removeprefix("<").removesuffix(">")
    safe = re.sub(r"[^A-Za-z0-9@._+=-]", "_", core).lstrip(".")
    if safe != core or not safe or len(safe) > 150:
        digest = hashlib.sha256(message_id.encode("utf-8")).hexdigest()[:12]
        safe = f"{safe[:120]}-{digest}" if safe else digest
    return safe + ".eml"


class OutboxTransport(Transport):
    """Writes each message to ``directory/<Message-ID>.eml`` instead of sending it.

    Each file is written to a hidden temporary file in the same folder, flushed to disk
    and renamed over the target, so a reader never sees half a message and a retry with
    the same Message-ID replaces the earlier file. Every write answers ``sent``; a
    write error (disk full...) answers ``unavailable``.
    """

    name = "outbox"

    def __init__(self, directory: Path, signer: DkimSigner | None = None) -> None:
        self.directory = Path(directory)
        self.signer = signer
        try:
            # Messages hold addresses, names and personal links: owner only (a new
            # folder 0700; mkstemp below makes each file 0600).
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise ConfigError(
                f"cannot create the outbox folder {self.directory}: {exc.strerror or exc}",
                hint="set smtp_url to outbox:///a-folder-you-can-write",
            ) from None

    def __repr__(self) -> str:
        return f"OutboxTransport({str(self.directory)!r})"

    def path_for(self, message_id: str) -> Path:
        """Where the message with ``message_id`` is (or would be) written."""
        return self.directory / outbox_file_name(message_id)

    def _deliver(self, message: OutgoingMessage) -> SendOutcome:
        target = self.path_for(message.message_id)
        tmp_name = ""
        try:
            fd, tmp_name = tempfile.mkstemp(dir=self.directory, prefix=".", suffix=".tmp")
            with os.fdopen(fd, "wb") as handle:
                handle.write(message.data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp_name, target)
            tmp_name = ""
            self._sync_directory()
        except OSError as exc:
            log.warning("outbox: cannot write %s: %s", target, exc)
            return SendOutcome("unavailable", None, f"cannot write {target}: {exc.strerror}")
        finally:
            if tmp_name:
                with contextlib.suppress(OSError):
                    os.unlink(tmp_name)
        log.debug("outbox: wrote %s for %s", target.name, ", ".join(message.recipients))
        return SendOutcome("sent", 250, f"written to {target}")

    def _sync_directory(self) -> None:
        # The rename is only durable once the folder itself is flushed.
        try:
            fd = os.open(self.directory, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass  # some file systems refuse fsync on folders; the data is already safe
        finally:
            os.close(fd)


@register("outbox")
def open_outbox(url: str, settings: Settings) -> OutboxTransport:
    """The outbox ``url`` names, relative to the project folder (``settings.root``)."""
    return OutboxTransport(parse_outbox_url(url, root=settings.root))
