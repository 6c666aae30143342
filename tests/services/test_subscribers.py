"""The subscriber services (each change decided by a rule, written by the app), on
SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest

from newsletter.content.model import Issue, Summary
from newsletter.content.taxonomy import load_taxonomy
from newsletter.errors import UnknownTopicError
from newsletter.rules.addresses import InvalidAddressError as InvalidEmailError
from newsletter.rules.statuses import BadDateError, SubscriberStateError
from newsletter.services import App
from newsletter.services.subscribers import (
    add_subscriber,
    add_topics,
    confirm,
    erase,
    get_subscriber,
    list_subscribers,
    pause,
    remove_topics,
    resume,
    set_topics,
    stats,
    topic_counts,
    unsubscribe,
)
from newsletter.store import (
    StoreError,
    SubscriberExistsError,
    SubscriberNotFoundError,
    SuppressedError,
)
from newsletter.store import subscribers as subscriber_store


@pytest.fixture
def app(store_app):
    return store_app


def on(app: App, day: dt.date) -> App:
    """The same app (same app) with its clock on ``day``."""
    moment = dt.datetime(day.year, day.month, day.day, 12, tzinfo=dt.UTC)
    return App(app.settings, store=app.store, clock=lambda: moment)


def is_suppressed(app: App, email: str) -> bool:
    return subscriber_store.is_suppressed(app.store, email)


def issue_stats(app: App, issue: Issue):
    return subscriber_store.issue_stats(
        app.store, issue.month, [s.title for s in issue.summaries], issue.summary_topics
    )


CBT = "cognitive-therapy-ct-and-cognitive-behavioural-therapy-cbt"
ALLIANCE = "alliance-and-therapeutic-relationship"
ATTACHMENT = "attachment"


def events(app, email: str) -> list[str]:
    return [e.event for e in get_subscriber(app, email, history=True).events]


def test_add_normalises_and_resolves_topic_names(app) -> None:
    view = add_subscriber(app, "  Ann.Lee@Example.ORG ", name=" Ann ", topics="CBT; Alliance")
    assert view.email == "ann.lee@example.org"
    assert view.name == "Ann"
    assert view.status == "active"
    assert view.topics == (ALLIANCE, CBT)
    assert not view.all_topics
    assert view.confirmed_at is not None
    again = get_subscriber(app, "ANN.LEE@example.org", history=True)
    assert again.topics == (ALLIANCE, CBT)
    assert [(e.event, e.source) for e in again.events] == [("subscribed", "cli")]


def test_add_without_topics_means_all_topics_and_pending(app) -> None:
    view = add_subscriber(app, "bo@example.org", pending=True)
    assert view.all_topics and view.topics == ()
    assert view.status == "pending" and view.confirmed_at is None
    confirmed = confirm(app, "bo@example.org", ip="192.0.2.1", consent_version="v2")
    assert confirmed.status == "active" and confirmed.confirmed_at is not None
    last = get_subscriber(app, "bo@example.org", history=True).events[-1]
    assert (last.event, last.source, last.ip, last.consent_version) == (
        "confirmed",
        "web",
        "192.0.2.1",
        "v2",
    )


def test_all_written_as_a_topic_means_every_topic_as_in_a_csv_cell(app) -> None:
    for n, word in enumerate(["all", "All topics", " every  topic ", "*"]):
        view = add_subscriber(app, f"p{n}@example.org", topics=word)
        assert (view.all_topics, view.topics) == (True, ())
    add_subscriber(app, "ann@example.org", topics="CBT")
    view = set_topics(app, "ann@example.org", "all topics")
    assert (view.all_topics, view.topics) == (True, ())
    with pytest.raises(UnknownTopicError):  # a word inside a list is still a topic name
        add_subscriber(app, "bo@example.org", topics="CBT; all")


def test_add_rejects_duplicates_bad_addresses_and_unknown_topics(app) -> None:
    add_subscriber(app, "ann@example.org")
    with pytest.raises(SubscriberExistsError):
        add_subscriber(app, "ANN@example.org")
    with pytest.raises(InvalidEmailError) as bad:
        add_subscriber(app, "ann@@example")
    assert bad.value.hint
    with pytest.raises(UnknownTopicError) as unknown:
        add_subscriber(app, "cy@example.org", topics="Alliens")
    assert "Alliance" in (unknown.value.hint or "")
    assert list_subscribers(app).total == 1


def test_unknown_address_is_a_clear_error(app) -> None:
    for func in (get_subscriber, resume, unsubscribe, erase, pause):
        with pytest.raises(SubscriberNotFoundError, match=r"nobody@example\.org"):
            func(app, "nobody@example.org")


def test_list_filters_pages_and_counts(app) -> None:
    for i in range(25):
        add_subscriber(app, f"user{i:02d}@example.org", name=f"User {i}", topics="CBT")
    add_subscriber(app, "all@example.org", name="Every Topic")
    add_subscriber(app, "att@other.org", name="Zed", topics="Attachment")
    unsubscribe(app, "user03@example.org")

    page = list_subscribers(app, topic="cbt", page=2, page_size=10)
    assert page.total == 26  # 25 chose CBT + 1 all-topics subscriber
    assert page.pages == 3
    assert [v.email for v in page.items][:2] == ["user09@example.org", "user10@example.org"]
    last = list_subscribers(app, topic="cbt", page=3, page_size=10)
    assert len(last.items) == 6

    assert list_subscribers(app, status="unsubscribed").total == 1
    assert list_subscribers(app, search="OTHER.org").total == 1
    assert list_subscribers(app, search="zed").items[0].email == ("att@other.org")
    assert list_subscribers(app, search="100%").total == 0
    assert list_subscribers(app, topic="Attachment").total == 2
    with pytest.raises(UnknownTopicError):
        list_subscribers(app, topic="nope")
    with pytest.raises(StoreError):
        list_subscribers(app, page=0)


def test_topic_changes_are_logged(app) -> None:
    add_subscriber(app, "ann@example.org", topics="CBT")
    assert add_topics(app, "ann@example.org", "Alliance; Attachment").topics == (
        ALLIANCE,
        ATTACHMENT,
        CBT,
    )
    assert remove_topics(app, "ann@example.org", "cbt").topics == (ALLIANCE, ATTACHMENT)
    with pytest.raises(SubscriberStateError):
        remove_topics(app, "ann@example.org", "Alliance; Attachment")
    everything = set_topics(app, "ann@example.org", all_topics=True)
    assert everything.all_topics and everything.topics == ()
    with pytest.raises(SubscriberStateError):
        remove_topics(app, "ann@example.org", "cbt")
    back = set_topics(app, "ann@example.org", "Attachment")
    assert (back.all_topics, back.topics) == (False, (ATTACHMENT,))
    set_topics(app, "ann@example.org", "Attachment")  # no change, no event
    assert events(app, "ann@example.org") == ["subscribed"] + ["topics_changed"] * 4


def test_pause_resume_unsubscribe(app) -> None:
    today = dt.date(2026, 11, 1)
    add_subscriber(app, "ann@example.org")
    with pytest.raises(BadDateError, match="not in the future"):
        pause(app, "ann@example.org", dt.date(2026, 10, 1), today=today)
    paused = pause(app, "ann@example.org", dt.date(2026, 12, 1), today=today)
    assert (paused.status, paused.paused_until) == ("paused", dt.date(2026, 12, 1))
    assert resume(app, "ann@example.org").status == "active"
    with pytest.raises(SubscriberStateError):
        resume(app, "ann@example.org")
    view, changed = unsubscribe(app, "ann@example.org")
    assert changed and view.status == "unsubscribed" and view.unsubscribed_at
    _, changed_again = unsubscribe(app, "ann@example.org")
    assert not changed_again
    with pytest.raises(SubscriberStateError):
        pause(app, "ann@example.org")
    with pytest.raises(SubscriberExistsError, match="unsubscribed"):
        add_subscriber(app, "ann@example.org")
    back = add_subscriber(app, "ann@example.org", topics="CBT", resubscribe=True)
    assert back.status == "active" and back.unsubscribed_at is None
    assert events(app, "ann@example.org") == [
        "subscribed",
        "paused",
        "resumed",
        "unsubscribed",
        "resubscribed",
    ]


def test_erase_keeps_only_a_hash(app) -> None:
    from sqlalchemy import text

    add_subscriber(app, "ann@example.org", name="Ann Secret", topics="CBT")
    pause(app, "ann@example.org")
    erase(app, "Ann@Example.org")
    with pytest.raises(SubscriberNotFoundError):
        get_subscriber(app, "ann@example.org")
    assert is_suppressed(app, "ANN@example.org")
    assert not is_suppressed(app, "bob@example.org")
    with app.store.engine.connect() as conn:
        log = conn.execute(text("SELECT subscriber_id, event, detail FROM consent_events")).all()
        assert [(r[0], r[1]) for r in log] == [(None, "erased")]
        dump = " ".join(str(v) for r in log for v in r)
        assert "ann" not in dump.lower()
        assert conn.execute(text("SELECT count(*) FROM subscriber_topics")).scalar() == 0
        (stored_hash,) = conn.execute(text("SELECT email_hash FROM suppressions")).one()
        assert "ann" not in stored_hash
    with pytest.raises(SuppressedError):
        add_subscriber(app, "ann@example.org")
    back = add_subscriber(app, "ann@example.org", resubscribe=True)
    assert events(app, back.email) == ["resubscribed"]
    assert not is_suppressed(app, "ann@example.org")


def test_stats_and_topic_counts(app) -> None:
    today = dt.date(2026, 11, 1)
    add_subscriber(app, "a@example.org", topics="CBT; Alliance")
    add_subscriber(app, "b@example.org", topics="CBT")
    add_subscriber(app, "c@example.org")  # all topics
    add_subscriber(app, "d@example.org", topics="CBT", pending=True)
    add_subscriber(app, "e@example.org", topics="CBT")
    add_subscriber(app, "f@example.org", topics="Attachment")
    pause(app, "e@example.org", dt.date(2026, 12, 1), today=today)  # still paused
    pause(app, "f@example.org", dt.date(2026, 11, 2), today=today)  # lapses on the 2nd
    unsubscribe(app, "b@example.org")

    result = stats(on(app, today))
    assert result.total == 6
    assert result.by_status == {
        "pending": 1,
        "active": 2,
        "paused": 2,
        "unsubscribed": 1,
        "bounced": 0,
    }
    assert result.receiving == 2
    assert result.all_topics == 1
    assert result.by_topic == {CBT: 1, ALLIANCE: 1}
    later = topic_counts(on(app, dt.date(2026, 11, 2)))
    assert later.by_topic == {CBT: 1, ALLIANCE: 1, ATTACHMENT: 1}
    assert later.all_topics == 1


def _summary(title: str, topics: str) -> Summary:
    return Summary(
        key=title.lower(),
        title=title,
        topics=tuple(load_taxonomy().resolve_list(topics)),
        body="b",
        implications="i",
    )


def test_issue_stats_histogram(app) -> None:
    issue = Issue(
        month="2026-11",
        summaries=(
            _summary("One", "CBT"),
            _summary("Two", "Alliance; Empathy"),
            _summary("Three", "Attachment"),
        ),
    )
    add_subscriber(app, "all@example.org")  # 3
    add_subscriber(app, "two@example.org", topics="CBT; Empathy")  # 2
    add_subscriber(app, "one@example.org", topics="Alliance; Empathy")  # 1 (same summary)
    add_subscriber(app, "none@example.org", topics="Training")  # 0
    add_subscriber(app, "gone@example.org", topics="CBT")
    unsubscribe(app, "gone@example.org")
    add_subscriber(app, "wait@example.org", topics="CBT", pending=True)

    result = issue_stats(app, issue)
    assert result.histogram == {0: 1, 1: 1, 2: 1, 3: 1}
    assert result.receiving == 4
    assert result.per_summary == (2, 3, 1)
    assert result.summaries == ("One", "Two", "Three")


@pytest.mark.parametrize(
    "name", ["Ann\x00Lee", "Ann\r\nBcc: x@example.org", "\x1b[31mAnn", "A" * 201]
)
def test_add_subscriber_refuses_a_bad_name_and_stores_nothing(app, name) -> None:
    from newsletter.rules.names import InvalidNameError

    with pytest.raises(InvalidNameError) as info:
        add_subscriber(app, "ann@example.org", name=name)
    assert info.value.hint
    assert list_subscribers(app).total == 0
    assert add_subscriber(app, "bo@example.org", name="  Bo \t Lee ").name == "Bo Lee"


def test_signup_refuses_a_bad_name_before_storing_or_mailing(app) -> None:
    from newsletter.rules.names import InvalidNameError
    from newsletter.services import signup

    with pytest.raises(InvalidNameError, match="NUL"):
        signup.request_signup(app, "ann@example.org", "Ann\x00", ["cbt"], False, None)
    assert list_subscribers(app).total == 0
