"""Status rules (newsletter/rules/statuses.py): every transition, allowed and refused.

Pure functions: no store, no clock (dates and times are given).
"""

from __future__ import annotations

import datetime as dt

import pytest

from newsletter.errors import NewsletterError
from newsletter.rules import statuses as st
from newsletter.rules.statuses import (
    SIGNUP_IGNORE,
    SIGNUP_KNOWN,
    SIGNUP_NEW,
    SUBSCRIBER_STATUSES,
    BadDateError,
    StatusChange,
    SubscriberStateError,
)

ADDRESS = "ann@example.org"
TODAY = dt.date(2026, 11, 15)
NOT_PAUSABLE = [s for s in SUBSCRIBER_STATUSES if s not in ("active", "paused")]


# --- confirm -----------------------------------------------------------------------------


def test_confirm_makes_a_pending_person_active_and_records_when() -> None:
    change = st.confirm(ADDRESS, "pending")
    assert change.status == "active"
    assert change.event == "confirmed"
    assert change.confirmed is True
    assert change.left is None and change.stop_queued is False


@pytest.mark.parametrize("status", [s for s in SUBSCRIBER_STATUSES if s != "pending"])
def test_confirm_refuses_anyone_not_pending(status: str) -> None:
    with pytest.raises(SubscriberStateError) as info:
        st.confirm(ADDRESS, status)
    assert ADDRESS in info.value.message and status in info.value.message


# --- pause -------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["active", "paused"])
def test_pause_until_resumed(status: str) -> None:
    change = st.pause(ADDRESS, status, None, TODAY)
    assert change.status == "paused" and change.event == "paused"
    assert change.paused_until is None
    assert change.detail == "until resumed"


@pytest.mark.parametrize("status", ["active", "paused"])
def test_pause_until_a_later_date_keeps_the_date(status: str) -> None:
    until = TODAY + dt.timedelta(days=1)
    change = st.pause(ADDRESS, status, until, TODAY)
    assert change.status == "paused" and change.event == "paused"
    assert change.paused_until == until
    assert change.detail == "until 2026-11-16"


@pytest.mark.parametrize("until", [TODAY, TODAY - dt.timedelta(days=1), dt.date(2000, 1, 1)])
def test_pause_refuses_a_date_not_in_the_future(until: dt.date) -> None:
    with pytest.raises(BadDateError) as info:
        st.pause(ADDRESS, "active", until, TODAY)
    assert "not in the future" in info.value.message
    assert until.isoformat() in info.value.message
    assert info.value.hint and "YYYY-MM-DD" in info.value.hint


@pytest.mark.parametrize("status", NOT_PAUSABLE)
def test_pause_refuses_people_who_are_not_active(status: str) -> None:
    with pytest.raises(SubscriberStateError) as info:
        st.pause(ADDRESS, status, None, TODAY)
    assert ADDRESS in info.value.message and status in info.value.message


# --- resume ------------------------------------------------------------------------------


def test_resume_makes_a_paused_person_active() -> None:
    change = st.resume(ADDRESS, "paused")
    assert change == StatusChange("active", "resumed")
    assert change.paused_until is None


def test_resume_of_an_unsubscribed_person_says_how_they_come_back() -> None:
    with pytest.raises(SubscriberStateError) as info:
        st.resume(ADDRESS, "unsubscribed")
    assert "not paused" in info.value.message
    assert info.value.hint and "--resubscribe" in info.value.hint


@pytest.mark.parametrize("status", ["pending", "active", "bounced"])
def test_resume_refuses_anyone_not_paused_without_a_resubscribe_hint(status: str) -> None:
    with pytest.raises(SubscriberStateError) as info:
        st.resume(ADDRESS, status)
    assert status in info.value.message and "not paused" in info.value.message
    assert not info.value.hint


# --- unsubscribe and resubscribe ---------------------------------------------------------


@pytest.mark.parametrize("status", [s for s in SUBSCRIBER_STATUSES if s != "unsubscribed"])
def test_unsubscribe_leaves_at_once_and_stops_queued_mail(status: str) -> None:
    change = st.unsubscribe(status, "one-click link")
    assert change is not None
    assert change.status == "unsubscribed" and change.event == "unsubscribed"
    assert change.detail == "one-click link"
    assert change.left is True
    assert change.stop_queued is True


def test_unsubscribe_twice_changes_nothing() -> None:
    first = st.unsubscribe("active")
    assert first is not None
    assert st.unsubscribe(first.status) is None


@pytest.mark.parametrize(
    ("pending", "status", "confirmed"), [(True, "pending", False), (False, "active", True)]
)
def test_resubscribe_brings_an_unsubscribed_person_back(
    pending: bool, status: str, confirmed: bool
) -> None:
    change = st.resubscribe("unsubscribed", pending, "asked by phone")
    assert change.status == status
    assert change.event == "resubscribed"
    assert change.detail == "asked by phone"
    assert change.confirmed is confirmed
    assert change.left is False  # back on the list: unsubscribed_at cleared


@pytest.mark.parametrize("status", [s for s in SUBSCRIBER_STATUSES if s != "unsubscribed"])
@pytest.mark.parametrize("pending", [True, False])
def test_resubscribe_refuses_anyone_not_unsubscribed(status: str, pending: bool) -> None:
    with pytest.raises(SubscriberStateError) as info:
        st.resubscribe(status, pending)
    assert status in info.value.message


# --- a CSV import's status column --------------------------------------------------------


@pytest.mark.parametrize("status", SUBSCRIBER_STATUSES)
def test_imported_same_status_changes_nothing(status: str) -> None:
    assert st.imported(status, status, None) is None
    assert st.imported(status, status, TODAY) is None


def test_imported_active_after_paused_is_a_resume() -> None:
    change = st.imported("paused", "active", TODAY)
    assert change is not None
    assert change.status == "active" and change.event == "resumed"
    assert change.paused_until is None  # a date only goes with a pause
    assert change.confirmed_if_unset is True
    assert change.left is None


@pytest.mark.parametrize("status", ["pending", "bounced"])
def test_imported_active_otherwise_is_a_confirmation(status: str) -> None:
    change = st.imported(status, "active", None)
    assert change is not None
    assert change.status == "active" and change.event == "confirmed"
    assert change.confirmed_if_unset is True
    assert change.confirmed is False  # never overwrites an earlier confirmation time


@pytest.mark.parametrize("until", [None, TODAY + dt.timedelta(days=30)])
def test_imported_paused_keeps_the_end_of_the_pause(until: dt.date | None) -> None:
    change = st.imported("active", "paused", until)
    assert change is not None
    assert change.status == "paused" and change.event == "paused"
    assert change.paused_until == until
    assert change.confirmed_if_unset is False
    assert change.left is None


@pytest.mark.parametrize("status", ["pending", "active", "paused"])
def test_imported_unsubscribed_leaves(status: str) -> None:
    change = st.imported(status, "unsubscribed", TODAY)
    assert change is not None
    assert change.status == "unsubscribed" and change.event == "unsubscribed"
    assert change.left is True
    assert change.paused_until is None


# --- who receives ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "paused_until", "expected"),
    [
        ("active", None, True),
        ("active", TODAY + dt.timedelta(days=3), True),  # a stale date means nothing
        ("paused", None, False),  # until resumed
        ("paused", TODAY + dt.timedelta(days=1), False),
        ("paused", TODAY, True),  # the pause ends today: today's issue goes out
        ("paused", TODAY - dt.timedelta(days=1), True),
        ("pending", None, False),
        ("pending", TODAY - dt.timedelta(days=1), False),
        ("unsubscribed", None, False),
        ("unsubscribed", TODAY - dt.timedelta(days=1), False),
        ("bounced", None, False),
        ("bounced", TODAY - dt.timedelta(days=1), False),
    ],
)
def test_is_receiving(status: str, paused_until: dt.date | None, expected: bool) -> None:
    assert st.is_receiving(status, paused_until, TODAY) is expected


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (None, SIGNUP_NEW),
        ("pending", SIGNUP_NEW),
        ("unsubscribed", SIGNUP_NEW),
        ("active", SIGNUP_KNOWN),
        ("paused", SIGNUP_KNOWN),
        ("bounced", SIGNUP_IGNORE),
    ],
)
def test_signup_action(status: str | None, expected: str) -> None:
    assert st.signup_action(status) == expected


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (None, None),
        ("pending", SIGNUP_NEW),
        ("active", SIGNUP_KNOWN),
        ("paused", SIGNUP_KNOWN),
        ("unsubscribed", SIGNUP_KNOWN),
        ("bounced", None),
    ],
)
def test_lost_link_action(status: str | None, expected: str | None) -> None:
    assert st.lost_link_action(status) == expected


def test_transition_errors_are_newsletter_errors() -> None:
    # The CLI turns NewsletterError into a one-line message: no traceback for users.
    assert issubclass(SubscriberStateError, NewsletterError)
    assert issubclass(BadDateError, NewsletterError)


# --- retries -----------------------------------------------------------------------------

FIRST = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)


def _retry(attempts: int, elapsed: float, initial=60.0, maximum=3600.0, give_up=86400.0):
    now = FIRST + dt.timedelta(seconds=elapsed)
    return now, st.retry_after(attempts, FIRST, now, initial, maximum, give_up)


@pytest.mark.parametrize(
    ("attempts", "delay"),
    [(0, 60), (1, 60), (2, 120), (3, 240), (4, 480), (5, 960), (6, 1920), (7, 3600), (40, 3600)],
)
def test_retry_delay_doubles_per_attempt_up_to_the_maximum(attempts: int, delay: float) -> None:
    now, decision = _retry(attempts, elapsed=0)
    assert decision.give_up is False
    assert decision.at == now + dt.timedelta(seconds=delay)


def test_retry_gives_up_once_the_next_try_would_pass_the_deadline() -> None:
    # 2nd attempt: a 120 s delay. 86280 s after the first attempt it still fits exactly.
    now, fits = _retry(2, elapsed=86400 - 120)
    assert fits.give_up is False and fits.at == now + dt.timedelta(seconds=120)
    _, late = _retry(2, elapsed=86400 - 119)
    assert late.give_up is True and late.at is None


def test_retry_with_a_short_deadline_gives_up_at_once() -> None:
    _, decision = _retry(1, elapsed=0, initial=60, maximum=60, give_up=30)
    assert decision.give_up is True


def test_retry_with_no_delay_retries_at_once() -> None:
    now, decision = _retry(5, elapsed=10, initial=0, maximum=0, give_up=3600)
    assert decision.give_up is False and decision.at == now


def test_retry_after_a_huge_number_of_attempts_stays_capped() -> None:
    now, decision = _retry(10_000, elapsed=0)
    assert decision.give_up is False
    assert decision.at == now + dt.timedelta(seconds=3600)


def test_finished_sends() -> None:
    assert st.is_finished("done") and st.is_finished("cancelled")
    for status in ("planned", "sending", "paused", None):
        assert not st.is_finished(status)


def test_confirm_signup() -> None:
    from newsletter.rules.statuses import SubscriberStateError, confirm_signup

    new = confirm_signup(None, "d")
    assert (new.status, new.event, new.detail, new.confirmed) == ("active", "confirmed", "d", True)
    assert confirm_signup("pending").event == "confirmed"
    back = confirm_signup("unsubscribed")
    assert (back.status, back.event, back.left) == ("active", "resubscribed", False)
    assert confirm_signup("active") is None and confirm_signup("paused") is None
    with pytest.raises(SubscriberStateError):
        confirm_signup("bounced")
