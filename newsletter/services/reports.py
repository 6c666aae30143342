"""Reports: the list and its sends over time, and audience planning before a send.

:func:`build` gathers every figure of the reports page into one plain :class:`Report`
(``to_dict()`` for ``--json`` and the API); :func:`write_html` draws it as one
self-contained HTML page. :func:`audience` tells the author, before a send, who gets how
many summaries, which chosen topics no summary covers, and who has had no summary for a
while.

What the store records decides what can be shown. Statuses and topics over time are
replayed from the consent log (:mod:`newsletter.rules.history`); readers per variant,
summaries' reach and skips come from the ledger, as ``deliveries status`` counts them;
bounces are those of a send's own messages. Nothing records opens or clicks, and erased
people leave nothing to count: :data:`NOTES` says so on the page.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from newsletter.content.taxonomy import load_taxonomy
from newsletter.errors import NewsletterError
from newsletter.rules.history import (
    TopicChoice,
    removed_topics,
    status_at,
    status_steps,
    topic_change,
    topic_steps,
    topics_at,
)
from newsletter.rules.months import add_months
from newsletter.rules.statuses import SUBSCRIBER_STATUSES
from newsletter.rules.variants import VariantKey
from newsletter.services import issues
from newsletter.services.app import App
from newsletter.store import bounces as bounce_store
from newsletter.store import ledger
from newsletter.store import reports as report_store
from newsletter.store import subscribers as subscriber_store
from newsletter.store.ledger import SendStatus
from newsletter.store.reports import PersonHistory

__all__ = [
    "AFTER_SEND_DAYS",
    "NOTES",
    "AudiencePlan",
    "IssueFigures",
    "Report",
    "audience",
    "build",
    "write_html",
]

#: Unsubscribes and topic removals count "after a send" for this many days at most (or
#: until the next send starts, if sooner).
AFTER_SEND_DAYS = 30
#: Key of the all-topics subscribers in the per-topic figures.
ALL_TOPICS = "all-topics"

NOTES = (
    "Readers are messages the mail server accepted: opens and clicks are not recorded.",
    "Statuses and topics over time are replayed from the consent log. A subscription "
    "opened by an import counts with the status that followed it.",
    "Erased people are in no figure: erasing someone leaves nothing to count.",
    "Sign-ups are people still in the store, by the day they were added; sign-up "
    "requests never confirmed expire and are not kept.",
    f"Unsubscribes and topic removals after an issue are counted from the start of its "
    f"send until the next send starts or for {AFTER_SEND_DAYS} days, whichever ends "
    f"first; bounces are those of the issue's own messages.",
)


def _iso(value: dt.date | dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass(frozen=True)
class StatusPoint:
    """How many people had each status at one moment."""

    at: dt.datetime
    counts: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict."""
        return {"at": self.at.isoformat(), "counts": dict(self.counts)}


@dataclass(frozen=True)
class TopicFigure:
    """Active subscribers who chose one topic, now and when the last issue went out."""

    slug: str
    name: str
    now: int
    at_last_issue: int | None  # None: no issue was sent yet

    @property
    def change(self) -> int | None:
        """Now minus then (None when there is no last issue)."""
        return None if self.at_last_issue is None else self.now - self.at_last_issue

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict."""
        return {
            "slug": self.slug,
            "name": self.name,
            "now": self.now,
            "at_last_issue": self.at_last_issue,
            "change": self.change,
        }


@dataclass(frozen=True)
class SummaryReach:
    """How many readers were sent one summary of an issue."""

    key: str
    title: str
    received: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict."""
        return {"key": self.key, "title": self.title, "received": self.received}


@dataclass(frozen=True)
class IssueFigures:
    """One issue's send and what happened in the days after it."""

    month: str
    subject: str
    status: str
    started_at: dt.datetime
    window_end: dt.datetime
    readers: int  # messages sent
    failed: int
    outstanding: int
    variants: dict[str, int]  # variant name -> messages sent
    reach: tuple[SummaryReach, ...]
    skipped: dict[str, int]  # reason -> rows
    bounces: dict[str, int]  # kind -> bounces of this send's messages
    unsubscribes: int
    topic_removals: dict[str, int]  # slug -> people who dropped it

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict."""
        return {
            "month": self.month,
            "subject": self.subject,
            "status": self.status,
            "started_at": self.started_at.isoformat(),
            "window_end": self.window_end.isoformat(),
            "readers": self.readers,
            "failed": self.failed,
            "outstanding": self.outstanding,
            "variants": dict(self.variants),
            "reach": [r.to_dict() for r in self.reach],
            "skipped": dict(self.skipped),
            "bounces": dict(self.bounces),
            "unsubscribes": self.unsubscribes,
            "topic_removals": dict(self.topic_removals),
        }


@dataclass(frozen=True)
class WeekFigure:
    """New subscribers in one week (Monday to Sunday, UTC), by how they joined."""

    week: dt.date  # its Monday
    by_source: dict[str, int]

    @property
    def total(self) -> int:
        """Every new subscriber of the week."""
        return sum(self.by_source.values())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict."""
        return {
            "week": self.week.isoformat(),
            "total": self.total,
            "by_source": dict(self.by_source),
        }


@dataclass(frozen=True)
class Report:
    """Every figure of the reports page (see the module docstring)."""

    generated_at: dt.datetime
    since: dt.date
    statuses: tuple[StatusPoint, ...]
    topics: tuple[TopicFigure, ...]  # the taxonomy's order, then all topics
    last_issue: str | None
    issues: tuple[IssueFigures, ...]  # oldest first
    signups: tuple[WeekFigure, ...]
    notes: tuple[str, ...] = field(default=NOTES)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (dates and times in ISO 8601)."""
        return {
            "generated_at": self.generated_at.isoformat(),
            "since": self.since.isoformat(),
            "statuses": [p.to_dict() for p in self.statuses],
            "topics": [t.to_dict() for t in self.topics],
            "last_issue": self.last_issue,
            "issues": [i.to_dict() for i in self.issues],
            "signups": [w.to_dict() for w in self.signups],
            "notes": list(self.notes),
        }


def _start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


Steps = list[tuple[dt.datetime, str]]


def _status_points(
    people: list[PersonHistory], steps_of: list[Steps], since: dt.date, now: dt.datetime
) -> tuple[StatusPoint, ...]:
    """Counts by status at ``since``, at the start of each later month, and now."""
    moments = [_start(since)]
    month = add_months(since.replace(day=1), 1)
    while _start(month) < now:
        moments.append(_start(month))
        month = add_months(month, 1)
    moments.append(now)
    counts = [dict.fromkeys(SUBSCRIBER_STATUSES, 0) for _ in moments]
    for person, steps in zip(people, steps_of, strict=True):
        for i, moment in enumerate(moments):
            status = person.status if moment is now else status_at(steps, moment)
            if status is not None and person.created_at <= moment:
                counts[i][status] = counts[i].get(status, 0) + 1
    return tuple(StatusPoint(m, c) for m, c in zip(moments, counts, strict=True))


def _topic_figures(
    people: list[PersonHistory], steps_of: list[Steps], last_start: dt.datetime | None
) -> tuple[TopicFigure, ...]:
    now: dict[str, int] = {}
    then: dict[str, int] = {}
    for person, steps in zip(people, steps_of, strict=True):
        if person.status == "active":
            for slug in (ALL_TOPICS,) if person.all_topics else person.topics:
                now[slug] = now.get(slug, 0) + 1
        if (
            last_start is not None
            and person.created_at <= last_start
            and status_at(steps, last_start) == "active"
        ):
            current = TopicChoice(person.all_topics, person.topics)
            first, changes = topic_steps(person.events, current)
            choice = topics_at(first, changes, last_start)
            for slug in (ALL_TOPICS,) if choice.all_topics else choice.slugs:
                then[slug] = then.get(slug, 0) + 1
    names = [(t.slug, t.name) for t in load_taxonomy()] + [(ALL_TOPICS, "All topics")]
    return tuple(
        TopicFigure(slug, name, now.get(slug, 0), None if last_start is None else then.get(slug, 0))
        for slug, name in names
    )


def _after(
    people: list[PersonHistory], start: dt.datetime, end: dt.datetime
) -> tuple[int, dict[str, int]]:
    """Unsubscribes and per-topic removals logged in [start, end)."""
    unsubscribes = 0
    removals: dict[str, int] = {}
    for person in people:
        for e in person.events:
            if not start <= e.at < end:
                continue
            if e.event == "unsubscribed":
                unsubscribes += 1
            elif (change := topic_change(e.detail)) is not None and e.event == "topics_changed":
                for slug in removed_topics(*change):
                    removals[slug] = removals.get(slug, 0) + 1
    return unsubscribes, dict(sorted(removals.items()))


def _issue_figures(
    app: App, status: SendStatus, start: dt.datetime, end: dt.datetime, people: list[PersonHistory]
) -> IssueFigures:
    k = status.summaries
    snapshot_keys = [f"s{i + 1}" for i in range(k)]
    titles = list(status.titles) or snapshot_keys
    sent_by_mask = {mask: c.get("sent", 0) for mask, c in status.variants.items()}
    variants = {VariantKey(mask, k).name: n for mask, n in sorted(sent_by_mask.items()) if n}
    reach = tuple(
        SummaryReach(
            snapshot_keys[i],
            titles[i] if i < len(titles) else snapshot_keys[i],
            sum(n for mask, n in sent_by_mask.items() if mask & (1 << i)),
        )
        for i in range(k)
    )
    unsubscribes, removals = _after(people, start, end)
    return IssueFigures(
        month=status.month,
        subject=status.subject,
        status=status.status,
        started_at=start,
        window_end=end,
        readers=status.sent,
        failed=status.counts.get("failed", 0),
        outstanding=status.outstanding,
        variants=variants,
        reach=reach,
        skipped=dict(sorted(status.skipped.items())),
        bounces=dict(sorted(bounce_store.counts_by_kind(app.store, status.send_id).items())),
        unsubscribes=unsubscribes,
        topic_removals=removals,
    )


def _signups(people: list[PersonHistory], since: dt.date, today: dt.date) -> tuple[WeekFigure, ...]:
    first = since - dt.timedelta(days=since.weekday())
    weeks: dict[dt.date, dict[str, int]] = {}
    week = first
    while week <= today:
        weeks[week] = {}
        week += dt.timedelta(days=7)
    for person in people:
        day = person.created_at.date()
        if day < since or day > today:
            continue
        monday = day - dt.timedelta(days=day.weekday())
        by_source = weeks.setdefault(monday, {})
        by_source[person.source] = by_source.get(person.source, 0) + 1
    return tuple(WeekFigure(w, dict(sorted(s.items()))) for w, s in sorted(weeks.items()))


def build(app: App, since: dt.date | None = None) -> Report:
    """Every figure of the reports page, from ``since`` (default: a year ago) to now."""
    now = app.now()
    today = now.astimezone(dt.UTC).date()
    since = since or add_months(today, -12)
    if since > today:
        raise NewsletterError(
            f"--since {since.isoformat()} is in the future",
            hint="give a past date, YYYY-MM-DD (the default is a year ago)",
        )
    people = report_store.people_histories(app.store)
    steps_of = [status_steps(p.events, p.status, p.created_at) for p in people]
    sends = sorted(ledger.list_sends(app.store), key=lambda s: s.started_at or s.created_at)
    starts = [s.started_at or s.created_at for s in sends]
    figures = []
    for i, (status, start) in enumerate(zip(sends, starts, strict=True)):
        if start < _start(since):
            continue
        end = start + dt.timedelta(days=AFTER_SEND_DAYS)
        if i + 1 < len(starts):
            end = min(end, starts[i + 1])
        figures.append(_issue_figures(app, status, start, min(end, max(now, start)), people))
    last_start = starts[-1] if starts else None
    return Report(
        generated_at=now,
        since=since,
        statuses=_status_points(people, steps_of, since, now),
        topics=_topic_figures(people, steps_of, last_start),
        last_issue=sends[-1].month if sends else None,
        issues=tuple(figures),
        signups=_signups(people, since, today),
    )


def write_html(app: App, path: Path, since: dt.date | None = None) -> Report:
    """Build the report and write it to ``path`` as one self-contained HTML page."""
    from newsletter.render.report import render_report

    report = build(app, since)
    html = render_report(report, app.settings.newsletter_name)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(html)
    except OSError as exc:
        raise NewsletterError(
            f"cannot write the report to {path}: {exc.strerror}",
            hint="give --out a file in a folder that exists and that you may write to",
        ) from None
    return report


# --- audience planning -----------------------------------------------------------------


@dataclass(frozen=True)
class AudiencePlan:
    """Before a send: who gets how many summaries, which chosen topics no summary covers,
    and who has had no summary for ``months`` months."""

    month: str
    titles: tuple[str, ...]
    receiving: int
    histogram: dict[int, int]  # summaries they would get -> readers
    per_summary: tuple[int, ...]
    uncovered: dict[str, int]  # slug -> receiving readers who chose it, most first
    months: int
    since: dt.date
    without_summaries: tuple[str, ...]  # addresses, sorted

    def to_dict(self, addresses: bool = False) -> dict[str, Any]:
        """A JSON-able dict; the addresses only with ``addresses``."""
        out: dict[str, Any] = {
            "month": self.month,
            "receiving": self.receiving,
            "histogram": {str(k): v for k, v in self.histogram.items()},
            "summaries": [
                {"title": t, "readers": n}
                for t, n in zip(self.titles, self.per_summary, strict=True)
            ],
            "uncovered_topics": [{"slug": s, "readers": n} for s, n in self.uncovered.items()],
            "months": self.months,
            "since": self.since.isoformat(),
            "without_summaries": len(self.without_summaries),
        }
        if addresses:
            out["without_summaries_addresses"] = list(self.without_summaries)
        return out


def audience(app: App, month: str, months: int = 3) -> AudiencePlan:
    """Audience planning for the issue of ``month`` with the current subscribers."""
    if months < 1:
        raise NewsletterError(f"--months {months} is not a number of months", hint="give 1 or more")
    issue = issues.load_issue(app, month)
    stats = issues.audience(app, issue.month)
    covered = set().union(*issue.summary_topics) if issue.summaries else set()
    counts = subscriber_store.topic_counts(app.store, app.today())
    uncovered = {
        slug: n
        for slug, n in sorted(counts.by_topic.items(), key=lambda item: (-item[1], item[0]))
        if n and slug not in covered
    }
    since = add_months(app.today(), -months)
    quiet = report_store.without_summaries_since(app.store, _start(since), app.today())
    return AudiencePlan(
        month=issue.month,
        titles=stats.summaries,
        receiving=stats.receiving,
        histogram=stats.histogram,
        per_summary=stats.per_summary,
        uncovered=uncovered,
        months=months,
        since=since,
        without_summaries=tuple(quiet),
    )
