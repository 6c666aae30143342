"""Benchmark: import a synthetic twelve-year archive (144 months, 3 summaries each).

Builds two pages from the realistic fixture text (the second repeats half of the first,
to exercise merging), then times ``import_archive`` into a temporary folder.

Run: .venv/bin/python bench/bench_archive_import.py
"""

from __future__ import annotations

import calendar
import tempfile
import time
from pathlib import Path

from newsletter.importers.archive import import_archive

HEADER = (
    "A blog about research.\nThis month...\nTeaser.\nType of Research\nTopics\n"
    "- ALL Topics (clear)\n"
)
SUMMARY = """{title} Number {n}
Lee, K., & Ortiz, M. ({year}). Session feedback. Journal of Research, 41(2), 101-115.
Trainee therapists who saw weekly alliance scores noticed ruptures sooner, in a randomized trial.
Clients rated the alliance higher by the sixth session, and fewer of them dropped out.
Practice Implications
Supervisors could build brief alliance checks into routine supervision.
"""
TITLES = (
    "Feedback Helps Trainees",
    "Group Therapy for Late-Life Depression",
    "Empathy in Brief Therapy",
)


def build_page(months: list[tuple[int, int]]) -> str:
    """A page with three summaries for each (year, month)."""
    parts = [HEADER]
    for year, month in months:
        parts.append(f"\n{calendar.month_name[month]} {year}\n")
        for k, title in enumerate(TITLES):
            parts.append(SUMMARY.format(title=title, n=year * 100 + month * 10 + k, year=year))
    return "".join(parts)


def main() -> None:
    months = [(y, m) for y in range(2024, 2012, -1) for m in range(12, 0, -1)]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "all.txt").write_text(build_page(months), "utf-8")
        (root / "half.txt").write_text(build_page(months[::2]), "utf-8")
        start = time.perf_counter()
        report = import_archive(
            [(root / "all.txt", None), (root / "half.txt", "alliance")], root / "issues"
        )
        elapsed = time.perf_counter() - start
        lines = sum(1 for p in ("all.txt", "half.txt") for _ in (root / p).open())
        print(
            f"{len(report.pages)} pages, {lines} lines, {len(report.files)} months, "
            f"{len(report.summaries)} summaries, {report.duplicates} duplicates merged, "
            f"{len(report.files_with('write'))} files written, {len(report.problems)} problems: "
            f"{elapsed:.2f} s"
        )


if __name__ == "__main__":
    main()
