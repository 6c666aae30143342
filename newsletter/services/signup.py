"""Sign-up with double opt-in, confirmation, the welcome email, "send me my link".

The web pages answer the sign-up and lost-link forms the same way whatever the address,
and run :func:`request_signup` and :func:`request_link` afterwards (in the background),
so nobody can learn from the page who is on the list. What happens to an address already
in the store is decided by :func:`newsletter.rules.statuses.signup_action`.

A sign-up never changes anyone's record before the address's owner confirms: what the
form received is kept as a sign-up request (:mod:`newsletter.store.signups`), the
confirmation link names the request, and :func:`confirm_link` applies it to the person
(:func:`newsletter.rules.statuses.confirm_signup`) in one transaction.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from newsletter.content.taxonomy import resolve_topics, topic_names
from newsletter.render import RenderedMail, render_mail
from newsletter.rules import statuses
from newsletter.rules.addresses import normalise_address
from newsletter.rules.links import archive_url
from newsletter.rules.names import check_name
from newsletter.services import issues, mail
from newsletter.services import subscribers as people
from newsletter.services.app import App
from newsletter.store import signups
from newsletter.store import subscribers as db
from newsletter.store.views import SignupRequestView, SubscriberView
from newsletter.tokens import BadTokenError, ExpiredTokenError, make_token, read_token, signed_url

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


def send_confirmation(app: App, target: SignupRequestView | SubscriberView) -> None:
    """Email the confirmation link (valid for :data:`CONFIRM_DAYS` days) of a sign-up
    request, or of a pending person (their older kind of link).

    The mail greets neutrally: a sign-up request's name was typed by whoever filled in the
    form, who need not be the address's owner, so it is never put in the mail.
    """
    settings = app.settings
    if isinstance(target, SignupRequestView):
        url = signed_url(settings, "signup", target.id)
    else:
        url = signed_url(settings, "confirm", target.id)
    rendered = render_mail(
        settings,
        "confirm",
        f"Please confirm your subscription to {settings.newsletter_name}",
        {"name": "", "email": target.email, "confirm_url": url, "valid_days": CONFIRM_DAYS},
    )
    mail.send_mail(app, target.email, rendered)


def _render_preferences_link(app: App, sub: SubscriberView) -> tuple[RenderedMail, str]:
    settings = app.settings
    urls = links(app, sub)
    rendered = render_mail(
        settings,
        "preferences_link",
        f"Your link to manage {settings.newsletter_name}",
        {"name": sub.name, "email": sub.email, **urls},
    )
    return rendered, urls["unsubscribe_url"]


def send_preferences_link(app: App, sub: SubscriberView) -> None:
    """Email a fresh link to the person's preference page."""
    rendered, unsubscribe_url = _render_preferences_link(app, sub)
    mail.send_mail(app, sub.email, rendered, unsubscribe_url=unsubscribe_url)


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
) -> str:
    """Keep what the form received as a sign-up request and email its confirmation link.

    Nobody's record changes here: the request reaches the person only when the address's
    owner confirms (:func:`confirm_link`). Someone active or paused gets a link to their
    preferences instead; an erased or bounced address gets nothing (an erased one comes
    back only through an administrator). The page said the same in every case. Expired
    requests are purged first. Returns what was done (``request``, ``preferences_link``
    or ``ignored``), for logs and tests. A name the rule of :mod:`newsletter.rules.names`
    refuses raises :class:`~newsletter.rules.names.InvalidNameError` before anything is
    stored or sent. Named ``topics`` win over ``all_topics`` (a form may send both: its
    "All topics" box starts ticked); no topics means every topic.
    """
    name = check_name(name)
    now = app.now()
    signups.purge_expired(app.store, now)
    address = normalise_address(address)
    if db.is_suppressed(app.store, address):
        log.info("sign-up of a suppressed address (erased or complained) ignored")
        return "ignored"
    sub = db.find_subscriber(app.store, address)
    action = statuses.signup_action(sub.status if sub is not None else None)
    if sub is not None and action == statuses.SIGNUP_KNOWN:
        send_preferences_link(app, sub)
        return "preferences_link"
    if action == statuses.SIGNUP_IGNORE:
        return "ignored"  # bounced: never mail it from a web form
    slugs = resolve_topics(topics)
    request = signups.add_request(
        app.store,
        address,
        name=name,
        all_topics=not slugs,
        topics=slugs,
        ip=ip,
        consent_version=app.settings.consent_version,
        now=now,
        expires_at=now + dt.timedelta(seconds=CONFIRM_MAX_AGE),
    )
    send_confirmation(app, request)
    return "request"


@dataclass(frozen=True)
class Confirmation:
    """What a confirmation link names: a sign-up request, or (links mailed before requests
    existed, or by ``lost link`` to a pending person) a pending person."""

    email: str
    status: str  # "pending" for a request
    request: SignupRequestView | None = None
    subscriber: SubscriberView | None = None

    @property
    def all_topics(self) -> bool:
        """True when the sign-up asks for every topic."""
        chosen = self.request or self.subscriber
        return chosen.all_topics if chosen is not None else True

    @property
    def topic_names(self) -> list[str]:
        """Display names of the topics asked for (empty for every topic)."""
        chosen = self.request or self.subscriber
        if chosen is None or chosen.all_topics:
            return []
        return topic_names(chosen.topics)


def confirmation_from_link(app: App, token: str) -> Confirmation:
    """What the confirmation link ``token`` names; :class:`BadLinkError` if it cannot be
    used (tampered, expired, already used, or its request or person is gone)."""
    if len(token) > people.MAX_TOKEN:
        raise people.BadLinkError()
    try:
        payload = read_token(app.settings, "signup", token, max_age=CONFIRM_MAX_AGE)
    except ExpiredTokenError:
        raise people.BadLinkError(expired=True) from None
    except BadTokenError:
        # Not a sign-up request's link: an older link naming a pending person, or bad.
        sub = people.from_link(app, "confirm", token, max_age=CONFIRM_MAX_AGE)
        return Confirmation(sub.email, sub.status, subscriber=sub)
    if not isinstance(payload, int) or not people.valid_id(payload):
        raise people.BadLinkError()
    request = signups.get_request(app.store, payload, app.now())
    if request is None:
        raise people.BadLinkError(gone=True)
    return Confirmation(request.email, "pending", request=request)


def confirm(app: App, sub: SubscriberView, ip: str | None) -> tuple[SubscriberView, bool]:
    """A pending person's own link was confirmed: (subscriber, confirmed now?). Anyone not
    pending changes nothing."""
    if sub.status != "pending":
        return sub, False
    try:
        view = people.confirm(
            app, sub.email, source="web", ip=ip, consent_version=app.settings.consent_version
        )
    except statuses.SubscriberStateError:
        return sub, False
    return view, True


def confirm_link(app: App, token: str, ip: str | None) -> tuple[SubscriberView, bool]:
    """The owner pressed "Confirm" on the link ``token``: (subscriber, confirmed now?).

    A sign-up request is applied to its person in one transaction and deleted: a new
    person is added as active; a pending or unsubscribed one becomes active with the
    requested name and topics. Someone already active or paused changes nothing.
    :class:`BadLinkError` if the link cannot be used. The welcome email is
    :func:`send_welcome`'s job.
    """
    found = confirmation_from_link(app, token)
    if found.subscriber is not None:
        return confirm(app, found.subscriber, ip)
    assert found.request is not None
    try:
        applied = signups.apply_request(
            app.store, found.request.id, statuses.confirm_signup, ip=ip, now=app.now()
        )
    except statuses.SubscriberStateError:
        raise people.BadLinkError(gone=True) from None
    if applied.subscriber is None:
        raise people.BadLinkError(gone=True)
    return applied.subscriber, applied.outcome in ("added", "changed")


@dataclass(frozen=True)
class LinkOutcome:
    """What a "send me my link" request did: the mail it rendered and whether it was sent."""

    mail: str  # "preferences_link" or "confirm"
    sent: bool


def request_link(app: App, address: str, ip: str | None) -> LinkOutcome:
    """Email a fresh preferences link if the address is on the list (else nothing);
    someone still pending gets their confirmation link again.

    An unknown address costs the same work as a known one, short of the SMTP conversation:
    the lookup, and a preferences mail rendered for a stand-in and dropped. So the
    background work of a request, which runs while the server answers others, does not
    tell an observer which addresses are on the list.
    """
    sub = db.find_subscriber(app.store, address)
    action = statuses.lost_link_action(sub.status if sub else None)
    if sub is None or action is None:
        _render_preferences_link(app, _stand_in(app))
        return LinkOutcome("preferences_link", sent=False)
    if action == statuses.SIGNUP_NEW:
        send_confirmation(app, sub)
        return LinkOutcome("confirm", sent=True)
    send_preferences_link(app, sub)
    return LinkOutcome("preferences_link", sent=True)


def _stand_in(app: App) -> SubscriberView:
    """A person who is nobody: the shape of a subscriber, for rendering work only."""
    now = app.now()
    return SubscriberView(
        id=people.MAX_ID,
        email="nobody@invalid.example",
        name="",
        status="active",
        all_topics=True,
        topics=(),
        paused_until=None,
        source="web",
        created_at=now,
        confirmed_at=now,
        unsubscribed_at=None,
    )
