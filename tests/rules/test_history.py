"""Replaying a person's consent log: status and topics at any moment."""

from __future__ import annotations

import datetime as dt

from newsletter.rules.history import (
    LoggedEvent,
    TopicChoice,
    parse_topics,
    removed_topics,
    status_at,
    status_steps,
    topic_change,
    topic_steps,
    topics_at,
)

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def at(days: int) -> dt.datetime:
    return T0 + dt.timedelta(days=days)


def test_a_subscription_followed_by_a_confirmation_was_pending() -> None:
    events = [LoggedEvent(at(0), "subscribed"), LoggedEvent(at(3), "confirmed")]
    steps = status_steps(events, "active", at(0))
    assert steps == [(at(0), "pending"), (at(3), "active")]
    assert status_at(steps, at(1)) == "pending"
    assert status_at(steps, at(-1)) is None


def test_a_subscription_followed_by_other_changes_was_active() -> None:
    events = [
        LoggedEvent(at(0), "subscribed"),
        LoggedEvent(at(1), "topics_changed", "all topics -> empathy"),
        LoggedEvent(at(2), "paused"),
        LoggedEvent(at(4), "resumed"),
        LoggedEvent(at(5), "unsubscribed"),
        LoggedEvent(at(9), "resubscribed"),
    ]
    steps = status_steps(events, "pending", at(0))
    assert [s for _, s in steps] == ["active", "paused", "active", "unsubscribed", "pending"]
    assert status_at(steps, at(3)) == "paused"
    assert status_at(steps, at(6)) == "unsubscribed"


def test_the_last_opening_event_takes_the_current_status() -> None:
    # An import may add someone paused: nothing follows, so the status now is the answer.
    steps = status_steps([LoggedEvent(at(0), "subscribed")], "paused", at(0))
    assert steps == [(at(0), "paused")]
    # No event at all: the current status since the person was added.
    assert status_steps([], "bounced", at(2)) == [(at(2), "bounced")]


def test_topic_choices_are_read_as_describe_topics_writes_them() -> None:
    assert parse_topics("all topics") == TopicChoice(True, frozenset())
    assert parse_topics("no topics") == TopicChoice(False, frozenset())
    assert parse_topics("empathy; training") == TopicChoice(
        False, frozenset({"empathy", "training"})
    )
    assert parse_topics("brought back by an import") is None
    assert topic_change("renamed 'a' -> 'b'") is None
    assert topic_change(None) is None


def test_topics_at_a_moment_are_read_backwards_from_the_changes() -> None:
    events = [
        LoggedEvent(at(0), "subscribed", "empathy; training"),
        LoggedEvent(at(2), "topics_changed", "empathy; training -> training"),
        LoggedEvent(at(5), "topics_changed", "training -> all topics"),
    ]
    first, changes = topic_steps(events, TopicChoice(True, frozenset()))
    assert topics_at(first, changes, at(1)) == TopicChoice(
        False, frozenset({"empathy", "training"})
    )
    assert topics_at(first, changes, at(3)) == TopicChoice(False, frozenset({"training"}))
    assert topics_at(first, changes, at(6)).all_topics
    current = TopicChoice(False, frozenset({"empathy"}))
    assert topic_steps([LoggedEvent(at(0), "subscribed")], current) == (current, [])


def test_removed_topics_are_the_slugs_a_change_dropped() -> None:
    before, after = topic_change("attachment; empathy; training -> training") or (None, None)
    assert before is not None and after is not None
    assert removed_topics(before, after) == {"attachment", "empathy"}
    everything, some = topic_change("all topics -> empathy") or (None, None)
    assert everything is not None and some is not None
    assert removed_topics(everything, some) == frozenset()
