"""The subscriber store: subscribers, their topics, consent log and suppression list.

The only package that talks SQL. Everything public is re-exported here; results are plain
dataclasses (:mod:`newsletter.store.views`), never ORM rows.

    from newsletter.store import open_store, add_subscriber
    with open_store(settings) as store:
        add_subscriber(store, "ann@example.org", topics="CBT; Alliance")
"""

from __future__ import annotations

from newsletter.store.csvio import export_csv, import_csv
from newsletter.store.db import (
    MigrationStatus,
    Store,
    database_status,
    normalise_url,
    open_store,
    upgrade_database,
)
from newsletter.store.errors import (
    CsvError,
    InvalidEmailError,
    StoreError,
    StoreNotMigratedError,
    StoreUnavailableError,
    SubscriberExistsError,
    SubscriberNotFoundError,
    SubscriberStateError,
    SuppressedError,
)
from newsletter.store.operations import (
    add_subscriber,
    add_topics,
    confirm,
    erase,
    get_subscriber,
    get_subscriber_by_id,
    is_suppressed,
    issue_stats,
    list_subscribers,
    normalise_email,
    pause,
    remove_topics,
    resolve_topics,
    resume,
    set_topics,
    stats,
    topic_counts,
    unsubscribe,
)
from newsletter.store.views import (
    ConsentEvent,
    ImportReport,
    IssueStats,
    RowProblem,
    Stats,
    SubscriberFilter,
    SubscriberPage,
    SubscriberView,
    TopicCounts,
)

__all__ = [
    "ConsentEvent",
    "CsvError",
    "ImportReport",
    "InvalidEmailError",
    "IssueStats",
    "MigrationStatus",
    "RowProblem",
    "Stats",
    "Store",
    "StoreError",
    "StoreNotMigratedError",
    "StoreUnavailableError",
    "SubscriberExistsError",
    "SubscriberFilter",
    "SubscriberNotFoundError",
    "SubscriberPage",
    "SubscriberStateError",
    "SubscriberView",
    "SuppressedError",
    "TopicCounts",
    "add_subscriber",
    "add_topics",
    "confirm",
    "database_status",
    "erase",
    "export_csv",
    "get_subscriber",
    "get_subscriber_by_id",
    "import_csv",
    "is_suppressed",
    "issue_stats",
    "list_subscribers",
    "normalise_email",
    "normalise_url",
    "open_store",
    "pause",
    "remove_topics",
    "resolve_topics",
    "resume",
    "set_topics",
    "stats",
    "topic_counts",
    "unsubscribe",
    "upgrade_database",
]
