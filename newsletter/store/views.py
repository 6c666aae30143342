"""Plain dataclasses the store hands out (never ORM rows)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field


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
class SubscriberFilter:
    """What ``list_subscribers`` shows. ``topic`` also matches all-topics subscribers."""

    topic: str | None = None  # slug or name
    status: str | None = None
    search: str | None = None  # part of the address or the name, any case


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
class RowProblem:
    """One CSV row that was not imported, with its physical line number."""

    line: int
    email: str
    reason: str


@dataclass
class ImportReport:
    """What an import did (or, with ``dry_run``, would do)."""

    rows: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0  # already in the store and skipped, or updated to the same values
    resubscribed: int = 0
    errors: list[RowProblem] = field(default_factory=list)
    skipped: list[RowProblem] = field(default_factory=list)  # not faults: e.g. suppressed
    dry_run: bool = False
    atomic_aborted: bool = False  # --atomic and some row was bad: nothing was imported

    def to_dict(self) -> dict[str, object]:
        """A JSON-able dict."""
        return {
            "rows": self.rows,
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "resubscribed": self.resubscribed,
            "errors": [vars(p) for p in self.errors],
            "skipped": [vars(p) for p in self.skipped],
            "dry_run": self.dry_run,
            "atomic_aborted": self.atomic_aborted,
        }


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
