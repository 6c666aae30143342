"""Workers: claim due deliveries from the ledger, send them, record what happened.

One worker process runs ``threads`` sender threads over one transport (whose connection
pool they share) and one recorder thread. Each sender thread loops: claim a batch,
assemble each message from its variant's ready bytes, hand it to the transport, hand the
outcome to the recorder and go on. The recorder writes outcomes by group commit, in
steps that also mark the next rows started (see the fence below). A sender thread never
has more than ``2 x pipeline_depth`` messages on the wire or waiting for their record,
so after a SIGKILL at most ``2 x threads x pipeline_depth`` messages (8 with the
defaults) go out again, with the same Message-ID; claimed rows not yet sent are put back
and sent once.

- **Leases.** A worker registers a lease and renews it from a heartbeat thread every
  ``heartbeat_every`` seconds. Its claims are its own while the lease lives: another
  worker takes them over only once the lease has expired (``lease_ttl`` after the last
  renewal), or at once when the claimer was a process of this host that no longer runs.
  Outcomes are written only for rows the worker still holds; a stale holder's late
  outcomes are refused and logged, and a worker that finds its lease expired stops.
- **The wire fence.** Before messages go on the wire the recorder marks them started
  (:class:`~newsletter.store.ledger.FenceWriter`), a few at a time: as many as a thread
  sends in ``fence_window`` seconds (one at a time when sending is slow). An unsubscribe skips
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
from collections import Counter, deque
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

#: Seconds a sender thread waits for the next step of planning when it has sent every
#: row planned so far.
PLANNING_POLL = 0.05


@dataclass
class WorkerOptions:
    """How a worker runs."""

    threads: int = 0  # 0: as many as smtp_pool_size
    batch_size: int = 200  # rows claimed at once (claims cost more than sends)
    record_every: int = 50  # most rows marked started at once (a fence step)
    # Messages per sender thread that may go out before the first of them is recorded;
    # a SIGKILL repeats at most 2 x threads x pipeline_depth messages.
    pipeline_depth: int = 2
    # Seconds an outcome may wait for its commit when no thread needs it sooner.
    record_linger: float = 0.01
    once: bool = True  # drain what is due now and return; False: keep polling
    limit: int | None = None  # stop after this many messages handed to the transport
    months: list[str] | None = None  # only these sends (None: every running send)
    poll_interval: float = 5.0
    heartbeat_every: float = 5.0  # seconds between lease renewals
    lease_ttl: dt.timedelta = dt.timedelta(seconds=60)  # claims outlive a silent worker this long
    fence_window: float = 0.1  # messages marked started at once: about this many seconds' worth
    max_unavailable_wait: float | None = None  # give up waiting for the server after this
    # While this says True, more rows are being planned (in this process): a ``once``
    # run that finds the queue empty waits for them instead of ending.
    more_coming: Callable[[], bool] | None = None


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
                variant,
                self.settings,
                issue_month=snapshot.month,
                headers=snapshot.headers,
                summary_topics=dict(enumerate(snapshot.summary_topics, 1)),
            )


class _Ticket:
    """One submission to the recorder: filled in when its transaction has committed."""

    __slots__ = ("allowed", "done", "error", "outcomes", "refused", "start")

    def __init__(self, start: list[int], outcomes: list[Outcome]) -> None:
        self.start = start
        self.outcomes = outcomes
        self.allowed: set[int] = set()
        self.refused: list[int] = []
        self.error: BaseException | None = None
        self.done = threading.Event()

    def wait(self) -> set[int]:
        """Wait for the commit; returns the ids of ``start`` the fence lets go."""
        self.done.wait()
        if self.error is not None:
            raise self.error
        return self.allowed


class _Recorder:
    """Group commit of outcomes and fence steps for all sender threads of a worker.

    Sender threads submit what they have (outcomes of messages sent, rows they want to
    start) and go on; one thread writes whatever has accumulated in one transaction
    (:class:`~newsletter.store.ledger.FenceWriter`). It writes as soon as the previous
    commit has ended when someone needs it: a thread asks for rows to start, or nears its
    window of unrecorded messages (:meth:`hurry`), or what waits is ``linger`` seconds
    old. Otherwise it lets outcomes gather, because each commit has a fixed cost (on
    SQLite about as much as sending a message) and the window bounds what a crash repeats
    either way.
    """

    def __init__(
        self,
        store: Store,
        claimer: str,
        policy: BouncePolicy,
        before_commit: Callable[[], None],
        after_commit: Callable[[list[Outcome], set[int]], None],
        linger: float,
    ) -> None:
        self._writer = ledger.FenceWriter(store, claimer, policy)
        self._linger = linger
        self._hurry = False
        self._since = 0.0  # when the oldest queued submission came
        self._before = before_commit
        self._after = after_commit
        self._cond = threading.Condition()
        self._queue: list[_Ticket] = []
        self._closed = False
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="recorder", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, outcomes: list[Outcome], start: list[int] | None = None) -> _Ticket:
        ticket = _Ticket(start or [], outcomes)
        with self._cond:
            if self._failed is not None or self._closed:
                ticket.error = self._failed or RuntimeError("the recorder has stopped")
                ticket.done.set()
                return ticket
            if not self._queue:
                self._since = time.monotonic()
            self._queue.append(ticket)
            if ticket.start or self._linger <= 0:
                self._hurry = True
                self._cond.notify()
        return ticket

    def hurry(self) -> None:
        """Write what is queued as soon as the previous commit has ended."""
        with self._cond:
            if not self._hurry:
                self._hurry = True
                self._cond.notify()

    def close(self) -> None:
        """Write what is queued, then stop."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()

    def _main(self) -> None:
        try:
            self._write_all()
        finally:
            self._writer.close()

    def _write_all(self) -> None:
        while True:
            with self._cond:
                while True:
                    if not self._queue:
                        if self._closed:
                            return
                        self._cond.wait()
                        continue
                    left = self._linger - (time.monotonic() - self._since)
                    if self._hurry or self._closed or left <= 0:
                        break
                    self._cond.wait(left)
                tickets, self._queue = self._queue, []
                self._hurry = False
            outcomes = [o for t in tickets for o in t.outcomes]
            start = [i for t in tickets for i in t.start]
            try:
                if outcomes:
                    # A transport that sends in batches delivers what it holds before the
                    # outcomes become the record (a no-op for SMTP and the outbox).
                    self._before()
                allowed, refused = self._writer.step(start, outcomes)
                self._after(outcomes, set(refused))
            except BaseException as exc:  # every waiting sender thread sees it
                with self._cond:
                    self._failed = exc
                    tickets += self._queue
                    self._queue = []
                for t in tickets:
                    t.error = exc
                    t.done.set()
                continue
            gone = set(refused)
            for t in tickets:
                if t.start:
                    t.allowed = allowed.intersection(t.start)
                if gone:
                    t.refused = [o.delivery_id for o in t.outcomes if o.delivery_id in gone]
                t.done.set()


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
        self._progress_at = 0.0  # when on_progress was last called
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
        self._recorder = _Recorder(
            self.store,
            self.worker_id,
            self._policy,
            self.transport.flush,
            self._recorded,
            self.options.record_linger,
        )
        self._recorder.start()
        try:
            for t in threads:
                t.start()
            for t in threads:
                while t.is_alive():
                    t.join(0.2)
        finally:
            self._recorder.close()
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
                # Asked before the claim: once planning has ended, one more empty claim
                # means the rows it added last are all taken.
                coming = self.options.more_coming is not None and self.options.more_coming()
                batch = self._claim(n, due)
                if not batch:
                    self._take_budget(-n)  # give back the unused budget
                    if coming:
                        self.stop.wait(PLANNING_POLL)
                        continue
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
        """Send a claimed batch: each message through the fence, each outcome to the
        recorder, with at most ``2 x pipeline_depth`` of this thread's messages on the
        wire or waiting for their record at any moment (what a SIGKILL can repeat)."""
        depth = self.options.pipeline_depth
        window = 2 * depth
        waiting = deque(batch)  # no start asked for yet
        ready: deque[Claimed] = deque()  # the fence let them go
        asked: _Ticket | None = None  # a fence step in the recorder
        asked_rows: list[Claimed] = []
        unrecorded: deque[_Ticket] = deque()  # one message's outcome each
        finished: set[int] = set()  # rows with an outcome submitted, or kept off the wire
        error: BaseException | None = None
        try:
            while not (self.stop.is_set() or not self._available.is_set() or self._error):
                if asked is not None and (not ready or asked.done.is_set()):
                    self._admit(asked_rows, asked.wait(), ready, finished)
                    asked = None
                if not ready:
                    if not waiting:
                        break
                    asked, asked_rows = self._ask(waiting)
                    continue
                if (
                    asked is None
                    and waiting
                    and len(ready) <= depth
                    and not self.transport.paced
                    and self._fence_size() > 1
                ):
                    # Sending fast: ask for the next rows while these go out, so the thread
                    # rarely waits. (Sending slowly, or paced by a rate limit, each message
                    # waits for its own step: a row started ahead would go out even after a
                    # takeover, or wait for its slot while an unsubscribe waits for it.)
                    asked, asked_rows = self._ask(waiting)
                while unrecorded and (unrecorded[0].done.is_set() or len(unrecorded) >= window):
                    unrecorded.popleft().wait()
                item = ready.popleft()
                began = time.monotonic()
                outcome = self._send_one(item)
                took = time.monotonic() - began
                self._pace = took if self._pace <= 0 else 0.8 * self._pace + 0.2 * took
                unrecorded.append(self._recorder.submit([outcome]))
                if len(unrecorded) >= window - 1:
                    self._recorder.hurry()  # before this thread has to wait for it
                finished.add(item.delivery_id)
        except BaseException as exc:  # whatever was not sent goes back first
            error = exc
        # The rest goes back to the queue (also the rows of a fence step still in the
        # recorder: it writes them in order, so a release after a start clears it).
        back = [Outcome(b.delivery_id, "release") for b in batch if b.delivery_id not in finished]
        pending = list(unrecorded)
        if asked is not None:
            pending.append(asked)
        if back:
            pending.append(self._recorder.submit(back))
        self._recorder.hurry()
        for ticket in pending:
            try:
                ticket.wait()
            except BaseException as exc:
                error = error or exc
        if error is not None:
            raise error

    def _ask(self, waiting: deque[Claimed]) -> tuple[_Ticket, list[Claimed]]:
        """Ask the recorder to mark the next few rows started (a fence step)."""
        size = self._fence_size()
        if self.transport.paced:
            # Wait for the rate limit first, one message at a time: a row marked started
            # must really be going out, not waiting for its slot while an unsubscribe
            # waits for it.
            size = 1
            self.transport.reserve()
        group = [waiting.popleft() for _ in range(min(size, len(waiting)))]
        return self._recorder.submit([], [g.delivery_id for g in group]), group

    def _admit(
        self, group: list[Claimed], allowed: set[int], ready: deque[Claimed], finished: set[int]
    ) -> None:
        refused = 0
        for g in group:
            if g.delivery_id in allowed:
                ready.append(g)
            else:  # unsubscribed (or taken over) since the claim
                finished.add(g.delivery_id)
                refused += 1
        if refused:
            with self._lock:
                self.report.stopped_by_unsubscribe += refused

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

    def _recorded(self, outcomes: list[Outcome], refused: set[int]) -> None:
        """Count what the recorder has just committed (called in its thread)."""
        if refused:
            log.warning(
                "did not record %d outcomes: another worker took those deliveries over "
                "(this one had stopped renewing its lease)",
                len(refused),
            )
        counts = Counter(o.status for o in outcomes if o.delivery_id not in refused)
        with self._lock:
            self.report.sent += counts["sent"]
            self.report.retry += counts["retry"]
            self.report.failed += counts["failed"]
            self.report.released += counts["release"]
            self.report.refused += len(refused)
            if counts["release"] and self._budget is not None:
                self._budget += counts["release"]
            self.report.elapsed = time.monotonic() - self._start
        # Progress at most 20 times a second (the recorder commits far more often).
        now = time.monotonic()
        if self.on_progress is not None and outcomes and now - self._progress_at >= 0.05:
            self._progress_at = now
            self.on_progress(self.report)

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
