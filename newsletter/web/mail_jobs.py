"""The background jobs of the sign-up, confirmation and lost-link pages.

Each ``*_job`` function returns a callable for :class:`~newsletter.web.jobs.BackgroundJobs`;
it looks the address up, changes the store if needed, renders the email from
``templates/web/mail/`` and hands it to :mod:`newsletter.delivery.transactional`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from newsletter.tokens import link, make_token

if TYPE_CHECKING:
    from flask import Flask

    from newsletter.store.views import SubscriberView

log = logging.getLogger("newsletter.web")
WELCOME_SUMMARIES = 3


def _send(app: Flask, template: str, to: str, subject: str, **context: Any) -> None:
    from flask import render_template

    from newsletter.delivery.transactional import TransactionalMail, send_transactional

    ctx = app.extensions["newsletter"]
    settings = ctx.settings
    context = {
        "newsletter_name": settings.newsletter_name,
        "postal_address": settings.postal_address,
        "base_url": settings.base_url,
        **context,
    }
    text = render_template(f"mail/{template}.txt", **context)
    html = None
    if any((d / "mail" / f"{template}.html").is_file() for d in _dirs(settings)):
        html = render_template(f"mail/{template}.html", **context)
    headers = {}
    if "unsubscribe_url" in context:
        headers["List-Unsubscribe"] = f"<{context['unsubscribe_url']}>"
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    outcome = send_transactional(
        settings, TransactionalMail(to, subject, text, html, headers=headers)
    )
    if outcome.status != "sent":
        log.warning("%s email to %s not sent: %s", template, to, outcome.reply)


def _dirs(settings):
    from newsletter.web.app import web_templates_dirs

    return web_templates_dirs(settings)


def _links(settings, sub: SubscriberView) -> dict[str, str]:
    return {
        "preferences_url": link(
            settings, "preferences", make_token(settings, "preferences", sub.id)
        ),
        "unsubscribe_url": link(
            settings, "unsubscribe", make_token(settings, "unsubscribe", sub.id)
        ),
    }


def send_confirmation(app: Flask, sub: SubscriberView) -> None:
    """Email the sign-up confirmation link (valid 7 days)."""
    settings = app.extensions["newsletter"].settings
    url = link(settings, "confirm", make_token(settings, "confirm", sub.id))
    _send(
        app,
        "confirm",
        sub.email,
        f"Please confirm your subscription to {settings.newsletter_name}",
        sub=sub,
        confirm_url=url,
    )


def send_preferences_link(app: Flask, sub: SubscriberView) -> None:
    """Email a fresh link to the preference page."""
    settings = app.extensions["newsletter"].settings
    _send(
        app,
        "preferences_link",
        sub.email,
        f"Your link to manage {settings.newsletter_name}",
        sub=sub,
        **_links(settings, sub),
    )


def send_welcome(app: Flask, sub: SubscriberView) -> None:
    """Email the welcome message with recent summaries on the person's topics."""
    from newsletter.content.taxonomy import load_taxonomy
    from newsletter.web.archive import public_issues, recent_summaries

    ctx = app.extensions["newsletter"]
    settings = ctx.settings
    issues = public_issues(ctx.library, ctx.store)
    recent = recent_summaries(issues, sub.topics, sub.all_topics, WELCOME_SUMMARIES)
    names = {t.slug: t.name for t in load_taxonomy()}
    _send(
        app,
        "welcome",
        sub.email,
        f"Welcome to {settings.newsletter_name}",
        sub=sub,
        topic_names=[names.get(t, t) for t in sub.topics],
        recent=[
            {
                "title": s.title,
                "month_name": issue.month_name,
                "url": f"{settings.base_url}/archive/{issue.month}/{s.key}",
                "topics": [t.name for t in s.topics],
                "implications": s.implications,
            }
            for issue, s in recent
        ],
        archive_url=f"{settings.base_url}/archive",
        **_links(settings, sub),
    )


def signup_job(
    app: Flask,
    address: str,
    name: str,
    topics: Sequence[str],
    all_topics: bool,
    ip: str | None,
) -> Callable[[], None]:
    """Add (or re-add) the person as pending and send the confirmation email.

    Someone already on the list gets a confirmation again if still pending, or a link to
    their preferences if active or paused; an erased address gets nothing (it comes
    back only through an administrator). The page said the same in every case.
    """

    def job() -> None:
        from newsletter.store import (
            SubscriberExistsError,
            SuppressedError,
            add_subscriber,
            get_subscriber,
        )

        ctx = app.extensions["newsletter"]
        with app.app_context():
            common = {
                "name": name,
                "topics": topics,
                "all_topics": all_topics,
                "pending": True,
                "source": "web",
                "ip": ip,
                "consent_version": ctx.settings.consent_version,
            }
            try:
                sub = add_subscriber(ctx.store, address, **common)
            except SuppressedError:
                log.info("sign-up of an erased address ignored")
                return
            except SubscriberExistsError:
                sub = get_subscriber(ctx.store, address)
                if sub.status == "unsubscribed":
                    sub = add_subscriber(ctx.store, address, resubscribe=True, **common)
                elif sub.status in ("active", "paused"):
                    send_preferences_link(app, sub)
                    return
                elif sub.status != "pending":
                    return  # bounced: never mail it from a web form
            send_confirmation(app, sub)

    return job


def welcome_job(app: Flask, subscriber_id: int) -> Callable[[], None]:
    """Send the welcome email to a subscriber who just confirmed."""

    def job() -> None:
        from newsletter.store import get_subscriber_by_id

        with app.app_context():
            sub = get_subscriber_by_id(app.extensions["newsletter"].store, subscriber_id)
            send_welcome(app, sub)

    return job


def lost_link_job(app: Flask, address: str, ip: str | None) -> Callable[[], None]:
    """Email a fresh preferences link if the address is on the list (else nothing)."""

    def job() -> None:
        from newsletter.store import SubscriberNotFoundError, get_subscriber

        with app.app_context():
            try:
                sub = get_subscriber(app.extensions["newsletter"].store, address)
            except SubscriberNotFoundError:
                return
            if sub.status == "pending":
                send_confirmation(app, sub)
            elif sub.status in ("active", "paused", "unsubscribed"):
                send_preferences_link(app, sub)

    return job
