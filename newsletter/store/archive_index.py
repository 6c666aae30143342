"""The archive's full-text search index (table ``archive_search``, revision 0009).

The index holds one row per public summary and is derived from the issue files: the
service rebuilds it whole (:func:`replace_index`) when the archive changes. Which
version of the archive it holds is one more row of the same table (month ``""``, the
version as key, no text, so no search finds it): the record and the rows it describes are
written together and emptied together, and can never disagree. Searching takes the parsed terms
of :mod:`newsletter.rules.search_query`, never the visitor's text, and writes them in the
database's own syntax:

- SQLite (FTS5): each word a quoted token (``"therapy"``), a phrase one quoted string of
  words, a prefix ``"therap"*``; ranked by ``bm25`` with the title counted most;
- PostgreSQL: words and phrases through ``websearch_to_tsquery('english', ...)``, each
  prefix as ``to_tsquery('english', 'therap:*')`` (letters and digits only, so it cannot
  fail), joined with ``&&``; ranked by ``ts_rank`` over a weighted ``tsvector``.

Snippets mark the matched words with the control characters of
:data:`~newsletter.rules.search_query.HIGHLIGHT_START` and ``HIGHLIGHT_END``; the page escapes
the text and turns only those into ``<mark>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import text

from newsletter.rules.search_query import HIGHLIGHT_END, HIGHLIGHT_START, SearchQuery
from newsletter.store.db import Store
from newsletter.store.views import IndexedSummary, SearchHit, SearchResults

TABLE = "archive_search"
VERSION_KEY = "archive_index_version"  # the version this process knows, in Store.cache
VERSION_MONTH = ""  # the month of the row that records the version
# One lock id for "rebuilding the archive index" (PostgreSQL advisory lock).
_PG_LOCK = 0x61726368
# Words of context around the matched words in a snippet.
SNIPPET_WORDS = 28

# FTS5 column weights for bm25, in column order: month, key, topics, research (not
# searched), title, citation, body, implications.
_CITATION, _BODY, _IMPLICATIONS = 5, 6, 7
_BM25 = f"bm25({TABLE}, 0, 0, 0, 0, 10.0, 4.0, 1.0, 1.0)"
_PG_DOCUMENT = (
    "setweight(to_tsvector('english', CAST(:title AS text)), 'A') || "
    "setweight(to_tsvector('english', CAST(:citation AS text)), 'B') || "
    "setweight(to_tsvector('english', CAST(:body AS text)), 'C') || "
    "setweight(to_tsvector('english', CAST(:implications AS text)), 'C')"
)
_PG_HEADLINE_OPTIONS = (
    f'StartSel="{HIGHLIGHT_START}", StopSel="{HIGHLIGHT_END}", '
    f"MaxWords={SNIPPET_WORDS}, MinWords={SNIPPET_WORDS // 2}, MaxFragments=2, "
    'FragmentDelimiter=" … "'
)


def indexed_version(store: Store) -> str | None:
    """The version of the archive the index was last built from (None: never built)."""
    with store.engine.connect() as conn:
        found = conn.execute(_VERSION_SQL, {"month": VERSION_MONTH}).scalar()
    return None if found is None else str(found)


_VERSION_SQL = text(f"SELECT key FROM {TABLE} WHERE month = :month")


def replace_index(store: Store, summaries: Sequence[IndexedSummary], version: str) -> bool:
    """Make the index hold exactly ``summaries``, built from archive ``version``.

    One transaction: a search sees the old index or the new one, never half of it. Two
    processes (or threads) that both find the index out of date take turns, and the
    second finds the work done and returns False.
    """
    with store.writing() as conn:
        if store.dialect == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_LOCK})
        if conn.execute(_VERSION_SQL, {"month": VERSION_MONTH}).scalar() == version:
            return False
        conn.execute(text(f"DELETE FROM {TABLE}"))
        marker = IndexedSummary(VERSION_MONTH, version, "", "", "", "", (), None)
        rows = [_row(s) for s in (*summaries, marker)]
        document = _PG_DOCUMENT if store.dialect == "postgresql" else None
        columns = "month, key, topics, research, title, citation, body, implications"
        values = ":month, :key, :topics, :research, :title, :citation, :body, :implications"
        if document:
            columns += ", document"
            values += ", " + document
        conn.execute(text(f"INSERT INTO {TABLE} ({columns}) VALUES ({values})"), rows)
    return True


def _row(s: IndexedSummary) -> dict[str, Any]:
    return {
        "month": s.month,
        "key": s.key,
        # Spaces around every slug: "% slug %" then matches whole slugs only.
        "topics": " " + " ".join(s.topics) + " ",
        "research": s.research,
        "title": s.title,
        "citation": s.citation,
        "body": s.body,
        "implications": s.implications,
    }


def search(
    store: Store,
    query: SearchQuery,
    topic: str | None = None,
    research: str | None = None,
    limit: int = 20,
    offset: int = 0,
) -> SearchResults:
    """The summaries matching every term of ``query`` (and the filters), best first."""
    if query.empty:
        return SearchResults((), 0)
    where, params = _conditions(store, query, topic, research)
    params.update(limit=max(0, limit), offset=max(0, offset))
    with store.engine.connect() as conn:
        total = conn.execute(text(f"SELECT count(*) FROM {_from(store)} WHERE {where}"), params)
        count = int(total.scalar() or 0)
        if count == 0 or offset >= count:
            return SearchResults((), count)
        rows = conn.execute(text(_page_sql(store, where)), params).all()
    hits = tuple(SearchHit(r.month, r.key, _snippet(r)) for r in rows)
    return SearchResults(hits, count)


def matching(store: Store, query: SearchQuery) -> list[tuple[str, str]]:
    """(month, key) of every summary matching ``query``, unfiltered and unordered.

    The archive counts topics and types of research over these (a few hundred at most).
    """
    if query.empty:
        return []
    where, params = _conditions(store, query, None, None)
    with store.engine.connect() as conn:
        rows = conn.execute(text(f"SELECT month, key FROM {_from(store)} WHERE {where}"), params)
        return [(r.month, r.key) for r in rows]


def _from(store: Store) -> str:
    if store.dialect == "postgresql":
        # The query is built once per statement and named q.
        return f"{TABLE}, ({_pg_query_sql()}) AS q"
    return TABLE


def _conditions(
    store: Store, query: SearchQuery, topic: str | None, research: str | None
) -> tuple[str, dict[str, Any]]:
    if store.dialect == "postgresql":
        where = ["document @@ q.query"]
        params: dict[str, Any] = {"web": _websearch_text(query), "prefixes": _prefix_text(query)}
    else:
        where = [f"{TABLE} MATCH :match"]
        params = {"match": fts5_query(query)}
    if topic is not None:
        where.append("topics LIKE :topic")
        params["topic"] = f"% {topic} %"
    if research is not None:
        where.append("research = :research")
        params["research"] = research
    return " AND ".join(where), params


def _page_sql(store: Store, where: str) -> str:
    if store.dialect == "postgresql":
        # Headlines are costly: made for the rows of this page only.
        return (
            "SELECT p.month, p.key, ts_headline('english', p.body || ' ' || p.implications, "
            f"p.query, '{_PG_HEADLINE_OPTIONS}') AS snippet FROM ("
            f"SELECT month, key, body, implications, q.query, "
            f"ts_rank(document, q.query) AS rank FROM {_from(store)} WHERE {where} "
            "ORDER BY rank DESC, month DESC, key LIMIT :limit OFFSET :offset) AS p "
            "ORDER BY p.rank DESC, p.month DESC, p.key"
        )
    # The passage comes from the text, not the title the page shows above it: the
    # summary's text if the words are there, else the implications, else the citation.
    snippets = ", ".join(
        f"snippet({TABLE}, {column}, '{HIGHLIGHT_START}', '{HIGHLIGHT_END}', '…', "
        f"{SNIPPET_WORDS}) AS s{column}"
        for column in (_BODY, _IMPLICATIONS, _CITATION)
    )
    return (
        f"SELECT month, key, {snippets} FROM {TABLE} WHERE {where} "
        f"ORDER BY {_BM25}, month DESC, key LIMIT :limit OFFSET :offset"
    )


def _snippet(row: Any) -> str:
    """The PostgreSQL headline, or the first FTS5 snippet that marks a word (the text's)."""
    if hasattr(row, "snippet"):
        return _tidy(row.snippet)
    texts = [getattr(row, f"s{column}") or "" for column in (_BODY, _IMPLICATIONS, _CITATION)]
    return _tidy(next((t for t in texts if HIGHLIGHT_START in t), texts[0]))


def _pg_query_sql() -> str:
    # An empty part is left out: websearch_to_tsquery('') is an empty query, which
    # matches nothing when joined with &&.
    return (
        "SELECT CASE WHEN :web = '' THEN to_tsquery('english', CAST(:prefixes AS text)) "
        "WHEN :prefixes = '' THEN websearch_to_tsquery('english', CAST(:web AS text)) "
        "ELSE websearch_to_tsquery('english', CAST(:web AS text)) "
        "&& to_tsquery('english', CAST(:prefixes AS text)) END AS query"
    )


def fts5_query(query: SearchQuery) -> str:
    """``query`` in FTS5 syntax: quoted tokens and phrases, ``"prefix"*``; all must match.

    Terms hold letters and digits only, so no quote inside needs escaping.
    """
    parts = []
    for term in query.terms:
        quoted = '"' + " ".join(term.words) + '"'
        parts.append(quoted + "*" if term.prefix else quoted)
    return " ".join(parts)


def _websearch_text(query: SearchQuery) -> str:
    parts: list[str] = []
    for term in query.terms:
        if term.prefix:
            parts.extend(term.words[:-1])
        elif len(term.words) > 1:
            parts.append('"' + " ".join(term.words) + '"')
        else:
            parts.append(term.words[0])
    return " ".join(parts)


def _prefix_text(query: SearchQuery) -> str:
    return " & ".join(f"{t.words[-1]}:*" for t in query.terms if t.prefix)


def _tidy(snippet: str | None) -> str:
    return " ".join((snippet or "").split())
