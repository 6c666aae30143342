"""Sign-up with double opt-in, confirmation, the welcome email, "send me my link".

The web pages answer the sign-up and lost-link forms the same way whatever the address,
and run :func:`request_signup` and :func:`request_link` afterwards (in the background),
so nobody can learn from the page who is on the list. What happens to an address already
in the store is decided by :func:`newsletter.rules.statuses.signup_action`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from newsletter.content.taxonomy import topic_names
from newsletter.render import render_mail
from newsletter.rules import statuses
from newsletter.rules.links import archive_url
from newsletter.rules.names import check_name
from newsletter.services import issues, mail
from newsletter.services import subscribers as people
from newsletter.services.app import App
from newsletter.store import subscribers as db
from newsletter.store.errors import SubscriberExistsError, SuppressedError
from newsletter.store.views import SubscriberView
from newsletter.tokens import make_token, signed_url

log = logging.getLogger("newsletter.web")

CONFIRM_DAYS = 7
CONFIRM_MAX_AGE = CONFIRM_DAYS * 24 * 3600  # a sign-up confirmation link is valid 7 days
WELCOME_SUMMARIES = 3


def link_token(app: App, purpose: str, sub: SubscriberView) -> str:
    """A fresh signed token for one of the person's links (``preferences``, ...)."""
    return make_token(app.settings, purpose, sub.id)


def links(app: App, sub: SubscriberView) -> dict[str, str]:
    """The person's preferences and unsubscribe links."""
    return {
        "preferences_url": signed_url(app.settings, "preferences", sub.id),
        "unsubscribe_url": signed_url(app.settings, "unsubscribe", sub.id),
    }


def send_confirmation(app: App, sub: SubscriberView) -> None:
    """Email the sign-up confirmation link (valid for :data:`CONFIRM_DAYS` days)."""
    settings = app.settings
    url = signed_url(settings, "confirm", sub.id)
    rendered = render_mail(
        settings,
        "confirm",
        f"Please confirm your subscription to {settings.newsletter_name}",
        {"name": sub.name, "email": sub.email, "confirm_url": url, "valid_days": CONFIRM_DAYS},
    )
    mail.send_mail(app, sub.email, rendered)


def send_preferences_link(app: App, sub: SubscriberView) -> None:
    """Email a fresh link to the person's preference page."""
    settings = app.settings
    urls = links(app, sub)
    rendered = render_mail(
        settings,
        "preferences_link",
        f"Your link to manage {settings.newsletter_name}",
        {"name": sub.name, "email": sub.email, **urls},
    )
    mail.send_mail(app, sub.email, rendered, unsubscribe_url=urls["unsubscribe_url"])


def send_welcome(app: App, subscriber_id: int) -> None:
    """Email the welcome message with recent summaries on the person's topics."""
    settings = app.settings
    sub = db.get_subscriber_by_id(app.store, subscriber_id)
    recent = issues.recent_summaries(app, sub.topics, sub.all_topics, WELCOME_SUMMARIES)
    urls = links(app, sub)
    rendered = render_mail(
        settings,
        "welcome",
        f"Welcome to {settings.newsletter_name}",
        {
            "name": sub.name,
            "all_topics": sub.all_topics,
            "topic_names": topic_names(sub.topics),
            "recent": [
                {
                    "title": s.title,
                    "month_name": issue.month_name,
                    "url": archive_url(settings.base_url, issue.month, s.key),
                    "topics": [t.name for t in s.topics],
                    "implications": s.implications,
                }
                for issue, s in recent
            ],
            "archive_url": archive_url(settings.base_url),
            **urls,
        },
    )
    mail.send_mail(app, sub.email, rendered, unsubscribe_url=urls["unsubscribe_url"])


def request_signup(
    app: App,
    address: str,
    name: str,
    topics: Sequence[str],
    all_topics: bool,
    ip: str | None,
) -> None:
    """Add (or bring back) the person as pending and email the confirmation link.

    Someone already on the list gets a confirmation again if still pending, or a link to
    their preferences if active or paused; an erased or bounced address gets nothing (an
    erased one comes back only through an administrator). The page said the same in every
    case. A name the rule of :mod:`newsletter.rules.names` refuses raises
    :class:`~newsletter.rules.names.InvalidNameError` before anything is stored or sent.
    """
    name = check_name(name)

    def add(resubscribe: bool = False) -> SubscriberView:
        return people.add_subscriber(
            app,
            address,
            name=name,
            topics=topics,
            all_topics=all_topics,
            pending=True,
            source="web",
            ip=ip,
            consent_version=app.settings.consent_version,
            resubscribe=resubscribe,
        )

    try:
        sub = add()
    except SuppressedError:
        log.info("sign-up of an erased address ignored")
        return
    except SubscriberExistsError:
        sub = people.get_subscriber(app, address)
        action = statuses.signup_action(sub.status)
        if action == statuses.SIGNUP_KNOWN:
            send_preferences_link(app, sub)
            return
        if action == statuses.SIGNUP_IGNORE:
            return  # bounced: never mail it from a web form
        if sub.status == "unsubscribed":
            sub = add(resubscribe=True)
    send_confirmation(app, sub)


def confirm(app: App, sub: SubscriberView, ip: str | None) -> tuple[SubscriberView, bool]:
    """The person pressed "Confirm": (subscriber, confirmed now?). Already confirmed people
    change nothing. The welcome email is :func:`send_welcome`'s job."""
    if sub.status != "pending":
        return sub, False
    try:
        view = people.confirm(
            app, sub.email, source="web", ip=ip, consent_version=app.settings.consent_version
        )
    except statuses.SubscriberStateError:
        return sub, False
    return view, True


def request_link(app: App, address: str, ip: str | None) -> None:
    """Email a fresh preferences link if the address is on the list (else nothing);
    someone still pending gets their confirmation link again."""
    sub = db.find_subscriber(app.store, address)
    action = statuses.lost_link_action(sub.status if sub else None)
    if sub is None or action is None:
        return
    if action == statuses.SIGNUP_NEW:
        send_confirmation(app, sub)
    else:
        send_preferences_link(app, sub)
