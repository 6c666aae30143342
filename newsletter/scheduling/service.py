"""What the ``schedule``, ``scheduler list`` and ``issue list`` commands call."""

from __future__ import annotations

import contextlib
import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from newsletter.errors import NewsletterError
from newsletter.scheduling.rules import ScheduleError
from newsletter.store.db import open_store

if TYPE_CHECKING:
    from newsletter.config import Settings
    from newsletter.store.db import Store
    from newsletter.store.schedule import ScheduleRow

PAST_TOLERANCE = dt.timedelta(minutes=1)


def _check_month(month: str) -> str:
    from newsletter.content.parser import MONTH_RE

    m = MONTH_RE.match(month)
    if not m or not 1 <= int(m.group(2)) <= 12:
        raise ScheduleError(f"{month!r} is not a month", hint="write it as YYYY-MM, e.g. 2026-12")
    return month


@dataclass(frozen=True)
class ScheduleResult:
    """A one-off send just scheduled, with warnings worth showing."""

    month: str
    run_at: dt.datetime  # UTC
    local: str  # as the author wrote it, with the zone
    replaced: bool
    warnings: list[str] = field(default_factory=list)


def schedule_once(
    settings: Settings,
    month: str,
    at: str,
    timezone: str | None = None,
    now: dt.datetime | None = None,
) -> ScheduleResult:
    """Ask the scheduler to send ``month`` at ``at`` (``YYYY-MM-DD HH:MM`` in ``timezone``).

    Re-scheduling a month moves its time. Refused for a time in the past and for an issue
    already sent; a missing or draft issue only warns (it is checked again at the time).
    """
    from newsletter.delivery.service import load_sendable_issue
    from newsletter.scheduling.rules import parse_local_time
    from newsletter.store import ledger
    from newsletter.store import schedule as db

    _check_month(month)
    tz = timezone or settings.timezone
    run_at = parse_local_time(at, tz)
    now = now or dt.datetime.now(dt.UTC)
    if run_at < now - PAST_TOLERANCE:
        raise ScheduleError(
            f"{at} ({tz}) is in the past",
            hint=f"give a time still to come, or send now with `newsletter send {month}`",
        )
    warnings = []
    try:
        load_sendable_issue(settings, month)
    except NewsletterError as exc:
        warnings.append(f"{exc.message}: it is sent only if it is valid and marked ready by then")
    with open_store(settings) as store:
        if ledger.find_send(store, month) is not None:
            st = ledger.send_status(store, month)
            if st.status in ("done", "cancelled"):
                raise ScheduleError(
                    f"{month} was sent already ({st.counts.get('sent', 0)} messages)",
                    hint=f"see `newsletter deliveries status {month}`",
                )
        before = db.find_schedule(store, month)
        db.save_schedule(store, month, run_at, tz)
        if not _scheduler_alive(store, now):
            warnings.append(
                "no scheduler is running for this store: start `newsletter scheduler run`"
            )
    local = run_at.astimezone(_zone(tz)).strftime("%Y-%m-%d %H:%M:%S") + f" {tz}"
    replaced = before is not None and before.status == "scheduled"
    return ScheduleResult(month, run_at, local, replaced, warnings)


def cancel_once(settings: Settings, month: str) -> ScheduleRow:
    """Cancel the one-off send of ``month`` (the running scheduler drops it within seconds)."""
    from newsletter.store import schedule as db

    _check_month(month)
    with open_store(settings) as store:
        row = db.find_schedule(store, month)
        if row is None or row.status != "scheduled":
            state = f" (it is {row.status})" if row else ""
            raise ScheduleError(
                f"no send of {month} is scheduled{state}",
                hint="see `newsletter scheduler list`",
            )
        db.set_schedule_status(store, month, "cancelled")
        result = db.find_schedule(store, month)
    assert result is not None
    return result


def _zone(name: str):
    from newsletter.scheduling.rules import zone

    return zone(name)


def _local_text(moment: dt.datetime, timezone: str) -> str:
    local = moment.astimezone(_zone(timezone))
    return local.strftime("%Y-%m-%d %H:%M:%S" if local.second else "%Y-%m-%d %H:%M")


def _scheduler_alive(store: Store, now: dt.datetime) -> bool:
    from newsletter.store import schedule as db

    lease = db.read_lease(store)
    return lease is not None and lease.expires_at > now


@dataclass(frozen=True)
class JobView:
    """One line of ``scheduler list``."""

    job_id: str
    kind: str  # monthly | once
    month: str | None
    when: str  # the rule, or the local time of a one-off
    state: str  # scheduled | due | missed | fired | cancelled | not configured
    next_run: dt.datetime | None
    last_outcome: str | None = None
    last_at: dt.datetime | None = None
    last_detail: str | None = None
    misfires: int = 0


@dataclass(frozen=True)
class SchedulerView:
    """The scheduler's state as ``scheduler list`` shows it."""

    running: bool
    holder: str | None
    heartbeat_at: dt.datetime | None
    timezone: str
    grace_seconds: int
    jobs: list[JobView]


def scheduler_overview(settings: Settings, now: dt.datetime | None = None) -> SchedulerView:
    """Every scheduled send: next run, last outcome, misfires; and whether a scheduler runs."""
    from newsletter.scheduling.firing import once_job_id
    from newsletter.scheduling.rules import parse_monthly_rule
    from newsletter.store import schedule as db

    now = now or dt.datetime.now(dt.UTC)
    grace = dt.timedelta(seconds=settings.misfire_grace_time)
    with open_store(settings) as store:
        lease = db.read_lease(store)
        running = lease is not None and lease.expires_at > now
        next_runs = db.job_next_run_times(store)
        summary = db.run_summary(store)
        rows = db.list_schedules(store)
    jobs: list[JobView] = []

    def last(job_id: str) -> dict:
        if job_id not in summary:
            return {}
        run, missed = summary[job_id]
        return {
            "last_outcome": run.outcome,
            "last_at": run.finished_at or run.started_at,
            "last_detail": run.detail,
            "misfires": missed,
        }

    if settings.monthly_schedule.strip():
        rule = parse_monthly_rule(settings.monthly_schedule, settings.timezone)
        stored = next_runs.get("monthly")
        next_run = stored if stored is not None else rule.next_time(now)
        state = "scheduled"
        if stored is not None and stored + grace < now:
            state = "missed"
        elif stored is not None and stored < now:
            state = "due"
        jobs.append(
            JobView("monthly", "monthly", None, rule.describe(), state, next_run, **last("monthly"))
        )
    for row in rows:
        job_id = once_job_id(row.month)
        state = row.status
        next_run = row.run_at if row.status == "scheduled" else None
        if row.status == "scheduled" and row.run_at < now:
            # Not fired yet: the scheduler is down (or just about to fire it).
            state = "missed" if row.run_at + grace < now else "due"
        local = _local_text(row.run_at, row.timezone)
        jobs.append(
            JobView(
                job_id,
                "once",
                row.month,
                f"{local} {row.timezone}",
                state,
                next_run,
                **last(job_id),
            )
        )
    return SchedulerView(
        running=running,
        holder=lease.holder.rsplit(":", 1)[0] if lease else None,
        heartbeat_at=lease.heartbeat_at if lease else None,
        timezone=settings.timezone,
        grace_seconds=settings.misfire_grace_time,
        jobs=jobs,
    )


@dataclass(frozen=True)
class IssueSendState:
    """What ``issue list`` adds to the file status: scheduled time and send status."""

    scheduled: str | None = None  # local time of the next scheduled send
    send_status: str | None = None  # planned | sending | paused | done | cancelled
    sent: int = 0


def issue_send_states(settings: Settings, months: list[str]) -> dict[str, IssueSendState]:
    """Per month: when it is scheduled and how far its send got.

    Empty when there is no usable database (``issue list`` then shows file status only).
    """
    from newsletter.scheduling.rules import month_of, parse_monthly_rule
    from newsletter.store import ledger
    from newsletter.store import schedule as db
    from newsletter.store.errors import StoreError

    try:
        with open_store(settings) as store:
            schedules = {r.month: r for r in db.list_schedules(store, ["scheduled"])}
            sends = {s.month: s for s in ledger.list_sends(store)}
    except (StoreError, NewsletterError):
        return {}  # no store yet, or unreachable: file status only
    monthly_next: dt.datetime | None = None
    monthly_tz = settings.timezone
    if settings.monthly_schedule.strip():
        with contextlib.suppress(NewsletterError):
            monthly_next = parse_monthly_rule(
                settings.monthly_schedule, settings.timezone
            ).next_time(dt.datetime.now(dt.UTC))
    out: dict[str, IssueSendState] = {}
    for month in months:
        when = None
        if month in schedules:
            r = schedules[month]
            when = f"{_local_text(r.run_at, r.timezone)} {r.timezone}"
        elif monthly_next is not None and month_of(monthly_next, monthly_tz) == month:
            when = monthly_next.astimezone(_zone(monthly_tz)).strftime("%Y-%m-%d %H:%M ")
            when += f"{monthly_tz} (monthly)"
        st = sends.get(month)
        out[month] = IssueSendState(
            scheduled=when,
            send_status=st.status if st else None,
            sent=st.counts.get("sent", 0) if st else 0,
        )
    return out
