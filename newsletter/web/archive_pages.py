"""The public archive: sent and published issues, filterable by topic and research type.

``/archive/YYYY-MM`` and ``/archive/YYYY-MM/<summary key>`` are the addresses the emails'
"view in browser" and "Also in this issue" links point to. Drafts and issues not yet
sent answer 404, exactly like months that do not exist.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable

from flask import Blueprint, abort, request
from markupsafe import Markup

from newsletter.content.markdown import render_markdown
from newsletter.content.model import Issue
from newsletter.content.taxonomy import RESEARCH_TYPES, load_taxonomy
from newsletter.rules.months import is_month
from newsletter.services import issues
from newsletter.web.context import page, web
from newsletter.web.topic_groups import topic_groups

archive_pages = Blueprint("archive_pages", __name__)

KEY = re.compile(r"^[a-z0-9][a-z0-9-]{0,150}$")


def markdown(text: str | None) -> Markup:
    """Issue Markdown as HTML (raw HTML in the source is escaped by render_markdown)."""
    return Markup(render_markdown(text or ""))


@archive_pages.app_template_filter("markdown")
def _markdown_filter(text: str | None) -> Markup:
    return markdown(text)


def _cached(key: Hashable, render: Callable[[], tuple[str, int]]) -> tuple[bytes, int]:
    """The page under ``key`` from the archive cache, rendered and kept if missing."""
    ctx = web()
    found = ctx.archive_cache.get(key, lambda: issues.archive_version(ctx.app))
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


@archive_pages.get("/archive/")
@archive_pages.get("/archive")
def archive_index():
    """Every public issue, newest first; ``?topic=<slug>&type=<research slug>`` filter."""
    topic = request.args.get("topic") or None
    research = request.args.get("type") or None
    errors = {}
    if topic is not None and topic not in load_taxonomy().by_slug:
        errors["topic"] = "There is no such topic; showing every topic."
        topic = None
    if research is not None and research not in {r.slug for r in RESEARCH_TYPES}:
        errors["type"] = "There is no such type of research; showing every type."
        research = None

    def render() -> tuple[str, int]:
        return page(
            "archive_index.html",
            400 if errors else 200,
            entries=issues.archive(web().app, topic, research),
            groups=topic_groups(),
            research_types=RESEARCH_TYPES,
            topic=topic,
            topic_name=load_taxonomy().by_slug[topic].name if topic else None,
            research=research,
            research_name={r.slug: r.name for r in RESEARCH_TYPES}.get(research or ""),
            errors=errors,
        )

    # Only checked values make a key: a stranger's query string cannot fill the cache.
    return _cached(("index", topic, research, tuple(sorted(errors))), render)


@archive_pages.get("/archive/<month>")
def archive_issue(month: str):
    """One issue with every summary."""
    if not is_month(month):
        abort(404)

    def render() -> tuple[str, int]:
        return page("archive_issue.html", issue=_public_issue(month))

    return _cached(("issue", month), render)


@archive_pages.get("/archive/<month>/<key>")
def archive_summary(month: str, key: str):
    """One summary, with the other summaries of its issue listed."""
    if not is_month(month) or not KEY.match(key):
        abort(404)

    def render() -> tuple[str, int]:
        issue = _public_issue(month)
        for summary in issue.summaries:
            if summary.key == key:
                others = [s for s in issue.summaries if s.key != key]
                return page("archive_summary.html", issue=issue, summary=summary, others=others)
        abort(404)

    return _cached(("summary", month, key), render)
