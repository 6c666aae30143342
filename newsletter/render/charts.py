"""Small SVG charts for the reports page: bars (grouped, stacked, across) and lines.

Our own rather than a plotting library: a chart is a few dozen shapes, and drawing them
here keeps the page self-contained and fast (see ``bench/bench_report.py``), the text
real text, and the colours in the page's CSS. (Measured on the development machine:
matplotlib's SVG backend took 1.7 to 2.2 s to import and 0.9 to 1.7 s for seven bar
charts, and brings about 120 MB of packages; these seven take a few milliseconds.)

Every shape carries a class (``series-0``, ``series-1``, ... ``axis``, ``grid``,
``label``) that the page colours for light and dark (``prefers-color-scheme``); nothing
in a chart names a colour. Charts have a ``viewBox`` and no fixed size, so they scale to
their column. Each has a ``<title>`` and ``role="img"``; the page puts a table of the
same numbers under it for screen readers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

WIDTH = 720
#: Series a chart can tell apart by colour (the page defines one colour each).
PALETTE_SIZE = 8
#: Most category labels under a chart (more are thinned out; the table has them all).
MAX_LABELS = 18


@dataclass(frozen=True)
class Series:
    """One named row of values, one per category."""

    name: str
    values: tuple[float, ...]


def nice_top(value: float, ticks: int = 4) -> float:
    """The top of an axis at or above ``value`` whose ``ticks`` steps are round whole
    numbers (1, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 times a power of ten; the charts count
    people)."""
    if value <= ticks:
        return float(ticks)
    rough = value / ticks
    power = 10 ** math.floor(math.log10(rough))
    steps = (m * power for m in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10))
    step = next(s for s in steps if s >= rough and float(s).is_integer())
    return float(step * ticks)


def _ticks(top: float, n: int = 4) -> list[float]:
    return [top * i / n for i in range(n + 1)]


def _number(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:.1f}"


def _svg(height: float, title: str, body: list[str], legend: Sequence[str]) -> str:
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height:.0f}" role="img" '
        f'xmlns="http://www.w3.org/2000/svg" preserveAspectRatio="xMinYMin meet">',
        f"<title>{escape(title)}</title>",
        *body,
    ]
    if len(legend) > 1:
        x = 10.0
        y = height - _legend_height(legend) + 24
        for i, name in enumerate(legend):
            label = escape(name)
            parts.append(
                f'<rect class="series-{i % PALETTE_SIZE}" x="{x:.1f}" y="{y - 10:.1f}" '
                f'width="12" height="12" rx="2"/>'
                f'<text class="label" x="{x + 16:.1f}" y="{y:.1f}">{label}</text>'
            )
            x += 28 + 7.5 * len(name)
            if x > WIDTH - 120:
                x, y = 10.0, y + 18
    parts.append("</svg>")
    return "".join(parts)


def _legend_height(names: Sequence[str]) -> float:
    if len(names) <= 1:
        return 8
    rows, x = 1, 10.0
    for name in names:
        x += 28 + 7.5 * len(name)
        if x > WIDTH - 120:
            rows, x = rows + 1, 10.0
    return 14 + 18 * rows


def bar_chart(
    title: str,
    categories: Sequence[str],
    series: Sequence[Series],
    *,
    stacked: bool = False,
) -> str:
    """Upright bars, one group (or one stack) per category."""
    left, top, plot_h = 64.0, 12.0, 220.0
    plot_w = WIDTH - left - 12
    legend_h = _legend_height([s.name for s in series])
    rotate = len(categories) > 8
    label_h = 64.0 if rotate else 24.0
    height = top + plot_h + label_h + legend_h
    if stacked:
        highest = max(
            (sum(vals) for vals in zip(*(s.values for s in series), strict=True)), default=0
        )
    else:
        highest = max((v for s in series for v in s.values), default=0)
    ymax = nice_top(highest)
    body: list[str] = []
    for t in _ticks(ymax):
        y = top + plot_h - plot_h * t / ymax
        body.append(
            f'<line class="grid" x1="{left}" x2="{left + plot_w:.1f}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="label" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{_number(t)}</text>"
        )
    n = max(len(categories), 1)
    slot = plot_w / n
    bar_w = slot * 0.7 / (1 if stacked else max(len(series), 1))
    for ci, category in enumerate(categories):
        x0 = left + slot * ci + slot * 0.15
        base = 0.0
        for si, s in enumerate(series):
            v = s.values[ci]
            h = plot_h * v / ymax
            if stacked:
                y = top + plot_h - plot_h * (base + v) / ymax
                x = x0
                base += v
            else:
                y = top + plot_h - h
                x = x0 + bar_w * si
            if v:
                body.append(
                    f'<rect class="series-{si % PALETTE_SIZE}" x="{x:.1f}" y="{y:.1f}" '
                    f'width="{max(bar_w - 1, 1):.1f}" height="{h:.1f}">'
                    f"<title>{escape(category)}, {escape(s.name)}: {_number(v)}</title></rect>"
                )
        cx = left + slot * ci + slot / 2
        ly = top + plot_h + 14
        label = escape(category)
        if ci % _label_step(len(categories)):
            continue
        if rotate:
            body.append(
                f'<text class="label" x="{cx:.1f}" y="{ly:.1f}" text-anchor="end" '
                f'transform="rotate(-45 {cx:.1f} {ly:.1f})">{label}</text>'
            )
        else:
            body.append(
                f'<text class="label" x="{cx:.1f}" y="{ly + 2:.1f}" '
                f'text-anchor="middle">{label}</text>'
            )
    body.append(
        f'<line class="axis" x1="{left}" x2="{left + plot_w:.1f}" '
        f'y1="{top + plot_h}" y2="{top + plot_h}"/>'
    )
    return _svg(height, title, body, [s.name for s in series])


def across_bar_chart(title: str, categories: Sequence[str], series: Sequence[Series]) -> str:
    """Bars lying across, one row per category (long names, e.g. topics)."""
    left, top, row = 300.0, 24.0, 10.0 + 8.0 * len(series)
    plot_w = WIDTH - left - 40
    legend_h = _legend_height([s.name for s in series])
    plot_h = row * len(categories)
    height = top + plot_h + 8 + legend_h
    ymax = nice_top(max((v for s in series for v in s.values), default=0))
    body: list[str] = []
    for t in _ticks(ymax):
        x = left + plot_w * t / ymax
        body.append(
            f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + plot_h:.1f}"/>'
            f'<text class="label" x="{x:.1f}" y="{top - 8}" '
            f'text-anchor="middle">{_number(t)}</text>'
        )
    bar_h = (row - 6) / max(len(series), 1)
    for ci, category in enumerate(categories):
        y0 = top + row * ci + 3
        for si, s in enumerate(series):
            v = s.values[ci]
            if v:
                body.append(
                    f'<rect class="series-{si % PALETTE_SIZE}" x="{left}" '
                    f'y="{y0 + bar_h * si:.1f}" '
                    f'width="{plot_w * v / ymax:.1f}" height="{max(bar_h - 1, 1):.1f}">'
                    f"<title>{escape(category)}, {escape(s.name)}: {_number(v)}</title></rect>"
                )
        body.append(
            f'<text class="label" x="{left - 6}" y="{y0 + row / 2:.1f}" text-anchor="end">'
            f"{escape(_shorten(category, 40))}</text>"
        )
    body.append(f'<line class="axis" x1="{left}" x2="{left}" y1="{top}" y2="{top + plot_h:.1f}"/>')
    return _svg(height, title, body, [s.name for s in series])


def line_chart(title: str, categories: Sequence[str], series: Sequence[Series]) -> str:
    """One line per series over the categories (points in time)."""
    left, top, plot_h = 64.0, 12.0, 220.0
    plot_w = WIDTH - left - 24
    legend_h = _legend_height([s.name for s in series])
    rotate = len(categories) > 8
    label_h = 64.0 if rotate else 24.0
    height = top + plot_h + label_h + legend_h
    ymax = nice_top(max((v for s in series for v in s.values), default=0))
    body: list[str] = []
    for t in _ticks(ymax):
        y = top + plot_h - plot_h * t / ymax
        body.append(
            f'<line class="grid" x1="{left}" x2="{left + plot_w:.1f}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="label" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{_number(t)}</text>"
        )
    n = len(categories)
    step = plot_w / max(n - 1, 1)

    def xy(i: int, v: float) -> tuple[float, float]:
        return left + step * i, top + plot_h - plot_h * v / ymax

    for si, s in enumerate(series):
        points = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(i, v) for i, v in enumerate(s.values)))
        cls = f"series-{si % PALETTE_SIZE}"
        body.append(f'<polyline class="line {cls}" points="{points}"/>')
        for i, v in enumerate(s.values):
            x, y = xy(i, v)
            body.append(
                f'<circle class="{cls}" cx="{x:.1f}" cy="{y:.1f}" r="3">'
                f"<title>{escape(categories[i])}, {escape(s.name)}: {_number(v)}</title></circle>"
            )
    for i, category in enumerate(categories):
        x, _ = xy(i, 0)
        ly = top + plot_h + 14
        if i % _label_step(n):
            continue
        if rotate:
            body.append(
                f'<text class="label" x="{x:.1f}" y="{ly:.1f}" text-anchor="end" '
                f'transform="rotate(-45 {x:.1f} {ly:.1f})">{escape(category)}</text>'
            )
        else:
            body.append(
                f'<text class="label" x="{x:.1f}" y="{ly + 2:.1f}" text-anchor="middle">'
                f"{escape(category)}</text>"
            )
    body.append(
        f'<line class="axis" x1="{left}" x2="{left + plot_w:.1f}" '
        f'y1="{top + plot_h}" y2="{top + plot_h}"/>'
    )
    return _svg(height, title, body, [s.name for s in series])


def _label_step(n: int) -> int:
    """Label every category, or every second, third ... when there are too many to read."""
    return max(1, math.ceil(n / MAX_LABELS))


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
