"""The archive's full-text index, on SQLite (FTS5) and PostgreSQL (tsvector)."""

from __future__ import annotations

from newsletter.rules.search_query import HIGHLIGHT_END, HIGHLIGHT_START, parse_query
from newsletter.store import archive_index
from newsletter.store.views import IndexedSummary


def _summary(month: str, key: str, title: str, body: str, **extra) -> IndexedSummary:
    values = {
        "citation": "",
        "implications": "Keep it in mind.",
        "topics": ("empathy",),
        "research": "meta-analysis",
    }
    values.update(extra)
    return IndexedSummary(month=month, key=key, title=title, body=body, **values)


ROWS = [
    _summary("2020-01", "empathy", "Therapist empathy and outcome", "Clients felt understood."),
    _summary(
        "2020-02",
        "ruptures",
        "Repairing ruptures",
        "Repairing ruptures in the therapeutic alliance helps; empathy is mentioned once.",
        topics=("alliance-and-therapeutic-relationship", "training"),
        research=None,
    ),
    _summary(
        "2020-03",
        "sleep",
        'Sleep, therapy & "<more>"',
        "Insomnia treatment improved mood.",
        citation="Morin, C. M. (2006). Psychological treatment of insomnia. Sleep, 29(11).",
        topics=("training",),
        research="randomized-controlled-trial",
    ),
]


def search(store, text, **filters):
    return archive_index.search(store, parse_query(text), **filters)


def test_a_title_match_ranks_first_and_snippets_mark_the_words(store):
    assert archive_index.replace_index(store, ROWS, "v1")
    found = search(store, "empathy")
    assert found.total == 2
    assert [h.key for h in found.hits] == ["empathy", "ruptures"]  # title beats text
    snippet = found.hits[1].snippet
    assert f"{HIGHLIGHT_START}empathy{HIGHLIGHT_END}" in snippet
    # Citations are searched; words are stemmed (English), and a prefix finds longer words.
    assert [h.key for h in search(store, "Morin").hits] == ["sleep"]
    assert search(store, "repair").total == 1
    assert {h.key for h in search(store, "therap*").hits} == {"empathy", "ruptures", "sleep"}
    # A phrase needs its words side by side.
    assert [h.key for h in search(store, '"therapeutic alliance"').hits] == ["ruptures"]
    assert search(store, '"alliance therapeutic"').total == 0


def test_filters_paging_and_matching(store):
    archive_index.replace_index(store, ROWS, "v1")
    assert search(store, "therap*", topic="training").total == 2
    assert search(store, "therap*", topic="train").total == 0  # whole slugs only
    assert search(store, "therap*", research="meta-analysis").total == 1
    page = search(store, "therap*", limit=2, offset=2)
    assert page.total == 3 and len(page.hits) == 1
    assert search(store, "therap*", limit=2, offset=9).hits == ()
    assert sorted(archive_index.matching(store, parse_query("therap*"))) == [
        ("2020-01", "empathy"),
        ("2020-02", "ruptures"),
        ("2020-03", "sleep"),
    ]


def test_replacing_is_whole_and_happens_once_per_version(store):
    archive_index.replace_index(store, ROWS, "v1")
    assert archive_index.indexed_version(store) == "v1"
    assert not archive_index.replace_index(store, ROWS[:1], "v1")  # already built
    assert search(store, "insomnia").total == 1
    assert archive_index.replace_index(store, ROWS[:1], "v2")
    assert search(store, "insomnia").total == 0
    assert archive_index.indexed_version(store) == "v2"
    archive_index.replace_index(store, [], "v3")
    assert search(store, "empathy").total == 0


HOSTILE = [
    '"',
    '""',
    '"unclosed phrase',
    "(",
    "empathy)",
    "empathy AND",
    "AND OR NOT",
    "NEAR(empathy ruptures, 2)",
    "empathy NEAR/2 ruptures",
    "*",
    "**",
    "empathy*)",
    "title:empathy",
    "^empathy",
    "-empathy",
    "empathy OR",
    "'; DROP TABLE archive_search; --",
    "\\",
    "!@#$%^&|:<>",
    "ü" * 50,
    "empathy " * 300,  # 2.4 KB of text
    "x" * 2048,
]


FINDS_EMPATHY = {"empathy)", "empathy AND", "empathy*)", "^empathy", "empathy OR", "empathy " * 300}


def test_hostile_queries_never_raise(store):
    archive_index.replace_index(store, ROWS, "v1")
    for text in HOSTILE:
        found = search(store, text)
        assert found.total >= 0 and len(found.hits) <= found.total, text
        assert archive_index.matching(store, parse_query(text)) is not None
        if text in FINDS_EMPATHY:
            assert found.total == 2, f"{text!r}: the word itself is still searched"
