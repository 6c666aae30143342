"""The monthly rule ("first Tuesday 09:00") and one-off times, in the configured time zone.

Rules become APScheduler cron triggers with a time zone, so daylight-saving changes are
the time zone database's business: "09:00" stays 09:00 local time all year. (Only the
trigger's arithmetic is used here, which is pure; the scheduler process runs it.)
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger

from newsletter.errors import ConfigError, NewsletterError

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
ORDINALS = {
    "first": "1st",
    "1st": "1st",
    "second": "2nd",
    "2nd": "2nd",
    "third": "3rd",
    "3rd": "3rd",
    "fourth": "4th",
    "4th": "4th",
    "fifth": "5th",
    "5th": "5th",
    "last": "last",
}
CRON_DOW = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")  # crontab: 0 and 7 = Sunday
RULE_HINT = (
    'write e.g. "first Tuesday 09:00", "last Friday 17:30", "day 1 08:00", "last day 18:00" '
    'or a cron expression such as "0 9 1-7 * tue"'
)

_TIME = r"(?P<h>\d{1,2}):(?P<m>\d{2})"
_WEEKDAY_RULE = re.compile(rf"^(?P<ord>\w+)\s+(?P<wd>[a-z]+)\s+(?:at\s+)?{_TIME}$")
_DAY_RULE = re.compile(
    rf"^(?:day\s+(?P<d>\d{{1,2}}|last)|(?P<last>last)\s+day)\s+(?:at\s+)?{_TIME}$"
)


class ScheduleError(NewsletterError):
    """A schedule request or rule that cannot be used."""


@dataclass(frozen=True)
class MonthlyRule:
    """A parsed monthly rule: APScheduler cron fields plus the text it came from."""

    text: str
    fields: tuple[tuple[str, str], ...]  # (field, value) for CronTrigger
    timezone: str

    def trigger(self) -> CronTrigger:
        """The APScheduler trigger of this rule."""
        return CronTrigger(timezone=ZoneInfo(self.timezone), **dict(self.fields))

    def next_time(self, after: dt.datetime) -> dt.datetime | None:
        """The first firing at or after ``after`` (aware)."""
        fire: dt.datetime | None = self.trigger().get_next_fire_time(None, after)
        return fire

    def last_time(self, now: dt.datetime, lookback: dt.timedelta) -> dt.datetime | None:
        """The latest firing at or before ``now`` and not before ``now - lookback``."""
        trigger = self.trigger()
        fire = trigger.get_next_fire_time(None, now - lookback)
        last = None
        while fire is not None and fire <= now:
            last = fire
            fire = trigger.get_next_fire_time(fire, fire + dt.timedelta(microseconds=1))
        return last

    def between(self, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
        """Every firing after ``start`` and at or before ``end`` (aware), oldest first."""
        trigger = self.trigger()
        out: list[dt.datetime] = []
        fire = trigger.get_next_fire_time(None, start + dt.timedelta(microseconds=1))
        while fire is not None and fire <= end:
            out.append(fire)
            fire = trigger.get_next_fire_time(fire, fire + dt.timedelta(microseconds=1))
        return out

    def describe(self) -> str:
        """The rule as the author wrote it, with its time zone."""
        return f"{self.text} ({self.timezone})"


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``, or a clear error."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(
            f"unknown time zone {name!r}",
            hint="use an IANA name such as Europe/Paris, America/New_York or UTC",
        ) from None


def parse_monthly_rule(text: str, timezone: str) -> MonthlyRule:
    """Parse the ``monthly_schedule`` setting; :class:`ConfigError` says what is wrong."""
    zone(timezone)
    raw = " ".join(text.strip().split())
    low = raw.lower()
    fields: dict[str, str] | None = None
    m = _WEEKDAY_RULE.match(low)
    if m and m.group("ord") != "day" and m.group("wd") != "day":
        wd = [w for w in WEEKDAYS if w.startswith(m.group("wd")) and len(m.group("wd")) >= 3]
        if m.group("ord") not in ORDINALS or len(wd) != 1:
            raise ConfigError(
                f"monthly_schedule {raw!r} is not a rule I understand", hint=RULE_HINT
            )
        fields = {"day": f"{ORDINALS[m.group('ord')]} {wd[0][:3]}"}
    else:
        m = _DAY_RULE.match(low)
        if m:
            day = "last" if m.group("last") or m.group("d") == "last" else m.group("d")
            if day != "last" and not 1 <= int(day) <= 28:
                raise ConfigError(
                    f"monthly_schedule {raw!r}: day {day} does not exist in every month",
                    hint='use a day from 1 to 28, or "last day"',
                )
            fields = {"day": day}
    if fields is not None:
        assert m is not None
        hour, minute = int(m.group("h")), int(m.group("m"))
        if hour > 23 or minute > 59:
            raise ConfigError(
                f"monthly_schedule {raw!r}: {hour}:{minute:02d} is not a time",
                hint="write the time as HH:MM, 00:00 to 23:59",
            )
        fields.update(hour=str(hour), minute=str(minute), second="0")
    else:
        fields = _cron_fields(raw)
    rule = MonthlyRule(raw, tuple(fields.items()), timezone)
    try:
        rule.trigger()
    except ValueError as exc:
        raise ConfigError(f"monthly_schedule {raw!r}: {exc}", hint=RULE_HINT) from None
    return rule


def _cron_fields(raw: str) -> dict[str, str]:
    parts = raw.split()
    if len(parts) != 5:
        raise ConfigError(f"monthly_schedule {raw!r} is not a rule I understand", hint=RULE_HINT)
    minute, hour, day, month, dow = parts
    # Standard crontab numbers weekdays from Sunday = 0; APScheduler 3 from Monday = 0.
    # Numbers are translated to names so a cron line means what it means elsewhere.
    dow = re.sub(r"\d+", lambda n: CRON_DOW[int(n.group())] if int(n.group()) < 8 else "?", dow)
    if "?" in dow:
        raise ConfigError(
            f"monthly_schedule {raw!r}: weekday numbers go from 0 to 7", hint=RULE_HINT
        )
    fields = {
        "minute": minute,
        "hour": hour,
        "day": day,
        "month": month,
        "day_of_week": dow,
        "second": "0",
    }
    return {k: v for k, v in fields.items() if v != "*" or k == "second"}


def parse_local_time(text: str, timezone: str) -> dt.datetime:
    """``YYYY-MM-DD HH:MM[:SS]`` in ``timezone`` as an aware UTC time.

    A time that does not exist (skipped by a daylight-saving change) is refused; one that
    happens twice (the clocks go back) means the first of the two.
    """
    tz = zone(timezone)
    cleaned = " ".join(text.strip().replace("T", " ").split())
    naive = None
    for fmt in ("%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S"):
        try:
            naive = dt.datetime.strptime(cleaned, fmt)
            break
        except ValueError:
            continue
    if naive is None:
        raise ScheduleError(
            f"{text!r} is not a date and time",
            hint='write it as "YYYY-MM-DD HH:MM", e.g. "2026-12-01 09:00"',
        ) from None
    local = naive.replace(tzinfo=tz)
    utc = local.astimezone(dt.UTC)
    if utc.astimezone(tz).replace(tzinfo=None) != naive:
        raise ScheduleError(
            f"{text} does not exist in {timezone} (the clocks skip that hour)",
            hint="choose a time outside the daylight-saving change",
        )
    return utc


def local_date(moment: dt.datetime, timezone: str) -> dt.date:
    """The date of ``moment`` in ``timezone``: the "today" of pauses, plans and claims."""
    return moment.astimezone(zone(timezone)).date()


def local_text(moment: dt.datetime, timezone: str) -> str:
    """``moment`` as a local time in ``timezone``, with seconds only when it has some."""
    local = moment.astimezone(zone(timezone))
    return local.strftime("%Y-%m-%d %H:%M:%S" if local.second else "%Y-%m-%d %H:%M")


def shown_time(moment: dt.datetime, timezone: str, *, seconds: bool = False) -> str:
    """``moment`` as a person reads it: local to ``timezone``, with its UTC offset
    (``2027-01-05 09:00 -05:00``). A naive moment is taken as UTC (the store's times)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    local = moment.astimezone(zone(timezone))
    offset = local.strftime("%z")
    offset = f"{offset[:3]}:{offset[3:]}" if offset else ""
    return local.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M") + f" {offset}"


def month_of(moment: dt.datetime, timezone: str) -> str:
    """The YYYY-MM of ``moment`` in ``timezone``: the issue a monthly firing sends."""
    return moment.astimezone(zone(timezone)).strftime("%Y-%m")
