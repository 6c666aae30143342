"""The public archive at catalogue size: pages of issues, search, filter counts, feeds.

What is public is decided in :mod:`newsletter.services.issues` (published back issues and
sent issues). This module lays it out for the web pages:

- browsing: the issues with a summary that passes the filters, ``ISSUES_PER_PAGE`` a
  page, newest first;
- searching (``?q=``): the matching summaries, best first, ``HITS_PER_PAGE`` a page,
  from the store's full-text index (:mod:`newsletter.store.archive_index`);
- counts beside each topic and type of research: how many summaries the visitor would
  see choosing it, given the search and the other filter;
- feeds: the newest summaries, of every topic or of one.

The search index is derived from the issue files. :func:`refresh_index` rebuilds it when
:func:`~newsletter.services.issues.archive_version` has changed since it was built, which
costs one look at the issue folder and the ``sends`` table; the web pages pass the
version their page cache already holds, so a search request usually costs no such look.
"""

from __future__ import annotations

import hashlib
import math
import weakref
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from newsletter.content.markdown import plain_text
from newsletter.content.model import Issue, Summary
from newsletter.content.parser import positional_keys
from newsletter.errors import NewsletterError
from newsletter.rules.search_query import SearchQuery, parse_query
from newsletter.services.app import App
from newsletter.services.issues import ArchiveEntry, archive_version, public_issue, public_issues
from newsletter.store import archive_index
from newsletter.store.views import IndexedSummary

ISSUES_PER_PAGE = 12
HITS_PER_PAGE = 20
FEED_ENTRIES = 50


class PageOutOfRangeError(NewsletterError):
    """A page number past the last page (or below the first)."""

    hint = "the archive has fewer pages; start again from the first page"


@dataclass(frozen=True)
class ArchiveHit:
    """One summary found by a search, with the passage that matched (marked words)."""

    issue: Issue
    summary: Summary
    snippet: str


@dataclass(frozen=True)
class ArchivePage:
    """One page of the archive as the index page shows it.

    Browsing fills ``entries`` (issues with their summaries that pass the filters); a
    search fills ``hits``. ``summaries`` counts every match on every page.
    """

    query: SearchQuery
    topic: str | None
    research: str | None
    page: int
    pages: int
    summaries: int
    issues: int
    entries: tuple[ArchiveEntry, ...] = ()
    hits: tuple[ArchiveHit, ...] = ()
    topic_counts: dict[str, int] | None = None
    research_counts: dict[str, int] | None = None

    @property
    def per_page(self) -> int:
        """How many results a page of this kind holds (issues, or search hits)."""
        return ISSUES_PER_PAGE if self.query.empty else HITS_PER_PAGE

    @property
    def searching(self) -> bool:
        """True when a search with at least one word was asked for."""
        return not self.query.empty


def archive_page(
    app: App,
    topic: str | None = None,
    research: str | None = None,
    q: str | None = None,
    page: int = 1,
    version: object | None = None,
) -> ArchivePage:
    """Page ``page`` (from 1) of the archive, filtered and searched.

    ``version`` is :func:`~newsletter.services.issues.archive_version` when the caller
    knows it. A page past the last is :class:`PageOutOfRangeError` (page 1 always exists,
    empty or not).
    """
    query = parse_query(q)
    issues = _public_issues(app, version)
    candidates = [(i, s) for i in issues for s in i.summaries]
    if not query.empty:
        refresh_index(app, version)
        found = set(archive_index.matching(app.store, query))
        candidates = [(i, s) for i, s in candidates if (i.month, s.key) in found]
    topic_counts = _count(
        (t.slug for _, s in candidates if _has_research(s, research) for t in s.topics)
    )
    research_counts = _count(
        s.research.slug
        for _, s in candidates
        if s.research is not None and (topic is None or topic in s.topic_slugs)
    )
    chosen = [
        (i, s)
        for i, s in candidates
        if (topic is None or topic in s.topic_slugs) and _has_research(s, research)
    ]
    months = {i.month for i, _ in chosen}
    per_page = ISSUES_PER_PAGE if query.empty else HITS_PER_PAGE
    pages = max(1, math.ceil((len(chosen) if not query.empty else len(months)) / per_page))
    if page < 1 or page > pages:
        raise PageOutOfRangeError(f"there is no page {page}; the last page is {pages}")
    base = ArchivePage(
        query=query,
        topic=topic,
        research=research,
        page=page,
        pages=pages,
        summaries=len(chosen),
        issues=len(months),
        topic_counts=topic_counts,
        research_counts=research_counts,
    )
    if query.empty:
        entries = _entries(chosen)[(page - 1) * per_page : page * per_page]
        return replace(base, entries=tuple(entries))
    results = archive_index.search(
        app.store, query, topic, research, limit=per_page, offset=(page - 1) * per_page
    )
    by_key = {(i.month, s.key): (i, s) for i, s in chosen}
    hits = tuple(
        ArchiveHit(*by_key[(h.month, h.key)], h.snippet)
        for h in results.hits
        if (h.month, h.key) in by_key
    )
    return replace(base, hits=hits)


# The public issues of each app for the archive version they were read at: a request
# that knows the version (the web pages' cache holds it) need not look at every file.
_PUBLIC: weakref.WeakKeyDictionary[App, tuple[object, list[Issue]]] = weakref.WeakKeyDictionary()


def _public_issues(app: App, version: object | None) -> list[Issue]:
    if version is None:
        return public_issues(app)
    known = _PUBLIC.get(app)
    if known is not None and known[0] == version:
        return known[1]
    found = public_issues(app)
    _PUBLIC[app] = (version, found)
    return found


def _has_research(s: Summary, research: str | None) -> bool:
    return research is None or (s.research is not None and s.research.slug == research)


def _count(slugs: Iterable[str]) -> dict[str, int]:
    return dict(Counter(slugs))


def _entries(chosen: Sequence[tuple[Issue, Summary]]) -> list[ArchiveEntry]:
    """The chosen summaries grouped by issue, in the order given (newest issue first)."""
    out: list[ArchiveEntry] = []
    for issue, summary in chosen:
        if out and out[-1].issue.month == issue.month:
            last = out[-1]
            out[-1] = ArchiveEntry(last.issue, (*last.summaries, summary))
        else:
            out.append(ArchiveEntry(issue, (summary,)))
    return out


# --- the search index --------------------------------------------------------------------


def version_digest(version: object) -> str:
    """A short, stable name of an archive version (what ``store_meta`` records)."""
    return hashlib.sha256(repr(version).encode("utf-8")).hexdigest()[:32]


def refresh_index(app: App, version: object | None = None) -> bool:
    """Rebuild the search index if the archive changed since it was built.

    Returns True when it was rebuilt. The version the index holds is remembered per
    store, so an unchanged archive costs a dictionary look-up.
    """
    if version is None:
        version = archive_version(app)
    digest = version_digest(version)
    store = app.store
    if store.cache.get(archive_index.VERSION_KEY) == digest:
        return False
    if archive_index.indexed_version(store) == digest:
        store.cache[archive_index.VERSION_KEY] = digest
        return False
    rows = [indexed(i, s) for i in public_issues(app) for s in i.summaries]
    rebuilt = archive_index.replace_index(store, rows, digest)
    store.cache[archive_index.VERSION_KEY] = digest
    return rebuilt


def indexed(issue: Issue, summary: Summary) -> IndexedSummary:
    """What the index keeps of one summary: its words, without Markdown."""
    return IndexedSummary(
        month=issue.month,
        key=summary.key,
        title=summary.title,
        citation=summary.citation or "",
        body=plain_text(summary.body),
        implications=plain_text(summary.implications),
        topics=tuple(sorted(summary.topic_slugs)),
        research=summary.research.slug if summary.research else None,
    )


# --- feeds and single summaries ----------------------------------------------------------


def feed_summaries(
    app: App, topic: str | None = None, limit: int = FEED_ENTRIES
) -> list[tuple[Issue, Summary]]:
    """The newest ``limit`` public summaries (on ``topic``), newest issue first."""
    out: list[tuple[Issue, Summary]] = []
    for issue in public_issues(app):
        for s in issue.summaries:
            if topic is None or topic in s.topic_slugs:
                out.append((issue, s))
                if len(out) >= limit:
                    return out
    return out


@dataclass(frozen=True)
class SummaryLookup:
    """A public issue and one of its summaries, or where an old address of it moved."""

    issue: Issue
    summary: Summary | None
    moved_to: str | None = None  # the current key, when ``key`` was an older one


def find_summary(app: App, month: str, key: str) -> SummaryLookup | None:
    """The summary ``key`` of the public issue of ``month``; None when neither exists.

    Keys of colliding titles were once numbered in file order (``slug-2``); such an old
    key gives the summary's current key in ``moved_to``.
    """
    issue = public_issue(app, month)
    if issue is None:
        return None
    for s in issue.summaries:
        if s.key == key:
            return SummaryLookup(issue, s)
    for s, old in zip(issue.summaries, positional_keys(issue.summaries), strict=True):
        if old == key:
            return SummaryLookup(issue, None, moved_to=s.key)
    return SummaryLookup(issue, None)
