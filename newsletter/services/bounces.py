"""Bounces: what the list knows about refused mail, for the administrator.

A refusal at send time (a synchronous SMTP reply) is recorded by the worker with the
delivery's outcome (:mod:`newsletter.store.bounces`); the policy is
:mod:`newsletter.rules.bounces`. This module reads the record and brings a bounced
address back.
"""

from __future__ import annotations

import datetime as dt
import logging
import mailbox
import threading
from collections.abc import Callable
from pathlib import Path

from newsletter.errors import NewsletterError
from newsletter.importers.bounce_mail import MAX_BOUNCE_BYTES, FetchReport, parse_bounce
from newsletter.rules import statuses
from newsletter.rules.bounces import BouncePolicy
from newsletter.rules.schedules import zone
from newsletter.services.app import App
from newsletter.store import bounces as db
from newsletter.store import subscribers as people_db
from newsletter.store.bounces import BounceRow
from newsletter.store.views import SubscriberView
from newsletter.tokens import read_verp_tag

__all__ = [
    "BounceRow",
    "FetchReport",
    "fetch_mailbox",
    "list_bounces",
    "process_bounce",
    "reactivate",
    "serve_bounces",
    "show_bounces",
]

log = logging.getLogger("newsletter.services.bounces")


def _policy(app: App) -> BouncePolicy:
    s = app.settings
    return BouncePolicy(s.bounce_soft_threshold, s.bounce_soft_window_days)


def process_bounce(app: App, raw: bytes, source: str = "mail") -> tuple[str, list[str]]:
    """Read one message that came back and record what it proves, once.

    Returns what it was (``recorded``, ``already``, ``autoreply``, ``unknown``, ...) and
    the addresses it marked bounced or unsubscribed. A message that proves nothing about
    a person (no VERP tag, no Message-ID of ours, no address that was sent mail) changes
    nothing and is logged.
    """
    parsed = parse_bounce(raw)
    if parsed.what in ("autoreply", "unknown", "too-big") or not parsed.recipients:
        log.info("set aside a %s message (%s)", parsed.what, parsed.note or parsed.report_id)
        return parsed.what, []
    month = subscriber_id = None
    # The first tag whose MAC is ours (the address it came back to, else one in the report
    # or the returned message); a forged or mangled tag proves nothing, and the delivery is
    # then found by the returned Message-ID or the failed address, or not at all.
    for tag in parsed.verp_tags:
        read = read_verp_tag(app.settings, tag)
        if read is not None:
            month, subscriber_id = read
            break
    else:
        if parsed.verp_tags:
            log.warning("a bounce with a forged or mangled VERP tag: not trusted")
    outcome, marked = "unknown", []
    for r in parsed.recipients:
        if r.kind is None:  # a delay warning
            outcome = "warning" if outcome == "unknown" else outcome
            continue
        result, who = db.record_mailed(
            app.store,
            db.MailedBounce(
                report_id=parsed.report_id,
                kind=r.kind,
                code=r.code,
                diagnostic=(parsed.note + " " + r.diagnostic).strip()
                if r.kind == "complaint"
                else r.diagnostic,
                source=source,
                month=month,
                subscriber_id=subscriber_id,
                message_id=parsed.original_message_id,
                address=r.address,
            ),
            _policy(app),
            app.now(),
        )
        if result == "recorded" or outcome in ("unknown", "warning"):
            outcome = result
        if who:
            marked.append(who)
    if outcome == "unknown":
        log.warning("a bounce about nobody we sent to (%s): set aside", parsed.report_id)
    return outcome, marked


def serve_bounces(
    app: App,
    host: str,
    port: int,
    stop: threading.Event,
    on_ready: Callable[[int], None] | None = None,
) -> None:
    """Receive bounces by SMTP on ``host:port`` until ``stop`` is set (each message is
    processed like one read by :func:`fetch_mailbox`; a failure answers 451)."""
    from newsletter.delivery.inbound import BounceReceiver

    def handle(raw: bytes) -> str:
        what, marked = process_bounce(app, raw, source="smtp-in")
        return what + (f": {len(marked)} stopped" if marked else "")

    receiver = BounceReceiver(handle, host, port, max_bytes=MAX_BOUNCE_BYTES).start()
    try:
        if on_ready is not None:
            on_ready(receiver.port)
        stop.wait()
    finally:
        receiver.stop()


def fetch_mailbox(app: App, path: Path, kind: str = "maildir") -> FetchReport:
    """Process every message of a Maildir (new ones are moved to cur/ and flagged seen)
    or an mbox file; a message processed before changes nothing again."""
    report = FetchReport()
    if kind == "maildir":
        if not (path / "new").is_dir() and not (path / "cur").is_dir():
            raise NewsletterError(
                f"{path} is not a Maildir (no new/ or cur/ folder)",
                hint="give the folder that holds new/, cur/ and tmp/, or use --mbox FILE",
            )
        box: mailbox.Mailbox = mailbox.Maildir(path, create=False)
    else:
        if not path.is_file():
            raise NewsletterError(f"{path} is not a file", hint="give an mbox file")
        box = mailbox.mbox(path, create=False)
    for key in list(box.keys()):
        raw = box.get_bytes(key)
        report.read += 1
        what, marked = process_bounce(app, raw, source=kind)
        if what == "recorded":
            report.recorded += 1
        elif what == "already":
            report.already += 1
        else:
            report.ignored[what] = report.ignored.get(what, 0) + 1
        report.marked.extend(marked)
        if isinstance(box, mailbox.Maildir):
            msg = box.get_message(key)
            if msg.get_subdir() != "cur" or "S" not in msg.get_flags():
                msg.set_subdir("cur")
                msg.add_flag("S")
                box[key] = msg
    box.close()
    return report


def list_bounces(app: App, since: dt.date | None = None, limit: int = 1000) -> list[BounceRow]:
    """Recorded bounces, newest first, from ``since`` (a date in the configured zone)."""
    start = None
    if since is not None:
        start = dt.datetime.combine(since, dt.time(), tzinfo=zone(app.settings.timezone))
    return db.list_bounces(app.store, since=start, limit=limit)


def show_bounces(app: App, email: str) -> tuple[SubscriberView, list[BounceRow]]:
    """One person and their bounces, newest first."""
    view = people_db.get_subscriber(app.store, email)
    return view, db.list_bounces(app.store, email=view.email)


def reactivate(
    app: App, email: str, *, source: str = "cli", detail: str | None = None
) -> SubscriberView:
    """Bring a bounced address back (logged as a consent event ``reactivated``)."""
    view, _ = people_db.change_status(
        app.store,
        email,
        lambda sub: statuses.reactivate(sub.email, sub.status, detail),
        source=source,
    )
    return view
