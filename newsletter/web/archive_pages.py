"""The public archive: sent and published issues, searchable, filterable, paged, in feeds.

``/archive/YYYY-MM`` and ``/archive/YYYY-MM/<summary key>`` are the addresses the emails'
"view in browser" and "Also in this issue" links point to. Drafts and issues not yet
sent answer 404, exactly like months that do not exist.

The index (``/archive``) takes ``?q=`` (a search), ``?topic=`` and ``?type=`` (filters)
and ``?page=``. Browsing pages are kept in the page cache; a search is not (its text is
the visitor's), but it reads the cache's version, on which the search index follows the
issue files. Feeds: ``/archive/feed.atom`` (and ``.rss``) and
``/archive/topic/<slug>/feed.atom`` (and ``.rss``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable
from urllib.parse import urlencode

from flask import Blueprint, Response, abort, redirect, request, url_for
from markupsafe import Markup, escape

from newsletter.content.markdown import plain_text, render_markdown
from newsletter.content.model import Issue
from newsletter.content.taxonomy import RESEARCH_TYPES, load_taxonomy
from newsletter.rules.links import archive_url
from newsletter.rules.months import is_month
from newsletter.rules.search_query import HIGHLIGHT_END, HIGHLIGHT_START
from newsletter.services import archive, issues
from newsletter.web.context import page, web
from newsletter.web.feeds import FEED_TYPES, feed_bytes
from newsletter.web.topic_groups import topic_groups

archive_pages = Blueprint("archive_pages", __name__)

KEY = re.compile(r"^[a-z0-9][a-z0-9-]{0,150}$")
PAGE = re.compile(r"^[1-9][0-9]{0,5}$")
# Characters of the description meta tag (search engines show about this many).
DESCRIPTION_CHARS = 200


def markdown(text: str | None) -> Markup:
    """Issue Markdown as HTML (raw HTML in the source is escaped by render_markdown)."""
    return Markup(render_markdown(text or ""))


@archive_pages.app_template_filter("markdown")
def _markdown_filter(text: str | None) -> Markup:
    return markdown(text)


@archive_pages.app_template_filter("highlight")
def highlight(snippet: str) -> Markup:
    """A search snippet as HTML: everything escaped, then the matched words in ``<mark>``."""
    escaped = str(escape(snippet))
    return Markup(escaped.replace(HIGHLIGHT_START, "<mark>").replace(HIGHLIGHT_END, "</mark>"))


def describe(text: str | None, limit: int = DESCRIPTION_CHARS) -> str:
    """Plain text of Markdown ``text`` cut at a word, for a description meta tag."""
    words = plain_text(text or "")
    if len(words) <= limit:
        return words
    return words[: limit - 1].rsplit(" ", 1)[0].rstrip(" ,;:.") + "…"


def _version() -> object:
    return issues.archive_version(web().app)


def _cached(key: Hashable, render: Callable[[], tuple[str, int]]) -> tuple[bytes, int]:
    """The page under ``key`` from the archive cache, rendered and kept if missing."""
    ctx = web()
    found = ctx.archive_cache.get(key, _version)
    if found is None:
        html, status = render()
        found = (html.encode("utf-8"), status)  # encoded once, not per request
        ctx.archive_cache.put(key, found)
    return found


def _public_issue(month: str) -> Issue:
    if not is_month(month):
        abort(404)
    issue = issues.public_issue(web().app, month)
    if issue is None:
        abort(404)
    return issue


def _base_url() -> str:
    return web().settings.base_url


def _index_url(**args: object) -> str:
    """The index's address with the non-empty ``args`` (for links between its pages)."""
    kept = {k: v for k, v in args.items() if v not in (None, "", 1)}
    return url_for("archive_pages.archive_index") + ("?" + urlencode(kept) if kept else "")


@archive_pages.get("/archive/")
@archive_pages.get("/archive")
def archive_index():
    """The public issues, newest first; ``?q=`` searches, ``?topic=&type=`` filter,
    ``?page=N`` pages (a page past the last is 404)."""
    topic = request.args.get("topic") or None
    research = request.args.get("type") or None
    q = (request.args.get("q") or "").strip()
    page_arg = request.args.get("page") or "1"
    errors = {}
    if topic is not None and topic not in load_taxonomy().by_slug:
        errors["topic"] = "There is no such topic; showing every topic."
        topic = None
    if research is not None and research not in {r.slug for r in RESEARCH_TYPES}:
        errors["type"] = "There is no such type of research; showing every type."
        research = None
    if not PAGE.match(page_arg):
        abort(404)
    number = int(page_arg)
    ctx = web()

    def render() -> tuple[str, int]:
        try:
            result = archive.archive_page(
                ctx.app,
                topic,
                research,
                q,
                number,
                version=ctx.archive_cache.version(_version),
            )
        except archive.PageOutOfRangeError:
            abort(404)
        # Links carry the query as it was read (at most MAX_QUERY_CHARS), not as sent.
        shown = result.query.text if q else None
        links = _page_links(result, shown)
        taxonomy = load_taxonomy()
        return page(
            "archive_index.html",
            400 if errors else 200,
            result=result,
            q=shown or "",
            groups=topic_groups(),
            research_types=RESEARCH_TYPES,
            topic=topic,
            topic_name=taxonomy.by_slug[topic].name if topic else None,
            research=research,
            research_name={r.slug: r.name for r in RESEARCH_TYPES}.get(research or ""),
            errors=errors,
            links=links,
            canonical=_base_url()
            + _index_url(topic=topic, type=research, q=shown, page=result.page),
            feeds=_feed_links(topic),
            description=f"Research summaries for psychotherapists from "
            f"{ctx.settings.newsletter_name}"
            + (f", on {taxonomy.by_slug[topic].name}" if topic else "")
            + ": search them, or browse by topic and type of research.",
        )

    if q:
        body, status = render()  # the visitor's text: never kept
        return body, status
    # Only checked values make a key: a stranger's query string cannot fill the cache.
    return _cached(("index", topic, research, number, tuple(sorted(errors))), render)


def _page_links(result: archive.ArchivePage, q: str | None) -> dict[str, object]:
    """Addresses of the previous, next and numbered pages, with the filters kept."""

    def at(n: int) -> str:
        return _index_url(topic=result.topic, type=result.research, q=q, page=n)

    shown = sorted(
        {1, result.pages, *range(max(1, result.page - 2), min(result.pages, result.page + 2) + 1)}
    )
    return {
        "prev": at(result.page - 1) if result.page > 1 else None,
        "next": at(result.page + 1) if result.page < result.pages else None,
        "numbers": [(n, at(n)) for n in shown],
    }


def _feed_links(topic: str | None) -> list[tuple[str, str, str]]:
    """(title, type, address) of the feeds a page names in its head."""
    name = web().settings.newsletter_name
    out = [
        (f"{name}: every summary (Atom)", FEED_TYPES["atom"], url_for(".feed", kind="atom")),
        (f"{name}: every summary (RSS)", FEED_TYPES["rss"], url_for(".feed", kind="rss")),
    ]
    if topic:
        topic_name = load_taxonomy().by_slug[topic].name
        for kind, label in (("atom", "Atom"), ("rss", "RSS")):
            out.append(
                (
                    f"{name}: {topic_name} ({label})",
                    FEED_TYPES[kind],
                    url_for(".topic_feed", slug=topic, kind=kind),
                )
            )
    return out


@archive_pages.get("/archive/feed.<kind>")
def feed(kind: str):
    """Atom or RSS feed of the newest summaries of every topic."""
    if kind not in FEED_TYPES:
        abort(404)
    return _feed(kind, None)


@archive_pages.get("/archive/topic/<slug>/feed.<kind>")
def topic_feed(slug: str, kind: str):
    """Atom or RSS feed of the newest summaries on one topic (an unknown topic is 404)."""
    if kind not in FEED_TYPES or slug not in load_taxonomy().by_slug:
        abort(404)
    return _feed(kind, slug)


def _feed(kind: str, slug: str | None) -> Response:
    ctx = web()
    topic = load_taxonomy().by_slug[slug] if slug else None

    def render() -> tuple[str, int]:
        items = archive.feed_summaries(ctx.app, slug)
        body = feed_bytes(kind, _base_url(), ctx.settings.newsletter_name, items, topic)
        return body.decode("utf-8"), 200

    body, status = _cached(("feed", kind, slug), render)
    return Response(body, status, mimetype=FEED_TYPES[kind])


@archive_pages.get("/archive/<month>")
def archive_issue(month: str):
    """One issue with every summary."""
    if not is_month(month):
        abort(404)

    def render() -> tuple[str, int]:
        issue = _public_issue(month)
        return page(
            "archive_issue.html",
            issue=issue,
            canonical=archive_url(_base_url(), month),
            description=describe(issue.intro)
            or "; ".join(s.title for s in issue.summaries)[:DESCRIPTION_CHARS],
            feeds=_feed_links(None),
        )

    return _cached(("issue", month), render)


@archive_pages.get("/archive/<month>/<key>")
def archive_summary(month: str, key: str):
    """One summary, with a citation block and the other summaries of its issue listed.

    An older address of the summary (see :func:`newsletter.services.archive.find_summary`)
    is redirected, permanently, to its current one.
    """
    if not is_month(month) or not KEY.match(key):
        abort(404)
    ctx = web()

    def render() -> tuple[str, int]:
        found = archive.find_summary(ctx.app, month, key)
        if found is None or (found.summary is None and found.moved_to is None):
            abort(404)
        if found.summary is None:
            # Kept like a page: the redirect only changes when the issue file does.
            return f"moved:{found.moved_to}", 301
        issue, summary = found.issue, found.summary
        url = archive_url(_base_url(), month, key)
        return page(
            "archive_summary.html",
            issue=issue,
            summary=summary,
            others=[s for s in issue.summaries if s.key != key],
            canonical=url,
            description=describe(summary.body),
            feeds=_feed_links(None),
            accessed=ctx.app.today(),
        )

    body, status = _cached(("summary", month, key), render)
    if status == 301:
        target = body.decode("utf-8").removeprefix("moved:")
        return redirect(url_for(".archive_summary", month=month, key=target), 301)
    return body, status
