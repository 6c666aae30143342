"""The reports page: one self-contained HTML file drawn from a ``services.reports.Report``.

Everything is inline (CSS and SVG charts from :mod:`newsletter.render.charts`), with no
script, font, image or stylesheet from anywhere: the file opens offline and makes no
request. Colours follow the reader's light or dark setting. Under each chart a table
holds the same numbers (with a caption and header scopes) for screen readers and for
copying.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Sequence
from html import escape
from typing import TYPE_CHECKING, Any

from newsletter.content.taxonomy import topic_names
from newsletter.render.charts import Series, across_bar_chart, bar_chart, line_chart

if TYPE_CHECKING:
    from newsletter.services.reports import IssueFigures, Report

STYLE = """
:root { color-scheme: light dark;
  --bg: #ffffff; --fg: #1d2430; --muted: #5b6472; --grid: #dde1e7; --line: #c5cbd3;
  --c0: #2f6db5; --c1: #d9822b; --c2: #3a9a5b; --c3: #c2413b; --c4: #7d5ab5;
  --c5: #8c6d3f; --c6: #c45a9c; --c7: #5f6b7a; }
@media (prefers-color-scheme: dark) {
  :root { --bg: #14181f; --fg: #e6e9ee; --muted: #a5adba; --grid: #2c333e; --line: #3b4452;
    --c0: #6ea8f0; --c1: #f2a65a; --c2: #6cc98a; --c3: #f07b74; --c4: #b295ec;
    --c5: #d2b37f; --c6: #ee8fca; --c7: #a7b2c0; }
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
  font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
main { max-width: 980px; margin: 0 auto; padding: 1rem; }
h1 { font-size: 1.6rem; margin: .5rem 0; }
h2 { font-size: 1.25rem; margin: 2.5rem 0 .5rem; border-top: 1px solid var(--line);
  padding-top: 1rem; }
p, li { max-width: 70ch; }
.meta, .notes { color: var(--muted); }
figure { margin: 0; overflow-x: auto; }
svg.chart { display: block; width: 100%; min-width: 540px; height: auto; color: var(--fg);
  font: 12px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
svg .label { fill: currentColor; }
svg .grid { stroke: var(--grid); stroke-width: 1; }
svg .axis { stroke: var(--muted); stroke-width: 1; }
svg .line { fill: none; stroke-width: 2.5; }
.series-0 { fill: var(--c0); stroke: var(--c0); } .series-1 { fill: var(--c1); stroke: var(--c1); }
.series-2 { fill: var(--c2); stroke: var(--c2); } .series-3 { fill: var(--c3); stroke: var(--c3); }
.series-4 { fill: var(--c4); stroke: var(--c4); } .series-5 { fill: var(--c5); stroke: var(--c5); }
.series-6 { fill: var(--c6); stroke: var(--c6); } .series-7 { fill: var(--c7); stroke: var(--c7); }
rect[class^="series-"] { stroke: none; }
svg .line.series-0, svg .line.series-1, svg .line.series-2, svg .line.series-3,
svg .line.series-4, svg .line.series-5, svg .line.series-6, svg .line.series-7 { fill: none; }
.table-wrap { overflow-x: auto; margin: .75rem 0 0; }
table { border-collapse: collapse; font-size: .9rem; min-width: 50%; }
caption { text-align: left; color: var(--muted); padding: .25rem 0; }
th, td { padding: .25rem .6rem; border-bottom: 1px solid var(--grid); text-align: right;
  vertical-align: top; white-space: nowrap; }
th[scope="row"], td.text, th.text { text-align: left; }
td.text, th[scope="row"] { white-space: normal; min-width: 8ch; }
thead th { border-bottom: 2px solid var(--line); }
.empty { color: var(--muted); font-style: italic; }
"""


def _date(value: dt.datetime | dt.date) -> str:
    return value.strftime("%Y-%m-%d")


def _moment(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _table(
    caption: str,
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    text: Collection[int] = (0,),
) -> str:
    """A data table: the first cell of each row is its header (``th scope="row"``);
    columns ``text`` hold words (left-aligned, wrapped), the others numbers."""
    head = "".join(
        f'<th scope="col"{" class=text" if i in text else ""}>{escape(h)}</th>'
        for i, h in enumerate(headers)
    )
    body = []
    for row in rows:
        cells = [f'<th scope="row">{escape(str(row[0]))}</th>']
        for i, value in enumerate(row[1:], 1):
            cls = ' class="text"' if i in text else ""
            cells.append(f"<td{cls}>{escape('' if value is None else str(value))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f'<div class="table-wrap"><table><caption>{escape(caption)}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def _section(anchor: str, title: str, intro: str, chart: str | None, table: str) -> str:
    figure = (
        f'<figure aria-describedby="{anchor}-table">{chart}</figure>'
        if chart
        else '<p class="empty">Nothing to draw yet.</p>'
    )
    return (
        f'<section id="{anchor}"><h2>{escape(title)}</h2><p>{escape(intro)}</p>{figure}'
        f'<div id="{anchor}-table">{table}</div></section>'
    )


def _statuses(report: Report) -> str:
    statuses = list(report.statuses[0].counts) if report.statuses else []
    labels = [
        "now" if i == len(report.statuses) - 1 else _date(p.at)
        for i, p in enumerate(report.statuses)
    ]
    chart = line_chart(
        "Subscribers over time by status",
        labels,
        [Series(s, tuple(p.counts.get(s, 0) for p in report.statuses)) for s in statuses],
    )
    rows = [
        (label, *(p.counts.get(s, 0) for s in statuses))
        for label, p in zip(labels, report.statuses, strict=True)
    ]
    table = _table("Subscribers by status at each date", ["Date", *statuses], rows)
    return _section(
        "statuses",
        "Subscribers over time by status",
        "How many people had each status at the start of each month, and now.",
        chart,
        table,
    )


def _topics(report: Report) -> str:
    names = [t.name for t in report.topics]
    series = [Series("now", tuple(t.now for t in report.topics))]
    has_then = report.last_issue is not None
    if has_then:
        series.append(
            Series(f"at {report.last_issue}", tuple(t.at_last_issue or 0 for t in report.topics))
        )
    chart = across_bar_chart("Active subscribers per topic", names, series)
    change = lambda c: "" if c is None else f"{c:+d}"  # noqa: E731
    rows = [(t.name, t.now, t.at_last_issue, change(t.change)) for t in report.topics]
    last = f"At {report.last_issue}" if has_then else "At the last issue (none yet)"
    table = _table(
        "Active subscribers per topic, now and when the last issue was sent",
        ["Topic", "Now", last, "Change"],
        rows,
    )
    return _section(
        "topics",
        "Subscribers per topic",
        "Active subscribers who chose each topic (those who take every topic on the last "
        "line), now and when the last issue's send started.",
        chart,
        table,
    )


def _issue_labels(issues: Sequence[IssueFigures]) -> list[str]:
    return [i.month for i in issues]


def _readers(report: Report) -> str:
    issues = report.issues
    depth = max((len(i.reach) for i in issues), default=0)
    series = []
    for n in range(depth + 1):
        name = "teaser" if n == 0 else f"{n} summar{'y' if n == 1 else 'ies'}"
        values = tuple(
            sum(v for variant, v in i.variants.items() if _summaries_in(variant, len(i.reach)) == n)
            for i in issues
        )
        if any(values):
            series.append(Series(name, values))
    chart = bar_chart(
        "Readers per issue by the number of summaries they got",
        _issue_labels(issues),
        series,
        stacked=True,
    )
    rows = [(i.month, variant, n) for i in issues for variant, n in i.variants.items()]
    table = _table(
        "Messages sent per issue and variant", ["Issue", "Variant", "Readers"], rows, (0, 1)
    )
    return _section(
        "readers",
        "Readers per variant",
        "Messages the mail server accepted for each issue, by variant (which summaries "
        "they held); the chart groups variants by how many summaries they held.",
        chart if issues else None,
        table,
    )


def _summaries_in(variant: str, count: int) -> int:
    if variant == "teaser":
        return 0
    if variant == "all":
        return count
    return len(variant.split("+"))


def _reach(report: Report) -> str:
    issues = report.issues
    depth = max((len(i.reach) for i in issues), default=0)
    series = [
        Series(
            f"summary {n + 1}",
            tuple(i.reach[n].received if n < len(i.reach) else 0 for i in issues),
        )
        for n in range(depth)
    ]
    chart = bar_chart("Readers sent each summary", _issue_labels(issues), series)
    rows = [(i.month, r.key, r.title, r.received) for i in issues for r in i.reach]
    table = _table(
        "Readers sent each summary", ["Issue", "Summary", "Title", "Readers"], rows, (0, 1, 2)
    )
    return _section(
        "reach",
        "Summaries' reach",
        "How many readers were sent each summary of each issue.",
        chart if issues else None,
        table,
    )


def _skipped(report: Report) -> str:
    issues = report.issues
    reasons = sorted({r for i in issues for r in i.skipped})
    series = [Series(r or "(none)", tuple(i.skipped.get(r, 0) for i in issues)) for r in reasons]
    chart = bar_chart(
        "Skipped subscribers per issue by reason", _issue_labels(issues), series, stacked=True
    )
    rows = [(i.month, *(i.skipped.get(r, 0) for r in reasons)) for i in issues]
    table = _table("Skipped subscribers per issue", ["Issue", *reasons], rows)
    return _section(
        "skipped",
        "Skipped reasons",
        "Subscribers planned into a send who were not sent it, by reason.",
        chart if issues and reasons else None,
        table,
    )


def _after(report: Report) -> str:
    issues = report.issues
    series = [
        Series("bounces", tuple(sum(i.bounces.values()) for i in issues)),
        Series("unsubscribes", tuple(i.unsubscribes for i in issues)),
        Series("topic removals", tuple(sum(i.topic_removals.values()) for i in issues)),
    ]
    chart = bar_chart(
        "Bounces, unsubscribes and topic removals after each issue", _issue_labels(issues), series
    )

    def listing(counts: dict[str, int], names: Sequence[str] | None = None) -> str:
        shown = names or list(counts)
        return "; ".join(f"{n} {v}" for n, v in zip(shown, counts.values(), strict=True))

    rows = [
        (
            i.month,
            f"{_date(i.started_at)} to {_date(i.window_end)}",
            sum(i.bounces.values()),
            i.unsubscribes,
            sum(i.topic_removals.values()),
            listing(i.bounces),
            listing(i.topic_removals, topic_names(i.topic_removals)),
        )
        for i in issues
    ]
    table = _table(
        "Bounces, unsubscribes and topic removals after each issue",
        [
            "Issue",
            "Days counted",
            "Bounces",
            "Unsubscribes",
            "Removals",
            "Bounces by kind",
            "Removals by topic",
        ],
        rows,
        (0, 1, 5, 6),
    )
    return _section(
        "after",
        "After each issue",
        "Bounces of each issue's messages, and the unsubscribes and topics dropped in the "
        "days after its send started.",
        chart if issues else None,
        table,
    )


SOURCE_NAMES = {"web": "web sign-up", "cli": "added by an administrator", "import": "imported"}


def _signups(report: Report) -> str:
    weeks = report.signups
    sources = sorted({s for w in weeks for s in w.by_source})
    series = [
        Series(SOURCE_NAMES.get(s, s), tuple(w.by_source.get(s, 0) for w in weeks)) for s in sources
    ]
    labels = [_date(w.week)[5:] for w in weeks]
    chart = bar_chart("New subscribers per week", labels, series, stacked=True)
    rows = [(_date(w.week), w.total, *(w.by_source.get(s, 0) for s in sources)) for w in weeks]
    table = _table(
        "New subscribers per week (weeks start on Monday)",
        ["Week of", "All", *(SOURCE_NAMES.get(s, s) for s in sources)],
        rows,
    )
    return _section(
        "signups",
        "Sign-ups per week",
        "People added to the list each week, by how they joined.",
        chart if weeks and sources else None,
        table,
    )


def render_report(report: Report, title: str = "Newsletter") -> str:
    """The whole page as one HTML string."""
    notes = "".join(f"<li>{escape(n)}</li>" for n in report.notes)
    sections = [
        _statuses(report),
        _topics(report),
        _readers(report),
        _reach(report),
        _skipped(report),
        _after(report),
        _signups(report),
    ]
    heading = f"{title}: report"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'\">"
        f"<title>{escape(heading)}</title><style>{STYLE}</style></head>"
        f"<body><main><h1>{escape(heading)}</h1>"
        f'<p class="meta">From {_date(report.since)} to {_moment(report.generated_at)}.</p>'
        f'<section class="notes" aria-label="About these figures"><ul>{notes}</ul></section>'
        + "".join(sections)
        + "</main></body></html>\n"
    )
