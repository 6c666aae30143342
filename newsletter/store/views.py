"""Plain dataclasses the store hands out (never ORM rows)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True)
class ConsentEvent:
    """One line of a subscriber's consent log."""

    at: dt.datetime
    event: str
    source: str
    ip: str | None = None
    consent_version: str | None = None
    detail: str | None = None


@dataclass(frozen=True)
class SubscriberView:
    """A subscriber as the rest of the program sees it. ``topics`` are slugs, sorted."""

    id: int
    email: str
    name: str
    status: str
    all_topics: bool
    topics: tuple[str, ...]
    paused_until: dt.date | None
    source: str
    created_at: dt.datetime
    confirmed_at: dt.datetime | None
    unsubscribed_at: dt.datetime | None
    events: tuple[ConsentEvent, ...] = ()  # filled only by get_subscriber(history=True)

    def to_dict(self) -> dict[str, object]:
        """A JSON-able dict (dates as ISO 8601)."""
        return {
            "email": self.email,
            "name": self.name,
            "status": self.status,
            "all_topics": self.all_topics,
            "topics": list(self.topics),
            "paused_until": self.paused_until.isoformat() if self.paused_until else None,
            "source": self.source,
            "created_at": self.created_at.isoformat(),
            "confirmed_at": self.confirmed_at.isoformat() if self.confirmed_at else None,
            "unsubscribed_at": (self.unsubscribed_at.isoformat() if self.unsubscribed_at else None),
        }


@dataclass(frozen=True)
class StatusResult:
    """What a change that stops someone's mail did.

    ``subscriber`` is the person after it, ``changed`` False when there was nothing to do,
    ``on_wire`` True when, as it committed, a message to them was on the wire of a live
    worker: the one thing left to wait for (no other message to them can start).
    """

    subscriber: SubscriberView
    changed: bool
    on_wire: bool


@dataclass(frozen=True)
class Erasure:
    """What :func:`newsletter.store.subscribers.erase` did.

    ``log_cleared`` is False only on SQLite, when another process kept the write-ahead log
    busy so that it could not be emptied: old copies of the erased rows may stay in the
    ``-wal`` file until the last process using the database closes it.
    """

    email: str
    log_cleared: bool = True


@dataclass(frozen=True)
class SubscriberFilter:
    """What ``list_subscribers`` shows. ``topic`` also matches all-topics subscribers."""

    topic: str | None = None  # a topic slug
    status: str | None = None
    search: str | None = None  # part of the address or the name, any case
    created_since: dt.datetime | None = None  # added at or after this time


@dataclass(frozen=True)
class SubscriberPage:
    """One page of a listing and the total number of matches."""

    items: tuple[SubscriberView, ...]
    total: int
    page: int
    page_size: int

    @property
    def pages(self) -> int:
        """How many pages there are (at least 1)."""
        return max(1, -(-self.total // self.page_size))


@dataclass(frozen=True)
class SubscriberSlice:
    """Subscribers in id order after a given id (keyset paging: rows added meanwhile
    come after the ones already seen, so none is shown twice or skipped)."""

    items: tuple[SubscriberView, ...]
    more: bool  # whether rows follow the last of ``items``


@dataclass(frozen=True)
class ApiTokenView:
    """One API token as the rest of the program sees it (never the token itself)."""

    id: int
    name: str
    read_only: bool
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None

    @property
    def revoked(self) -> bool:
        """True once revoked: it opens nothing any more."""
        return self.revoked_at is not None


@dataclass(frozen=True)
class Stats:
    """Counts by status and, among receiving subscribers, by topic."""

    total: int
    by_status: dict[str, int]
    receiving: int  # active, or paused with a pause that has ended
    all_topics: int  # receiving subscribers who take every topic
    by_topic: dict[str, int]  # slug -> receiving subscribers who chose it explicitly


@dataclass(frozen=True)
class IssueStats:
    """How many receiving subscribers would get 0, 1, 2, ... of an issue's summaries."""

    month: str
    summaries: tuple[str, ...]  # titles
    receiving: int
    histogram: dict[int, int]  # number of matching summaries -> subscribers
    per_summary: tuple[int, ...]  # subscribers matching each summary


@dataclass(frozen=True)
class TopicCounts:
    """Receiving subscribers per topic (explicit choices); all-topics ones counted apart."""

    by_topic: dict[str, int]
    all_topics: int


# --- the snapshot of a send --------------------------------------------------------------


@dataclass(frozen=True)
class MessageHeaders:
    """Who a send's messages come from and the list's identity, fixed when it is planned.

    ``list_name`` names the list in List-Id; ``base_url`` is where List-Unsubscribe
    points; an empty ``reply_to`` or ``unsubscribe_mailto`` means none.
    """

    from_name: str
    from_address: str
    reply_to: str = ""
    list_name: str = ""
    unsubscribe_mailto: str = ""
    base_url: str = ""


@dataclass(frozen=True)
class PartContent:
    """One rendered part (``kind`` "html" or "text") split around its personal holes:
    ``segments`` has one more item than ``names``."""

    kind: str
    segments: tuple[str, ...]
    names: tuple[str, ...]


@dataclass(frozen=True)
class VariantContent:
    """One variant of a send as workers build it: bit mask, name, subject and parts."""

    mask: int
    name: str
    subject: str
    web_view_url: str
    html: PartContent
    text: PartContent


@dataclass(frozen=True)
class SummaryInfo:
    """One summary of a planned send: what planning and the send's listings need."""

    key: str
    title: str
    topics: frozenset[str]


@dataclass(frozen=True)
class SendSnapshot:
    """Everything a worker needs to build any message of one revision of a send."""

    send_id: int
    month: str
    revision: int
    content_hash: str
    policy: str
    summaries: tuple[SummaryInfo, ...]
    headers: MessageHeaders
    variants: dict[int, VariantContent]  # mask -> variant

    @property
    def summary_topics(self) -> tuple[frozenset[str], ...]:
        """Each summary's topic slugs, in order."""
        return tuple(s.topics for s in self.summaries)


@dataclass(frozen=True)
class SignupRequestView:
    """A sign-up waiting for the address's owner to confirm. ``topics``: slugs, sorted."""

    id: int
    email: str
    name: str
    all_topics: bool
    topics: tuple[str, ...]
    ip: str | None
    consent_version: str | None
    created_at: dt.datetime
    expires_at: dt.datetime


@dataclass(frozen=True)
class IndexedSummary:
    """One public summary as the archive's search index keeps it (text without markup)."""

    month: str
    key: str
    title: str
    citation: str
    body: str
    implications: str
    topics: tuple[str, ...]  # slugs
    research: str | None  # slug


@dataclass(frozen=True)
class SearchHit:
    """One summary found by a search: where it is and the passage that matched.

    ``snippet`` is plain text; the matched words are between the markers of
    :mod:`newsletter.rules.search_query` (``HIGHLIGHT_START`` and ``HIGHLIGHT_END``).
    """

    month: str
    key: str
    snippet: str


@dataclass(frozen=True)
class SearchResults:
    """One page of hits, best first, and how many summaries match in all."""

    hits: tuple[SearchHit, ...]
    total: int
