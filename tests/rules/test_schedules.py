"""Monthly rules, one-off times and daylight saving."""

from __future__ import annotations

import datetime as dt

import pytest

from newsletter.errors import ConfigError
from newsletter.rules.schedules import (
    ScheduleError,
    month_of,
    parse_local_time,
    parse_monthly_rule,
)

UTC = dt.UTC


def at(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("first Tuesday 09:00", "2026-12-01 09:00"),
        ("First tue at 9:00", "2026-12-01 09:00"),
        ("last Friday 17:30", "2026-11-27 17:30"),
        ("second monday 08:15", "2026-12-14 08:15"),
        ("day 1 08:00", "2026-12-01 08:00"),
        ("last day 18:00", "2026-11-30 18:00"),
        ("0 9 1-7 * 2", "2026-12-01 09:00"),  # crontab weekday 2 = Tuesday
        ("0 9 1-7 * tue", "2026-12-01 09:00"),
    ],
)
def test_rules_give_the_expected_next_time(text: str, expected: str) -> None:
    rule = parse_monthly_rule(text, "UTC")
    nxt = rule.next_time(at(2026, 11, 21, 12))
    assert nxt is not None and nxt.strftime("%Y-%m-%d %H:%M") == expected


@pytest.mark.parametrize(
    "text",
    [
        "someday 09:00",
        "first Blursday 09:00",
        "day 31 09:00",
        "first Tuesday 25:00",
        "1 2 3",
        "0 9 * * 9",
    ],
)
def test_bad_rules_are_config_errors_with_a_hint(text: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_monthly_rule(text, "UTC")
    assert exc.value.hint


def test_daylight_saving_keeps_the_local_hour() -> None:
    rule = parse_monthly_rule("first Tuesday 09:00", "Europe/Paris")
    march = rule.next_time(at(2026, 3, 1))  # winter time: UTC+1
    april = rule.next_time(at(2026, 4, 1))  # summer time: UTC+2
    assert march.astimezone(UTC).hour == 8 and april.astimezone(UTC).hour == 7
    assert march.astimezone(rule.trigger().timezone).hour == 9
    assert april.astimezone(rule.trigger().timezone).hour == 9


def test_last_time_and_month_of_a_firing() -> None:
    rule = parse_monthly_rule("first Tuesday 09:00", "UTC")
    last = rule.last_time(at(2026, 12, 2, 10), dt.timedelta(days=3))
    assert last == at(2026, 12, 1, 9)
    assert rule.last_time(at(2026, 12, 10), dt.timedelta(days=3)) is None
    assert month_of(at(2026, 11, 30, 23, 30), "Europe/Paris") == "2026-12"


def test_one_off_times_in_a_zone() -> None:
    assert parse_local_time("2026-12-01 09:00", "Europe/Paris") == at(2026, 12, 1, 8)
    assert parse_local_time("2026-07-01 09:00:30", "Europe/Paris") == at(2026, 7, 1, 7, 0, 30)
    with pytest.raises(ScheduleError, match="does not exist"):
        parse_local_time("2026-03-29 02:30", "Europe/Paris")  # the clocks skip that hour
    # the hour that happens twice means the first one (summer time)
    assert parse_local_time("2026-10-25 02:30", "Europe/Paris") == at(2026, 10, 25, 0, 30)
    with pytest.raises(ScheduleError, match="not a date"):
        parse_local_time("tomorrow", "UTC")
    with pytest.raises(ScheduleError, match="unknown time zone"):
        parse_local_time("2026-12-01 09:00", "Mars/Olympus")
