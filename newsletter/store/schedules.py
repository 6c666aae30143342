"""The scheduler's tables: requested one-off schedules, the record of firings, the lease.

These rows are the schedule's only truth: the CLI writes requested schedules here, and the
one running scheduler rebuilds its (in-memory) jobs from them. The lease row makes sure
there is only one such process per store: it is taken with one conditional UPDATE (atomic
on SQLite and PostgreSQL) and kept alive by heartbeats. ``store_meta`` remembers since
when the monthly rule has been in force, so that a firing missed while no scheduler ran
is found again, and which sends have had their report mailed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, or_, select, update

from newsletter.store.db import Store, rowcount
from newsletter.store.models import Schedule, SchedulerLease, ScheduleRun, StoreMeta

LEASE_NAME = "scheduler"
MONTHLY_RULE_KEY = "monthly_rule"


@dataclass(frozen=True)
class ScheduleRow:
    """One requested one-off send."""

    month: str
    run_at: dt.datetime  # aware UTC
    timezone: str
    status: str
    version: int
    created_at: dt.datetime
    updated_at: dt.datetime


@dataclass(frozen=True)
class RunRow:
    """One firing of a scheduler job (or a firing that was missed)."""

    id: int
    job_id: str
    month: str
    scheduled_for: dt.datetime
    started_at: dt.datetime
    finished_at: dt.datetime | None
    outcome: str
    detail: str | None


@dataclass(frozen=True)
class LeaseRow:
    """The scheduler lease: who holds it and until when."""

    holder: str
    acquired_at: dt.datetime
    heartbeat_at: dt.datetime
    expires_at: dt.datetime


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _schedule_row(s: Schedule) -> ScheduleRow:
    return ScheduleRow(
        s.issue_month, s.run_at, s.timezone, s.status, s.version, s.created_at, s.updated_at
    )


def _run_row(r: ScheduleRun) -> RunRow:
    return RunRow(
        r.id,
        r.job_id,
        r.issue_month,
        r.scheduled_for,
        r.started_at,
        r.finished_at,
        r.outcome,
        r.detail,
    )


# --- requested schedules ----------------------------------------------------------------


def save_schedule(store: Store, month: str, run_at: dt.datetime, timezone: str) -> ScheduleRow:
    """Schedule (or re-schedule) the one-off send of ``month`` at ``run_at``."""
    now = _now()
    insert = store.insert
    with store.transaction() as session:
        session.execute(
            insert(Schedule)
            .values(
                issue_month=month,
                run_at=run_at,
                timezone=timezone,
                status="scheduled",
                version=1,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_update(
                index_elements=["issue_month"],
                set_={
                    "run_at": run_at.astimezone(dt.UTC).replace(tzinfo=None),
                    "timezone": timezone,
                    "status": "scheduled",
                    "version": Schedule.version + 1,
                    "updated_at": now.replace(tzinfo=None),
                },
            )
        )
        row = session.execute(select(Schedule).where(Schedule.issue_month == month)).scalar_one()
        return _schedule_row(row)


def find_schedule(store: Store, month: str) -> ScheduleRow | None:
    """The requested schedule of ``month`` (in any status), or None."""
    with store.transaction() as session:
        row = session.execute(
            select(Schedule).where(Schedule.issue_month == month)
        ).scalar_one_or_none()
        return _schedule_row(row) if row else None


def list_schedules(store: Store, statuses: Sequence[str] | None = None) -> list[ScheduleRow]:
    """Requested schedules, by time."""
    stmt = select(Schedule).order_by(Schedule.run_at, Schedule.issue_month)
    if statuses:
        stmt = stmt.where(Schedule.status.in_(list(statuses)))
    with store.transaction() as session:
        return [_schedule_row(s) for s in session.execute(stmt).scalars()]


def set_schedule_status(
    store: Store, month: str, status: str, only_from: Sequence[str] = ("scheduled",)
) -> bool:
    """Move the schedule of ``month`` to ``status`` if it is in one of ``only_from``."""
    with store.transaction() as session:
        result = session.execute(
            update(Schedule)
            .where(Schedule.issue_month == month, Schedule.status.in_(list(only_from)))
            .values(status=status, updated_at=_now())
            .execution_options(synchronize_session=False)
        )
        return bool(rowcount(result))


# --- firings ----------------------------------------------------------------------------


def start_run(
    store: Store, job_id: str, month: str, scheduled_for: dt.datetime
) -> tuple[RunRow, bool]:
    """Record that ``job_id`` fired for ``scheduled_for``; returns (row, created now).

    The UNIQUE (job, time) key makes a second firing of the same occurrence find the
    first one's row instead of adding another.
    """
    insert = store.insert
    with store.transaction() as session:
        result = session.execute(
            insert(ScheduleRun)
            .values(
                job_id=job_id,
                issue_month=month,
                scheduled_for=scheduled_for,
                started_at=_now(),
                outcome="running",
            )
            .on_conflict_do_nothing(index_elements=["job_id", "scheduled_for"])
            .returning(ScheduleRun.id)
        )
        # RETURNING, not rowcount: drivers do not all count rows skipped by ON CONFLICT.
        created = result.scalar() is not None
        row = session.execute(
            select(ScheduleRun).where(
                ScheduleRun.job_id == job_id, ScheduleRun.scheduled_for == scheduled_for
            )
        ).scalar_one()
        return _run_row(row), created


def find_run(store: Store, job_id: str, scheduled_for: dt.datetime) -> RunRow | None:
    """The recorded firing (or miss) of ``job_id`` for ``scheduled_for``, if any."""
    with store.transaction() as session:
        row = session.execute(
            select(ScheduleRun).where(
                ScheduleRun.job_id == job_id, ScheduleRun.scheduled_for == scheduled_for
            )
        ).scalar_one_or_none()
        return _run_row(row) if row is not None else None


def finish_run(store: Store, run_id: int, outcome: str, detail: str | None = None) -> None:
    """Record how a firing ended."""
    with store.transaction() as session:
        session.execute(
            update(ScheduleRun)
            .where(ScheduleRun.id == run_id)
            .values(outcome=outcome, detail=detail, finished_at=_now())
            .execution_options(synchronize_session=False)
        )


def record_missed(
    store: Store, job_id: str, month: str, scheduled_for: dt.datetime, detail: str
) -> bool:
    """Record a firing that did not happen in time; False if it was recorded already."""
    insert = store.insert
    now = _now()
    with store.transaction() as session:
        result = session.execute(
            insert(ScheduleRun)
            .values(
                job_id=job_id,
                issue_month=month,
                scheduled_for=scheduled_for,
                started_at=now,
                finished_at=now,
                outcome="missed",
                detail=detail,
            )
            .on_conflict_do_nothing(index_elements=["job_id", "scheduled_for"])
            .returning(ScheduleRun.id)
        )
        return result.scalar() is not None


def unfinished_runs(store: Store) -> list[RunRow]:
    """Firings still marked running (their scheduler stopped during the send)."""
    with store.transaction() as session:
        return [
            _run_row(r)
            for r in session.execute(
                select(ScheduleRun).where(ScheduleRun.outcome == "running").order_by(ScheduleRun.id)
            ).scalars()
        ]


def list_runs(
    store: Store, job_id: str | None = None, month: str | None = None, limit: int = 100
) -> list[RunRow]:
    """Firings, newest first."""
    stmt = select(ScheduleRun).order_by(ScheduleRun.id.desc()).limit(limit)
    if job_id:
        stmt = stmt.where(ScheduleRun.job_id == job_id)
    if month:
        stmt = stmt.where(ScheduleRun.issue_month == month)
    with store.transaction() as session:
        return [_run_row(r) for r in session.execute(stmt).scalars()]


def run_summary(store: Store) -> dict[str, tuple[RunRow, int]]:
    """Per job: its last firing and how many firings it missed."""
    with store.transaction() as session:
        last_ids = select(func.max(ScheduleRun.id)).group_by(ScheduleRun.job_id)
        last = {
            r.job_id: _run_row(r)
            for r in session.execute(
                select(ScheduleRun).where(ScheduleRun.id.in_(last_ids))
            ).scalars()
        }
        missed = dict(
            session.execute(
                select(ScheduleRun.job_id, func.count())
                .where(ScheduleRun.outcome == "missed")
                .group_by(ScheduleRun.job_id)
            ).all()
        )
    return {job: (row, missed.get(job, 0)) for job, row in last.items()}


def claim_report(store: Store, month: str) -> bool:
    """True the first time it is called for ``month``: who sends the send's report."""
    insert = store.insert
    with store.transaction() as session:
        result = session.execute(
            insert(StoreMeta)
            .values(key=f"send_report:{month}", value=_now().isoformat())
            .on_conflict_do_nothing(index_elements=["key"])
            .returning(StoreMeta.key)
        )
        return result.scalar() is not None


# --- the lease --------------------------------------------------------------------------


def read_lease(store: Store) -> LeaseRow | None:
    """The lease row, if a scheduler ever ran (it may have expired)."""
    with store.transaction() as session:
        row = session.execute(
            select(SchedulerLease).where(SchedulerLease.name == LEASE_NAME)
        ).scalar_one_or_none()
        if row is None or not row.holder:
            return None
        return LeaseRow(row.holder, row.acquired_at, row.heartbeat_at, row.expires_at)


def acquire_lease(store: Store, holder: str, ttl: float, takeover_from: Sequence[str] = ()) -> bool:
    """Take the lease if it is free, expired, ours, or held by one of ``takeover_from``.

    One conditional UPDATE decides, so two processes racing for an expired lease cannot
    both win.
    """
    now = _now()
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    insert = store.insert
    with store.transaction() as session:
        session.execute(
            insert(SchedulerLease)
            .values(
                name=LEASE_NAME, holder="", acquired_at=epoch, heartbeat_at=epoch, expires_at=epoch
            )
            .on_conflict_do_nothing(index_elements=["name"])
        )
    free = [
        SchedulerLease.holder == holder,
        SchedulerLease.holder == "",
        SchedulerLease.expires_at < now,
    ]
    if takeover_from:
        free.append(SchedulerLease.holder.in_(list(takeover_from)))
    with store.transaction() as session:
        result = session.execute(
            update(SchedulerLease)
            .where(SchedulerLease.name == LEASE_NAME, or_(*free))
            .values(
                holder=holder,
                acquired_at=now,
                heartbeat_at=now,
                expires_at=now + dt.timedelta(seconds=ttl),
            )
            .execution_options(synchronize_session=False)
        )
        return bool(rowcount(result))


def renew_lease(store: Store, holder: str, ttl: float) -> bool:
    """Heartbeat: extend the lease; False if it is no longer ours."""
    now = _now()
    with store.transaction() as session:
        result = session.execute(
            update(SchedulerLease)
            .where(SchedulerLease.name == LEASE_NAME, SchedulerLease.holder == holder)
            .values(heartbeat_at=now, expires_at=now + dt.timedelta(seconds=ttl))
            .execution_options(synchronize_session=False)
        )
        return bool(rowcount(result))


def release_lease(store: Store, holder: str) -> None:
    """Give the lease up (clean shutdown), so the next scheduler starts at once."""
    with store.transaction() as session:
        session.execute(
            update(SchedulerLease)
            .where(SchedulerLease.name == LEASE_NAME, SchedulerLease.holder == holder)
            .values(holder="", expires_at=dt.datetime(1970, 1, 1, tzinfo=dt.UTC))
            .execution_options(synchronize_session=False)
        )


# --- the monthly rule --------------------------------------------------------------------


def monthly_rule_since(store: Store, rule: str, now: dt.datetime) -> dt.datetime:
    """Since when ``rule`` (the monthly rule with its time zone) has been in force.

    The first scheduler to see a rule records ``now``; a changed rule starts again from
    ``now``. Firings of the rule before that moment are never made up for.
    """
    insert = store.insert
    value = f"{now.astimezone(dt.UTC).isoformat()} {rule}"
    with store.transaction() as session:
        session.execute(
            insert(StoreMeta)
            .values(key=MONTHLY_RULE_KEY, value=value)
            .on_conflict_do_nothing(index_elements=["key"])
        )
        row = session.execute(
            select(StoreMeta).where(StoreMeta.key == MONTHLY_RULE_KEY).with_for_update()
        ).scalar_one()
        since, _, stored = row.value.partition(" ")
        if stored != rule:
            row.value = value
            return now
        return dt.datetime.fromisoformat(since)


def read_monthly_rule_since(store: Store, rule: str) -> dt.datetime | None:
    """Since when ``rule`` has been in force, or None if no scheduler has seen it yet."""
    with store.transaction() as session:
        value = session.execute(
            select(StoreMeta.value).where(StoreMeta.key == MONTHLY_RULE_KEY)
        ).scalar_one_or_none()
    if value is None:
        return None
    since, _, stored = value.partition(" ")
    return dt.datetime.fromisoformat(since) if stored == rule else None
