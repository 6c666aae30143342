"""The RFC 8058 one-click unsubscribe is one transaction, and answers at once when no
message to the person is on the wire (SQLite and PostgreSQL).

On PostgreSQL the status, the consent event and the skip of queued rows are one
statement (data-modifying CTEs) and the look at the wire a second; on SQLite the look at
the wire is read by the status UPDATE, then come the consent event and the skip.

Transactions, statements and pool checkouts are counted with SQLAlchemy event listeners
on the web app's own engine, so the counts are what the page really does: finding the
person by the token's id, the status, the consent event, skipping their queued rows and
asking whether one is on the wire all happen in one transaction; the wait for the wire
(another transaction per poll) happens only when a live worker has their message on it.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
from sqlalchemy import event

from newsletter.store import ledger, open_store
from tests.support.services import plan_issue_send
from tests.web.conftest import subscriber

MONTH = "2026-11"
ONE_CLICK = {"List-Unsubscribe": "One-Click"}
W = "worker-host:1:ab"  # the claimer id of the tests' worker


@dataclass
class Counts:
    """What the web app's engine did while counting."""

    transactions: int = 0
    checkouts: int = 0
    statements: list[str] = field(default_factory=list)

    @property
    def kinds(self) -> list[str]:
        """Each statement's verb and table, e.g. ``UPDATE subscribers``."""
        out = []
        for sql in self.statements:
            words = sql.split()
            verb = words[0].upper()
            if verb == "WITH":  # data-modifying CTEs: the statements inside, in order
                inner = re.findall(r"\((UPDATE \w+|INSERT INTO \w+)", sql)
                out.append("WITH " + ", ".join(x.replace(" INTO", "") for x in inner))
            elif verb == "UPDATE":
                out.append(f"UPDATE {words[1]}")
            elif verb == "INSERT":
                out.append(f"INSERT {words[2]}")
            else:
                out.append(verb)
        return out


@contextmanager
def counted(app) -> Iterator[Counts]:
    """Count the transactions, pool checkouts and statements of the web app's store."""
    engine = app.extensions["newsletter"].app.store.engine
    counts = Counts()

    def began(_conn) -> None:
        counts.transactions += 1

    def checked_out(*_args) -> None:
        counts.checkouts += 1

    def executed(_conn, _cursor, statement, *_rest) -> None:
        counts.statements.append(statement)

    hooks = [
        (engine, "begin", began),
        (engine.pool, "checkout", checked_out),
        (engine, "before_cursor_execute", executed),
    ]
    for target, name, fn in hooks:
        event.listen(target, name, fn)
    try:
        yield counts
    finally:
        for target, name, fn in hooks:
            event.remove(target, name, fn)


def rows_of(settings, email: str) -> list:
    with open_store(settings) as store:
        return [r for r in ledger.list_deliveries(store, MONTH, limit=100) if r.email == email]


def dialect_of(app) -> str:
    return app.extensions["newsletter"].app.store.dialect


# What finds the person by the token's id, writes their status (locking the row), logs
# the consent event, skips their rows not on the wire and asks whether one of their rows
# is on the wire of a live worker: on SQLite the UPDATE reads that with the row (under
# the write lock), on PostgreSQL a SELECT after the change reads it.
LEAVE = {
    "sqlite": ["UPDATE subscribers", "INSERT consent_events", "UPDATE deliveries"],
    "postgresql": ["WITH UPDATE subscribers, INSERT consent_events, UPDATE deliveries", "SELECT"],
}
# The same statement when there is nothing to change (already unsubscribed, or gone).
NOTHING_TO_LEAVE = {"sqlite": "UPDATE subscribers", "postgresql": LEAVE["postgresql"][0]}


def test_one_click_is_one_transaction(app, token, web_settings):
    plan_issue_send(web_settings, MONTH)
    t = token("unsubscribe", "all@example.org")
    client = app.test_client(use_cookies=False)
    with counted(app) as counts:
        r = client.post(f"/unsubscribe/{t}", data=ONE_CLICK)
    assert r.status_code == 200
    assert "all@example.org" in r.get_data(as_text=True)
    assert counts.transactions == 1
    assert counts.checkouts == 1  # no second connection: nothing waited for the wire
    assert counts.kinds == LEAVE[dialect_of(app)]
    sub = subscriber(web_settings, "all@example.org", history=True)
    assert sub.status == "unsubscribed" and sub.unsubscribed_at is not None
    last = sub.events[-1]
    assert (last.event, last.source, last.detail, last.ip) == (
        "unsubscribed",
        "web",
        "one-click",
        "127.0.0.1",
    )
    assert [(r.status, r.skip_reason) for r in rows_of(web_settings, "all@example.org")] == [
        ("skipped", "unsubscribed before sending")
    ]


def test_a_second_click_writes_nothing(app, token, web_settings):
    t = token("unsubscribe", "ann@example.org")
    client = app.test_client(use_cookies=False)
    assert client.post(f"/unsubscribe/{t}", data=ONE_CLICK).status_code == 200
    with counted(app) as counts:
        r = client.post(f"/unsubscribe/{t}", data=ONE_CLICK)
    assert r.status_code == 200
    assert counts.transactions == 1
    # The UPDATE finds no status that can leave; the person is read for the page.
    assert counts.kinds == [NOTHING_TO_LEAVE[dialect_of(app)], "SELECT"]
    events = subscriber(web_settings, "ann@example.org", history=True).events
    assert [e.event for e in events].count("unsubscribed") == 1


def test_a_claimed_row_not_on_the_wire_is_skipped_without_waiting(app, token, web_settings):
    """A live worker holds the person's row but has not started it: it is skipped in the
    same transaction and the answer comes at once (the worker's fence then drops it)."""
    plan_issue_send(web_settings, MONTH)
    with open_store(web_settings) as store:
        ledger.take_lease(store, W, dt.timedelta(minutes=10))
        claimed = {c.email: c for c in ledger.claim_batch(store, 100, claimer=W)}
    t = token("unsubscribe", "all@example.org")
    with counted(app) as counts:
        r = app.test_client().post(f"/unsubscribe/{t}", data=ONE_CLICK)
    assert r.status_code == 200
    assert (counts.transactions, counts.checkouts) == (1, 1)
    [row] = rows_of(web_settings, "all@example.org")
    assert row.status == "skipped"
    mine = claimed["all@example.org"].delivery_id
    with open_store(web_settings) as store:
        allowed, _ = ledger.begin_messages(store, W, [mine])
    assert allowed == set()


def test_a_dead_workers_wire_is_not_waited_for(app, token, web_settings):
    """A row left on the wire by a worker whose lease has expired started before the
    unsubscribe; nothing will end it, so nothing waits for it."""
    plan_issue_send(web_settings, MONTH)
    with open_store(web_settings) as store:
        then = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
        ledger.take_lease(store, W, dt.timedelta(minutes=1), now=then)
        [mine] = [
            c for c in ledger.claim_batch(store, 100, claimer=W) if c.email == "ann@example.org"
        ]
        assert ledger.begin_messages(store, W, [mine.delivery_id])[0] == {mine.delivery_id}
    t = token("unsubscribe", "ann@example.org")
    with counted(app) as counts:
        r = app.test_client().post(f"/unsubscribe/{t}", data=ONE_CLICK)
    assert r.status_code == 200
    assert counts.transactions == 1


def test_reaching_the_wait_cap_is_logged_and_still_answers(
    app, token, web_settings, monkeypatch, caplog
):
    """A live worker's message that stays on the wire (a stalled SMTP server) is waited
    for only up to the cap; then the answer says done, as the change is written, and the
    administrator is told. (A cap of 0 checks once more, then gives up: no clock.)"""
    from newsletter.services import subscribers as people

    monkeypatch.setattr(people, "WIRE_WAIT_SECONDS", 0.0)
    plan_issue_send(web_settings, MONTH)
    with open_store(web_settings) as store:
        ledger.take_lease(store, W, dt.timedelta(minutes=10))
        [mine] = [
            c for c in ledger.claim_batch(store, 100, claimer=W) if c.email == "ann@example.org"
        ]
        assert ledger.begin_messages(store, W, [mine.delivery_id])[0] == {mine.delivery_id}
    t = token("unsubscribe", "ann@example.org")
    with (
        caplog.at_level(logging.WARNING, "newsletter.services.subscribers"),
        counted(app) as counts,
    ):
        r = app.test_client().post(f"/unsubscribe/{t}", data=ONE_CLICK)
    assert r.status_code == 200
    assert "You are unsubscribed" in r.get_data(as_text=True)
    assert counts.transactions == 2  # the change, then one look at the wire
    assert "still on the wire" in caplog.text
    assert subscriber(web_settings, "ann@example.org").status == "unsubscribed"
    [row] = rows_of(web_settings, "ann@example.org")
    assert row.status == "sending"  # the message in flight is the worker's to record


def test_bad_links_are_refused_before_the_store(app, token, web_settings):
    t = token("unsubscribe", "ann@example.org")
    signed, signature = t.rsplit(".", 1)
    tampered = f"{signed}.{'B' if signature[0] == 'A' else 'A'}{signature[1:]}"
    client = app.test_client(use_cookies=False)
    for bad in (tampered, token("preferences", "ann@example.org")):
        with counted(app) as counts:
            r = client.post(f"/unsubscribe/{bad}", data=ONE_CLICK)
        assert r.status_code == 400
        assert counts.checkouts == 0 and counts.statements == []
    assert subscriber(web_settings, "ann@example.org").status == "active"


def test_a_link_to_an_erased_person_is_gone(app, token, web_settings):
    from newsletter.services import App
    from newsletter.services import subscribers as people

    t = token("unsubscribe", "all@example.org")
    with App(web_settings) as news:
        people.erase(news, "all@example.org")
    with counted(app) as counts:
        r = app.test_client().post(f"/unsubscribe/{t}", data=ONE_CLICK)
    assert r.status_code == 404
    assert counts.transactions == 1
    assert counts.kinds == [NOTHING_TO_LEAVE[dialect_of(app)], "SELECT"]


@pytest.mark.parametrize("body", [{}, {"List-Unsubscribe": "Yes"}])
def test_without_the_one_click_field_nothing_changes(app, token, web_settings, body):
    t = token("unsubscribe", "ann@example.org")
    r = app.test_client().post(f"/unsubscribe/{t}", data=body)
    assert r.status_code == 400
    assert subscriber(web_settings, "ann@example.org").status == "active"


@pytest.mark.parametrize(
    "body,content_type",
    [
        ("List-Unsubscribe=One-Click", "application/x-www-form-urlencoded"),  # as sent
        ("List-Unsubscribe=One-Click", "application/x-www-form-urlencoded; charset=utf-8"),
        ("List-Unsubscribe=One%2DClick", "application/x-www-form-urlencoded"),
        ("x=1&List-Unsubscribe=One-Click", "application/x-www-form-urlencoded"),
        (ONE_CLICK, "multipart/form-data"),
    ],
)
def test_the_one_click_field_in_any_form_encoding_unsubscribes(
    app, token, web_settings, body, content_type
):
    """The body mail providers send is compared as it is; every other encoding of the
    same field goes through the form parser and works the same."""
    t = token("unsubscribe", "ann@example.org")
    r = app.test_client().post(f"/unsubscribe/{t}", data=body, content_type=content_type)
    assert r.status_code == 200
    assert "You are unsubscribed" in r.get_data(as_text=True)
    assert subscriber(web_settings, "ann@example.org").status == "unsubscribed"


@pytest.mark.parametrize(
    "body,content_type",
    [
        ("List-Unsubscribe=One-Clock", "application/x-www-form-urlencoded"),  # same length
        ("List-Unsubscribe=One-Click", "text/plain"),
    ],
)
def test_a_body_of_the_same_length_or_another_type_changes_nothing(
    app, token, web_settings, body, content_type
):
    t = token("unsubscribe", "ann@example.org")
    r = app.test_client().post(f"/unsubscribe/{t}", data=body, content_type=content_type)
    assert r.status_code == 400
    assert subscriber(web_settings, "ann@example.org").status == "active"
