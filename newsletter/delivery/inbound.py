"""A small inbound SMTP server for bounces (``newsletter bounces serve``).

A relay or MX forwards what comes back to the bounce address here; each message is handed
to ``handle(raw)``, one at a time, and answered ``250`` once it has been recorded (or
set aside). If handling fails (the database is away) the answer is ``451``, so the
sending server keeps the message and tries again: nothing is lost. Built on aiosmtpd.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

log = logging.getLogger("newsletter.delivery.inbound")


class _Handler:
    def __init__(self, handle: Callable[[bytes], str]) -> None:
        self.handle = handle
        self.lock = threading.Lock()  # one message at a time: each is one transaction

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = bytes(envelope.original_content or b"")
        loop = asyncio.get_running_loop()
        try:
            what = await loop.run_in_executor(None, self._run, raw)
        except Exception as exc:  # never lose a bounce: the sender tries again later
            log.warning(
                "could not record a bounce (%s); asked the sender to retry", type(exc).__name__
            )
            return "451 4.3.0 Could not record the message now; try again later"
        return f"250 2.0.0 {what}"

    def _run(self, raw: bytes) -> str:
        with self.lock:
            return self.handle(raw)


class BounceReceiver:
    """An SMTP server on ``host:port`` that hands every message to ``handle``."""

    def __init__(
        self,
        handle: Callable[[bytes], str],
        host: str = "127.0.0.1",
        port: int = 2525,
        max_bytes: int = 2 * 1024 * 1024,
    ) -> None:
        self._controller = Controller(
            _Handler(handle),
            hostname=host,
            port=port,
            data_size_limit=max_bytes,
            ready_timeout=10.0,
        )

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self._controller.port)

    def start(self) -> BounceReceiver:
        """Start listening (in a thread of its own)."""
        self._controller.start()
        return self

    def stop(self) -> None:
        """Stop listening."""
        self._controller.stop()
