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


def test_only_the_persons_own_message_on_the_wire_counts(store_app) -> None:
    """Another person's message on the wire is not waited for: by id (a link) and by
    address (the CLI), each unsubscribe reports only a message of its own person, and
    their own claimed rows not yet started are skipped."""
    from newsletter.content.parser import parse_issue
    from newsletter.store import ledger
    from tests.store.test_store_ledger import ISSUE, W, plan

    for who in ("ann", "bob", "cat", "dan"):
        people.add_subscriber(store_app, f"{who}@example.org", topics="training")
    plan(store_app.store, parse_issue(ISSUE, "issues/2026-12.md").issue)
    ledger.take_lease(store_app.store, W, dt.timedelta(minutes=10))
    claimed = {c.email: c.delivery_id for c in ledger.claim_batch(store_app.store, 10, claimer=W)}
    on_wire = [claimed["ann@example.org"], claimed["dan@example.org"]]
    assert ledger.begin_messages(store_app.store, W, on_wire)[0] == set(on_wire)
    bob = people.get_subscriber(store_app, "bob@example.org")
    got = {
        "bob": db.unsubscribe(store_app.store, bob.id, source="web"),
        "cat": db.unsubscribe(store_app.store, "cat@example.org", source="cli"),
        "dan": db.unsubscribe(store_app.store, "dan@example.org", source="cli"),
    }
    ann = people.get_subscriber(store_app, "ann@example.org")
    got["ann"] = db.unsubscribe(store_app.store, ann.id, source="web")
    assert {k: (r.changed, r.on_wire) for k, r in got.items()} == {
        "bob": (True, False),
        "cat": (True, False),
        "dan": (True, True),
        "ann": (True, True),
    }
    rows = {r.email: r.status for r in ledger.list_deliveries(store_app.store, "2026-12")}
    assert rows == {
        "ann@example.org": "sending",
        "bob@example.org": "skipped",
        "cat@example.org": "skipped",
        "dan@example.org": "sending",
    }


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


def test_on_sqlite_a_process_writes_its_unsubscribes_in_turn(store_app) -> None:
    """SQLite: every statement of an unsubscribe runs while the store's write turn is
    held, so the threads of one process queue on it, not in SQLite's busy handler.
    PostgreSQL locks rows and takes no turn."""
    from sqlalchemy import event

    store = store_app.store
    sub = people.add_subscriber(store_app, "ann@example.org")
    held: list[bool] = []

    def executed(*_args) -> None:
        held.append(store._write_turn.locked())

    event.listen(store.engine, "before_cursor_execute", executed)
    try:
        assert db.unsubscribe(store, sub.id, source="web").changed
    finally:
        event.remove(store.engine, "before_cursor_execute", executed)
    # SQLite: three statements (the look at the wire is read with the row); PostgreSQL:
    # the change in one, then the look at the wire.
    assert held == ([True] * 3 if store.dialect == "sqlite" else [False] * 2)
    assert not store._write_turn.locked()


def test_a_turn_not_given_in_time_is_a_locked_database(store_app, monkeypatch) -> None:
    """SQLite: waiting for the turn counts as waiting for the lock; past the busy timeout
    (0 here, so no clock is involved) the unsubscribe fails as a locked database does,
    writes nothing, and the next one gets its turn."""
    from newsletter.store import db as store_db
    from newsletter.store.errors import StoreLockedError

    store = store_app.store
    if store.dialect != "sqlite":
        pytest.skip("only SQLite writers take turns")
    sub = people.add_subscriber(store_app, "ann@example.org")
    monkeypatch.setattr(store_db, "WRITE_TURN_WAIT", 0)
    with store._write_turn, pytest.raises(StoreLockedError, match="is locked"):
        db.unsubscribe(store, sub.id, source="web")
    assert people.get_subscriber(store_app, "ann@example.org").status == "active"
    assert db.unsubscribe(store, sub.id, source="web").changed


def test_many_threads_unsubscribe_different_people_at_once(store_app) -> None:
    """Sixteen people leave at once from sixteen threads (the one-click burst the web
    server sees): each is unsubscribed once, with one consent event, and nobody fails."""
    subs = [people.add_subscriber(store_app, f"p{i}@example.org") for i in range(16)]
    start = threading.Barrier(len(subs))
    results: dict[int, bool] = {}
    errors: list[BaseException] = []

    def click(sub_id: int) -> None:
        start.wait()
        try:
            results[sub_id] = db.unsubscribe(store_app.store, sub_id, source="web").changed
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=click, args=(s.id,)) for s in subs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert results == {s.id: True for s in subs}
    for s in subs:
        events = people.get_subscriber(store_app, s.email, history=True).events
        assert [e.event for e in events] == ["subscribed", "unsubscribed"]


def test_prepared_statements_read_and_write_as_core_does(store_app) -> None:
    """store.db.Prepared runs compiled SQL through the driver: a timestamp it binds is
    stored as Core stores it (so SQL comparisons with other rows' times hold), and the
    columns it reads back get their types (aware datetimes, dates, booleans)."""
    from sqlalchemy import bindparam, select

    from newsletter.store.db import prepared
    from newsletter.store.models import ConsentRecord, Subscriber

    store = store_app.store
    people.add_subscriber(store_app, "ann@example.org", topics="training")
    people.pause(store_app, "ann@example.org", dt.date(2099, 1, 31))
    events = ConsentRecord.__table__
    at = dt.datetime(2026, 12, 1, 9, 30, 5, tzinfo=dt.UTC)
    insert = prepared(
        store,
        "test.insert",
        lambda: events.insert().values(
            subscriber_id=bindparam("sid"), at=bindparam("at"), event="x", source="web"
        ),
    )
    ann = people.get_subscriber(store_app, "ann@example.org")
    with store.engine.begin() as conn:
        insert.run(conn, {"sid": ann.id, "at": at})
        core = conn.execute(
            select(events.c.id).where(events.c.event == "x", events.c.at == at)
        ).scalar_one()
    assert core  # Core finds the row by the time Prepared wrote
    people_table = Subscriber.__table__
    read = prepared(
        store,
        "test.select",
        lambda: select(
            people_table.c.all_topics,
            people_table.c.paused_until,
            people_table.c.created_at,
        ).where(people_table.c.id == bindparam("sid")),
    )
    with store.engine.begin() as conn:
        row = read.row(read.run(conn, {"sid": ann.id}))
        assert read.row(read.run(conn, {"sid": -1})) is None
    assert row == {
        "all_topics": ann.all_topics,
        "paused_until": dt.date(2099, 1, 31),
        "created_at": ann.created_at,
    }
    assert row["created_at"].tzinfo is not None and row["all_topics"] is False
