"""Subscriber operations: one function per administrator action, one transaction each.

Every function takes an open :class:`~newsletter.store.db.Store`, returns plain
dataclasses from :mod:`newsletter.store.views`, and either does all of its change or none
of it. Addresses are looked up by their normalised form (lower case), so callers may pass
them as people type them.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import Select, delete, exists, func, select
from sqlalchemy.orm import Session

from newsletter.store.db import UPGRADE_HINT
from newsletter.store.errors import (
    InvalidEmailError,
    StoreError,
    SubscriberExistsError,
    SubscriberNotFoundError,
    SubscriberStateError,
    SuppressedError,
)
from newsletter.store.models import (
    SOURCES,
    STATUSES,
    ConsentRecord,
    StoreMeta,
    Subscriber,
    SubscriberTopic,
    Suppression,
    receiving_condition,
    utcnow,
)
from newsletter.store.views import (
    ConsentEvent,
    IssueStats,
    Stats,
    SubscriberFilter,
    SubscriberPage,
    SubscriberView,
    TopicCounts,
)

if TYPE_CHECKING:
    from newsletter.content.model import Issue
    from newsletter.store.db import Store

MAX_PAGE_SIZE = 1000
ALL_TOPICS_WORDS = ("all", "*")  # in a topics cell or --topics: every topic


# --- addresses, topics, suppression ------------------------------------------------------


# An unquoted ASCII local part (RFC 5322 dot-atom): the shape of nearly every address.
_DOT_ATOM = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")


def normalise_email(text: str, check_dns: bool = False) -> str:
    """Validate an address with email-validator and return its stored form (lower case).

    The whole address is lower-cased: mail servers treat local parts case-insensitively
    in practice, and two rows for ``Ann@x.org`` and ``ann@x.org`` would mean two emails.
    """
    value = text.strip()
    if not value:
        raise InvalidEmailError("no email address given", hint="write it as name@example.org")
    local, at, domain = value.rpartition("@")
    if not check_dns and at and len(value) <= 254 and len(local) <= 64 and _DOT_ATOM.match(local):
        # Fast path for imports: a plain local part needs no more checking than the
        # pattern, and the (costly, IDNA) domain check is done once per distinct domain.
        checked = _checked_domain(domain)
        if checked is not None:
            return f"{local}@{checked}".lower()
    return _validate(value, check_dns)


@functools.lru_cache(maxsize=4096)
def _checked_domain(domain: str) -> str | None:
    """The normalised domain if email-validator accepts it, else None (full check follows)."""
    try:
        return _validate("postmaster@" + domain, False).partition("@")[2]
    except InvalidEmailError:
        return None


def _validate(value: str, check_dns: bool) -> str:
    try:
        info = validate_email(value, check_deliverability=check_dns)
    except EmailNotValidError as exc:
        raise InvalidEmailError(
            f"{value!r} is not a valid email address: {exc}",
            hint="check for typos, spaces and a missing @ or domain",
        ) from None
    return info.normalized.lower()


def _lookup_key(email: str) -> str:
    """The stored form of an address typed to find someone (no error if it is invalid)."""
    try:
        return normalise_email(email)
    except InvalidEmailError:
        return email.strip().lower()


def resolve_topics(topics: str | Iterable[str]) -> list[str]:
    """Topic slugs from a ``;``-separated text or a list of slugs or names, in order."""
    parts = [topics] if isinstance(topics, str) else list(topics)
    slugs: list[str] = []
    for part in parts:
        for slug in _resolve_text(part):
            if slug not in slugs:
                slugs.append(slug)
    return slugs


@functools.lru_cache(maxsize=1024)
def _resolve_text(text: str) -> tuple[str, ...]:
    # Cached: an import repeats the same few topic cells thousands of times.
    from newsletter.content.taxonomy import load_taxonomy

    taxonomy = load_taxonomy()
    # Strip around each ";" so that error messages quote the topic as typed.
    cleaned = ";".join(p.strip() for p in text.split(";"))
    return tuple(topic.slug for topic in taxonomy.resolve_list(cleaned))


def _resolve_topic(value: str) -> str:
    from newsletter.content.taxonomy import load_taxonomy

    return load_taxonomy().resolve(value).slug


def _salt(store: Store, session: Session) -> Any:
    """A keyed hash object to copy (copying is cheaper than keying for every address)."""
    if "salt" not in store.cache:
        value = session.scalar(select(StoreMeta.value).where(StoreMeta.key == "suppression_salt"))
        if value is None:  # pragma: no cover - the first migration writes it
            raise StoreError("the store has no suppression salt", hint=UPGRADE_HINT)
        store.cache["salt"] = hmac.new(bytes.fromhex(value), digestmod=hashlib.sha256)
    return store.cache["salt"]


def email_hash(store: Store, session: Session, email: str) -> str:
    """The salted hash under which an erased address is remembered."""
    mac = _salt(store, session).copy()
    mac.update(email.encode("utf-8"))
    return mac.hexdigest()


def is_suppressed(store: Store, email: str) -> bool:
    """True if ``email`` was erased (its hash is on the suppression list)."""
    with store.transaction() as s:
        h = email_hash(store, s, _lookup_key(email))
        return s.get(Suppression, h) is not None


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
    stmt = select(Subscriber).where(Subscriber.email == _lookup_key(email))
    if lock and session.get_bind().dialect.name == "postgresql":
        # Two administrators (or the web page) changing one person: the second waits.
        stmt = stmt.with_for_update()
    sub = session.scalar(stmt)
    if sub is None:
        raise SubscriberNotFoundError(email.strip())
    return sub


def _view(sub: Subscriber, topics: Sequence[str] | None = None, events=()) -> SubscriberView:
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


def _replace_topics(session: Session, sub: Subscriber, slugs: Sequence[str]) -> None:
    current = {t.topic_slug for t in sub.topics}
    wanted = set(slugs)
    sub.topics = [t for t in sub.topics if t.topic_slug in wanted] + [
        SubscriberTopic(topic_slug=slug) for slug in sorted(wanted - current)
    ]


def _describe_topics(all_topics: bool, slugs: Iterable[str]) -> str:
    return "all topics" if all_topics else ("; ".join(sorted(slugs)) or "no topics")


# --- adding and reading ------------------------------------------------------------------


def add_subscriber(
    store: Store,
    email: str,
    *,
    name: str = "",
    topics: str | Iterable[str] = (),
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
    _check_source(source)
    address = normalise_email(email, check_dns=check_dns)
    slugs = resolve_topics(topics)
    if all_topics is None:
        all_topics = not slugs
    if all_topics:
        slugs = []
    name = name.strip()
    if len(name) > 200:
        raise StoreError("the name is longer than 200 characters", hint="shorten it")
    now = utcnow()
    status = "pending" if pending else "active"
    with store.transaction() as s:
        existing = s.scalar(select(Subscriber).where(Subscriber.email == address))
        if existing is not None:
            if existing.status == "unsubscribed" and resubscribe:
                existing.status = status
                existing.unsubscribed_at = None
                existing.all_topics = all_topics
                existing.paused_until = None
                if name:
                    existing.name = name
                if not pending:
                    existing.confirmed_at = now
                _replace_topics(s, existing, slugs)
                _log(
                    s,
                    existing.id,
                    "resubscribed",
                    source,
                    ip=ip,
                    consent_version=consent_version,
                    detail=_describe_topics(all_topics, slugs),
                )
                s.flush()
                return _view(existing)
            hint = (
                "pass --resubscribe if they asked to come back"
                if existing.status == "unsubscribed"
                else "change their topics with `newsletter subscribers set-topics`"
            )
            raise SubscriberExistsError(
                f"{address} is already in the store ({existing.status})", hint=hint
            )
        suppression = s.get(Suppression, email_hash(store, s, address))
        if suppression is not None:
            if not resubscribe:
                raise SuppressedError(
                    f"{address} was erased at their request and is on the suppression list",
                    hint="add them only if they asked to come back: pass --resubscribe",
                )
            s.delete(suppression)
        sub = Subscriber(
            email=address,
            name=name,
            status=status,
            all_topics=all_topics,
            source=source,
            created_at=now,
            confirmed_at=None if pending else now,
            topics=[SubscriberTopic(topic_slug=slug) for slug in slugs],
        )
        s.add(sub)
        s.flush()
        _log(
            s,
            sub.id,
            "resubscribed" if suppression is not None else "subscribed",
            source,
            ip=ip,
            consent_version=consent_version,
            detail=_describe_topics(all_topics, slugs) + (" (pending)" if pending else ""),
        )
        return _view(sub, slugs)


def get_subscriber(store: Store, email: str, history: bool = False) -> SubscriberView:
    """One subscriber by address; with ``history`` their consent log, oldest first."""
    with store.transaction() as s:
        sub = _get(s, email, lock=False)
        events = ()
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


def _filtered(stmt: Select, flt: SubscriberFilter) -> Select:
    if flt.status:
        if flt.status not in STATUSES:
            raise StoreError(
                f"unknown status {flt.status!r}", hint="one of: " + ", ".join(STATUSES)
            )
        stmt = stmt.where(Subscriber.status == flt.status)
    if flt.topic:
        slug = _resolve_topic(flt.topic)
        chose = exists().where(
            SubscriberTopic.subscriber_id == Subscriber.id, SubscriberTopic.topic_slug == slug
        )
        stmt = stmt.where(Subscriber.all_topics | chose)
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

    ``flt.topic`` matches people who chose the topic and all-topics subscribers.
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
        topics: dict[int, list[str]] = {r.id: [] for r in rows}
        if rows:
            for sid, slug in s.execute(
                select(SubscriberTopic.subscriber_id, SubscriberTopic.topic_slug).where(
                    SubscriberTopic.subscriber_id.in_(list(topics))
                )
            ):
                topics[sid].append(slug)
        items = tuple(_view(r, topics[r.id]) for r in rows)
    return SubscriberPage(items, total, page, page_size)


# --- changing topics ---------------------------------------------------------------------


def _change_topics(
    store: Store,
    email: str,
    compute,
    source: str,
    ip: str | None,
) -> SubscriberView:
    _check_source(source)
    with store.transaction() as s:
        sub = _get(s, email)
        before_all = sub.all_topics
        before = sorted(t.topic_slug for t in sub.topics)
        all_topics, slugs = compute(sub.all_topics, before)
        sub.all_topics = all_topics
        _replace_topics(s, sub, [] if all_topics else slugs)
        after = [] if all_topics else sorted(set(slugs))
        if (before_all, before) != (all_topics, after):
            _log(
                s,
                sub.id,
                "topics_changed",
                source,
                ip=ip,
                detail=f"{_describe_topics(before_all, before)} -> "
                f"{_describe_topics(all_topics, after)}",
            )
        s.flush()
        return _view(sub, after)


def set_topics(
    store: Store,
    email: str,
    topics: str | Iterable[str] = (),
    *,
    all_topics: bool = False,
    source: str = "cli",
    ip: str | None = None,
) -> SubscriberView:
    """Replace a subscriber's topics (or give them every topic with ``all_topics``)."""
    slugs = resolve_topics(topics)
    if not slugs and not all_topics:
        raise StoreError(
            "no topics given", hint='name topics, e.g. --topics "CBT; Alliance", or --all-topics'
        )
    return _change_topics(store, email, lambda _a, _b: (all_topics, slugs), source, ip)


def add_topics(
    store: Store,
    email: str,
    topics: str | Iterable[str],
    *,
    source: str = "cli",
    ip: str | None = None,
) -> SubscriberView:
    """Add topics to a subscriber's choice (an all-topics subscriber stays all-topics)."""
    slugs = resolve_topics(topics)
    if not slugs:
        raise StoreError("no topics given", hint='e.g. "CBT; Alliance"')
    return _change_topics(store, email, lambda a, before: (a, [*before, *slugs]), source, ip)


def remove_topics(
    store: Store,
    email: str,
    topics: str | Iterable[str],
    *,
    source: str = "cli",
    ip: str | None = None,
) -> SubscriberView:
    """Remove topics from a subscriber's choice."""
    slugs = resolve_topics(topics)
    if not slugs:
        raise StoreError("no topics given", hint='e.g. "CBT; Alliance"')

    def compute(all_topics: bool, before: list[str]) -> tuple[bool, list[str]]:
        if all_topics:
            raise SubscriberStateError(
                f"{email.strip()} gets every topic, so there is nothing to remove",
                hint="choose their topics with `newsletter subscribers set-topics`",
            )
        after = [t for t in before if t not in slugs]
        if not after:
            raise SubscriberStateError(
                "that would leave no topics at all",
                hint="unsubscribe them instead, or use set-topics",
            )
        return False, after

    return _change_topics(store, email, compute, source, ip)


# --- status ------------------------------------------------------------------------------


def confirm(
    store: Store,
    email: str,
    *,
    source: str = "web",
    ip: str | None = None,
    consent_version: str | None = None,
) -> SubscriberView:
    """A pending subscriber confirmed their address: they become active."""
    _check_source(source)
    with store.transaction() as s:
        sub = _get(s, email)
        if sub.status != "pending":
            raise SubscriberStateError(f"{sub.email} is {sub.status}, not pending")
        sub.status = "active"
        sub.confirmed_at = utcnow()
        _log(s, sub.id, "confirmed", source, ip=ip, consent_version=consent_version)
        s.flush()
        return _view(sub)


def pause(
    store: Store,
    email: str,
    until: dt.date | None = None,
    *,
    source: str = "cli",
    ip: str | None = None,
    today: dt.date | None = None,
) -> SubscriberView:
    """Stop sending to an active subscriber until ``until`` (or until resumed)."""
    _check_source(source)
    today = today or dt.date.today()
    if until is not None and until <= today:
        raise StoreError(f"{until} is not in the future", hint="give a later date, YYYY-MM-DD")
    with store.transaction() as s:
        sub = _get(s, email)
        if sub.status not in ("active", "paused"):
            raise SubscriberStateError(
                f"{sub.email} is {sub.status}; only active subscribers can be paused"
            )
        sub.status = "paused"
        sub.paused_until = until
        _log(
            s,
            sub.id,
            "paused",
            source,
            ip=ip,
            detail=f"until {until.isoformat()}" if until else "until resumed",
        )
        s.flush()
        return _view(sub)


def resume(
    store: Store, email: str, *, source: str = "cli", ip: str | None = None
) -> SubscriberView:
    """Start sending again to a paused subscriber."""
    _check_source(source)
    with store.transaction() as s:
        sub = _get(s, email)
        if sub.status != "paused":
            raise SubscriberStateError(
                f"{sub.email} is {sub.status}, not paused",
                hint="an unsubscribed person comes back with `subscribers add --resubscribe`"
                if sub.status == "unsubscribed"
                else None,
            )
        sub.status = "active"
        sub.paused_until = None
        _log(s, sub.id, "resumed", source, ip=ip)
        s.flush()
        return _view(sub)


def unsubscribe(
    store: Store,
    email: str,
    *,
    source: str = "cli",
    ip: str | None = None,
    detail: str | None = None,
    settle: float = 0.0,
) -> tuple[SubscriberView, bool]:
    """Unsubscribe someone; returns the subscriber and whether anything changed.

    Unsubscribing twice is harmless (one-click links get clicked twice). Queued deliveries
    are skipped at once; with ``settle`` > 0, also wait up to that many seconds for a
    message a worker has already claimed for this person to finish, so that nothing at
    all goes out after this returns (RFC 8058 one-click).
    """
    _check_source(source)
    with store.transaction() as s:
        sub = _get(s, email)
        if sub.status == "unsubscribed":
            return _view(sub), False
        sub.status = "unsubscribed"
        sub.unsubscribed_at = utcnow()
        sub.paused_until = None
        _log(s, sub.id, "unsubscribed", source, ip=ip, detail=detail)
        # Takes effect at once, also for a send in progress: queued rows are skipped now
        # (and a worker re-checks the subscriber when it claims a row).
        _skip_queued(s, sub.id)
        s.flush()
        view = _view(sub)
    if settle > 0:
        _wait_for_in_flight(store, view.id, settle)
    return view, True


def _wait_for_in_flight(store: Store, subscriber_id: int, timeout: float) -> None:
    """Wait until no delivery of the subscriber is being sent (or ``timeout`` passes).

    A row left ``sending`` by a crashed worker outlasts the wait; when it is recovered
    the claim re-checks the subscriber and skips it.
    """
    import time

    from newsletter.store.models import Delivery

    deadline = time.monotonic() + timeout
    query = select(func.count()).where(
        Delivery.subscriber_id == subscriber_id, Delivery.status == "sending"
    )
    while time.monotonic() < deadline:
        with store.transaction() as s:
            if not s.execute(query).scalar_one():
                return
        time.sleep(0.05)


def _skip_queued(session: Session, subscriber_id: int) -> None:
    from sqlalchemy import update

    from newsletter.store.ledger import SKIP_LEFT
    from newsletter.store.models import Delivery

    session.execute(
        update(Delivery)
        .where(Delivery.subscriber_id == subscriber_id, Delivery.status == "pending")
        .values(status="skipped", skip_reason=SKIP_LEFT)
        .execution_options(synchronize_session=False)
    )


def erase(store: Store, email: str, *, source: str = "cli") -> None:
    """Delete a person's data and consent history; remember only a salted hash.

    What remains: one ``erased`` consent record without any personal data (it shows that
    an erasure happened and when) and the hash on the suppression list, so that a later
    import does not silently add the person back.
    """
    _check_source(source)
    with store.transaction() as s:
        sub = _get(s, email)
        h = email_hash(store, s, sub.email)
        if s.get(Suppression, h) is None:
            s.add(Suppression(email_hash=h, created_at=utcnow()))
        s.execute(delete(ConsentRecord).where(ConsentRecord.subscriber_id == sub.id))
        s.execute(delete(SubscriberTopic).where(SubscriberTopic.subscriber_id == sub.id))
        s.execute(delete(Subscriber).where(Subscriber.id == sub.id))
        _log(s, None, "erased", source, detail="personal data erased on request")


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


def issue_stats(store: Store, issue: Issue, today: dt.date | None = None) -> IssueStats:
    """How many receiving subscribers would get 0, 1, 2, ... of the issue's summaries.

    A summary goes to a subscriber who takes every topic, or who chose at least one of
    the summary's topics. Counted in SQL, one row per subscriber, never loaded into Python.
    """
    from sqlalchemy import case, literal

    today = today or dt.date.today()
    matches = []
    for summary in issue.summaries:
        chose = exists().where(
            SubscriberTopic.subscriber_id == Subscriber.id,
            SubscriberTopic.topic_slug.in_(sorted(summary.topic_slugs)),
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
    for k in range(len(issue.summaries) + 1):
        histogram.setdefault(k, 0)
    return IssueStats(
        month=issue.month,
        summaries=tuple(s.title for s in issue.summaries),
        receiving=sum(histogram.values()),
        histogram=dict(sorted(histogram.items())),
        per_summary=per_summary,
    )
