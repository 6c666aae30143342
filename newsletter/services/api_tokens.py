"""API tokens: who may call the JSON API, made, listed and revoked by an administrator.

A token is ``nl_`` followed by 43 characters of :func:`secrets.token_urlsafe` (256 random
bits). The prefix lets secret scanners (and people) recognise one in a paste or a
commit. Only the token's SHA-256 is stored: a token that random cannot be guessed from
its hash, so a slow password hash (bcrypt, scrypt) would add nothing but its cost, on
every request; a fast hash also lets a request find its token by an indexed lookup
instead of trying each stored hash in turn. The token is shown once, by
:func:`create_token`, and never logged: logs name a token by its ``name``.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from newsletter.errors import NewsletterError
from newsletter.services.app import App
from newsletter.store import api_tokens as db
from newsletter.store.views import ApiTokenView

__all__ = [
    "TOKEN_PREFIX",
    "ApiTokenView",
    "BadTokenNameError",
    "NewToken",
    "TokenRefusedError",
    "authenticate",
    "create_token",
    "hash_token",
    "list_tokens",
    "revoke_token",
]

TOKEN_PREFIX = "nl_"
_TOKEN = re.compile(r"nl_[A-Za-z0-9_-]{43}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class BadTokenNameError(NewsletterError):
    """A token name that cannot be used."""


class TokenRefusedError(NewsletterError):
    """A request's token opens nothing: missing, malformed, unknown or revoked.

    ``reason`` says which, for the server's log; the client is told only that it is not
    allowed in.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(
            "a valid API token is needed",
            hint="send 'Authorization: Bearer nl_...' with a token from "
            "`newsletter api-token create`",
        )
        self.reason = reason


@dataclass(frozen=True)
class NewToken:
    """A token just made: ``token`` is the secret, to show once and never again."""

    token: str
    view: ApiTokenView


def hash_token(token: str) -> str:
    """The stored form of a token: its SHA-256, in hex."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(app: App, name: str, *, read_only: bool = False) -> NewToken:
    """Make a token called ``name`` (unique; letters, digits, ``.``, ``_``, ``-``).

    Only its hash is stored; the returned :attr:`NewToken.token` is the one copy.
    """
    name = name.strip()
    if not _NAME.fullmatch(name):
        raise BadTokenNameError(
            f"{name!r} cannot name an API token",
            hint="use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or "
            "digit, e.g. crm-sync",
        )
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    view = db.insert_token(app.store, name, hash_token(token), read_only, app.now())
    return NewToken(token, view)


def list_tokens(app: App) -> list[ApiTokenView]:
    """Every token (never the secrets), revoked ones too, by name."""
    return db.list_tokens(app.store)


def revoke_token(app: App, name: str) -> ApiTokenView:
    """Revoke the token ``name``: from now on it opens nothing."""
    return db.revoke_token(app.store, name.strip(), app.now())


def authenticate(app: App, authorization: str | None) -> ApiTokenView:
    """The token an ``Authorization`` header carries (``Bearer nl_...``).

    :class:`TokenRefusedError` when the header is missing, not a bearer token, not
    shaped like one of ours, unknown or revoked. A malformed value is refused before the
    store is asked.
    """
    if not authorization:
        raise TokenRefusedError("no Authorization header")
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise TokenRefusedError("not a Bearer token")
    value = value.strip()
    if not _TOKEN.fullmatch(value):
        raise TokenRefusedError("not an API token")
    view = db.use_token(app.store, hash_token(value), app.now())
    if view is None:
        raise TokenRefusedError("unknown token")
    if view.revoked:
        raise TokenRefusedError(f"revoked token {view.name!r}")
    return view
