"""The delivery ledger: one send row per issue, one delivery row per (issue, subscriber).

The ledger is both the queue and the record. Planning is one ``INSERT ... SELECT`` with
``ON CONFLICT DO NOTHING`` on the UNIQUE (send, subscriber) key, so planning twice, or two
scheduler firings, can never queue anyone twice. Workers claim due rows in batches with
one ``UPDATE ... WHERE id IN (SELECT ... LIMIT n [FOR UPDATE SKIP LOCKED]) RETURNING``:
on PostgreSQL any number of workers share a send; on SQLite the statement takes the write
lock at once (busy timeout) so claims never overlap. A row is marked sent only after the
server's 2xx.

Variants are stored as a bit mask over the issue's summaries (bit i = summary i); 0 is the
teaser (see :class:`newsletter.rules.variants.VariantKey`).

Each send keeps a snapshot of what it sends (``send_variants`` and the send's own columns):
every variant's rendered parts, the header values, each summary's topics and the
no-match policy, per revision. Workers build messages from the snapshot alone, people who
join later are planned from it, and an issue file edited after planning changes nothing
until the send is re-planned (:func:`replan_send`, for the rows not yet sent).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import secrets
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Table,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from newsletter.rules.bounces import HARD, BouncePolicy
from newsletter.rules.statuses import (
    FINISHED_SENDS,
    OUTSTANDING,
    PUBLIC_SENDS,
    RUNNING_SENDS,
    SKIP_CANCELLED,
    SKIP_LEFT,
    SKIP_NO_MATCH,
    SKIP_PAUSED,
    is_finished,
)
from newsletter.rules.variants import VariantKey, choose_variant
from newsletter.store.bounces import NewBounce, record_bounces
from newsletter.store.db import Store, is_transient, retrying, rowcount, store_fault
from newsletter.store.errors import SendFinishedError, SendNotFoundError, StoreError
from newsletter.store.models import (
    WIRE_STARTED,
    Bounce,
    Delivery,
    Send,
    SendVariant,
    Subscriber,
    SubscriberTopic,
    WorkerLease,
    receiving_condition,
    topics_of,
    utcnow,
)
from newsletter.store.views import (
    MessageHeaders,
    PartContent,
    SendSnapshot,
    SummaryInfo,
    VariantContent,
)

SummaryTopics = Sequence[frozenset[str]]
DEFAULT_POLICY = BouncePolicy()


@dataclass(frozen=True)
class NewSnapshot:
    """What planning stores for a revision of a send (see the module docstring)."""

    subject: str
    content_hash: str
    policy: str
    summaries: tuple[SummaryInfo, ...]
    headers: MessageHeaders
    variants: tuple[VariantContent, ...]

    @property
    def summary_topics(self) -> tuple[frozenset[str], ...]:
        """Each summary's topic slugs, in order."""
        return tuple(s.topics for s in self.summaries)


@dataclass(frozen=True)
class SendRow:
    """A send's own row (no counts): which revision of its snapshot is current."""

    send_id: int
    month: str
    status: str
    subject: str
    revision: int
    content_hash: str
    summaries: int
    planning: bool = False  # planned in steps, and not every step is done yet


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
    revision: int
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
    bounce: str | None = None  # a failed row's kind of bounce (rules.bounces), if any
    code: int | None = None  # the server's reply code, with ``bounce``


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
    revision: int = 0
    content_hash: str = ""
    summaries: int = 0
    titles: tuple[str, ...] = ()  # of the planned version's summaries, in order
    counts: dict[str, int] = field(default_factory=dict)
    retrying: int = 0  # pending rows that were tried before
    variants: dict[int, dict[str, int]] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    planning: bool = False  # planned in steps, and not every step is done yet

    @property
    def total(self) -> int:
        """Every delivery row of the send."""
        return sum(self.counts.values())

    @property
    def outstanding(self) -> int:
        """Rows still to send (pending or being sent)."""
        return sum(self.counts.get(s, 0) for s in OUTSTANDING)

    @property
    def sent(self) -> int:
        """Messages the server took."""
        return self.counts.get("sent", 0)

    @property
    def finished(self) -> bool:
        """True when the send is over: the issue was sent already (or cancelled)."""
        return is_finished(self.status)


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
    summaries: int = 0  # how many the issue has: what names the variant

    @property
    def variant(self) -> str | None:
        """The variant's name (``all``, ``s1+s3``, ``teaser``); None for a skipped row."""
        if self.status == "skipped" or not self.summaries:
            return None
        return VariantKey(self.variant_mask, self.summaries).name


def _now() -> dt.datetime:
    # Claims compare with retry times to the microsecond (utcnow() rounds to the second).
    return dt.datetime.now(dt.UTC)


def worker_id() -> str:
    """A new worker's identity in ``claimed_by``: host, pid and a random part (two workers
    of one process, or a pid the system reused, never share a claim)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def claimer_pid(claimer: str, host: str | None = None) -> int | None:
    """The pid in a claimer id made on ``host`` (default: this host); None otherwise."""
    parts = claimer.split(":")
    if len(parts) < 2 or parts[0] != (host or socket.gethostname()) or not parts[1].isdigit():
        return None
    return int(parts[1])


def variant_mask_expression(summary_topics: SummaryTopics) -> ColumnElement[int]:
    """SQL expression: the bit mask of the summaries a subscriber's topics call for.

    The SQL form of :func:`newsletter.rules.variants.matching_mask` (a property test
    checks that the two agree).
    """
    full = (1 << len(summary_topics)) - 1
    parts: list[ColumnElement[int]] = []
    for i, slugs in enumerate(summary_topics):
        has = exists().where(
            SubscriberTopic.subscriber_id == Subscriber.id,
            SubscriberTopic.topic_slug.in_(sorted(slugs)),
        )
        parts.append(case((has, 1 << i), else_=0))
    by_topic = parts[0]
    for p in parts[1:]:
        by_topic = by_topic + p
    return case((Subscriber.all_topics.is_(True), full), else_=by_topic)


def _plan_select(
    summary_topics: SummaryTopics,
    policy: str,
    today: dt.date,
    send_id: int,
    revision: int,
    ids: tuple[int, int | None] = (0, None),
) -> Any:
    """SELECT (send_id, subscriber_id, variant_mask, status, skip_reason, attempts, revision)
    for the subscribers whose id is in ``ids`` (low, exclusive; high, inclusive, or None:
    no end)."""
    full = (1 << len(summary_topics)) - 1
    receiving_now = receiving_condition(today)
    low, high = ids
    in_range = Subscriber.id > low if high is None else Subscriber.id.between(low + 1, high)
    # Each subscriber's mask is worked out once, in a materialised step: used directly in
    # the four columns below, its EXISTS probes ran four times per person (at a million
    # people, most of planning's time).
    people = (
        select(
            Subscriber.id.label("id"),
            variant_mask_expression(summary_topics).label("mask"),
            case((receiving_now, 1), else_=0).label("receiving"),
        )
        .where(or_(receiving_now, Subscriber.status == "paused"), in_range)
        .cte("planned_people")
        .prefix_with("MATERIALIZED")
    )
    mask = people.c.mask
    receiving = people.c.receiving == 1
    no_match = and_(mask == 0, literal(policy) == "skip")
    status = case((~receiving, "skipped"), (no_match, "skipped"), else_="pending")
    reason = case((~receiving, SKIP_PAUSED), (no_match, SKIP_NO_MATCH), else_=None)
    final_mask = case((and_(mask == 0, literal(policy) == "full"), full), else_=mask)
    return select(
        literal(send_id),
        people.c.id,
        final_mask.label("variant_mask"),
        status.label("status"),
        reason.label("skip_reason"),
        literal(0),
        literal(revision),
    ).where(people.c.id > 0)  # SQLite reads INSERT ... SELECT ... ON CONFLICT only with a WHERE


_PLAN_COLUMNS = [
    "send_id",
    "subscriber_id",
    "variant_mask",
    "status",
    "skip_reason",
    "attempts",
    "revision",
]


def preview_plan(
    store: Store, summary_topics: SummaryTopics, policy: str, today: dt.date | None = None
) -> tuple[dict[int, int], dict[str, int]]:
    """What planning would do, changing nothing: rows per variant mask, skips per reason."""
    rows = _plan_select(summary_topics, policy, today or dt.date.today(), 0, 0).subquery()
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


def _part_json(part: PartContent) -> str:
    return json.dumps({"segments": list(part.segments), "names": list(part.names)})


def _part(kind: str, text: str) -> PartContent:
    data = json.loads(text)
    return PartContent(kind, tuple(data["segments"]), tuple(data["names"]))


def _save_snapshot(session: Session, send: Send, revision: int, snapshot: NewSnapshot) -> None:
    """Write one revision of a send's snapshot and make it the send's current one."""
    rows = [
        {
            "send_id": send.id,
            "revision": revision,
            "mask": v.mask,
            "name": v.name,
            "subject": v.subject[:300],
            "web_view_url": v.web_view_url,
            "html": _part_json(v.html),
            "text": _part_json(v.text),
        }
        for v in snapshot.variants
    ]
    if rows:
        session.execute(insert(SendVariant), rows)
    send.revision = revision
    send.subject = snapshot.subject[:300]
    send.summaries = len(snapshot.summary_topics)
    send.content_hash = snapshot.content_hash
    send.policy = snapshot.policy
    send.summaries_info = json.dumps(
        [{"key": s.key, "title": s.title, "topics": sorted(s.topics)} for s in snapshot.summaries]
    )
    send.headers = json.dumps(asdict(snapshot.headers))


def _queue(
    store: Store,
    session: Session,
    send: Send,
    today: dt.date,
    ids: tuple[int, int | None] = (0, None),
) -> int:
    """Add a delivery row for every subscriber (with an id in ``ids``, see
    :func:`_plan_select`) without one; returns how many were added.

    Planned from the send's snapshot (its summaries' topics and policy), never from the
    issue file, so everyone of one send is planned against the same version.
    """
    if send.status in FINISHED_SENDS:
        return 0
    topics = _summary_topics(send)
    if not topics:
        raise StoreError(
            f"the send of {send.issue_month} was planned by an older version of newsletter "
            "and has no snapshot",
            hint=f"run `newsletter send {send.issue_month} --replan` to make one",
        )
    rows = _plan_select(topics, send.policy, today, send.id, send.revision, ids)
    insert_ = store.insert
    stmt = (
        insert_(Delivery)
        .from_select(_PLAN_COLUMNS, rows)
        .on_conflict_do_nothing(index_elements=["send_id", "subscriber_id"])
    )
    # rowcount of INSERT ... SELECT is not reliable on every driver: count instead (in
    # the range only: a step of a large send counts its own rows, not the whole send's).
    low, high = ids
    count = select(func.count()).where(Delivery.send_id == send.id, Delivery.subscriber_id > low)
    if high is not None:
        count = count.where(Delivery.subscriber_id <= high)
    before = session.execute(count).scalar_one()
    session.execute(stmt)
    return int(session.execute(count).scalar_one() - before)


def _summaries(send: Send) -> tuple[SummaryInfo, ...]:
    return tuple(
        SummaryInfo(s["key"], s["title"], frozenset(s["topics"]))
        for s in json.loads(send.summaries_info or "[]")
    )


def _summary_topics(send: Send) -> tuple[frozenset[str], ...]:
    return tuple(s.topics for s in _summaries(send))


#: Planning that adds this many rows refreshes the planner's statistics (PostgreSQL).
ANALYZE_AFTER = 10_000


def plan_send(
    store: Store,
    month: str,
    snapshot: NewSnapshot | None,
    today: dt.date | None = None,
    first_step: int | None = None,
) -> tuple[SendRow, int, bool]:
    """Create the send of ``month`` with ``snapshot`` (if new) and queue every subscriber.

    Returns (the send, rows added now, created now?). Idempotent: subscribers who already
    have a row keep it; people who joined since are added from the send's own snapshot
    while it is not finished. Receiving subscribers whose topics meet none of the
    summaries get the send's policy: ``skip`` (a skipped row saying why), ``full`` (every
    summary) or ``teaser`` (mask 0). Paused subscribers get a skipped row. ``snapshot``
    may be None for a send that exists already (:class:`SendNotFoundError` if it does not).

    ``first_step``: a send created now is planned for its first ``first_step``
    subscribers only (by id), and marked as still planning (:attr:`SendRow.planning`);
    :func:`plan_step` plans the rest, a step at a time, while those first ones are sent.
    A send whose planning was left unfinished (the process stopped) is planned to the
    end here, in steps.
    """
    today = today or dt.date.today()
    insert_ = store.insert
    created = False
    with store.transaction() as session:
        send = session.execute(
            select(Send).where(Send.issue_month == month).with_for_update()
        ).scalar_one_or_none()
        if send is None:
            if snapshot is None:
                raise _not_planned(month)
            result = session.execute(
                insert_(Send)
                .values(
                    issue_month=month,
                    status="planned",
                    subject=snapshot.subject[:300],
                    summaries=len(snapshot.summary_topics),
                    created_at=utcnow(),
                    planned_through=None if first_step is None else 0,
                )
                .on_conflict_do_nothing(index_elements=["issue_month"])
                .returning(Send.id)
            )
            # RETURNING, not rowcount: drivers do not all count rows skipped by ON CONFLICT.
            created = result.scalar() is not None
            send = session.execute(
                select(Send).where(Send.issue_month == month).with_for_update()
            ).scalar_one()
            if created:
                _save_snapshot(session, send, 1, snapshot)
        if send.planned_through is None:
            added = _queue(store, session, send, today)
        else:
            added = 0  # planned in steps below (each its own transaction)
        row = _send_row(send)
    if row.planning:
        if created and first_step is not None:
            added, done = plan_step(store, month, today, first_step)
        else:
            added, done = 0, False
            while not done:
                n, done = plan_step(store, month, today)
                added += n
        row = replace(row, planning=not done)
    if added >= ANALYZE_AFTER and store.dialect == "postgresql":
        _analyze(store)
    return row, added, created


#: How many subscribers one step of planning covers (see :func:`plan_step`). On SQLite a
#: step holds the only write lock: a smaller one keeps workers' commits waiting less.
PLAN_STEP = {"postgresql": 50_000, "sqlite": 20_000}


def plan_step(
    store: Store, month: str, today: dt.date | None = None, size: int | None = None
) -> tuple[int, bool]:
    """Plan the next ``size`` subscribers (by id) of a send that is still planning, in
    one transaction; returns (rows added, planning over?). Safe to run from several
    processes at once: a row is never added twice, and the mark only moves forward."""
    today = today or dt.date.today()
    size = size or PLAN_STEP.get(store.dialect, 20_000)
    try:
        return _plan_step(store, month, today, size)
    except _StepLostError:
        return 0, _planning_over(store, month)


def _plan_step(store: Store, month: str, today: dt.date, size: int) -> tuple[int, bool]:
    with store.transaction() as session:
        send = session.execute(select(Send).where(Send.issue_month == month)).scalar_one_or_none()
        if send is None:
            raise _not_planned(month)
        low = send.planned_through
        if low is None or send.status in FINISHED_SENDS:
            return 0, True
        # The id of the size-th subscriber after the mark (None: the rest, whoever joins
        # meanwhile included).
        high = session.execute(
            select(Subscriber.id)
            .where(Subscriber.id > low)
            .order_by(Subscriber.id)
            .offset(size - 1)
            .limit(1)
        ).scalar()
        added = _queue(store, session, send, today, (low, high))
        # Moves the mark only from where this step found it, and only while the send
        # runs: if another process planned this range first, or the send was cancelled
        # meanwhile, the step's rows go back (the UPDATE reads the latest committed row).
        moved = session.execute(
            update(Send)
            .where(
                Send.id == send.id,
                Send.planned_through == low,
                Send.status.not_in(FINISHED_SENDS),
            )
            .values(planned_through=high)
            .execution_options(synchronize_session=False)
        )
        if rowcount(moved) != 1:
            raise _StepLostError
    return added, high is None


class _StepLostError(Exception):
    """A step of planning found the mark moved or the send over: it rolls back."""


def _planning_over(store: Store, month: str) -> bool:
    with store.transaction() as session:
        send = session.execute(select(Send).where(Send.issue_month == month)).scalar_one()
        return send.planned_through is None or send.status in FINISHED_SENDS


def _analyze(store: Store) -> None:
    # The planner's statistics may still describe the tables before these rows (or
    # before an import): without them it may scan a whole table for each claim
    # (autovacuum may be off, or behind). Each is a sample, a fraction of a second
    # at a million rows.
    with store.transaction() as session:
        session.execute(text("ANALYZE deliveries, subscribers, subscriber_topics"))


def analyze_after_planning(store: Store, added: int) -> None:
    """Refresh PostgreSQL's statistics after planning added ``added`` rows (if many)."""
    if added >= ANALYZE_AFTER and store.dialect == "postgresql":
        _analyze(store)


def replan_send(
    store: Store, month: str, snapshot: NewSnapshot, today: dt.date | None = None
) -> tuple[SendRow, int]:
    """Make ``snapshot`` the send's new revision for every row not yet sent.

    Queued rows get the new revision and the variant the new summaries call for (or a
    "no matching topic" skip); rows skipped for no matching topic are planned again;
    people who joined since are added. Sent, failed and in-flight rows are left alone.
    Returns (the send, rows planned again or added).
    """
    today = today or dt.date.today()
    with store.transaction() as session:
        send = session.execute(
            select(Send).where(Send.issue_month == month).with_for_update()
        ).scalar_one_or_none()
        if send is None:
            raise _not_planned(month)
        if send.status in FINISHED_SENDS:
            raise replan_refused(month, send.status)
        revision = send.revision + 1
        _save_snapshot(session, send, revision, snapshot)
        mine = Delivery.send_id == send.id
        # Never tried: planned afresh below, exactly as a first plan would.
        fresh = and_(mine, Delivery.status == "pending", Delivery.attempts == 0)
        no_match = and_(mine, Delivery.status == "skipped", Delivery.skip_reason == SKIP_NO_MATCH)
        renewed = session.execute(select(func.count()).where(or_(fresh, no_match))).scalar_one()
        session.execute(delete(Delivery).where(or_(fresh, no_match)))
        # Waiting for a retry: keep the row (its attempts and Message-ID), new variant.
        retrying = session.execute(
            select(Delivery.id, Subscriber.id, Subscriber.all_topics)
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .where(mine, Delivery.status == "pending")
        ).all()
        topics = topics_of(session, [r[1] for r in retrying])
        for delivery_id, subscriber_id, all_topics in retrying:
            key = choose_variant(
                snapshot.summary_topics, topics[subscriber_id], all_topics, snapshot.policy
            )
            values: dict[str, Any] = {"revision": revision}
            if key is None:
                values.update(status="skipped", skip_reason=SKIP_NO_MATCH)
            else:
                values["variant_mask"] = key.mask
            session.execute(update(Delivery).where(Delivery.id == delivery_id).values(**values))
        added = _queue(store, session, send, today)
        return _send_row(send), int(added - renewed + len(retrying))


def replan_refused(month: str, status: str) -> StoreError:
    """The error for re-planning a send that is over."""
    return StoreError(
        f"the send of {month} is {status}: there is nothing left to re-plan",
        hint=f"see `newsletter deliveries status {month}`",
    )


def _not_planned(month: str) -> SendNotFoundError:
    return SendNotFoundError(
        f"{month} has not been sent or planned",
        hint=f"plan and send it with `newsletter send {month}`",
    )


def _send_row(send: Send) -> SendRow:
    return SendRow(
        send_id=send.id,
        month=send.issue_month,
        status=send.status,
        subject=send.subject,
        revision=send.revision,
        content_hash=send.content_hash,
        summaries=send.summaries,
        planning=send.planned_through is not None,
    )


def find_send(store: Store, month: str) -> SendRow | None:
    """The send of ``month`` (its own row), or None if it was never planned."""
    with store.transaction() as session:
        send = session.execute(select(Send).where(Send.issue_month == month)).scalar_one_or_none()
        return _send_row(send) if send is not None else None


def load_snapshot(store: Store, send_id: int, revision: int) -> SendSnapshot:
    """One revision of a send's snapshot: what a worker builds the messages from."""
    with store.transaction() as session:
        send = session.get(Send, send_id)
        if send is None:
            raise SendNotFoundError(f"send #{send_id} does not exist")
        rows = session.execute(
            select(SendVariant).where(
                SendVariant.send_id == send_id, SendVariant.revision == revision
            )
        ).scalars()
        variants = {
            r.mask: VariantContent(
                mask=r.mask,
                name=r.name,
                subject=r.subject,
                web_view_url=r.web_view_url,
                html=_part("html", r.html),
                text=_part("text", r.text),
            )
            for r in rows
        }
        if not variants:
            raise StoreError(
                f"the send of {send.issue_month} has no snapshot of revision {revision}",
                hint=f"run `newsletter send {send.issue_month} --replan` to make one",
            )
        return SendSnapshot(
            send_id=send.id,
            month=send.issue_month,
            revision=revision,
            content_hash=send.content_hash,
            policy=send.policy,
            summaries=_summaries(send),
            headers=MessageHeaders(**json.loads(send.headers or "{}")),
            variants=variants,
        )


def send_status(store: Store, month: str) -> SendStatus:
    """The send of ``month`` with counts by status, variant and skip reason."""
    with store.transaction() as session:
        send = session.execute(select(Send).where(Send.issue_month == month)).scalar_one_or_none()
        if send is None:
            raise _not_planned(month)
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
            revision=send.revision,
            content_hash=send.content_hash,
            summaries=send.summaries,
            titles=tuple(x.title for x in _summaries(send)),
            counts=counts,
            retrying=retrying,
            variants=variants,
            skipped={k or "": v for k, v in skipped.items()},
            planning=send.planned_through is not None,
        )


def public_months(store: Store) -> tuple[str, ...]:
    """Months whose send has begun or finished (the archive shows them), newest first.

    Reads only the ``sends`` table, one row a month: its cost does not grow with the
    ledger.
    """
    with store.transaction() as session:
        return tuple(
            session.execute(
                select(Send.issue_month)
                .where(Send.status.in_(PUBLIC_SENDS))
                .order_by(Send.issue_month.desc())
            ).scalars()
        )


def list_sends(store: Store) -> list[SendStatus]:
    """Every send, newest month first."""
    with store.transaction() as session:
        months = list(
            session.execute(select(Send.issue_month).order_by(Send.issue_month.desc())).scalars()
        )
    return [send_status(store, m) for m in months]


def _due(now: dt.datetime, months: Sequence[str] | None = None) -> ColumnElement[bool]:
    """SQL condition: a pending delivery of a running send (of ``months``) due at ``now``."""
    running = select(Send.id).where(Send.status.in_(RUNNING_SENDS))
    if months:
        running = running.where(Send.issue_month.in_(list(months)))
    return and_(
        Delivery.status == "pending",
        Delivery.send_id.in_(running),
        or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now),
    )


def has_due(store: Store, now: dt.datetime | None = None) -> bool:
    """Whether a running send has a pending delivery due at ``now`` (one index probe)."""
    with store.transaction() as session:
        return bool(session.execute(select(exists().where(_due(now or _now())))).scalar())


def claim_batch(
    store: Store,
    limit: int,
    now: dt.datetime | None = None,
    claimer: str | None = None,
    months: Sequence[str] | None = None,
    today: dt.date | None = None,
    after: int = 0,
) -> list[Claimed]:
    """Claim up to ``limit`` due pending deliveries of running sends for this worker.

    Only rows with an id above ``after`` are looked at: a worker passes the highest id
    it claimed last, so each claim starts where the queue's live rows begin instead of
    walking past every row already sent (whose old index entries stay until a vacuum).
    That keeps a claim's cost flat from the first row of a million to the last. With
    ``after`` = 0 the whole queue is looked at (the worker does that when the rows above
    its mark run out: retries come due and rows put back have lower ids).

    In the same transaction, rows whose subscriber no longer receives on ``today``
    (unsubscribed, paused or erased since planning; default: the UTC date of ``now``) are
    marked skipped instead of claimed. Run again if the database rolled it back for a
    deadlock with another worker.
    """
    return retrying(lambda: _claim_batch(store, limit, now, claimer, months, today, after))


def _claim_batch(
    store: Store,
    limit: int,
    now: dt.datetime | None,
    claimer: str | None,
    months: Sequence[str] | None,
    today: dt.date | None,
    after: int = 0,
) -> list[Claimed]:
    now = now or _now()
    claimer = claimer or worker_id()
    # A send paused by an SMTP outage is picked up again by any worker (it pauses it
    # again if the server is still down).
    due = select(Delivery.id).where(_due(now, months)).order_by(Delivery.id).limit(limit)
    if after:
        due = due.where(Delivery.id > after)
    if store.dialect == "postgresql":
        due = due.with_for_update(skip_locked=True)
    stmt = (
        update(Delivery)
        .where(Delivery.id.in_(due.scalar_subquery()))
        .values(
            status="sending",
            claimed_at=now,
            claimed_by=claimer,
            wire_state=None,
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
                receiving_condition(today or now.date()).label("receiving"),
                Delivery.variant_mask,
                Delivery.revision,
                Delivery.attempts,
                Delivery.first_attempt_at,
            )
            .join(Send, Send.id == Delivery.send_id)
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .where(Delivery.id.in_(ids))
            .order_by(Delivery.id)
        ).all()
        keep: list[Any] = []
        gone: list[Any] = []
        for r in rows:
            (keep if r.receiving else gone).append(r)
        # Rows whose subscriber was erased vanish with it (cascade); the rest are skipped.
        if gone:
            session.execute(
                update(Delivery)
                .where(Delivery.id.in_([r.id for r in gone]))
                .values(status="skipped", skip_reason=SKIP_LEFT, claimed_by=None)
                .execution_options(synchronize_session=False)
            )
        topics = topics_of(session, [r[3] for r in keep])
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
            topics=tuple(sorted(topics[r[3]])),
            all_topics=bool(r[6]),
            variant_mask=r.variant_mask,
            revision=r.revision,
            attempts=r.attempts + 1,
            first_attempt_at=r.first_attempt_at or now,
        )
        for r in keep
    ]


def begin_messages(
    store: Store,
    claimer: str,
    start: Sequence[int],
    outcomes: Iterable[Outcome] = (),
    now: dt.datetime | None = None,
    policy: BouncePolicy = DEFAULT_POLICY,
) -> tuple[set[int], list[int]]:
    """The wire fence: record ``outcomes``, then mark the ``start`` rows on the wire.

    One transaction. Returns the ids of ``start`` that may go on the wire now (those
    still claimed by ``claimer`` and not skipped meanwhile) and the ids of ``outcomes``
    refused (see :func:`record_outcomes`). An unsubscribe skips, in its own transaction,
    every row of the person that is not on the wire yet, so whichever commits first
    wins: no message starts after an unsubscribe has returned (it waits for a row
    already on the wire, see :func:`newsletter.store.subscribers.wait_for_wire`).
    """
    when = now or _now()
    written = list(outcomes)
    if not any(o.bounce for o in written):
        # The common step: plain statements on a plain connection (a worker takes a
        # step every few messages, so the ORM's cost per step would be a large share of
        # the send's). Bounces, and on SQLite a row no longer held, take the path below.
        fast = retrying(lambda: _fast_round(store, claimer, start, written, when))
        if fast is not None:
            return fast
    return _precise_step(store, claimer, start, written, when, policy)


def _precise_step(
    store: Store,
    claimer: str,
    start: Sequence[int],
    written: list[Outcome],
    when: dt.datetime,
    policy: BouncePolicy,
) -> tuple[set[int], list[int]]:
    """A fence step through the ORM: bounces (recorded with the outcome), and on SQLite
    outcomes for rows no longer held (it says which)."""
    d = Delivery

    def step() -> tuple[set[int], list[int]]:
        with store.transaction() as session:
            if store.dialect == "postgresql":
                # Losing this commit in a power cut only makes rows look unsent and
                # unstarted, which a re-send after a crash allows anyway; other sessions
                # see it at once.
                session.execute(text("SET LOCAL synchronous_commit = off"))
            refused = _write_outcomes(session, written, claimer, when, policy)
            if not start:
                return set(), refused
            allowed = set(
                session.execute(
                    update(d)
                    .where(
                        d.id.in_(list(start)),
                        d.claimed_by == claimer,
                        d.status == "sending",
                        d.wire_state.is_(None),
                    )
                    .values(wire_state=WIRE_STARTED)
                    .returning(d.id)
                    .execution_options(synchronize_session=False)
                ).scalars()
            )
            return allowed, refused

    return retrying(step)


class FenceWriter:
    """The fence steps of one worker's recorder, on a connection of its own.

    The recorder commits every few messages, so a step must cost little. It runs on a
    driver connection held for the worker's life (no pool checkout, ping or result
    objects per step): on PostgreSQL one statement in autocommit mode (one round trip),
    with ``synchronous_commit`` off for this connection (a power cut can only make rows
    look unsent and unstarted, which a re-send after a crash allows anyway); on SQLite one
    short transaction. Steps with bounces, and on SQLite outcomes for rows no longer held,
    take the precise path of :func:`begin_messages`. One recorder thread uses it.
    """

    def __init__(self, store: Store, claimer: str, policy: BouncePolicy = DEFAULT_POLICY):
        self.store = store
        self.claimer = claimer
        self.policy = policy
        self._raw: Any = None

    def _connection(self) -> Any:
        if self._raw is None:
            raw: Any = self.store.engine.raw_connection()
            if self.store.dialect == "postgresql":
                raw.driver_connection.autocommit = True
                with raw.cursor() as cur:
                    cur.execute("SET synchronous_commit = off")
            self._raw = raw
        return self._raw

    def close(self) -> None:
        """Give the connection up. On PostgreSQL it is discarded, so its session settings
        never reach another user of the pool."""
        raw, self._raw = self._raw, None
        if raw is None:
            return
        if self.store.dialect == "postgresql":
            raw.invalidate()
        raw.close()

    def step(
        self,
        start: Sequence[int],
        outcomes: Iterable[Outcome] = (),
        now: dt.datetime | None = None,
    ) -> tuple[set[int], list[int]]:
        """As :func:`begin_messages`: write ``outcomes``, then mark ``start`` on the wire;
        returns the ids of ``start`` that may go and the ids of ``outcomes`` refused."""
        when = now or _now()
        written = list(outcomes)
        if not any(o.bounce for o in written):
            for attempt in range(5):
                try:
                    fast = self._fast(start, written, when)
                except _TransientError:
                    if attempt == 4:
                        raise
                    time.sleep(0.005 * 2**attempt)
                    continue
                if fast is None:
                    break
                return fast
        return _precise_step(self.store, self.claimer, start, written, when, self.policy)

    def _fast(
        self, start: Sequence[int], outcomes: list[Outcome], now: dt.datetime
    ) -> tuple[set[int], list[int]] | None:
        raw = self._connection()
        try:
            with contextlib.closing(raw.cursor()) as cur:
                if self.store.dialect == "postgresql":
                    return _pg_step_raw(cur, self.claimer, start, outcomes, now)
                try:
                    result = _sqlite_step_raw(cur, self.claimer, start, outcomes, now)
                except _NotAllHeldError:
                    raw.rollback()
                    return None
                raw.commit()
                return result
        except Exception as exc:
            gone = self.store.dialect == "postgresql" and raw.driver_connection.closed
            self.close()  # a connection that failed is not used again
            if is_transient(exc):
                raise _TransientError() from exc
            fault = store_fault(self.store.url, exc, connected=True, disconnect=bool(gone))
            if fault is not None:
                raise fault from None
            raise


class _TransientError(Exception):
    """A fence step the database rolled back for a transient reason (a deadlock)."""


_SQLITE_OUTCOME = {
    "sent": "status = 'sent', attempts = attempts + 1, last_reply = ?, message_id = ?, sent_at = ?",
    "retry": "status = 'pending', attempts = attempts + 1, last_reply = ?, message_id = ?, "
    "next_attempt_at = ?",
    "failed": "status = 'failed', attempts = attempts + 1, last_reply = ?, message_id = ?",
    "release": "status = 'pending'",
}

_PG_OUTCOMES = """
UPDATE deliveries AS d SET
    status = v.status,
    attempts = d.attempts + v.tried,
    last_reply = CASE WHEN v.tried = 1 THEN v.reply ELSE d.last_reply END,
    message_id = CASE WHEN v.tried = 1 THEN v.mid ELSE d.message_id END,
    sent_at = CASE WHEN v.status = 'sent' THEN %(now)s ELSE d.sent_at END,
    next_attempt_at = CASE WHEN v.tried = 1 AND v.status = 'pending' THEN v.nxt
                           ELSE d.next_attempt_at END,
    claimed_by = NULL,
    wire_state = NULL
FROM unnest(%(ids)s::integer[], %(statuses)s::text[], %(tried)s::integer[],
            %(replies)s::text[], %(mids)s::text[], %(nexts)s::timestamp[])
     AS v(id, status, tried, reply, mid, nxt)
WHERE d.id = v.id AND d.claimed_by = %(claimer)s AND (d.status || '') = 'sending'
RETURNING d.id
"""
# ``status || ''`` keeps the planner off the status index: its statistics date from
# planning, when no row was 'sending', so it would walk every claimed row of the queue
# index (12,000 claimed rows: 19 ms a step) instead of the few ids by primary key.

_PG_STEP = (
    "WITH done AS ("
    + _PG_OUTCOMES.strip()
    + """), started AS (
UPDATE deliveries SET wire_state = 1
WHERE id = ANY(%(start)s::integer[]) AND claimed_by = %(claimer)s
  AND (status || '') = 'sending' AND wire_state IS NULL
RETURNING id)
SELECT 0, id FROM done UNION ALL SELECT 1, id FROM started"""
)

_STORED_STATUS = {"sent": "sent", "retry": "pending", "failed": "failed", "release": "pending"}


def _naive(when: dt.datetime | None) -> dt.datetime | None:
    return None if when is None else when.astimezone(dt.UTC).replace(tzinfo=None)


def _sqlite_time(when: dt.datetime | None) -> str | None:
    """A timestamp as SQLAlchemy stores it in SQLite (so both paths write the same)."""
    naive = _naive(when)
    return None if naive is None else naive.strftime("%Y-%m-%d %H:%M:%S.%f")


def _fast_round(
    store: Store,
    claimer: str,
    start: Sequence[int],
    outcomes: list[Outcome],
    now: dt.datetime,
) -> tuple[set[int], list[int]] | None:
    """One fence step in plain SQL: the outcomes, then the wire fence.

    Returns None (nothing written) on SQLite when some outcome was for a row this
    worker no longer holds: :func:`begin_messages` then takes its precise path, which
    says which rows.
    """
    try:
        return _fast_round_in(store, claimer, start, outcomes, now)
    except _NotAllHeldError:  # rolled back: nothing was written
        return None


def _fast_round_in(
    store: Store,
    claimer: str,
    start: Sequence[int],
    outcomes: list[Outcome],
    now: dt.datetime,
) -> tuple[set[int], list[int]]:
    with store.engine.begin() as conn:
        if store.dialect == "postgresql":
            # Losing this commit in a power cut only makes rows look unsent and unstarted,
            # which a re-send after a crash allows anyway; other sessions see it at once.
            conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
            return _pg_step(conn, claimer, start, outcomes, now)
        return _sqlite_step(conn, claimer, start, outcomes, now)


def _pg_params(
    claimer: str, start: Sequence[int], outcomes: list[Outcome], now: dt.datetime
) -> dict[str, Any]:
    ids = [o.delivery_id for o in outcomes]
    # A row released in this step is not started in it (one statement must not update a
    # row twice); written in two steps it would not be started either.
    gone = set(ids)
    return {
        "now": _naive(now),
        "ids": ids,
        "statuses": [_STORED_STATUS[o.status] for o in outcomes],
        "tried": [0 if o.status == "release" else 1 for o in outcomes],
        "replies": [(o.reply or "")[:1000] for o in outcomes],
        "mids": [o.message_id for o in outcomes],
        "nexts": [_naive(o.next_attempt_at) for o in outcomes],
        "claimer": claimer,
        "start": [i for i in start if i not in gone],
    }


def _pg_result(rows: Iterable[Any], outcomes: list[Outcome]) -> tuple[set[int], list[int]]:
    done: set[int] = set()
    allowed: set[int] = set()
    for kind, delivery_id in rows:
        (done if kind == 0 else allowed).add(delivery_id)
    return allowed, [o.delivery_id for o in outcomes if o.delivery_id not in done]


def _pg_step(
    conn: Connection,
    claimer: str,
    start: Sequence[int],
    outcomes: list[Outcome],
    now: dt.datetime,
) -> tuple[set[int], list[int]]:
    """Outcomes and the wire fence in one statement (one round trip)."""
    params = _pg_params(claimer, start, outcomes, now)
    return _pg_result(conn.exec_driver_sql(_PG_STEP, params).all(), outcomes)


def _pg_step_raw(
    cur: Any, claimer: str, start: Sequence[int], outcomes: list[Outcome], now: dt.datetime
) -> tuple[set[int], list[int]]:
    cur.execute(_PG_STEP, _pg_params(claimer, start, outcomes, now))
    return _pg_result(cur.fetchall(), outcomes)


def _sqlite_outcome_rows(
    claimer: str, outcomes: list[Outcome], now: dt.datetime
) -> dict[str, list[tuple[Any, ...]]]:
    by_status: dict[str, list[tuple[Any, ...]]] = {}
    stamp = _sqlite_time(now)
    for o in outcomes:
        tail = (o.delivery_id, claimer)
        if o.status == "release":
            row: tuple[Any, ...] = tail
        elif o.status == "sent":
            row = ((o.reply or "")[:1000], o.message_id, stamp, *tail)
        elif o.status == "retry":
            row = ((o.reply or "")[:1000], o.message_id, _sqlite_time(o.next_attempt_at), *tail)
        else:
            row = ((o.reply or "")[:1000], o.message_id, *tail)
        by_status.setdefault(o.status, []).append(row)
    return by_status


def _sqlite_outcome_sql(status: str) -> str:
    return (
        f"UPDATE deliveries SET {_SQLITE_OUTCOME[status]}, claimed_by = NULL, "
        "wire_state = NULL WHERE id = ? AND claimed_by = ? AND status = 'sending'"
    )


def _sqlite_start_sql(n: int) -> str:
    return (
        f"UPDATE deliveries SET wire_state = 1 WHERE id IN ({', '.join('?' * n)}) "
        "AND claimed_by = ? AND status = 'sending' AND wire_state IS NULL RETURNING id"
    )


def _sqlite_step(
    conn: Connection,
    claimer: str,
    start: Sequence[int],
    outcomes: list[Outcome],
    now: dt.datetime,
) -> tuple[set[int], list[int]]:
    """Outcomes, then the wire fence, inside the caller's transaction; raises
    :class:`_NotAllHeldError` when some outcome was for a row no longer held."""
    written = 0
    for status, rows in _sqlite_outcome_rows(claimer, outcomes, now).items():
        written += conn.exec_driver_sql(_sqlite_outcome_sql(status), rows).rowcount
    if written != len(outcomes):
        raise _NotAllHeldError()
    if not start:
        return set(), []
    marked = conn.exec_driver_sql(_sqlite_start_sql(len(start)), (*start, claimer))
    return set(marked.scalars()), []


def _sqlite_step_raw(
    cur: Any, claimer: str, start: Sequence[int], outcomes: list[Outcome], now: dt.datetime
) -> tuple[set[int], list[int]]:
    """As :func:`_sqlite_step` on a driver cursor (the caller commits)."""
    written = 0
    for status, rows in _sqlite_outcome_rows(claimer, outcomes, now).items():
        cur.executemany(_sqlite_outcome_sql(status), rows)
        written += cur.rowcount
    if written != len(outcomes):
        raise _NotAllHeldError()
    if not start:
        return set(), []
    cur.execute(_sqlite_start_sql(len(start)), (*start, claimer))
    return {r[0] for r in cur.fetchall()}, []


def record_outcomes(
    store: Store,
    outcomes: Iterable[Outcome],
    claimer: str,
    now: dt.datetime | None = None,
    policy: BouncePolicy = DEFAULT_POLICY,
) -> list[int]:
    """Write what happened to deliveries ``claimer`` holds, all in one transaction.

    Only the holder of a claim records its outcome: a row another worker has taken over
    (after this one stopped renewing its lease) or that an unsubscribe skipped is left
    alone. Returns the ids refused for that reason (the caller logs them).
    """
    return begin_messages(store, claimer, [], outcomes, now, policy)[1]


def _write_outcomes(
    session: Session,
    outcomes: list[Outcome],
    claimer: str,
    now: dt.datetime,
    policy: BouncePolicy = DEFAULT_POLICY,
) -> list[int]:
    if not outcomes:
        return []
    by_status: dict[str, list[dict]] = {}
    ids: list[int] = []
    for o in outcomes:
        ids.append(o.delivery_id)
        by_status.setdefault(o.status, []).append(
            {
                "b_id": o.delivery_id,
                "b_reply": (o.reply or "")[:1000],
                "b_mid": o.message_id,
                "b_next": o.next_attempt_at,
            }
        )
    d = cast(Table, Delivery.__table__)
    tried = {  # an attempt was made: count it, keep the reply and the Message-ID
        "attempts": d.c.attempts + 1,
        "last_reply": bindparam("b_reply"),
        "message_id": bindparam("b_mid"),
        "claimed_by": None,
        "wire_state": None,
    }
    values: dict[str, dict[str, Any]] = {
        "sent": {**tried, "status": "sent", "sent_at": now},
        "retry": {**tried, "status": "pending", "next_attempt_at": bindparam("b_next")},
        "failed": {**tried, "status": "failed"},
        # not sent: not an attempt
        "release": {"status": "pending", "claimed_by": None, "wire_state": None},
    }
    conn = session.connection()
    mine_now = and_(d.c.claimed_by == claimer, d.c.status == "sending")
    # Lock the rows this worker still holds before writing, so that nobody takes one over
    # between the check and the write: on PostgreSQL row locks in id order (the same order
    # in every worker), on SQLite the write lock (a no-op write takes it).
    held_by_me = and_(d.c.id.in_(ids), mine_now)
    if conn.dialect.name == "postgresql":
        check: Any = select(d.c.id).where(held_by_me).order_by(d.c.id).with_for_update()
    else:
        check = update(d).where(held_by_me).values(claimed_at=d.c.claimed_at).returning(d.c.id)
    held = set(conn.execute(check).scalars())
    for status, rows in by_status.items():
        mine = [r for r in rows if r["b_id"] in held]
        if mine:
            stmt = d.update().where(d.c.id == bindparam("b_id"))
            conn.execute(stmt.values(**values[status]), mine)
    _bounces(session, outcomes, held, policy, now)
    return [i for i in ids if i not in held]


def _bounces(
    session: Session,
    outcomes: list[Outcome],
    held: set[int],
    policy: BouncePolicy,
    now: dt.datetime,
) -> None:
    """Record the bounces among written outcomes (and the statuses they lead to)."""
    found = [
        NewBounce(o.delivery_id, o.bounce, o.code, o.reply or "", o.message_id)
        for o in outcomes
        if o.bounce and o.delivery_id in held
    ]
    if found:
        record_bounces(session, found, policy, now)


class _NotAllHeldError(Exception):
    """Some outcome was for a row this worker no longer holds: take the precise path."""


def finish_sends(store: Store, now: dt.datetime | None = None) -> list[str]:
    """Mark running sends with nothing left to send as done; returns their months."""
    now = now or _now()
    outstanding = exists().where(Delivery.send_id == Send.id, Delivery.status.in_(OUTSTANDING))
    with store.transaction() as session:
        months = [
            m
            for (m,) in session.execute(
                select(Send.issue_month).where(
                    Send.status.in_(RUNNING_SENDS), Send.planned_through.is_(None), ~outstanding
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


def take_lease(
    store: Store, worker: str, ttl: dt.timedelta, now: dt.datetime | None = None
) -> None:
    """Register a starting worker: its claims are its own while it renews the lease."""
    now = now or _now()
    with store.transaction() as session:
        session.add(
            WorkerLease(worker=worker, started_at=now, renewed_at=now, expires_at=now + ttl)
        )


def renew_lease(
    store: Store, worker: str, ttl: dt.timedelta, now: dt.datetime | None = None
) -> bool:
    """The heartbeat: extend the lease; False if it had already expired (or is gone).

    A worker whose lease expired may have had its rows taken over: it must stop sending.
    """
    now = now or _now()
    with store.transaction() as session:
        result = session.execute(
            update(WorkerLease)
            .where(WorkerLease.worker == worker, WorkerLease.expires_at > now)
            .values(renewed_at=now, expires_at=now + ttl)
            .execution_options(synchronize_session=False)
        )
        return rowcount(result) == 1


def drop_lease(store: Store, worker: str) -> None:
    """A worker that stops cleanly gives its lease back."""
    with store.transaction() as session:
        session.execute(delete(WorkerLease).where(WorkerLease.worker == worker))


def live_lease(worker: ColumnElement[Any], now: dt.datetime) -> ColumnElement[bool]:
    """SQL condition: ``worker`` holds a lease that has not expired at ``now``."""
    return exists().where(WorkerLease.worker == worker, WorkerLease.expires_at > now)


def release_stale(
    store: Store,
    now: dt.datetime | None = None,
    dead_claimers: Sequence[str] = (),
    grace: dt.timedelta = dt.timedelta(seconds=60),
) -> int:
    """Put ``sending`` rows of stopped workers back to pending; returns how many.

    A claim is stale when its claimer's lease has expired (it stopped renewing it: the
    process died, hung or lost the database) or the claimer is known to be dead. A claim
    by a claimer that never had a lease (a worker of an older version) is stale ``grace``
    after it was made. A stale row may have reached the server before its worker
    stopped: at most the messages on the wire are sent twice (with the same Message-ID).
    Expired leases are deleted.
    """
    now = now or _now()
    lease_gone = ~exists().where(WorkerLease.worker == Delivery.claimed_by)
    lease_expired = exists().where(
        WorkerLease.worker == Delivery.claimed_by, WorkerLease.expires_at <= now
    )
    cond = or_(
        Delivery.claimed_by.is_(None),
        lease_expired,
        and_(lease_gone, Delivery.claimed_at < now - grace),
    )
    if dead_claimers:
        cond = or_(cond, Delivery.claimed_by.in_(list(dead_claimers)))
    with store.transaction() as session:
        result = session.execute(
            update(Delivery)
            .where(Delivery.status == "sending", cond)
            .values(status="pending", claimed_by=None, wire_state=None)
            .execution_options(synchronize_session=False)
        )
        n = rowcount(result)
        gone = delete(WorkerLease).where(WorkerLease.expires_at <= now)
        if dead_claimers:
            gone = delete(WorkerLease).where(
                or_(WorkerLease.expires_at <= now, WorkerLease.worker.in_(list(dead_claimers)))
            )
        session.execute(gone)
        return n


def local_claimers(store: Store) -> list[str]:
    """The claimers (of ``sending`` rows or of leases) that ran on this host."""
    host = socket.gethostname()
    with store.transaction() as session:
        found = set(
            session.execute(
                select(Delivery.claimed_by)
                .where(Delivery.status == "sending", Delivery.claimed_by.is_not(None))
                .distinct()
            ).scalars()
        )
        found.update(session.execute(select(WorkerLease.worker)).scalars())
    return sorted(c for c in found if c and claimer_pid(c, host) is not None)


def retry_failed(store: Store, month: str, include_hard: bool = False) -> int:
    """Put the failed deliveries of ``month`` back to pending (on request); how many.

    A delivery refused with a hard bounce (the address does not exist) stays failed
    unless ``include_hard``: sending it again only hurts the sender's reputation.
    """
    status = send_status(store, month)
    failed = and_(Delivery.send_id == status.send_id, Delivery.status == "failed")
    if not include_hard:
        hard = exists().where(Bounce.delivery_id == Delivery.id, Bounce.kind == HARD)
        failed = and_(failed, ~hard)
    with store.transaction() as session:
        n = rowcount(
            session.execute(
                update(Delivery)
                .where(failed)
                .values(status="pending", next_attempt_at=None, first_attempt_at=None)
                .execution_options(synchronize_session=False)
            )
        )
        if n:
            session.execute(
                update(Send)
                .where(Send.id == status.send_id, Send.status == "done")
                .values(status="sending", finished_at=None)
                .execution_options(synchronize_session=False)
            )
    return n


#: The columns of a :class:`DeliveryRow`, in its order.
_DELIVERY_ROW = (
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
    Send.summaries,
)


def list_deliveries(
    store: Store,
    month: str | None = None,
    status: str | None = None,
    email: str | None = None,
    limit: int = 1000,
) -> list[DeliveryRow]:
    """Deliveries of one send (or of one subscriber), newest send first."""
    stmt = (
        select(*_DELIVERY_ROW)
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
        return [DeliveryRow(*cast(tuple[Any, ...], r)) for r in session.execute(stmt)]


def delivery_page(
    store: Store, month: str, after_id: int = 0, limit: int = 100, status: str | None = None
) -> list[tuple[int, DeliveryRow]]:
    """Up to ``limit`` deliveries of the send of ``month`` with an id above ``after_id``,
    in id order, each with its id (the keyset of the next page)."""
    stmt = (
        select(Delivery.id, *_DELIVERY_ROW)
        .join(Send, Send.id == Delivery.send_id)
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(Send.issue_month == month, Delivery.id > after_id)
        .order_by(Delivery.id)
        .limit(limit)
    )
    if status:
        stmt = stmt.where(Delivery.status == status)
    with store.transaction() as session:
        return [(r[0], DeliveryRow(*cast(tuple[Any, ...], r[1:]))) for r in session.execute(stmt)]


def cancel_send(store: Store, month: str, now: dt.datetime | None = None) -> SendStatus:
    """Stop the send of ``month`` for good: it becomes ``cancelled`` and every delivery
    not on the wire yet is skipped, in one transaction.

    Rows a worker has claimed but not started are skipped too; its fence
    (:func:`begin_messages`) then refuses to start them. A message already on the wire
    finishes. A finished send (done or cancelled) is refused.
    """
    now = now or _now()
    with store.transaction() as session:
        stmt = select(Send).where(Send.issue_month == month)
        if session.get_bind().dialect.name == "postgresql":
            stmt = stmt.with_for_update()
        send = session.execute(stmt).scalar_one_or_none()
        if send is None:
            raise _not_planned(month)
        if is_finished(send.status):
            raise SendFinishedError(
                f"the send of {month} is {send.status} already",
                hint="only a send that is planned, sending or paused can be cancelled",
            )
        session.execute(
            update(Delivery)
            .where(
                Delivery.send_id == send.id,
                or_(
                    Delivery.status == "pending",
                    and_(Delivery.status == "sending", Delivery.wire_state.is_(None)),
                ),
            )
            .values(status="skipped", skip_reason=SKIP_CANCELLED, claimed_by=None)
            .execution_options(synchronize_session=False)
        )
        send.status = "cancelled"
        send.finished_at = now
        send.paused_reason = None
        send.planned_through = None  # a step under way now rolls back (see plan_step)
    return send_status(store, month)
