"""The subscriber list: adding people, reading them, and every change to one person.

Addresses are taken as people type them (normalised by :mod:`newsletter.rules.addresses`)
and topics as slugs, names or aliases (resolved with the taxonomy). Each change is decided
by a rule of :mod:`newsletter.rules.statuses` and written by :mod:`newsletter.store` in
one transaction, with a consent event saying who did it (``source``) from where (``ip``).
Unsubscribing, from any entry point, goes through :func:`unsubscribe`.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from newsletter.content.taxonomy import (
    load_taxonomy,
    means_all_topics,
    resolve_topics,
    topic_names,
)
from newsletter.errors import NewsletterError
from newsletter.importers.deliverability import check_deliverable
from newsletter.rules import statuses
from newsletter.rules.addresses import normalise_address
from newsletter.rules.names import check_name
from newsletter.rules.personal import TEST_SUBSCRIBER_ID
from newsletter.rules.statuses import SubscriberStateError
from newsletter.services.app import App
from newsletter.store import ledger
from newsletter.store import subscribers as db
from newsletter.store.errors import (
    StoreError,
    SubscriberExistsError,
    SubscriberNotFoundError,
    SuppressedError,
)
from newsletter.store.ledger import DeliveryRow
from newsletter.store.views import (
    Erasure,
    Stats,
    StatusResult,
    SubscriberFilter,
    SubscriberPage,
    SubscriberSlice,
    SubscriberView,
    TopicCounts,
)
from newsletter.tokens import BadTokenError, ExpiredTokenError, read_token

__all__ = [
    "MAX_ID",
    "WIRE_WAIT_SECONDS",
    "BadLinkError",
    "Erasure",
    "LinkFromTestError",
    "SubscriberChange",
    "SubscriberRecord",
    "SubscriberSlice",
    "SubscriberView",
    "TopicState",
    "add_subscriber",
    "add_topics",
    "change_email",
    "confirm",
    "drop_topic",
    "erase",
    "from_link",
    "get_subscriber",
    "get_subscriber_by_id",
    "list_after",
    "list_subscribers",
    "pause",
    "remove_topics",
    "rename",
    "resubscribe",
    "resume",
    "set_topics",
    "stats",
    "subscriber_record",
    "topic_counts",
    "topic_state",
    "unsubscribe",
    "unsubscribe_link",
    "update_subscriber",
    "valid_id",
]

log = logging.getLogger("newsletter.services.subscribers")

# A change that stops someone's mail waits at most this long for a message to them that a
# live worker has already put on the wire, so that no message starts after the change has
# returned. A row is on the wire from the worker's fence step that started it to the next
# one: about ``fence_window`` (0.1 s) of sending plus one SMTP transaction, usually well
# under a second. Reaching the cap (a stalled SMTP server) is logged and the change
# returns anyway: it is written, and only that message can still go out. The web server
# answers on one of its few threads, so the cap is short.
WIRE_WAIT_SECONDS = 2.0

TopicsArg = str | Iterable[str]


# --- adding and reading ------------------------------------------------------------------


def add_subscriber(
    app: App,
    email: str,
    *,
    name: str = "",
    topics: TopicsArg = (),
    all_topics: bool | None = None,
    pending: bool = False,
    source: str = "cli",
    ip: str | None = None,
    consent_version: str | None = None,
    resubscribe: bool = False,
    check_dns: bool = False,
) -> SubscriberView:
    """Add a person as ``active`` (or ``pending`` until they confirm).

    Without topics the person gets every topic. An address already in the store is an
    error, except an unsubscribed one with ``resubscribe``; an erased (suppressed) address
    needs ``resubscribe`` too, and that is logged as a consent event.
    """
    address = normalise_address(email)
    if check_dns:
        check_deliverable(address)
    if means_all_topics(topics):
        topics, all_topics = (), True
    slugs = resolve_topics(topics)
    if all_topics is None:
        all_topics = not slugs
    if all_topics:
        slugs = []
    name = check_name(name)
    detail = db.describe_topics(all_topics, slugs)
    current = db.find_subscriber(app.store, address)
    if current is not None:
        if current.status == "unsubscribed" and resubscribe:
            view, _ = db.change_status(
                app.store,
                address,
                lambda sub: statuses.resubscribe(sub.status, pending, detail),
                source=source,
                ip=ip,
                consent_version=consent_version,
                name=name or None,
                topics=(all_topics, slugs),
            )
            return view
        hint = (
            "pass --resubscribe if they asked to come back"
            if current.status == "unsubscribed"
            else "change their topics with `newsletter subscribers set-topics`"
        )
        raise SubscriberExistsError(
            f"{address} is already in the store ({current.status})", hint=hint
        )
    reason = db.suppression_reason(app.store, address)
    suppressed = reason is not None
    if suppressed and not resubscribe:
        why = (
            "reported the newsletter as spam"
            if reason == "complaint"
            else "was erased at their request"
        )
        raise SuppressedError(
            f"{address} {why} and is on the suppression list",
            hint="add them only if they asked to come back: pass --resubscribe",
        )
    new = db.NewSubscriber(
        email=address,
        name=name,
        status="pending" if pending else "active",
        all_topics=all_topics,
        topics=tuple(slugs),
        source=source,
    )
    return db.insert_subscriber(
        app.store,
        new,
        event="resubscribed" if suppressed else "subscribed",
        detail=detail + (" (pending)" if pending else ""),
        ip=ip,
        consent_version=consent_version,
        lift_suppression=suppressed,
    )


def get_subscriber(app: App, email: str, history: bool = False) -> SubscriberView:
    """One subscriber by address (as typed); with ``history`` their consent log."""
    return db.get_subscriber(app.store, email, history=history)


def get_subscriber_by_id(app: App, subscriber_id: int) -> SubscriberView:
    """One subscriber by their id."""
    return db.get_subscriber_by_id(app.store, subscriber_id)


@dataclass(frozen=True)
class SubscriberRecord:
    """One person with everything known about them: profile, consent log, deliveries."""

    subscriber: SubscriberView
    deliveries: list[DeliveryRow]


def subscriber_record(app: App, email: str, deliveries: int = 120) -> SubscriberRecord:
    """A person's profile and consent history, and their last ``deliveries``."""
    view = db.get_subscriber(app.store, email, history=True)
    rows = ledger.list_deliveries(app.store, email=view.email, limit=deliveries)
    return SubscriberRecord(view, rows)


def list_subscribers(
    app: App,
    topic: str | None = None,
    status: str | None = None,
    search: str | None = None,
    page: int = 1,
    page_size: int = 50,
) -> SubscriberPage:
    """One page of subscribers in address order; ``topic`` (slug or name) also matches
    all-topics subscribers."""
    slug = load_taxonomy().resolve(topic).slug if topic else None
    return db.list_subscribers(
        app.store, SubscriberFilter(topic=slug, status=status, search=search), page, page_size
    )


def list_after(
    app: App,
    *,
    after_id: int = 0,
    limit: int = 50,
    topic: str | None = None,
    status: str | None = None,
    created_since: dt.datetime | None = None,
) -> SubscriberSlice:
    """Up to ``limit`` subscribers after the id ``after_id``, in the order they were added
    (keyset paging: stable while people are added); ``topic`` (slug or name) also matches
    all-topics subscribers, ``created_since`` keeps those added at or after that time."""
    slug = load_taxonomy().resolve(topic).slug if topic else None
    flt = SubscriberFilter(topic=slug, status=status, created_since=created_since)
    return db.list_after(app.store, flt, after_id, limit)


# --- topics ------------------------------------------------------------------------------


def set_topics(
    app: App,
    email: str,
    topics: TopicsArg = (),
    *,
    all_topics: bool = False,
    source: str = "cli",
    ip: str | None = None,
) -> SubscriberView:
    """Replace a subscriber's topics (or give them every topic with ``all_topics``, or
    when ``topics`` is "all")."""
    if means_all_topics(topics):
        topics, all_topics = (), True
    slugs = resolve_topics(topics)
    if not slugs and not all_topics:
        raise StoreError(
            "no topics given", hint='name topics, e.g. --topics "CBT; Alliance", or --all-topics'
        )
    return db.change_topics(
        app.store, email, lambda _a, _b: (all_topics, slugs), source=source, ip=ip
    )


def add_topics(
    app: App, email: str, topics: TopicsArg, *, source: str = "cli", ip: str | None = None
) -> SubscriberView:
    """Add topics to a subscriber's choice (an all-topics subscriber stays all-topics)."""
    slugs = resolve_topics(topics)
    if not slugs:
        raise StoreError("no topics given", hint='e.g. "CBT; Alliance"')
    return db.change_topics(
        app.store, email, lambda a, before: (a, [*before, *slugs]), source=source, ip=ip
    )


def remove_topics(
    app: App, email: str, topics: TopicsArg, *, source: str = "cli", ip: str | None = None
) -> SubscriberView:
    """Remove topics from a subscriber's choice; never leaves them with none."""
    slugs = resolve_topics(topics)
    if not slugs:
        raise StoreError("no topics given", hint='e.g. "CBT; Alliance"')

    def compute(all_topics: bool, before: list[str]) -> tuple[bool, list[str]]:
        if all_topics:
            raise SubscriberStateError(
                f"{email.strip()} gets every topic, so there is nothing to remove",
                hint="choose their topics with `newsletter subscribers set-topics`",
            )
        missing = [t for t in slugs if t not in before]
        if missing:
            names = "; ".join(topic_names(missing))
            raise SubscriberStateError(
                f"{email.strip()} does not have the topic{'s' if len(missing) > 1 else ''} "
                f"{names}; nothing changed",
                hint="their topics: " + ("; ".join(topic_names(before)) or "none"),
            )
        after = [t for t in before if t not in slugs]
        if not after:
            raise SubscriberStateError(
                "that would leave no topics at all",
                hint="unsubscribe them instead, or use set-topics",
            )
        return False, after

    return db.change_topics(app.store, email, compute, source=source, ip=ip)


def rename(
    app: App, email: str, name: str, *, source: str = "cli", ip: str | None = None
) -> SubscriberView:
    """Change a subscriber's name (the one rule of :func:`check_name`; empty is allowed:
    the greeting then has no name); logged as a ``renamed`` consent event."""
    return db.rename(app.store, email, check_name(name), source=source, ip=ip)


def change_email(
    app: App, email: str, new_email: str, *, source: str = "cli", ip: str | None = None
) -> SubscriberView:
    """Move a subscriber to another address, keeping their topics, status and history;
    logged as an ``email_changed`` consent event.

    Refused when the new address belongs to someone else or is on the suppression list.
    """
    return db.change_email(app.store, email, normalise_address(new_email), source=source, ip=ip)


@dataclass(frozen=True)
class TopicState:
    """What "fewer emails on this topic" can do for one person and one topic."""

    has_topic: bool  # they get it (chosen, or every topic)
    last_topic: bool  # it is their only topic: removing it would leave none
    receiving: bool  # still subscribed


def topic_state(sub: SubscriberView, slug: str) -> TopicState:
    """Whether ``sub`` can drop the topic ``slug`` from their choice."""
    return TopicState(
        has_topic=sub.all_topics or slug in sub.topics,
        last_topic=not sub.all_topics and tuple(sub.topics) == (slug,),
        receiving=sub.status != "unsubscribed",
    )


def drop_topic(
    app: App, sub: SubscriberView, slug: str, *, ip: str | None = None
) -> SubscriberView:
    """Stop sending ``sub`` summaries on ``slug`` (all-topics: every topic but that one).

    :class:`SubscriberStateError` when they do not get the topic, it is their last one,
    or they left.
    """
    state = topic_state(sub, slug)
    if not state.receiving or not state.has_topic or state.last_topic:
        raise SubscriberStateError(f"{sub.email} cannot drop the topic {slug!r}")
    if sub.all_topics:
        rest = [t.slug for t in load_taxonomy() if t.slug != slug]
    else:
        rest = [t for t in sub.topics if t != slug]
    return set_topics(app, sub.email, rest, source="web", ip=ip)


# --- status ------------------------------------------------------------------------------


def confirm(
    app: App,
    email: str,
    *,
    source: str = "web",
    ip: str | None = None,
    consent_version: str | None = None,
) -> SubscriberView:
    """A pending subscriber confirmed their address: they become active."""
    view, _ = db.change_status(
        app.store,
        email,
        lambda sub: statuses.confirm(sub.email, sub.status),
        source=source,
        ip=ip,
        consent_version=consent_version,
    )
    return view


def pause(
    app: App,
    email: str,
    until: dt.date | None = None,
    *,
    source: str = "cli",
    ip: str | None = None,
    today: dt.date | None = None,
) -> SubscriberView:
    """Stop sending to an active subscriber until ``until`` (or until resumed)."""
    day = today or app.today()
    view, changed = db.change_status(
        app.store,
        email,
        lambda sub: statuses.pause(sub.email, sub.status, until, day),
        source=source,
        ip=ip,
    )
    if changed:
        _wait_for_wire(app, view)
    return view


def resume(app: App, email: str, *, source: str = "cli", ip: str | None = None) -> SubscriberView:
    """Start sending again to a paused subscriber."""
    view, _ = db.change_status(
        app.store, email, lambda sub: statuses.resume(sub.email, sub.status), source=source, ip=ip
    )
    return view


def unsubscribe(
    app: App,
    email: str,
    *,
    source: str = "cli",
    ip: str | None = None,
    detail: str | None = None,
) -> tuple[SubscriberView, bool]:
    """Unsubscribe someone; returns the subscriber and whether anything changed.

    Final the moment it returns, also for a send in progress: every delivery to them that
    is not on the wire is skipped in the same transaction as the status and the consent
    event (a worker's fence then refuses to start it), and only a message a live worker
    already has on the wire is waited for. So no message starts after this returns
    (RFC 8058 one-click). Unsubscribing twice is harmless.
    """
    result = _unsubscribe(app, email, source=source, ip=ip, detail=detail)
    return result.subscriber, result.changed


def unsubscribe_link(
    app: App, token: str, *, source: str = "web", ip: str | None = None, detail: str | None = None
) -> SubscriberView:
    """The RFC 8058 one-click unsubscribe: the person the ``unsubscribe`` link ``token``
    names leaves, as :func:`unsubscribe` (one transaction, by the token's id; nothing is
    read before it). :class:`BadLinkError` if the link is bad or its person is gone."""
    who = _link_payload(app, "unsubscribe", token)
    try:
        return _unsubscribe(app, who, source=source, ip=ip, detail=detail).subscriber
    except SubscriberNotFoundError:
        raise BadLinkError(gone=True) from None


def _unsubscribe(
    app: App, who: int | str, *, source: str, ip: str | None, detail: str | None
) -> StatusResult:
    result = db.unsubscribe(app.store, who, source=source, ip=ip, detail=detail)
    if result.on_wire:
        _wait_for_wire(app, result.subscriber)
    return result


def _wait_for_wire(app: App, view: SubscriberView) -> None:
    """Wait for a message to ``view`` that a live worker has already started."""
    if not db.wait_for_wire(app.store, view.id, WIRE_WAIT_SECONDS):
        log.warning(
            "a message to subscriber %d was still on the wire %.0f s after their mail was "
            "stopped (a stalled SMTP server?)",
            view.id,
            WIRE_WAIT_SECONDS,
        )


def resubscribe(
    app: App, sub: SubscriberView, *, source: str = "web", ip: str | None = None
) -> SubscriberView:
    """Someone who unsubscribed subscribes again from their preference page."""
    return add_subscriber(
        app,
        sub.email,
        topics=sub.topics,
        all_topics=sub.all_topics,
        resubscribe=True,
        source=source,
        ip=ip,
        consent_version=app.settings.consent_version,
    )


def erase(app: App, email: str, *, source: str = "cli") -> Erasure:
    """Delete a person's data and consent history; only a salted hash stays (suppression).

    Their queued mail is stopped first, and a message on the wire waited for, as for an
    unsubscribe. ``log_cleared`` of the result is False when, on SQLite, another process
    kept old copies of the rows in the write-ahead log (see
    :func:`newsletter.store.db.checkpoint`).
    """
    view = db.stop_mail(app.store, email)
    _wait_for_wire(app, view)
    return db.erase(app.store, email, source=source)


@dataclass(frozen=True)
class SubscriberChange:
    """Several changes to one person at once; None leaves that part as it is.

    ``topics`` and ``all_topics`` as for :func:`set_topics`; ``status`` one of
    ``active`` (confirm a pending person, resume a paused one, bring back one who
    unsubscribed), ``paused`` (until ``paused_until``, or until resumed) or
    ``unsubscribed``.
    """

    name: str | None = None
    topics: tuple[str, ...] | None = None
    all_topics: bool | None = None
    status: str | None = None
    paused_until: dt.date | None = None


CHANGEABLE_STATUSES = ("active", "paused", "unsubscribed")


def update_subscriber(
    app: App, email: str, change: SubscriberChange, *, source: str = "cli"
) -> SubscriberView:
    """Apply ``change`` to the person ``email``: all of it, or (on a mistake) none of it.

    Everything that can be refused is checked before anything is written: the name, the
    topics, and the status change against the rules of :mod:`newsletter.rules.statuses`.
    The status is written first, then the topics, then the name, each with its consent
    event, as the single-change functions do.
    """
    current = db.get_subscriber(app.store, email)
    name = check_name(change.name) if change.name is not None else None
    topics_given = change.topics is not None or change.all_topics is not None
    slugs: list[str] = []
    all_topics = bool(change.all_topics)
    if change.topics is not None and means_all_topics(change.topics):
        all_topics = True
    elif change.topics is not None:
        slugs = resolve_topics(change.topics)
    if topics_given and not slugs and not all_topics:
        raise StoreError("no topics given", hint="name at least one topic, or all_topics")
    status_step = _status_step(app, current, change, source)
    view = current
    if status_step is not None:
        view = status_step()
    if topics_given:
        view = set_topics(app, view.email, slugs, all_topics=all_topics, source=source)
    if name is not None and name != view.name:
        view = rename(app, view.email, name, source=source)
    return view


def _status_step(
    app: App, current: SubscriberView, change: SubscriberChange, source: str
) -> Callable[[], SubscriberView] | None:
    """The status change ``change`` asks of ``current``, checked now and run later; None
    when there is nothing to do. A change the rules refuse raises here."""
    status, email, today = change.status, current.email, app.today()
    if status is None or (status == current.status and status != "paused"):
        if change.paused_until is not None and status != "paused":
            raise SubscriberStateError(
                "paused_until is only taken with the status paused",
                hint='send "status": "paused" with it',
            )
        return None
    if status not in CHANGEABLE_STATUSES:
        raise SubscriberStateError(
            f"the status cannot be set to {status!r}",
            hint="one of: " + ", ".join(CHANGEABLE_STATUSES),
        )
    if status == "paused":
        statuses.pause(email, current.status, change.paused_until, today)
        return lambda: pause(app, email, change.paused_until, source=source)
    if status == "unsubscribed":
        return lambda: unsubscribe(app, email, source=source)[0]
    if current.status == "pending":
        return lambda: confirm(app, email, source=source)
    if current.status == "paused":
        return lambda: resume(app, email, source=source)
    if current.status == "unsubscribed":
        return lambda: resubscribe(app, current, source=source)
    raise SubscriberStateError(
        f"{email} is {current.status} and cannot be made active here",
        hint="a bounced address comes back with `newsletter subscribers reactivate`",
    )


# --- signed links ------------------------------------------------------------------------


class BadLinkError(NewsletterError):
    """A link from an email cannot be used: tampered, expired, or its person is gone."""

    def __init__(self, expired: bool = False, gone: bool = False) -> None:
        super().__init__("this link has expired" if expired else "this link is not valid")
        self.expired = expired
        self.gone = gone


class LinkFromTestError(BadLinkError):
    """A link of a test message sent to someone who is not a subscriber: it names nobody,
    on purpose (see :data:`newsletter.rules.personal.TEST_SUBSCRIBER_ID`)."""

    def __init__(self, purpose: str) -> None:
        super().__init__()
        self.args = ("this link is from a test message",)
        self.purpose = purpose


MAX_TOKEN = 512
#: Store keys are 64-bit signed integers: a signed id outside 1..MAX_ID names nobody (and
#: would overflow the database driver).
MAX_ID = 2**63 - 1


def valid_id(payload: object) -> bool:
    """True if a token's payload can be a store id (a positive 64-bit integer)."""
    return isinstance(payload, int) and not isinstance(payload, bool) and 0 < payload <= MAX_ID


def _link_payload(app: App, purpose: str, token: str, max_age: int | None = None) -> int | str:
    """What a signed link names (an id, or an address in old links); :class:`BadLinkError`
    if it is tampered with, made for another purpose, signed by an unknown key, older
    than ``max_age`` seconds, or names no possible id. Reads nothing from the store."""
    if len(token) > MAX_TOKEN:
        raise BadLinkError()
    try:
        payload = read_token(app.settings, purpose, token, max_age=max_age)
    except ExpiredTokenError:
        raise BadLinkError(expired=True) from None
    except BadTokenError:
        raise BadLinkError() from None
    if payload == TEST_SUBSCRIBER_ID and not isinstance(payload, bool):
        raise LinkFromTestError(purpose)
    if isinstance(payload, int) and not valid_id(payload):
        raise BadLinkError()
    return payload


def from_link(app: App, purpose: str, token: str, max_age: int | None = None) -> SubscriberView:
    """The subscriber a signed link names; :class:`BadLinkError` if it cannot be used.

    Bad: tampered with, made for another purpose, signed by an unknown key, older than
    ``max_age`` seconds, or naming a person no longer in the store.
    """
    payload = _link_payload(app, purpose, token, max_age)
    try:
        if isinstance(payload, int):
            return db.get_subscriber_by_id(app.store, payload)
        return db.get_subscriber(app.store, payload)
    except SubscriberNotFoundError:
        raise BadLinkError(gone=True) from None


# --- counts ------------------------------------------------------------------------------


def stats(app: App) -> Stats:
    """Counts by status, and among receiving subscribers by topic."""
    return db.stats(app.store, app.today())


def topic_counts(app: App) -> TopicCounts | None:
    """Receiving subscribers per topic, or None when there is no (usable) store."""
    try:
        return db.topic_counts(app.store, app.today())
    except NewsletterError:
        # The taxonomy is useful without a database (e.g. while writing an issue).
        return None
