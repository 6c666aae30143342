"""Sign-up requests: nothing changes before the owner confirms; expiry, erasure, purging."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from newsletter.config import load_settings
from newsletter.services import App, signup, subscribers
from newsletter.services.subscribers import BadLinkError
from newsletter.store import signups as requests
from newsletter.tokens import fixed_clock, make_token
from tests.support.smtpserver import received

T0 = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
LATER = T0 + dt.timedelta(days=8)  # past the 7 days a request lives


@pytest.fixture
def settings(isolated_env: Path, store_url: str, smtp_server):
    (isolated_env / "newsletter.toml").write_text(
        'newsletter_name = "Research Digest"\n'
        'sender_address = "digest@example.org"\n'
        'postal_address = "1 Example Street, Exampletown"\n'
        'secret_key = "signup-test-key"\n'
        'base_url = "https://news.example.org"\n'
        'consent_version = "v9"\n'
        f'database_url = "{store_url}"\n'
        f'smtp_url = "{smtp_server.url}"\n'
    )
    (isolated_env / "issues").mkdir(exist_ok=True)
    return load_settings(isolated_env / "newsletter.toml", environ={})


def app_at(settings, when: dt.datetime) -> App:
    return App(settings, clock=lambda: when)


def test_a_request_is_kept_apart_and_confirming_applies_it(settings, smtp_server) -> None:
    with app_at(settings, T0) as app:
        done = signup.request_signup(
            app, "New@Example.org", "  Nina   Q ", ["empathy"], False, "198.51.100.9"
        )
        assert done == "request"
        assert subscribers.list_subscribers(app).total == 0
        (req,) = requests.requests_for(app.store, "new@example.org")
        assert (req.name, req.topics, req.all_topics, req.ip, req.consent_version) == (
            "Nina Q",
            ("empathy",),
            False,
            "198.51.100.9",
            "v9",
        )
        assert req.expires_at == T0 + dt.timedelta(days=7)
        with fixed_clock(T0.timestamp()):
            token = make_token(settings, "signup", req.id)
            found = signup.confirmation_from_link(app, token)
            assert (found.email, found.status, found.request) == ("new@example.org", "pending", req)
            sub, confirmed = signup.confirm_link(app, token, "203.0.113.5")
        assert confirmed and sub.status == "active" and sub.name == "Nina Q"
        assert requests.requests_for(app.store, "new@example.org") == []
    [mail] = received(smtp_server)["new@example.org"]
    assert "Nina" not in mail.get_body(("plain",)).get_content()


def test_expired_requests_are_purged_and_their_links_expire(settings) -> None:
    with app_at(settings, T0) as app:
        signup.request_signup(app, "old@example.org", "", [], True, None)
        (req,) = requests.requests_for(app.store, "old@example.org")
        with fixed_clock(T0.timestamp()):
            token = make_token(settings, "signup", req.id)
    with app_at(settings, LATER) as app:
        with fixed_clock(LATER.timestamp()), pytest.raises(BadLinkError) as info:
            signup.confirmation_from_link(app, token)
        assert info.value.expired
        # The next sign-up, for anyone, purges the expired request.
        signup.request_signup(app, "someone@example.org", "", [], True, None)
        assert requests.requests_for(app.store, "old@example.org") == []
        assert requests.get_request(app.store, req.id, LATER) is None
        # Ids are never reused: an old link can never name someone else's request.
        (new,) = requests.requests_for(app.store, "someone@example.org")
        assert new.id > req.id


def test_a_request_past_its_expiry_is_gone_even_with_a_fresh_token(settings) -> None:
    with app_at(settings, T0) as app:
        signup.request_signup(app, "old@example.org", "", [], True, None)
        (req,) = requests.requests_for(app.store, "old@example.org")
    token = make_token(settings, "signup", req.id)  # stamped now: the token is fine
    with app_at(settings, LATER) as app, pytest.raises(BadLinkError) as info:
        signup.confirm_link(app, token, None)
    assert info.value.gone
    with App(settings) as app:
        assert subscribers.list_subscribers(app).total == 0


def test_erased_addresses_are_ignored_and_erasure_drops_requests(settings, smtp_server) -> None:
    with App(settings) as app:
        subscribers.add_subscriber(app, "gone@example.org")
        subscribers.erase(app, "gone@example.org")
        assert signup.request_signup(app, "gone@example.org", "", [], True, None) == "ignored"
        assert requests.requests_for(app.store, "gone@example.org") == []

        subscribers.add_subscriber(app, "left@example.org")
        subscribers.unsubscribe(app, "left@example.org")
        signup.request_signup(app, "left@example.org", "X", [], True, None)
        assert len(requests.requests_for(app.store, "left@example.org")) == 1
        subscribers.erase(app, "left@example.org")
        assert requests.requests_for(app.store, "left@example.org") == []
    assert "gone@example.org" not in received(smtp_server)


def test_an_active_person_changes_nothing_and_gets_their_link(settings, smtp_server) -> None:
    with App(settings) as app:
        before = subscribers.add_subscriber(app, "ann@example.org", name="Ann", topics="Training")
        done = signup.request_signup(app, "ann@example.org", "Mallory", ["empathy"], False, None)
        assert done == "preferences_link"
        assert requests.requests_for(app.store, "ann@example.org") == []
        assert subscribers.get_subscriber(app, "ann@example.org") == before
    [mail] = received(smtp_server)["ann@example.org"]
    assert "/preferences/" in mail.get_body(("plain",)).get_content()


def test_a_request_for_someone_who_joined_meanwhile_changes_nothing(settings) -> None:
    with App(settings) as app:
        signup.request_signup(app, "late@example.org", "Mallory", ["empathy"], False, None)
        (req,) = requests.requests_for(app.store, "late@example.org")
        before = subscribers.add_subscriber(app, "late@example.org", name="Lee", topics="Training")
        sub, confirmed = signup.confirm_link(app, make_token(settings, "signup", req.id), None)
        assert not confirmed and sub == before
        assert subscribers.get_subscriber(app, "late@example.org") == before
        assert requests.requests_for(app.store, "late@example.org") == []


def test_lost_link_does_the_same_work_for_unknown_addresses(settings, smtp_server) -> None:
    with App(settings) as app:
        subscribers.add_subscriber(app, "ann@example.org")
        subscribers.add_subscriber(app, "wait@example.org", pending=True)
        known = signup.request_link(app, "ann@example.org", None)
        unknown = signup.request_link(app, "nobody@example.org", None)
        pending = signup.request_link(app, "wait@example.org", None)
    assert known == signup.LinkOutcome("preferences_link", sent=True)
    assert unknown == signup.LinkOutcome("preferences_link", sent=False)  # rendered, dropped
    assert pending == signup.LinkOutcome("confirm", sent=True)
    assert set(received(smtp_server)) == {"ann@example.org", "wait@example.org"}
