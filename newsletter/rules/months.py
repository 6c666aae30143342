"""Issue months (``YYYY-MM``) and calendar arithmetic."""

from __future__ import annotations

import calendar
import datetime as dt
import re

from newsletter.errors import NewsletterError

#: Something shaped like a month (the digits may still be out of range).
MONTH_RE = re.compile(r"^(\d{4})-(\d{2})$")
MONTH_HINT = "write it as YYYY-MM, e.g. 2026-12"


class BadMonthError(NewsletterError):
    """A text that should name a month (``YYYY-MM``) does not."""


def looks_like_month(text: str) -> bool:
    """True when ``text`` has the shape ``YYYY-MM`` (a command-line argument, a file stem)."""
    return MONTH_RE.match(text) is not None


def is_month(text: str) -> bool:
    """True when ``text`` is a real month: ``YYYY-MM``, month 01 to 12, year 1900 or later."""
    m = MONTH_RE.match(text)
    return m is not None and 1 <= int(m.group(2)) <= 12 and int(m.group(1)) >= 1900


def check_month(text: str) -> str:
    """``text`` if it is a month; :class:`BadMonthError` otherwise."""
    if not is_month(text):
        raise BadMonthError(f"{text!r} is not a month", hint=MONTH_HINT)
    return text


def month_name(month: str) -> str:
    """The month as people write it: ``2026-12`` is ``December 2026``."""
    return f"{calendar.month_name[int(month[5:7])]} {int(month[:4])}"


def add_months(day: dt.date, months: int) -> dt.date:
    """``day`` plus ``months`` calendar months (the day is clamped to the month's end)."""
    total = day.month - 1 + months
    year, month = day.year + total // 12, total % 12 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))
