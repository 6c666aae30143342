"""Read and check issue files (``issues/YYYY-MM.md``).

The parser never stops at the first mistake: it collects every :class:`Problem` of a file
with its line number, so the author fixes them all in one pass. :func:`parse_issue` returns
the problems and, when there are no errors, the :class:`Issue`; :func:`load_issue` raises
:class:`IssueFormatError` instead. No other exception escapes either, whatever the input.
"""

from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import re
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from newsletter.content.markdown import MAX_NESTING, iter_links, too_deep
from newsletter.content.model import (
    ISSUE_STATUSES,
    MAX_SUBJECT,
    Issue,
    Problem,
    ResearchType,
    Summary,
    Topic,
)
from newsletter.content.taxonomy import load_taxonomy, resolve_research_type, slugify
from newsletter.errors import (
    IssueFormatError,
    IssueNotFoundError,
    UnknownResearchTypeError,
    UnknownTopicError,
)
from newsletter.rules.months import is_month, looks_like_month

FILE_NAME_RE = re.compile(r"^\d{4}-\d{2}\.md$")
FRONT_KEYS = ("month", "subject", "intro", "status")
META_KEYS = ("citation", "topics", "topics-suggested", "research", "research-suggested", "link")
#: Lines the archive import writes for guesses; accepted by renaming them (see
#: :func:`newsletter.content.files.accept_suggestions`).
SUGGESTED_KEYS = {"topics-suggested": "topics", "research-suggested": "research"}
META_LINE = re.compile(r"^([A-Za-z][A-Za-z \-]*?)\s*:\s*(.*)$")
# APA puts the year in parentheses: (2025), (2025, March 3), (2025a), (n.d.), (in press).
CITATION_YEAR = re.compile(r"\((?:\d{4}[a-z]?(?:,[^)]*)?|n\.\s?d\.|in press)\)", re.IGNORECASE)
IMPLICATIONS_RE = re.compile(r"^###\s+practice\s+implications\s*:?\s*#*\s*$", re.IGNORECASE)
COMMENT_RE = re.compile(r"<!--.*?-->", re.DOTALL)
FENCE_RE = re.compile(r"^\s{0,3}(```|~~~)")
TITLE_CLOSING = re.compile(r"(?:^|\s)#+$")

#: The example text of the skeleton ``newsletter issue new`` writes
#: (:data:`newsletter.content.files.SCAFFOLD`), and what replaces each. Each is an error
#: until replaced, so an untouched skeleton can never be marked ready and sent.
PLACEHOLDERS = {
    "Title of the first summary": "the summary's title",
    "Author, A. A., & Author, B. B. (2025). Title of the article.": "the article's APA reference",
    "https://doi.org/10.1000/example": "the article's address, or delete the 'Link:' line",
    "What the study asked, whom it studied, what it found.": "the summary of the study",
    "What a clinician could do differently on Monday.": "the practice implications",
}

MIN_SUMMARIES, MAX_SUMMARIES = 1, 4
_REPORTED = object()  # a front matter value already reported as wrong
#: The largest issue file read (1 MB): a real issue is a few kilobytes, and a huge file
#: would take gigabytes to preview.
MAX_FILE_BYTES = 1024 * 1024
# C0 control characters other than tab, line feed and carriage return: invisible in an
# editor, and not allowed in the email's HTML (XML), where they break the build.
CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
MAX_CONTROL_REPORTS = 10  # lines with control characters reported one by one


@dataclass
class _Collector:
    path: str
    problems: list[Problem]

    def error(self, line: int, message: str, hint: str | None = None) -> None:
        self.problems.append(Problem(self.path, line, "error", message, hint))

    def warning(self, line: int, message: str, hint: str | None = None) -> None:
        self.problems.append(Problem(self.path, line, "warning", message, hint))


@dataclass
class ParseResult:
    """What :func:`parse_issue` found: the issue (None if any error) and every problem."""

    issue: Issue | None
    problems: list[Problem]

    @property
    def errors(self) -> list[Problem]:
        """The problems that stop the issue from being used."""
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        """The problems worth a look that do not stop the issue."""
        return [p for p in self.problems if p.severity == "warning"]


def decode_issue_bytes(data: bytes, path: str) -> tuple[str | None, list[Problem]]:
    """Decode UTF-8 (a BOM is tolerated); any other encoding is one clear error."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8"), []
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        byte = data[exc.start : exc.start + 1].hex()
        return None, [
            Problem(
                path,
                line,
                "error",
                f"file is not UTF-8 (byte 0x{byte} cannot be decoded)",
                "save the file as UTF-8 (in most editors: File > Save with Encoding > UTF-8)",
            )
        ]


def read_issue_file(path: Path) -> ParseResult:
    """Read and parse one issue file. An unreadable file is a problem, not an exception."""
    shown = str(path)
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        return ParseResult(None, [Problem(shown, 0, "error", "no such file")])
    except IsADirectoryError:
        return ParseResult(None, [Problem(shown, 0, "error", "is a directory, not a file")])
    except OSError as exc:
        return ParseResult(None, [Problem(shown, 0, "error", f"cannot read: {exc.strerror}")])
    if len(data) > MAX_FILE_BYTES:
        return ParseResult(
            None,
            [
                Problem(
                    shown,
                    1,
                    "error",
                    f"file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB "
                    f"({MAX_FILE_BYTES} bytes); not read",
                    "an issue file is a few kilobytes of text: is this the right file?",
                )
            ],
        )
    text, problems = decode_issue_bytes(data, shown)
    if text is None:
        return ParseResult(None, problems)
    return parse_issue(text, shown)


def load_issue(path: Path) -> Issue:
    """Read one issue file; :class:`IssueFormatError` listing every problem if invalid."""
    result = read_issue_file(path)
    if result.issue is None:
        if result.problems and result.problems[0].line == 0 and not path.exists():
            raise IssueNotFoundError(
                f"no issue file {path}",
                hint=f"create it with `newsletter issue new {path.stem}`",
            )
        raise IssueFormatError(result.problems)
    return result.issue


def issue_path(issues_dir: Path, month: str) -> Path:
    """The file of ``month`` in ``issues_dir``; accepts ``YYYY-MM`` or a path."""
    if month.endswith(".md") or "/" in month:
        return Path(month)
    if not looks_like_month(month):
        raise IssueNotFoundError(
            f"{month!r} is not a month", hint="write the month as YYYY-MM, e.g. 2026-12"
        )
    return issues_dir / f"{month}.md"


def find_issue_files(issues_dir: Path) -> list[Path]:
    """Every ``*.md`` file in the issues folder, oldest month first."""
    if not issues_dir.is_dir():
        raise IssueNotFoundError(
            f"no issues folder at {issues_dir}",
            hint="run the command from the project folder, or set issues_dir in newsletter.toml",
        )
    return sorted(p for p in issues_dir.glob("*.md") if p.is_file())


def parse_issue(text: str, path: str = "<issue>") -> ParseResult:
    """Parse the text of an issue file, collecting every problem with its line number."""
    out = _Collector(path, [])
    text = text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff")
    # Author comments are not content; blank them out but keep the line count.
    text = COMMENT_RE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    lines = text.split("\n")
    _check_control_characters(lines, out)
    _check_placeholders(lines, out)

    front, body_start = _split_front_matter(lines, out)
    month, status, subject, intro = _check_front_matter(front, path, out)
    summaries = _parse_body(lines, body_start, out, ready=status == "ready")

    if not summaries and not any(p.severity == "error" and p.line > 0 for p in out.problems):
        out.error(
            body_start + 1 if body_start < len(lines) else len(lines),
            "the issue has no summaries",
            "start each summary with a '## Title' line",
        )
    elif len(summaries) > MAX_SUMMARIES and status == "published":
        # Back issues imported from the archive are never sent, so the limit that keeps
        # variants few (2^k - 1) does not apply; keep every summary, flag it for a look.
        out.warning(
            summaries[MAX_SUMMARIES].line,
            f"{len(summaries)} summaries; only a published back issue may hold more than "
            f"{MAX_SUMMARIES}",
        )
    elif len(summaries) > MAX_SUMMARIES:
        out.error(
            summaries[MAX_SUMMARIES].line,
            f"{len(summaries)} summaries; an issue holds at most {MAX_SUMMARIES}",
            "move the extra summaries to next month's issue",
        )
    elif summaries and len(summaries) not in (2, 3) and status != "published":
        # A back issue holds what the blog published that month, one summary or five.
        out.warning(
            summaries[0].line,
            f"{len(summaries)} summar{'y' if len(summaries) == 1 else 'ies'}; "
            "issues usually have 2 or 3",
        )

    seen: dict[str, int] = {}
    for s in summaries:
        norm = " ".join(s.title.casefold().split())
        if norm in seen:
            out.error(s.line, f"duplicate title {s.title!r} (first at line {seen[norm]})")
        else:
            seen[norm] = s.line
    fixed = [
        _replace_key(s, key) for s, key in zip(summaries, summary_keys(summaries), strict=True)
    ]

    problems = sorted(out.problems, key=lambda p: (p.line, p.severity != "error"))
    if any(p.severity == "error" for p in problems) or month is None:
        return ParseResult(None, problems)
    issue = Issue(
        month=month,
        summaries=tuple(fixed),
        status=status,
        subject=subject,
        intro=intro,
        path=Path(path) if path and not path.startswith("<") else None,
    )
    return ParseResult(issue, problems)


def _check_control_characters(lines: list[str], out: _Collector) -> None:
    """One error per line holding a control character (up to a few, then a count)."""
    found = [(n, m) for n, line in enumerate(lines, 1) if (m := CONTROL_RE.search(line))]
    for n, match in found[:MAX_CONTROL_REPORTS]:
        out.error(
            n,
            f"control character U+{ord(match.group()):04X} at column {match.start() + 1}",
            "delete it (most editors do not show it); it would break the email's HTML",
        )
    if len(found) > MAX_CONTROL_REPORTS:
        n = found[MAX_CONTROL_REPORTS][0]
        out.error(
            n,
            f"{len(found) - MAX_CONTROL_REPORTS} more lines hold control characters",
            "is this a text file? save the issue as plain UTF-8 text",
        )


def _check_placeholders(lines: list[str], out: _Collector) -> None:
    """One error per line still holding the example text of ``issue new``'s skeleton."""
    for n, line in enumerate(lines, 1):
        for text, replacement in PLACEHOLDERS.items():
            if text in line:
                out.error(
                    n,
                    f"example text of the skeleton is still here: {text!r}",
                    f"replace it with {replacement}",
                )


def summary_keys(summaries: list[Summary] | tuple[Summary, ...]) -> list[str]:
    """The archive key of each summary: the slug of its title, which names its address.

    Two titles can make the same slug ("Sleep?" and "Sleep!", or two titles without a
    Latin letter). Those summaries, all of them, add a short hash of their own title, so
    that no key depends on the order of the summaries or on another summary's text:
    reordering an issue, or editing an earlier summary, leaves every address as it was.
    """
    counts: dict[str, int] = {}
    for s in summaries:
        counts[s.key] = counts.get(s.key, 0) + 1
    out = []
    for s in summaries:
        if counts[s.key] > 1:
            digest = hashlib.sha256(" ".join(s.title.split()).encode("utf-8")).hexdigest()
            out.append(f"{s.key}-{digest[:6]}")
        else:
            out.append(s.key)
    return out


def positional_keys(summaries: tuple[Summary, ...]) -> list[str]:
    """The keys older versions gave colliding slugs (``slug``, ``slug-2``, ... in file
    order), so that addresses mailed before the change can be redirected."""
    seen: dict[str, int] = {}
    out = []
    for s in summaries:
        base = re.sub(r"-[0-9a-f]{6}$", "", s.key) if s.key != slugify(s.title) else s.key
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.append(f"{base}-{n + 1}" if n else base)
    return out


def _replace_key(s: Summary, key: str) -> Summary:
    return s if s.key == key else replace(s, key=key)


def _split_front_matter(lines: list[str], out: _Collector) -> tuple[dict | None, int]:
    """Return the front matter (key -> (value, line)) and the index of the first body line.

    The front matter is None when it is missing or broken (that is reported here).
    """
    if not lines or lines[0].strip() != "---":
        out.error(
            1,
            "missing front matter",
            "begin the file with a '---' line, then 'month: YYYY-MM', then another '---' line",
        )
        return None, 0
    end = next((i for i in range(1, len(lines)) if lines[i].strip() in ("---", "...")), None)
    if end is None:
        out.error(1, "front matter is not closed", "add a '---' line after the front matter")
        return None, len(lines)
    source = "\n".join(lines[1:end])
    try:
        node = yaml.compose(source, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = (mark.line + 2) if mark is not None else 2
        problem = getattr(exc, "problem", None) or "invalid YAML"
        out.error(
            line,
            f"front matter is not valid YAML: {problem}",
            "values containing ': ' or starting with a quote must be quoted as a whole",
        )
        return None, end + 1
    except Exception as exc:  # pyyaml raises a few non-YAMLError errors on odd input
        out.error(2, f"front matter is not valid YAML: {exc}")
        return None, end + 1
    if node is None:
        return {}, end + 1
    if not isinstance(node, yaml.MappingNode):
        out.error(2, "front matter must be 'key: value' lines")
        return None, end + 1
    front: dict[str, tuple[object, int]] = {}
    for key_node, value_node in node.value:
        line = key_node.start_mark.line + 2
        key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
        if not isinstance(key, str):
            out.error(line, "front matter keys must be plain words")
            continue
        if key in front:
            out.error(line, f"{key!r} is given twice in the front matter")
            continue
        if not isinstance(value_node, yaml.ScalarNode):
            # Every key takes one value. A list or mapping is never built: YAML aliases
            # can make one exponentially large (the "billion laughs").
            out.error(
                line,
                f"{key!r} must be a single value, not a list or mapping",
                "write it as 'key: value' on one line; quote a value holding ': ', '[' or '{'",
            )
            front[key.lower()] = (_REPORTED, line)
            continue
        try:
            value = yaml.SafeLoader(source).construct_object(value_node, deep=True)
        except Exception:
            value = value_node.value
        if key == "month":
            value = value_node.value  # keep "2026-12" as text whatever YAML thinks of it
        front[key.lower()] = (value, line)
    return front, end + 1


def _check_front_matter(
    front: dict | None, path: str, out: _Collector
) -> tuple[str | None, str, str | None, str | None]:
    for key, (_, line) in (front or {}).items():
        if key not in FRONT_KEYS:
            close = difflib.get_close_matches(key, FRONT_KEYS, n=1)
            out.error(
                line,
                f"unknown front matter key {key!r}",
                f"did you mean {close[0]!r}?"
                if close
                else "allowed keys: " + ", ".join(FRONT_KEYS),
            )

    month: str | None = None
    if front is None:
        front = {}  # already reported as broken front matter
    elif "month" not in front:
        out.error(1, "front matter has no 'month'", "add a line 'month: YYYY-MM'")
    elif front["month"][0] is not _REPORTED:
        raw, line = front["month"]
        value = str(raw).strip() if raw is not None else ""
        if not is_month(value):
            out.error(line, f"month {value!r} is not a valid month", "write it as YYYY-MM")
        else:
            month = value
            name = Path(path).name
            if FILE_NAME_RE.match(name) and name[:-3] != month:
                out.error(
                    line,
                    f"month {month} does not match the file name {name}",
                    f"rename the file to {month}.md or fix the month",
                )
    name = Path(path).name
    if not path.startswith("<") and not FILE_NAME_RE.match(name):
        out.warning(1, f"file name {name!r} is not YYYY-MM.md")

    status = "draft"
    if "status" in front and front["status"][0] is not _REPORTED:
        raw, line = front["status"]
        value = str(raw).strip().lower() if raw is not None else ""
        if value not in ISSUE_STATUSES:
            out.error(line, f"status {raw!r} is not one of: " + ", ".join(ISSUE_STATUSES))
        else:
            status = value

    subject = _front_text(front, "subject", out)
    if subject is not None:
        if "\n" in subject:
            out.error(front["subject"][1], "subject must be a single line")
        elif len(subject) > MAX_SUBJECT:
            out.warning(
                front["subject"][1],
                f"subject is {len(subject)} characters; mail clients cut it after about "
                f"{MAX_SUBJECT}",
            )
    intro = _front_text(front, "intro", out)
    if intro is not None:
        _check_markdown(intro, front["intro"][1], out)
    return month, status, subject, intro


def _front_text(front: dict, key: str, out: _Collector) -> str | None:
    if key not in front or front[key][0] is _REPORTED:
        return None
    raw, line = front[key]
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        out.error(line, f"{key} is empty", f"remove the '{key}:' line or write something")
        return None
    if isinstance(raw, dt.date | int | float | bool):
        raw = str(raw)
    if not isinstance(raw, str):
        out.error(line, f"{key} must be text", "quote it if it contains ': '")
        return None
    return raw.strip()


def _parse_body(lines: list[str], start: int, out: _Collector, *, ready: bool) -> list[Summary]:
    """Split the body into summaries at '## ' lines and parse each."""
    blocks: list[tuple[int, list[tuple[int, str]]]] = []  # (title line index, body lines)
    in_fence = False
    stray: int | None = None
    for i in range(start, len(lines)):
        line = lines[i]
        if FENCE_RE.match(line):
            in_fence = not in_fence
        if not in_fence and re.match(r"^##(?!#)", line):
            blocks.append((i, []))
            continue
        if not in_fence and re.match(r"^#(?!#)", line):
            out.error(
                i + 1,
                "a '# ' heading is not part of the format",
                "start summaries with '## Title'; put the issue's title in 'subject:'",
            )
            continue
        if blocks:
            blocks[-1][1].append((i + 1, line))
        elif line.strip() and stray is None:
            stray = i + 1
    if stray is not None:
        out.error(
            stray,
            "text before the first summary",
            "put an introduction in the front matter as 'intro:', or start a summary with '## '",
        )
    return [
        s for s in (_parse_summary(lines[i], i + 1, body, out, ready) for i, body in blocks) if s
    ]


def _parse_summary(
    title_line: str, lineno: int, body: list[tuple[int, str]], out: _Collector, ready: bool
) -> Summary | None:
    # As in CommonMark, a closing run of "#" after a space is not part of the title; a
    # "#" inside a word ("C#") is.
    title = TITLE_CLOSING.sub("", title_line[2:].strip()).strip()
    ok = True
    if not title:
        out.error(lineno, "summary has no title", "write the title after '## '")
        ok = False

    # Metadata: 'Key: value' lines directly under the title, up to the first blank line.
    meta: dict[str, tuple[str, int]] = {}
    pos = 0
    while pos < len(body) and body[pos][1].strip():
        n, line = body[pos]
        m = META_LINE.match(line.strip())
        key = m.group(1).strip().lower() if m else None
        if m is None or key not in META_KEYS:
            shown = m.group(1).strip() if m else line.strip()[:30]
            close = difflib.get_close_matches(key or "", META_KEYS, n=1) if key else []
            out.error(
                n,
                f"unknown metadata key {shown!r}" if m else f"expected 'Key: value', got {shown!r}",
                f"did you mean '{close[0].title()}:'?"
                if close
                else "metadata lines are Citation:, Topics:, Research: and Link: (and the "
                "archive import's Topics-Suggested: and Research-Suggested:), followed by a "
                "blank line before the summary text",
            )
            ok = False
        elif key in meta:
            out.error(n, f"{m.group(1).strip()!r} is given twice (first at line {meta[key][1]})")
            ok = False
        else:
            meta[key] = (m.group(2).strip(), n)
        pos += 1

    topics: list[Topic] = []
    suggested: list[Topic] = []
    if "topics" not in meta and "topics-suggested" not in meta:
        out.error(
            lineno,
            f"summary {title!r} has no 'Topics:' line",
            "add e.g. 'Topics: Empathy; Therapist Factors' under the title",
        )
        ok = False
    for key, into in (("topics", topics), ("topics-suggested", suggested)):
        if key in meta:
            ok = _parse_topics(meta[key], key, topics + suggested, into, out) and ok
    if suggested:
        _report_suggested(meta["topics-suggested"][1], "topics", suggested, ready, out)

    research = None
    research_suggested = False
    if "research" in meta and "research-suggested" in meta:
        out.error(
            meta["research-suggested"][1],
            f"both 'Research:' (line {meta['research'][1]}) and 'Research-Suggested:'",
            "keep one: delete the suggestion, or delete 'Research:' and rename the "
            "suggestion to 'Research:'",
        )
        ok = False
    for key in ("research", "research-suggested"):
        if key in meta:
            value, n = meta[key]
            try:
                research = resolve_research_type(value)
            except UnknownResearchTypeError as exc:
                out.error(n, exc.message, exc.hint)
                ok = False
                continue
            if key == "research-suggested":
                research_suggested = True
                _report_suggested(n, "research type", [research], ready, out)

    citation = None
    if "citation" in meta:
        citation, n = meta["citation"]
        if not citation:
            out.error(n, "'Citation:' is empty", "remove the line or write the reference")
            ok = False
            citation = None
        elif not CITATION_YEAR.search(citation):
            out.error(
                n,
                "citation has no year in parentheses",
                "APA style: Author, A. A. (2025). Title. Journal, 12(3), 45-67.",
            )
            ok = False

    link = None
    if "link" in meta:
        link, n = meta["link"]
        if not _is_web_url(link):
            out.error(n, f"link {link!r} is not an http(s) address", "e.g. https://doi.org/...")
            ok = False
            link = None

    # Body up to '### Practice Implications', then the implications.
    rest = body[pos:]
    split = next((k for k, (_, line) in enumerate(rest) if IMPLICATIONS_RE.match(line)), None)
    if split is None:
        out.error(
            lineno,
            f"summary {title!r} has no '### Practice Implications' section",
            "add a '### Practice Implications' heading followed by its paragraphs",
        )
        ok = False
        text_lines, impl_lines = rest, []
    else:
        text_lines, impl_lines = rest[:split], rest[split + 1 :]
        more = [n for n, line in impl_lines if IMPLICATIONS_RE.match(line)]
        if more:
            out.error(more[0], "a second 'Practice Implications' section in the same summary")
            ok = False
    body_md = _join(text_lines)
    impl_md = _join(impl_lines)
    if not body_md:
        out.error(lineno, f"summary {title!r} has no text", "write the summary under the metadata")
        ok = False
    if split is not None and not impl_md:
        out.error(rest[split][0], "'Practice Implications' section is empty")
        ok = False
    _check_markdown(body_md, _first_line(text_lines, lineno), out)
    if split is not None:
        _check_markdown(impl_md, _first_line(impl_lines, rest[split][0]), out)

    if not ok:
        return Summary(
            key=slugify(title) or "summary",
            title=title,
            topics=(),
            body="",
            implications="",
            line=lineno,
        )
    return Summary(
        key=slugify(title) or "summary",
        title=title,
        topics=tuple(topics + suggested),
        body=body_md,
        implications=impl_md,
        citation=citation,
        research=research,
        link=link,
        line=lineno,
        suggested_topics=tuple(suggested),
        research_suggested=research_suggested,
    )


def _parse_topics(
    meta: tuple[str, int], key: str, seen: list[Topic], into: list[Topic], out: _Collector
) -> bool:
    """Read one ``Topics:`` or ``Topics-Suggested:`` line into ``into``; False on an error.

    A topic already in ``seen`` (either line) is reported and kept once.
    """
    value, n = meta
    name = "Topics-Suggested" if key == "topics-suggested" else "Topics"
    parts = [p.strip() for p in value.split(";")]
    ok = True
    if not any(parts):
        out.error(n, f"'{name}:' is empty", "name at least one topic")
        ok = False
    taxonomy = load_taxonomy()
    for part in parts:
        if not part:
            continue
        try:
            topic = taxonomy.resolve(part)
        except UnknownTopicError as exc:
            out.error(n, exc.message, f"{exc.hint} (topics are separated by ';')")
            ok = False
            continue
        if topic in seen or topic in into:
            out.warning(n, f"topic {topic.name!r} is listed twice")
        else:
            into.append(topic)
    return ok


def _report_suggested(
    line: int, what: str, guesses: list[Topic] | list[ResearchType], ready: bool, out: _Collector
) -> None:
    """A ``*-Suggested:`` line: a warning until the author confirms it; an error in a
    ready issue, which would be sent to subscribers chosen by guesses."""
    names = "; ".join(g.name for g in guesses)
    key = "Topics" if what == "topics" else "Research"
    hint = (
        f"check the {what} against the summary, then rename '{key}-Suggested:' to '{key}:'"
        + (" (or add them to the 'Topics:' line)" if what == "topics" else "")
        + f"; `newsletter issue accept-suggestions {out.path}` accepts every suggestion "
        "of the file"
    )
    if ready:
        out.error(line, f"suggested {what} not confirmed in a ready issue: {names}", hint)
    else:
        out.warning(line, f"{what} suggested by the archive import, not confirmed: {names}", hint)


def _first_line(lines: list[tuple[int, str]], default: int) -> int:
    """The number of the first non-blank line (what Markdown offsets count from)."""
    return next((n for n, line in lines if line.strip()), default)


def _join(lines: list[tuple[int, str]]) -> str:
    return "\n".join(line for _, line in lines).strip("\n").strip()


def _is_web_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc) and " " not in value


def _check_markdown(md: str, first_line: int, out: _Collector) -> None:
    """Markdown text: nested no deeper than the renderer goes; every link http(s) or
    mailto."""
    if not md:
        return
    deep = too_deep(md)
    if deep is not None:
        out.error(
            first_line + deep,
            f"block quotes or lists nested too deep (at most {MAX_NESTING} levels, a list "
            "counting two); the text from here on would be left out of the email",
            "use fewer '>' or fewer levels of list indentation",
        )
    for offset, href in iter_links(md):
        if href.startswith("mailto:") and "@" in href:
            continue
        if not _is_web_url(href):
            out.error(
                first_line + offset,
                f"link {href!r} is not an http(s) address",
                "links must be absolute, e.g. https://doi.org/...",
            )
