"""``update_subscriber`` (several changes, all or none) and ``list_after`` (keyset pages),
on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest

from newsletter.errors import UnknownTopicError
from newsletter.rules.names import InvalidNameError
from newsletter.rules.statuses import BadDateError, SubscriberStateError
from newsletter.services import App
from newsletter.services.subscribers import (
    SubscriberChange,
    add_subscriber,
    get_subscriber,
    list_after,
    unsubscribe,
    update_subscriber,
)


@pytest.fixture
def app(store_app):
    moment = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)
    return App(store_app.settings, store=store_app.store, clock=lambda: moment)


def events(app, email: str) -> list[str]:
    return [e.event for e in get_subscriber(app, email, history=True).events]


def test_an_update_applies_every_change_with_its_consent_event(app) -> None:
    add_subscriber(app, "ann@example.org", name="Ann", topics="Empathy", pending=True)
    change = SubscriberChange(name="Ann Example", topics=("Training",), status="active")
    view = update_subscriber(app, "ann@example.org", change)
    assert (view.name, view.topics, view.status) == ("Ann Example", ("training",), "active")
    assert events(app, "ann@example.org")[-3:] == ["confirmed", "topics_changed", "renamed"]

    paused = update_subscriber(
        app, "ann@example.org", SubscriberChange(status="paused", paused_until=dt.date(2027, 1, 1))
    )
    assert paused.status == "paused" and paused.paused_until == dt.date(2027, 1, 1)
    back = update_subscriber(app, "ann@example.org", SubscriberChange(status="active"))
    assert back.status == "active" and events(app, "ann@example.org")[-1] == "resumed"
    every = update_subscriber(app, "ann@example.org", SubscriberChange(all_topics=True))
    assert every.all_topics and every.topics == ()

    unsubscribe(app, "ann@example.org")
    again = update_subscriber(app, "ann@example.org", SubscriberChange(status="active"))
    assert again.status == "active" and events(app, "ann@example.org")[-1] == "resubscribed"


REFUSED = [
    (SubscriberChange(name="New", topics=("No Such Topic",)), UnknownTopicError),
    (SubscriberChange(name="Bad\x00Name", status="unsubscribed"), InvalidNameError),
    (
        SubscriberChange(name="New", status="paused", paused_until=dt.date(2026, 11, 1)),
        BadDateError,
    ),
    (SubscriberChange(name="New", paused_until=dt.date(2027, 1, 1)), SubscriberStateError),
    (SubscriberChange(topics=("Training",), status="bounced"), SubscriberStateError),
]


def test_a_refused_update_changes_nothing(app) -> None:
    add_subscriber(app, "ann@example.org", name="Ann", topics="Empathy")
    before = get_subscriber(app, "ann@example.org", history=True)
    for change, error in REFUSED:
        with pytest.raises(error):
            update_subscriber(app, "ann@example.org", change)
        assert get_subscriber(app, "ann@example.org", history=True) == before, change


def test_keyset_pages_filter_and_show_later_rows_at_the_end(app) -> None:
    for who in ("cat", "ann", "bob"):
        add_subscriber(app, f"{who}@example.org", topics="Empathy")
    add_subscriber(app, "all@example.org")
    first = list_after(app, limit=2)
    assert [v.email for v in first.items] == ["cat@example.org", "ann@example.org"]
    assert first.more
    add_subscriber(app, "aaa@example.org", topics="Training")
    rest = list_after(app, after_id=first.items[-1].id, limit=10)
    assert [v.email for v in rest.items] == [
        "bob@example.org",
        "all@example.org",
        "aaa@example.org",
    ]
    assert not rest.more
    training = list_after(app, topic="Training")
    assert [v.email for v in training.items] == ["all@example.org", "aaa@example.org"]
    unsubscribe(app, "bob@example.org")
    left = list_after(app, status="unsubscribed")
    assert [v.email for v in left.items] == ["bob@example.org"]
    newest = rest.items[-1].created_at
    assert [v.email for v in list_after(app, created_since=newest).items][-1] == "aaa@example.org"
    assert list_after(app, created_since=newest + dt.timedelta(days=1)).items == ()
