"""The subscriber tables: people, their topics, the consent log and the suppression list.

Persistence only. Each function is one transaction and takes addresses in their stored
form (see :mod:`newsletter.rules.addresses`) and topics as slugs; what a change means (may
this person be paused? which consent event records it?) is decided by the pure rules of
:mod:`newsletter.rules.statuses`, which the functions below apply atomically with the
row locked. Results are plain dataclasses (:mod:`newsletter.store.views`), never ORM rows.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import (
    Select,
    Table,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    literal,
    or_,
    select,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from newsletter.rules import statuses
from newsletter.rules.addresses import lookup_key
from newsletter.rules.statuses import SKIP_LEFT, SKIP_PAUSED, SOURCES, StatusChange
from newsletter.store.db import UPGRADE_HINT, Prepared, Store, checkpoint, prepared
from newsletter.store.errors import (
    StoreError,
    SubscriberExistsError,
    SubscriberNotFoundError,
    SuppressedError,
)
from newsletter.store.models import (
    ID_CHUNK,
    STATUSES,
    WIRE_STARTED,
    ConsentRecord,
    Delivery,
    SignupRequest,
    StoreMeta,
    Subscriber,
    SubscriberTopic,
    Suppression,
    WorkerLease,
    receiving_condition,
    topics_of,
    utcnow,
)
from newsletter.store.views import (
    ConsentEvent,
    Erasure,
    IssueStats,
    Stats,
    StatusResult,
    SubscriberFilter,
    SubscriberPage,
    SubscriberSlice,
    SubscriberView,
    TopicCounts,
)

MAX_PAGE_SIZE = 1000
CHUNK = ID_CHUNK  # rows per executemany, ids per IN (...) lookup


# --- suppression -------------------------------------------------------------------------


def _salt(store: Store, session: Session) -> Any:
    """A keyed hash object to copy (copying is cheaper than keying for every address)."""
    if "salt" not in store.cache:
        value = session.scalar(select(StoreMeta.value).where(StoreMeta.key == "suppression_salt"))
        if value is None:  # pragma: no cover - the first migration writes it
            raise StoreError("the store has no suppression salt", hint=UPGRADE_HINT)
        store.cache["salt"] = hmac.new(bytes.fromhex(value), digestmod=hashlib.sha256)
    return store.cache["salt"]


def email_hash(store: Store, session: Session, address: str) -> str:
    """The salted hash under which an erased address is remembered."""
    mac = _salt(store, session).copy()
    mac.update(address.encode("utf-8"))
    return str(mac.hexdigest())


def is_suppressed(store: Store, email: str) -> bool:
    """True if ``email`` is on the suppression list (erased, or reported spam)."""
    return suppression_reason(store, email) is not None


def suppression_reason(store: Store, email: str) -> str | None:
    """Why ``email`` is on the suppression list (``erased``, ``complaint``), or None."""
    with store.transaction() as s:
        row = s.get(Suppression, email_hash(store, s, lookup_key(email)))
        return None if row is None else row.reason


def suppress(session: Session, store: Store, email: str, reason: str, now: dt.datetime) -> None:
    """Put ``email`` on the suppression list (kept if already there, first reason wins)."""
    h = email_hash(store, session, email)
    if session.get(Suppression, h) is None:
        session.add(Suppression(email_hash=h, created_at=now, reason=reason))


def _lift_if_back(store: Store, session: Session, sub: Subscriber) -> None:
    """An administrator brought someone who complained back: their entry goes."""
    if sub.status in ("active", "pending"):
        session.execute(
            delete(Suppression).where(
                Suppression.email_hash == email_hash(store, session, sub.email)
            )
        )


# --- helpers -----------------------------------------------------------------------------


def _check_source(source: str) -> None:
    if source not in SOURCES:
        raise StoreError(f"unknown source {source!r}", hint="one of: " + ", ".join(SOURCES))


def _log(
    session: Session,
    subscriber_id: int | None,
    event: str,
    source: str,
    *,
    ip: str | None = None,
    consent_version: str | None = None,
    detail: str | None = None,
    at: dt.datetime | None = None,
) -> None:
    session.add(
        ConsentRecord(
            subscriber_id=subscriber_id,
            at=at or utcnow(),
            event=event,
            source=source,
            ip=ip,
            consent_version=consent_version,
            detail=detail,
        )
    )


def _get(session: Session, email: str, *, lock: bool = True) -> Subscriber:
    stmt = select(Subscriber).where(Subscriber.email == lookup_key(email))
    if lock and session.get_bind().dialect.name == "postgresql":
        # Two administrators (or the web page) changing one person: the second waits.
        stmt = stmt.with_for_update()
    sub = session.scalar(stmt)
    if sub is None:
        raise SubscriberNotFoundError(email.strip())
    return sub


def _view(
    sub: Subscriber, topics: Sequence[str] | None = None, events: Iterable[ConsentEvent] = ()
) -> SubscriberView:
    slugs = tuple(sorted(topics if topics is not None else (t.topic_slug for t in sub.topics)))
    return SubscriberView(
        id=sub.id,
        email=sub.email,
        name=sub.name,
        status=sub.status,
        all_topics=sub.all_topics,
        topics=slugs,
        paused_until=sub.paused_until,
        source=sub.source,
        created_at=sub.created_at,
        confirmed_at=sub.confirmed_at,
        unsubscribed_at=sub.unsubscribed_at,
        events=tuple(events),
    )


def _event_view(r: ConsentRecord) -> ConsentEvent:
    return ConsentEvent(r.at, r.event, r.source, r.ip, r.consent_version, r.detail)


def _replace_topics(sub: Subscriber, slugs: Sequence[str]) -> None:
    current = {t.topic_slug for t in sub.topics}
    wanted = set(slugs)
    sub.topics = [t for t in sub.topics if t.topic_slug in wanted] + [
        SubscriberTopic(topic_slug=slug) for slug in sorted(wanted - current)
    ]


def describe_topics(all_topics: bool, slugs: Iterable[str]) -> str:
    """How a topic choice is written in the consent log."""
    return "all topics" if all_topics else ("; ".join(sorted(slugs)) or "no topics")


# --- adding and reading ------------------------------------------------------------------


@dataclass(frozen=True)
class NewSubscriber:
    """A person to add: address in its stored form, topics as slugs (none if all)."""

    email: str
    name: str = ""
    status: str = "active"
    all_topics: bool = True
    topics: tuple[str, ...] = ()
    source: str = "cli"


def insert_subscriber(
    store: Store,
    new: NewSubscriber,
    *,
    event: str = "subscribed",
    detail: str | None = None,
    ip: str | None = None,
    consent_version: str | None = None,
    lift_suppression: bool = False,
) -> SubscriberView:
    """Add a person (and their first consent event); lift their suppression if asked.

    :class:`SubscriberExistsError` if the address is already in the store.
    """
    _check_source(new.source)
    now = utcnow()
    try:
        with store.transaction() as s:
            existing = s.scalar(select(Subscriber.status).where(Subscriber.email == new.email))
            if existing is not None:
                raise SubscriberExistsError(f"{new.email} is already in the store ({existing})")
            if lift_suppression:
                s.execute(
                    delete(Suppression).where(
                        Suppression.email_hash == email_hash(store, s, new.email)
                    )
                )
            slugs = () if new.all_topics else new.topics
            sub = Subscriber(
                email=new.email,
                name=new.name,
                status=new.status,
                all_topics=new.all_topics,
                source=new.source,
                created_at=now,
                confirmed_at=None if new.status == "pending" else now,
                topics=[SubscriberTopic(topic_slug=slug) for slug in slugs],
            )
            s.add(sub)
            s.flush()
            _log(
                s,
                sub.id,
                event,
                new.source,
                ip=ip,
                consent_version=consent_version,
                detail=detail,
            )
            return _view(sub, slugs)
    except IntegrityError:
        # Added by someone else between the check and the insert.
        raise SubscriberExistsError(f"{new.email} is already in the store") from None


def find_subscriber(store: Store, email: str) -> SubscriberView | None:
    """One subscriber by address, or None."""
    with store.transaction() as s:
        sub = s.scalar(select(Subscriber).where(Subscriber.email == lookup_key(email)))
        return _view(sub) if sub is not None else None


def get_subscriber(store: Store, email: str, history: bool = False) -> SubscriberView:
    """One subscriber by address; with ``history`` their consent log, oldest first."""
    with store.transaction() as s:
        sub = _get(s, email, lock=False)
        events: tuple[ConsentEvent, ...] = ()
        if history:
            events = tuple(
                _event_view(r)
                for r in s.scalars(
                    select(ConsentRecord)
                    .where(ConsentRecord.subscriber_id == sub.id)
                    .order_by(ConsentRecord.at, ConsentRecord.id)
                )
            )
        return _view(sub, events=events)


def get_subscriber_by_id(store: Store, subscriber_id: int) -> SubscriberView:
    """One subscriber by their id (the payload of the signed links in emails)."""
    with store.transaction() as s:
        sub = s.get(Subscriber, subscriber_id)
        if sub is None:
            raise SubscriberNotFoundError(f"subscriber #{subscriber_id}")
        return _view(sub)


def _filtered(stmt: Select[Any], flt: SubscriberFilter) -> Select[Any]:
    if flt.status:
        if flt.status not in STATUSES:
            raise StoreError(
                f"unknown status {flt.status!r}", hint="one of: " + ", ".join(STATUSES)
            )
        stmt = stmt.where(Subscriber.status == flt.status)
    if flt.topic:
        chose = exists().where(
            SubscriberTopic.subscriber_id == Subscriber.id, SubscriberTopic.topic_slug == flt.topic
        )
        stmt = stmt.where(Subscriber.all_topics | chose)
    if flt.created_since is not None:
        stmt = stmt.where(Subscriber.created_at >= flt.created_since)
    if flt.search and flt.search.strip():
        term = flt.search.strip().lower()
        pattern = "%" + term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        stmt = stmt.where(
            Subscriber.email.like(pattern, escape="\\")
            | func.lower(Subscriber.name).like(pattern, escape="\\")
        )
    return stmt


def list_subscribers(
    store: Store,
    flt: SubscriberFilter | None = None,
    page: int = 1,
    page_size: int = 50,
) -> SubscriberPage:
    """One page of subscribers in address order, and how many match in all.

    ``flt.topic`` is a topic slug; it matches people who chose it and all-topics
    subscribers.
    """
    flt = flt or SubscriberFilter()
    if page < 1 or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise StoreError(
            f"page {page} of size {page_size} is not possible",
            hint=f"pages start at 1; a page holds 1 to {MAX_PAGE_SIZE} subscribers",
        )
    with store.transaction() as s:
        total = s.scalar(_filtered(select(func.count(Subscriber.id)), flt)) or 0
        rows = list(
            s.scalars(
                _filtered(select(Subscriber), flt)
                .order_by(Subscriber.email)
                .offset((page - 1) * page_size)
                .limit(page_size)
            )
        )
        topics = topics_of(s, [r.id for r in rows])
        items = tuple(_view(r, topics[r.id]) for r in rows)
    return SubscriberPage(items, total, page, page_size)


def list_after(
    store: Store, flt: SubscriberFilter | None = None, after_id: int = 0, limit: int = 50
) -> SubscriberSlice:
    """Up to ``limit`` subscribers with an id above ``after_id``, in id order.

    Ids only grow (never reused, see migration 0006), so a row added while a client pages
    through comes after every row it has seen: paging this way shows no row twice and
    skips none that existed when it began.
    """
    flt = flt or SubscriberFilter()
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise StoreError(
            f"a page of {limit} subscribers is not possible",
            hint=f"a page holds 1 to {MAX_PAGE_SIZE} subscribers",
        )
    with store.transaction() as s:
        rows = list(
            s.scalars(
                _filtered(select(Subscriber), flt)
                .where(Subscriber.id > after_id)
                .order_by(Subscriber.id)
                .limit(limit + 1)
            )
        )
        more = len(rows) > limit
        rows = rows[:limit]
        topics = topics_of(s, [r.id for r in rows])
        items = tuple(_view(r, topics[r.id]) for r in rows)
    return SubscriberSlice(items, more)


# --- changes -----------------------------------------------------------------------------

TopicChoice = tuple[bool, list[str]]  # (all topics?, slugs)


def change_topics(
    store: Store,
    email: str,
    compute: Callable[[bool, list[str]], TopicChoice],
    *,
    source: str,
    ip: str | None = None,
) -> SubscriberView:
    """Apply ``compute(all_topics, slugs) -> (all_topics, slugs)`` to one subscriber.

    ``compute`` sees the current choice with the row locked and may raise to refuse; a
    change is logged as ``topics_changed``, no change logs nothing.
    """
    _check_source(source)
    with store.transaction() as s:
        sub = _get(s, email)
        before_all = sub.all_topics
        before = sorted(t.topic_slug for t in sub.topics)
        all_topics, slugs = compute(sub.all_topics, before)
        sub.all_topics = all_topics
        _replace_topics(sub, [] if all_topics else slugs)
        after = [] if all_topics else sorted(set(slugs))
        if (before_all, before) != (all_topics, after):
            _log(
                s,
                sub.id,
                "topics_changed",
                source,
                ip=ip,
                detail=f"{describe_topics(before_all, before)} -> "
                f"{describe_topics(all_topics, after)}",
            )
        s.flush()
        return _view(sub, after)


def rename(
    store: Store, email: str, name: str, *, source: str, ip: str | None = None
) -> SubscriberView:
    """Change a subscriber's name (``name`` already checked); logged as ``renamed``.

    The same name again changes and logs nothing.
    """
    _check_source(source)
    with store.transaction() as s:
        sub = _get(s, email)
        if sub.name != name:
            before = sub.name
            sub.name = name
            _log(s, sub.id, "renamed", source, ip=ip, detail=f"{before!r} -> {name!r}")
            s.flush()
        return _view(sub)


def change_email(
    store: Store, email: str, new_email: str, *, source: str, ip: str | None = None
) -> SubscriberView:
    """Move a subscriber to the address ``new_email`` (already normalised); logged as
    ``email_changed`` with both addresses.

    :class:`SubscriberExistsError` if someone has that address already;
    :class:`SuppressedError` if it is on the suppression list (erased, or reported spam):
    an address nobody may be sent to again cannot be taken over by a rename either.
    """
    _check_source(source)
    try:
        with store.transaction() as s:
            sub = _get(s, email)
            if sub.email == new_email:
                return _view(sub)
            other = s.scalar(select(Subscriber.status).where(Subscriber.email == new_email))
            if other is not None:
                raise SubscriberExistsError(
                    f"{new_email} is already in the store ({other})",
                    hint="one address per person: erase or unsubscribe that entry first, "
                    "or keep the old address",
                )
            row = s.get(Suppression, email_hash(store, s, lookup_key(new_email)))
            if row is not None:
                why = (
                    "reported the newsletter as spam"
                    if row.reason == "complaint"
                    else "was erased at their request"
                )
                raise SuppressedError(
                    f"{new_email} {why} and is on the suppression list",
                    hint="only `newsletter subscribers add --resubscribe` brings it back, "
                    "if its owner asked",
                )
            before = sub.email
            sub.email = new_email
            _log(s, sub.id, "email_changed", source, ip=ip, detail=f"{before} -> {new_email}")
            s.flush()
            return _view(sub)
    except IntegrityError:
        # Taken by someone else between the check and the update.
        raise SubscriberExistsError(f"{new_email} is already in the store") from None


def change_status(
    store: Store,
    email: str,
    decide: Callable[[SubscriberView], StatusChange | None],
    *,
    source: str,
    ip: str | None = None,
    consent_version: str | None = None,
    name: str | None = None,
    topics: TopicChoice | None = None,
) -> tuple[SubscriberView, bool]:
    """Apply the status change ``decide(current)`` returns; (subscriber, changed?).

    ``decide`` is a rule of :mod:`newsletter.rules.statuses`; it sees the subscriber with
    the row locked and may raise to refuse, or return None for "nothing to do". With the
    change, ``name`` (if given) and ``topics`` (if given) are written too. A change that
    stops the person's mail skips their queued deliveries in the same transaction.
    """
    _check_source(source)
    with store.transaction() as s:
        sub = _get(s, email)
        change = decide(_view(sub))
        if change is None:
            return _view(sub), False
        _apply(s, sub, change, utcnow())
        _lift_if_back(store, s, sub)
        if name:
            sub.name = name
        if topics is not None:
            sub.all_topics = topics[0]
            _replace_topics(sub, [] if topics[0] else topics[1])
        _log(
            s,
            sub.id,
            change.event,
            source,
            ip=ip,
            consent_version=consent_version,
            detail=change.detail,
        )
        s.flush()
        return _view(sub), True


def _status_values(
    change: StatusChange, confirmed_at: dt.datetime | None, now: dt.datetime
) -> dict[str, Any]:
    """The subscriber columns ``change`` writes (the one place that says how)."""
    values: dict[str, Any] = {"status": change.status, "paused_until": change.paused_until}
    if change.confirmed or (change.confirmed_if_unset and confirmed_at is None):
        values["confirmed_at"] = now
    if change.left is True:
        values["unsubscribed_at"] = now
    elif change.left is False:
        values["unsubscribed_at"] = None
    return values


def _apply(session: Session, sub: Subscriber, change: StatusChange, now: dt.datetime) -> None:
    """Write what ``change`` says to the locked row (its consent event is the caller's)."""
    for name, value in _status_values(change, sub.confirmed_at, now).items():
        setattr(sub, name, value)
    if change.stop_queued:
        stop_queued(session, sub.id, SKIP_PAUSED if change.status == "paused" else SKIP_LEFT)


def stop_queued(session: Session | Connection, subscriber_id: int, reason: str = SKIP_LEFT) -> None:
    """Skip every delivery of the person that is not on the wire yet, at once.

    Also rows a worker has claimed but not started: the worker's fence
    (:func:`newsletter.store.ledger.begin_messages`) then refuses to start them. Which of
    the two transactions commits first decides; a row already on the wire is waited for
    with :func:`wait_for_wire`.
    """
    session.execute(_STOP_QUEUED, {"b_sid": subscriber_id, "b_reason": reason})


def stop_mail(store: Store, email: str) -> SubscriberView:
    """Skip the person's deliveries that are not on the wire (before an erase)."""
    with store.transaction() as s:
        sub = _get(s, email)
        stop_queued(s, sub.id)
        return _view(sub)


# --- unsubscribing ------------------------------------------------------------------------
# Core statements built once, and compiled once per store (store.db.Prepared): the
# one-click unsubscribe runs them hundreds of times a second, and on SQLite the write
# lock is held while they run.

_PEOPLE = cast(Table, Subscriber.__table__)
_TOPICS = cast(Table, SubscriberTopic.__table__)
_DELIVERIES = cast(Table, Delivery.__table__)
_LEASES = cast(Table, WorkerLease.__table__)
_CONSENT = cast(Table, ConsentRecord.__table__)

# What unsubscribe() returns of a person: every field of SubscriberView but the topics
# (read in the same statement, see _person_columns).
_VIEW_COLUMNS = tuple(
    _PEOPLE.c[name]
    for name in (
        "id",
        "email",
        "name",
        "status",
        "all_topics",
        "paused_until",
        "source",
        "created_at",
        "confirmed_at",
        "unsubscribed_at",
    )
)


def _person_columns(dialect: str) -> tuple[Any, ...]:
    """``_VIEW_COLUMNS`` and the person's topic slugs as one JSON array (a subquery), so
    that the row and its topics come back from one statement."""
    as_json = func.json_agg if dialect == "postgresql" else func.json_group_array
    topics = (
        select(as_json(_TOPICS.c.topic_slug))
        .where(_TOPICS.c.subscriber_id == _PEOPLE.c.id)
        .scalar_subquery()
        .label("topics")
    )
    return (*_VIEW_COLUMNS, topics)


# A delivery not on the wire yet: waiting, or claimed by a worker that has not started it.
_NOT_ON_WIRE = or_(
    _DELIVERIES.c.status == "pending",
    and_(_DELIVERIES.c.status == "sending", _DELIVERIES.c.wire_state.is_(None)),
)
_STOP_VALUES: dict[str, Any] = {
    "status": "skipped",
    "skip_reason": bindparam("b_reason"),
    "claimed_by": None,
}
_STOP_QUEUED = (
    _DELIVERIES.update()
    .where(_DELIVERIES.c.subscriber_id == bindparam("b_sid"), _NOT_ON_WIRE)
    .values(_STOP_VALUES)
)


def _on_wire_of(subscriber_id: Any) -> Any:
    """True while a message to the person is on the wire of a live worker (its lease not
    expired at ``b_now``)."""
    return exists().where(
        _DELIVERIES.c.subscriber_id == subscriber_id,
        _DELIVERIES.c.status == "sending",
        _DELIVERIES.c.wire_state == WIRE_STARTED,
        exists().where(
            _LEASES.c.worker == _DELIVERIES.c.claimed_by,
            _LEASES.c.expires_at > bindparam("b_now"),
        ),
    )


_ON_WIRE = select(_on_wire_of(bindparam("b_sid")))


# Who can leave: the statuses for which the rule (rules.statuses.unsubscribe) changes
# something. It asks for nothing but the status, and every status that leaves gets the
# same change (tests/store/test_unsubscribe_transaction.py checks both), so the row's
# UPDATE can decide by itself: no read of the row comes before the write.
LEAVING = tuple(s for s in STATUSES if statuses.unsubscribe(s) is not None)


# The change every leaving status gets, and the subscriber columns it writes.
_LEFT = statuses.unsubscribe(LEAVING[0])
assert _LEFT is not None  # LEAVING holds only statuses that leave
_LEFT_COLUMNS = tuple(_status_values(_LEFT, None, utcnow()))


def _leave(dialect: str, by_id: bool) -> Any:
    key = _PEOPLE.c.id if by_id else _PEOPLE.c.email
    # status IN LEAVING as one comparison per status: plain binds, compiled once (an IN
    # list would be expanded again on every run).
    may_leave = or_(*(_PEOPLE.c.status == s for s in LEAVING))
    columns = _person_columns(dialect)
    if dialect == "sqlite":
        # SQLite: the look at the wire is read with the row. This first write took the
        # database's write lock on the newest snapshot, so until the commit no worker's
        # fence step can change what it reads, and the transaction's own skip of rows
        # not on the wire touches none of the rows it reads: one statement fewer while
        # the lock is held. (SQLite's RETURNING names columns without their table, so
        # the person is named by the key, not by a column deliveries has too.)
        person = (
            bindparam("b_who")
            if by_id
            else select(_PEOPLE.c.id).where(key == bindparam("b_who")).scalar_subquery()
        )
        columns = (*columns, _on_wire_of(person).label("on_wire"))
    return (
        _PEOPLE.update()
        .where(key == bindparam("b_who"), may_leave)
        .values({name: bindparam(f"v_{name}") for name in _LEFT_COLUMNS})
        .returning(*columns)
    )


def _find_person(dialect: str, by_id: bool) -> Select[Any]:
    key = _PEOPLE.c.id if by_id else _PEOPLE.c.email
    return select(*_person_columns(dialect)).where(key == bindparam("b_who"))


_CONSENT_EVENT = _CONSENT.insert().values(
    {
        name: bindparam(f"v_{name}")
        for name in ("subscriber_id", "at", "event", "source", "ip", "consent_version", "detail")
    }
)


def _leave_at_once(dialect: str, by_id: bool) -> Any:
    """PostgreSQL: the UPDATE of ``_leave``, the consent event and the skip of the
    person's rows not on the wire as one statement (data-modifying CTEs): one round trip
    instead of three. The look at the wire stays a statement of its own, after this one,
    so that it reads what a worker's fence step that this one waited for committed
    (every statement of a CTE reads the snapshot taken when it began)."""
    leaving = _leave(dialect, by_id).cte("leaving")
    columns = ("subscriber_id", "at", "event", "source", "ip", "consent_version", "detail")
    consent = _CONSENT.insert().from_select(
        list(columns),
        select(
            leaving.c.id,
            *(
                bindparam(f"v_{name}", type_=_CONSENT.c[name].type)
                for name in columns
                if name != "subscriber_id"
            ),
        ),
    )
    stop = (
        _DELIVERIES.update()
        .where(_DELIVERIES.c.subscriber_id.in_(select(leaving.c.id)), _NOT_ON_WIRE)
        .values(_STOP_VALUES)
    )
    return select(leaving).add_cte(consent.cte("consent"), stop.cte("stopped"))


_STATEMENTS: dict[str, Callable[[str, bool], Any]] = {
    "leave": _leave,
    "leave_at_once": _leave_at_once,
    "find": _find_person,
    "consent": lambda _dialect, _by_id: _CONSENT_EVENT,
    "stop": lambda _dialect, _by_id: _STOP_QUEUED,
    "on_wire": lambda _dialect, _by_id: _ON_WIRE,
}


def _statement(store: Store, name: str, by_id: bool = True) -> Prepared:
    """One of the unsubscribe's statements, compiled once for the store's database."""
    build = _STATEMENTS[name]
    return prepared(store, f"unsubscribe.{name}.{by_id}", lambda: build(store.dialect, by_id))


def unsubscribe(
    store: Store,
    who: int | str,
    *,
    source: str,
    ip: str | None = None,
    detail: str | None = None,
) -> StatusResult:
    """Unsubscribe the person with id ``who`` (a signed link's id) or address ``who``.

    One transaction, in this order: the row's UPDATE, made only where the status may
    leave (:func:`newsletter.rules.statuses.unsubscribe`), locks the row and returns it;
    the consent event; the person's deliveries not on the wire are skipped
    (:func:`stop_queued`); and whether one is on the wire of a live worker is read, under
    the same lock (SQLite's write lock, PostgreSQL's row locks), so a worker's fence step
    commits either before (the row is reported on the wire: wait for it with
    :func:`wait_for_wire`) or after (it finds the row skipped and drops it).

    Nothing to change (already unsubscribed) writes nothing and reports no change;
    :class:`SubscriberNotFoundError` for nobody. The statements are compiled once and
    run as prepared SQL (:class:`~newsletter.store.db.Prepared`), no ORM unit of work:
    on SQLite the write lock is held for a few short statements.
    """
    _check_source(source)
    by_id = isinstance(who, int)
    key = who if by_id else lookup_key(str(who))
    change = statuses.unsubscribe(LEAVING[0], detail)
    assert change is not None  # LEAVING holds only statuses that leave
    at_once = store.dialect == "postgresql"
    leave = _statement(store, "leave_at_once" if at_once else "leave", by_id)
    find = _statement(store, "find", by_id)
    while True:
        with store.writing() as conn:
            now = utcnow()
            values = {f"v_{k}": v for k, v in _status_values(change, None, now).items()}
            event = {
                "v_at": now,
                "v_event": change.event,
                "v_source": source,
                "v_ip": ip,
                "v_consent_version": None,
                "v_detail": change.detail,
            }
            if at_once:
                values.update(event, b_reason=SKIP_LEFT)
            else:
                values["b_now"] = now
            row = leave.row(leave.run(conn, {"b_who": key, **values}))
            if row is None:  # already unsubscribed, or nobody: nothing is written
                row = find.row(find.run(conn, {"b_who": key}))
                if row is None:
                    raise SubscriberNotFoundError(
                        f"subscriber #{who}" if by_id else str(who).strip()
                    )
                if row["status"] in LEAVING:
                    continue  # PostgreSQL: they came back between the two statements
                return StatusResult(_person(row), changed=False, on_wire=False)
            if at_once:  # PostgreSQL: the look at the wire reads what was committed since
                found = _statement(store, "on_wire").run(conn, {"b_sid": row["id"], "b_now": now})
                on_wire = found.scalar()
            else:  # SQLite: read with the row, under the write lock
                on_wire = row.pop("on_wire")
                _statement(store, "consent").run(conn, {"v_subscriber_id": row["id"], **event})
                _statement(store, "stop").run(conn, {"b_sid": row["id"], "b_reason": SKIP_LEFT})
            return StatusResult(_person(row), changed=True, on_wire=bool(on_wire))


def _person(fields: dict[str, Any]) -> SubscriberView:
    """The view of a row of ``_person_columns`` (by column name)."""
    fields = dict(fields)
    topics = fields.pop("topics")
    # psycopg decodes PostgreSQL's json; SQLite's JSON is text. No topics: NULL or "[]".
    slugs = json.loads(topics) if isinstance(topics, str) else topics or []
    return SubscriberView(**fields, topics=tuple(sorted(slugs)))


def wait_for_wire(
    store: Store,
    subscriber_id: int,
    timeout: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Wait until no message to the subscriber is on the wire; False if ``timeout`` passed.

    Only a message a live worker has started is waited for: it is one SMTP transaction
    long. A row left on the wire by a stopped worker (its lease expired) is not: that
    message started before the change, and its row is skipped when it is recovered.
    ``clock`` and ``sleep`` are for tests.
    """
    deadline = clock() + timeout
    while True:
        with store.engine.begin() as conn:
            if not conn.scalar(_ON_WIRE, {"b_sid": subscriber_id, "b_now": utcnow()}):
                return True
        if clock() >= deadline:
            return False
        sleep(0.01)


def erase(store: Store, email: str, *, source: str = "cli") -> Erasure:
    """Delete a person's data and consent history; remember only a salted hash.

    What remains: one ``erased`` consent record without any personal data (it shows that
    an erasure happened and when) and the hash on the suppression list, so that a later
    import does not silently add the person back.

    On SQLite the deleted rows are overwritten with zeros (``secure_delete``) and the
    write-ahead log, which still holds old copies of them, is checkpointed and truncated
    (:func:`~newsletter.store.db.checkpoint`); the result says whether that succeeded. On
    PostgreSQL the rows are deleted; their space is reclaimed by (auto)vacuum.
    """
    _check_source(source)
    with store.transaction() as s:
        sub = _get(s, email)
        address = sub.email
        suppress(s, store, sub.email, "erased", utcnow())
        s.execute(delete(ConsentRecord).where(ConsentRecord.subscriber_id == sub.id))
        s.execute(delete(SubscriberTopic).where(SubscriberTopic.subscriber_id == sub.id))
        s.execute(delete(Subscriber).where(Subscriber.id == sub.id))
        s.execute(delete(SignupRequest).where(SignupRequest.email == sub.email))
        _log(s, None, "erased", source, detail="personal data erased on request")
    return Erasure(address, log_cleared=checkpoint(store))


# --- counts ------------------------------------------------------------------------------


def topic_counts(store: Store, today: dt.date | None = None) -> TopicCounts:
    """Receiving subscribers per topic slug (explicit choices) and the all-topics count."""
    today = today or dt.date.today()
    receiving = receiving_condition(today)
    with store.transaction() as s:
        by_topic = dict(
            s.execute(
                select(SubscriberTopic.topic_slug, func.count())
                .join(Subscriber, Subscriber.id == SubscriberTopic.subscriber_id)
                .where(receiving, Subscriber.all_topics.is_(False))
                .group_by(SubscriberTopic.topic_slug)
            ).all()
        )
        all_topics = (
            s.scalar(
                select(func.count()).select_from(Subscriber).where(receiving, Subscriber.all_topics)
            )
            or 0
        )
    return TopicCounts(by_topic={k: int(v) for k, v in by_topic.items()}, all_topics=all_topics)


def stats(store: Store, today: dt.date | None = None) -> Stats:
    """Counts by status, and among receiving subscribers by topic."""
    today = today or dt.date.today()
    with store.transaction() as s:
        by_status = {status: 0 for status in STATUSES}
        for status, n in s.execute(
            select(Subscriber.status, func.count()).group_by(Subscriber.status)
        ):
            by_status[status] = int(n)
        receiving = (
            s.scalar(select(func.count()).select_from(Subscriber).where(receiving_condition(today)))
            or 0
        )
    counts = topic_counts(store, today)
    return Stats(
        total=sum(by_status.values()),
        by_status=by_status,
        receiving=receiving,
        all_topics=counts.all_topics,
        by_topic=counts.by_topic,
    )


def issue_stats(
    store: Store,
    month: str,
    titles: Sequence[str],
    summary_topics: Sequence[frozenset[str]],
    today: dt.date | None = None,
) -> IssueStats:
    """How many receiving subscribers would get 0, 1, 2, ... of an issue's summaries.

    A summary goes to a subscriber who takes every topic, or who chose at least one of
    the summary's topics. Counted in SQL, one row per subscriber, never loaded into Python.
    """
    today = today or dt.date.today()
    matches = []
    for slugs in summary_topics:
        chose = exists().where(
            SubscriberTopic.subscriber_id == Subscriber.id,
            SubscriberTopic.topic_slug.in_(sorted(slugs)),
        )
        matches.append(case((Subscriber.all_topics | chose, 1), else_=0))
    per_row = sum(matches, literal(0)).label("n") if matches else literal(0).label("n")
    columns = [per_row, *(m.label(f"s{i}") for i, m in enumerate(matches))]
    inner = select(*columns).where(receiving_condition(today)).subquery()
    with store.transaction() as s:
        histogram = {
            int(n): int(c)
            for n, c in s.execute(
                select(inner.c.n, func.count()).group_by(inner.c.n).order_by(inner.c.n)
            )
        }
        per_summary = (
            tuple(
                int(v or 0)
                for v in s.execute(
                    select(*(func.sum(inner.c[f"s{i}"]) for i in range(len(matches))))
                ).one()
            )
            if matches
            else ()
        )
    for k in range(len(summary_topics) + 1):
        histogram.setdefault(k, 0)
    return IssueStats(
        month=month,
        summaries=tuple(titles),
        receiving=sum(histogram.values()),
        histogram=dict(sorted(histogram.items())),
        per_summary=per_summary,
    )


# --- bulk export and import ---------------------------------------------------------------


def export_batches(store: Store, size: int = CHUNK) -> Iterator[tuple[int, list[SubscriberView]]]:
    """(total, batch) for every subscriber in id order, in one transaction.

    Reads by key range, so memory stays flat on large stores.
    """
    last_id = 0
    with store.transaction() as s:
        total = s.scalar(select(func.count(Subscriber.id))) or 0
        while True:
            subs = list(
                s.scalars(
                    select(Subscriber)
                    .where(Subscriber.id > last_id)
                    .order_by(Subscriber.id)
                    .limit(size)
                )
            )
            if not subs:
                return
            topics = topics_of(s, [sub.id for sub in subs])
            yield total, [_view(sub, topics[sub.id]) for sub in subs]
            last_id = subs[-1].id
            s.expunge_all()  # keep memory flat on large stores
