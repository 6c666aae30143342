"""Signed tokens: round trips, purposes, tampering, expiry, key rotation."""

from __future__ import annotations

import pytest
from itsdangerous import URLSafeTimedSerializer

from newsletter.errors import MissingSettingError
from newsletter.rules.links import page_url
from newsletter.tokens import (
    PURPOSES,
    BadTokenError,
    ExpiredTokenError,
    fixed_clock,
    make_token,
    read_token,
    signed_url,
)


@pytest.mark.parametrize("payload", [42, "someone@example.org"])
@pytest.mark.parametrize("purpose", PURPOSES)
def test_round_trip(settings, purpose, payload):
    token = make_token(settings, purpose, payload)
    assert read_token(settings, purpose, token) == payload


def test_token_for_one_purpose_fails_for_another(settings):
    token = make_token(settings, "preferences", 7)
    for other in ("unsubscribe", "topic", "confirm", "signup"):
        with pytest.raises(BadTokenError):
            read_token(settings, other, token)


@pytest.mark.parametrize(
    "mangle",
    [
        # signature changed (not its last character, whose low bits are only padding)
        lambda t: t[:-10] + ("A" if t[-10] != "A" else "B") + t[-9:],
        lambda t: "OQ" + t[2:],  # payload changed
        lambda t: t[:10],  # cut short
        lambda t: "",
        lambda t: "not-a-token",
    ],
)
def test_tampered_token_is_rejected(settings, mangle):
    token = make_token(settings, "unsubscribe", 7)
    with pytest.raises(BadTokenError) as info:
        read_token(settings, "unsubscribe", mangle(token))
    assert info.value.hint


def test_expired_token(settings):
    with fixed_clock(1_000_000):
        token = make_token(settings, "confirm", "a@example.org")
    with fixed_clock(1_000_000 + 3600):
        assert read_token(settings, "confirm", token, max_age=7200) == "a@example.org"
    with fixed_clock(1_000_000 + 7201), pytest.raises(ExpiredTokenError):
        read_token(settings, "confirm", token, max_age=7200)


def test_key_rotation_first_signs_all_verify(make_settings):
    old = make_settings(secret_key="old-key")
    rotated = make_settings(secret_key="new-key, old-key")
    new_only = make_settings(secret_key="new-key")
    old_token = make_token(old, "preferences", 5)
    assert read_token(rotated, "preferences", old_token) == 5  # old links still work
    new_token = make_token(rotated, "preferences", 5)
    assert read_token(new_only, "preferences", new_token) == 5  # signed with the first key
    with pytest.raises(BadTokenError):
        read_token(old, "preferences", new_token)
    with pytest.raises(BadTokenError):
        read_token(new_only, "preferences", old_token)  # old key retired


def test_tokens_are_plain_itsdangerous_tokens(settings):
    token = make_token(settings, "topic", 99)
    stock = URLSafeTimedSerializer(settings.secret_keys, salt="newsletter.topic")
    assert stock.loads(token) == 99


def test_payload_of_other_type_is_rejected(settings):
    stock = URLSafeTimedSerializer(settings.secret_keys, salt="newsletter.topic")
    with pytest.raises(BadTokenError):
        read_token(settings, "topic", stock.dumps({"id": 1}))


def test_missing_secret_key_is_a_clear_error(make_settings):
    with pytest.raises(MissingSettingError, match="secret_key"):
        make_token(make_settings(secret_key=""), "unsubscribe", 1)


def test_secret_never_in_error_message(settings):
    with pytest.raises(BadTokenError) as info:
        read_token(settings, "unsubscribe", "garbage.token.here")
    assert settings.secret_key not in str(info.value) + (info.value.hint or "")


def test_link_layout(settings):
    base = settings.base_url
    assert page_url(base, "topic", "TOK", slug="empathy") == (
        "https://news.example.org/topic/TOK/empathy"
    )
    assert page_url(base, "unsubscribe", "TOK") == "https://news.example.org/unsubscribe/TOK"
    prefix = "https://news.example.org/unsubscribe/"
    url = signed_url(settings, "unsubscribe", 7)
    assert url.startswith(prefix) and read_token(settings, "unsubscribe", url[len(prefix) :]) == 7


def test_non_ascii_email_payload_round_trips(settings):
    token = make_token(settings, "confirm", "zoë@example.org")
    assert read_token(settings, "confirm", token) == "zoë@example.org"
    stock = URLSafeTimedSerializer(settings.secret_keys, salt="newsletter.confirm")
    assert stock.loads(token) == "zoë@example.org"


def test_tokens_differ_per_subscriber_and_purpose(settings):
    tokens = {make_token(settings, p, s) for p in PURPOSES for s in (1, 2, "a@example.org")}
    assert len(tokens) == 3 * len(PURPOSES)
