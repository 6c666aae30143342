"""APScheduler wiring only: the store's one scheduler process (``newsletter scheduler run``).

- APScheduler 3.11 with a SQLAlchemyJobStore in the store's own database (its own table,
  ``apscheduler_jobs``); fixed job ids (``monthly``, ``once:YYYY-MM``) added with
  ``replace_existing``; ``coalesce`` on, ``max_instances`` 1 and ``misfire_grace_time``
  from the settings (3 days by default: APScheduler's default of 1 second would silently
  drop a monthly send after any downtime).
- The lease (:mod:`newsletter.scheduling.lease`) is taken before the job store is opened,
  so two processes never share it.
- ``newsletter schedule`` only writes a row in ``schedules``; this process copies those rows
  into APScheduler at start and every ``scheduler_poll_seconds``.
- A job that is still in the job store keeps its stored next run time across restarts (it
  is only replaced when its rule or time changed), so a restart across the trigger time
  runs it late, within the grace time, instead of skipping to next month.
- Firings that the process did not finish (it was stopped or killed mid-send) are resumed
  at start. Missed firings are recorded and mailed to the author.

The command blocks in :func:`run_scheduler`: its thread keeps the lease alive and syncs
schedules while APScheduler's own thread fires jobs (a BackgroundScheduler driven by this
blocking loop, so the heartbeat never waits behind a running send).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from apscheduler.schedulers.background import BackgroundScheduler

    from newsletter.config import Settings
    from newsletter.store.db import Store

log = logging.getLogger("newsletter.scheduler")

MONTHLY_JOB = "monthly"
JOB_FUNC = "newsletter.schedule:job_fire"
RETRY_AFTER = 30.0  # seconds before a firing that crashed (e.g. database down) is retried

# What the jobs of this process need; set by run_scheduler (jobs are stored by reference,
# never with the settings, which hold secrets).
_runtime: dict[str, Any] = {}


# --- jobs (called by APScheduler) -------------------------------------------------------


def job_fire(
    job_id: str,
    month: str | None = None,
    run_at: str | None = None,
    rule: str | None = None,
    timezone: str | None = None,
) -> None:
    """Entry point of every scheduler job: work out the month and time, then fire."""
    from newsletter.scheduling.firing import fire
    from newsletter.scheduling.rules import month_of, parse_monthly_rule

    settings: Settings = _runtime["settings"]
    now = dt.datetime.now(dt.UTC)
    if run_at is not None:
        scheduled = dt.datetime.fromisoformat(run_at)
    else:
        parsed = parse_monthly_rule(rule or "", timezone or settings.timezone)
        lookback = dt.timedelta(seconds=settings.misfire_grace_time + 60)
        scheduled = parsed.last_time(now, lookback) or now
    month = month or month_of(scheduled, timezone or settings.timezone)
    # Each firing gets its own stop event (the worker sets it on its own errors, which
    # must not stop other firings); shutdown sets them all.
    stop = threading.Event()
    firing: set[threading.Event] = _runtime.setdefault("firing", set())
    firing.add(stop)
    if _runtime.get("stopping"):
        stop.set()
    try:
        fire(settings, job_id, month, scheduled, stop)
    except Exception as exc:
        log.exception("the firing of %s for %s failed: %s", job_id, month, exc)
        _retry_later(job_id, month, scheduled, str(exc))
    finally:
        firing.discard(stop)


def _retry_later(job_id: str, month: str, scheduled: dt.datetime, reason: str) -> None:
    """Try a crashed firing again soon, while it is still within the grace time."""
    from newsletter.scheduling.firing import notify_author

    settings: Settings = _runtime["settings"]
    scheduler: BackgroundScheduler | None = _runtime.get("scheduler")
    now = dt.datetime.now(dt.UTC)
    if scheduler is not None and (now - scheduled).total_seconds() < settings.misfire_grace_time:
        scheduler.add_job(
            JOB_FUNC,
            "date",
            run_date=now + dt.timedelta(seconds=RETRY_AFTER),
            id=f"retry:{job_id}:{month}",
            kwargs={"job_id": job_id, "month": month, "run_at": scheduled.isoformat()},
            jobstore="internal",
            replace_existing=True,
            misfire_grace_time=None,
        )
        log.warning("retrying %s for %s in %.0f s", job_id, month, RETRY_AFTER)
        return
    notify_author(
        settings,
        f"[{settings.newsletter_name}] {month} was NOT sent (error)",
        f"The scheduled send of {month} failed and its grace time is over: {reason}\n"
        f"Send it by hand with `newsletter send {month}`.\n",
    )


def _on_event(event: Any) -> None:
    """APScheduler listener: record misses, log errors and skipped overlapping runs."""
    from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED

    from newsletter.scheduling.firing import month_of_job, report_missed
    from newsletter.scheduling.rules import month_of

    settings: Settings = _runtime["settings"]
    job_id = event.job_id
    if job_id.startswith(("retry:", "resume:")):
        job_id = job_id.split(":", 1)[1].rsplit(":", 1)[0]
    if event.code == EVENT_JOB_MISSED:
        scheduled = event.scheduled_run_time.astimezone(dt.UTC)
        month = month_of_job(job_id) or month_of(scheduled, settings.timezone)
        late = (dt.datetime.now(dt.UTC) - scheduled).total_seconds()
        try:
            report_missed(settings, job_id, month, scheduled, late)
        except Exception:
            log.exception("could not record the missed firing of %s", job_id)
    elif event.code == EVENT_JOB_MAX_INSTANCES:
        log.warning("%s fired while its previous run is still going: not started twice", job_id)


# --- syncing requested schedules into APScheduler ---------------------------------------


def sync_jobs(
    scheduler: BackgroundScheduler, settings: Settings, store: Store, synced: dict[str, Any]
) -> None:
    """Make APScheduler's jobs match the monthly rule and the ``schedules`` rows.

    A job whose definition did not change is left alone, keeping its stored next run
    time; ``synced`` remembers what this process has already copied, so a one-off that
    just fired is not added again before its firing has marked its row.
    """
    from newsletter.scheduling.firing import once_job_id
    from newsletter.scheduling.rules import parse_monthly_rule
    from newsletter.store import schedule as db

    if settings.monthly_schedule.strip():
        rule = parse_monthly_rule(settings.monthly_schedule, settings.timezone)
        kwargs = {"job_id": MONTHLY_JOB, "rule": rule.text, "timezone": rule.timezone}
        job = scheduler.get_job(MONTHLY_JOB, "default")
        if job is None or job.kwargs != kwargs:
            scheduler.add_job(
                JOB_FUNC,
                rule.trigger(),
                id=MONTHLY_JOB,
                name=f"monthly: {rule.describe()}",
                kwargs=kwargs,
                jobstore="default",
                replace_existing=True,
            )
            log.info("monthly send: %s", rule.describe())
    elif scheduler.get_job(MONTHLY_JOB, "default") is not None:
        scheduler.remove_job(MONTHLY_JOB, "default")
        log.info("monthly send removed (monthly_schedule is empty)")

    rows = db.list_schedules(store)
    wanted = set()
    for row in rows:
        job_id = once_job_id(row.month)
        wanted.add(job_id)
        key = (row.version, row.status, row.run_at)
        if synced.get(job_id) == key:
            continue
        job = scheduler.get_job(job_id, "default")
        if row.status == "scheduled":
            kwargs = {"job_id": job_id, "month": row.month, "run_at": row.run_at.isoformat()}
            if job is None or job.kwargs != kwargs:
                scheduler.add_job(
                    JOB_FUNC,
                    "date",
                    run_date=row.run_at,
                    id=job_id,
                    name=f"send {row.month} at {row.run_at.isoformat()}",
                    kwargs=kwargs,
                    jobstore="default",
                    replace_existing=True,
                )
                log.info("one-off send of %s at %s", row.month, row.run_at)
        elif row.status == "cancelled" and job is not None:
            scheduler.remove_job(job_id, "default")
            log.info("one-off send of %s cancelled", row.month)
        synced[job_id] = key
    for job in scheduler.get_jobs("default"):
        if job.id.startswith("once:") and job.id not in wanted:
            scheduler.remove_job(job.id, "default")


def missed_monthly_occurrence(
    settings: Settings,
    store: Store,
    stored_next_run: dt.datetime | None,
    now: dt.datetime | None = None,
) -> dt.datetime | None:
    """The monthly firing a crash skipped, if one is still within the grace time.

    APScheduler moves a job's stored next run time on before it runs the job; a process
    killed between that and the firing's record would silently skip the month. So at start:
    if the stored job already points past the rule's latest occurrence (within the grace
    time) and that occurrence has no recorded firing or miss, it is returned for a
    catch-up firing. A rule configured after its time (no stored job yet) is not caught up.
    """
    from newsletter.scheduling.rules import parse_monthly_rule
    from newsletter.store import schedule as db

    if not settings.monthly_schedule.strip() or stored_next_run is None:
        return None
    now = now or dt.datetime.now(dt.UTC)
    rule = parse_monthly_rule(settings.monthly_schedule, settings.timezone)
    last = rule.last_time(now, dt.timedelta(seconds=settings.misfire_grace_time))
    if last is None or stored_next_run <= last:
        return None  # APScheduler itself still has this occurrence to run (or miss)
    if db.find_run(store, MONTHLY_JOB, last.astimezone(dt.UTC)) is not None:
        return None
    return last.astimezone(dt.UTC)


def catch_up_monthly(
    scheduler: BackgroundScheduler,
    settings: Settings,
    store: Store,
    stored_next_run: dt.datetime | None,
) -> bool:
    """Queue the firing :func:`missed_monthly_occurrence` finds; True if there was one."""
    from newsletter.scheduling.rules import month_of

    missed = missed_monthly_occurrence(settings, store, stored_next_run)
    if missed is None:
        return False
    month = month_of(missed, settings.timezone)
    scheduler.add_job(
        JOB_FUNC,
        "date",
        run_date=dt.datetime.now(dt.UTC),
        id=f"resume:{MONTHLY_JOB}:{month}",
        kwargs={"job_id": MONTHLY_JOB, "month": month, "run_at": missed.isoformat()},
        jobstore="internal",
        replace_existing=True,
        misfire_grace_time=None,
    )
    log.warning("the monthly send of %s (due %s) never ran: sending it now", month, missed)
    return True


def resume_unfinished(scheduler: BackgroundScheduler, store: Store) -> int:
    """Queue again the firings a stopped or killed scheduler left mid-send."""
    from newsletter.store import schedule as db

    runs = db.unfinished_runs(store)
    for run in runs:
        scheduler.add_job(
            JOB_FUNC,
            "date",
            run_date=dt.datetime.now(dt.UTC),
            id=f"resume:{run.job_id}:{run.month}",
            kwargs={
                "job_id": run.job_id,
                "month": run.month,
                "run_at": run.scheduled_for.isoformat(),
            },
            jobstore="internal",
            replace_existing=True,
            misfire_grace_time=None,
        )
        log.warning("resuming the send of %s left unfinished by a stopped scheduler", run.month)
    return len(runs)


# --- the process ------------------------------------------------------------------------


def build_scheduler(settings: Settings, store: Store) -> BackgroundScheduler:
    """An APScheduler with the store's job store and the project's job defaults."""
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.jobstores.memory import MemoryJobStore
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler

    from newsletter.scheduling.rules import zone

    return BackgroundScheduler(
        jobstores={
            "default": SQLAlchemyJobStore(engine=store.engine),
            # retries and resumes are rebuilt from the store at each start
            "internal": MemoryJobStore(),
        },
        executors={"default": ThreadPoolExecutor(4)},
        job_defaults={
            "coalesce": True,
            "max_instances": 1,
            "misfire_grace_time": settings.misfire_grace_time,
        },
        timezone=zone(settings.timezone),
    )


def run_scheduler(
    settings: Settings,
    stop: threading.Event | None = None,
    wait: float = 0.0,
    on_started: Callable[[list[tuple[str, dt.datetime | None]]], None] | None = None,
) -> bool:
    """Run the store's scheduler until ``stop`` is set; False if it lost its lease.

    Refuses to start (:class:`~newsletter.scheduling.lease.SchedulerRunningError`) while
    another scheduler holds the lease, after waiting up to ``wait`` seconds for it.
    """
    from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED

    from newsletter.scheduling.lease import Lease
    from newsletter.scheduling.rules import parse_monthly_rule, zone
    from newsletter.store.db import open_store

    zone(settings.timezone)
    if settings.monthly_schedule.strip():  # a bad rule stops the start, not a firing
        parse_monthly_rule(settings.monthly_schedule, settings.timezone)
    stop = stop or threading.Event()
    store = open_store(settings)
    lease = Lease(store, settings.scheduler_lease_seconds)
    try:
        lease.acquire(wait=wait)
    except BaseException:
        store.close()
        raise
    scheduler = build_scheduler(settings, store)
    _runtime.update(settings=settings, scheduler=scheduler, firing=set(), stopping=False)
    scheduler.add_listener(_on_event, EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)
    kept = True
    synced: dict[str, Any] = {}
    try:
        from newsletter.store import schedule as db

        stored_next_run = db.job_next_run_times(store).get(MONTHLY_JOB)
        scheduler.start(paused=True)
        sync_jobs(scheduler, settings, store, synced)
        resume_unfinished(scheduler, store)
        catch_up_monthly(scheduler, settings, store, stored_next_run)
        scheduler.resume()
        jobs = [(j.id, j.next_run_time) for j in scheduler.get_jobs("default")]
        log.info("scheduler started (%s); %d jobs", lease.holder, len(jobs))
        if on_started is not None:
            on_started(jobs)
        kept = _loop(scheduler, settings, store, lease, stop, synced)
    finally:
        _runtime["stopping"] = True
        for event in list(_runtime.get("firing", ())):
            event.set()
        if scheduler.running:
            scheduler.shutdown(wait=True)
        if kept:
            try:
                lease.release()
            except Exception:
                log.exception("could not release the scheduler lease")
        _runtime.clear()
        store.close()
    return kept


def _loop(
    scheduler: BackgroundScheduler,
    settings: Settings,
    store: Store,
    lease: Any,
    stop: threading.Event,
    synced: dict[str, Any],
) -> bool:
    """Heartbeat and sync until stopped; False when another process took the lease."""
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
                    scheduler.resume()
                    paused = False
                    log.warning("the database answers again: the scheduler resumes")
            except Exception as exc:
                log.error("scheduler heartbeat failed: %s", exc)
                if lease.expired_locally() and not paused:
                    # Our lease may have lapsed: fire nothing until it is renewed.
                    scheduler.pause()
                    paused = True
                    log.error("no heartbeat for a whole lease time: firing is paused")
        if now >= next_sync and not paused:
            next_sync = now + poll
            try:
                sync_jobs(scheduler, settings, store, synced)
            except Exception as exc:
                log.error("could not read the requested schedules: %s", exc)
    return True
