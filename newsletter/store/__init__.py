"""The store: the only package that talks SQL. Persistence only, one module per table group.

- :mod:`~newsletter.store.db`: URLs, engines, the open :class:`Store`, Alembic migrations;
- :mod:`~newsletter.store.subscribers`: subscribers, topics, consent log, suppression list;
- :mod:`~newsletter.store.signups`: sign-up requests waiting for the owner's confirmation;
- :mod:`~newsletter.store.ledger`: sends, their snapshots and their deliveries;
- :mod:`~newsletter.store.schedules`: requested schedules, firings, the scheduler lease;
- :mod:`~newsletter.store.views`: the plain dataclasses handed out (never ORM rows);
- :mod:`~newsletter.store.backup`: every table dumped, restored or copied (``db dump``).

What a change means is decided above (services, pure rules); the store applies it in one
transaction. Open it through :class:`newsletter.services.App`::

    with App(settings) as app:
        subscribers.get_subscriber(app.store, "ann@example.org")
"""

from __future__ import annotations

from newsletter.store.db import (
    MigrationStatus,
    Store,
    database_status,
    normalise_url,
    open_store,
    upgrade_database,
)
from newsletter.store.errors import (
    SendNotFoundError,
    StoreError,
    StoreNotMigratedError,
    StoreUnavailableError,
    SubscriberExistsError,
    SubscriberNotFoundError,
    SuppressedError,
)

__all__ = [
    "MigrationStatus",
    "SendNotFoundError",
    "Store",
    "StoreError",
    "StoreNotMigratedError",
    "StoreUnavailableError",
    "SubscriberExistsError",
    "SubscriberNotFoundError",
    "SuppressedError",
    "database_status",
    "normalise_url",
    "open_store",
    "upgrade_database",
]
