"""The store's library functions, on SQLite and PostgreSQL (the ``store`` fixture)."""

from __future__ import annotations

import datetime as dt

import pytest

from newsletter.content.model import Issue, Summary
from newsletter.content.taxonomy import load_taxonomy
from newsletter.errors import UnknownTopicError
from newsletter.store import (
    InvalidEmailError,
    StoreError,
    SubscriberExistsError,
    SubscriberFilter,
    SubscriberNotFoundError,
    SubscriberStateError,
    SuppressedError,
    add_subscriber,
    add_topics,
    confirm,
    erase,
    get_subscriber,
    is_suppressed,
    issue_stats,
    list_subscribers,
    pause,
    remove_topics,
    resume,
    set_topics,
    stats,
    topic_counts,
    unsubscribe,
)

CBT = "cognitive-therapy-ct-and-cognitive-behavioural-therapy-cbt"
ALLIANCE = "alliance-and-therapeutic-relationship"
ATTACHMENT = "attachment"


def events(store, email: str) -> list[str]:
    return [e.event for e in get_subscriber(store, email, history=True).events]


def test_add_normalises_and_resolves_topic_names(store) -> None:
    view = add_subscriber(store, "  Ann.Lee@Example.ORG ", name=" Ann ", topics="CBT; Alliance")
    assert view.email == "ann.lee@example.org"
    assert view.name == "Ann"
    assert view.status == "active"
    assert view.topics == (ALLIANCE, CBT)
    assert not view.all_topics
    assert view.confirmed_at is not None
    again = get_subscriber(store, "ANN.LEE@example.org", history=True)
    assert again.topics == (ALLIANCE, CBT)
    assert [(e.event, e.source) for e in again.events] == [("subscribed", "cli")]


def test_add_without_topics_means_all_topics_and_pending(store) -> None:
    view = add_subscriber(store, "bo@example.org", pending=True)
    assert view.all_topics and view.topics == ()
    assert view.status == "pending" and view.confirmed_at is None
    confirmed = confirm(store, "bo@example.org", ip="192.0.2.1", consent_version="v2")
    assert confirmed.status == "active" and confirmed.confirmed_at is not None
    last = get_subscriber(store, "bo@example.org", history=True).events[-1]
    assert (last.event, last.source, last.ip, last.consent_version) == (
        "confirmed",
        "web",
        "192.0.2.1",
        "v2",
    )


def test_add_rejects_duplicates_bad_addresses_and_unknown_topics(store) -> None:
    add_subscriber(store, "ann@example.org")
    with pytest.raises(SubscriberExistsError):
        add_subscriber(store, "ANN@example.org")
    with pytest.raises(InvalidEmailError) as bad:
        add_subscriber(store, "ann@@example")
    assert bad.value.hint
    with pytest.raises(UnknownTopicError) as unknown:
        add_subscriber(store, "cy@example.org", topics="Alliens")
    assert "Alliance" in (unknown.value.hint or "")
    assert list_subscribers(store).total == 1


def test_unknown_address_is_a_clear_error(store) -> None:
    for func in (get_subscriber, resume, unsubscribe, erase, pause):
        with pytest.raises(SubscriberNotFoundError, match=r"nobody@example\.org"):
            func(store, "nobody@example.org")


def test_list_filters_pages_and_counts(store) -> None:
    for i in range(25):
        add_subscriber(store, f"user{i:02d}@example.org", name=f"User {i}", topics="CBT")
    add_subscriber(store, "all@example.org", name="Every Topic")
    add_subscriber(store, "att@other.org", name="Zed", topics="Attachment")
    unsubscribe(store, "user03@example.org")

    page = list_subscribers(store, SubscriberFilter(topic="cbt"), page=2, page_size=10)
    assert page.total == 26  # 25 chose CBT + 1 all-topics subscriber
    assert page.pages == 3
    assert [v.email for v in page.items][:2] == ["user09@example.org", "user10@example.org"]
    last = list_subscribers(store, SubscriberFilter(topic="cbt"), page=3, page_size=10)
    assert len(last.items) == 6

    assert list_subscribers(store, SubscriberFilter(status="unsubscribed")).total == 1
    assert list_subscribers(store, SubscriberFilter(search="OTHER.org")).total == 1
    assert list_subscribers(store, SubscriberFilter(search="zed")).items[0].email == (
        "att@other.org"
    )
    assert list_subscribers(store, SubscriberFilter(search="100%")).total == 0
    assert list_subscribers(store, SubscriberFilter(topic="Attachment")).total == 2
    with pytest.raises(UnknownTopicError):
        list_subscribers(store, SubscriberFilter(topic="nope"))
    with pytest.raises(StoreError):
        list_subscribers(store, page=0)


def test_topic_changes_are_logged(store) -> None:
    add_subscriber(store, "ann@example.org", topics="CBT")
    assert add_topics(store, "ann@example.org", "Alliance; Attachment").topics == (
        ALLIANCE,
        ATTACHMENT,
        CBT,
    )
    assert remove_topics(store, "ann@example.org", "cbt").topics == (ALLIANCE, ATTACHMENT)
    with pytest.raises(SubscriberStateError):
        remove_topics(store, "ann@example.org", "Alliance; Attachment")
    everything = set_topics(store, "ann@example.org", all_topics=True)
    assert everything.all_topics and everything.topics == ()
    with pytest.raises(SubscriberStateError):
        remove_topics(store, "ann@example.org", "cbt")
    back = set_topics(store, "ann@example.org", "Attachment")
    assert (back.all_topics, back.topics) == (False, (ATTACHMENT,))
    set_topics(store, "ann@example.org", "Attachment")  # no change, no event
    assert events(store, "ann@example.org") == ["subscribed"] + ["topics_changed"] * 4


def test_pause_resume_unsubscribe(store) -> None:
    today = dt.date(2026, 11, 1)
    add_subscriber(store, "ann@example.org")
    with pytest.raises(StoreError, match="not in the future"):
        pause(store, "ann@example.org", dt.date(2026, 10, 1), today=today)
    paused = pause(store, "ann@example.org", dt.date(2026, 12, 1), today=today)
    assert (paused.status, paused.paused_until) == ("paused", dt.date(2026, 12, 1))
    assert resume(store, "ann@example.org").status == "active"
    with pytest.raises(SubscriberStateError):
        resume(store, "ann@example.org")
    view, changed = unsubscribe(store, "ann@example.org")
    assert changed and view.status == "unsubscribed" and view.unsubscribed_at
    _, changed_again = unsubscribe(store, "ann@example.org")
    assert not changed_again
    with pytest.raises(SubscriberStateError):
        pause(store, "ann@example.org")
    with pytest.raises(SubscriberExistsError, match="unsubscribed"):
        add_subscriber(store, "ann@example.org")
    back = add_subscriber(store, "ann@example.org", topics="CBT", resubscribe=True)
    assert back.status == "active" and back.unsubscribed_at is None
    assert events(store, "ann@example.org") == [
        "subscribed",
        "paused",
        "resumed",
        "unsubscribed",
        "resubscribed",
    ]


def test_erase_keeps_only_a_hash(store) -> None:
    from sqlalchemy import text

    add_subscriber(store, "ann@example.org", name="Ann Secret", topics="CBT")
    pause(store, "ann@example.org")
    erase(store, "Ann@Example.org")
    with pytest.raises(SubscriberNotFoundError):
        get_subscriber(store, "ann@example.org")
    assert is_suppressed(store, "ANN@example.org")
    assert not is_suppressed(store, "bob@example.org")
    with store.engine.connect() as conn:
        log = conn.execute(text("SELECT subscriber_id, event, detail FROM consent_events")).all()
        assert [(r[0], r[1]) for r in log] == [(None, "erased")]
        dump = " ".join(str(v) for r in log for v in r)
        assert "ann" not in dump.lower()
        assert conn.execute(text("SELECT count(*) FROM subscriber_topics")).scalar() == 0
        (stored_hash,) = conn.execute(text("SELECT email_hash FROM suppressions")).one()
        assert "ann" not in stored_hash
    with pytest.raises(SuppressedError):
        add_subscriber(store, "ann@example.org")
    back = add_subscriber(store, "ann@example.org", resubscribe=True)
    assert events(store, back.email) == ["resubscribed"]
    assert not is_suppressed(store, "ann@example.org")


def test_stats_and_topic_counts(store) -> None:
    today = dt.date(2026, 11, 1)
    add_subscriber(store, "a@example.org", topics="CBT; Alliance")
    add_subscriber(store, "b@example.org", topics="CBT")
    add_subscriber(store, "c@example.org")  # all topics
    add_subscriber(store, "d@example.org", topics="CBT", pending=True)
    add_subscriber(store, "e@example.org", topics="CBT")
    add_subscriber(store, "f@example.org", topics="Attachment")
    pause(store, "e@example.org", dt.date(2026, 12, 1), today=today)  # still paused
    pause(store, "f@example.org", dt.date(2026, 11, 2), today=today)  # lapses on the 2nd
    unsubscribe(store, "b@example.org")

    result = stats(store, today=today)
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
    later = topic_counts(store, today=dt.date(2026, 11, 2))
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


def test_issue_stats_histogram(store) -> None:
    issue = Issue(
        month="2026-11",
        summaries=(
            _summary("One", "CBT"),
            _summary("Two", "Alliance; Empathy"),
            _summary("Three", "Attachment"),
        ),
    )
    add_subscriber(store, "all@example.org")  # 3
    add_subscriber(store, "two@example.org", topics="CBT; Empathy")  # 2
    add_subscriber(store, "one@example.org", topics="Alliance; Empathy")  # 1 (same summary)
    add_subscriber(store, "none@example.org", topics="Training")  # 0
    add_subscriber(store, "gone@example.org", topics="CBT")
    unsubscribe(store, "gone@example.org")
    add_subscriber(store, "wait@example.org", topics="CBT", pending=True)

    result = issue_stats(store, issue)
    assert result.histogram == {0: 1, 1: 1, 2: 1, 3: 1}
    assert result.receiving == 4
    assert result.per_summary == (2, 3, 1)
    assert result.summaries == ("One", "Two", "Three")


@pytest.mark.parametrize(
    "address",
    [
        "Ann.Lee@Example.ORG",
        "a+tag@sub.example.co.uk",
        "o'brien@example.org",
        "a@b",
        "a..b@example.org",
        ".a@example.org",
        "a@-x.org",
        "üser@example.org",
        "a@bücher.de",
        '"q s"@example.org',
        "a@example.com.",
        "x" * 65 + "@example.org",
        "a@" + "b" * 250 + ".org",
    ],
)
def test_fast_address_check_agrees_with_email_validator(address: str) -> None:
    from email_validator import EmailNotValidError, validate_email

    from newsletter.store import normalise_email

    try:
        expected = validate_email(address, check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        with pytest.raises(InvalidEmailError):
            normalise_email(address)
    else:
        assert normalise_email(address) == expected
