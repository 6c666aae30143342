"""Which issues the public may see, and the summaries a welcome email shows.

An issue is public when it was sent (its send is ``sending`` or ``done`` in the ledger)
or is a back issue imported as ``status: published``. Drafts, ready-but-unsent issues
and invalid files never appear.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from newsletter.content.model import Issue, Summary

if TYPE_CHECKING:
    from newsletter.store.db import Store

SENT_STATUSES = ("sending", "done")


@dataclass(frozen=True)
class ArchiveEntry:
    """One public issue with the summaries that pass the current filter."""

    issue: Issue
    summaries: tuple[Summary, ...]


class IssueLibrary:
    """The valid issue files of a folder, re-read only when a file changes."""

    def __init__(self, issues_dir: Path) -> None:
        self.issues_dir = issues_dir
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._issues: dict[str, Issue] = {}

    def _fingerprint(self) -> tuple:
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
        """Valid issues by month (invalid files are left out: the author sees them in
        ``newsletter issue check``)."""
        from newsletter.content.parser import find_issue_files, read_issue_file

        stamp = self._fingerprint()
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


def sent_months(store: Store) -> set[str]:
    """Months whose send has started or finished."""
    from newsletter.store import ledger

    return {s.month for s in ledger.list_sends(store) if s.status in SENT_STATUSES}


def public_issues(library: IssueLibrary, store: Store | None) -> list[Issue]:
    """Published or sent issues, newest first."""
    sent = sent_months(store) if store is not None else set()
    return sorted(
        (i for i in library.issues().values() if i.status == "published" or i.month in sent),
        key=lambda i: i.month,
        reverse=True,
    )


def filter_archive(
    issues: Iterable[Issue], topic: str | None = None, research: str | None = None
) -> list[ArchiveEntry]:
    """The issues with at least one summary on ``topic`` and of type ``research``."""
    out = []
    for issue in issues:
        chosen = tuple(
            s
            for s in issue.summaries
            if (topic is None or topic in s.topic_slugs)
            and (research is None or (s.research is not None and s.research.slug == research))
        )
        if chosen:
            out.append(ArchiveEntry(issue, chosen))
    return out


def recent_summaries(
    issues: Iterable[Issue], topics: Iterable[str], all_topics: bool, limit: int = 3
) -> list[tuple[Issue, Summary]]:
    """The newest ``limit`` summaries of past issues on a subscriber's topics."""
    wanted = set(topics)
    out: list[tuple[Issue, Summary]] = []
    for issue in sorted(issues, key=lambda i: i.month, reverse=True):
        for s in issue.summaries:
            if all_topics or s.topic_slugs & wanted:
                out.append((issue, s))
                if len(out) >= limit:
                    return out
    return out
