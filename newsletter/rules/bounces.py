"""Bounces: what a refusal says about an address, and when an address counts as dead.

One classification for every way a refusal arrives (a synchronous SMTP reply today; DSNs
and provider webhooks feed the same rule):

========  ===========================================================  ==================
kind      when                                                         effect
========  ===========================================================  ==================
hard      5.1.x (bad mailbox, bad domain, moved) but the sender's      ``bounced`` at once
          (5.1.7, 5.1.8), 5.2.1 (disabled), 5.4.4 (no such domain),
          5.4.1 "recipient address rejected" (Exchange Online's
          directory check); without an enhanced code: a reply that
          says the mailbox does not exist, else 550, 551 or 553
soft      x.2.2 (mailbox full), or 552 without an enhanced code        a score: ``bounced``
          (storage exceeded), or a delivery given up after retries     at the threshold
          ("retry timeout exceeded", "in the queue too long")
block     any other 5xx (5.7.x policy and spam blocks, 554, ...), and  recorded only
          a reply without an enhanced code that names spam, a block
          list or a policy
========  ===========================================================  ==================

A *block* is about the message or the sender, not the address: a DMARC or reputation
problem refuses every recipient of one provider at once, and marking them all dead
would empty the list. Other 4xx replies are not bounces: they are retried. A generic
enhanced code (``5.0.0``, which Exim writes in every report) says nothing: the words of
the reply decide.

The soft score is the number of soft bounces in the last ``window_days``; at
``threshold`` the address is marked ``bounced`` (like Mailman's bounce score, but each
bounce is kept with its evidence).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass

HARD = "hard"
SOFT = "soft"
BLOCK = "block"
COMPLAINT = "complaint"
KINDS = (HARD, SOFT, BLOCK, COMPLAINT)

_ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")


def enhanced_status(reply: str) -> str | None:
    """The RFC 3463 enhanced status code in a reply (``5.1.1``), or None."""
    m = _ENHANCED.search(reply[:200])
    return ".".join(m.groups()) if m else None


# The words of a reply, for replies whose code does not say enough. Block words come first:
# "550 rejected: listed at a spam block list" is about the sender, not the mailbox.
_BLOCKED = re.compile(
    r"\b(spam|block ?list(ed)?|black ?list(ed)?|blocked|reputation|policy|dmarc|spf|dkim|"
    r"unauthenticated|virus|malware|rate limit|too many (messages|connections))",
    re.IGNORECASE,
)
_NO_MAILBOX = re.compile(
    r"user unknown|unknown (user|recipient|mailbox)|no such (user|mailbox|recipient|address|"
    r"account)|(user|mailbox|recipient|address|account) (does not|doesn't|no longer) exists?|"
    r"does not exist|doesn't have an? [\w.-]+ account|no mailbox here|"
    r"(mailbox|account|address) (is )?(disabled|deactivated|not found|invalid)|"
    r"invalid (recipient|mailbox|address|user)|recipient (not found|unknown)|"
    r"unrouteable address|recipient address rejected",
    re.IGNORECASE,
)
_FULL = re.compile(
    r"over ?quota|quota exceeded|exceeded (its|the|his|her) (storage|quota)|mailbox (is )?full|"
    r"insufficient (storage|space)|out of storage",
    re.IGNORECASE,
)
_TOO_BIG = re.compile(r"too (large|big)|size (exceeds|limit)|exceeds .{0,20}size", re.IGNORECASE)
#: A report that the server gave up after retrying for days: soft, whatever code it quotes.
GIVEN_UP = re.compile(
    r"retry timeout exceeded|queue too long|too long in (the )?queue|message expired|"
    r"delivery time expired|"
    r"has been failing for a long time|could not be delivered within \d+",
    re.IGNORECASE,
)
_ABOUT_SENDER = re.compile(r"\bsender\b", re.IGNORECASE)


def classify_reply(code: int | None, reply: str) -> str | None:
    """The kind of bounce a final SMTP reply to one message is, or None for none."""
    if code is None or not 400 <= code < 600:
        return None
    text = reply[:2000]
    if code >= 500 and GIVEN_UP.search(text):
        return SOFT  # a mailed report of a delivery given up after retries
    status = enhanced_status(reply)
    if status is not None and not status.endswith(".0.0"):
        klass, subject, detail = status.split(".")
        if (subject, detail) == ("2", "2"):
            return SOFT  # mailbox full, whether the server says 4xx or 5xx
        if klass != "5" or code < 500:
            return None
        if subject == "1":
            # 5.1.7/5.1.8 are the sender's address, and so is a 5.1.0 that says "sender".
            if detail in ("7", "8") or (detail == "0" and _ABOUT_SENDER.search(text)):
                return BLOCK
            return HARD
        if (subject, detail) in (("2", "1"), ("4", "4")):
            return HARD  # disabled; no such domain (a name server's NXDOMAIN)
        if (subject, detail) == ("4", "1") and re.search(
            r"recipient address rejected", text, re.IGNORECASE
        ):
            return HARD  # Exchange Online: no such recipient in the tenant's directory
        return BLOCK
    if code < 500:
        return None
    if _BLOCKED.search(text):
        return BLOCK
    if _NO_MAILBOX.search(text):
        return HARD
    if _FULL.search(text):
        return SOFT
    if _TOO_BIG.search(text):
        return BLOCK
    if code in (550, 551, 553):
        return HARD
    if code == 552:
        return SOFT
    return BLOCK


@dataclass(frozen=True)
class BouncePolicy:
    """When soft bounces make an address ``bounced``."""

    threshold: int = 5
    window_days: int = 30

    def soft_score(self, times: Iterable[dt.datetime], now: dt.datetime) -> int:
        """The soft bounces among ``times`` that are inside the window ending ``now``."""
        since = now - dt.timedelta(days=self.window_days)
        return sum(1 for t in times if t > since)

    def soft_limit_reached(self, times: Iterable[dt.datetime], now: dt.datetime) -> bool:
        """True when the soft bounces in the window reach the threshold."""
        return self.soft_score(times, now) >= self.threshold


def describe(kind: str, reply: str, month: str | None = None) -> str:
    """The evidence line of a bounce for the person's history."""
    about = f" (issue {month})" if month else ""
    what = "spam complaint" if kind == COMPLAINT else f"{kind} bounce"
    return f"{what}{about}: {' '.join(reply.split())[:300]}"


#: Rates of one send above which the mail providers' patience runs out. Complaints: Google
#: asks bulk senders to stay below 0.1 % and never reach 0.3 % (Gmail's sender guidelines,
#: https://support.google.com/a/answer/81126; Yahoo's sender requirements say the same).
#: Hard bounces: providers publish no number; 2 % is the level list-hygiene guides commonly
#: name and the one this program warns at.
WARN_RATES = {COMPLAINT: 0.003, HARD: 0.02}


def rate_warnings(counts: dict[str, int], attempted: int) -> list[str]:
    """Warnings for a send whose complaint or hard-bounce rate reaches :data:`WARN_RATES`
    (``attempted``: the messages handed to the server, sent or failed)."""
    if attempted <= 0:
        return []
    found = []
    for kind, limit in WARN_RATES.items():
        rate = counts.get(kind, 0) / attempted
        if rate >= limit:
            found.append(
                f"{kind} rate {rate:.2%} is at or above {limit:.1%}: mail providers start "
                "throttling or refusing senders with rates like this"
            )
    return found
