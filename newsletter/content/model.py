"""Plain dataclasses passed between the stages: no ORM rows, no dicts of anything."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from newsletter.rules.months import month_name

# Gmail and most clients truncate longer subjects; RFC 5322 recommends 78 characters a line.
MAX_SUBJECT = 78

ISSUE_STATUSES = ("draft", "ready", "published")


@dataclass(frozen=True)
class Topic:
    """One topic of the taxonomy. ``slug`` is stable; ``name`` is for display."""

    slug: str
    name: str
    published: str | None = None
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class ResearchType:
    """One kind of study (meta-analysis, randomized controlled trial, ...)."""

    slug: str
    name: str


@dataclass(frozen=True)
class Problem:
    """One thing wrong (``error``) or doubtful (``warning``) in an input file."""

    path: str
    line: int
    severity: str  # "error" | "warning"
    message: str
    hint: str | None = None

    def format(self) -> str:
        """``path:line: severity: message`` as compilers print it."""
        return f"{self.path}:{self.line}: {self.severity}: {self.message}"


@dataclass(frozen=True)
class Summary:
    """One research summary of an issue. Markdown fields are source text, not HTML."""

    key: str  # stable within the issue: slug of the title, used for anchors and archive URLs
    title: str
    topics: tuple[Topic, ...]
    body: str  # Markdown
    implications: str  # Markdown
    citation: str | None = None
    research: ResearchType | None = None
    link: str | None = None
    line: int = 0
    # Guesses of the archive import the author has not confirmed yet: these topics are
    # also in ``topics`` (so a back issue is found by them), the research type is
    # ``research``. ``issue check`` warns about them; a ready issue may not have any.
    suggested_topics: tuple[Topic, ...] = ()
    research_suggested: bool = False

    @property
    def topic_slugs(self) -> frozenset[str]:
        """The slugs of this summary's topics."""
        return frozenset(t.slug for t in self.topics)


@dataclass(frozen=True)
class Issue:
    """One monthly issue: front matter plus one to four summaries."""

    month: str  # "YYYY-MM"
    summaries: tuple[Summary, ...]
    status: str = "draft"
    subject: str | None = None
    intro: str | None = None  # Markdown
    path: Path | None = field(default=None, compare=False)

    @property
    def year_number(self) -> int:
        """The year as a number."""
        return int(self.month[:4])

    @property
    def month_number(self) -> int:
        """The month (1-12) as a number."""
        return int(self.month[5:7])

    @property
    def month_name(self) -> str:
        """The month as people write it, e.g. ``December 2026``."""
        return month_name(self.month)

    @property
    def summary_topics(self) -> tuple[frozenset[str], ...]:
        """Each summary's topic slugs, in order: what decides who gets which variant."""
        return tuple(s.topic_slugs for s in self.summaries)

    @property
    def summary_keys(self) -> tuple[str, ...]:
        """Each summary's key, in order."""
        return tuple(s.key for s in self.summaries)

    def content_hash(self) -> str:
        """A hash of everything a reader sees (not the status): changes when the text does."""
        data = {
            "month": self.month,
            "subject": self.subject,
            "intro": self.intro,
            "summaries": [
                [
                    s.key,
                    s.title,
                    [t.slug for t in s.topics],
                    s.body,
                    s.implications,
                    s.citation,
                    s.research.slug if s.research else None,
                    s.link,
                ]
                for s in self.summaries
            ],
        }
        text = json.dumps(data, ensure_ascii=False, sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    @property
    def topics(self) -> tuple[Topic, ...]:
        """Every topic of the issue's summaries, once each, in order of first use."""
        seen: dict[str, Topic] = {}
        for s in self.summaries:
            for t in s.topics:
                seen.setdefault(t.slug, t)
        return tuple(seen.values())

    @property
    def default_subject(self) -> str:
        """The subject used when the front matter gives none: built from the titles."""
        return build_subject([s.title for s in self.summaries], self.month_name)

    @property
    def effective_subject(self) -> str:
        """The subject line the issue is sent with."""
        return self.subject or self.default_subject


def build_subject(titles: list[str], month_name: str, limit: int = MAX_SUBJECT) -> str:
    """Join titles into a subject of at most ``limit`` characters.

    Titles are added while they fit; the rest are counted ("... and 2 more"). If even the
    first title does not fit, it is cut at a word boundary with an ellipsis.
    """
    if not titles:
        return f"Research digest, {month_name}"[:limit]
    subject = titles[0]
    used = 1
    for title in titles[1:]:
        candidate = f"{subject}; {title}"
        rest = len(titles) - used - 1
        tail = f" and {rest} more" if rest else ""
        if len(candidate) + len(tail) <= limit:
            subject = candidate
            used += 1
        else:
            break
    left = len(titles) - used
    if left:
        subject = f"{subject} (+{left} more)"
    if len(subject) <= limit:
        return subject
    cut = subject[: limit - 1].rsplit(" ", 1)[0].rstrip(" ,;:")
    return cut + "…"
