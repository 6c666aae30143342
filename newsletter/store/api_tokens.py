"""The API tokens table: who may use the JSON API.

Persistence only. The token itself never reaches this module: callers pass its hash
(:mod:`newsletter.services.api_tokens` makes and hashes tokens).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError

from newsletter.store.db import Store
from newsletter.store.errors import StoreError
from newsletter.store.models import ApiToken
from newsletter.store.views import ApiTokenView

#: ``last_used_at`` is written at most this often per token, so that reading through the
#: API does not turn every request into a write.
TOUCH_EVERY = dt.timedelta(minutes=1)


class ApiTokenExistsError(StoreError):
    """A token of that name exists already."""


class ApiTokenNotFoundError(StoreError):
    """No token of that name."""


def _view(row: ApiToken) -> ApiTokenView:
    return ApiTokenView(
        id=row.id,
        name=row.name,
        read_only=row.read_only,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )


def insert_token(
    store: Store, name: str, token_hash: str, read_only: bool, now: dt.datetime
) -> ApiTokenView:
    """Store a new token by its hash; :class:`ApiTokenExistsError` if the name is taken."""
    try:
        with store.transaction() as s:
            row = ApiToken(name=name, token_hash=token_hash, read_only=read_only, created_at=now)
            s.add(row)
            s.flush()
            return _view(row)
    except IntegrityError:
        raise ApiTokenExistsError(
            f"an API token named {name!r} exists already",
            hint="choose another name, or revoke it first with `newsletter api-token revoke`",
        ) from None


def list_tokens(store: Store) -> list[ApiTokenView]:
    """Every token, revoked ones too, by name."""
    with store.transaction() as s:
        return [_view(r) for r in s.scalars(select(ApiToken).order_by(ApiToken.name))]


def revoke_token(store: Store, name: str, now: dt.datetime) -> ApiTokenView:
    """Mark the token ``name`` revoked (a second revoke keeps the first time)."""
    with store.transaction() as s:
        row = s.scalar(select(ApiToken).where(ApiToken.name == name))
        if row is None:
            raise ApiTokenNotFoundError(
                f"no API token named {name!r}", hint="see them with `newsletter api-token list`"
            )
        if row.revoked_at is None:
            row.revoked_at = now
        return _view(row)


def use_token(store: Store, token_hash: str, now: dt.datetime) -> ApiTokenView | None:
    """The token with this hash (None if there is none), noting that it was used now.

    The time is written only when the last one is older than :data:`TOUCH_EVERY`.
    """
    with store.transaction() as s:
        row = s.scalar(select(ApiToken).where(ApiToken.token_hash == token_hash))
        if row is None:
            return None
        view = _view(row)
    if view.revoked_at is None and (
        view.last_used_at is None or view.last_used_at <= now - TOUCH_EVERY
    ):
        with store.transaction() as s:
            s.execute(
                update(ApiToken)
                .where(
                    ApiToken.id == view.id,
                    or_(
                        ApiToken.last_used_at.is_(None), ApiToken.last_used_at <= now - TOUCH_EVERY
                    ),
                )
                .values(last_used_at=now)
            )
    return view
