"""The 36-topic taxonomy and the research-type vocabulary, read from package data."""

from __future__ import annotations

import difflib
import functools
import re
import tomllib
import unicodedata
from collections.abc import Iterable, Iterator
from functools import cache
from importlib import resources

from newsletter.content.model import ResearchType, Topic
from newsletter.errors import UnknownResearchTypeError, UnknownTopicError

_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def slugify(text: str) -> str:
    """Lowercase, ASCII letters and digits, words joined by single hyphens."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return _NON_ALNUM.sub("-", ascii_text.lower()).strip("-")


def _norm(text: str) -> str:
    return " ".join(text.casefold().split())


class Taxonomy:
    """Look topics up by slug, display name, published name or alias, case-insensitively."""

    def __init__(self, topics: list[Topic]) -> None:
        self.topics: tuple[Topic, ...] = tuple(topics)
        self.by_slug: dict[str, Topic] = {t.slug: t for t in topics}
        self._lookup: dict[str, Topic] = {}
        for t in topics:
            for key in (t.slug, t.name, t.published, *t.aliases):
                if key:
                    self._lookup[_norm(key)] = t
                    self._lookup[slugify(key)] = t

    def __len__(self) -> int:
        return len(self.topics)

    def __iter__(self) -> Iterator[Topic]:
        return iter(self.topics)

    def find(self, value: str) -> Topic | None:
        """The topic ``value`` names, or None."""
        value = value.strip()
        return self._lookup.get(_norm(value)) or self._lookup.get(slugify(value))

    def resolve(self, value: str) -> Topic:
        """The topic ``value`` names; :class:`UnknownTopicError` with suggestions if none."""
        topic = self.find(value)
        if topic is None:
            raise UnknownTopicError(value, self.suggest(value))
        return topic

    def resolve_list(self, text: str) -> list[Topic]:
        """Resolve a ``;``-separated list of topics (names contain commas), keeping order."""
        out: list[Topic] = []
        for part in text.split(";"):
            if part.strip():
                topic = self.resolve(part)
                if topic not in out:
                    out.append(topic)
        return out

    def suggest(self, value: str, n: int = 3) -> list[str]:
        """Display names closest to ``value`` (whole-string and word-by-word similarity)."""
        query = _norm(value)
        words = query.replace("-", " ").split()
        scored: list[tuple[float, str]] = []
        for t in self.topics:
            keys = [_norm(k) for k in (t.name, t.slug, t.published, *t.aliases) if k]
            whole = max(difflib.SequenceMatcher(None, query, k).ratio() for k in keys)
            key_words = {w for k in keys for w in k.replace("-", " ").split()}
            by_word = (
                sum(
                    max(difflib.SequenceMatcher(None, w, kw).ratio() for kw in key_words)
                    for w in words
                )
                / len(words)
                if words
                else 0.0
            )
            scored.append((max(whole, by_word), t.name))
        scored.sort(key=lambda x: -x[0])
        best = scored[0][0] if scored else 0.0
        # Only names about as close as the best one; a clear winner is suggested alone.
        floor = max(0.6, best - 0.08)
        return [name for score, name in scored[:n] if score >= floor]


@cache
def load_taxonomy() -> Taxonomy:
    """The taxonomy shipped with the package (``newsletter/content/taxonomy.toml``)."""
    data = tomllib.loads(
        resources.files("newsletter.content").joinpath("taxonomy.toml").read_text("utf-8")
    )
    topics = [
        Topic(
            slug=t["slug"],
            name=t["name"],
            published=t.get("published"),
            aliases=tuple(t.get("aliases", ())),
        )
        for t in data["topic"]
    ]
    return Taxonomy(topics)


#: Written instead of topics (a CSV cell, ``--topics``, ``set-topics``): every topic.
ALL_TOPICS_WORDS = ("all", "*", "all topics", "every topic")


def means_all_topics(topics: str | Iterable[str]) -> bool:
    """True when ``topics`` is one of :data:`ALL_TOPICS_WORDS` (any case) and not a topic list."""
    text = topics if isinstance(topics, str) else ";".join(topics)
    return " ".join(text.split()).lower() in ALL_TOPICS_WORDS


def resolve_topics(topics: str | Iterable[str]) -> list[str]:
    """Topic slugs from a ``;``-separated text or a list of slugs or names, in order.

    :class:`UnknownTopicError` (with suggestions) for a name that is not a topic.
    """
    parts = [topics] if isinstance(topics, str) else list(topics)
    slugs: list[str] = []
    for part in parts:
        for slug in _resolve_text(part):
            if slug not in slugs:
                slugs.append(slug)
    return slugs


@functools.lru_cache(maxsize=1024)
def _resolve_text(text: str) -> tuple[str, ...]:
    # Cached: an import repeats the same few topic cells thousands of times.
    taxonomy = load_taxonomy()
    # Strip around each ";" so that error messages quote the topic as typed.
    cleaned = ";".join(p.strip() for p in text.split(";"))
    return tuple(topic.slug for topic in taxonomy.resolve_list(cleaned))


def topic_names(slugs: Iterable[str]) -> list[str]:
    """Display names of topic slugs (an unknown slug is shown as it is)."""
    by_slug = load_taxonomy().by_slug
    return [by_slug[s].name if s in by_slug else s for s in slugs]


RESEARCH_TYPES: tuple[ResearchType, ...] = (
    ResearchType("meta-analysis", "Meta-analysis"),
    ResearchType("systematic-review", "Systematic review"),
    ResearchType("randomized-controlled-trial", "Randomized controlled trial"),
    ResearchType("naturalistic-study", "Naturalistic study"),
    ResearchType("survey", "Survey"),
    ResearchType("qualitative-study", "Qualitative study"),
    ResearchType("narrative-review", "Narrative review"),
    ResearchType("other", "Other"),
)

_RESEARCH_ALIASES = {
    "rct": "randomized-controlled-trial",
    "randomised controlled trial": "randomized-controlled-trial",
    "randomized trial": "randomized-controlled-trial",
    "randomised trial": "randomized-controlled-trial",
    "clinical trial": "randomized-controlled-trial",
    "meta analysis": "meta-analysis",
    "metaanalysis": "meta-analysis",
    "review": "narrative-review",
    "book chapter": "narrative-review",
    "chapter": "narrative-review",
    "qualitative": "qualitative-study",
    "naturalistic": "naturalistic-study",
    "observational study": "naturalistic-study",
}


def resolve_research_type(value: str) -> ResearchType:
    """The research type ``value`` names (slug, name or common alias), case-insensitively."""
    by_slug = {r.slug: r for r in RESEARCH_TYPES}
    key = _norm(value)
    slug = _RESEARCH_ALIASES.get(key) or slugify(value)
    if slug in by_slug:
        return by_slug[slug]
    names = [r.name.lower() for r in RESEARCH_TYPES]
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise UnknownResearchTypeError(
        f"unknown research type {value!r}",
        hint=hint + "one of: " + ", ".join(r.name.lower() for r in RESEARCH_TYPES),
    )
