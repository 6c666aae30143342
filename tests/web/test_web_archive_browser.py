"""The archive in a real browser (Debian chromium via Playwright) at phone and desktop
widths, on the generated 150-issue catalogue: search, filters, pages, the Cite block."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.support.catalogue import WORDS, write_catalogue
from tests.web.conftest import serve_in_thread

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)]
# Read at import: the autouse isolated_env fixture clears the environment of each test.


@pytest.fixture
def entries(web_project: Path):
    folder = web_project / "issues"
    for path in folder.glob("*.md"):
        path.unlink()
    return write_catalogue(folder)


@pytest.fixture
def server(app, entries):
    """``app`` (on the catalogue) served by waitress in a thread; yields its base URL."""
    yield from serve_in_thread(app)


def _watch(page) -> list[str]:
    """Script errors and Content-Security-Policy refusals the page reports."""
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on(
        "console",
        lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None,
    )
    return problems


def _fits(page, width: int) -> None:
    scroll = page.evaluate("document.scrollingElement.scrollWidth")
    assert scroll <= width, f"{page.url} is {scroll}px wide in a {width}px window"


@pytest.mark.parametrize("width", [375, 1280])
def test_search_filter_and_page_through_the_archive(browser, server, entries, shots, width):
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    problems = _watch(page)
    page.goto(server + "/archive")
    _fits(page, width)
    page.screenshot(path=str(shots / f"archive-{width}.png"), full_page=False)

    word = WORDS[3]
    found = [e for e in entries if e.word == word]
    topic, count = Counter(t for e in found for t in e.topics).most_common(1)[0]
    page.get_by_role("searchbox", name="Search").fill(word)
    page.get_by_role("button", name="Show").click()
    page.wait_for_url(f"**q={word}**")
    _fits(page, width)
    # The topic menu offers the search's topics with their counts, and no empty ones.
    option = page.locator(f'#topic option[value="{topic}"]')
    assert option.inner_text().endswith(f"({count})")
    assert page.locator("#topic option").count() - 1 == len({t for e in found for t in e.topics})
    page.select_option("#topic", topic)
    page.get_by_role("button", name="Show").click()
    page.wait_for_url(f"**topic={topic}**")
    _fits(page, width)
    assert page.get_by_role("searchbox", name="Search").input_value() == word  # the search is kept
    assert page.locator("ol.hits > li").count() == min(20, count)
    assert page.locator("ol.hits mark").first.inner_text().lower() == word
    page.screenshot(path=str(shots / f"search-{width}.png"), full_page=True)

    # Browsing: the page links keep the filter; page 2 is one tap away.
    page.goto(server + f"/archive?topic={topic}")
    nav = page.get_by_role("navigation", name="Pages")
    if nav.count():
        nav.screenshot(path=str(shots / f"nav-{width}.png"))
        nav.get_by_role("link", name="2", exact=True).click()
        page.wait_for_url("**page=2**")
        assert f"topic={topic}" in page.url
        _fits(page, width)
    page.goto(server + "/archive?page=7")
    _fits(page, width)
    page.get_by_role("navigation", name="Pages").screenshot(path=str(shots / f"nav7-{width}.png"))
    page.screenshot(path=str(shots / f"pages-{width}.png"), full_page=True)
    assert not problems, problems
    context.close()


@pytest.mark.parametrize("width", [375, 1280])
def test_the_cite_block_copies_the_citation(browser, server, entries, shots, width):
    context = browser.new_context(viewport={"width": width, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server)
    page = context.new_page()
    problems = _watch(page)
    entry = entries[-1]
    page.goto(server + "/archive")
    page.get_by_role("link", name=entry.title, exact=True).click()
    page.get_by_role("heading", name="Cite").wait_for()
    _fits(page, width)
    buttons = page.locator(".cite button.copy")
    assert buttons.count() == 2 and buttons.nth(1).is_visible()  # shown by cite.js
    buttons.nth(1).click()
    page.get_by_text("Copied to the clipboard.").wait_for()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied.startswith(f"Research Digest. ({entry.month[:4]}, ")
    assert copied.endswith(page.url.replace(server, "https://news.example.org"))
    assert "Retrieved " in copied
    page.locator(".cite").scroll_into_view_if_needed()
    page.screenshot(path=str(shots / f"cite-{width}.png"), full_page=True)
    assert not problems, problems
    context.close()
