"""The JSON API's request and response bodies, as pydantic models.

The same classes validate what a client sends (:mod:`newsletter.web.api.registry` parses
every body and query string with them) and describe it in ``/api/v1/openapi.json``
(:mod:`newsletter.web.api.openapi` asks each for its JSON Schema), so the description
cannot drift from what the server accepts. Request models forbid unknown members: a
misspelt field is an error, not a silent no-op.

Rules about values (is this a deliverable address? a known topic? may this person be
paused?) are not repeated here: the services decide them and their errors come back as
422 or 409 problems. The models check only shape: types, lengths, known enum values.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

SubscriberStatus = Literal["pending", "active", "paused", "unsubscribed", "bounced"]
ChangeableStatus = Literal["active", "paused", "unsubscribed"]
DeliveryStatus = Literal["pending", "sending", "sent", "skipped", "failed"]
SendState = Literal["planned", "sending", "paused", "done", "cancelled"]
TopicName = Annotated[str, Field(min_length=1, max_length=200)]

MAX_PAGE = 200
DEFAULT_PAGE = 50


class Request(BaseModel):
    """A request body or query string: unknown members are refused."""

    model_config = ConfigDict(extra="forbid")


# --- requests ----------------------------------------------------------------------------


class SubscriberCreate(Request):
    """A new subscriber. Without ``topics`` (or with ``["all"]``) they get every topic."""

    email: str = Field(min_length=3, max_length=320, examples=["ann@example.org"])
    name: str = Field("", max_length=200)
    topics: list[TopicName] | None = Field(
        None,
        max_length=36,
        description="Topic slugs, names or aliases (GET /api/v1/topics lists them).",
    )
    double_opt_in: bool = Field(
        False,
        description="Add them as pending and email them a confirmation link; they get "
        "no issue until they confirm. False: added as active at once (you have their "
        "consent).",
    )
    resubscribe: bool = Field(
        False,
        description="Bring back someone who unsubscribed or was erased (only when they "
        "asked to come back).",
    )


class SubscriberUpdate(Request):
    """Changes to one subscriber; members left out stay as they are."""

    name: str | None = Field(None, max_length=200)
    topics: list[TopicName] | None = Field(None, min_length=1, max_length=36)
    all_topics: bool | None = Field(None, description="True: every topic, now and later.")
    status: ChangeableStatus | None = Field(
        None,
        description="active: confirm a pending person, resume a paused one or bring back "
        "one who unsubscribed; paused: until paused_until (or until resumed); "
        "unsubscribed: leave at once (queued mail is skipped).",
    )
    paused_until: dt.date | None = Field(None, description="With status paused: YYYY-MM-DD.")


class SubscriberQuery(Request):
    """The filters and page of ``GET /api/v1/subscribers``."""

    status: SubscriberStatus | None = None
    topic: str | None = Field(None, max_length=200, description="A slug or name.")
    created_since: dt.datetime | None = Field(
        None, description="Added at or after this time (ISO 8601; without offset: UTC)."
    )
    cursor: str | None = Field(None, max_length=64, description="next_cursor of a page.")
    limit: int = Field(DEFAULT_PAGE, ge=1, le=MAX_PAGE)


class DeliveryQuery(Request):
    """The filter and page of ``GET /api/v1/sends/{month}/deliveries``."""

    status: DeliveryStatus | None = None
    cursor: str | None = Field(None, max_length=64, description="next_cursor of a page.")
    limit: int = Field(DEFAULT_PAGE, ge=1, le=MAX_PAGE)


# --- responses ---------------------------------------------------------------------------


class Subscriber(BaseModel):
    """One subscriber."""

    id: int
    email: str
    name: str
    status: SubscriberStatus
    all_topics: bool
    topics: list[str] = Field(description="Topic slugs (empty when all_topics).")
    paused_until: dt.date | None
    source: str
    created_at: dt.datetime
    confirmed_at: dt.datetime | None
    unsubscribed_at: dt.datetime | None


class SubscriberPage(BaseModel):
    """One page of subscribers, oldest first; follow ``next_cursor`` until it is null."""

    items: list[Subscriber]
    next_cursor: str | None


class Erasure(BaseModel):
    """What erasing a subscriber did."""

    email: str
    erased: bool
    log_cleared: bool = Field(
        description="False only on SQLite when another process kept old copies of the "
        "rows in the write-ahead log; they go when the last process closes the database."
    )


class Topic(BaseModel):
    """One topic of the taxonomy and how many receiving subscribers chose it."""

    slug: str
    name: str
    subscribers: int = Field(description="Receiving subscribers who chose it explicitly.")


class TopicList(BaseModel):
    """The 36 topics; ``all_topics`` receiving subscribers take every one."""

    items: list[Topic]
    all_topics: int


class IssueListItem(BaseModel):
    """One issue file and how far its send got."""

    month: str
    valid: bool
    errors: int
    warnings: int
    status: str | None = Field(description="draft, ready or published; null if invalid.")
    subject: str | None
    summaries: int
    send_status: SendState | None
    sent: int


class IssueList(BaseModel):
    """Every issue file, newest first."""

    items: list[IssueListItem]


class IssueSummary(BaseModel):
    """One research summary of an issue (Markdown texts as written)."""

    key: str
    title: str
    topics: list[str] = Field(description="Topic slugs.")
    research: str | None
    citation: str | None
    link: str | None
    body: str
    implications: str


class Issue(BaseModel):
    """A parsed issue file."""

    month: str
    status: str
    subject: str
    intro: str | None
    summaries: list[IssueSummary]


class Variant(BaseModel):
    """One variant of an issue: the summaries a group of readers gets."""

    name: str
    summaries: list[str] = Field(description="Keys of its summaries, in order.")
    titles: list[str]
    subject: str
    subscribers: int | None = Field(description="Receiving subscribers who would get it now.")
    html_bytes: int
    text_bytes: int


class VariantList(BaseModel):
    """Every variant of an issue."""

    month: str
    items: list[Variant]


class SendStatus(BaseModel):
    """The state of one send and the counts of its deliveries."""

    month: str
    status: SendState
    subject: str
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    paused_reason: str | None
    finished: bool
    total: int
    outstanding: int
    sent: int
    retrying: int
    counts: dict[str, int] = Field(description="Deliveries by status.")
    skipped: dict[str, int] = Field(description="Skipped deliveries by reason.")


class SendList(BaseModel):
    """Every planned send, newest month first."""

    items: list[SendStatus]


class Delivery(BaseModel):
    """One delivery of a send: one message to one subscriber."""

    id: int
    email: str
    status: DeliveryStatus
    variant: str | None
    attempts: int
    skip_reason: str | None
    last_reply: str | None
    message_id: str | None
    sent_at: dt.datetime | None
    next_attempt_at: dt.datetime | None


class DeliveryPage(BaseModel):
    """One page of a send's deliveries; follow ``next_cursor`` until it is null."""

    items: list[Delivery]
    next_cursor: str | None


class SubscriberCounts(BaseModel):
    """Subscribers by status."""

    total: int
    by_status: dict[str, int]
    receiving: int = Field(description="Active, or paused with a pause that has ended.")
    all_topics: int = Field(description="Receiving subscribers who take every topic.")


class SendCounts(BaseModel):
    """One send in the statistics."""

    month: str
    status: SendState
    sent: int
    outstanding: int
    total: int


class Stats(BaseModel):
    """Counts over the whole list. Further sections (reports) may be added; clients
    should ignore members they do not know."""

    subscribers: SubscriberCounts
    topics: dict[str, int] = Field(description="Topic slug -> receiving subscribers.")
    sends: list[SendCounts]


class ReportQuery(Request):
    """The period of ``GET /api/v1/report``."""

    since: dt.date | None = Field(None, description="First day (default: a year ago).")


class Report(BaseModel):
    """The figures of ``newsletter report`` (the same as its ``--json``): subscribers by
    status over time, per topic, each issue's reach and what followed it, sign-ups per
    week, and notes on what the figures cannot show."""

    generated_at: dt.datetime
    since: dt.date
    statuses: list[dict[str, object]] = Field(description="Counts by status at points in time.")
    topics: list[dict[str, object]] = Field(description="Per topic: now, at the last issue.")
    last_issue: str | None
    issues: list[dict[str, object]] = Field(description="Per issue: readers, reach, after.")
    signups: list[dict[str, object]] = Field(description="New subscribers per week.")
    notes: list[str]


class FieldError(BaseModel):
    """One wrong value of a request."""

    detail: str
    pointer: str | None = Field(
        None, description="JSON Pointer (RFC 6901) to the member of the body, as '#/email'."
    )
    parameter: str | None = Field(None, description="The query or path parameter.")


class Problem(BaseModel):
    """An error, as RFC 9457 problem details (``application/problem+json``)."""

    type: str = Field(description="A URI naming the kind of problem.")
    title: str
    status: int
    detail: str
    instance: str | None = None
    hint: str | None = Field(None, description="How to fix it, when known.")
    errors: list[FieldError] | None = Field(None, description="Each wrong value.")
