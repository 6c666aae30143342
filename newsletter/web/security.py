"""Request protections of the web pages: CSRF tokens, in-memory rate limits, headers.

CSRF tokens are HMACs, so nothing is stored on the server:

- on pages reached through a signed link, the token is derived from that link's token
  (only someone holding the link can get it, and it works without cookies);
- on the sign-up and lost-link forms, it is derived from a random nonce in a cookie
  (the "double submit" pattern, with the cookie's value never in the page).

Both are signed with every key of ``secret_key`` in turn when checking, so a key
rotation does not break forms that are open in a browser.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import threading
import time
from collections import deque
from collections.abc import Sequence

CSRF_COOKIE = "newsletter_csrf"
CSRF_FIELD = "csrf_token"

# Same-origin resources only; no inline scripts or styles anywhere. The one script (the
# topic picker's, static/topics.js) is a file of this site; every page works without it.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; script-src 'self'; "
    "form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    # Pages carry signed tokens in their address: never leak it to another site.
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


def _mac(key: str, scope: str, nonce: str) -> str:
    msg = f"newsletter.csrf|{scope}|{nonce}".encode()
    return hmac.new(key.encode(), msg, hashlib.sha256).hexdigest()


def make_csrf(keys: Sequence[str], scope: str, nonce: str = "") -> str:
    """The CSRF token of a form: bound to ``scope`` (a link token or "") and ``nonce``."""
    return _mac(keys[0], scope, nonce)


def check_csrf(keys: Sequence[str], scope: str, nonce: str, given: str | None) -> bool:
    """True if ``given`` is the token of this scope and nonce under any key."""
    if not given or len(given) != 64 or (not scope and not nonce):
        return False
    return any(hmac.compare_digest(_mac(k, scope, nonce), given) for k in keys)


def new_nonce() -> str:
    """A fresh random value for the CSRF cookie."""
    return secrets.token_urlsafe(24)


class RateLimiter:
    """At most ``limit`` events per key in a sliding window, in this process's memory.

    Kept in memory on purpose: limits protect against floods of sign-ups to one address
    or from one IP, and a restart forgetting them is harmless. Memory is bounded by
    ``max_keys``; a key is forgotten only once its window has passed, never to make room.
    While the table is full of live keys, a new key is refused (answered as over its
    limit) until the oldest of them expires: a flood from many addresses can delay
    strangers' sign-ups for at most one window, but can never reset a limit.
    """

    def __init__(self, window: float = 3600.0, max_keys: int = 50_000) -> None:
        self.window = window
        self.max_keys = max_keys
        self._events: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._full_until = float("-inf")  # no key expires before this: skip purging

    def hit(self, key: str, limit: int, now: float | None = None) -> bool:
        """Record one event for ``key``; False (and not recorded) if over ``limit``, or
        if ``key`` is new while the table is full."""
        if limit <= 0:
            return True
        now = time.monotonic() if now is None else now
        with self._lock:
            events = self._events.get(key)
            if events is None:
                if len(self._events) >= self.max_keys and not self._purge(now):
                    return False
                events = self._events[key] = deque()
            while events and events[0] <= now - self.window:
                events.popleft()
            if len(events) >= limit:
                return False
            events.append(now)
            return True

    def retry_after(self, key: str, limit: int, now: float | None = None) -> float:
        """Seconds until ``key`` may have one more event (0 if it may now)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            events = self._events.get(key)
            if not events or len(events) < limit:
                return 0.0
            # The event that must leave the window first is the len-limit+1'th oldest.
            oldest = events[len(events) - limit]
            return max(0.0, oldest + self.window - now)

    def __len__(self) -> int:
        return len(self._events)

    def _purge(self, now: float) -> bool:
        """Forget the keys whose window has passed; True if there is room now."""
        if now < self._full_until:
            return False  # nothing can have expired since the last full scan
        cutoff = now - self.window
        for key in [k for k, ev in self._events.items() if not ev or ev[-1] <= cutoff]:
            del self._events[key]
        if len(self._events) < self.max_keys:
            return True
        self._full_until = min(ev[-1] for ev in self._events.values()) + self.window
        return False


def ip_key(address: str | None) -> str:
    """The rate-limit key of a client address: an IPv6 client by its /64 network (one
    machine commonly holds a whole /64), an IPv4 client by its address."""
    text = address or "unknown"
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return f"ip:{text[:64]}"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return f"ip:{ip.ipv4_mapped}"
        return f"ip:{ipaddress.IPv6Network((ip, 64), strict=False)}"
    return f"ip:{ip}"
