"""Import the network's published blog archive (plain-text copies of its web pages).

A page is a boilerplate header, then months newest first (a line such as ``March 2024``),
each with summaries: a title, usually an APA citation, paragraphs of text, a line
``Practice Implications``, paragraphs of implications, and sometimes a contact line. The
pages carry no markup, so where one summary ends and the next begins is a guess; the
guesses are made by small named functions (:func:`is_month_heading`,
:func:`is_citation`, :func:`title_score`, ...) and driven by the state machine in
:func:`parse_archive_page`. Every line that cannot be placed is reported with its page and
line number, never dropped silently.

:func:`import_archive` is the one entry point of the command: read the pages, merge them
(deduplicating by month and title), weigh the evidence for each topic and research type
with the phrase rules in ``newsletter/importers/topic_keywords.toml``
(:func:`suggest_topics`), and write one ``issues/YYYY-MM.md`` per month, marked
``status: published`` so it is never sent. Paragraphs are escaped for Markdown
(:func:`escape_paragraph`) so they show as the page wrote them; guessed topics and research
types go on ``Topics-Suggested:`` and ``Research-Suggested:`` lines for the author to
confirm (``newsletter issue accept-suggestions``).
"""

from __future__ import annotations

import calendar
import os
import re
import tempfile
import tomllib
import unicodedata
from dataclasses import dataclass, field, replace
from enum import Enum
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Generic, TypeVar

from newsletter.content.model import Problem, ResearchType, Topic
from newsletter.content.parser import (
    CITATION_YEAR,
    MAX_SUMMARIES,
    ParseResult,
    decode_issue_bytes,
    parse_issue,
)
from newsletter.content.taxonomy import RESEARCH_TYPES, load_taxonomy
from newsletter.errors import NewsletterError

T = TypeVar("T")
MONTHS = tuple(m.lower() for m in calendar.month_name[1:])
_MONTH_ABBR = {m[:3]: i + 1 for i, m in enumerate(MONTHS)} | {"sept": 9}
MONTH_HEADING = re.compile(r"^([A-Za-z]+)\.?\s+(\d{4})$")
PRACTICE_HEADING = re.compile(r"^practice\s+implications\s*:?$", re.IGNORECASE)
CONTACT_LINE = re.compile(
    r"^(?:(?:the\s+)?authors?(?:'s|’s|'|’)?\s+)?"
    r"(?:e-?mail(?:\s+address)?|contact(?:\s+information)?|correspondence|corresponding\s+author)"
    r"\s*:\s*\S",
    re.IGNORECASE,
)
BARE_EMAIL = re.compile(r"^\S+@\S+\.[A-Za-z]{2,}$")
# APA authors: "Surname, A. B.," with accented and hyphenated surnames, or "et al.".
AUTHOR_START = re.compile(r"^[^\W\d_][\w'’\-]*(?:\s[\w'’\-]+){0,3},\s+(?:[A-Z]\.[\s-]*){1,4}")
INITIALS = re.compile(r"\b[A-Z]\.(?:\s|,|$|-)")
# A title is a headline, not a paragraph: these bound what a title can look like.
MAX_TITLE = 150
TITLE_WORDS = 25
# Function words that stay lower case in Title Case.
SMALL_WORDS = frozenset(
    re.split(
        r"\s+",
        "a an and as at but by for from in into is of on or over per the to vs via with "
        "within without after before between among about",
    )
)
CONFIDENT_TITLE = 3.0  # a title guessed with a lower score is reported for review


# ---------------------------------------------------------------------------------------
# Data


@dataclass
class ArchiveEntry:
    """One summary found on a page, before merging."""

    month: str  # YYYY-MM
    title: str
    page: str
    line: int
    citation: str | None = None
    body: list[str] = field(default_factory=list)
    implications: list[str] = field(default_factory=list)
    contact: str | None = None
    last_line: int = 0

    @property
    def complete(self) -> bool:
        """Has text and implications: it can become a summary of an issue."""
        return bool(self.body and self.implications)


@dataclass
class ArchivePage:
    """What one page gave: its summaries in page order, and what could not be placed."""

    path: str
    entries: list[ArchiveEntry]
    problems: list[Problem]
    contacts: list[tuple[int, str]]
    header_lines: int
    topic: Topic | None = None

    @property
    def months(self) -> list[str]:
        """The months of the page, in page order, once each."""
        return list(dict.fromkeys(e.month for e in self.entries))


@dataclass(frozen=True)
class TopicSuggestion:
    """The topics and research type found for one summary, and why.

    Topics of the pages' filters are certain (the blog filed the summary there); the
    guesses from the keyword rules are written as ``Topics-Suggested:`` and
    ``Research-Suggested:`` for the author to confirm.
    """

    page_topics: tuple[Topic, ...]  # the topic filters of the pages it was found on
    guesses: tuple[Guess[Topic], ...]  # from the keyword rules, best first
    research_guess: Guess[ResearchType] | None

    @property
    def suggested(self) -> tuple[Topic, ...]:
        """The guessed topics, best first (some may also be page topics)."""
        return tuple(g.target for g in self.guesses)

    @property
    def unconfirmed(self) -> tuple[Topic, ...]:
        """What goes on the ``Topics-Suggested:`` line: guesses that are not page topics,
        or Miscellaneous when there is nothing else."""
        out = tuple(t for t in self.suggested if t not in self.page_topics)
        if not out and not self.page_topics:
            out = (load_taxonomy().by_slug["miscellaneous"],)
        return out

    @property
    def research(self) -> ResearchType | None:
        """The guessed research type, if any."""
        return self.research_guess.target if self.research_guess else None

    @property
    def fallback(self) -> bool:
        """True when nothing matched and Miscellaneous is used."""
        return not self.page_topics and not self.guesses

    @property
    def topics(self) -> tuple[Topic, ...]:
        """Every topic the issue file names: the pages' topics first, then the guesses."""
        return self.page_topics + self.unconfirmed

    def evidence_for(self, topic: Topic) -> Guess[Topic] | None:
        """The guess of ``topic`` with its evidence, or None (a page topic only)."""
        return next((g for g in self.guesses if g.target == topic), None)

    def with_page_topic(self, topic: Topic | None) -> TopicSuggestion:
        """The same suggestion, also tagged with the topic of another page it appeared on."""
        if topic is None or topic in self.page_topics:
            return self
        return replace(self, page_topics=(*self.page_topics, topic))


@dataclass
class ImportedSummary:
    """One merged summary with the pages it came from and its topics."""

    entry: ArchiveEntry
    sources: list[str]  # "page:line" of every copy
    topics: TopicSuggestion


@dataclass
class PlannedFile:
    """One issue file the import writes (or would write)."""

    month: str
    path: Path
    text: str
    summaries: list[ImportedSummary]
    action: str = "write"  # write | overwrite | skip (exists) | invalid
    problems: list[Problem] = field(default_factory=list)


@dataclass
class ImportReport:
    """Everything :func:`import_archive` did or would do."""

    pages: list[ArchivePage]
    files: list[PlannedFile]
    duplicates: int
    problems: list[Problem]
    dry_run: bool

    @property
    def summaries(self) -> list[ImportedSummary]:
        """Every merged summary, newest month first."""
        return [s for f in self.files for s in f.summaries]

    @property
    def without_citation(self) -> list[ImportedSummary]:
        """Summaries that had no citation line."""
        return [s for s in self.summaries if not s.entry.citation]

    @property
    def errors(self) -> list[Problem]:
        """Problems where content was left out (lines not placed, summaries not imported)."""
        return [p for p in self.problems if p.severity == "error"]

    def files_with(self, *actions: str) -> list[PlannedFile]:
        """The planned files whose action is one of ``actions``."""
        return [f for f in self.files if f.action in actions]


class ArchiveReadError(NewsletterError):
    """An archive page cannot be read (missing, unreadable, not UTF-8, no months)."""


# ---------------------------------------------------------------------------------------
# Line classifiers (the heuristics, one named function each)


def month_of(line: str) -> str | None:
    """``YYYY-MM`` if the line is only a month and year (``March 2024``, ``Sept. 2019``)."""
    m = MONTH_HEADING.match(line.strip())
    if not m:
        return None
    word = m.group(1).lower()
    number = MONTHS.index(word) + 1 if word in MONTHS else _MONTH_ABBR.get(word)
    year = int(m.group(2))
    if number is None or not 1900 <= year <= 2200:
        return None
    return f"{year:04d}-{number:02d}"


def is_month_heading(line: str) -> bool:
    """True if the line starts a month."""
    return month_of(line) is not None


def is_practice_heading(line: str) -> bool:
    """True for the ``Practice Implications`` line (case and a colon tolerated)."""
    return bool(PRACTICE_HEADING.match(line.strip()))


def is_contact_line(line: str) -> bool:
    """``Author email: ...``, ``Email: ...``, ``Contact: ...`` or a bare e-mail address."""
    text = line.strip()
    return bool(CONTACT_LINE.match(text) or BARE_EMAIL.match(text))


def is_citation(line: str) -> bool:
    """An APA reference: authors (initials or a group name), then ``(YYYY...)`` early on.

    The year must be one the issue checker accepts (``(2023)``, ``(2023, March)``,
    ``(n.d.)``, ``(in press)``). Prose such as "Lee and colleagues (2019) found" is not a
    citation: the text before the year must contain initials or be a short group name.
    """
    text = line.strip()
    m = CITATION_YEAR.search(text)
    if not m or m.start() > 400:
        return False
    before = text[: m.start()].strip()
    if not before:
        return False
    if INITIALS.search(before) or "et al" in before:
        return True
    # Group authors: "American Psychological Association. (2019)."
    return len(before) <= 80 and before.endswith(".") and before[0].isupper()


def looks_like_citation_without_year(line: str) -> bool:
    """Starts like an APA author list (``Surname, A.,``) but has no year in parentheses."""
    text = line.strip()
    return bool(AUTHOR_START.match(text)) and not CITATION_YEAR.search(text)


def ends_like_sentence(line: str) -> bool:
    """Ends with a full stop, or a comma/semicolon/colon (a paragraph, not a title)."""
    text = line.rstrip().rstrip("\"'”’)»").rstrip()
    return text.endswith((".", ",", ";", ":")) and not text.endswith("...")


def is_title_case(line: str) -> bool:
    """Most words other than short function words start with a capital letter."""
    words = [w.strip("\"'“”‘’()[]:;,.?!") for w in line.split()]
    words = [w for w in words if w and w.lower() not in SMALL_WORDS and w[0].isalpha()]
    if not words:
        return False
    capital = sum(1 for w in words if w[0].isupper())
    return capital / len(words) >= 0.75


def looks_like_title(line: str) -> bool:
    """Short enough and not ending like a sentence: could be a title."""
    text = line.strip()
    return (
        0 < len(text) <= MAX_TITLE
        and len(text.split()) <= TITLE_WORDS
        and not ends_like_sentence(text)
        and not is_citation(text)
        and not is_contact_line(text)
        and not is_practice_heading(text)
        and not is_month_heading(text)
    )


def title_score(lines: list[tuple[int, str]], j: int) -> float:
    """How much ``lines[j]`` looks like the title of a summary (higher is likelier).

    Combines: length, ending punctuation, Title Case, a citation on the next line, several
    sentences in the line, and whether the previous line ends a paragraph.
    """
    text = lines[j][1]
    if is_citation(text) or is_practice_heading(text) or is_contact_line(text):
        return -100.0
    score = 0.0
    if len(text) > MAX_TITLE or len(text.split()) > TITLE_WORDS:
        score -= 5
    elif len(text) <= 100:
        score += 1
    if ends_like_sentence(text):
        score -= 4
    if re.search(r"[a-z]{2}[.!?] [A-Z]", text):  # two sentences: a paragraph
        score -= 3
    if is_title_case(text):
        score += 2
    if j + 1 < len(lines) and is_citation(lines[j + 1][1]):
        score += 4
    if j > 0 and lines[j - 1][1].rstrip().endswith((".", "?", "!", ")", '"', "”")):
        score += 0.5
    return score


# ---------------------------------------------------------------------------------------
# The page parser


class State(Enum):
    """Where the parser is on the page."""

    HEADER = "header"  # before the first month heading
    EXPECT_TITLE = "expect title"  # after a month heading or a contact line
    AFTER_TITLE = "after title"  # a citation or the text comes next
    BODY = "body"  # paragraphs of the summary
    IMPLICATIONS = "implications"  # paragraphs after 'Practice Implications'
    ORPHAN = "orphan"  # implications with no summary: reported, not imported


def _segment_end(lines: list[tuple[int, str]], start: int) -> int:
    """Index of the next hard boundary (month heading or contact line) or the end."""
    for k in range(start, len(lines)):
        if is_month_heading(lines[k][1]) or is_contact_line(lines[k][1]):
            return k
    return len(lines)


def _next_practice(lines: list[tuple[int, str]], start: int, end: int) -> int | None:
    return next((k for k in range(start, end) if is_practice_heading(lines[k][1])), None)


def find_next_title(lines: list[tuple[int, str]], start: int) -> tuple[int | None, float]:
    """Where the next summary's title is, once a ``Practice Implications`` block starts.

    ``start`` is the first implications line. If another ``Practice Implications`` line
    comes before the next month heading or contact line, the next title lies between:
    after at least one implications paragraph and before at least one paragraph of text;
    the candidate with the best :func:`title_score` wins (the earliest on a tie).
    Otherwise only a title-like line followed by a citation starts a summary (one with no
    implications, which is then reported). Returns the index and its score, or None.
    """
    end = _segment_end(lines, start)
    practice = _next_practice(lines, start, end)
    if practice is None:
        for k in range(start + 1, end - 1):
            if looks_like_title(lines[k][1]) and is_citation(lines[k + 1][1]):
                return k, title_score(lines, k)
        return None, 0.0
    candidates = range(start + 1, practice - 1)
    if not candidates:
        return None, 0.0
    best = max(candidates, key=lambda k: (title_score(lines, k), -k))
    return best, title_score(lines, best)


def parse_archive_page(text: str, path: str = "<page>") -> ArchivePage:
    """Split one page into summaries; report every line that cannot be placed.

    A state machine over the non-blank lines (blank lines carry no meaning: paragraphs are
    single lines). See :class:`State` for the states.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff")
    lines = [
        (n, " ".join(unicodedata.normalize("NFC", raw).split()))
        for n, raw in enumerate(text.split("\n"), 1)
        if raw.strip()
    ]
    entries: list[ArchiveEntry] = []
    problems: list[Problem] = []
    contacts: list[tuple[int, str]] = []
    state = State.HEADER
    month: str | None = None
    entry: ArchiveEntry | None = None
    next_title: int | None = None
    header = 0

    def warn(line: int, message: str, severity: str = "warning", hint: str | None = None):
        problems.append(Problem(path, line, severity, message, hint))

    def unplaced(i: int, why: str) -> None:
        n, line = lines[i]
        shown = line if len(line) <= 60 else line[:57] + "..."
        warn(
            n,
            f"line not imported ({why}): {shown!r}",
            "error",
            "fix the page (e.g. add the missing title or 'Practice Implications' line) "
            "and import again, or add the text to the issue file by hand",
        )

    def close() -> None:
        nonlocal entry
        if entry is None:
            return
        if entry.complete:
            entries.append(entry)
        else:
            missing = "text" if not entry.body else "'Practice Implications' section"
            if not entry.body and not entry.implications:
                missing = "text and no 'Practice Implications' section"
            warn(
                entry.line,
                f"summary {entry.title!r} (lines {entry.line}-{entry.last_line}) has no "
                f"{missing}; not imported",
                "error",
                "check the page around these lines; a title may have been mistaken for text",
            )
        entry = None

    def open_entry(i: int) -> None:
        nonlocal entry
        close()
        n, line = lines[i]
        assert month is not None
        entry = ArchiveEntry(month=month, title=line, page=path, line=n, last_line=n)

    for i, (n, line) in enumerate(lines):
        if state is State.HEADER:
            if is_month_heading(line):
                month, state = month_of(line), State.EXPECT_TITLE
            else:
                header += 1
            continue
        if is_month_heading(line):
            close()
            month, state = month_of(line), State.EXPECT_TITLE
            continue
        if is_contact_line(line):
            # A contact line belongs to no summary's text; it ends the summary it follows.
            contacts.append((n, line))
            if entry is not None and state is State.IMPLICATIONS:
                entry.contact = line
                close()
                state = State.EXPECT_TITLE
            continue
        if entry is not None:
            entry.last_line = n

        if state is State.EXPECT_TITLE:
            if is_practice_heading(line):
                unplaced(i, "'Practice Implications' with no summary title before it")
                state = State.ORPHAN
                next_title, _ = find_next_title(lines, i + 1)
            elif _can_start_summary(lines, i):
                open_entry(i)
                state = State.AFTER_TITLE
                if not looks_like_title(line):
                    warn(
                        n,
                        f"title {line!r} does not look like a title (long or ends with "
                        "a full stop); check the page",
                        hint="fix the title in the issue file",
                    )
            else:
                unplaced(i, "expected a summary title")
        elif state is State.AFTER_TITLE:
            assert entry is not None
            if is_practice_heading(line):
                state = State.IMPLICATIONS
                next_title, _ = _plan_next_title(lines, i, warn)
            elif is_citation(line):
                entry.citation = line
                state = State.BODY
            else:
                if looks_like_citation_without_year(line):
                    warn(
                        n,
                        "citation has no year in parentheses; kept as the first paragraph "
                        "of the text",
                        hint="add the year, e.g. (2019), and move it to "
                        "'Citation:' in the issue file",
                    )
                entry.body.append(line)
                state = State.BODY
        elif state is State.BODY:
            assert entry is not None
            if is_practice_heading(line):
                state = State.IMPLICATIONS
                next_title, _ = _plan_next_title(lines, i, warn)
            elif looks_like_title(line) and i + 1 < len(lines) and is_citation(lines[i + 1][1]):
                # A title and a citation mid-text: the summary before lost its implications.
                entry.last_line = lines[i - 1][0]
                open_entry(i)
                state = State.AFTER_TITLE
            else:
                entry.body.append(line)
        elif state is State.IMPLICATIONS:
            assert entry is not None
            if i == next_title:
                entry.last_line = lines[i - 1][0]
                open_entry(i)
                state = State.AFTER_TITLE
            elif is_practice_heading(line):
                unplaced(i, "a second 'Practice Implications' with no title found before it")
            else:
                entry.implications.append(line)
        elif state is State.ORPHAN:
            if i == next_title:
                open_entry(i)
                state = State.AFTER_TITLE
            else:
                unplaced(i, "implications of a summary with no title")
    close()
    if month is None and lines:
        raise ArchiveReadError(
            f"{path}: no month heading found (a line such as 'March 2024')",
            hint="is this a copy of an archive page? months must be on lines of their own",
        )
    problems.sort(key=lambda p: p.line)
    return ArchivePage(path, entries, problems, contacts, header)


def _can_start_summary(lines: list[tuple[int, str]], i: int) -> bool:
    """After a month heading: the line is a title if it looks like one, or if a
    ``Practice Implications`` line follows before the next boundary (so a summary must
    start here)."""
    if looks_like_title(lines[i][1]):
        return True
    end = _segment_end(lines, i + 1)
    return _next_practice(lines, i + 1, end) is not None


def _plan_next_title(lines, i, warn) -> tuple[int | None, float]:
    """Find the next title after the implications heading at ``i``; flag weak guesses."""
    k, score = find_next_title(lines, i + 1)
    if k is not None and score < CONFIDENT_TITLE:
        n, line = lines[k]
        warn(
            n,
            f"guessed that {line!r} starts a new summary (weak evidence); check the page",
            hint="if wrong, fix the split in the written issue file",
        )
    return k, score


def read_archive_page(path: Path) -> ArchivePage:
    """Read and parse one page file; unreadable or non-UTF-8 files raise ArchiveReadError."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ArchiveReadError(f"{path}: no such file", hint="check the path") from None
    except IsADirectoryError:
        raise ArchiveReadError(f"{path}: is a directory, not a file") from None
    except OSError as exc:
        raise ArchiveReadError(f"{path}: cannot read: {exc.strerror}") from None
    text, problems = decode_issue_bytes(data, str(path))
    if text is None:
        p = problems[0]
        raise ArchiveReadError(f"{p.path}:{p.line}: {p.message}", hint=p.hint)
    if not text.strip():
        raise ArchiveReadError(f"{path}: the file is empty")
    return parse_archive_page(text, str(path))


# ---------------------------------------------------------------------------------------
# Merging


def normalise_title(title: str) -> str:
    """The title as compared for duplicates: quotes, dashes, case and spaces evened out."""
    text = unicodedata.normalize("NFKC", title)
    text = text.translate(_TITLE_TABLE)
    return " ".join(text.casefold().split()).rstrip(" .")


_TITLE_TABLE = str.maketrans(
    {
        "“": '"',
        "”": '"',
        "„": '"',
        "«": '"',
        "»": '"',
        "‘": "'",
        "’": "'",
        "‚": "'",
        "–": "-",
        "—": "-",
        "‐": "-",
        "‑": "-",
        "−": "-",
        "\u00a0": " ",
    }
)


def merge_pages(
    pages: list[ArchivePage],
) -> tuple[dict[str, list[ImportedSummary]], int, list[Problem]]:
    """Merge summaries by month in page order; the first copy of a (month, title) wins.

    Returns months (newest first) -> summaries, the number of duplicates merged, and
    warnings for duplicates whose text differs from the first copy.
    """
    months: dict[str, list[ImportedSummary]] = {}
    seen: dict[tuple[str, str], ImportedSummary] = {}
    duplicates = 0
    problems: list[Problem] = []
    for page in pages:
        for e in page.entries:
            key = (e.month, normalise_title(e.title))
            where = f"{e.page}:{e.line}"
            if key in seen:
                first = seen[key]
                first.sources.append(where)
                # A summary on a topic-filtered page belongs to that topic too.
                first.topics = first.topics.with_page_topic(page.topic)
                duplicates += 1
                if _content(first.entry) != _content(e):
                    problems.append(
                        Problem(
                            e.page,
                            e.line,
                            "warning",
                            f"duplicate of {first.sources[0]} ({e.title!r}) with different text; "
                            "kept the first copy",
                        )
                    )
                continue
            item = ImportedSummary(e, [where], suggest_topics(e, page.topic))
            seen[key] = item
            months.setdefault(e.month, []).append(item)
    return dict(sorted(months.items(), reverse=True)), duplicates, problems


def _content(e: ArchiveEntry) -> tuple:
    return tuple(normalise_title(x) for x in (e.citation or "", *e.body, "|", *e.implications))


# ---------------------------------------------------------------------------------------
# Topic suggestions


_WORD = re.compile(r"\w+")

#: What a phrase found in each part of a summary is worth: a title names what the study
#: is about, a citation's article title nearly so, the text mentions much in passing.
FIELD_WEIGHTS = {"title": 3.0, "citation": 2.0, "text": 1.0}
STRONG = 2.0  # a phrase listed under ``strong``: specific enough to count double
REPEAT = 0.5  # each further occurrence in the same part adds this share ...
MAX_REPEATS = 2  # ... up to this many times
#: A topic is suggested from this score up: one phrase in the title, or a phrase in the
#: citation and one in the text, or a strong phrase twice in the text, or three phrases
#: in the text. Mentioned once in passing is not enough.
TOPIC_THRESHOLD = 3.0
#: A research type needs less: one strong phrase in the text names a design.
RESEARCH_THRESHOLD = 2.0
#: A citation of a chapter in an edited book: "In A. Editor (Ed.), Title (pp. 1-20)".
CHAPTER = re.compile(
    r"\bIn\s+[^()]{2,200}?\((?:Eds?|Hrsg|Dir|Coord)s?\.\)|\(pp?\.\s*\d", re.IGNORECASE
)
CHAPTER_POINTS = 6.0  # as much as a strong phrase in the title


@dataclass(frozen=True)
class Keyword:
    """One phrase of a rule, as words: ``drop-out`` is ("drop", "out")."""

    text: str
    words: tuple[str, ...]  # lower case, or as written when ``exact_case``
    prefix: bool  # written with a final "*": the last word is a prefix
    exact_case: bool  # short all-capital keywords (CBT, IPT) match only in capitals

    @classmethod
    def parse(cls, text: str) -> Keyword:
        """Read one keyword as written in the rules file."""
        word = text.strip()
        exact = word.isupper() and len(word) <= 5
        words = tuple(_WORD.findall(word if exact else word.lower()))
        return cls(word, words, word.endswith("*"), exact)

    def matches(self, tokens: list[str], lower: list[str], i: int) -> bool:
        """Whether the keyword's words appear at ``tokens[i:]`` (whole words only)."""
        seq = tokens if self.exact_case else lower
        if i + len(self.words) > len(seq):
            return False
        *head, last = self.words
        if any(seq[i + k] != w for k, w in enumerate(head)):
            return False
        token = seq[i + len(head)]
        if self.prefix:
            return token.startswith(last)
        return token in (last, last + "s", last + "es")


@dataclass(frozen=True)
class Phrase:
    """A keyword of one rule, how much it counts, and whether it speaks against the rule."""

    rule: int  # index of the rule (topic or research type)
    keyword: Keyword
    strength: float  # 1, or STRONG
    negative: bool  # a "not" phrase: hits of the rule inside it do not count


@dataclass(frozen=True)
class Hit:
    """One phrase found in a text: tokens ``start`` to ``end`` (exclusive)."""

    phrase: Phrase
    start: int
    end: int


@dataclass(frozen=True)
class Evidence:
    """A phrase found in one part of a summary, and the points it gave the guess."""

    phrase: str  # as written in the rules (or "book chapter" for a chapter citation)
    field: str  # title | citation | text
    count: int
    points: float

    def format(self) -> str:
        """``"vicarious trauma" (title)``, ``"depress*" (text, 3 times)``."""
        times = f", {self.count} times" if self.count > 1 else ""
        return f'"{self.phrase}" ({self.field}{times})'


@dataclass(frozen=True)
class Guess(Generic[T]):
    """A topic or research type suggested for a summary, its score and why."""

    target: T
    score: float
    evidence: tuple[Evidence, ...]  # best first

    def explain(self) -> str:
        """The evidence in one line, for the report."""
        return ", ".join(e.format() for e in self.evidence)


class KeywordRules(Generic[T]):
    """Phrase rules indexed by their first word, so a text is read once for all rules."""

    def __init__(self, rules: list[tuple[T, dict[str, list[str]]]]) -> None:
        self.targets = [target for target, _ in rules]
        self._by_first: dict[str, list[Phrase]] = {}
        self._prefixes: list[Phrase] = []
        for index, (_, kinds) in enumerate(rules):
            for kind, strength, negative in (
                ("strong", STRONG, False),
                ("phrases", 1.0, False),
                ("not", 0.0, True),
            ):
                for text in kinds.get(kind, ()):
                    phrase = Phrase(index, Keyword.parse(text), strength, negative)
                    kw = phrase.keyword
                    if kw.prefix and len(kw.words) == 1:
                        self._prefixes.append(phrase)
                        continue
                    first = kw.words[0].lower()
                    forms = (first, first + "s", first + "es") if len(kw.words) == 1 else (first,)
                    for form in forms:
                        self._by_first.setdefault(form, []).append(phrase)

    def hits(self, text: str) -> list[Hit]:
        """Every phrase of every rule found in ``text``, with its place."""
        tokens = _WORD.findall(text)
        lower = [t.lower() for t in tokens]
        found: list[Hit] = []
        for i, token in enumerate(lower):
            for phrase in (*self._by_first.get(token, ()), *self._prefixes):
                if phrase.keyword.matches(tokens, lower, i):
                    found.append(Hit(phrase, i, i + len(phrase.keyword.words)))
        return found

    def evidence(self, fields: dict[str, str]) -> dict[int, list[Evidence]]:
        """Rule index -> the evidence for it in the named texts (see FIELD_WEIGHTS).

        A hit inside a "not" phrase of the same rule does not count ("vicarious trauma"
        is no evidence of Trauma/PTSD). Where phrases of one rule overlap ("social
        anxiety", "anxiety") only the strongest, then longest, counts. A phrase found
        again in the same part adds REPEAT of its points, at most MAX_REPEATS times.
        """
        out: dict[int, list[Evidence]] = {}
        for field_name, text in fields.items():
            by_rule: dict[int, list[Hit]] = {}
            for hit in self.hits(text):
                by_rule.setdefault(hit.phrase.rule, []).append(hit)
            for rule, hits in by_rule.items():
                vetoes = [h for h in hits if h.phrase.negative]
                kept: list[Hit] = []
                ranked = sorted(
                    (h for h in hits if not h.phrase.negative),
                    key=lambda h: (-h.phrase.strength, h.start - h.end, h.start),
                )
                for h in ranked:
                    if any(v.start <= h.start and h.end <= v.end for v in vetoes):
                        continue
                    if any(h.start < k.end and k.start < h.end for k in kept):
                        continue
                    kept.append(h)
                counts: dict[Phrase, int] = {}
                for h in kept:
                    counts[h.phrase] = counts.get(h.phrase, 0) + 1
                weight = FIELD_WEIGHTS[field_name]
                for phrase, n in counts.items():
                    points = weight * phrase.strength * (1 + REPEAT * min(n - 1, MAX_REPEATS))
                    out.setdefault(rule, []).append(
                        Evidence(phrase.keyword.text, field_name, n, points)
                    )
        return out

    def guesses(self, fields: dict[str, str], threshold: float) -> list[Guess[T]]:
        """The rules scoring at least ``threshold``, best first (rule order on a tie)."""
        found = self.evidence(fields)
        return self.rank(found, threshold)

    def rank(self, found: dict[int, list[Evidence]], threshold: float) -> list[Guess[T]]:
        """Guesses from collected evidence, best first (rule order on a tie)."""
        scored = []
        for rule, evidence in found.items():
            score = sum(e.points for e in evidence)
            if score >= threshold:
                best = tuple(sorted(evidence, key=lambda e: -e.points))
                scored.append((-score, rule, Guess(self.targets[rule], score, best)))
        return [guess for _, _, guess in sorted(scored, key=lambda x: x[:2])]


@dataclass(frozen=True)
class KeywordRuleSet:
    """The topic rules and the research-type rules of ``topic_keywords.toml``."""

    topics: KeywordRules[Topic]
    research: KeywordRules[ResearchType]


@cache
def load_keyword_rules() -> KeywordRuleSet:
    """The rules of ``topic_keywords.toml``; unknown slugs there are a bug, so they raise."""
    data = tomllib.loads(
        resources.files("newsletter.importers").joinpath("topic_keywords.toml").read_text("utf-8")
    )
    taxonomy = load_taxonomy()
    by_slug = {r.slug: r for r in RESEARCH_TYPES}
    for section in ("topics", "research"):
        for slug, kinds in data[section].items():
            unknown = set(kinds) - {"strong", "phrases", "not"}
            if unknown:  # a misspelt list would be ignored without a word
                raise ValueError(f"topic_keywords.toml [{section}.{slug}]: {sorted(unknown)}")
    return KeywordRuleSet(
        KeywordRules([(taxonomy.by_slug[slug], kinds) for slug, kinds in data["topics"].items()]),
        KeywordRules([(by_slug[slug], kinds) for slug, kinds in data["research"].items()]),
    )


def summary_fields(entry: ArchiveEntry) -> dict[str, str]:
    """The parts of a summary that evidence is weighed in."""
    return {
        "title": entry.title,
        "citation": entry.citation or "",
        "text": "\n".join([*entry.body, *entry.implications]),
    }


def is_book_chapter(citation: str | None) -> bool:
    """An APA reference to a chapter of an edited book (``In X (Ed.), ... (pp. 1-20)``)."""
    return bool(citation and CHAPTER.search(citation))


def suggest_topics(entry: ArchiveEntry, page_topic: Topic | None = None) -> TopicSuggestion:
    """Topics and a research type for one summary, each with the evidence that chose it.

    Every topic whose evidence reaches :data:`TOPIC_THRESHOLD` is suggested (no cap),
    best first. The research type is the best-scoring one from
    :data:`RESEARCH_THRESHOLD` up; a chapter of an edited book counts as strong evidence
    of a narrative review.
    """
    rules = load_keyword_rules()
    fields = summary_fields(entry)
    topics = tuple(rules.topics.guesses(fields, TOPIC_THRESHOLD))
    found = rules.research.evidence(fields)
    if is_book_chapter(entry.citation):
        review = next(
            i for i, r in enumerate(rules.research.targets) if r.slug == "narrative-review"
        )
        found.setdefault(review, []).append(Evidence("book chapter", "citation", 1, CHAPTER_POINTS))
    kinds = rules.research.rank(found, RESEARCH_THRESHOLD)
    return TopicSuggestion((page_topic,) if page_topic else (), topics, kinds[0] if kinds else None)


# ---------------------------------------------------------------------------------------
# Writing issue files


# Inline Markdown, wherever it stands: code spans, emphasis, links and images, autolinks,
# strikethrough, entity references, and the backslash itself. An underscore between two
# letters or digits ("snake_case") cannot start emphasis, so it is left readable.
_INLINE = re.compile(
    r"[\\`*\[\]<]|~(?=~)|(?<=~)~|(?<![^\W_])_|_(?![^\W_])"
    r"|&(?=#[0-9]{1,7};|#[xX][0-9a-fA-F]{1,6};|[A-Za-z][A-Za-z0-9]{1,31};)"
)
# What makes a paragraph a block of another kind when it starts the line: headings,
# quotes, list items, thematic breaks, fences, setext underlines.
_LINE_START = re.compile(r"^(#|>|[-+](?=\s|$)|\d{1,9}(?=[.)](?:\s|$))|-{3,}\s*$|=+\s*$)")
# A closing run of "#" that the issue parser strips from a "## " title (CommonMark).
_TITLE_CLOSING = re.compile(r"\s#+$")


def escape_paragraph(text: str) -> str:
    """Escape one paragraph of plain text so that Markdown shows it exactly as written.

    Inline characters (backtick, ``*``, ``_``, brackets, ``<``, ``~~``, ``&name;``, the
    backslash) get a backslash wherever they are; what would make the paragraph a heading,
    quote, list item, rule or fence gets one at the start. An HTML comment opener becomes
    ``\\<\\!--`` because the issue parser strips comments even after a backslash.
    """
    text = _INLINE.sub(lambda m: "\\" + m.group(0), text)
    text = text.replace("\\<!--", "\\<\\!--")
    m = _LINE_START.match(text)
    if not m:
        return text
    if m.group(0)[0].isdigit():
        end = m.end()
        return text[:end] + "\\" + text[end:]
    return "\\" + text


def title_line(title: str) -> str:
    """The ``## `` line of a title; a title ending in " #" keeps it (the parser strips one
    closing run of "#", so one more is added for it to strip)."""
    return f"## {title} #" if _TITLE_CLOSING.search(title) else f"## {title}"


def render_issue_text(month: str, summaries: list[ImportedSummary]) -> str:
    """The text of ``issues/<month>.md`` for the given summaries (status: published).

    The topics of the pages' filters are certain and go on ``Topics:``; the guesses of the
    keyword rules go on ``Topics-Suggested:`` and ``Research-Suggested:``, which
    ``issue check`` reports until the author confirms them.
    """
    out = [
        "---",
        f"month: {month}",
        "status: published  # imported from the blog archive; never sent",
        "---",
        "",
    ]
    for s in summaries:
        e = s.entry
        out.append(title_line(e.title))
        if e.citation:
            out.append(f"Citation: {e.citation}")
        t = s.topics
        if t.page_topics:
            out.append("Topics: " + "; ".join(x.name for x in t.page_topics))
        if t.unconfirmed:
            out.append("Topics-Suggested: " + "; ".join(x.name for x in t.unconfirmed))
        if t.research:
            out.append(f"Research-Suggested: {t.research.slug}")
        out.append("")
        for p in e.body:
            out += [escape_paragraph(p), ""]
        out += ["### Practice Implications", ""]
        for p in e.implications:
            out += [escape_paragraph(p), ""]
    return "\n".join(out).rstrip("\n") + "\n"


def _write_atomic(path: Path, text: str, overwrite: bool) -> bool:
    """Write via a temporary file and a rename, so a reader never sees half a file.

    Without ``overwrite`` the file is linked into place, which fails if it appeared in the
    meantime; returns False then (nothing is changed).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if overwrite:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError:
            # No hard links on this file system: fall back to check-then-rename.
            if path.exists():
                return False
            os.replace(tmp, path)
        return True
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def plan_files(
    months: dict[str, list[ImportedSummary]], into: Path, force: bool
) -> tuple[list[PlannedFile], list[Problem]]:
    """One planned file per month; each is checked with the issue parser before writing.

    A month with more than four summaries keeps them all (the file is a published back
    issue, never sent) and gets a warning.
    """
    files: list[PlannedFile] = []
    problems: list[Problem] = []
    for month, items in months.items():
        kept = items  # a published back issue keeps every summary (the parser allows it)
        if len(items) > MAX_SUMMARIES:
            problems.append(
                Problem(
                    items[MAX_SUMMARIES].entry.page,
                    items[MAX_SUMMARIES].entry.line,
                    "warning",
                    f"{month} has {len(items)} summaries (more than {MAX_SUMMARIES}); all are "
                    "kept in the published back issue",
                    "check that the page boundaries were read right",
                )
            )
        path = into / f"{month}.md"
        text = render_issue_text(month, kept)
        planned = PlannedFile(month, path, text, kept)
        result = parse_issue(text, str(path))
        if result.errors:
            # Should not happen; if it does, never write a file the checker rejects.
            planned.action = "invalid"
            planned.problems = result.errors
            problems += [
                Problem(str(path), p.line, "error", f"generated file invalid: {p.message}")
                for p in result.errors
            ]
        else:
            problems += _changed_in_reading(result, kept, str(path))
            if path.exists():
                planned.action = "overwrite" if force else "skip"
        files.append(planned)
    return files, problems


def _changed_in_reading(
    result: ParseResult, items: list[ImportedSummary], path: str
) -> list[Problem]:
    """Warnings for titles and citations the issue file would not show as the page did.

    They are plain text in the issue format (not Markdown, so never escaped); only an HTML
    comment in them (``<!-- -->``, which the parser removes) can change them.
    """
    out: list[Problem] = []
    assert result.issue is not None
    for summary, item in zip(result.issue.summaries, items, strict=True):
        e = item.entry
        for name, read, written in (
            ("title", summary.title, e.title),
            ("citation", summary.citation, e.citation),
        ):
            if read != written:
                out.append(
                    Problem(
                        e.page,
                        e.line,
                        "warning",
                        f"the {name} reads {read!r} in {path}, not {written!r} as on the page",
                        "an HTML comment ('<!-- -->') is left out of issue files; "
                        "fix the text in the issue file",
                    )
                )
    return out


def import_archive(
    pages: list[tuple[Path, str | None]],
    into: Path,
    *,
    dry_run: bool = False,
    force: bool = False,
) -> ImportReport:
    """Read archive pages (each with its topic filter or None) and write issue files.

    Everything is read and checked before anything is written: an unreadable page or an
    unknown topic raises before a single file changes. Existing files are skipped unless
    ``force``; with ``dry_run`` nothing is written.
    """
    taxonomy = load_taxonomy()
    read: list[ArchivePage] = []
    for path, topic_name in pages:
        topic = taxonomy.resolve(topic_name) if topic_name else None
        page = read_archive_page(path)
        page.topic = topic
        read.append(page)
    months, duplicates, merge_problems = merge_pages(read)
    files, plan_problems = plan_files(months, into, force)
    problems = [p for page in read for p in page.problems] + merge_problems + plan_problems
    if not dry_run:
        for f in files:
            if f.action in ("write", "overwrite") and not _write_atomic(
                f.path, f.text, overwrite=f.action == "overwrite"
            ):
                f.action = "skip"
    return ImportReport(read, files, duplicates, problems, dry_run)


def report_to_dict(report: ImportReport) -> dict:
    """A JSON-able view of the report (``--json``)."""
    return {
        "dry_run": report.dry_run,
        "pages": [
            {
                "path": p.path,
                "topic": p.topic.slug if p.topic else None,
                "months": len(p.months),
                "summaries": len(p.entries),
                "contact_lines": [{"line": n, "text": t} for n, t in p.contacts],
            }
            for p in report.pages
        ],
        "months": len(report.files),
        "summaries": len(report.summaries),
        "duplicates_merged": report.duplicates,
        "without_citation": [
            {"month": s.entry.month, "title": s.entry.title, "source": s.sources[0]}
            for s in report.without_citation
        ],
        "topics": [
            {
                "month": s.entry.month,
                "title": s.entry.title,
                "page_topics": [t.slug for t in s.topics.page_topics],
                "suggested": [
                    {"topic": g.target.slug, **_guess_to_dict(g)} for g in s.topics.guesses
                ],
                "topics": [t.slug for t in s.topics.topics],
                "research": s.topics.research.slug if s.topics.research else None,
                "research_evidence": _guess_to_dict(s.topics.research_guess)
                if s.topics.research_guess
                else None,
                "fallback": s.topics.fallback,
            }
            for s in report.summaries
        ],
        "files": [
            {
                "month": f.month,
                "path": str(f.path),
                "action": f.action,
                "summaries": [s.entry.title for s in f.summaries],
                **({"text": f.text} if report.dry_run else {}),
            }
            for f in report.files
        ],
        "problems": [
            {"path": p.path, "line": p.line, "severity": p.severity, "message": p.message}
            for p in report.problems
        ],
    }


def _guess_to_dict(guess: Guess) -> dict:
    return {
        "score": guess.score,
        "evidence": [
            {"phrase": e.phrase, "field": e.field, "count": e.count, "points": e.points}
            for e in guess.evidence
        ],
    }
