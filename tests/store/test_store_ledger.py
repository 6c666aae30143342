"""The delivery ledger on SQLite and PostgreSQL: planning, claiming, recording."""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from newsletter.content.parser import parse_issue
from newsletter.store import add_subscriber, erase, ledger, pause, unsubscribe
from newsletter.store.ledger import Outcome

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


@pytest.fixture
def issue():
    result = parse_issue(ISSUE, "issues/2026-12.md")
    assert result.issue is not None, result.problems
    return result.issue


def people(store) -> dict[str, int]:
    """A small list covering each case; returns email -> expected mask (None = skipped)."""
    add_subscriber(store, "alliance@example.org", topics="alliance")
    add_subscriber(store, "empathy@example.org", topics="empathy")  # s1 and s2
    add_subscriber(store, "training@example.org", topics="training")
    add_subscriber(store, "mix@example.org", topics="feedback; training")
    add_subscriber(store, "all@example.org", all_topics=True)
    add_subscriber(store, "nomatch@example.org", topics="attachment")
    add_subscriber(store, "paused@example.org", topics="training")
    pause(store, "paused@example.org")
    add_subscriber(store, "gone@example.org", topics="training")
    unsubscribe(store, "gone@example.org")
    add_subscriber(store, "pending@example.org", topics="training", pending=True)
    return {
        "alliance@example.org": 0b001,
        "empathy@example.org": 0b011,
        "training@example.org": 0b100,
        "mix@example.org": 0b110,
        "all@example.org": 0b111,
    }


def rows(store, month="2026-12") -> dict[str, ledger.DeliveryRow]:
    return {r.email: r for r in ledger.list_deliveries(store, month)}


def test_plan_is_set_logic_and_records_skips(store, issue) -> None:
    expected = people(store)
    report = ledger.plan_send(store, issue, "skip")
    assert report.added == 7  # five to send, no-match and paused recorded as skipped
    got = rows(store)
    assert {e: r.variant_mask for e, r in got.items() if r.status == "pending"} == expected
    assert got["nomatch@example.org"].status == "skipped"
    assert got["nomatch@example.org"].skip_reason == ledger.SKIP_NO_MATCH
    assert got["paused@example.org"].skip_reason == ledger.SKIP_PAUSED
    assert "gone@example.org" not in got and "pending@example.org" not in got
    assert report.counts == {"pending": 5, "skipped": 2}
    assert report.skipped == {ledger.SKIP_NO_MATCH: 1, ledger.SKIP_PAUSED: 1}


def test_planning_twice_adds_nothing_and_newcomers_join(store, issue) -> None:
    people(store)
    ledger.plan_send(store, issue, "skip")
    again = ledger.plan_send(store, issue, "skip")
    assert again.added == 0
    add_subscriber(store, "late@example.org", topics="empathy")
    third = ledger.plan_send(store, issue, "skip")
    assert third.added == 1
    assert rows(store)["late@example.org"].variant_mask == 0b011


@pytest.mark.parametrize(
    ("policy", "mask", "status"), [("full", 0b111, "pending"), ("teaser", 0, "pending")]
)
def test_no_match_policies(store, issue, policy, mask, status) -> None:
    add_subscriber(store, "nomatch@example.org", topics="attachment")
    ledger.plan_send(store, issue, policy)
    row = rows(store)["nomatch@example.org"]
    assert (row.status, row.variant_mask) == (status, mask)


def test_claim_marks_sending_and_skips_people_who_left(store, issue) -> None:
    people(store)
    ledger.plan_send(store, issue, "skip")
    unsubscribe(store, "training@example.org")  # skipped at once, by the unsubscribe
    pause(store, "mix@example.org")  # still pending: the claim must catch it
    claimed = ledger.claim_batch(store, 100)
    assert sorted(c.email for c in claimed) == [
        "all@example.org",
        "alliance@example.org",
        "empathy@example.org",
    ]
    got = rows(store)
    assert got["training@example.org"].skip_reason == ledger.SKIP_LEFT
    assert got["mix@example.org"].status == "skipped"
    assert {got[c.email].status for c in claimed} == {"sending"}
    assert ledger.send_status(store, "2026-12").status == "sending"
    emp = next(c for c in claimed if c.email == "empathy@example.org")
    assert emp.topics == ("empathy",) and emp.variant_mask == 0b011 and emp.attempts == 1
    assert ledger.claim_batch(store, 100) == []  # nothing left that is due


def test_record_outcomes_and_finish(store, issue) -> None:
    people(store)
    ledger.plan_send(store, issue, "skip")
    claimed = {c.email: c for c in ledger.claim_batch(store, 100)}
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
    )
    got = rows(store)
    assert (got["alliance@example.org"].status, got["alliance@example.org"].attempts) == ("sent", 1)
    assert got["alliance@example.org"].message_id == "<a@x>"
    assert got["empathy@example.org"].last_reply == "550 no"
    assert got["training@example.org"].status == "pending"
    assert got["training@example.org"].attempts == 1
    assert got["mix@example.org"].attempts == 0  # released, not an attempt
    # The retry is not due yet; the released row is.
    again = ledger.claim_batch(store, 100)
    assert [c.email for c in again] == ["mix@example.org"]
    ledger.record_outcomes(store, [Outcome(c.delivery_id, "sent") for c in again])
    assert ledger.finish_sends(store) == []  # the retry is still outstanding
    status = ledger.send_status(store, "2026-12")
    assert status.retrying == 1 and status.counts["sent"] == 3
    future = later + dt.timedelta(seconds=1)
    [retry] = ledger.claim_batch(store, 100, now=future)
    assert retry.attempts == 2
    ledger.record_outcomes(store, [Outcome(retry.delivery_id, "sent")])
    assert ledger.finish_sends(store) == ["2026-12"]
    assert ledger.send_status(store, "2026-12").status == "done"
    # A finished send is not planned again.
    add_subscriber(store, "after@example.org", topics="training")
    assert ledger.plan_send(store, issue, "skip").added == 0


def test_stale_claims_of_a_dead_worker_are_released(store, issue) -> None:
    people(store)
    ledger.plan_send(store, issue, "skip")
    claimed = ledger.claim_batch(store, 2, claimer="otherhost:999999")
    assert len(claimed) == 2
    assert ledger.release_stale(store, dt.timedelta(hours=1)) == 0
    assert (
        ledger.release_stale(store, dt.timedelta(hours=1), dead_claimers=["otherhost:999999"]) == 2
    )
    assert ledger.release_stale(store, dt.timedelta(0)) == 0
    assert len(ledger.claim_batch(store, 100)) == 5


def test_concurrent_claims_never_overlap(store, issue) -> None:
    for i in range(60):
        add_subscriber(store, f"p{i}@example.org", topics="training")
    ledger.plan_send(store, issue, "skip")
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


def test_erased_subscriber_rows_disappear(store, issue) -> None:
    people(store)
    ledger.plan_send(store, issue, "skip")
    erase(store, "alliance@example.org")
    assert "alliance@example.org" not in rows(store)
    assert len(ledger.claim_batch(store, 100)) == 4


def test_retry_failed_puts_them_back(store, issue) -> None:
    people(store)
    ledger.plan_send(store, issue, "skip")
    claimed = ledger.claim_batch(store, 100)
    ledger.record_outcomes(store, [Outcome(c.delivery_id, "failed", "550") for c in claimed])
    assert ledger.finish_sends(store) == ["2026-12"]
    assert ledger.retry_failed(store, "2026-12") == 5
    assert ledger.send_status(store, "2026-12").status == "sending"
    assert len(ledger.claim_batch(store, 100)) == 5


def test_unknown_send_is_a_clear_error(store) -> None:
    with pytest.raises(ledger.SendNotFoundError) as info:
        ledger.send_status(store, "2030-01")
    assert "newsletter send 2030-01" in info.value.hint


def test_unsubscribe_can_wait_for_a_message_already_in_flight(store, issue) -> None:
    import time

    add_subscriber(store, "leaving@example.org", topics="training")
    ledger.plan_send(store, issue, "skip")
    [claimed] = ledger.claim_batch(store, 10, claimer="w:1")

    def finish() -> None:
        time.sleep(0.4)
        ledger.record_outcomes(store, [Outcome(claimed.delivery_id, "sent", "250")])

    t = threading.Thread(target=finish)
    t.start()
    start = time.monotonic()
    unsubscribe(store, "leaving@example.org", source="web", settle=5.0)
    waited = time.monotonic() - start
    t.join()
    assert 0.3 < waited < 4.0  # returned once the in-flight message was recorded
    assert rows(store)["leaving@example.org"].status == "sent"
    # Without anything in flight it returns at once.
    add_subscriber(store, "other@example.org", topics="training")
    start = time.monotonic()
    unsubscribe(store, "other@example.org", settle=5.0)
    assert time.monotonic() - start < 1.0
