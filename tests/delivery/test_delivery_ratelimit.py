"""RateLimiter: the arithmetic with a fake clock; real time only loosely."""

from __future__ import annotations

import threading
import time

import pytest

from newsletter.delivery.ratelimit import RateLimiter
from tests.support.clock import FakeClock


def limiter(clock: FakeClock, **kwargs) -> RateLimiter:
    return RateLimiter(clock=clock, sleep=clock.sleep, **kwargs)


def test_unlimited_never_waits() -> None:
    clock = FakeClock()
    rl = limiter(clock)
    assert rl.unlimited
    assert [rl.acquire() for _ in range(1000)] == [0.0] * 1000
    assert clock.sleeps == []


def test_per_second_rate_spaces_messages_evenly() -> None:
    clock = FakeClock()
    rl = limiter(clock, rate_per_second=4)
    times = []
    for _ in range(9):
        rl.acquire()
        times.append(clock.now - 1000.0)
    assert times == pytest.approx([0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0])


def test_fractional_rate() -> None:
    clock = FakeClock()
    rl = limiter(clock, rate_per_second=0.5)
    rl.acquire()
    assert rl.wait_time() == pytest.approx(2.0)
    assert rl.acquire() == pytest.approx(2.0)


def test_idle_time_is_not_banked_beyond_the_burst() -> None:
    clock = FakeClock()
    rl = limiter(clock, rate_per_second=2, burst=3)
    clock.now += 3600  # a long pause earns at most `burst` messages at once
    waits = [rl.acquire() for _ in range(5)]
    assert waits == pytest.approx([0, 0, 0, 0.5, 0.5])


def test_hourly_cap_is_a_sliding_window() -> None:
    clock = FakeClock()
    rl = limiter(clock, rate_per_hour=3)
    rl.acquire()  # t = 0
    clock.now += 600
    rl.acquire()  # t = 600
    rl.acquire()  # t = 600
    clock.now += 60  # t = 660: three sent in the last hour
    assert rl.wait_time() == pytest.approx(3600 - 660)
    assert rl.acquire() == pytest.approx(2940)  # goes at t = 3600, an hour after the first
    assert clock.now - 1000 == pytest.approx(3600)
    # Window now 600, 600, 3600: the next two go as the t=600 pair leaves, at 4200.
    assert rl.acquire() == pytest.approx(600)
    assert rl.acquire() == pytest.approx(0)
    # Window 3600, 4200, 4200: the next goes at 7200.
    assert rl.acquire() == pytest.approx(3000)
    assert clock.now - 1000 == pytest.approx(7200)


def test_both_limits_together() -> None:
    clock = FakeClock()
    rl = limiter(clock, rate_per_second=10, rate_per_hour=5)
    for _ in range(5):
        rl.acquire()
    assert clock.now - 1000 == pytest.approx(0.4)
    rl.acquire()  # the sixth waits for the hour window
    assert clock.now - 1000 == pytest.approx(3600)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        RateLimiter(-1)
    with pytest.raises(ValueError):
        RateLimiter(1, -1)
    with pytest.raises(ValueError):
        RateLimiter(1, burst=0)


def test_threads_share_the_rate_in_real_time() -> None:
    rl = RateLimiter(rate_per_second=50)
    stamps: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(5):
            rl.acquire()
            with lock:
                stamps.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert len(stamps) == 20
    # 20 messages at 50/s: the last cannot go before 19 intervals of 20 ms. Loose upper
    # bound only, as the machine may be slow.
    assert max(stamps) - start >= 19 / 50 - 0.02
    assert max(stamps) - start < 5
