"""The archive at catalogue size: 150 generated issues (350 summaries).

Pages of 12 issues, search through the store's full-text index (both databases), filter
counts, feeds, page meta data, citations and stable summary addresses. What each page
must show is worked out from the generated catalogue (tests/support/catalogue.py).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest

from newsletter.content.taxonomy import load_taxonomy
from newsletter.rules.months import month_name
from tests.support.catalogue import WORDS, Entry, write_catalogue

SQLITE_ONLY = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
ATOM = "{http://www.w3.org/2005/Atom}"
BASE = "https://news.example.org"


@pytest.fixture
def entries(web_project: Path) -> list[Entry]:
    """The generated catalogue in place of the sample issues."""
    folder = web_project / "issues"
    for path in folder.glob("*.md"):
        path.unlink()
    return write_catalogue(folder)


def _get(client, url: str, status: int = 200) -> str:
    r = client.get(url)
    assert r.status_code == status, url
    return r.get_data(as_text=True)


def _issue_headings(html: str) -> list[str]:
    return re.findall(r'<h2 id="m-(\d{4}-\d{2})">', html)


def _option_counts(html: str, select: str) -> dict[str, int]:
    body = html.split(f'<select id="{select}"', 1)[1].split("</select>", 1)[0]
    return {
        v: int(n) for v, n in re.findall(r'<option value="([a-z-]+)"[^>]*>[^<]*\((\d+)\)', body)
    }


@SQLITE_ONLY
def test_pages_of_twelve_issues_with_links_that_keep_the_filter(client, entries):
    months = sorted({e.month for e in entries}, reverse=True)
    first = _get(client, "/archive")
    assert _issue_headings(first) == months[:12]
    assert '<link rel="next" href="/archive?page=2">' in first
    assert 'rel="prev"' not in first
    assert "Page 1 of 13." in first
    last = _get(client, "/archive?page=13")
    assert _issue_headings(last) == months[144:]
    assert '<link rel="prev" href="/archive?page=12">' in last and 'rel="next"' not in last
    assert 'aria-current="page" href="/archive?page=13">13<' in last
    # Past the last page, or not a page number: 404, like any address that is not there.
    for bad in ("14", "0", "-1", "2x", "99999999"):
        _get(client, f"/archive?page={bad}", 404)
    # A filter is kept in the links and counts what it shows.
    topic = entries[0].topics[0]
    with_topic = sorted({e.month for e in entries if topic in e.topics}, reverse=True)
    html = _get(client, f"/archive?topic={topic}")
    assert _issue_headings(html) == with_topic[:12]
    n = sum(topic in e.topics for e in entries)
    assert f"{n} summaries on {load_taxonomy().by_slug[topic].name} in {len(with_topic)}" in html
    if len(with_topic) > 12:
        assert f'href="/archive?topic={topic}&amp;page=2"' in html


def test_search_finds_ranks_marks_and_pages_on_both_databases(client, entries):
    word = WORDS[0]
    matching = [e for e in entries if e.word == word]
    html = _get(client, f"/archive?q={word}")
    assert f"{len(matching)} summaries match “{word}”" in html
    hits = re.findall(r'class="hit-title" href="/archive/(\d{4}-\d{2})/([a-z0-9-]+)"', html)
    assert len(hits) == 20
    assert {m for m, _ in hits} <= {e.month for e in matching}
    assert f"<mark>{word}</mark>" in html
    assert f'<link rel="next" href="/archive?q={word}&amp;page=2">' in html
    assert '<ol class="hits" start="1">' in html
    assert '<ol class="hits" start="21">' in _get(client, f"/archive?q={word}&page=2")
    pages = -(-len(matching) // 20)
    last = _get(client, f"/archive?q={word}&page={pages}")
    assert len(re.findall(r'class="hit-title"', last)) == len(matching) - 20 * (pages - 1)
    _get(client, f"/archive?q={word}&page={pages + 1}", 404)
    # A title word ranks its summary first; a phrase and a prefix work too.
    target = entries[123]
    html = _get(client, f"/archive?q={target.word}+{target.number}")
    assert re.search(r'class="hit-title" href="/archive/([\d-]+)/([a-z0-9-]+)"', html).group(1) == (
        target.month
    )
    assert "1 summary match" in _get(client, f'/archive?q="number {target.number}"+{target.word}')
    n = sum(e.word == word for e in entries)
    assert f"{n} summaries match" in _get(client, f"/archive?q={word[:4]}*")


def test_filter_counts_follow_the_search_and_the_other_filter(client, entries):
    word = WORDS[1]
    research = "meta-analysis"
    html = _get(client, f"/archive?q={word}&type={research}")
    found = [e for e in entries if e.word == word]
    expect_topics = Counter(t for e in found if e.research == research for t in e.topics)
    expect_types = Counter(e.research for e in found if e.research)
    assert _option_counts(html, "topic") == dict(expect_topics)
    assert _option_counts(html, "type") == dict(expect_types)
    shown = sum(1 for e in found if e.research == research)
    assert f"{shown} summaries match" in html
    # Topics with no matching summary are not offered at all.
    absent = next(t.slug for t in load_taxonomy() if t.slug not in expect_topics)
    assert f'value="{absent}"' not in html.split('<select id="topic"', 1)[1].split("</select>")[0]


HOSTILE = ['"', "(", "NEAR(a b)", "*", "a AND", "'; DROP TABLE x; --", "ü*" * 20, "x" * 2048]


def test_any_search_text_gives_a_page(client, web_project):
    for text in HOSTILE:
        r = client.get("/archive", query_string={"q": text})
        assert r.status_code == 200, text
        assert "Traceback" not in r.get_data(as_text=True)


def test_the_index_follows_the_issue_files_and_escapes_snippets(
    app, client, web_project, store_url
):
    ctx = app.extensions["newsletter"]
    assert "0 summaries match" in _get(client, "/archive?q=zebrafish")
    october = web_project / "issues" / "2026-10.md"
    october.write_text(
        october.read_text().replace(
            "Eighty-two samples", "Eighty-two <b>zebrafish</b> & samples", 1
        )
    )
    ctx.archive_cache.clear()  # as when `recheck` seconds have passed
    html = _get(client, "/archive?q=zebrafish")
    assert "1 summary match" in html
    snippet = html.split('<p class="snippet">', 1)[1].split("</p>", 1)[0]
    # Everything is escaped but the marks (PostgreSQL's headline leaves tags out).
    assert "<mark>zebrafish</mark>" in snippet and "&amp; samples" in snippet
    assert "<b>" not in snippet
    if store_url.startswith("sqlite"):
        assert "&lt;b&gt;<mark>zebrafish</mark>&lt;/b&gt; &amp; samples" in snippet


@SQLITE_ONLY
def test_feeds_for_everything_and_per_topic(client, entries):
    newest = sorted(entries, key=lambda e: (e.month, -e.number), reverse=True)
    r = client.get("/archive/feed.atom")
    assert r.status_code == 200 and r.mimetype == "application/atom+xml"
    feed = ET.fromstring(r.data)
    items = feed.findall(f"{ATOM}entry")
    assert len(items) == 50
    first = items[0]
    month = newest[0].month
    assert first.findtext(f"{ATOM}title") in {e.title for e in entries if e.month == month}
    assert first.findtext(f"{ATOM}id").startswith(f"{BASE}/archive/{month}/")
    assert first.find(f"{ATOM}link").get("href") == first.findtext(f"{ATOM}id")
    assert first.findtext(f"{ATOM}updated").startswith(f"{month}-01T00:00:00")
    assert "Practice implications" in first.findtext(f"{ATOM}content")
    months = [i.findtext(f"{ATOM}id").split("/")[4] for i in items]
    assert months == sorted(months, reverse=True)
    rss = ET.fromstring(client.get("/archive/feed.rss").data)
    assert len(rss.findall("channel/item")) == 50
    # Per topic: only that topic's summaries, categories are the topics.
    topic = entries[5].topics[0]
    on_topic = [e for e in entries if topic in e.topics]
    feed = ET.fromstring(client.get(f"/archive/topic/{topic}/feed.atom").data)
    items = feed.findall(f"{ATOM}entry")
    assert len(items) == min(50, len(on_topic))
    for item in items:
        assert topic in {c.get("term") for c in item.findall(f"{ATOM}category")}
    rss = ET.fromstring(client.get(f"/archive/topic/{topic}/feed.rss").data)
    assert len(rss.findall("channel/item")) == len(items)
    for bad in ("/archive/topic/astrology/feed.atom", "/archive/feed.xml", "/archive/topic/x/y"):
        _get(client, bad, 404)
    html = _get(client, f"/archive?topic={topic}")
    assert '<link rel="alternate" type="application/atom+xml" title="Research Digest: ' in html
    assert f'href="/archive/topic/{topic}/feed.atom"' in html


@SQLITE_ONLY
def test_titles_descriptions_open_graph_and_canonical_links_are_escaped(client, web_project):
    october = web_project / "issues" / "2026-10.md"
    october.write_text(
        october.read_text().replace(
            "## Therapist Empathy and Client Outcome", '## Empathy "Works" <Really> & Truly', 1
        )
    )
    key = "empathy-works-really-truly"
    pages = {
        "/archive": ("Archive · Research Digest", f"{BASE}/archive", "website"),
        "/archive/2026-10": (
            "October 2026 · Research Digest",
            f"{BASE}/archive/2026-10",
            "website",
        ),
        f"/archive/2026-10/{key}": (
            "Empathy &#34;Works&#34; &lt;Really&gt; &amp; Truly · Research Digest",
            f"{BASE}/archive/2026-10/{key}",
            "article",
        ),
    }
    for url, (title, canonical, kind) in pages.items():
        html = _get(client, url)
        assert f"<title>{title}</title>" in html, url
        assert f'<link rel="canonical" href="{canonical}">' in html
        assert f'<meta property="og:url" content="{canonical}">' in html
        assert f'<meta property="og:type" content="{kind}">' in html
        assert re.search(r'<meta name="description" content="[^"<>]{20,}">', html), url
        assert re.search(r'<meta property="og:description" content="[^"<>]{20,}">', html)
        assert '<meta property="og:title" content="' in html
    html = _get(client, f"/archive/2026-10/{key}")
    assert (
        '<meta property="og:title" content="Empathy &#34;Works&#34; &lt;Really&gt; &amp; Truly">'
        in html
    )


@SQLITE_ONLY
def test_the_summary_page_has_a_cite_block_with_copy_buttons(client):
    from newsletter.content.files import get_issue
    from tests.plugin import SAMPLE_ISSUES

    summary = get_issue(SAMPLE_ISSUES, "2026-10").summaries[0]
    html = _get(client, f"/archive/2026-10/{summary.key}")
    cite = html.split('<section class="cite"', 1)[1].split("</section>", 1)[0]
    assert summary.citation.replace("&", "&amp;") in cite
    line = re.sub(r"<[^>]+>", "", cite.split('id="cite-summary">', 1)[1].split("</p>", 1)[0])
    assert line.startswith(f"Research Digest. (2026, October). {summary.title}. Retrieved ")
    assert line.endswith(f"from {BASE}/archive/2026-10/{summary.key}")
    assert "Retrieved " in line
    assert cite.count('class="copy"') == 2 and cite.count(" hidden>Copy</button>") == 2
    assert '<script src="/static/cite.js" defer></script>' in html
    js = client.get("/static/cite.js")
    assert js.status_code == 200 and "clipboard" in js.get_data(as_text=True)


@SQLITE_ONLY
def test_old_numbered_addresses_of_colliding_titles_redirect(client, web_project):
    path = web_project / "issues" / "2026-10.md"
    text = path.read_text()
    text = text.replace("## Therapist Empathy and Client Outcome", "## Sleep?", 1)
    text = text.replace("## Repairing Ruptures in the Alliance Pays Off", "## Sleep!", 1)
    path.write_text(text)
    from newsletter.content.files import get_issue

    keys = [s.key for s in get_issue(web_project / "issues", "2026-10").summaries[:2]]
    for old, new in zip(("sleep", "sleep-2"), keys, strict=True):
        r = client.get(f"/archive/2026-10/{old}")
        assert r.status_code == 301 and r.headers["Location"] == f"/archive/2026-10/{new}"
        assert _get(client, r.headers["Location"]).count("<h1") == 1
    _get(client, "/archive/2026-10/sleep-3", 404)
    assert month_name("2026-10") == "October 2026"
