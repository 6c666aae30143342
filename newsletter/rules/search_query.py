"""What a visitor typed into the archive's search box, as terms every database accepts.

The text is never handed to a database's query syntax as it is: FTS5 reads ``"``, ``(``,
``*``, ``AND``, ``NEAR`` and column names as operators and answers a stray one with an
error. Instead the text becomes a list of :class:`Term`: a word, a ``"quoted phrase"``
(its words in that order) or a ``prefix*``. Words are runs of letters and digits (any
script); everything else separates them. Every term must match (AND), as search boxes
usually behave (``AND``, ``OR``, ``NOT`` and ``NEAR`` in capitals are skipped). The
store writes the terms in its own syntax (:mod:`newsletter.store.archive_index`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Only this much of the typed text is read (a pasted page still gives an answer).
MAX_QUERY_CHARS = 400
#: At most this many terms, and this many words in a phrase.
MAX_TERMS = 12
MAX_PHRASE_WORDS = 8
MAX_WORD_CHARS = 40

#: What marks the matched words in a search snippet: control characters, which issue
#: files cannot hold, so the page can escape the text and then turn only these into HTML.
HIGHLIGHT_START = "\x02"
HIGHLIGHT_END = "\x03"

# Operators of other search syntaxes, typed in capitals: every term must match anyway.
_OPERATORS = frozenset({"AND", "OR", "NOT", "NEAR"})
_PIECES = re.compile(r'"([^"]*)"?|([^\s"]+)')
_WORD = re.compile(r"[^\W_]+")


@dataclass(frozen=True)
class Term:
    """One thing a summary must contain: a word, a phrase (several words) or a prefix."""

    words: tuple[str, ...]
    prefix: bool = False  # the last (only) word may go on: therap* finds therapist


@dataclass(frozen=True)
class SearchQuery:
    """The terms of a typed query; ``text`` is the query as shown back to the visitor."""

    text: str
    terms: tuple[Term, ...]

    @property
    def empty(self) -> bool:
        """True when nothing searchable was typed (only punctuation, or nothing)."""
        return not self.terms


def parse_query(text: str | None) -> SearchQuery:
    """The terms of ``text``; never fails, whatever it holds."""
    shown = " ".join((text or "")[:MAX_QUERY_CHARS].split())
    terms: list[Term] = []
    for m in _PIECES.finditer(shown):
        if len(terms) >= MAX_TERMS:
            break
        phrase, bare = m.group(1), m.group(2)
        if phrase is not None:
            words = _words(phrase)[:MAX_PHRASE_WORDS]
            if words:
                terms.append(Term(tuple(words)))
            continue
        if bare in _OPERATORS:
            continue
        words = _words(bare)
        # "therap*" is a prefix (of its last word); a lone "*" is nothing.
        prefix = bare.endswith("*")
        terms.extend(Term((w,)) for w in words[:-1])
        if words:
            terms.append(Term((words[-1],), prefix))
    return SearchQuery(shown, tuple(terms[:MAX_TERMS]))


def _words(text: str) -> list[str]:
    return [w.lower()[:MAX_WORD_CHARS] for w in _WORD.findall(text)]
