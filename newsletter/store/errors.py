"""Exceptions of the subscriber store; each carries a hint for the administrator."""

from __future__ import annotations

from newsletter.errors import NewsletterError


class StoreError(NewsletterError):
    """Something about the subscriber store the administrator can fix."""


class StoreUnavailableError(StoreError):
    """The database cannot be reached or opened."""


class StoreNotMigratedError(StoreError):
    """The database exists but its tables are missing or out of date."""


class SubscriberNotFoundError(StoreError):
    """No subscriber with that address."""

    def __init__(self, email: str) -> None:
        super().__init__(
            f"no subscriber {email!r}",
            hint="check the spelling, or find them with `newsletter subscribers list --search ...`",
        )
        self.email = email


class SubscriberExistsError(StoreError):
    """The address is already in the store."""


class SuppressedError(StoreError):
    """The address was erased and is on the suppression list."""


class SendNotFoundError(StoreError):
    """No send has been planned for that issue."""


class SendFinishedError(StoreError):
    """The send is over (done or cancelled): it cannot be changed any more."""


class StoreLockedError(StoreUnavailableError):
    """SQLite: another process held the write lock longer than the busy timeout."""


class ConnectionLostError(StoreUnavailableError):
    """PostgreSQL: the connection to the server was lost in the middle of a command."""
