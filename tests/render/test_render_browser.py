"""A real browser (Debian chromium through Playwright) opens rendered variants."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.render import build_issue
from tests.plugin import need_browser
from tests.support.render import RecipientFields, personalise

pytestmark = pytest.mark.browser


def _open(browser, tmp_path: Path, html: str, width: int, scheme: str = "light"):
    path = tmp_path / f"email-{width}-{scheme}.html"
    path.write_text(html, "utf-8")
    page = browser.new_page(viewport={"width": width, "height": 800}, color_scheme=scheme)
    page.goto(path.as_uri())
    return page


def test_preview_png_screenshots(project):
    need_browser()
    from click.testing import CliRunner

    from newsletter.cli import cli

    result = CliRunner().invoke(cli, ["issue", "preview", "2026-11", "--png"])
    assert result.exit_code == 0, result.output
    for width in (375, 600):
        png = project / "preview" / f"2026-11-all-{width}px.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("month", ["2026-09", "2026-10", "2026-11"])
@pytest.mark.parametrize("width", [375, 600])
def test_no_horizontal_scroll_and_titles_visible(browser, tmp_path, kit, settings, month, width):
    issue = kit.sample_issue(month)
    variant = build_issue(issue, settings).variant_for([], all_topics=True)
    recipient = RecipientFields(
        "a.rather.long.address.of.a.subscriber@some-university.example.org",
        12345678,
        "Maximiliana Wolkenstein-Oberhausen",
        ("empathy",),
    )
    page = _open(browser, tmp_path, personalise(variant, recipient, settings).html, width)
    try:
        assert page.evaluate("document.scrollingElement.scrollWidth") <= width
        for s in issue.summaries:
            heading = page.locator(f"h2#{s.key}")
            assert heading.is_visible()
            assert heading.inner_text() == s.title
            box = heading.bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= width
        assert page.get_by_text("Practice Implications".upper()).first.is_visible()
        assert page.get_by_role("link", name="Unsubscribe").is_visible()
        # The preheader is in the document but not shown.
        assert page.title() == variant.subject
    finally:
        page.close()


def test_dark_mode_keeps_text_readable(browser, tmp_path, kit, settings):
    variant = build_issue(kit.sample_issue("2026-10"), settings).variant_for([], all_topics=True)
    html = personalise(variant, RecipientFields("a@example.org", 1, "Ann"), settings).html
    page = _open(browser, tmp_path, html, 600, scheme="dark")
    try:
        colours = page.evaluate(
            """() => {
                const h = document.querySelector('h2');
                let el = h, bg = 'rgba(0, 0, 0, 0)';
                while (el && (bg === 'rgba(0, 0, 0, 0)' || bg === 'transparent')) {
                    bg = getComputedStyle(el).backgroundColor; el = el.parentElement;
                }
                return [getComputedStyle(h).color, bg];
            }"""
        )
    finally:
        page.close()

    def luminance(css: str) -> float:
        r, g, b = (int(x) / 255 for x in css[css.index("(") + 1 : -1].split(",")[:3])
        lin = [(c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4) for c in (r, g, b)]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    fg, bg = (luminance(c) for c in colours)
    contrast = (max(fg, bg) + 0.05) / (min(fg, bg) + 0.05)
    assert bg < 0.1, colours  # a dark background in dark mode
    assert contrast >= 7, colours
