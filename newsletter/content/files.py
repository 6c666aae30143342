"""Author operations on the issues folder: check, list, scaffold."""

from __future__ import annotations

import os
import re
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from newsletter.content.model import Issue, Problem
from newsletter.content.parser import (
    FENCE_RE,
    META_LINE,
    PLACEHOLDERS,
    ParseResult,
    decode_issue_bytes,
    find_issue_files,
    issue_path,
    load_issue,
    parse_issue,
    read_issue_file,
)
from newsletter.content.taxonomy import load_taxonomy
from newsletter.errors import IssueFormatError, IssueNotFoundError, NewsletterError
from newsletter.rules.months import check_month


@dataclass(frozen=True)
class CheckedFile:
    """One file and what checking it found."""

    path: Path
    result: ParseResult


@dataclass(frozen=True)
class IssueInfo:
    """One line of ``issue list``: valid files carry their issue, invalid ones their errors."""

    path: Path
    month: str
    issue: Issue | None
    errors: int
    warnings: int


def check_issues(paths: list[Path] | None, issues_dir: Path) -> list[CheckedFile]:
    """Check the given files (default: every file of the issues folder)."""
    targets = paths if paths else find_issue_files(issues_dir)
    if not targets:
        raise IssueNotFoundError(
            f"no issue files in {issues_dir}",
            hint="create one with `newsletter issue new YYYY-MM`",
        )
    return [CheckedFile(p, read_issue_file(p)) for p in targets]


def list_issues(issues_dir: Path) -> list[IssueInfo]:
    """Every issue file of the folder, newest month first, valid or not."""
    out = []
    for path in find_issue_files(issues_dir):
        result = read_issue_file(path)
        month = result.issue.month if result.issue else path.stem
        out.append(IssueInfo(path, month, result.issue, len(result.errors), len(result.warnings)))
    return sorted(out, key=lambda i: i.month, reverse=True)


def get_issue(issues_dir: Path, month: str) -> Issue:
    """The valid issue of ``month`` (YYYY-MM or a path), or a clear error."""
    return load_issue(issue_path(issues_dir, month))


SCAFFOLD = """\
---
month: {month}
# subject: optional; without it the subject is built from the summary titles
# intro: optional, a short Markdown paragraph shown before the summaries
status: draft   # draft while writing; ready when it may be sent
---

<!--
How this file works (comments like this one are not part of the issue):

- Each summary starts with a '## ' title line.
- Directly under the title come 'Key: value' lines, up to the first blank line:
    Citation: APA reference with the year in parentheses (optional)
    Topics:   one or more topics separated by ';' (required; slugs or names,
              see `newsletter topics list`)
    Research: meta-analysis, systematic review, randomized controlled trial,
              naturalistic study, survey, qualitative study, narrative review
              or other (optional)
    Link:     https address of the article (optional)
- Then the summary in Markdown, then a '### Practice Implications' section.
- An issue has 1 to 4 summaries (2 or 3 is usual).
- The example text below is an error in `issue check` until you replace it.
- Check it with: newsletter issue check {month}
-->

## {title}
Citation: {citation} Journal, 12(3), 45-67.
Topics: Alliance and Therapeutic Relationship
Research: meta-analysis
Link: {link}

{summary}

### Practice Implications

{implications}
"""


# The skeleton's fields, in the order of PLACEHOLDERS.
_FIELDS = ("title", "citation", "link", "summary", "implications")


def new_issue_file(issues_dir: Path, month: str) -> Path:
    """Write a commented skeleton for ``month``; never overwrites an existing file."""
    check_month(month)
    issues_dir.mkdir(parents=True, exist_ok=True)
    path = issues_dir / f"{month}.md"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise NewsletterError(
            f"{path} already exists", hint="edit it, or delete it first to start over"
        ) from None
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(SCAFFOLD.format(month=month, **dict(zip(_FIELDS, PLACEHOLDERS, strict=True))))
    return path


def format_problem(problem: Problem) -> str:
    """One problem as printed by ``issue check`` (the hint on its own line)."""
    text = problem.format()
    if problem.hint:
        text += f"\n    hint: {problem.hint}"
    return text


class IssueLibrary:
    """The valid issue files of a folder, re-read only when a file changes.

    For long-running processes (the web pages): invalid files are left out (the author
    sees them in ``newsletter issue check``).
    """

    def __init__(self, issues_dir: Path) -> None:
        self.issues_dir = issues_dir
        self._lock = threading.Lock()
        self._stamp: tuple[tuple[str, int, int], ...] | None = None
        self._issues: dict[str, Issue] = {}

    def fingerprint(self) -> tuple[tuple[str, int, int], ...]:
        """Name, modification time and size of each issue file: changes with any edit."""
        if not self.issues_dir.is_dir():
            return ()
        out = []
        for p in sorted(self.issues_dir.glob("*.md")):
            try:
                st = p.stat()
            except OSError:
                continue
            out.append((p.name, st.st_mtime_ns, st.st_size))
        return tuple(out)

    def issues(self) -> dict[str, Issue]:
        """Valid issues by month."""
        stamp = self.fingerprint()
        with self._lock:
            if stamp != self._stamp:
                found: dict[str, Issue] = {}
                if self.issues_dir.is_dir():
                    for path in find_issue_files(self.issues_dir):
                        result = read_issue_file(path)
                        if result.issue is not None and not result.errors:
                            found[result.issue.month] = result.issue
                self._issues = found
                self._stamp = stamp
            return dict(self._issues)


# --- accepting the archive import's suggestions --------------------------------------

_SUMMARY_START = re.compile(r"^##(?!#)")


@dataclass(frozen=True)
class AcceptedFile:
    """One issue file whose suggested topics and research types are to be confirmed."""

    path: Path
    summaries: int  # summaries that had suggestions
    lines: int  # ``*-Suggested:`` lines accepted
    text: str | None = None  # the new text (None: nothing to change)

    def write(self) -> None:
        """Replace the file with the new text (in one step)."""
        if self.text is not None:
            _replace_file(self.path, self.text)


def accept_suggestions(path: Path) -> AcceptedFile:
    """:func:`plan_acceptance` of one file, written."""
    planned = plan_acceptance(path)
    planned.write()
    return planned


def plan_acceptance(path: Path) -> AcceptedFile:
    """Confirm every ``Topics-Suggested:`` and ``Research-Suggested:`` line of one file.

    ``Topics-Suggested:`` becomes ``Topics:`` (merged into the summary's ``Topics:`` line
    when it has one); ``Research-Suggested:`` becomes ``Research:`` (dropped when the
    summary already has a ``Research:`` line, which the author wrote). Nothing else of
    the file changes. The new text must parse without errors and give every summary the
    same topics as before (:class:`IssueFormatError` otherwise). Nothing is written here:
    :meth:`AcceptedFile.write` replaces the file in one step.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise IssueNotFoundError(f"no issue file {path}", hint="check the month or path") from None
    except OSError as exc:
        raise NewsletterError(f"{path}: cannot read: {exc.strerror}") from None
    text, problems = decode_issue_bytes(data, str(path))
    if text is None:
        raise IssueFormatError(problems)
    lines = text.splitlines(keepends=True)
    summaries = accepted = 0
    i = 0
    in_fence = False
    while i < len(lines):
        line = lines[i]
        if FENCE_RE.match(line):
            in_fence = not in_fence
        if in_fence or not _SUMMARY_START.match(line):
            i += 1
            continue
        end = i + 1
        while end < len(lines) and lines[end].strip():
            end += 1
        block, changed = _accept_block(lines[i + 1 : end])
        if changed:
            lines[i + 1 : end] = block
            summaries += 1
            accepted += changed
        i += 1 + len(block)
    if not accepted:
        return AcceptedFile(path, 0, 0)
    new_text = "".join(lines)
    before = parse_issue(text, str(path)).issue
    after = parse_issue(new_text, str(path))
    if after.errors or after.issue is None:
        raise IssueFormatError(after.problems)
    if before is not None and [s.topic_slugs for s in before.summaries] != [
        s.topic_slugs for s in after.issue.summaries
    ]:
        raise NewsletterError(
            f"{path}: accepting the suggestions would change the topics; nothing written",
            hint="rename the 'Topics-Suggested:' lines to 'Topics:' by hand",
        )
    return AcceptedFile(path, summaries, accepted, new_text)


def _accept_block(meta: list[str]) -> tuple[list[str], int]:
    """The metadata lines of one summary with its suggestions accepted, and how many."""
    keys: dict[str, int] = {}
    for k, line in enumerate(meta):
        m = META_LINE.match(line.strip())
        if m:
            keys.setdefault(m.group(1).strip().lower(), k)
    out = list(meta)
    drop: set[int] = set()
    changed = 0
    if "topics-suggested" in keys:
        k = keys["topics-suggested"]
        guessed = _value(meta[k])
        if "topics" in keys:
            t = keys["topics"]
            mine = _value(meta[t])
            known = {_topic_key(p) for p in mine.split(";")}
            extra = [p.strip() for p in guessed.split(";") if _topic_key(p) not in known]
            joined = "; ".join(x for x in [mine.strip(), *extra] if x)
            out[t] = f"Topics: {joined}{_ending(meta[t])}"
            drop.add(k)
        else:
            out[k] = f"Topics: {guessed.strip()}{_ending(meta[k])}"
        changed += 1
    if "research-suggested" in keys:
        k = keys["research-suggested"]
        if "research" in keys:
            drop.add(k)
        else:
            out[k] = f"Research: {_value(meta[k]).strip()}{_ending(meta[k])}"
        changed += 1
    return [line for k, line in enumerate(out) if k not in drop], changed


def _value(line: str) -> str:
    return line.split(":", 1)[1].strip()


def _ending(line: str) -> str:
    return line[len(line.rstrip("\r\n")) :]


def _topic_key(name: str) -> str:
    topic = load_taxonomy().find(name)
    return topic.slug if topic else " ".join(name.casefold().split())


def _replace_file(path: Path, text: str) -> None:
    """Write ``text`` beside ``path`` and rename it over, keeping the file's mode."""
    mode = path.stat().st_mode & 0o777
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as exc:
        raise NewsletterError(f"cannot write {path}: {exc.strerror}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
