"""Signed tokens for the links in every email (preferences, unsubscribe, topic, confirm).

Tokens are itsdangerous ``URLSafeTimedSerializer`` tokens, one salt per purpose, so a
token made for one purpose never verifies for another. Key rotation follows
``settings.secret_keys``: the first key signs, every key verifies.

Two changes to the stock serializer keep signing cheap enough to run once per recipient
(see ``bench/bench_personalise.py``) while staying readable by a plain
``URLSafeTimedSerializer``:

- payloads are never zlib-compressed: they are a few bytes, compression never wins, and
  the attempt alone cost ~20 µs a token;
- the derived HMAC key is computed once per (key, purpose), not once per token.

The payload names the subscriber: an int id (the store's primary key) or, before the
store exists, an email address. The link layout is :mod:`newsletter.rules.links`.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from itsdangerous import BadData, SignatureExpired, TimestampSigner, URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode, int_to_bytes

from newsletter.errors import MissingSettingError, NewsletterError
from newsletter.rules.links import LINK_PATHS, page_url

if TYPE_CHECKING:
    from newsletter.config import Settings

PURPOSES = tuple(LINK_PATHS)


Payload = int | str

# The clock tokens are stamped with; tests fix it (see :func:`fixed_clock`) so rendered
# golden files are byte-for-byte stable.
_clock: Callable[[], float] = time.time


class BadTokenError(NewsletterError):
    """A token was tampered with, is for another purpose, or was signed by an unknown key."""

    def __init__(self, message: str = "this link is not valid", hint: str | None = None) -> None:
        super().__init__(
            message,
            hint=hint or "the link may be incomplete: copy the whole address from the email",
        )


class ExpiredTokenError(BadTokenError):
    """A token is genuine but older than the allowed age."""

    def __init__(self) -> None:
        super().__init__("this link has expired", hint="ask for a new link")


class _Signer(TimestampSigner):
    """A timestamp signer that caches its derived key and reads the module clock."""

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        return _derived_key(
            self.secret_keys[-1] if secret_key is None else secret_key,
            self.salt,
            self.key_derivation,
        )

    def get_timestamp(self) -> int:
        return int(_clock())


@lru_cache(maxsize=64)
def _derived_key(secret_key: str | bytes, salt: str | bytes, derivation: str) -> bytes:
    return TimestampSigner(secret_key, salt=salt, key_derivation=derivation).derive_key()


class _Serializer(URLSafeTimedSerializer):
    default_signer = _Signer

    def dump_payload(self, obj: Any) -> bytes:
        # Never compressed (see the module docstring); loads() reads both forms.
        return base64_encode(self.serializer.dumps(obj, **self.serializer_kwargs).encode())


@lru_cache(maxsize=32)
def _serializer(keys: tuple[str, ...], purpose: str) -> _Serializer:
    # itsdangerous signs with the LAST key of the list; our settings put the signing key first.
    return _Serializer(list(reversed(keys)), salt=f"newsletter.{purpose}")


def _check_purpose(purpose: str) -> None:
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r}; one of {PURPOSES}")


def _keys(settings: Settings) -> tuple[str, ...]:
    keys = tuple(settings.secret_keys)
    if not keys:
        settings.require("secret_key", "to sign the links in emails")
    return keys


def make_token(settings: Settings, purpose: str, payload: Payload) -> str:
    """Sign ``payload`` (a subscriber id or email address) for ``purpose``.

    Builds exactly the token ``URLSafeTimedSerializer.dumps`` would (uncompressed), with the
    HMAC computed by :func:`hmac.digest` on a cached key: itsdangerous' own path costs
    several times more, and this runs three times per recipient of every send.
    """
    key = _signing_key(settings.secret_key, purpose)
    value = (
        base64_encode(_json_compact(payload)) + b"." + base64_encode(int_to_bytes(int(_clock())))
    )
    return (value + b"." + base64_encode(hmac.digest(key, value, "sha1"))).decode("ascii")


def _json_compact(payload: Payload) -> bytes:
    # Same bytes as itsdangerous' compact JSON for an int or a str, without its overhead.
    if isinstance(payload, int) and not isinstance(payload, bool):
        return str(payload).encode()
    if isinstance(payload, str):
        return json.dumps(payload).encode()
    raise TypeError("a token payload is a subscriber id (int) or an email address (str)")


@lru_cache(maxsize=32)
def _signing_key(secret_key: str, purpose: str) -> bytes:
    _check_purpose(purpose)
    keys = [k.strip() for k in secret_key.split(",") if k.strip()]
    if not keys:
        raise MissingSettingError("secret_key", "to sign the links in emails")
    signer = _serializer(tuple(keys), purpose).make_signer()
    return signer.derive_key()


def read_token(settings: Settings, purpose: str, token: str, max_age: int | None = None) -> Payload:
    """The payload of ``token``; :class:`BadTokenError` if forged, altered or for another
    purpose, :class:`ExpiredTokenError` if older than ``max_age`` seconds."""
    _check_purpose(purpose)
    try:
        payload = _serializer(_keys(settings), purpose).loads(token, max_age=max_age)
    except SignatureExpired:
        raise ExpiredTokenError() from None
    except BadData:
        raise BadTokenError() from None
    if isinstance(payload, bool) or not isinstance(payload, int | str):
        raise BadTokenError()
    return payload


def signed_url(settings: Settings, purpose: str, payload: Payload, **parts: str) -> str:
    """The absolute address of a fresh signed link, e.g. ``{base_url}/unsubscribe/{token}``."""
    return page_url(settings.base_url, purpose, make_token(settings, purpose, payload), **parts)


@contextmanager
def fixed_clock(timestamp: float) -> Iterator[None]:
    """Stamp (and check) tokens at ``timestamp`` inside the block: for reproducible output."""
    global _clock
    saved = _clock
    _clock = lambda: timestamp  # noqa: E731
    try:
        yield
    finally:
        _clock = saved


# --- VERP tags ---------------------------------------------------------------------------

_VERP_SALT = b"newsletter.verp"


def _verp_mac(key: str, month: str, subscriber_id: int) -> str:
    mac = hmac.new(key.encode(), _VERP_SALT + f":{month}:{subscriber_id}".encode(), "sha256")
    return mac.hexdigest()[:10]


def verp_tag(settings: Settings, month: str, subscriber_id: int) -> str:
    """The tag of a message's envelope sender (``bounces+TAG@domain``): the issue month,
    the subscriber id and 40 bits of HMAC, in lower-case letters and digits only (mail
    systems may change the case of a local part), e.g. ``202611-17-3fa9c2d1e0``."""
    key = _keys(settings)[0]
    return f"{month.replace('-', '')}-{subscriber_id}-{_verp_mac(key, month, subscriber_id)}"


def read_verp_tag(settings: Settings, tag: str) -> tuple[str, int] | None:
    """(month, subscriber id) of a genuine tag (any current key); None for anything else."""
    parts = tag.strip().lower().split("-")
    if len(parts) != 3 or not all(p.isalnum() for p in parts):
        return None
    raw_month, raw_id, mac = parts
    if len(raw_month) != 6 or not raw_month.isdigit() or not raw_id.isdigit():
        return None
    month, subscriber_id = f"{raw_month[:4]}-{raw_month[4:]}", int(raw_id)
    if not 1 <= subscriber_id < 2**63:
        return None
    for key in _keys(settings):
        if hmac.compare_digest(mac, _verp_mac(key, month, subscriber_id)):
            return month, subscriber_id
    return None


def verp_address(bounce_address: str, tag: str) -> str:
    """``local+TAG@domain`` for the bounce address ``local@domain``."""
    local, _, domain = bounce_address.rpartition("@")
    return f"{local}+{tag}@{domain}"
