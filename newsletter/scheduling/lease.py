"""One scheduler per store: a lease row with a heartbeat.

APScheduler must not share a job store between processes, so ``scheduler run`` takes the
store's lease before it starts and renews it every ``scheduler_heartbeat_seconds``. A
second scheduler finds the lease held and refuses to start. A lease whose holder stopped
heartbeating is taken over once it expires (``scheduler_lease_seconds``); a holder on this
host whose process is gone (killed) is replaced at once.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import time
import uuid
from typing import TYPE_CHECKING

from newsletter.errors import NewsletterError

if TYPE_CHECKING:
    from newsletter.store.db import Store


class SchedulerRunningError(NewsletterError):
    """Another scheduler holds this store's lease."""


def make_holder() -> str:
    """This process's lease identity: ``host:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _dead_local(holder: str) -> bool:
    """True when ``holder`` ran on this host and its process no longer exists."""
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class Lease:
    """The lease of one scheduler process on one store."""

    def __init__(self, store: Store, ttl: float, holder: str | None = None) -> None:
        self.store = store
        self.ttl = ttl
        self.holder = holder or make_holder()
        self.renewed_at = 0.0  # monotonic time of the last successful acquire or renewal

    def try_acquire(self) -> bool:
        """Take the lease if it is free, expired or left by a dead local process."""
        from newsletter.store import schedule as db

        current = db.read_lease(self.store)
        takeover = [current.holder] if current and _dead_local(current.holder) else []
        if db.acquire_lease(self.store, self.holder, self.ttl, takeover_from=takeover):
            self.renewed_at = time.monotonic()
            return True
        return False

    def acquire(self, wait: float = 0.0, poll: float = 0.5) -> None:
        """Take the lease, waiting up to ``wait`` seconds; else :class:`SchedulerRunningError`."""
        from newsletter.store import schedule as db

        deadline = time.monotonic() + wait
        while True:
            if self.try_acquire():
                return
            if time.monotonic() >= deadline:
                break
            time.sleep(min(poll, max(0.05, deadline - time.monotonic())))
        current = db.read_lease(self.store)
        who = current.holder.rsplit(":", 1)[0] if current else "another process"
        age = ""
        expires = ""
        if current:
            now = dt.datetime.now(dt.UTC)
            beat = max(0.0, (now - current.heartbeat_at).total_seconds())
            age = f", last heartbeat {beat:.0f} s ago"
            expires = f" (in {max(0.0, (current.expires_at - now).total_seconds()):.0f} s)"
        raise SchedulerRunningError(
            f"a scheduler is already running for this store ({who}{age}); "
            "only one may run per store",
            hint="stop the other one first; if it was killed, its lease expires after "
            f"scheduler_lease_seconds{expires} and `newsletter scheduler run --wait` "
            "takes over then",
        )

    def renew(self) -> bool:
        """Heartbeat; False when another scheduler has taken the lease."""
        from newsletter.store import schedule as db

        if db.renew_lease(self.store, self.holder, self.ttl):
            self.renewed_at = time.monotonic()
            return True
        return False

    def expired_locally(self) -> bool:
        """True when no renewal succeeded for a whole lease time (e.g. the database is down)."""
        return time.monotonic() - self.renewed_at > self.ttl

    def release(self) -> None:
        """Give the lease up so that the next scheduler may start at once."""
        from newsletter.store import schedule as db

        db.release_lease(self.store, self.holder)
