"""The store's one scheduler process (``newsletter scheduler run``): APScheduler wiring.

- APScheduler 3 holds its jobs in memory only. They are rebuilt from the store (the
  ``schedules`` rows and the ``monthly_schedule`` setting) when the process starts and
  every ``scheduler_poll_seconds``, so there is no second copy of the schedule to
  reconcile and nothing reads APScheduler's private state.
- Fixed job ids (``monthly``, ``once:YYYY-MM``); ``coalesce`` on, ``max_instances`` 1 and
  ``misfire_grace_time`` from the settings.
- The lease (:class:`newsletter.services.schedules.Lease`) is taken first, so two
  schedulers never run for one store.
- At start, firings a stopped scheduler left mid-send are resumed, and what came due
  while none ran (:func:`newsletter.services.schedules.due_firings`) is fired now, or
  reported as missed when it is later than the grace time allows.
- What a firing does is :func:`newsletter.services.schedules.fire`.

The command blocks in :func:`run_scheduler`: its thread keeps the lease alive and syncs
jobs while APScheduler's own thread fires them (a BackgroundScheduler driven by this
blocking loop, so the heartbeat never waits behind a running send).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.background import BackgroundScheduler

from newsletter.rules.schedules import month_of, zone
from newsletter.services import schedules, sends
from newsletter.services.app import App
from newsletter.services.schedules import (
    MONTHLY_JOB,
    UNAVAILABLE_WAIT,
    DueFiring,
    Lease,
    once_job_id,
)

log = logging.getLogger("newsletter.scheduler")

RETRY_AFTER = 30.0  # seconds before a firing that crashed (e.g. database down) is retried


class SchedulerProcess:
    """APScheduler driven by the store: jobs rebuilt from it, firings recorded in it."""

    def __init__(self, app: App) -> None:
        self.app = app
        settings = app.settings
        self.scheduler = BackgroundScheduler(
            jobstores={"default": MemoryJobStore()},
            executors={"default": ThreadPoolExecutor(4)},
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": settings.misfire_grace_time,
            },
            timezone=zone(settings.timezone),
        )
        self.scheduler.add_listener(self._on_event, EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)
        # One stop event per firing in progress (a worker sets its own on its errors,
        # which must not stop other firings); shutting down sets them all.
        self._firing: set[threading.Event] = set()
        self._stopping = False
        # What this process already made of each one-off row: (version, status, run_at).
        self._synced: dict[str, tuple[int, str, dt.datetime]] = {}
        self._rule: str | None = None
        self._draining: threading.Thread | None = None

    # ------------------------------------------------------------------ jobs

    def _fire(self, job_id: str, month: str | None = None, run_at: str | None = None) -> None:
        """Every job's function: work out the month and time, then fire."""
        settings = self.app.settings
        if run_at is not None:
            scheduled = dt.datetime.fromisoformat(run_at)
        else:
            rule = schedules.monthly_rule(self.app)
            now = self.app.now()
            lookback = dt.timedelta(seconds=settings.misfire_grace_time + 60)
            scheduled = (rule.last_time(now, lookback) if rule else None) or now
            scheduled = scheduled.astimezone(dt.UTC)
        month = month or month_of(scheduled, settings.timezone)
        stop = threading.Event()
        self._firing.add(stop)
        if self._stopping:
            stop.set()
        try:
            schedules.fire(self.app, job_id, month, scheduled, stop)
        except Exception as exc:
            log.exception("the firing of %s for %s failed: %s", job_id, month, exc)
            self._retry_later(job_id, month, scheduled, str(exc))
        finally:
            self._firing.discard(stop)

    def _add_now(self, firing: DueFiring, prefix: str) -> None:
        """Run ``firing`` as soon as possible (a one-off job, kept in memory)."""
        self.scheduler.add_job(
            self._fire,
            "date",
            run_date=self.app.now(),
            id=f"{prefix}:{firing.job_id}:{firing.month}",
            kwargs={
                "job_id": firing.job_id,
                "month": firing.month,
                "run_at": firing.scheduled_for.isoformat(),
            },
            replace_existing=True,
            misfire_grace_time=None,
        )

    def _retry_later(self, job_id: str, month: str, scheduled: dt.datetime, reason: str) -> None:
        """Try a crashed firing again soon, while it is still within the grace time."""
        now = self.app.now()
        if (now - scheduled).total_seconds() < self.app.settings.misfire_grace_time:
            self.scheduler.add_job(
                self._fire,
                "date",
                run_date=now + dt.timedelta(seconds=RETRY_AFTER),
                id=f"retry:{job_id}:{month}",
                kwargs={"job_id": job_id, "month": month, "run_at": scheduled.isoformat()},
                replace_existing=True,
                misfire_grace_time=None,
            )
            log.warning("retrying %s for %s in %.0f s", job_id, month, RETRY_AFTER)
            return
        schedules.report_failed(self.app, month, reason)

    def _on_event(self, event: JobExecutionEvent) -> None:
        """Record misses, log skipped overlapping runs."""
        job_id = event.job_id
        if job_id.startswith(("retry:", "resume:", "due:")):
            job_id = job_id.split(":", 1)[1].rsplit(":", 1)[0]
        if event.code == EVENT_JOB_MISSED:
            scheduled = event.scheduled_run_time.astimezone(dt.UTC)
            month = schedules.month_of_job(job_id) or month_of(
                scheduled, self.app.settings.timezone
            )
            try:
                schedules.report_missed(self.app, job_id, month, scheduled)
            except Exception:
                log.exception("could not record the missed firing of %s", job_id)
        elif event.code == EVENT_JOB_MAX_INSTANCES:
            log.warning("%s fired while its previous run is still going: not started twice", job_id)

    # ------------------------------------------------------------------ syncing

    def sync(self) -> None:
        """Make the in-memory jobs match the monthly rule and the ``schedules`` rows.

        A one-off whose time has passed without a firing (moved into the past, or come
        due while this process was starting) is fired now within the grace time, or
        reported as missed; a row this process has already handled is left alone.
        """
        rule = schedules.monthly_rule(self.app)
        if rule is not None:
            if self._rule != rule.describe():
                self.scheduler.add_job(
                    self._fire,
                    rule.trigger(),
                    id=MONTHLY_JOB,
                    name=f"monthly: {rule.describe()}",
                    kwargs={"job_id": MONTHLY_JOB},
                    replace_existing=True,
                )
                # The rule is in force from now on (a changed rule starts again).
                schedules.rule_in_force(self.app, rule)
                self._rule = rule.describe()
                log.info("monthly send: %s", rule.describe())
        elif self._rule is not None:
            self.scheduler.remove_job(MONTHLY_JOB)
            self._rule = None
            log.info("monthly send removed (monthly_schedule is empty)")

        now = self.app.now()
        grace = dt.timedelta(seconds=self.app.settings.misfire_grace_time)
        wanted = set()
        for row in schedules.requested(self.app):
            job_id = once_job_id(row.month)
            key = (row.version, row.status, row.run_at)
            if row.status == "scheduled":
                wanted.add(job_id)
            if self._synced.get(job_id) == key:
                continue
            self._synced[job_id] = key
            job = self.scheduler.get_job(job_id)
            if row.status != "scheduled":
                if job is not None:
                    self.scheduler.remove_job(job_id)
                    log.info("one-off send of %s %s", row.month, row.status)
                continue
            if row.run_at > now:
                self.scheduler.add_job(
                    self._fire,
                    "date",
                    run_date=row.run_at,
                    id=job_id,
                    name=f"send {row.month} at {row.run_at.isoformat()}",
                    kwargs={"job_id": job_id, "month": row.month, "run_at": row.run_at.isoformat()},
                    replace_existing=True,
                )
                log.info("one-off send of %s at %s", row.month, row.run_at)
                continue
            if job is not None:
                self.scheduler.remove_job(job_id)
            due = DueFiring(job_id, row.month, row.run_at, row.run_at + grace < now)
            self._handle_due(due)
        for job in self.scheduler.get_jobs():
            if job.id.startswith("once:") and job.id not in wanted:
                self.scheduler.remove_job(job.id)

    def _handle_due(self, due: DueFiring) -> None:
        if due.missed:
            schedules.report_missed(self.app, due.job_id, due.month, due.scheduled_for)
        else:
            log.warning("the send of %s (due %s) runs now", due.month, due.scheduled_for)
            self._add_now(due, "due")

    def start(self) -> list[tuple[str, dt.datetime | None]]:
        """Start APScheduler with the store's jobs; returns (job id, next run) of each."""
        self.scheduler.start(paused=True)
        for firing in schedules.unfinished_firings(self.app):
            log.warning(
                "resuming the send of %s left unfinished by a stopped scheduler", firing.month
            )
            self._add_now(firing, "resume")
        for due in schedules.due_firings(self.app):
            if due.job_id == MONTHLY_JOB:
                self._handle_due(due)
        self.sync()
        self.scheduler.resume()
        return [(j.id, j.next_run_time) for j in self.scheduler.get_jobs()]

    def shutdown(self) -> None:
        """Stop firing; firings in progress finish their messages in flight and stop."""
        self._stopping = True
        for event in list(self._firing):
            event.set()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)

    def drain_due(self) -> None:
        """Deliver what is due (retries whose time has come, sends resumed after an
        outage) in a thread of its own, as `newsletter worker --once` would: the
        scheduler alone is enough for a small list. Separate workers may run as well."""
        if self._stopping or (self._draining is not None and self._draining.is_alive()):
            return
        if self._firing:  # a firing's own worker delivers what is due meanwhile
            return
        if not sends.has_due(self.app):
            return
        stop = threading.Event()
        self._firing.add(stop)

        def drain() -> None:
            try:
                options = sends.WorkerOptions(once=True, max_unavailable_wait=UNAVAILABLE_WAIT)
                result = sends.run_worker(self.app, options, stop=stop)
                if result.report.handled:
                    log.info(
                        "delivered what was due: sent %d, retrying %d, failed %d",
                        result.report.sent,
                        result.report.retry,
                        result.report.failed,
                    )
            except Exception as exc:
                log.error("delivering what was due failed: %s", exc)
            finally:
                self._firing.discard(stop)

        self._draining = threading.Thread(target=drain, name="drain-due", daemon=True)
        self._draining.start()

    def pause(self) -> None:
        """Fire nothing until :meth:`resume` (our lease may have lapsed)."""
        self.scheduler.pause()

    def resume(self) -> None:
        """Fire again."""
        self.scheduler.resume()


def run_scheduler(
    app: App,
    stop: threading.Event | None = None,
    wait: float = 0.0,
    on_started: Callable[[list[tuple[str, dt.datetime | None]]], None] | None = None,
) -> bool:
    """Run the store's scheduler until ``stop`` is set; False if it lost its lease.

    Refuses to start (:class:`~newsletter.services.schedules.SchedulerRunningError`) while
    another scheduler holds the lease, after waiting up to ``wait`` seconds for it.
    """
    settings = app.settings
    zone(settings.timezone)
    schedules.monthly_rule(app)  # a bad rule stops the start, not a firing
    stop = stop or threading.Event()
    lease = Lease(app)
    lease.acquire(wait=wait)
    process = SchedulerProcess(app)
    kept = True
    try:
        jobs = process.start()
        log.info("scheduler started (%s); %d jobs", lease.holder, len(jobs))
        if on_started is not None:
            on_started(jobs)
        kept = _loop(process, lease, stop)
    finally:
        process.shutdown()
        if kept:
            try:
                lease.release()
            except Exception:
                log.exception("could not release the scheduler lease")
    return kept


def _loop(process: SchedulerProcess, lease: Lease, stop: threading.Event) -> bool:
    """Heartbeat and sync until stopped; False when another process took the lease."""
    settings = process.app.settings
    beat = settings.scheduler_heartbeat_seconds
    poll = settings.scheduler_poll_seconds
    next_beat = next_sync = time.monotonic()
    paused = False
    while not stop.wait(min(beat, poll, 1.0) / 2):
        now = time.monotonic()
        if now >= next_beat:
            next_beat = now + beat
            try:
                if not lease.renew():
                    log.error("another scheduler took this store's lease: stopping at once")
                    return False
                if paused:
                    process.resume()
                    paused = False
                    log.warning("the database answers again: the scheduler resumes")
            except Exception as exc:
                log.error("scheduler heartbeat failed: %s", exc)
                if lease.expired_locally() and not paused:
                    # Our lease may have lapsed: fire nothing until it is renewed.
                    process.pause()
                    paused = True
                    log.error("no heartbeat for a whole lease time: firing is paused")
        if now >= next_sync and not paused:
            next_sync = now + poll
            try:
                process.sync()
                process.drain_due()
            except Exception as exc:
                log.error("could not read the requested schedules: %s", exc)
    return True
