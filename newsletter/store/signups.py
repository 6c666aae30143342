"""Sign-up requests: what the sign-up form received, until the address's owner confirms.

Persistence only. A request never touches ``subscribers``: :func:`apply_request` is the
one place a request reaches a person, in one transaction with the request and the person
locked, after the owner followed the link. What the confirmation does to the person is
decided by the rule passed in (:func:`newsletter.rules.statuses.confirm_signup`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import delete, select

from newsletter.rules.statuses import StatusChange
from newsletter.store.db import Store, rowcount
from newsletter.store.models import SignupRequest, Subscriber, SubscriberTopic, Suppression
from newsletter.store.subscribers import (
    _apply,
    _log,
    _replace_topics,
    _view,
    describe_topics,
    email_hash,
)
from newsletter.store.views import SignupRequestView, SubscriberView


def _request_view(r: SignupRequest) -> SignupRequestView:
    return SignupRequestView(
        id=r.id,
        email=r.email,
        name=r.name,
        all_topics=r.all_topics,
        topics=tuple(sorted(r.topics.split())),
        ip=r.ip,
        consent_version=r.consent_version,
        created_at=r.created_at,
        expires_at=r.expires_at,
    )


def add_request(
    store: Store,
    email: str,
    *,
    name: str,
    all_topics: bool,
    topics: Sequence[str],
    ip: str | None,
    consent_version: str | None,
    now: dt.datetime,
    expires_at: dt.datetime,
) -> SignupRequestView:
    """Keep a sign-up request (address in its stored form, topics as slugs)."""
    with store.transaction() as s:
        row = SignupRequest(
            email=email,
            name=name,
            all_topics=all_topics,
            topics="" if all_topics else " ".join(sorted(set(topics))),
            ip=ip,
            consent_version=consent_version,
            created_at=now,
            expires_at=expires_at,
        )
        s.add(row)
        s.flush()
        return _request_view(row)


def purge_expired(store: Store, now: dt.datetime) -> int:
    """Delete the requests that expired; how many there were."""
    with store.transaction() as s:
        return rowcount(s.execute(delete(SignupRequest).where(SignupRequest.expires_at <= now)))


def get_request(store: Store, request_id: int, now: dt.datetime) -> SignupRequestView | None:
    """A request that has not expired, or None (unknown, used, or expired)."""
    with store.transaction() as s:
        row = s.get(SignupRequest, request_id)
        if row is None or row.expires_at <= now:
            return None
        return _request_view(row)


def requests_for(store: Store, email: str) -> list[SignupRequestView]:
    """The requests kept for one address, oldest first."""
    with store.transaction() as s:
        rows = s.scalars(
            select(SignupRequest).where(SignupRequest.email == email).order_by(SignupRequest.id)
        )
        return [_request_view(r) for r in rows]


@dataclass(frozen=True)
class Applied:
    """What confirming a request did: ``outcome`` is ``added`` (a new person), ``changed``
    (an existing one confirmed or back), ``unchanged`` (already on the list), ``gone``
    (no such request, used or expired) or ``suppressed`` (the address was erased)."""

    outcome: str
    subscriber: SubscriberView | None = None
    request: SignupRequestView | None = None


def apply_request(
    store: Store,
    request_id: int,
    decide: Callable[[str | None, str], StatusChange | None],
    *,
    ip: str | None,
    now: dt.datetime,
) -> Applied:
    """Apply a confirmed request to its person, in one transaction, and delete it.

    ``decide(status, detail)`` (status None: not in the store) is the rule; it may raise
    to refuse (nothing is written then). A new person is added as the change says, with
    two consent events: ``subscribed`` at the time of the request (its IP and consent
    version) and the change's event now (``ip``: the confirming visitor). Someone in the
    store gets the change with the requested name (if any) and topics. Every request for
    the address is deleted with it.
    """
    postgres = store.dialect == "postgresql"
    with store.transaction() as s:
        stmt = select(SignupRequest).where(SignupRequest.id == request_id)
        req = s.scalar(stmt.with_for_update() if postgres else stmt)
        if req is None or req.expires_at <= now:
            return Applied("gone")
        view = _request_view(req)
        slugs = [] if req.all_topics else list(view.topics)
        drop_all = delete(SignupRequest).where(SignupRequest.email == req.email)
        if s.get(Suppression, email_hash(store, s, req.email)) is not None:
            s.execute(drop_all)
            return Applied("suppressed", request=view)
        sub_stmt = select(Subscriber).where(Subscriber.email == req.email)
        sub = s.scalar(sub_stmt.with_for_update() if postgres else sub_stmt)
        topics_text = describe_topics(req.all_topics, slugs)
        detail = (
            f"web sign-up of {req.created_at:%Y-%m-%d %H:%M:%S} UTC "
            f"from {req.ip or 'an unknown address'}: {topics_text}"
        )
        change = decide(sub.status if sub is not None else None, detail)
        if change is None:
            s.execute(drop_all)
            return Applied("unchanged", _view(sub) if sub is not None else None, view)
        if sub is None:
            sub = Subscriber(
                email=req.email,
                name=req.name,
                status="pending",
                all_topics=req.all_topics,
                source="web",
                created_at=now,
                topics=[SubscriberTopic(topic_slug=slug) for slug in slugs],
            )
            s.add(sub)
            s.flush()
            _log(
                s,
                sub.id,
                "subscribed",
                "web",
                ip=req.ip,
                consent_version=req.consent_version,
                detail=f"{topics_text} (web sign-up, confirmed by email)",
                at=req.created_at,
            )
            outcome = "added"
        else:
            if req.name:
                sub.name = req.name
            sub.all_topics = req.all_topics
            _replace_topics(sub, slugs)
            outcome = "changed"
        _apply(s, sub, change, now)
        _log(
            s,
            sub.id,
            change.event,
            "web",
            ip=ip,
            consent_version=req.consent_version,
            detail=change.detail,
            at=now,
        )
        s.execute(drop_all)
        s.flush()
        return Applied(outcome, _view(sub, slugs), view)
