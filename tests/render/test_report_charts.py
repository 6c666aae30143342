"""The reports page's own SVG charts: scalable, coloured by the page, text kept text."""

from __future__ import annotations

import re

import pytest

from newsletter.render.charts import Series, across_bar_chart, bar_chart, line_chart, nice_top

CHARTS = [
    lambda: bar_chart("Bars <&>", ["a", "b"], [Series("x", (1, 2)), Series("y", (3, 0))]),
    lambda: bar_chart(
        "Stacked", ["a", "b"], [Series("x", (1, 2)), Series("y", (3, 0))], stacked=True
    ),
    lambda: across_bar_chart("Across", ["Topic one", "Topic two"], [Series("now", (5, 7))]),
    lambda: line_chart("Lines", ["2026-01", "2026-02", "now"], [Series("active", (1, 4, 9))]),
]


@pytest.mark.parametrize("draw", CHARTS)
def test_a_chart_scales_and_names_no_colour(draw) -> None:
    svg = draw()
    opening = svg[: svg.index(">")]
    assert "viewBox=" in opening and " width=" not in opening and " height=" not in opening
    assert 'role="img"' in opening and "<title>" in svg
    # Colours come from the page's CSS (light and dark), never from the chart.
    assert not re.search(r"#[0-9a-fA-F]{3,6}\b|\b(fill|stroke|style)=", svg)
    assert "<text" in svg and "<path" not in svg  # labels are text, not outlines


def test_titles_and_labels_are_escaped() -> None:
    svg = CHARTS[0]()
    assert "<title>Bars &lt;&amp;&gt;</title>" in svg


def test_axis_tops_are_round_and_above_the_highest_value() -> None:
    for value in (0, 1, 3, 5, 9, 13, 29, 62, 107, 999, 1234, 56_000):
        top = nice_top(value)
        assert top >= value and top >= 4
        step = top / 4
        assert step.is_integer()
        assert top < max(2.5 * value, 8)


def test_crowded_labels_are_thinned_but_every_bar_is_drawn() -> None:
    weeks = [f"w{i}" for i in range(53)]
    svg = bar_chart("Weeks", weeks, [Series("new", tuple(range(1, 54)))])
    assert svg.count('<rect class="series-0"') == 53
    assert 10 <= sum(f">{w}</text>" in svg for w in weeks) <= 18
