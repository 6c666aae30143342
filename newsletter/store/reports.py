"""What the reports read: people with their consent logs, and readers left without mail.

Persistence only: the figures are worked out by ``services.reports`` with the pure rules
of :mod:`newsletter.rules.history`. Results are plain dataclasses, never ORM rows.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import exists, select

from newsletter.rules.history import LoggedEvent
from newsletter.store.db import Store
from newsletter.store.models import (
    ConsentRecord,
    Delivery,
    Subscriber,
    SubscriberTopic,
    receiving_condition,
)


@dataclass(frozen=True)
class PersonHistory:
    """One person as the reports need them: who they are now and their consent log."""

    id: int
    status: str
    source: str
    created_at: dt.datetime
    all_topics: bool
    topics: frozenset[str]
    events: tuple[LoggedEvent, ...]  # oldest first


def people_histories(store: Store) -> list[PersonHistory]:
    """Every person in the store with their topics and consent log, in id order.

    Erased people are gone (their one remaining log line names nobody), so they are in no
    history. Three reads in one transaction, whatever the number of people.
    """
    with store.transaction() as s:
        people = s.execute(
            select(
                Subscriber.id,
                Subscriber.status,
                Subscriber.source,
                Subscriber.created_at,
                Subscriber.all_topics,
            ).order_by(Subscriber.id)
        ).all()
        topics: dict[int, set[str]] = {}
        for sid, slug in s.execute(
            select(SubscriberTopic.subscriber_id, SubscriberTopic.topic_slug)
        ):
            topics.setdefault(sid, set()).add(slug)
        events: dict[int, list[LoggedEvent]] = {}
        for owner, at, event, detail in s.execute(
            select(
                ConsentRecord.subscriber_id,
                ConsentRecord.at,
                ConsentRecord.event,
                ConsentRecord.detail,
            )
            .where(ConsentRecord.subscriber_id.is_not(None))
            .order_by(ConsentRecord.subscriber_id, ConsentRecord.at, ConsentRecord.id)
        ):
            if owner is not None:
                events.setdefault(owner, []).append(LoggedEvent(at, event, detail))
    return [
        PersonHistory(
            id=sid,
            status=status,
            source=source,
            created_at=created_at,
            all_topics=bool(all_topics),
            topics=frozenset(topics.get(sid, ())),
            events=tuple(events.get(sid, ())),
        )
        for sid, status, source, created_at, all_topics in people
    ]


def without_summaries_since(store: Store, since: dt.datetime, today: dt.date) -> list[str]:
    """Addresses of receiving people, on the list since before ``since``, who were sent no
    summary since then (no sent delivery with a summary in it; a teaser has none), sorted."""
    got_one = exists().where(
        Delivery.subscriber_id == Subscriber.id,
        Delivery.status == "sent",
        Delivery.variant_mask > 0,
        Delivery.sent_at >= since,
    )
    with store.transaction() as s:
        return list(
            s.execute(
                select(Subscriber.email)
                .where(receiving_condition(today), Subscriber.created_at <= since, ~got_one)
                .order_by(Subscriber.email)
            ).scalars()
        )
