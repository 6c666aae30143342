"""What kind of failure a :class:`~newsletter.errors.NewsletterError` is.

Entry points that answer with a status code (the JSON API) ask :func:`classify` instead
of knowing the store's, the rules' and the services' exception classes one by one. The
CLI needs none of this: it prints every error with its hint the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from newsletter.errors import (
    ConfigError,
    IssueFormatError,
    IssueNotFoundError,
    NewsletterError,
    UnknownTopicError,
)
from newsletter.render.errors import TemplateError
from newsletter.rules.addresses import InvalidAddressError
from newsletter.rules.months import BadMonthError
from newsletter.rules.names import InvalidNameError
from newsletter.rules.statuses import BadDateError, SubscriberStateError
from newsletter.services.api_tokens import BadTokenNameError
from newsletter.services.issues import SendRefusedError
from newsletter.store.api_tokens import ApiTokenExistsError, ApiTokenNotFoundError
from newsletter.store.errors import (
    SendFinishedError,
    SendNotFoundError,
    StoreNotMigratedError,
    StoreUnavailableError,
    SubscriberExistsError,
    SubscriberNotFoundError,
    SuppressedError,
)

__all__ = ["CONFLICT", "INVALID", "NOT_FOUND", "SERVER", "UNAVAILABLE", "ErrorKind", "classify"]

NOT_FOUND = "not_found"  # what was named does not exist
CONFLICT = "conflict"  # the request is fine, but the current state refuses it
INVALID = "invalid"  # a value of the request cannot be used
UNAVAILABLE = "unavailable"  # the store cannot be reached now: try again later
SERVER = "server"  # the set-up is wrong (settings, templates): the administrator's to fix


@dataclass(frozen=True)
class ErrorKind:
    """The kind of an error and, for invalid input, the request field it is about."""

    kind: str
    field: str | None = None


_KINDS: tuple[tuple[type[NewsletterError], ErrorKind], ...] = (
    (SubscriberNotFoundError, ErrorKind(NOT_FOUND)),
    (SendNotFoundError, ErrorKind(NOT_FOUND)),
    (IssueNotFoundError, ErrorKind(NOT_FOUND)),
    (ApiTokenNotFoundError, ErrorKind(NOT_FOUND)),
    (SubscriberExistsError, ErrorKind(CONFLICT)),
    (SuppressedError, ErrorKind(CONFLICT)),
    (SubscriberStateError, ErrorKind(CONFLICT)),
    (SendRefusedError, ErrorKind(CONFLICT)),
    (SendFinishedError, ErrorKind(CONFLICT)),
    (IssueFormatError, ErrorKind(CONFLICT)),
    (ApiTokenExistsError, ErrorKind(CONFLICT)),
    (StoreUnavailableError, ErrorKind(UNAVAILABLE)),
    (StoreNotMigratedError, ErrorKind(SERVER)),
    (ConfigError, ErrorKind(SERVER)),
    (TemplateError, ErrorKind(SERVER)),
    (UnknownTopicError, ErrorKind(INVALID, "topics")),
    (InvalidAddressError, ErrorKind(INVALID, "email")),
    (InvalidNameError, ErrorKind(INVALID, "name")),
    (BadDateError, ErrorKind(INVALID, "paused_until")),
    (BadMonthError, ErrorKind(INVALID, "month")),
    (BadTokenNameError, ErrorKind(INVALID, "name")),
)


def classify(exc: NewsletterError) -> ErrorKind:
    """The kind of ``exc`` (the first class of the table it is an instance of); any other
    error of the library is taken as invalid input."""
    for cls, kind in _KINDS:
        if isinstance(exc, cls):
            return kind
    return ErrorKind(INVALID)
