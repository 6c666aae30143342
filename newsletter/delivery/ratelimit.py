"""A thread-safe send-rate limiter: messages per second plus an optional hourly cap.

Mail providers throttle senders in two ways: a steady rate ("at most 10 messages a
second") and a quota ("at most 2,000 an hour"). :class:`RateLimiter` enforces both:

- the per-second rate is a token bucket holding ``burst`` tokens (default one, which
  spaces messages evenly ``1 / rate`` seconds apart); each message takes one token and
  tokens come back at ``rate_per_second``;
- the hourly cap is a sliding window: at most ``rate_per_hour`` messages in any 3,600
  seconds, so a cap reached at 10:20 lets the next message go at the first message's
  time plus one hour, not at the top of the next hour.

:meth:`RateLimiter.acquire` blocks until a message may go. Any number of threads may call
it at once; each call takes exactly one slot. The clock and the sleep function are
injectable so the arithmetic can be tested without waiting.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

HOUR = 3600.0
_EPSILON = 1e-9  # float slack, so a wake-up exactly on time is not "a hair too early"


class RateLimiter:
    """Blocks senders so that at most ``rate_per_second`` and ``rate_per_hour`` go out.

    ``rate_per_second`` of 0 means no per-second limit, ``rate_per_hour`` of 0 no hourly
    cap; with both 0 :meth:`acquire` never waits.
    """

    def __init__(
        self,
        rate_per_second: float = 0.0,
        rate_per_hour: int = 0,
        *,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate_per_second < 0 or rate_per_hour < 0:
            raise ValueError("rates cannot be negative")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self.rate_per_second = float(rate_per_second)
        self.rate_per_hour = int(rate_per_hour)
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = float(burst)  # a fresh limiter lets the first message go at once
        self._refilled_at = clock()
        self._sent_times: deque[float] = deque()  # send times within the last hour

    @property
    def unlimited(self) -> bool:
        """True when neither limit is set."""
        return self.rate_per_second == 0 and self.rate_per_hour == 0

    def acquire(self) -> float:
        """Wait until one more message may be sent, take the slot; return seconds waited."""
        if self.unlimited:
            return 0.0
        waited = 0.0
        while True:
            with self._lock:
                delay = self._try_take(self._clock())
            if delay <= 0:
                return waited
            # Sleep outside the lock so other threads can compute their own waits; the
            # slot is re-checked on waking because another thread may have taken it.
            self._sleep(delay)
            waited += delay

    def wait_time(self) -> float:
        """Seconds until a message may go, without taking a slot (0 if it may go now)."""
        if self.unlimited:
            return 0.0
        with self._lock:
            now = self._clock()
            self._refill(now)
            return max(self._second_delay(), self._hour_delay(now))

    def _try_take(self, now: float) -> float:
        """Take a slot and return 0, or return how long to wait before trying again."""
        self._refill(now)
        delay = max(self._second_delay(), self._hour_delay(now))
        if delay > 0:
            return delay
        if self.rate_per_second:
            self._tokens -= 1.0
        if self.rate_per_hour:
            self._sent_times.append(now)
        return 0.0

    def _refill(self, now: float) -> None:
        if self.rate_per_second:
            elapsed = max(0.0, now - self._refilled_at)
            self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate_per_second)
        self._refilled_at = now
        while self._sent_times and self._sent_times[0] <= now - HOUR + _EPSILON:
            self._sent_times.popleft()

    def _second_delay(self) -> float:
        if not self.rate_per_second or self._tokens >= 1.0 - _EPSILON:
            return 0.0
        return (1.0 - self._tokens) / self.rate_per_second

    def _hour_delay(self, now: float) -> float:
        if not self.rate_per_hour or len(self._sent_times) < self.rate_per_hour:
            return 0.0
        return self._sent_times[0] + HOUR - now
