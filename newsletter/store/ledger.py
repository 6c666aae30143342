"""The delivery ledger: one send row per issue, one delivery row per (issue, subscriber).

The ledger is both the queue and the record. Planning is one ``INSERT ... SELECT`` with
``ON CONFLICT DO NOTHING`` on the UNIQUE (send, subscriber) key, so planning twice, or two
scheduler firings, can never queue anyone twice. Workers claim due rows in batches with
one ``UPDATE ... WHERE id IN (SELECT ... LIMIT n [FOR UPDATE SKIP LOCKED]) RETURNING``:
on PostgreSQL any number of workers share a send; on SQLite the statement takes the write
lock at once (busy timeout) so claims never overlap. A row is marked sent only after the
server's 2xx.

Variants are stored as a bit mask over the issue's summaries (bit i = summary i); 0 is the
teaser. The render stage maps masks to its variants.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import (
    and_,
    bindparam,
    case,
    exists,
    func,
    literal,
    or_,
    select,
    update,
)

from newsletter.content.model import Issue
from newsletter.store.db import Store
from newsletter.store.errors import StoreError
from newsletter.store.models import (
    Delivery,
    Send,
    Subscriber,
    SubscriberTopic,
    receiving_condition,
    utcnow,
)

SKIP_NO_MATCH = "no matching topic"
SKIP_PAUSED = "paused"
SKIP_LEFT = "unsubscribed before sending"


class SendNotFoundError(StoreError):
    """No send has been planned for that issue."""


@dataclass(frozen=True)
class PlanReport:
    """What planning did: rows added now and the send's counts after it."""

    send_id: int
    month: str
    added: int
    send_status: str
    counts: dict[str, int]
    variants: dict[int, int]  # variant mask -> pending+sent rows
    skipped: dict[str, int]  # reason -> rows


@dataclass(frozen=True)
class Claimed:
    """One claimed delivery with what the message needs (plain data, no ORM rows)."""

    delivery_id: int
    send_id: int
    month: str
    subscriber_id: int
    email: str
    name: str
    topics: tuple[str, ...]
    all_topics: bool
    variant_mask: int
    attempts: int
    first_attempt_at: dt.datetime


@dataclass(frozen=True)
class Outcome:
    """What happened to one claimed delivery, for :func:`record_outcomes`."""

    delivery_id: int
    status: str  # "sent" | "retry" | "failed" | "release" (put back, not an attempt)
    reply: str = ""
    message_id: str | None = None
    next_attempt_at: dt.datetime | None = None


@dataclass(frozen=True)
class SendStatus:
    """The state of one send: its row and the counts of its deliveries."""

    send_id: int
    month: str
    status: str
    subject: str
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    paused_reason: str | None
    counts: dict[str, int] = field(default_factory=dict)
    retrying: int = 0  # pending rows that were tried before
    variants: dict[int, dict[str, int]] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """Every delivery row of the send."""
        return sum(self.counts.values())

    @property
    def outstanding(self) -> int:
        """Rows still to send (pending or being sent)."""
        return self.counts.get("pending", 0) + self.counts.get("sending", 0)


@dataclass(frozen=True)
class DeliveryRow:
    """One delivery as ``deliveries list`` and ``subscribers show`` print it."""

    month: str
    email: str
    status: str
    variant_mask: int
    attempts: int
    skip_reason: str | None
    last_reply: str | None
    message_id: str | None
    sent_at: dt.datetime | None
    next_attempt_at: dt.datetime | None


def _now() -> dt.datetime:
    # Claims compare with retry times to the microsecond (utcnow() rounds to the second).
    return dt.datetime.now(dt.UTC)


def worker_id() -> str:
    """This process's identity in ``claimed_by``: host and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _insert(store: Store):
    if store.dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


def variant_mask_expression(issue: Issue):
    """SQL expression: the bit mask of the summaries a subscriber's topics call for."""
    full = (1 << len(issue.summaries)) - 1
    parts = []
    for i, summary in enumerate(issue.summaries):
        has = exists().where(
            SubscriberTopic.subscriber_id == Subscriber.id,
            SubscriberTopic.topic_slug.in_(sorted(summary.topic_slugs)),
        )
        parts.append(case((has, 1 << i), else_=0))
    by_topic = parts[0]
    for p in parts[1:]:
        by_topic = by_topic + p
    return case((Subscriber.all_topics.is_(True), full), else_=by_topic)


def _plan_select(issue: Issue, policy: str, today: dt.date, send_id: int):
    """SELECT (send_id, subscriber_id, variant_mask, status, skip_reason, attempts)."""
    full = (1 << len(issue.summaries)) - 1
    mask = variant_mask_expression(issue)
    receiving = receiving_condition(today)
    no_match = and_(mask == 0, literal(policy) == "skip")
    status = case((~receiving, "skipped"), (no_match, "skipped"), else_="pending")
    reason = case((~receiving, SKIP_PAUSED), (no_match, SKIP_NO_MATCH), else_=None)
    final_mask = case((and_(mask == 0, literal(policy) == "full"), full), else_=mask)
    return select(
        literal(send_id),
        Subscriber.id,
        final_mask.label("variant_mask"),
        status.label("status"),
        reason.label("skip_reason"),
        literal(0),
    ).where(or_(receiving, Subscriber.status == "paused"))


def preview_plan(
    store: Store, issue: Issue, policy: str, today: dt.date | None = None
) -> tuple[dict[int, int], dict[str, int]]:
    """What planning would do, changing nothing: rows per variant mask, skips per reason."""
    rows = _plan_select(issue, policy, today or dt.date.today(), 0).subquery()
    variants: dict[int, int] = {}
    skipped: dict[str, int] = {}
    with store.transaction() as session:
        for mask, st, reason, n in session.execute(
            select(rows.c.variant_mask, rows.c.status, rows.c.skip_reason, func.count()).group_by(
                rows.c.variant_mask, rows.c.status, rows.c.skip_reason
            )
        ):
            if st == "skipped":
                skipped[reason] = skipped.get(reason, 0) + n
            else:
                variants[mask] = variants.get(mask, 0) + n
    return variants, skipped


def plan_send(
    store: Store,
    issue: Issue,
    policy: str,
    today: dt.date | None = None,
) -> PlanReport:
    """Create the send of ``issue`` (if new) and a delivery row for every subscriber.

    Idempotent: subscribers who already have a row keep it; people who joined since are
    added while the send is not finished. Active subscribers whose topics meet none of the
    summaries get ``policy``: ``skip`` (a skipped row saying why), ``full`` (every summary)
    or ``teaser`` (mask 0). Paused subscribers get a skipped row.
    """
    today = today or dt.date.today()
    now = utcnow()
    insert = _insert(store)
    with store.transaction() as session:
        send = session.execute(
            select(Send).where(Send.issue_month == issue.month).with_for_update()
        ).scalar_one_or_none()
        if send is None:
            session.execute(
                insert(Send)
                .values(
                    issue_month=issue.month,
                    status="planned",
                    subject=issue.effective_subject[:300],
                    summaries=len(issue.summaries),
                    created_at=now,
                )
                .on_conflict_do_nothing(index_elements=["issue_month"])
            )
            send = session.execute(select(Send).where(Send.issue_month == issue.month)).scalar_one()
        if send.summaries != len(issue.summaries):
            raise StoreError(
                f"the send of {issue.month} was planned with {send.summaries} summaries; the "
                f"issue file now has {len(issue.summaries)}",
                hint="a planned issue's summaries cannot change; cancel the send first",
            )
        added = 0
        if send.status not in ("done", "cancelled"):
            rows = _plan_select(issue, policy, today, send.id)
            stmt = (
                insert(Delivery)
                .from_select(
                    [
                        "send_id",
                        "subscriber_id",
                        "variant_mask",
                        "status",
                        "skip_reason",
                        "attempts",
                    ],
                    rows,
                )
                .on_conflict_do_nothing(index_elements=["send_id", "subscriber_id"])
            )
            # rowcount of INSERT ... SELECT is not reliable on every driver: count instead.
            count = select(func.count()).where(Delivery.send_id == send.id)
            before = session.execute(count).scalar_one()
            session.execute(stmt)
            added = session.execute(count).scalar_one() - before
    status = send_status(store, issue.month)
    return PlanReport(
        send_id=status.send_id,
        month=issue.month,
        added=added,
        send_status=status.status,
        counts=status.counts,
        variants={
            m: c.get("pending", 0) + c.get("sending", 0) + c.get("sent", 0)
            for m, c in status.variants.items()
        },
        skipped=status.skipped,
    )


def find_send(store: Store, month: str) -> int | None:
    """The id of the send of ``month``, or None if it was never planned."""
    with store.transaction() as session:
        return session.execute(select(Send.id).where(Send.issue_month == month)).scalar()


def send_status(store: Store, month: str) -> SendStatus:
    """The send of ``month`` with counts by status, variant and skip reason."""
    with store.transaction() as session:
        send = session.execute(select(Send).where(Send.issue_month == month)).scalar_one_or_none()
        if send is None:
            raise SendNotFoundError(
                f"{month} has not been sent or planned",
                hint=f"plan and send it with `newsletter send {month}`",
            )
        counts: dict[str, int] = {}
        variants: dict[int, dict[str, int]] = {}
        for st, mask, n in session.execute(
            select(Delivery.status, Delivery.variant_mask, func.count())
            .where(Delivery.send_id == send.id)
            .group_by(Delivery.status, Delivery.variant_mask)
        ):
            counts[st] = counts.get(st, 0) + n
            if st != "skipped":
                variants.setdefault(mask, {})[st] = n
        skipped = dict(
            session.execute(
                select(Delivery.skip_reason, func.count())
                .where(Delivery.send_id == send.id, Delivery.status == "skipped")
                .group_by(Delivery.skip_reason)
            ).all()
        )
        retrying = session.execute(
            select(func.count()).where(
                Delivery.send_id == send.id,
                Delivery.status == "pending",
                Delivery.attempts > 0,
            )
        ).scalar_one()
        return SendStatus(
            send_id=send.id,
            month=send.issue_month,
            status=send.status,
            subject=send.subject,
            created_at=send.created_at,
            started_at=send.started_at,
            finished_at=send.finished_at,
            paused_reason=send.paused_reason,
            counts=counts,
            retrying=retrying,
            variants=variants,
            skipped={k or "": v for k, v in skipped.items()},
        )


def list_sends(store: Store) -> list[SendStatus]:
    """Every send, newest month first."""
    with store.transaction() as session:
        months = session.execute(select(Send.issue_month).order_by(Send.issue_month.desc()))
        months = [m for (m,) in months]
    return [send_status(store, m) for m in months]


def claim_batch(
    store: Store,
    limit: int,
    now: dt.datetime | None = None,
    claimer: str | None = None,
    months: Sequence[str] | None = None,
) -> list[Claimed]:
    """Claim up to ``limit`` due pending deliveries of running sends for this worker.

    In the same transaction, rows whose subscriber no longer receives (unsubscribed,
    paused or erased since planning) are marked skipped instead of claimed.
    """
    now = now or _now()
    claimer = claimer or worker_id()
    # A send paused by an SMTP outage is picked up again by any worker (it pauses it
    # again if the server is still down).
    running = select(Send.id).where(Send.status.in_(("planned", "sending", "paused")))
    if months:
        running = running.where(Send.issue_month.in_(list(months)))
    due = (
        select(Delivery.id)
        .where(
            Delivery.status == "pending",
            Delivery.send_id.in_(running),
            or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now),
        )
        .order_by(Delivery.id)
        .limit(limit)
    )
    if store.dialect == "postgresql":
        due = due.with_for_update(skip_locked=True)
    stmt = (
        update(Delivery)
        .where(Delivery.id.in_(due.scalar_subquery()))
        .values(
            status="sending",
            claimed_at=now,
            claimed_by=claimer,
            first_attempt_at=func.coalesce(Delivery.first_attempt_at, now),
        )
        .returning(Delivery.id)
        .execution_options(synchronize_session=False)
    )
    with store.transaction() as session:
        ids = [i for (i,) in session.execute(stmt)]
        if not ids:
            return []
        rows = session.execute(
            select(
                Delivery.id,
                Delivery.send_id,
                Send.issue_month,
                Subscriber.id,
                Subscriber.email,
                Subscriber.name,
                Subscriber.all_topics,
                Subscriber.status,
                Subscriber.paused_until,
                Delivery.variant_mask,
                Delivery.attempts,
                Delivery.first_attempt_at,
            )
            .join(Send, Send.id == Delivery.send_id)
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .where(Delivery.id.in_(ids))
            .order_by(Delivery.id)
        ).all()
        today = now.date()
        keep, gone = [], []
        for r in rows:
            receiving = r.status == "active" or (
                r.status == "paused" and r.paused_until is not None and r.paused_until <= today
            )
            (keep if receiving else gone).append(r)
        # Rows whose subscriber was erased vanish with it (cascade); the rest are skipped.
        if gone:
            session.execute(
                update(Delivery)
                .where(Delivery.id.in_([r.id for r in gone]))
                .values(status="skipped", skip_reason=SKIP_LEFT, claimed_by=None)
                .execution_options(synchronize_session=False)
            )
        topics: dict[int, list[str]] = {}
        sub_ids = [r[3] for r in keep]
        if sub_ids:
            for sid, slug in session.execute(
                select(SubscriberTopic.subscriber_id, SubscriberTopic.topic_slug).where(
                    SubscriberTopic.subscriber_id.in_(sub_ids)
                )
            ):
                topics.setdefault(sid, []).append(slug)
        send_ids = {r.send_id for r in keep}
        if send_ids:
            session.execute(
                update(Send)
                .where(Send.id.in_(send_ids), Send.status.in_(("planned", "paused")))
                .values(
                    status="sending",
                    started_at=func.coalesce(Send.started_at, now),
                    paused_reason=None,
                )
                .execution_options(synchronize_session=False)
            )
    return [
        Claimed(
            delivery_id=r[0],
            send_id=r[1],
            month=r[2],
            subscriber_id=r[3],
            email=r[4],
            name=r[5] or "",
            topics=tuple(sorted(topics.get(r[3], ()))),
            all_topics=bool(r[6]),
            variant_mask=r[9],
            attempts=r[10] + 1,
            first_attempt_at=r[11] or now,
        )
        for r in keep
    ]


def record_outcomes(store: Store, outcomes: Iterable[Outcome], now: dt.datetime | None = None):
    """Write what happened to claimed deliveries, all in one transaction."""
    now = now or _now()
    by_status: dict[str, list[dict]] = {}
    for o in outcomes:
        by_status.setdefault(o.status, []).append(
            {
                "b_id": o.delivery_id,
                "b_reply": (o.reply or "")[:1000],
                "b_mid": o.message_id,
                "b_next": o.next_attempt_at,
            }
        )
    if not by_status:
        return
    d = Delivery.__table__
    tried = {  # an attempt was made: count it, keep the reply and the Message-ID
        "attempts": d.c.attempts + 1,
        "last_reply": bindparam("b_reply"),
        "message_id": bindparam("b_mid"),
        "claimed_by": None,
    }
    values = {
        "sent": {**tried, "status": "sent", "sent_at": now},
        "retry": {**tried, "status": "pending", "next_attempt_at": bindparam("b_next")},
        "failed": {**tried, "status": "failed"},
        "release": {"status": "pending", "claimed_by": None},  # not sent: not an attempt
    }
    with store.transaction() as session:
        conn = session.connection()
        for status, rows in by_status.items():
            stmt = d.update().where(d.c.id == bindparam("b_id"))
            if status == "release":
                stmt = stmt.where(d.c.status == "sending")
            conn.execute(stmt.values(**values[status]), rows)


def finish_sends(store: Store, now: dt.datetime | None = None) -> list[str]:
    """Mark running sends with nothing left to send as done; returns their months."""
    now = now or _now()
    outstanding = exists().where(
        Delivery.send_id == Send.id, Delivery.status.in_(("pending", "sending"))
    )
    with store.transaction() as session:
        months = [
            m
            for (m,) in session.execute(
                select(Send.issue_month).where(
                    Send.status.in_(("planned", "sending", "paused")), ~outstanding
                )
            )
        ]
        if months:
            session.execute(
                update(Send)
                .where(Send.issue_month.in_(months))
                .values(status="done", finished_at=now, paused_reason=None)
                .execution_options(synchronize_session=False)
            )
    return months


def set_send_paused(store: Store, paused: bool, reason: str | None = None) -> None:
    """Mark every running send paused (server down) or running again."""
    with store.transaction() as session:
        if paused:
            session.execute(
                update(Send)
                .where(Send.status.in_(("planned", "sending")))
                .values(status="paused", paused_reason=reason)
                .execution_options(synchronize_session=False)
            )
        else:
            session.execute(
                update(Send)
                .where(Send.status == "paused")
                .values(status="sending", paused_reason=None)
                .execution_options(synchronize_session=False)
            )


def release_stale(
    store: Store,
    older_than: dt.timedelta,
    now: dt.datetime | None = None,
    dead_claimers: Sequence[str] = (),
) -> int:
    """Put ``sending`` rows of crashed workers back to pending; returns how many.

    A row is stale when its claim is older than ``older_than`` or its claimer is known to
    be dead. Such a message may have reached the server before the crash: at most the
    messages in flight are sent twice (with the same Message-ID).
    """
    now = now or _now()
    cond = Delivery.claimed_at < now - older_than
    if dead_claimers:
        cond = or_(cond, Delivery.claimed_by.in_(list(dead_claimers)))
    with store.transaction() as session:
        result = session.execute(
            update(Delivery)
            .where(Delivery.status == "sending", cond)
            .values(status="pending", claimed_by=None)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount or 0


def local_claimers(store: Store) -> list[str]:
    """The claimers of ``sending`` rows that ran on this host."""
    host = socket.gethostname() + ":"
    with store.transaction() as session:
        return [
            c
            for (c,) in session.execute(
                select(Delivery.claimed_by)
                .where(Delivery.status == "sending", Delivery.claimed_by.is_not(None))
                .distinct()
            )
            if c.startswith(host)
        ]


def retry_failed(store: Store, month: str) -> int:
    """Put the failed deliveries of ``month`` back to pending (on request); how many."""
    status = send_status(store, month)
    with store.transaction() as session:
        n = (
            session.execute(
                update(Delivery)
                .where(Delivery.send_id == status.send_id, Delivery.status == "failed")
                .values(status="pending", next_attempt_at=None, first_attempt_at=None)
                .execution_options(synchronize_session=False)
            ).rowcount
            or 0
        )
        if n:
            session.execute(
                update(Send)
                .where(Send.id == status.send_id, Send.status == "done")
                .values(status="sending", finished_at=None)
                .execution_options(synchronize_session=False)
            )
    return n


def list_deliveries(
    store: Store,
    month: str | None = None,
    status: str | None = None,
    email: str | None = None,
    limit: int = 1000,
) -> list[DeliveryRow]:
    """Deliveries of one send (or of one subscriber), newest send first."""
    stmt = (
        select(
            Send.issue_month,
            Subscriber.email,
            Delivery.status,
            Delivery.variant_mask,
            Delivery.attempts,
            Delivery.skip_reason,
            Delivery.last_reply,
            Delivery.message_id,
            Delivery.sent_at,
            Delivery.next_attempt_at,
        )
        .join(Send, Send.id == Delivery.send_id)
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .order_by(Send.issue_month.desc(), Delivery.id)
        .limit(limit)
    )
    if month:
        stmt = stmt.where(Send.issue_month == month)
    if status:
        stmt = stmt.where(Delivery.status == status)
    if email:
        stmt = stmt.where(Subscriber.email == email.strip().lower())
    with store.transaction() as session:
        return [DeliveryRow(*r) for r in session.execute(stmt)]


def skip_pending_for(store: Store, subscriber_id: int, reason: str = SKIP_LEFT) -> int:
    """Skip every pending delivery of one subscriber (used when they leave)."""
    with store.transaction() as session:
        return (
            session.execute(
                update(Delivery)
                .where(Delivery.subscriber_id == subscriber_id, Delivery.status == "pending")
                .values(status="skipped", skip_reason=reason)
                .execution_options(synchronize_session=False)
            ).rowcount
            or 0
        )
