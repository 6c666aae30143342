"""Atom and RSS feeds of the archive, made with feedgen (never hand-written XML).

One entry per summary: its stable address as link and id, its title, the first day of its
issue's month as date, the citation and the summary's HTML as content, its topics as
categories. Feeds hold the newest :data:`~newsletter.services.archive.FEED_ENTRIES`
summaries, of every topic or of one.
"""

from __future__ import annotations

import datetime as dt

from feedgen.feed import FeedGenerator
from markupsafe import escape

from newsletter.content.markdown import render_markdown
from newsletter.content.model import Issue, Summary, Topic
from newsletter.rules.links import archive_url

FEED_TYPES = {"atom": "application/atom+xml", "rss": "application/rss+xml"}


def feed_bytes(
    kind: str,
    base_url: str,
    newsletter_name: str,
    items: list[tuple[Issue, Summary]],
    topic: Topic | None = None,
) -> bytes:
    """The feed (``kind`` "atom" or "rss") of ``items``, newest first, as UTF-8 XML."""
    fg = FeedGenerator()
    home = archive_url(base_url)
    if topic is None:
        self_url = f"{home}/feed.{kind}"
        fg.title(f"{newsletter_name}: research summaries")
        fg.description(f"Every research summary of {newsletter_name}, newest first.")
        page_url = home
    else:
        self_url = f"{home}/topic/{topic.slug}/feed.{kind}"
        fg.title(f"{newsletter_name}: {topic.name}")
        fg.description(f"Research summaries on {topic.name} from {newsletter_name}.")
        page_url = f"{home}?topic={topic.slug}"
    fg.id(self_url)
    fg.link(href=page_url, rel="alternate")
    fg.link(href=self_url, rel="self", type=FEED_TYPES[kind])
    fg.language("en")
    newest = _date(items[0][0]) if items else dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    fg.updated(newest)
    # feedgen writes entries in the reverse order of adding them.
    for issue, summary in reversed(items):
        url = archive_url(base_url, issue.month, summary.key)
        fe = fg.add_entry()
        fe.id(url)
        fe.link(href=url, rel="alternate")
        fe.title(summary.title)
        fe.published(_date(issue))
        fe.updated(_date(issue))
        fe.content(_content(summary), type="html")
        for t in summary.topics:
            fe.category(term=t.slug, label=t.name)
    if kind == "rss":
        return bytes(fg.rss_str(pretty=False))
    return bytes(fg.atom_str(pretty=False))


def _date(issue: Issue) -> dt.datetime:
    return dt.datetime(issue.year_number, issue.month_number, 1, tzinfo=dt.UTC)


def _content(summary: Summary) -> str:
    parts = []
    if summary.citation:
        parts.append(f"<p><em>{escape(summary.citation)}</em></p>")
    parts.append(render_markdown(summary.body))
    parts.append("<h3>Practice implications</h3>")
    parts.append(render_markdown(summary.implications))
    return "\n".join(parts)
