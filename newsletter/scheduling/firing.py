"""What a scheduler job does when it fires, and what it does when a firing was missed.

A firing records itself (one row per job and scheduled time), checks the month's issue,
plans the send (idempotent: the ledger's UNIQUE (send, subscriber) key) and drains it
through the delivery worker. A second firing of the same occurrence, a restart during the
send, or a manual ``newsletter send`` at the same time therefore still send each person
one message. Problems are logged and, when ``author_address`` is set, mailed to the author.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from newsletter.errors import NewsletterError

if TYPE_CHECKING:
    from newsletter.config import Settings
    from newsletter.store.ledger import SendStatus

log = logging.getLogger("newsletter.scheduler")

# How long a scheduled send waits for an unreachable SMTP server before it leaves the
# paused send to `newsletter worker`; the scheduler itself must stay responsive.
UNAVAILABLE_WAIT = 120.0


@dataclass(frozen=True)
class FireResult:
    """What one firing did."""

    job_id: str
    month: str
    outcome: str  # sent | queued | already_sent | refused | failed | running | skipped
    detail: str = ""


def once_job_id(month: str) -> str:
    """The fixed APScheduler id of the one-off send of ``month``."""
    return f"once:{month}"


def month_of_job(job_id: str) -> str | None:
    """The month of a one-off job id (None for the monthly job)."""
    return job_id.split(":", 1)[1] if job_id.startswith("once:") else None


def fire(
    settings: Settings,
    job_id: str,
    month: str,
    scheduled_for: dt.datetime,
    stop: threading.Event | None = None,
) -> FireResult:
    """Send the issue of ``month`` for the firing of ``job_id`` planned at ``scheduled_for``."""
    from newsletter.delivery.service import load_sendable_issue, plan_issue_send, run_worker
    from newsletter.delivery.worker import WorkerOptions
    from newsletter.store import ledger
    from newsletter.store import schedule as db
    from newsletter.store.db import open_store

    with open_store(settings) as store:
        if month_of_job(job_id):
            # Cancelled or moved since this job was queued: the row is the truth.
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
        with open_store(settings) as store:
            db.finish_run(store, run.id, outcome, detail[:2000])
        return FireResult(job_id, month, outcome, detail)

    try:
        issue = load_sendable_issue(settings, month)
        with open_store(settings) as store:
            if ledger.find_send(store, month) is not None:
                st = ledger.send_status(store, month)
                if st.status in ("done", "cancelled"):
                    log.info("%s was sent already (%s); nothing to do", month, st.status)
                    return finish("already_sent", f"the send of {month} is {st.status}")
        plan_issue_send(settings, month)
    except NewsletterError as exc:
        detail = exc.message + (f" ({exc.hint})" if exc.hint else "")
        log.error("scheduled send of %s not sent: %s", month, detail)
        notify_author(
            settings,
            f"[{settings.newsletter_name}] {month} was NOT sent",
            _problem_text(month, scheduled_for, settings, exc),
        )
        return finish("refused", detail)

    try:
        result = run_worker(
            settings,
            WorkerOptions(months=[issue.month], max_unavailable_wait=UNAVAILABLE_WAIT),
            stop=stop,
        )
    except NewsletterError as exc:
        detail = exc.message + (f" ({exc.hint})" if exc.hint else "")
        log.error("scheduled send of %s stopped: %s", month, detail)
        notify_author(
            settings,
            f"[{settings.newsletter_name}] the send of {month} stopped",
            _problem_text(month, scheduled_for, settings, exc),
        )
        return finish("failed", detail)
    if result.report.stopped and not result.report.paused:
        # Shut down mid-send: the row stays "running" and the next start resumes it.
        log.warning("scheduler stopping: the rest of %s is sent when it starts again", month)
        return FireResult(job_id, month, "running", "stopped during the send")
    with open_store(settings) as store:
        status = ledger.send_status(store, month)
    outcome = "sent" if status.status == "done" else "queued"
    detail = _counts_text(status)
    log.info("send of %s: %s", month, detail)
    # One report per send, once nothing is in flight (a concurrent firing may still be
    # sending: it reports when it is done).
    first_report = False
    if status.counts.get("sending", 0) == 0:
        with open_store(settings) as store:
            first_report = db.claim_report(store, month)
    if first_report:
        notify_author(
            settings,
            f"[{settings.newsletter_name}] {month} sent: {status.counts.get('sent', 0)} messages",
            _report_text(month, scheduled_for, settings, status, result.report.paused),
        )
    return finish(outcome, detail)


def report_missed(
    settings: Settings, job_id: str, month: str, scheduled_for: dt.datetime, late_by: float
) -> bool:
    """Record and report a firing that came later than ``misfire_grace_time`` allows."""
    from newsletter.store import schedule as db
    from newsletter.store.db import open_store

    grace = settings.misfire_grace_time
    detail = (
        f"missed by {_duration(late_by)} (the scheduler was not running; grace time "
        f"{_duration(grace)}): not sent"
    )
    with open_store(settings) as store:
        new = db.record_missed(store, job_id, month, scheduled_for, detail)
        if month_of_job(job_id):
            db.set_schedule_status(store, month, "missed", only_from=("scheduled", "fired"))
    if not new:
        return False
    log.error("%s: the send of %s due %s was %s", job_id, month, scheduled_for, detail)
    notify_author(
        settings,
        f"[{settings.newsletter_name}] {month} was NOT sent (missed its time)",
        f"The send of {month} was scheduled for {_local(scheduled_for, settings)}.\n"
        f"It was {detail}.\n\n"
        f"Nothing was sent. To send it now, run:\n    newsletter send {month}\n"
        f'or schedule it again:\n    newsletter schedule {month} --at "YYYY-MM-DD HH:MM"\n',
    )
    return True


def notify_author(settings: Settings, subject: str, body: str) -> bool:
    """Mail ``author_address`` (if set) a short plain-text note; never raises."""
    if not settings.author_address or not settings.sender_address:
        return False
    from email.message import EmailMessage
    from email.utils import formatdate, make_msgid

    from newsletter.delivery.transports import OutgoingMessage, open_transport

    msg = EmailMessage()
    msg["From"] = settings.sender_address
    msg["To"] = settings.author_address
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=False)
    domain = settings.sender_address.rpartition("@")[2] or "localhost"
    msg["Message-ID"] = make_msgid("scheduler", domain=domain)
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(body)
    data = msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))
    note = OutgoingMessage(
        msg["Message-ID"], (settings.author_address,), data, settings.sender_address
    )
    try:
        transport = open_transport(settings)
        try:
            outcome = transport.send(note)
        finally:
            transport.close()
    except Exception as exc:  # a report must never break the scheduler
        log.error("could not mail the author (%s): %s", settings.author_address, exc)
        return False
    if not outcome.sent:
        log.error("the author's mail was not accepted: %s %s", outcome.code, outcome.reply)
    return outcome.sent


def _problem_text(
    month: str, scheduled_for: dt.datetime, settings: Settings, exc: NewsletterError
) -> str:
    lines = [
        f"The send of {month} scheduled for {_local(scheduled_for, settings)} did not go out.",
        "",
        f"Problem: {exc.message}",
    ]
    if exc.hint:
        lines.append(f"How to fix it: {exc.hint}")
    lines += [
        "",
        f"Check the issue with `newsletter issue check {month}`; when it is ready, send it "
        f"with `newsletter send {month}` or schedule it again with "
        f'`newsletter schedule {month} --at "YYYY-MM-DD HH:MM"`.',
    ]
    return "\n".join(lines) + "\n"


def _report_text(
    month: str, scheduled_for: dt.datetime, settings: Settings, st: SendStatus, paused: bool
) -> str:
    c = st.counts
    lines = [
        f"The send of {month} ({st.subject}) scheduled for "
        f"{_local(scheduled_for, settings)} has run.",
        "",
        f"  sent:     {c.get('sent', 0)}",
        f"  skipped:  {c.get('skipped', 0)}"
        + (
            " (" + ", ".join(f"{k}: {v}" for k, v in sorted(st.skipped.items())) + ")"
            if st.skipped
            else ""
        ),
        f"  failed:   {c.get('failed', 0)}",
        f"  waiting:  {st.outstanding} (refused for now; retried by `newsletter worker`)",
    ]
    if paused:
        lines += [
            "",
            "The SMTP server could not be reached: the send is paused and "
            "`newsletter worker` finishes it when the server answers.",
        ]
    if c.get("failed"):
        lines += ["", f"Failed addresses: `newsletter deliveries list {month} --status failed`."]
    return "\n".join(lines) + "\n"


def _counts_text(st: SendStatus) -> str:
    c = st.counts
    return (
        f"{c.get('sent', 0)} sent, {c.get('skipped', 0)} skipped, {c.get('failed', 0)} failed, "
        f"{st.outstanding} waiting"
    )


def _local(moment: dt.datetime, settings: Settings) -> str:
    from newsletter.scheduling.rules import zone

    try:
        return moment.astimezone(zone(settings.timezone)).strftime(
            f"%Y-%m-%d %H:%M {settings.timezone}"
        )
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
