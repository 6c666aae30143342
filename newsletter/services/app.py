"""The application object: settings, and the store and transport opened once per process."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable

from newsletter.config import Settings
from newsletter.content.files import IssueLibrary
from newsletter.delivery.transports import Transport, open_transport
from newsletter.rules.schedules import local_date
from newsletter.store.db import Store, open_store


def utc_now() -> dt.datetime:
    """The current time, aware, in UTC."""
    return dt.datetime.now(dt.UTC)


class App:
    """What a process needs to run any job: its settings, one store, one transport.

    The store and the transport are opened on first use and then shared by every caller
    of the process (threads included): a CLI command, every request of the web pages, every
    firing of the scheduler. ``clock`` gives the current time (aware UTC); tests pass their
    own to control time. Close the app (or use ``with``) when the process is done.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        store: Store | None = None,
        clock: Callable[[], dt.datetime] = utc_now,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self._store = store
        self._own_store = store is None
        self._transport: Transport | None = None
        self._library: IssueLibrary | None = None
        self._lock = threading.Lock()

    @property
    def store(self) -> Store:
        """The store of ``settings.database_url`` (opened, and checked migrated, once)."""
        if self._store is None:
            with self._lock:
                if self._store is None:
                    self._store = open_store(self.settings)
        return self._store

    @property
    def transport(self) -> Transport:
        """The transport of ``settings.smtp_url`` (made once; it connects when it sends)."""
        if self._transport is None:
            with self._lock:
                if self._transport is None:
                    self._transport = open_transport(self.settings)
        return self._transport

    @property
    def library(self) -> IssueLibrary:
        """The valid issue files of ``issues_dir``, re-read only when a file changes."""
        if self._library is None:
            self._library = IssueLibrary(self.settings.issues_dir)
        return self._library

    def now(self) -> dt.datetime:
        """The current time (aware UTC) by this app's clock."""
        return self.clock()

    def today(self) -> dt.date:
        """Today's date in the configured time zone, by this app's clock."""
        return local_date(self.clock(), self.settings.timezone)

    def close(self) -> None:
        """Close the transport and the store (if this app opened it)."""
        with self._lock:
            transport, self._transport = self._transport, None
            store = self._store
            if self._own_store:
                self._store = None
        if transport is not None:
            transport.close()
        if store is not None and self._own_store:
            store.close()

    def __enter__(self) -> App:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
