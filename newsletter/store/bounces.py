"""Bounces in the store: each refusal kept with its evidence, and the status it leads to.

:func:`record_bounces` runs inside the transaction that writes a send's outcomes, so a
hard bounce and the ``bounced`` status (with its consent event) are written together
with the failed delivery. The policy (what is hard, the soft score) is
:mod:`newsletter.rules.bounces`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.rules import statuses
from newsletter.rules.addresses import lookup_key
from newsletter.rules.bounces import (
    COMPLAINT,
    HARD,
    SOFT,
    BouncePolicy,
    describe,
    enhanced_status,
)
from newsletter.store.db import Store
from newsletter.store.models import Bounce, Delivery, Send, Subscriber
from newsletter.store.subscribers import _apply, _log, suppress


@dataclass(frozen=True)
class NewBounce:
    """A bounce to record: the delivery it was about and what the server said."""

    delivery_id: int
    kind: str
    code: int | None
    reply: str
    message_id: str | None = None
    source: str = "smtp"


@dataclass(frozen=True)
class BounceRow:
    """One recorded bounce, for lists (plain data)."""

    at: dt.datetime
    email: str
    kind: str
    code: int | None
    status: str | None
    diagnostic: str
    month: str | None
    message_id: str | None
    source: str


def record_bounces(
    session: Session,
    bounces: Sequence[NewBounce],
    policy: BouncePolicy,
    now: dt.datetime,
    report_id: str | None = None,
) -> list[str]:
    """Keep ``bounces`` and stop the mail of the people they are about; their addresses.

    A hard bounce marks the person ``bounced`` at once, a soft one when their soft
    bounces in the window reach the threshold; a complaint unsubscribes them. Each status
    change is a consent event (source ``delivery``) whose detail is the evidence: kind,
    reply and the issue it was about.
    """
    if not bounces:
        return []
    about = {
        d_id: (sub_id, month)
        for d_id, sub_id, month in session.execute(
            select(Delivery.id, Delivery.subscriber_id, Send.issue_month)
            .join(Send, Send.id == Delivery.send_id)
            .where(Delivery.id.in_([b.delivery_id for b in bounces]))
        )
    }
    marked: list[str] = []
    for b in bounces:
        if b.delivery_id not in about:
            continue
        subscriber_id, month = about[b.delivery_id]
        session.add(
            Bounce(
                subscriber_id=subscriber_id,
                delivery_id=b.delivery_id,
                at=now,
                kind=b.kind,
                code=b.code,
                status=enhanced_status(b.reply),
                diagnostic=b.reply[:2000],
                message_id=b.message_id,
                source=b.source,
                report_id=report_id,
            )
        )
        if b.kind not in (HARD, SOFT, COMPLAINT):
            continue
        if b.kind == SOFT:
            session.flush()
            times = session.execute(
                select(Bounce.at).where(Bounce.subscriber_id == subscriber_id, Bounce.kind == SOFT)
            ).scalars()
            if not policy.soft_limit_reached(times, now):
                continue
        sub = session.get(Subscriber, subscriber_id, with_for_update=True)
        if sub is None:
            continue
        detail = describe(b.kind, b.reply, month)
        if b.kind == SOFT:
            detail += f" ({policy.threshold} soft bounces within {policy.window_days} days)"
        change = (
            statuses.unsubscribe(sub.status, detail)
            if b.kind == COMPLAINT
            else statuses.bounced(sub.status, detail)
        )
        if change is None:
            continue
        _apply(session, sub, change, now)
        _log(session, sub.id, change.event, "delivery", detail=change.detail, at=now)
        marked.append(sub.email)
    return marked


@dataclass(frozen=True)
class MailedBounce:
    """A bounce or complaint read from mail, and what identifies its delivery."""

    report_id: str
    kind: str
    code: int | None
    diagnostic: str
    source: str  # mail, imap, webhook:ses, ...
    month: str | None = None  # with subscriber_id: from a verified VERP tag
    subscriber_id: int | None = None
    message_id: str | None = None  # the returned message's Message-ID
    address: str = ""  # the failed address the report names


def record_mailed(
    store: Store, b: MailedBounce, policy: BouncePolicy, now: dt.datetime
) -> tuple[str, str | None]:
    """Record one bounce read from mail, once; (what happened, address marked or None).

    The delivery is found by the verified VERP tag, else by the exact Message-ID the
    store kept for it, else by the failed address of someone who was sent mail. A report
    that proves none of these changes nothing (``unknown``); one recorded before changes
    nothing again (``already``). A complaint unsubscribes the person at once
    (:func:`record_bounces`) and puts the address on the suppression list.
    """
    with store.transaction() as session:
        found = _find_delivery(session, b)
        if found is None:
            return "unknown", None
        delivery_id, subscriber_id = found
        seen = session.execute(
            select(Bounce.id).where(
                Bounce.report_id == b.report_id, Bounce.subscriber_id == subscriber_id
            )
        ).first()
        if seen is not None:
            return "already", None
        new = NewBounce(delivery_id, b.kind, b.code, b.diagnostic, b.message_id, b.source)
        marked = record_bounces(session, [new], policy, now, report_id=b.report_id)
        if b.kind == COMPLAINT:
            # Also when they had left already: the entry outlives an erasure, so no
            # import or web form brings the address back without an administrator.
            sub = session.get(Subscriber, subscriber_id)
            if sub is not None:
                suppress(session, store, sub.email, "complaint", now)
        return "recorded", (marked[0] if marked else None)


def _find_delivery(session: Session, b: MailedBounce) -> tuple[int, int] | None:
    base = select(Delivery.id, Delivery.subscriber_id).join(Send, Send.id == Delivery.send_id)
    if b.month and b.subscriber_id:
        row = session.execute(
            base.where(Send.issue_month == b.month, Delivery.subscriber_id == b.subscriber_id)
        ).first()
        if row is not None:
            return row[0], row[1]
    if b.message_id:
        row = session.execute(base.where(Delivery.message_id == b.message_id)).first()
        if row is not None:
            return row[0], row[1]
    if b.address:
        row = session.execute(
            base.join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .where(
                Subscriber.email == lookup_key(b.address),
                Delivery.status.in_(("sent", "failed")),
            )
            .order_by(Delivery.id.desc())
            .limit(1)
        ).first()
        if row is not None:
            return row[0], row[1]
    return None


def list_bounces(
    store: Store,
    since: dt.datetime | None = None,
    email: str | None = None,
    limit: int = 1000,
) -> list[BounceRow]:
    """Recorded bounces, newest first (of one person with ``email``)."""
    stmt = (
        select(
            Bounce.at,
            Subscriber.email,
            Bounce.kind,
            Bounce.code,
            Bounce.status,
            Bounce.diagnostic,
            Send.issue_month,
            Bounce.message_id,
            Bounce.source,
        )
        .join(Subscriber, Subscriber.id == Bounce.subscriber_id)
        .outerjoin(Delivery, Delivery.id == Bounce.delivery_id)
        .outerjoin(Send, Send.id == Delivery.send_id)
        .order_by(Bounce.at.desc(), Bounce.id.desc())
        .limit(limit)
    )
    if since is not None:
        stmt = stmt.where(Bounce.at >= since)
    if email is not None:
        stmt = stmt.where(Subscriber.email == lookup_key(email))
    with store.transaction() as session:
        return [BounceRow(*row) for row in session.execute(stmt)]


def counts_by_kind(store: Store, send_id: int) -> dict[str, int]:
    """The bounces of one send's deliveries, by kind."""
    with store.transaction() as session:
        return dict(
            session.execute(
                select(Bounce.kind, func.count())
                .join(Delivery, Delivery.id == Bounce.delivery_id)
                .where(Delivery.send_id == send_id)
                .group_by(Bounce.kind)
            ).all()
        )
