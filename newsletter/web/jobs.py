"""Work done after the response: store changes and emails of sign-up and lost-link forms.

The sign-up and "send me my link" pages answer the same way, at the same speed, whether
the address is known or not; so the lookup, the store change and the SMTP conversation
happen here, on one background thread, never while the browser waits. A request's jobs
are queued only once its response is complete (``WebContext.submit``), so they never
run beside the request that asked for them.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

log = logging.getLogger("newsletter.web")


class BackgroundJobs:
    """A single worker thread running submitted callables in order."""

    def __init__(self, name: str = "newsletter-web-jobs") -> None:
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[], None]) -> None:
        """Run ``job`` later; its exceptions are logged, never raised to the request."""
        self._queue.put(job)

    @property
    def pending(self) -> int:
        """Jobs submitted and not finished yet (the one running included)."""
        return self._queue.unfinished_tasks

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until every submitted job has finished (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self) -> None:
        """Finish the queued jobs and stop the thread."""
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                job()
            except Exception as exc:  # logged without a traceback's local values
                log.error("background job failed: %s: %s", type(exc).__name__, exc)
            finally:
                self._queue.task_done()
