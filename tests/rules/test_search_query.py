"""The search box's text becomes words, phrases and prefixes, whatever it holds."""

from __future__ import annotations

from newsletter.rules.search_query import (
    MAX_QUERY_CHARS,
    MAX_TERMS,
    Term,
    parse_query,
)


def test_words_phrases_and_prefixes():
    q = parse_query('Alliance "exposure  therapy" therap* ')
    assert q.terms == (
        Term(("alliance",)),
        Term(("exposure", "therapy")),
        Term(("therap",), prefix=True),
    )
    assert q.text == 'Alliance "exposure therapy" therap*'


def test_operators_and_punctuation_are_never_syntax():
    assert parse_query("empathy AND (alliance OR NEAR/3) NOT x").terms == (
        Term(("empathy",)),
        Term(("alliance",)),
        Term(("near",)),
        Term(("3",)),
        Term(("x",)),
    )
    for nothing in ("", "   ", "*", '"', '""', "()", "-", "AND", ":^", None):
        assert parse_query(nothing).empty, nothing
    # An unclosed quote is a phrase to the end; a star inside a word splits it.
    assert parse_query('"sleep loss').terms == (Term(("sleep", "loss")),)
    assert parse_query("a*b*").terms == (Term(("a",)), Term(("b",), prefix=True))
    assert parse_query("Schäfer_Ω").terms == (Term(("schäfer",)), Term(("ω",)))


def test_long_text_is_cut_to_a_bounded_query():
    q = parse_query("word " * 1000 + "x" * 3000)
    assert len(q.terms) == MAX_TERMS
    assert len(q.text) <= MAX_QUERY_CHARS
