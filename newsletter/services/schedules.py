"""When sends happen: one-off schedules, the monthly rule, firings, misses, the lease.

The schedule's only truth is the store: ``schedules`` (one-off sends requested with
``newsletter schedule``), ``schedule_runs`` (each firing and each miss) and, for the
monthly rule, since when it has been in force. The scheduler process
(:mod:`newsletter.scheduling`) keeps its APScheduler jobs in memory and rebuilds them from
here at start and on every sync; at start it also asks :func:`due_firings` what came due
while no scheduler ran.

A firing (:func:`fire`) records itself (one row per job and scheduled time), checks the
month's issue, plans the send (idempotent: the ledger's UNIQUE (send, subscriber) key) and
drains it. A second firing of the same occurrence, a restart during the send, or a manual
``newsletter send`` at the same time therefore still send each person one message.
Problems are logged and, when ``author_address`` is set, mailed to the author.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field

from newsletter.errors import NewsletterError
from newsletter.rules.months import check_month
from newsletter.rules.schedules import (
    MonthlyRule,
    ScheduleError,
    local_text,
    month_of,
    parse_local_time,
    parse_monthly_rule,
    shown_time,
    zone,
)
from newsletter.services import mail, sends
from newsletter.services.app import App
from newsletter.store import schedules as db
from newsletter.store.ledger import SendStatus
from newsletter.store.schedules import ScheduleRow

log = logging.getLogger("newsletter.scheduler")

MONTHLY_JOB = "monthly"
PAST_TOLERANCE = dt.timedelta(minutes=1)
# How long a scheduled send waits for an unreachable SMTP server before it leaves the
# paused send to `newsletter worker`; the scheduler itself must stay responsive.
UNAVAILABLE_WAIT = 120.0


def once_job_id(month: str) -> str:
    """The fixed job id of the one-off send of ``month``."""
    return f"once:{month}"


def month_of_job(job_id: str) -> str | None:
    """The month of a one-off job id (None for the monthly job)."""
    return job_id.split(":", 1)[1] if job_id.startswith("once:") else None


def monthly_rule(app: App) -> MonthlyRule | None:
    """The configured monthly rule, or None; a bad rule is a ConfigError."""
    text = app.settings.monthly_schedule.strip()
    return parse_monthly_rule(text, app.settings.timezone) if text else None


# --- one-off schedules -------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduleResult:
    """A one-off send just scheduled, with warnings worth showing."""

    month: str
    run_at: dt.datetime  # UTC
    local: str  # as the author wrote it, with the zone
    replaced: bool
    warnings: list[str] = field(default_factory=list)


def _check_month(month: str) -> str:
    try:
        return check_month(month)
    except NewsletterError as exc:
        raise ScheduleError(exc.message, hint=exc.hint) from None


def schedule_once(app: App, month: str, at: str, timezone: str | None = None) -> ScheduleResult:
    """Ask the scheduler to send ``month`` at ``at`` (``YYYY-MM-DD HH:MM`` in ``timezone``).

    Re-scheduling a month moves its time. Refused for a time in the past and for an issue
    already sent; a missing or draft issue only warns (it is checked again at the time).
    """
    _check_month(month)
    tz = timezone or app.settings.timezone
    run_at = parse_local_time(at, tz)
    now = app.now()
    if run_at < now - PAST_TOLERANCE:
        raise ScheduleError(
            f"{at} ({tz}) is in the past",
            hint=f"give a time still to come, or send now with `newsletter send {month}`",
        )
    warnings = []
    try:
        sends.sendable_issue(app, month)
    except NewsletterError as exc:
        warnings.append(f"{exc.message}: it is sent only if it is valid and marked ready by then")
    state = sends.send_state(app, month)
    if state is not None and state.finished:
        raise ScheduleError(
            f"{month} was sent already ({state.sent} messages)",
            hint=f"see `newsletter deliveries status {month}`",
        )
    before = db.find_schedule(app.store, month)
    db.save_schedule(app.store, month, run_at, tz)
    if not scheduler_alive(app):
        warnings.append("no scheduler is running for this store: start `newsletter scheduler run`")
    local = run_at.astimezone(zone(tz)).strftime("%Y-%m-%d %H:%M:%S") + f" {tz}"
    replaced = before is not None and before.status == "scheduled"
    return ScheduleResult(month, run_at, local, replaced, warnings)


def cancel_once(app: App, month: str) -> ScheduleRow:
    """Cancel the one-off send of ``month`` (the running scheduler drops it within seconds)."""
    _check_month(month)
    row = db.find_schedule(app.store, month)
    if row is None or row.status != "scheduled":
        state = f" (it is {row.status})" if row else ""
        raise ScheduleError(
            f"no send of {month} is scheduled{state}", hint="see `newsletter scheduler list`"
        )
    db.set_schedule_status(app.store, month, "cancelled")
    result = db.find_schedule(app.store, month)
    assert result is not None
    return result


def requested(app: App) -> list[ScheduleRow]:
    """Every one-off send requested with ``newsletter schedule``, by time (any status)."""
    return db.list_schedules(app.store)


def rule_in_force(app: App, rule: MonthlyRule) -> dt.datetime:
    """Since when the monthly ``rule`` is in force (now, for a rule new to the store)."""
    return db.monthly_rule_since(app.store, rule.describe(), app.now())


def scheduler_alive(app: App) -> bool:
    """True while some scheduler holds this store's lease."""
    lease = db.read_lease(app.store)
    return lease is not None and lease.expires_at > app.now()


# --- what the scheduler list shows -------------------------------------------------------


@dataclass(frozen=True)
class JobView:
    """One line of ``scheduler list``."""

    job_id: str
    kind: str  # monthly | once
    month: str | None
    when: str  # the rule, or the local time of a one-off
    state: str  # scheduled | due | missed | fired | cancelled
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


def overview(app: App) -> SchedulerView:
    """Every scheduled send: next run, last outcome, misfires; and whether a scheduler runs."""
    now = app.now()
    grace = dt.timedelta(seconds=app.settings.misfire_grace_time)
    store = app.store
    lease = db.read_lease(store)
    running = lease is not None and lease.expires_at > now
    summary = db.run_summary(store)
    rows = db.list_schedules(store)
    jobs: list[JobView] = []

    def last(job_id: str) -> dict[str, object]:
        if job_id not in summary:
            return {}
        run, missed = summary[job_id]
        return {
            "last_outcome": run.outcome,
            "last_at": run.finished_at or run.started_at,
            "last_detail": run.detail,
            "misfires": missed,
        }

    rule = monthly_rule(app)
    if rule is not None:
        unhandled = _unhandled_monthly(app, rule, now, record=False)
        due = [d for d in unhandled if d + grace >= now]
        missed = [d for d in unhandled if d + grace < now]
        next_run = due[0] if due else rule.next_time(now)
        state = "due" if due else "missed" if missed and not running else "scheduled"
        jobs.append(
            JobView(
                MONTHLY_JOB,
                "monthly",
                None,
                rule.describe(),
                state,
                next_run,
                **last(MONTHLY_JOB),  # type: ignore[arg-type]
            )
        )
    for row in rows:
        job_id = once_job_id(row.month)
        state = row.status
        next_run = row.run_at if row.status == "scheduled" else None
        if row.status == "scheduled" and row.run_at < now:
            # Not fired yet: the scheduler is down (or just about to fire it).
            state = "missed" if row.run_at + grace < now else "due"
        jobs.append(
            JobView(
                job_id,
                "once",
                row.month,
                f"{local_text(row.run_at, row.timezone)} {row.timezone}",
                state,
                next_run,
                **last(job_id),  # type: ignore[arg-type]
            )
        )
    return SchedulerView(
        running=running,
        holder=lease.holder.rsplit(":", 1)[0] if lease else None,
        heartbeat_at=lease.heartbeat_at if lease else None,
        timezone=app.settings.timezone,
        grace_seconds=app.settings.misfire_grace_time,
        jobs=jobs,
    )


# --- what came due while no scheduler ran ------------------------------------------------


@dataclass(frozen=True)
class DueFiring:
    """A firing whose time has come and that nobody handled: fire it, or report it."""

    job_id: str
    month: str
    scheduled_for: dt.datetime  # aware UTC
    missed: bool  # later than the grace time allows: report, do not send


def _unhandled_monthly(
    app: App, rule: MonthlyRule, now: dt.datetime, record: bool = True
) -> list[dt.datetime]:
    """Occurrences of ``rule`` since it came into force, up to ``now``, with no firing.

    ``record``: a rule no scheduler has seen yet comes into force now (else: none).
    """
    if record:
        since: dt.datetime | None = db.monthly_rule_since(app.store, rule.describe(), now)
    else:
        since = db.read_monthly_rule_since(app.store, rule.describe())
    if since is None:
        return []
    out = []
    for moment in rule.between(since, now):
        utc = moment.astimezone(dt.UTC)
        if db.find_run(app.store, MONTHLY_JOB, utc) is None:
            out.append(utc)
    return out


def due_firings(app: App) -> list[DueFiring]:
    """Firings that came due while no scheduler ran, oldest first.

    The monthly rule's occurrences since it came into force (a rule configured after its
    time does not send late) and one-off sends whose time has passed, neither fired nor
    recorded as missed; each within ``misfire_grace_time`` is to be fired now, the rest
    to be reported as missed.
    """
    now = app.now()
    grace = dt.timedelta(seconds=app.settings.misfire_grace_time)
    out: list[DueFiring] = []
    rule = monthly_rule(app)
    if rule is not None:
        for moment in _unhandled_monthly(app, rule, now):
            month = month_of(moment, app.settings.timezone)
            out.append(DueFiring(MONTHLY_JOB, month, moment, moment + grace < now))
    for row in db.list_schedules(app.store, ["scheduled"]):
        if row.run_at <= now:
            out.append(
                DueFiring(once_job_id(row.month), row.month, row.run_at, row.run_at + grace < now)
            )
    return sorted(out, key=lambda d: d.scheduled_for)


def unfinished_firings(app: App) -> list[DueFiring]:
    """Firings a stopped or killed scheduler left in the middle of their send."""
    return [
        DueFiring(r.job_id, r.month, r.scheduled_for, False) for r in db.unfinished_runs(app.store)
    ]


# --- firing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FireResult:
    """What one firing did."""

    job_id: str
    month: str
    outcome: str  # sent | queued | already_sent | refused | failed | running | skipped
    detail: str = ""


def fire(
    app: App,
    job_id: str,
    month: str,
    scheduled_for: dt.datetime,
    stop: threading.Event | None = None,
) -> FireResult:
    """Send the issue of ``month`` for the firing of ``job_id`` planned at ``scheduled_for``."""
    store = app.store
    if month_of_job(job_id):
        # Cancelled or moved since this job was made: the row is the truth.
        row = db.find_schedule(store, month)
        if row is None or row.status == "cancelled" or row.run_at != scheduled_for:
            log.info("%s: the schedule was cancelled or moved; not sending", job_id)
            return FireResult(job_id, month, "skipped", "cancelled or moved")
    run, created = db.start_run(store, job_id, month, scheduled_for)
    if month_of_job(job_id):
        db.set_schedule_status(store, month, "fired")
    if not created and run.outcome != "running":
        log.info("%s for %s was handled already (%s)", job_id, scheduled_for, run.outcome)
        return FireResult(job_id, month, "skipped", f"handled already: {run.outcome}")
    log.info("%s fired: sending %s (scheduled for %s)", job_id, month, scheduled_for)

    def finish(outcome: str, detail: str) -> FireResult:
        db.finish_run(store, run.id, outcome, detail[:2000])
        return FireResult(job_id, month, outcome, detail)

    try:
        state = sends.send_state(app, month)
        if state is not None and state.finished:
            log.info("%s was sent already (%s); nothing to do", month, state.status)
            return finish("already_sent", f"the send of {month} is {state.status}")
        sends.plan(app, month)
    except NewsletterError as exc:
        detail = exc.message + (f" ({exc.hint})" if exc.hint else "")
        log.error("scheduled send of %s not sent: %s", month, detail)
        mail.notify_author(app, _problem_note(app, month, scheduled_for, exc, "NOT sent"))
        return finish("refused", detail)

    try:
        result = sends.run_worker(
            app,
            sends.WorkerOptions(months=[month], max_unavailable_wait=UNAVAILABLE_WAIT),
            stop=stop,
        )
    except NewsletterError as exc:
        detail = exc.message + (f" ({exc.hint})" if exc.hint else "")
        log.error("scheduled send of %s stopped: %s", month, detail)
        mail.notify_author(app, _problem_note(app, month, scheduled_for, exc, "stopped"))
        return finish("failed", detail)
    if result.report.stopped and not result.report.paused:
        # Shut down mid-send: the row stays "running" and the next start resumes it.
        log.warning("scheduler stopping: the rest of %s is sent when it starts again", month)
        return FireResult(job_id, month, "running", "stopped during the send")
    status = sends.delivery_status(app, month)
    outcome = "sent" if status.status == "done" else "queued"
    detail = _counts_text(status)
    log.info("send of %s: %s", month, detail)
    # One report per send, once nothing is in flight (a concurrent firing may still be
    # sending: it reports when it is done).
    if status.counts.get("sending", 0) == 0 and db.claim_report(store, month):
        mail.notify_author(
            app, _report_note(app, month, scheduled_for, status, result.report.paused)
        )
    return finish(outcome, detail)


def report_missed(
    app: App, job_id: str, month: str, scheduled_for: dt.datetime, late_by: float | None = None
) -> bool:
    """Record and report a firing that came later than ``misfire_grace_time`` allows.

    False when it was recorded already (it is reported once).
    """
    if late_by is None:
        late_by = (app.now() - scheduled_for).total_seconds()
    grace = app.settings.misfire_grace_time
    detail = (
        f"missed by {_duration(late_by)} (the scheduler was not running; grace time "
        f"{_duration(grace)}): not sent"
    )
    new = db.record_missed(app.store, job_id, month, scheduled_for, detail)
    if month_of_job(job_id):
        db.set_schedule_status(app.store, month, "missed", only_from=("scheduled", "fired"))
    if not new:
        return False
    log.error("%s: the send of %s due %s was %s", job_id, month, scheduled_for, detail)
    name = app.settings.newsletter_name
    mail.notify_author(
        app,
        mail.AuthorNote(
            subject=f"[{name}] {month} was NOT sent (missed its time)",
            title=f"{month} was not sent: it missed its time",
            paragraphs=[
                f"The send of {month} was scheduled for {_local(scheduled_for, app)}.",
                f"It was {detail}.",
                "Nothing was sent. To send it now, run the first command below, or "
                "schedule it again with the second.",
            ],
            commands=[
                f"newsletter send {month}",
                f'newsletter schedule {month} --at "YYYY-MM-DD HH:MM"',
            ],
        ),
    )
    return True


def report_failed(app: App, month: str, reason: str) -> None:
    """Tell the author a scheduled send crashed and its grace time is over."""
    name = app.settings.newsletter_name
    mail.notify_author(
        app,
        mail.AuthorNote(
            subject=f"[{name}] {month} was NOT sent (error)",
            title=f"{month} was not sent (error)",
            paragraphs=[
                f"The scheduled send of {month} failed and its grace time is over: {reason}",
                "Send it by hand with the command below.",
            ],
            commands=[f"newsletter send {month}"],
        ),
    )


def _problem_note(
    app: App, month: str, scheduled_for: dt.datetime, exc: NewsletterError, what: str
) -> mail.AuthorNote:
    name = app.settings.newsletter_name
    subject = (
        f"[{name}] {month} was NOT sent"
        if what == "NOT sent"
        else f"[{name}] the send of {month} stopped"
    )
    paragraphs = [
        f"The send of {month} scheduled for {_local(scheduled_for, app)} did not go out.",
        f"Problem: {exc.message}",
    ]
    if exc.hint:
        paragraphs.append(f"How to fix it: {exc.hint}")
    paragraphs.append(
        "Check the issue with the first command below; when it is ready, send it with the "
        "second, or schedule it again with the third."
    )
    return mail.AuthorNote(
        subject=subject,
        title=f"{month} was not sent" if what == "NOT sent" else f"The send of {month} stopped",
        paragraphs=paragraphs,
        commands=[
            f"newsletter issue check {month}",
            f"newsletter send {month}",
            f'newsletter schedule {month} --at "YYYY-MM-DD HH:MM"',
        ],
    )


def _report_note(
    app: App, month: str, scheduled_for: dt.datetime, st: SendStatus, paused: bool
) -> mail.AuthorNote:
    c = st.counts
    skipped = str(c.get("skipped", 0))
    if st.skipped:
        skipped += " (" + ", ".join(f"{k}: {v}" for k, v in sorted(st.skipped.items())) + ")"
    paragraphs = [
        f"The send of {month} ({st.subject}) scheduled for {_local(scheduled_for, app)} has run."
    ]
    if paused:
        paragraphs.append(
            "The SMTP server could not be reached: the send is paused and `newsletter worker` "
            "finishes it when the server answers."
        )
    commands = []
    if c.get("failed"):
        paragraphs.append("The failed addresses are listed by the command below.")
        commands.append(f"newsletter deliveries list {month} --status failed")
    return mail.AuthorNote(
        subject=f"[{app.settings.newsletter_name}] {month} sent: {c.get('sent', 0)} messages",
        title=f"{month} sent: {c.get('sent', 0)} messages",
        paragraphs=paragraphs,
        facts=[
            ("sent", str(c.get("sent", 0))),
            ("skipped", skipped),
            ("failed", str(c.get("failed", 0))),
            (
                "waiting for a retry",
                f"{st.retrying} (refused for now; retried by `newsletter worker`)",
            ),
            ("queued", f"{st.outstanding - st.retrying} (not tried yet)"),
        ],
        commands=commands,
    )


def _counts_text(st: SendStatus) -> str:
    c = st.counts
    return (
        f"{c.get('sent', 0)} sent, {c.get('skipped', 0)} skipped, {c.get('failed', 0)} failed, "
        f"{st.outstanding} waiting"
    )


def _local(moment: dt.datetime, app: App) -> str:
    timezone = app.settings.timezone
    try:
        return f"{shown_time(moment, timezone)} ({timezone})"
    except NewsletterError:
        return moment.isoformat()


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


# --- the lease ---------------------------------------------------------------------------


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
    """One scheduler per store: the lease of one scheduler process, kept by heartbeats.

    APScheduler must not run twice for one store, so ``scheduler run`` takes the store's
    lease before it starts and renews it every ``scheduler_heartbeat_seconds``. A second
    scheduler finds the lease held and refuses to start. A lease whose holder stopped
    heartbeating is taken over once it expires (``scheduler_lease_seconds``); a holder on
    this host whose process is gone (killed) is replaced at once.
    """

    def __init__(self, app: App, holder: str | None = None) -> None:
        self.app = app
        self.ttl = app.settings.scheduler_lease_seconds
        self.holder = holder or make_holder()
        self.renewed_at = 0.0  # monotonic time of the last successful acquire or renewal

    def try_acquire(self) -> bool:
        """Take the lease if it is free, expired or left by a dead local process."""
        current = db.read_lease(self.app.store)
        takeover = [current.holder] if current and _dead_local(current.holder) else []
        if db.acquire_lease(self.app.store, self.holder, self.ttl, takeover_from=takeover):
            self.renewed_at = time.monotonic()
            return True
        return False

    def acquire(self, wait: float = 0.0, poll: float = 0.5) -> None:
        """Take the lease, waiting up to ``wait`` seconds; else :class:`SchedulerRunningError`."""
        deadline = time.monotonic() + wait
        while True:
            if self.try_acquire():
                return
            if time.monotonic() >= deadline:
                break
            time.sleep(min(poll, max(0.05, deadline - time.monotonic())))
        current = db.read_lease(self.app.store)
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
        if db.renew_lease(self.app.store, self.holder, self.ttl):
            self.renewed_at = time.monotonic()
            return True
        return False

    def expired_locally(self) -> bool:
        """True when no renewal succeeded for a whole lease time (e.g. the database is down)."""
        return time.monotonic() - self.renewed_at > self.ttl

    def release(self) -> None:
        """Give the lease up so that the next scheduler may start at once."""
        db.release_lease(self.app.store, self.holder)
