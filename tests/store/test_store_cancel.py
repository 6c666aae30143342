"""Cancelling a send on SQLite and PostgreSQL: what is not on the wire is skipped at once,
also rows a worker has claimed; a message on the wire finishes; a finished send refuses."""

from __future__ import annotations

import datetime as dt

import pytest

from newsletter.content.parser import parse_issue
from newsletter.rules.statuses import SKIP_CANCELLED
from newsletter.services import subscribers
from newsletter.store import ledger
from newsletter.store.errors import SendFinishedError, SendNotFoundError
from newsletter.store.ledger import Outcome
from tests.store.test_store_ledger import ISSUE, W, plan


def test_cancel_skips_queued_and_claimed_rows_and_lets_the_wire_finish(store_app) -> None:
    store = store_app.store
    for who in ("ann", "bob", "cat", "dan"):
        subscribers.add_subscriber(store_app, f"{who}@example.org", topics="training")
    plan(store, parse_issue(ISSUE, "issues/2026-12.md").issue)
    ledger.take_lease(store, W, dt.timedelta(minutes=10))
    claimed = {c.email: c.delivery_id for c in ledger.claim_batch(store, 3, claimer=W)}
    assert len(claimed) == 3  # one row stays pending
    on_wire, waiting = sorted(claimed.values())[0], sorted(claimed.values())[1:]
    assert ledger.begin_messages(store, W, [on_wire])[0] == {on_wire}

    status = ledger.cancel_send(store, "2026-12")

    assert status.status == "cancelled" and status.finished_at is not None
    assert status.skipped == {SKIP_CANCELLED: 3}  # the pending row and two claimed ones
    assert status.counts == {"sending": 1, "skipped": 3}
    # The worker's fence refuses the claimed rows it had not started ...
    assert ledger.begin_messages(store, W, waiting)[0] == set()
    # ... and the message that was on the wire is recorded when it finishes.
    ledger.begin_messages(store, W, [], [Outcome(on_wire, "sent", "250 OK")])
    after = ledger.send_status(store, "2026-12")
    assert after.counts == {"sent": 1, "skipped": 3} and after.status == "cancelled"
    assert ledger.claim_batch(store, 10, claimer=W) == []

    with pytest.raises(SendFinishedError, match="cancelled already"):
        ledger.cancel_send(store, "2026-12")
    with pytest.raises(SendNotFoundError):
        ledger.cancel_send(store, "2027-01")
