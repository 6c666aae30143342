"""Rendered public pages kept in memory until what they show changes.

The archive's pages depend only on the issue files and on which months have been sent
(:func:`newsletter.services.issues.archive_version`), not on the visitor. A
:class:`PageCache` keeps each rendered page under a key the view chooses after checking
its arguments (so random query strings cannot fill it) and drops them all when the
version changes. The version is looked up at most once per ``recheck`` seconds: looking
it up reads the issue folder and the ``sends`` table, which would cost more than serving
the page from memory. A sent issue or an edited file therefore shows within ``recheck``
seconds (one by default).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable


class PageCache:
    """Pages by key, valid for one version of what they show."""

    def __init__(
        self,
        recheck: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        max_pages: int = 1024,
    ) -> None:
        self.recheck = recheck
        self.clock = clock
        self.max_pages = max_pages
        self._lock = threading.Lock()
        self._pages: dict[Hashable, tuple[bytes, int]] = {}
        self._version: object = None
        self._checked_at: float | None = None

    def get(self, key: Hashable, version: Callable[[], object]) -> tuple[bytes, int] | None:
        """The page kept under ``key``, or None; ``version()`` is called when due."""
        self.version(version)
        return self._pages.get(key)

    def version(self, version: Callable[[], object]) -> object:
        """The version the kept pages belong to; ``version()`` is called when due.

        Pages that are not kept (a search, whose text the visitor chooses) use it too:
        the archive's search index is rebuilt when it changes.
        """
        now = self.clock()
        if self._checked_at is None or now - self._checked_at >= self.recheck:
            current = version()  # outside the lock: it reads files and the database
            with self._lock:
                if current != self._version:
                    self._pages.clear()
                    self._version = current
                self._checked_at = now
        return self._version

    def put(self, key: Hashable, page: tuple[bytes, int]) -> None:
        """Keep ``page`` (body, status) under ``key`` (nothing once the cache is full)."""
        with self._lock:
            if len(self._pages) < self.max_pages:
                self._pages[key] = page

    def clear(self) -> None:
        """Forget every page (the next request renders and checks the version)."""
        with self._lock:
            self._pages.clear()
            self._checked_at = None
