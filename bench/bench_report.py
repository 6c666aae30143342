"""How long the reports page takes for a store with a year of history.

    .venv/bin/python bench/bench_report.py [--people 150] [--database URL] [--runs 3]

1. A fresh SQLite store in a temporary folder (or ``--database URL``, an empty migrated
   store) gets a year of history through the real services: the generator of the tests
   (``tests/support/history.py``): ``--people`` people, 12 monthly sends to the file
   outbox, unsubscribes, pauses, topic removals, bounces and sign-ups spread over it.
2. ``reports.build`` (every figure) and ``reports.write_html`` (the figures and the page
   with its seven SVG charts) run ``--runs`` times each; the best time of each is printed
   in seconds, with the page's size.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=150)
    parser.add_argument("--database", default=None, help="an empty, migrated store")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    from newsletter.services import App, reports
    from newsletter.store import upgrade_database
    from tests.support.history import END, make_history

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        url = args.database or f"sqlite:///{folder / 'store.db'}"
        if args.database is None:
            upgrade_database(url)
        started = time.perf_counter()
        history = make_history(folder / "project", url, people=args.people)
        made = time.perf_counter() - started
        print(f"history: {args.people} people, 12 sends, made in {made:.1f} s")
        best_build = best_page = float("inf")
        page = folder / "report.html"
        with App(history.settings, clock=lambda: END) as app:  # type: ignore[arg-type]
            for _ in range(args.runs):
                t = time.perf_counter()
                reports.build(app)
                best_build = min(best_build, time.perf_counter() - t)
                t = time.perf_counter()
                reports.write_html(app, page)
                best_page = min(best_page, time.perf_counter() - t)
        print(f"reports.build:      {best_build:.3f} s")
        print(f"reports.write_html: {best_page:.3f} s ({page.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
