"""SQLAlchemy models of the subscriber store (the only module that defines tables).

Tables are kept deliberately plain, because delivery planning runs set-based SQL over
``subscribers`` joined to ``subscriber_topics``: an integer key, an indexed ``status``, a
unique normalised ``email``, and one row per (subscriber, topic slug). Table groups:
subscribers (``subscribers``, ``subscriber_topics``, ``consent_events``, ``suppressions``,
``signup_requests``),
the ledger (``sends``, ``send_variants``, ``deliveries``), the scheduler (``schedules``,
``schedule_runs``, ``scheduler_lease``) and ``store_meta``. The values allowed in status
columns come from :mod:`newsletter.rules.statuses`.

Every change of a schema here needs a new Alembic revision in ``migrations/versions``; a
test checks that the models and the migrations agree.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    and_,
    or_,
    select,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeDecorator

from newsletter.rules.bounces import KINDS as BOUNCE_KINDS
from newsletter.rules.statuses import (
    DELIVERY_STATUSES,
    EVENT_SOURCES,
    LAPSING,
    RECEIVING,
    SEND_STATUSES,
    SOURCES,
    SUBSCRIBER_STATUSES,
)

STATUSES = SUBSCRIBER_STATUSES

# Stable constraint names, so that later migrations (and SQLite batch mode) can refer to them.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timestamps stored as naive UTC and always read back as aware UTC.

    SQLite keeps no time zone and PostgreSQL's ``timestamptz`` converts to the session's
    zone; storing naive UTC everywhere gives the same values on both.
    """

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC)


def utcnow() -> dt.datetime:
    """The current time, aware, in UTC, to the second (exports stay readable)."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


class Base(DeclarativeBase):
    """Declarative base carrying the naming convention."""

    metadata = MetaData(naming_convention=NAMING)


#: Tables revision 0009 makes that no model maps: the archive's search index (on SQLite an
#: FTS5 virtual table, with the shadow tables FTS5 keeps beside it). It is written only by
#: :mod:`newsletter.store.archive_index`, in SQL of each database's own dialect.
UNMAPPED_TABLE_PREFIX = "archive_search"


def is_mapped_name(name: str | None, type_: str, _parents: object) -> bool:
    """Alembic's ``include_name``: leave the search index out of model comparisons."""
    return not (type_ == "table" and (name or "").startswith(UNMAPPED_TABLE_PREFIX))


class Subscriber(Base):
    """One person on the list. ``email`` is normalised (lower case) and unique."""

    __tablename__ = "subscribers"
    __table_args__ = (
        CheckConstraint("status IN ('" + "', '".join(STATUSES) + "')", name="status"),
        CheckConstraint("source IN ('" + "', '".join(SOURCES) + "')", name="source"),
        # Ids are never reused (signed links name them): see migration 0006.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[str] = mapped_column(String(16), index=True)
    all_topics: Mapped[bool] = mapped_column(default=False)
    paused_until: Mapped[dt.date | None] = mapped_column(Date)
    source: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    confirmed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    unsubscribed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    topics: Mapped[list[SubscriberTopic]] = relationship(
        back_populates="subscriber",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="SubscriberTopic.topic_slug",
    )


class SubscriberTopic(Base):
    """One topic (by its stable slug) one subscriber chose."""

    __tablename__ = "subscriber_topics"

    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True
    )
    topic_slug: Mapped[str] = mapped_column(String(100), primary_key=True, index=True)

    subscriber: Mapped[Subscriber] = relationship(back_populates="topics")


class ConsentRecord(Base):
    """One line of the append-only consent log.

    ``subscriber_id`` is NULL only for the record left behind by an erasure, which holds
    no personal data.
    """

    __tablename__ = "consent_events"
    __table_args__ = (
        CheckConstraint("source IN ('" + "', '".join(EVENT_SOURCES) + "')", name="source"),
        Index("ix_consent_events_subscriber_id_at", "subscriber_id", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="SET NULL")
    )
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    event: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(16))
    ip: Mapped[str | None] = mapped_column(String(45))
    consent_version: Mapped[str | None] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(Text)


class SignupRequest(Base):
    """What someone typed into the sign-up form, waiting for the address's owner to confirm.

    Nobody's record changes before that: confirming applies the request to the person
    (creating them, or bringing back a pending or unsubscribed one) and deletes it.
    ``topics`` are slugs separated by spaces (none for all topics). Expired requests are
    purged.
    """

    __tablename__ = "signup_requests"
    # Ids are never reused (SQLite would reuse the highest after a delete): a confirmation
    # link names its request by id and must never name a later request for someone else.
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    all_topics: Mapped[bool] = mapped_column(default=False)
    topics: Mapped[str] = mapped_column(Text, default="")
    ip: Mapped[str | None] = mapped_column(String(45))
    consent_version: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)


SUPPRESSION_REASONS = ("erased", "complaint")


class Suppression(Base):
    """An address never to be mailed again without an administrator's decision.

    Only a salted hash of the normalised address is kept, so the entry outlives the
    person's erasure. ``reason``: ``erased`` (their data was deleted at their request) or
    ``complaint`` (they reported the newsletter as spam).
    """

    __tablename__ = "suppressions"
    __table_args__ = (
        CheckConstraint("reason IN ('" + "', '".join(SUPPRESSION_REASONS) + "')", name="reason"),
    )

    email_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    reason: Mapped[str] = mapped_column(String(16), default="erased", server_default="erased")


class StoreMeta(Base):
    """Key/value facts about this installation (e.g. the suppression salt)."""

    __tablename__ = "store_meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Send(Base):
    """One issue's send: its state and timing. Counts come from its deliveries."""

    __tablename__ = "sends"
    __table_args__ = (
        CheckConstraint("status IN ('" + "', '".join(SEND_STATUSES) + "')", name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    issue_month: Mapped[str] = mapped_column(String(7), unique=True)
    status: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(String(300))
    summaries: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    paused_reason: Mapped[str | None] = mapped_column(Text)
    # The snapshot (revision 0: planned before snapshots existed, none stored).
    revision: Mapped[int] = mapped_column(Integer, server_default="0")
    content_hash: Mapped[str] = mapped_column(String(64), server_default="")
    policy: Mapped[str] = mapped_column(String(16), server_default="skip")
    summaries_info: Mapped[str] = mapped_column(Text, server_default="[]")  # JSON
    headers: Mapped[str] = mapped_column(Text, server_default="{}")  # JSON
    # While planning goes on in steps: the highest subscriber id planned so far (NULL:
    # every subscriber is planned). A send is never done while it is set.
    planned_through: Mapped[int | None] = mapped_column(Integer)


class SendVariant(Base):
    """One variant of one revision of a send's snapshot: its parts, split around holes."""

    __tablename__ = "send_variants"
    __table_args__ = (
        UniqueConstraint("send_id", "revision", "mask", name="uq_send_variants_send_mask"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    send_id: Mapped[int] = mapped_column(ForeignKey("sends.id", ondelete="CASCADE"))
    revision: Mapped[int] = mapped_column(Integer)
    mask: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(300))
    web_view_url: Mapped[str] = mapped_column(Text)
    html: Mapped[str] = mapped_column(Text)  # JSON {"segments": [...], "names": [...]}
    text: Mapped[str] = mapped_column(Text)


class Delivery(Base):
    """One (issue, subscriber) row of the ledger: the queue entry and the record."""

    __tablename__ = "deliveries"
    __table_args__ = (
        CheckConstraint("status IN ('" + "', '".join(DELIVERY_STATUSES) + "')", name="status"),
        UniqueConstraint("send_id", "subscriber_id", name="uq_deliveries_send_subscriber"),
        Index("ix_deliveries_queue", "status", "id"),
        Index("ix_deliveries_subscriber_id", "subscriber_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    send_id: Mapped[int] = mapped_column(ForeignKey("sends.id", ondelete="CASCADE"))
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    variant_mask: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    skip_reason: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    first_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    claimed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    last_reply: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[str | None] = mapped_column(String(255))
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    revision: Mapped[int] = mapped_column(Integer, server_default="0")
    #: Where a claimed row is: None not started, WIRE_STARTED on the wire (its message
    #: is being sent, or was and its outcome is not written yet). See
    #: ledger.begin_messages.
    wire_state: Mapped[int | None] = mapped_column(SmallInteger)


#: ``deliveries.wire_state``: the message went on the wire; its outcome is not written yet.
WIRE_STARTED = 1


#: Ids per ``IN (...)`` lookup (under SQLite's limit of 32766 parameters).
ID_CHUNK = 5000


def receiving_condition(today: dt.date) -> ColumnElement[bool]:
    """SQL condition: the subscriber gets the issue sent ``today``.

    The SQL form of :func:`newsletter.rules.statuses.is_receiving` (built from the same
    constants; a test checks that the two agree): active subscribers, and paused ones
    whose pause ended on or before ``today``.
    """
    return or_(
        Subscriber.status == RECEIVING,
        and_(
            Subscriber.status == LAPSING,
            Subscriber.paused_until.is_not(None),
            Subscriber.paused_until <= today,
        ),
    )


def topics_of(session: Session, subscriber_ids: Sequence[int]) -> dict[int, list[str]]:
    """The chosen topic slugs of each subscriber (an empty list for none or all-topics).

    Looked up in chunks, so any number of ids stays under the drivers' parameter limits.
    """
    topics: dict[int, list[str]] = {sid: [] for sid in subscriber_ids}
    ids = list(topics)
    for i in range(0, len(ids), ID_CHUNK):
        for sid, slug in session.execute(
            select(SubscriberTopic.subscriber_id, SubscriberTopic.topic_slug).where(
                SubscriberTopic.subscriber_id.in_(ids[i : i + ID_CHUNK])
            )
        ):
            topics[sid].append(slug)
    return topics


# --- scheduler --------------------------------------------------------------------------

SCHEDULE_STATUSES = ("scheduled", "cancelled", "fired", "missed")
RUN_OUTCOMES = ("running", "sent", "queued", "already_sent", "refused", "missed", "failed")


class Schedule(Base):
    """A one-off send requested with ``newsletter schedule``; the scheduler picks it up."""

    __tablename__ = "schedules"
    __table_args__ = (
        CheckConstraint("status IN ('" + "', '".join(SCHEDULE_STATUSES) + "')", name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    issue_month: Mapped[str] = mapped_column(String(7), unique=True)
    run_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    timezone: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class ScheduleRun(Base):
    """One firing (or missed firing) of a scheduler job and what came of it."""

    __tablename__ = "schedule_runs"
    __table_args__ = (
        CheckConstraint("outcome IN ('" + "', '".join(RUN_OUTCOMES) + "')", name="outcome"),
        UniqueConstraint("job_id", "scheduled_for", name="uq_schedule_runs_job_time"),
        Index("ix_schedule_runs_issue_month", "issue_month"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(String(64))
    issue_month: Mapped[str] = mapped_column(String(7))
    scheduled_for: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    outcome: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str | None] = mapped_column(Text)


class SchedulerLease(Base):
    """Who runs the store's one scheduler, kept alive by heartbeats."""

    __tablename__ = "scheduler_lease"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    acquired_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    heartbeat_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class WorkerLease(Base):
    """One running delivery worker, kept alive by its heartbeat.

    A claimed delivery belongs to its claimer for as long as the claimer's lease is
    renewed; only then may another worker take it over.
    """

    __tablename__ = "worker_leases"

    worker: Mapped[str] = mapped_column(String(128), primary_key=True)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    renewed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class ApiToken(Base):
    """One token of the JSON API. Only the SHA-256 of the token is kept (the token itself
    is shown once, when it is made); ``name`` says whose it is in the logs."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    read_only: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class Bounce(Base):
    """One refusal of mail to a person, with its evidence (see rules.bounces)."""

    __tablename__ = "bounces"
    __table_args__ = (
        CheckConstraint("kind IN ('" + "', '".join(BOUNCE_KINDS) + "')", name="kind"),
        UniqueConstraint("report_id", "subscriber_id", name="uq_bounces_report_subscriber"),
        Index("ix_bounces_subscriber_id_at", "subscriber_id", "at"),
        Index("ix_bounces_at", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    delivery_id: Mapped[int | None] = mapped_column(
        ForeignKey("deliveries.id", ondelete="SET NULL")
    )
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    kind: Mapped[str] = mapped_column(String(16))
    code: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str | None] = mapped_column(String(16))  # enhanced status, e.g. 5.1.1
    diagnostic: Mapped[str] = mapped_column(Text)
    message_id: Mapped[str | None] = mapped_column(String(255))
    source: Mapped[str] = mapped_column(String(32))  # smtp (a reply at send time), ...
    report_id: Mapped[str | None] = mapped_column(String(255))  # a mailed report's id
