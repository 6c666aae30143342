"""A rate-limited send never counts a message as on the wire while it waits for its slot.

The worker takes the rate-limit slot before the wire fence marks a row started: an
unsubscribe that arrives while the worker waits for the next slot finds nothing of the
person's on the wire, returns at once, and the person gets nothing more. The limiter's
clock and sleep belong to the test, so the wait lasts exactly as long as the test holds
it (no wall-clock margins).
"""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import text

from newsletter.delivery.ratelimit import RateLimiter
from newsletter.delivery.transports import SmtpTransport, parse_smtp_url
from newsletter.delivery.worker import DeliveryWorker, WorkerOptions
from newsletter.services import App, subscribers
from newsletter.store import open_store
from tests.support.delivery_runs import settings_of
from tests.support.services import SAMPLE_MONTH, add_people, plan_issue_send
from tests.support.smtpserver import SmtpTestServer

PEOPLE = [f"r{i}@example.org" for i in range(4)]


class HeldSleep:
    """The limiter's sleep: it says it is waiting, then waits until the test lets go."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waiting = threading.Event()
        self.go = threading.Event()

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waiting.set()
        assert self.go.wait(60), "the test never let the limiter go"
        self.now += seconds


def test_an_unsubscribe_during_a_rate_limit_wait_stops_the_next_message(
    send_project: Path, smtp_server: SmtpTestServer
) -> None:
    settings = settings_of(send_project)
    add_people(settings, dict.fromkeys(PEOPLE))
    plan_issue_send(settings, SAMPLE_MONTH)
    held = HeldSleep()
    limiter = RateLimiter(1.0, clock=held.clock, sleep=held.sleep)  # the first goes at once
    transport = SmtpTransport(parse_smtp_url(smtp_server.url), rate_limiter=limiter, timeout=10)
    done: dict = {}
    with open_store(settings) as store:
        worker = DeliveryWorker(
            settings, store, transport, WorkerOptions(months=[SAMPLE_MONTH], threads=1)
        )
        runner = threading.Thread(target=lambda: done.update(report=worker.run()))
        runner.start()
        try:
            assert held.waiting.wait(60), "the worker never waited for the rate limit"
            assert len(smtp_server.messages) == 1
            first = smtp_server.messages[0].rcpt_tos[0]
            with store.engine.connect() as conn:
                started = conn.execute(
                    text(
                        "SELECT s.email FROM deliveries d JOIN subscribers s "
                        "ON s.id = d.subscriber_id WHERE d.wire_state = 1"
                    )
                ).scalars()
                # Only the message already sent (its outcome not written yet) counts as
                # on the wire; the next row waits for its slot unstarted.
                assert set(started) <= {first}
            with App(settings) as app:
                for person in PEOPLE:
                    if person != first:
                        subscribers.unsubscribe(app, person)
        finally:
            held.go.set()
            runner.join(60)
        transport.close()
    assert not runner.is_alive()
    assert [m.rcpt_tos[0] for m in smtp_server.messages] == [first]
    assert done["report"].sent == 1
