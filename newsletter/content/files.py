"""Author operations on the issues folder: check, list, scaffold."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

from newsletter.content.model import Issue, Problem
from newsletter.content.parser import (
    PLACEHOLDERS,
    ParseResult,
    find_issue_files,
    issue_path,
    load_issue,
    read_issue_file,
)
from newsletter.errors import IssueNotFoundError, NewsletterError
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
