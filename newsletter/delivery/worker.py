"""Workers: claim due deliveries from the ledger, send them, record what happened.

One worker process runs ``threads`` sender threads over one transport (whose connection
pool they share). Each thread loops: claim a batch, assemble each message from its
variant's ready bytes, hand it to the transport. It works through the batch in small
steps (see the fence below): each step writes the outcomes of the messages sent since the
last one and marks the next few started, in one transaction. That bounds what a crash can
repeat: after a SIGKILL at most the messages of the step on the wire go out again (about
``fence_window`` seconds' worth, at most ``record_every``), with the same Message-ID;
claimed rows not yet sent are put back and sent once.

- **Leases.** A worker registers a lease and renews it from a heartbeat thread every
  ``heartbeat_every`` seconds. Its claims are its own while the lease lives: another
  worker takes them over only once the lease has expired (``lease_ttl`` after the last
  renewal), or at once when the claimer was a process of this host that no longer runs.
  Outcomes are written only for rows the worker still holds; a stale holder's late
  outcomes are refused and logged, and a worker that finds its lease expired stops.
- **The wire fence.** Before messages go on the wire the thread marks them started
  (:func:`~newsletter.store.ledger.begin_messages`), a few at a time: as many as it sends
  in ``fence_window`` seconds (one at a time when sending is slow). An unsubscribe skips
  every row of the person not yet started, in its own transaction; the fence refuses
  those, and the unsubscribe waits for a started one. So no message starts after an
  unsubscribe has returned.

- 2xx: sent. 4xx or a dropped connection: retried later with a growing delay
  (``retry_initial_delay`` doubling per attempt, capped at ``retry_max_delay``), failed
  after ``retry_give_up_after`` seconds. 5xx: failed, never retried, the reply recorded.
- Server unreachable: the send is marked paused (logged once), the worker probes the
  server with a growing interval and resumes by itself when it answers again; with
  ``max_unavailable_wait`` it gives up that many seconds after the server went away and
  reports ``paused`` (the rows stay queued).
- ``stop`` (SIGTERM in the CLI) lets in-flight messages finish, puts the rest of the
  claimed batch back, and returns.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from newsletter.config import Settings
from newsletter.delivery.message import (
    MessageError,
    MessageTemplate,
    assemble,
    build_message_template,
)
from newsletter.delivery.personalise import Recipient
from newsletter.delivery.transports import SendOutcome, Transport
from newsletter.errors import NewsletterError
from newsletter.rules.bounces import SOFT, BouncePolicy, classify_reply
from newsletter.rules.schedules import local_date
from newsletter.rules.statuses import retry_after
from newsletter.store import ledger
from newsletter.store.db import Store
from newsletter.store.ledger import Claimed, Outcome

log = logging.getLogger("newsletter.delivery.worker")


@dataclass
class WorkerOptions:
    """How a worker runs."""

    threads: int = 0  # 0: as many as smtp_pool_size
    batch_size: int = 200  # rows claimed at once (claims cost more than sends)
    record_every: int = 50  # most messages between two writes of outcomes (fence steps)
    once: bool = True  # drain what is due now and return; False: keep polling
    limit: int | None = None  # stop after this many messages handed to the transport
    months: list[str] | None = None  # only these sends (None: every running send)
    poll_interval: float = 5.0
    heartbeat_every: float = 5.0  # seconds between lease renewals
    lease_ttl: dt.timedelta = dt.timedelta(seconds=60)  # claims outlive a silent worker this long
    fence_window: float = 0.1  # messages marked started at once: about this many seconds' worth
    max_unavailable_wait: float | None = None  # give up waiting for the server after this


@dataclass
class WorkerReport:
    """What one worker run did."""

    sent: int = 0
    retry: int = 0
    failed: int = 0
    released: int = 0
    recovered: int = 0
    refused: int = 0  # outcomes not written: another worker had taken the rows over
    stopped_by_unsubscribe: int = 0  # claimed rows the fence kept off the wire
    elapsed: float = 0.0
    paused: bool = False  # still waiting for the SMTP server when the run ended
    waiting: bool = False  # waiting for the SMTP server now (the progress shows it)
    stopped: bool = False
    finished_months: list[str] = field(default_factory=list)

    @property
    def handled(self) -> int:
        """Messages handed to the transport."""
        return self.sent + self.retry + self.failed

    @property
    def rate(self) -> float:
        """Messages per second over the run."""
        return self.handled / self.elapsed if self.elapsed > 0 else 0.0


class SendAbortedError(NewsletterError):
    """The worker stopped because of a problem no retry can fix (e.g. the login)."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _brief(exc: BaseException) -> str:
    """An unexpected error in one line, without the statement and parameters a database
    error appends (they hold addresses and Message-IDs)."""
    text = str(exc).split("\n", 1)[0].split("[SQL:", 1)[0].strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def dead_local_claimers(claimers: list[str]) -> list[str]:
    """The claimers of this host whose process no longer runs."""
    dead = []
    for c in claimers:
        pid = ledger.claimer_pid(c)
        if pid is not None and pid != os.getpid() and not _pid_alive(pid):
            dead.append(c)
    return dead


class _Messages:
    """Message templates per (send, revision, variant mask), built once from the send's
    snapshot in the store and shared by the sender threads. Never reads issues/ or
    templates/: a worker needs the database and the transport only."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self._lock = threading.Lock()
        self._templates: dict[tuple[int, int, int], MessageTemplate] = {}

    def template(self, item: Claimed) -> MessageTemplate:
        key = (item.send_id, item.revision, item.variant_mask)
        tpl = self._templates.get(key)
        if tpl is not None:
            return tpl
        with self._lock:
            tpl = self._templates.get(key)
            if tpl is None:
                self._load(item.send_id, item.revision)
                tpl = self._templates.get(key)
                if tpl is None:
                    raise NewsletterError(
                        f"the snapshot of the send of {item.month} has no variant with mask "
                        f"{item.variant_mask}",
                        hint=f"re-plan the rest of it: `newsletter send {item.month} --replan`",
                    )
        return tpl

    def _load(self, send_id: int, revision: int) -> None:
        snapshot = ledger.load_snapshot(self.store, send_id, revision)
        for mask, variant in snapshot.variants.items():
            self._templates[(send_id, revision, mask)] = build_message_template(
                variant, self.settings, issue_month=snapshot.month, headers=snapshot.headers
            )


class DeliveryWorker:
    """Drains the ledger through one transport with a few sender threads."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        transport: Transport,
        options: WorkerOptions | None = None,
        on_progress: Callable[[WorkerReport], None] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.transport = transport
        self.options = options or WorkerOptions()
        self.on_progress = on_progress
        self.stop = stop or threading.Event()
        self.report = WorkerReport()
        self._messages = _Messages(settings, store)
        self._lock = threading.Lock()
        self._available = threading.Event()
        self._available.set()
        self._prober = threading.Lock()
        self._error: BaseException | None = None
        self._budget = self.options.limit
        self.worker_id = ledger.worker_id()
        self._lease_lost = False
        self._down_since: float | None = None
        self._pace = 0.0  # seconds per message in one thread, smoothed
        self._claimed_up_to = 0  # the highest delivery id claimed: the next claim's start
        self._policy = BouncePolicy(
            settings.bounce_soft_threshold, settings.bounce_soft_window_days
        )

    # ------------------------------------------------------------------ public

    def run(self) -> WorkerReport:
        """Send until nothing is due (``once``) or until stopped; returns the report.

        Everything a message says comes from its send's snapshot; of the worker's own
        settings only the key (links, Message-IDs), ``dev_redirect``, the time zone and
        the retry and pool settings are used.
        """
        self.settings.require("secret_key", "to sign the links in emails")
        start = self._start = time.monotonic()
        self._run_started = dt.datetime.now(dt.UTC)
        claimers = ledger.local_claimers(self.store)
        self.report.recovered = ledger.release_stale(
            self.store, dead_claimers=dead_local_claimers(claimers), grace=self.options.lease_ttl
        )
        if self.report.recovered:
            log.warning(
                "put %d deliveries of a stopped worker back in the queue",
                self.report.recovered,
            )
        ledger.take_lease(self.store, self.worker_id, self.options.lease_ttl)
        beating = threading.Event()
        heart = threading.Thread(target=self._heartbeat, args=(beating,), name="heartbeat")
        heart.daemon = True
        heart.start()
        n = self.options.threads or self.settings.smtp_pool_size
        threads = [
            threading.Thread(target=self._thread_main, name=f"sender-{i}", daemon=True)
            for i in range(n)
        ]
        try:
            for t in threads:
                t.start()
            for t in threads:
                while t.is_alive():
                    t.join(0.2)
        finally:
            beating.set()
            heart.join()
            if not self._lease_lost:
                ledger.drop_lease(self.store, self.worker_id)
        self.report.finished_months = ledger.finish_sends(self.store)
        self.report.elapsed = time.monotonic() - start
        self.report.stopped = self.stop.is_set()
        if self._error is not None:
            err = self._error
            if isinstance(err, NewsletterError):
                raise err
            raise SendAbortedError(f"the send stopped: {_brief(err)}") from err
        if self._lease_lost:
            raise SendAbortedError(
                "this worker's lease expired (it could not renew it for "
                f"{self.options.lease_ttl.total_seconds():.0f} s), so another worker may "
                "have taken over its messages; it stopped",
                hint="check the database connection and the machine's load, then run "
                "`newsletter worker` again",
            )
        return self.report

    def _heartbeat(self, done: threading.Event) -> None:
        """Renew the lease until the run ends; stop the run if the lease was lost."""
        failures = 0
        while not done.wait(self.options.heartbeat_every):
            try:
                alive = ledger.renew_lease(self.store, self.worker_id, self.options.lease_ttl)
                failures = 0
            except Exception as exc:  # the database is away: the lease runs down
                failures += 1
                log.warning("could not renew the worker's lease (%s)", type(exc).__name__)
                continue
            if not alive:
                log.error(
                    "this worker's lease expired: another worker may take over its "
                    "messages; stopping"
                )
                self._lease_lost = True
                self.stop.set()
                return

    # ------------------------------------------------------------------ threads

    def _today(self) -> dt.date:
        # The date pauses end on: the same day planning uses (the configured time zone).
        return local_date(dt.datetime.now(dt.UTC), self.settings.timezone)

    def _take_budget(self, wanted: int) -> int:
        with self._lock:
            if self._budget is None:
                return wanted
            n = min(wanted, self._budget)
            self._budget -= n
            return n

    def _thread_main(self) -> None:
        try:
            while not self.stop.is_set() and self._error is None:
                if not self._available.is_set() and not self._wait_for_server():
                    return
                n = self._take_budget(self.options.batch_size)
                if n <= 0:
                    return
                # A --once run sends what was due when it started: a row it retries is
                # not due again within the same run, however short the retry delay.
                due = self._run_started if self.options.once else None
                batch = self._claim(n, due)
                if not batch:
                    self._take_budget(-n)  # give back the unused budget
                    if self.options.once:
                        return
                    ledger.finish_sends(self.store)
                    self.stop.wait(self.options.poll_interval)
                    continue
                if len(batch) < n:
                    self._take_budget(len(batch) - n)
                self._send_batch(batch)
        except BaseException as exc:  # recorded and re-raised by run() in the main thread
            self._error = exc
            self.stop.set()

    def _claim(self, n: int, due: dt.datetime | None) -> list[Claimed]:
        """Claim up to ``n`` rows: first above the highest id this worker claimed (a
        claim costs the same at the start and the end of a send), then, when those run
        out, anywhere in the queue (retries that came due, rows put back)."""
        after = self._claimed_up_to
        batch = ledger.claim_batch(
            self.store,
            n,
            now=due,
            claimer=self.worker_id,
            months=self.options.months,
            today=self._today(),
            after=after,
        )
        if len(batch) < n and after:
            batch += ledger.claim_batch(
                self.store,
                n - len(batch),
                now=due,
                claimer=self.worker_id,
                months=self.options.months,
                today=self._today(),
            )
        if batch:
            with self._lock:
                top = max(b.delivery_id for b in batch)
                self._claimed_up_to = max(self._claimed_up_to, top)
        return batch

    def _fence_size(self) -> int:
        """How many messages to mark started at once: about ``fence_window`` seconds'
        worth at this thread's pace (one at a time when sending is slow)."""
        pace = self._pace
        if pace <= 0:
            return 1
        return max(1, min(self.options.record_every, int(self.options.fence_window / pace)))

    def _send_batch(self, batch: list[Claimed]) -> None:
        outcomes: list[Outcome] = []  # not written yet
        counts = {"sent": 0, "retry": 0, "failed": 0, "release": 0}
        done: set[int] = set()  # rows with an outcome (written or to be), or dropped
        cleared: set[int] = set()  # rows the fence let on the wire
        i = 0
        try:
            while i < len(batch):
                item = batch[i]
                if self.stop.is_set() or not self._available.is_set() or self._error:
                    outcomes.append(Outcome(item.delivery_id, "release"))
                    counts["release"] += 1
                    done.add(item.delivery_id)
                    i += 1
                    continue
                if item.delivery_id not in cleared:
                    # The fence step: write what was sent so far (after a SIGKILL only
                    # the messages on the wire go again) and start the next few.
                    size = self._fence_size()
                    if self.transport.paced:
                        # Wait for the rate limit first, one message at a time: a row
                        # marked started must really be going out, not waiting for its
                        # slot while an unsubscribe waits for it.
                        size = 1
                        self.transport.reserve()
                    group = [b.delivery_id for b in batch[i : i + size]]
                    allowed = self._record(outcomes, counts, start=group)
                    outcomes, counts = [], dict.fromkeys(counts, 0)
                    cleared.update(allowed)
                    refused = [g for g in group if g not in allowed]
                    if refused:  # unsubscribed (or taken over) since the claim
                        done.update(refused)
                        with self._lock:
                            self.report.stopped_by_unsubscribe += len(refused)
                    if item.delivery_id not in allowed:
                        i += 1
                        continue
                began = time.monotonic()
                outcome = self._send_one(item)
                took = time.monotonic() - began
                self._pace = took if self._pace <= 0 else 0.8 * self._pace + 0.2 * took
                outcomes.append(outcome)
                counts[outcome.status] += 1
                done.add(item.delivery_id)
                i += 1
        except BaseException:
            # Whatever was not sent goes back to the queue before the error propagates.
            done.update(o.delivery_id for o in outcomes)
            back = [Outcome(b.delivery_id, "release") for b in batch if b.delivery_id not in done]
            counts["release"] += len(back)
            self._record(outcomes + back, counts)
            raise
        self._record(outcomes, counts)

    def _send_one(self, item: Claimed) -> Outcome:
        template = self._messages.template(item)
        person = Recipient(
            email=item.email,
            subscriber_id=item.subscriber_id,
            name=item.name,
            topics=item.topics,
            all_topics=item.all_topics,
        )
        try:
            msg = assemble(template, person)
        except MessageError as exc:
            # Bad stored data (e.g. a line break in a name) fails this one row only.
            return Outcome(item.delivery_id, "failed", f"not sent: {exc}")
        began = time.monotonic()
        result = self.transport.send(msg)
        return self._outcome(item, result, msg.message_id, began)

    def _record(
        self, outcomes: list[Outcome], counts: dict[str, int], start: list[int] | None = None
    ) -> set[int]:
        """Write ``outcomes`` and mark ``start`` on the wire (one transaction); returns
        the ids of ``start`` the fence lets go."""
        # A transport that sends in batches delivers what it holds before the outcomes
        # become the record (a no-op for SMTP and the outbox).
        if outcomes:
            self.transport.flush()
        allowed, refused = ledger.begin_messages(
            self.store, self.worker_id, start or [], outcomes, policy=self._policy
        )
        if refused:
            log.warning(
                "did not record %d outcomes: another worker took those deliveries over "
                "(this one had stopped renewing its lease)",
                len(refused),
            )
            gone = set(refused)
            for o in outcomes:
                if o.delivery_id in gone:
                    counts[o.status] -= 1
        with self._lock:
            self.report.sent += counts["sent"]
            self.report.retry += counts["retry"]
            self.report.failed += counts["failed"]
            self.report.released += counts["release"]
            self.report.refused += len(refused)
            if counts["release"] and self._budget is not None:
                self._budget += counts["release"]
            self.report.elapsed = time.monotonic() - self._start
        if self.on_progress is not None and outcomes:
            self.on_progress(self.report)
        return allowed

    def _outcome(
        self, item: Claimed, result: SendOutcome, message_id: str, began: float
    ) -> Outcome:
        reply = f"{result.code} {result.reply}".strip() if result.code else result.reply
        if result.status == "sent":
            return Outcome(item.delivery_id, "sent", reply, message_id)
        if result.status == "failed":
            kind = classify_reply(result.code, result.reply)
            return Outcome(
                item.delivery_id, "failed", reply, message_id, bounce=kind, code=result.code
            )
        if result.status == "unavailable":
            self._server_down(reply, began)
            return Outcome(item.delivery_id, "release")
        # retry: a growing delay, until the give-up time has passed
        s = self.settings
        decision = retry_after(
            item.attempts,
            item.first_attempt_at,
            dt.datetime.now(dt.UTC),
            s.retry_initial_delay,
            s.retry_max_delay,
            s.retry_give_up_after,
        )
        if decision.give_up:
            return Outcome(
                item.delivery_id,
                "failed",
                f"gave up after {item.attempts} attempts: {reply}",
                message_id,
                bounce=SOFT,  # a delivery that never got through counts against the address
                code=result.code,
            )
        return Outcome(item.delivery_id, "retry", reply, message_id, next_attempt_at=decision.at)

    # ------------------------------------------------------------------ outages

    def _server_down(self, reply: str, since: float) -> None:
        with self._lock:
            if not self._available.is_set():
                return
            self._available.clear()
            if self._down_since is None:
                self._down_since = since  # when the attempt that failed began
        log.warning(
            "the SMTP server cannot be reached (%s); the send is paused and resumes "
            "when the server is back",
            reply or "no answer",
        )
        ledger.set_send_paused(self.store, True, f"SMTP server unavailable: {reply}"[:500])
        self.report.waiting = True
        if self.on_progress is not None:
            self.on_progress(self.report)

    def _wait_for_server(self) -> bool:
        """Probe until the server answers (one thread probes, the others wait)."""

        if not self._prober.acquire(blocking=False):
            while not self._available.is_set() and not self.stop.is_set():
                self._available.wait(0.2)
            return self._available.is_set() and not self.stop.is_set()
        try:
            delay = 0.5
            limit = self.options.max_unavailable_wait
            since = self._down_since if self._down_since is not None else time.monotonic()
            while not self.stop.is_set():
                ok = self.transport.probe().status == "sent"
                if ok:
                    ledger.set_send_paused(self.store, False)
                    log.warning("the SMTP server is back; the send resumes")
                    with self._lock:
                        self._down_since = None
                        self._available.set()
                    self.report.waiting = False
                    if self.on_progress is not None:
                        self.on_progress(self.report)
                    return True
                # The limit counts from when the server went away, probes included (a
                # server that accepts connections but never greets makes each one slow).
                left = None if limit is None else limit - (time.monotonic() - since)
                if left is not None and left <= 0:
                    self.report.paused = True
                    self.stop.set()
                    return False
                self.stop.wait(delay if left is None else min(delay, left))
                delay = min(delay * 2, 30.0)
            return False
        finally:
            self._prober.release()
