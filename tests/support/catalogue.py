"""A generated archive catalogue: ~150 published monthly issues with small summaries.

Used by the archive tests (pagination, search, filter counts, feeds) and by
``bench/bench_archive.py --search``. Everything is derived from the summary's number, so
a test can work out what a search or a filter must find from :func:`catalogue` itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from newsletter.content.taxonomy import RESEARCH_TYPES, load_taxonomy

# Words a summary may carry; summary n carries WORDS[n % len(WORDS)] in its text.
WORDS = ("rumination", "exposure", "mentalizing", "homework", "dropout", "supervision", "sleep")
FIRST_MONTH = (2014, 1)


@dataclass(frozen=True)
class Entry:
    """One generated summary."""

    number: int  # 0, 1, ... across the catalogue, oldest first
    month: str
    title: str
    topics: tuple[str, ...]  # slugs
    research: str | None  # slug
    word: str  # the one word of WORDS in its text


def months(count: int) -> list[str]:
    """``count`` consecutive months from January 2014."""
    year, month = FIRST_MONTH
    out = []
    for _ in range(count):
        out.append(f"{year:04d}-{month:02d}")
        month += 1
        if month > 12:
            year, month = year + 1, 1
    return out


def catalogue(issues: int = 150) -> list[Entry]:
    """The summaries of ``issues`` issues: 2, 2, 3, 2, 2, 3, ... a month."""
    topics = load_taxonomy().topics
    out: list[Entry] = []
    for i, month in enumerate(months(issues)):
        for _ in range(3 if i % 3 == 2 else 2):
            n = len(out)
            chosen = (topics[n % len(topics)].slug, topics[(n * 7 + 3) % len(topics)].slug)
            research = RESEARCH_TYPES[n % 5].slug if n % 4 else None
            word = WORDS[n % len(WORDS)]
            out.append(
                Entry(
                    n, month, f"Study {n} on {word}", tuple(dict.fromkeys(chosen)), research, word
                )
            )
    return out


def write_catalogue(issues_dir: Path, issues: int = 150) -> list[Entry]:
    """Write the catalogue's issue files (``status: published``) and return its entries."""
    taxonomy = load_taxonomy()
    research_names = {r.slug: r.name for r in RESEARCH_TYPES}
    entries = catalogue(issues)
    issues_dir.mkdir(parents=True, exist_ok=True)
    by_month: dict[str, list[Entry]] = {}
    for e in entries:
        by_month.setdefault(e.month, []).append(e)
    for month, found in by_month.items():
        parts = [f"---\nmonth: {month}\nstatus: published\n---\n"]
        for e in found:
            names = "; ".join(taxonomy.by_slug[t].name for t in e.topics)
            parts.append(
                f"## {e.title}\n"
                f"Citation: Author, A. ({month[:4]}). A paper about {e.word} number {e.number}. "
                f"Journal of Tests, {e.number}(1), 1-10.\n"
                f"Topics: {names}\n"
                + (f"Research: {research_names[e.research]}\n" if e.research else "")
                + f"\nThis study looked at {e.word} in {10 + e.number} clients of psychotherapy.\n"
                "\n### Practice Implications\n\n"
                f"Ask about {e.word} early.\n"
            )
        (issues_dir / f"{month}.md").write_text("\n".join(parts), encoding="utf-8")
    return entries
