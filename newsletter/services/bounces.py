"""Bounces: what the list knows about refused mail, for the administrator.

A refusal at send time (a synchronous SMTP reply) is recorded by the worker with the
delivery's outcome (:mod:`newsletter.store.bounces`); the policy is
:mod:`newsletter.rules.bounces`. This module reads the record and brings a bounced
address back.
"""

from __future__ import annotations

import datetime as dt

from newsletter.rules import statuses
from newsletter.rules.schedules import zone
from newsletter.services.app import App
from newsletter.store import bounces as db
from newsletter.store import subscribers as people_db
from newsletter.store.bounces import BounceRow
from newsletter.store.views import SubscriberView

__all__ = ["BounceRow", "list_bounces", "reactivate", "show_bounces"]


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
