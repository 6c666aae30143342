"""The delivery ledger on SQLite and PostgreSQL: planning, claiming, recording."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest

from newsletter.content.parser import parse_issue
from newsletter.delivery.message import headers_from_settings
from newsletter.rules.statuses import SKIP_LEFT, SKIP_NO_MATCH, SKIP_PAUSED
from newsletter.services import subscribers
from newsletter.store import ledger
from newsletter.store.ledger import NewSnapshot, Outcome
from newsletter.store.views import SummaryInfo

ISSUE = """---
month: 2026-12
status: ready
---

## Alliance study
Topics: Alliance and Therapeutic Relationship; Empathy

Body.

### Practice Implications

Do.

## Feedback study
Topics: Feedback and Progress Monitoring; Empathy

Body.

### Practice Implications

Do.

## Training study
Topics: Training

Body.

### Practice Implications

Do.
"""


#: The claimer id of the tests' worker.
W = "testhost:1:aa"


@pytest.fixture
def issue():
    result = parse_issue(ISSUE, "issues/2026-12.md")
    assert result.issue is not None, result.problems
    return result.issue


@pytest.fixture
def app(store_app):
    """The services App on the test's store (people are added through it)."""
    return store_app


@pytest.fixture
def store(app):
    return app.store


def snapshot(issue, policy: str = "skip") -> NewSnapshot:
    """What planning stores for ``issue`` (no rendered variants: planning needs none)."""
    return NewSnapshot(
        subject="Subject",
        content_hash=issue.content_hash(),
        policy=policy,
        summaries=tuple(SummaryInfo(s.key, s.title, s.topic_slugs) for s in issue.summaries),
        headers=headers_from_settings(_settings()),
        variants=(),
    )


def _settings():
    from newsletter.config import load_settings

    return load_settings(overrides={"sender_address": "digest@example.org"}, environ={})


def plan(store, issue, policy: str = "skip") -> int:
    """Plan the send of ``issue``; rows added now."""
    _row, added, _created = ledger.plan_send(store, issue.month, snapshot(issue, policy))
    return added


def add_subscriber(app, email: str, **kwargs) -> None:
    subscribers.add_subscriber(app, email, **kwargs)


def people(app) -> dict[str, int]:
    """A small list covering each case; returns email -> expected mask (None = skipped)."""
    add_subscriber(app, "alliance@example.org", topics="alliance")
    add_subscriber(app, "empathy@example.org", topics="empathy")  # s1 and s2
    add_subscriber(app, "training@example.org", topics="training")
    add_subscriber(app, "mix@example.org", topics="feedback; training")
    add_subscriber(app, "all@example.org", all_topics=True)
    add_subscriber(app, "nomatch@example.org", topics="attachment")
    add_subscriber(app, "paused@example.org", topics="training")
    subscribers.pause(app, "paused@example.org")
    add_subscriber(app, "gone@example.org", topics="training")
    subscribers.unsubscribe(app, "gone@example.org")
    add_subscriber(app, "pending@example.org", topics="training", pending=True)
    return {
        "alliance@example.org": 0b001,
        "empathy@example.org": 0b011,
        "training@example.org": 0b100,
        "mix@example.org": 0b110,
        "all@example.org": 0b111,
    }


def rows(store, month="2026-12") -> dict[str, ledger.DeliveryRow]:
    return {r.email: r for r in ledger.list_deliveries(store, month)}


def test_plan_is_set_logic_and_records_skips(app, store, issue) -> None:
    expected = people(app)
    assert plan(store, issue) == 7  # five to send, no-match and paused recorded as skipped
    got = rows(store)
    assert {e: r.variant_mask for e, r in got.items() if r.status == "pending"} == expected
    assert got["nomatch@example.org"].status == "skipped"
    assert got["nomatch@example.org"].skip_reason == SKIP_NO_MATCH
    assert got["paused@example.org"].skip_reason == SKIP_PAUSED
    assert "gone@example.org" not in got and "pending@example.org" not in got
    status = ledger.send_status(store, issue.month)
    assert status.counts == {"pending": 5, "skipped": 2}
    assert status.skipped == {SKIP_NO_MATCH: 1, SKIP_PAUSED: 1}


def test_planning_twice_adds_nothing_and_newcomers_join(app, store, issue) -> None:
    people(app)
    plan(store, issue)
    assert plan(store, issue) == 0
    add_subscriber(app, "late@example.org", topics="empathy")
    # Later plans come from the send's own snapshot: no issue, no snapshot needed.
    _row, added, created = ledger.plan_send(store, issue.month, None)
    assert (added, created) == (1, False)
    assert rows(store)["late@example.org"].variant_mask == 0b011


def test_planning_in_steps_plans_the_same_rows_and_the_send_is_not_done_before(
    app, store, issue
) -> None:
    expected = people(app)
    row, added, created = ledger.plan_send(store, issue.month, snapshot(issue), first_step=3)
    assert created and row.planning and added == len(rows(store)) <= 3
    # Everything planned so far is sent: the send is not over while planning goes on.
    claimed = ledger.claim_batch(store, 100, claimer=W)
    ledger.record_outcomes(store, [Outcome(c.delivery_id, "sent") for c in claimed], W)
    assert ledger.finish_sends(store) == []
    assert ledger.send_status(store, issue.month).planning
    steps = [ledger.plan_step(store, issue.month, size=2) for _ in range(10)]
    assert [done for _n, done in steps].index(True) >= 1  # more than one step was needed
    assert all(done for _n, done in steps[[d for _n, d in steps].index(True) :])
    assert added + sum(n for n, _done in steps) == 7
    got = rows(store)
    assert {e: r.variant_mask for e, r in got.items() if r.skip_reason is None} == expected
    assert {e: r.skip_reason for e, r in got.items() if r.status == "skipped"} == {
        "nomatch@example.org": SKIP_NO_MATCH,
        "paused@example.org": SKIP_PAUSED,
    }
    assert not ledger.send_status(store, issue.month).planning
    rest = ledger.claim_batch(store, 100, claimer=W)
    ledger.record_outcomes(store, [Outcome(c.delivery_id, "sent") for c in rest], W)
    assert ledger.finish_sends(store) == [issue.month]


def test_planning_again_finishes_a_send_whose_planning_stopped(app, store, issue) -> None:
    people(app)
    ledger.plan_send(store, issue.month, snapshot(issue), first_step=2)
    assert len(rows(store)) == 2
    # The process that planned it stopped; planning the send again plans the rest.
    row, added, created = ledger.plan_send(store, issue.month, None)
    assert (added, created, row.planning) == (5, False, False)
    assert len(rows(store)) == 7
    assert ledger.plan_step(store, issue.month) == (0, True)


def test_a_cancelled_send_is_planned_no_further(app, store, issue) -> None:
    people(app)
    ledger.plan_send(store, issue.month, snapshot(issue), first_step=2)
    status = ledger.cancel_send(store, issue.month)
    assert status.status == "cancelled" and not status.planning
    assert ledger.plan_step(store, issue.month, size=2) == (0, True)
    assert {r.status for r in rows(store).values()} == {"skipped"} and len(rows(store)) == 2


@pytest.mark.parametrize(
    ("policy", "mask", "status"), [("full", 0b111, "pending"), ("teaser", 0, "pending")]
)
def test_no_match_policies(app, store, issue, policy, mask, status) -> None:
    add_subscriber(app, "nomatch@example.org", topics="attachment")
    plan(store, issue, policy)
    row = rows(store)["nomatch@example.org"]
    assert (row.status, row.variant_mask) == (status, mask)


def test_an_import_that_unsubscribes_skips_queued_rows_at_once(app, store, issue, tmp_path) -> None:
    """A CSV row saying "unsubscribed" is an unsubscribe: the same rule, the same effect."""
    from newsletter.services import imports

    people(app)
    plan(store, issue)
    csv_file = tmp_path / "left.csv"
    csv_file.write_text("email,status\ntraining@example.org,unsubscribed\n", "utf-8")
    options = imports.ImportOptions(on_duplicate="update")
    assert imports.import_subscribers(app, csv_file, options).updated == 1
    got = rows(store)
    assert (got["training@example.org"].status, got["training@example.org"].skip_reason) == (
        "skipped",
        SKIP_LEFT,
    )
    assert got["mix@example.org"].status == "pending"  # nobody else is touched
    view = subscribers.get_subscriber(app, "training@example.org", history=True)
    assert view.unsubscribed_at is not None and view.events[-1].event == "unsubscribed"


def test_claim_marks_sending_and_skips_people_who_left(app, store, issue) -> None:
    people(app)
    plan(store, issue)
    subscribers.unsubscribe(app, "training@example.org")  # skipped at once
    subscribers.pause(app, "mix@example.org")  # still pending: the claim must catch it
    claimed = ledger.claim_batch(store, 100)
    assert sorted(c.email for c in claimed) == [
        "all@example.org",
        "alliance@example.org",
        "empathy@example.org",
    ]
    got = rows(store)
    assert got["training@example.org"].skip_reason == SKIP_LEFT
    assert got["mix@example.org"].status == "skipped"
    assert {got[c.email].status for c in claimed} == {"sending"}
    assert ledger.send_status(store, "2026-12").status == "sending"
    emp = next(c for c in claimed if c.email == "empathy@example.org")
    assert emp.topics == ("empathy",) and emp.variant_mask == 0b011 and emp.attempts == 1
    assert ledger.claim_batch(store, 100) == []  # nothing left that is due


def test_a_claim_starts_above_the_mark_it_is_given(app, store, issue) -> None:
    """``after`` skips every row at or below it; a released row below the mark is found
    again by a claim over the whole queue (after = 0)."""
    people(app)
    plan(store, issue)
    ids = [c.delivery_id for c in ledger.claim_batch(store, 100, claimer=W)]
    ledger.record_outcomes(store, [Outcome(i, "release") for i in ids], W)
    assert len(ids) >= 3 and ids == sorted(ids)
    first = ledger.claim_batch(store, 1, claimer=W, after=ids[0])
    assert [c.delivery_id for c in first] == [ids[1]]
    ledger.record_outcomes(store, [Outcome(ids[1], "release")], W)
    rest = ledger.claim_batch(store, 100, claimer=W, after=ids[1])
    assert [c.delivery_id for c in rest] == ids[2:]
    assert ledger.claim_batch(store, 100, claimer=W, after=ids[-1]) == []
    again = ledger.claim_batch(store, 100, claimer=W)
    assert [c.delivery_id for c in again] == ids[:2]


def _steps(store, how: str):
    """A fence step through begin_messages, or through a recorder's FenceWriter."""
    if how == "begin_messages":
        return lambda start, outcomes: ledger.begin_messages(store, W, start, outcomes)
    writer = ledger.FenceWriter(store, W)
    return writer.step


@pytest.mark.parametrize("how", ["begin_messages", "writer"])
def test_a_recorder_round_writes_only_rows_it_holds(app, store, issue, how) -> None:
    """A fence step writes outcomes and starts rows in one round; a row another worker
    took over is refused (reported, left alone), the rest are written as the ORM path
    writes them (times read back as aware UTC)."""
    from sqlalchemy import text as sql

    step = _steps(store, how)
    people(app)
    plan(store, issue)
    claimed = ledger.claim_batch(store, 100, claimer=W)
    a, b, c, *rest = [x.delivery_id for x in claimed]
    with store.engine.begin() as conn:
        conn.execute(sql("UPDATE deliveries SET claimed_by = 'other' WHERE id = :i"), {"i": b})
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    allowed, refused = step(
        [c, b], [Outcome(a, "sent", "250 ok", "<a@x>"), Outcome(b, "sent", "250 ok", "<b@x>")]
    )
    assert refused == [b] and allowed == {c}
    allowed, refused = step([], [Outcome(c, "retry", "451 later", "<c@x>", next_attempt_at=later)])
    assert (allowed, refused) == (set(), [])
    got = {r.message_id: r for r in ledger.list_deliveries(store, "2026-12")}
    assert got["<a@x>"].status == "sent" and got["<a@x>"].attempts == 1
    assert got["<a@x>"].sent_at is not None and got["<a@x>"].sent_at.tzinfo is not None
    assert got["<c@x>"].status == "pending" and got["<c@x>"].next_attempt_at == later.replace(
        microsecond=later.microsecond
    )
    assert "<b@x>" not in got  # not written: another worker holds it
    assert ledger.send_status(store, "2026-12").counts["sending"] == 1 + len(rest)


def test_a_writer_step_that_releases_a_row_does_not_start_it(app, store, issue) -> None:
    """A worker that gives rows back while their fence step is still queued: the release
    and the start meet in one step, and the row ends pending and not on the wire."""
    people(app)
    plan(store, issue)
    a, b = [x.delivery_id for x in ledger.claim_batch(store, 2, claimer=W)]
    writer = ledger.FenceWriter(store, W)
    try:
        allowed, refused = writer.step([a, b], [Outcome(a, "release")])
    finally:
        writer.close()
    assert (allowed, refused) == ({b}, [])
    with store.engine.connect() as conn:
        got = dict(
            conn.exec_driver_sql(
                "SELECT id, status || ':' || coalesce(wire_state, 0) FROM deliveries "
                f"WHERE id IN ({a}, {b})"
            ).all()
        )
    assert got == {a: "pending:0", b: "sending:1"}


def test_a_writer_keeps_its_connection_settings_to_itself(app, store, issue) -> None:
    """On PostgreSQL the writer turns synchronous_commit off for its own connection; that
    connection never goes back to the pool for other work."""
    if store.dialect != "postgresql":
        pytest.skip("PostgreSQL only")
    people(app)
    plan(store, issue)
    [a] = [x.delivery_id for x in ledger.claim_batch(store, 1, claimer=W)]
    writer = ledger.FenceWriter(store, W)
    assert writer.step([a], []) == ({a}, [])
    writer.close()
    for _ in range(3):  # whichever pooled connection comes next
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"


def test_record_outcomes_and_finish(app, store, issue) -> None:
    people(app)
    plan(store, issue)
    claimed = {c.email: c for c in ledger.claim_batch(store, 100, claimer=W)}
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
    ledger.record_outcomes(
        store,
        [
            Outcome(claimed["alliance@example.org"].delivery_id, "sent", "250 ok", "<a@x>"),
            Outcome(claimed["empathy@example.org"].delivery_id, "failed", "550 no", "<b@x>"),
            Outcome(
                claimed["training@example.org"].delivery_id,
                "retry",
                "451 later",
                "<c@x>",
                next_attempt_at=later,
            ),
            Outcome(claimed["mix@example.org"].delivery_id, "release"),
            Outcome(claimed["all@example.org"].delivery_id, "sent", "250 ok", "<d@x>"),
        ],
        W,
    )
    got = rows(store)
    assert (got["alliance@example.org"].status, got["alliance@example.org"].attempts) == ("sent", 1)
    assert got["alliance@example.org"].message_id == "<a@x>"
    assert got["empathy@example.org"].last_reply == "550 no"
    assert got["training@example.org"].status == "pending"
    assert got["training@example.org"].attempts == 1
    assert got["mix@example.org"].attempts == 0  # released, not an attempt
    # The retry is not due yet; the released row is.
    again = ledger.claim_batch(store, 100, claimer=W)
    assert [c.email for c in again] == ["mix@example.org"]
    ledger.record_outcomes(store, [Outcome(c.delivery_id, "sent") for c in again], W)
    assert ledger.finish_sends(store) == []  # the retry is still outstanding
    status = ledger.send_status(store, "2026-12")
    assert status.retrying == 1 and status.counts["sent"] == 3
    future = later + dt.timedelta(seconds=1)
    [retry] = ledger.claim_batch(store, 100, now=future, claimer=W)
    assert retry.attempts == 2
    ledger.record_outcomes(store, [Outcome(retry.delivery_id, "sent")], W)
    assert ledger.finish_sends(store) == ["2026-12"]
    assert ledger.send_status(store, "2026-12").status == "done"
    # A finished send is not planned again.
    add_subscriber(app, "after@example.org", topics="training")
    assert plan(store, issue) == 0


def test_claims_without_a_lease_are_released_after_the_grace_or_when_dead(
    app, store, issue
) -> None:
    people(app)
    plan(store, issue)
    claimed = ledger.claim_batch(store, 2, claimer="otherhost:999999:ab")
    assert len(claimed) == 2
    now = dt.datetime.now(dt.UTC)
    assert ledger.release_stale(store, now) == 0  # within the grace: maybe still starting
    assert ledger.release_stale(store, now, dead_claimers=["otherhost:999999:ab"]) == 2
    ledger.claim_batch(store, 1, claimer="otherhost:999998:cd")
    assert ledger.release_stale(store, now + dt.timedelta(minutes=2)) == 1
    assert len(ledger.claim_batch(store, 100, claimer=W)) == 5


def test_a_live_lease_keeps_old_claims_and_an_expired_one_gives_them_up(app, store, issue) -> None:
    """A slow worker keeps its rows however long ago it claimed them, as long as it
    renews its lease; once the lease runs out they are taken over."""
    people(app)
    plan(store, issue)
    t0 = dt.datetime.now(dt.UTC)
    ttl = dt.timedelta(seconds=60)
    ledger.take_lease(store, "slow:1:aa", ttl, now=t0)
    long_ago = t0 - dt.timedelta(hours=2)
    assert len(ledger.claim_batch(store, 3, now=long_ago, claimer="slow:1:aa")) == 3
    for step in range(1, 60):  # half an hour of renewals: never taken over
        t = t0 + dt.timedelta(seconds=30 * step)
        assert ledger.renew_lease(store, "slow:1:aa", ttl, now=t)
        assert ledger.release_stale(store, t + dt.timedelta(seconds=59)) == 0
    last = t0 + dt.timedelta(seconds=30 * 59)
    assert ledger.release_stale(store, last + ttl) == 3
    # The expired lease is gone, and renewing it is refused: that worker must stop.
    assert not ledger.renew_lease(store, "slow:1:aa", ttl, now=last + ttl)


def test_only_the_holder_of_a_claim_records_its_outcome(app, store, issue) -> None:
    """A stale holder's late outcomes are refused, never counted twice."""
    people(app)
    plan(store, issue)
    t0 = dt.datetime.now(dt.UTC)
    ttl = dt.timedelta(seconds=30)
    ledger.take_lease(store, "old:1:aa", ttl, now=t0)
    first = ledger.claim_batch(store, 100, now=t0, claimer="old:1:aa")
    assert ledger.release_stale(store, t0 + ttl) == 5  # the old worker went silent
    ledger.take_lease(store, "new:2:bb", ttl, now=t0 + ttl)
    second = ledger.claim_batch(store, 100, now=t0 + ttl, claimer="new:2:bb")
    assert sorted(c.delivery_id for c in second) == sorted(c.delivery_id for c in first)
    refused = ledger.record_outcomes(
        store, [Outcome(c.delivery_id, "sent", "250 late") for c in first], "old:1:aa"
    )
    assert sorted(refused) == sorted(c.delivery_id for c in first)
    mine = {c.email for c in first}
    assert {r.status for e, r in rows(store).items() if e in mine} == {"sending"}
    assert (
        ledger.record_outcomes(
            store, [Outcome(c.delivery_id, "sent", "250 ok") for c in second], "new:2:bb"
        )
        == []
    )
    got = [r for e, r in rows(store).items() if e in mine]
    assert {(r.status, r.attempts, r.last_reply) for r in got} == {("sent", 1, "250 ok")}
    # A release by the stale holder cannot put a sent row back in the queue either.
    assert ledger.record_outcomes(store, [Outcome(first[0].delivery_id, "release")], "old:1:aa")
    assert rows(store)[first[0].email].status == "sent"


def test_concurrent_claims_never_overlap(app, store, issue) -> None:
    for i in range(60):
        add_subscriber(app, f"p{i}@example.org", topics="training")
    plan(store, issue)
    got: list[list[int]] = []
    lock = threading.Lock()

    def claim(n: int) -> None:
        while True:
            batch = ledger.claim_batch(store, 7, claimer=f"t{n}")
            if not batch:
                return
            with lock:
                got.append([c.delivery_id for c in batch])

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [i for batch in got for i in batch]
    assert len(ids) == 60 and len(set(ids)) == 60


def test_erased_subscriber_rows_disappear(app, store, issue) -> None:
    people(app)
    plan(store, issue)
    subscribers.erase(app, "alliance@example.org")
    assert "alliance@example.org" not in rows(store)
    assert len(ledger.claim_batch(store, 100)) == 4


def test_retry_failed_puts_them_back(app, store, issue) -> None:
    people(app)
    plan(store, issue)
    claimed = ledger.claim_batch(store, 100, claimer=W)
    ledger.record_outcomes(store, [Outcome(c.delivery_id, "failed", "550") for c in claimed], W)
    assert ledger.finish_sends(store) == ["2026-12"]
    assert ledger.retry_failed(store, "2026-12") == 5
    assert ledger.send_status(store, "2026-12").status == "sending"
    assert len(ledger.claim_batch(store, 100)) == 5


def test_unknown_send_is_a_clear_error(store) -> None:
    with pytest.raises(ledger.SendNotFoundError) as info:
        ledger.send_status(store, "2030-01")
    assert "newsletter send 2030-01" in info.value.hint


def test_unsubscribe_skips_a_claimed_row_not_yet_on_the_wire(app, store, issue) -> None:
    """The fence: a row a worker holds but has not started is skipped by the unsubscribe
    at once, and the worker's fence then refuses to start it."""
    add_subscriber(app, "leaving@example.org", topics="training")
    add_subscriber(app, "staying@example.org", topics="training")
    plan(store, issue)
    ledger.take_lease(store, W, dt.timedelta(seconds=60))
    claimed = {c.email: c for c in ledger.claim_batch(store, 10, claimer=W)}
    start = time.monotonic()
    subscribers.unsubscribe(app, "leaving@example.org", source="web")
    assert time.monotonic() - start < 5.0  # nothing on the wire: no wait at all
    got = rows(store)
    assert (got["leaving@example.org"].status, got["leaving@example.org"].skip_reason) == (
        "skipped",
        "unsubscribed before sending",
    )
    ids = [c.delivery_id for c in claimed.values()]
    allowed, _ = ledger.begin_messages(store, W, ids)
    assert allowed == {claimed["staying@example.org"].delivery_id}
    refused = ledger.record_outcomes(
        store, [Outcome(claimed["leaving@example.org"].delivery_id, "release")], W
    )
    assert refused and rows(store)["leaving@example.org"].status == "skipped"


def test_unsubscribe_waits_for_a_message_on_the_wire(app, store, issue) -> None:
    """A message already on the wire when the unsubscribe commits is waited for, so the
    call returns only after its outcome was written (ordering, not timing)."""
    add_subscriber(app, "leaving@example.org", topics="training")
    plan(store, issue)
    ledger.take_lease(store, W, dt.timedelta(seconds=60))
    [claimed] = ledger.claim_batch(store, 10, claimer=W)
    assert ledger.begin_messages(store, W, [claimed.delivery_id]) == ({claimed.delivery_id}, [])
    order: list[str] = []

    def finish() -> None:
        # Record the message only once the unsubscribe has been written (and waits).
        while subscribers.get_subscriber(app, "leaving@example.org").status != "unsubscribed":
            threading.Event().wait(0.01)
        order.append("recorded")
        ledger.begin_messages(store, W, [], [Outcome(claimed.delivery_id, "sent", "250")])

    t = threading.Thread(target=finish)
    t.start()
    subscribers.unsubscribe(app, "leaving@example.org", source="web")
    order.append("returned")
    t.join()
    assert order == ["recorded", "returned"]
    assert rows(store)["leaving@example.org"].status == "sent"


def test_unsubscribe_does_not_wait_for_a_dead_workers_wire(app, store, issue) -> None:
    add_subscriber(app, "leaving@example.org", topics="training")
    plan(store, issue)
    [claimed] = ledger.claim_batch(store, 10, claimer="gone:1:aa")  # no lease at all
    assert ledger.begin_messages(store, "gone:1:aa", [claimed.delivery_id])[0]
    start = time.monotonic()
    subscribers.unsubscribe(app, "leaving@example.org")
    assert time.monotonic() - start < 5.0
    # Recovered later, the row is skipped at the claim: the person left.
    assert ledger.release_stale(store, dead_claimers=["gone:1:aa"]) == 1
    assert ledger.claim_batch(store, 10, claimer=W) == []
    assert rows(store)["leaving@example.org"].status == "skipped"
