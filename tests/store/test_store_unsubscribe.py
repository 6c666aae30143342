"""store.subscribers.unsubscribe and wait_for_wire on SQLite and PostgreSQL: the rule
they apply, what they return, concurrent clicks, and the wait (driven by a test clock)."""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from newsletter.rules import statuses
from newsletter.rules.statuses import SUBSCRIBER_STATUSES
from newsletter.services import subscribers as people
from newsletter.store import subscribers as db
from newsletter.store.errors import SubscriberNotFoundError


def test_the_update_asks_the_rule_which_statuses_leave() -> None:
    """The row's UPDATE decides alone (no read before the write); that holds because
    the rule depends on the status only and gives every leaving status the same change,
    which never depends on the confirmation time (not read by the UPDATE)."""
    leaving = [s for s in SUBSCRIBER_STATUSES if statuses.unsubscribe(s, "why") is not None]
    assert tuple(leaving) == db.LEAVING
    assert "unsubscribed" not in db.LEAVING
    changes = {statuses.unsubscribe(s, "why") for s in db.LEAVING}
    assert len(changes) == 1
    [change] = changes
    assert change.stop_queued and not change.confirmed and not change.confirmed_if_unset


def test_unsubscribe_returns_the_person_with_topics(store_app) -> None:
    people.add_subscriber(store_app, "ann@example.org", name="Ann", topics="training; empathy")
    people.add_subscriber(store_app, "all@example.org", all_topics=True)
    ann = people.get_subscriber(store_app, "ann@example.org")
    got = db.unsubscribe(store_app.store, ann.id, source="web", ip="192.0.2.1", detail="x")
    assert got.changed and not got.on_wire
    assert got.subscriber == people.get_subscriber(store_app, "ann@example.org")
    assert got.subscriber.topics == ("empathy", "training") and got.subscriber.name == "Ann"
    again = db.unsubscribe(store_app.store, "ANN@example.org ", source="cli")
    assert not again.changed and again.subscriber == got.subscriber
    everyone = db.unsubscribe(store_app.store, "all@example.org", source="cli")
    assert everyone.changed and everyone.subscriber.topics == ()
    with pytest.raises(SubscriberNotFoundError):
        db.unsubscribe(store_app.store, 999_999, source="web")
    with pytest.raises(SubscriberNotFoundError):
        db.unsubscribe(store_app.store, "nobody@example.org", source="cli")


@pytest.mark.parametrize("status", ["pending", "paused", "bounced"])
def test_every_status_that_may_leave_does(store_app, status) -> None:
    people.add_subscriber(store_app, "ann@example.org", pending=status == "pending")
    if status == "paused":
        people.pause(store_app, "ann@example.org", dt.date(2099, 1, 1))
    elif status == "bounced":
        from newsletter.store.models import Subscriber

        with store_app.store.transaction() as s:
            s.query(Subscriber).update({"status": "bounced"})
    got = db.unsubscribe(store_app.store, "ann@example.org", source="cli")
    assert got.changed
    assert (got.subscriber.status, got.subscriber.paused_until) == ("unsubscribed", None)


def test_concurrent_clicks_unsubscribe_once(store_app) -> None:
    """Eight clicks at once on one link: one changes the person, the others see it done;
    the consent log says it once."""
    sub = people.add_subscriber(store_app, "ann@example.org")
    start = threading.Barrier(8)
    changed: list[bool] = []

    def click() -> None:
        start.wait()
        changed.append(db.unsubscribe(store_app.store, sub.id, source="web").changed)

    threads = [threading.Thread(target=click) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(changed) == [False] * 7 + [True]
    events = people.get_subscriber(store_app, "ann@example.org", history=True).events
    assert [e.event for e in events] == ["subscribed", "unsubscribed"]


class FakeClock:
    """Monotonic seconds that move only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps = 0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.now += seconds


def _on_the_wire(store_app):
    """ann@example.org with one delivery on the wire of a live worker; (sub, row id)."""
    from newsletter.content.parser import parse_issue
    from newsletter.store import ledger
    from tests.store.test_store_ledger import ISSUE, W, plan

    sub = people.add_subscriber(store_app, "ann@example.org", topics="training")
    plan(store_app.store, parse_issue(ISSUE, "issues/2026-12.md").issue)
    ledger.take_lease(store_app.store, W, dt.timedelta(minutes=10))
    [claimed] = ledger.claim_batch(store_app.store, 10, claimer=W)
    assert ledger.begin_messages(store_app.store, W, [claimed.delivery_id])[0]
    return sub, claimed.delivery_id


def test_wait_for_wire_ends_when_the_worker_records_the_message(store_app) -> None:
    from newsletter.store import ledger
    from newsletter.store.ledger import Outcome
    from tests.store.test_store_ledger import W

    sub, row = _on_the_wire(store_app)
    got = db.unsubscribe(store_app.store, sub.id, source="web")
    assert got.on_wire  # found in the same transaction as the change
    clock = FakeClock()

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        if clock.sleeps == 3:  # the worker's next fence step records the outcome
            ledger.begin_messages(store_app.store, W, [], [Outcome(row, "sent", "250 OK")])

    assert db.wait_for_wire(store_app.store, sub.id, 2.0, clock=clock, sleep=sleep)
    assert clock.sleeps == 3


def test_wait_for_wire_gives_up_at_the_cap(store_app) -> None:
    sub, _row = _on_the_wire(store_app)
    clock = FakeClock()
    assert not db.wait_for_wire(store_app.store, sub.id, 2.0, clock=clock, sleep=clock.sleep)
    assert clock.now >= 2.0 and clock.sleeps == pytest.approx(200, abs=1)
