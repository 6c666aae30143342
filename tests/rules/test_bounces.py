"""The bounce rule: what a refusal says about an address."""

from __future__ import annotations

import datetime as dt

import pytest

from newsletter.rules.bounces import (
    BLOCK,
    HARD,
    SOFT,
    BouncePolicy,
    classify_reply,
    enhanced_status,
)

CASES = [
    (550, "5.1.1 <ann@example.org>: Recipient address rejected: User unknown", HARD),
    (550, "Requested action not taken: mailbox unavailable", HARD),
    (551, "User not local", HARD),
    (553, "mailbox name not allowed", HARD),
    (550, "5.2.1 The email account that you tried to reach is disabled", HARD),
    (552, "5.2.2 The email account that you tried to reach is over quota", SOFT),
    (452, "4.2.2 Mailbox full", SOFT),
    (552, "Requested mail action aborted: exceeded storage allocation", SOFT),
    (550, "5.7.26 Unauthenticated email from example.org is not accepted", BLOCK),
    (554, "5.7.1 Message rejected as spam", BLOCK),
    (554, "Transaction failed", BLOCK),
    # Exchange Online's directory check: no such recipient in the tenant.
    (550, "5.4.1 Recipient address rejected: Access denied. AS(201806281)", HARD),
    (550, "5.4.1 No answer from host", BLOCK),
    (550, "5.4.4 Host or domain name not found", HARD),
    (553, "5.1.8 Sender address rejected: Domain not found", BLOCK),
    (550, "5.1.0 Sender rejected", BLOCK),
    (550, "5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found", HARD),
    (552, "5.3.4 Message size exceeds fixed maximum message size", BLOCK),
    # No enhanced code (or Exim's generic 5.0.0): the words decide.
    (554, "delivery error: dd This user doesn't have a yahoo.com account", HARD),
    (550, "5.0.0 <ann@example.org>... User unknown", HARD),
    (550, "Rejected: 192.0.2.1 listed at a spam block list", BLOCK),
    (554, "Mailbox is full", SOFT),
    (552, "Message size exceeds maximum permitted", BLOCK),
    (550, "5.0.0 retry timeout exceeded", SOFT),
    (421, "4.7.0 Try again later", None),
    (451, "4.3.0 Temporary lookup failure", None),
    (452, "4.5.3 Too many recipients", None),
    (250, "2.0.0 OK", None),
    (None, "connection dropped", None),
]


@pytest.mark.parametrize(("code", "reply", "kind"), CASES)
def test_classify_reply(code, reply, kind) -> None:
    assert classify_reply(code, reply) == kind


def test_enhanced_status_is_found_but_not_in_other_numbers() -> None:
    assert enhanced_status("5.1.1 <a@b>: unknown") == "5.1.1"
    assert enhanced_status("Recipient address rejected (5.1.10)") == "5.1.10"
    assert enhanced_status("server 10.5.1.1 said no") is None
    assert enhanced_status("version 5.1.1.4") is None


def test_soft_bounces_count_within_the_window() -> None:
    policy = BouncePolicy(threshold=3, window_days=30)
    now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    days = [now - dt.timedelta(days=d) for d in (1, 10, 40)]
    assert policy.soft_score(days, now) == 2
    assert not policy.soft_limit_reached(days, now)
    assert policy.soft_limit_reached([*days, now], now)


def test_rate_warnings_at_the_providers_limits() -> None:
    from newsletter.rules.bounces import rate_warnings

    assert rate_warnings({"hard": 1, "complaint": 2}, 1000) == []
    [warning] = rate_warnings({"hard": 20}, 1000)
    assert warning.startswith("hard rate 2.00%")
    [warning] = rate_warnings({"complaint": 3}, 1000)
    assert warning.startswith("complaint rate 0.30%")
    assert rate_warnings({"hard": 5}, 0) == []
