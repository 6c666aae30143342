"""Benchmark: import 100,000 generated rows into a fresh store; prints the seconds.

Target: under 10 s on SQLite. Usage:

    .venv/bin/python bench/bench_import.py                 # SQLite in a temporary folder
    .venv/bin/python bench/bench_import.py --postgres      # a scratch database on the
        local server (NEWSLETTER_TEST_POSTGRES_URL), dropped afterwards
    .venv/bin/python bench/bench_import.py --rows 20000
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import tempfile
import time
import uuid
from pathlib import Path

TOPICS = ["CBT", "Alliance", "Attachment; Empathy", "Training", "all", "Dropout; Termination", ""]
TARGET_SECONDS = 10.0


def write_csv(path: Path, rows: int) -> None:
    """A realistic list: names, a mix of topic choices, a few paused people."""
    rng = random.Random(1)
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["email", "name", "topics", "status"])
        for i in range(rows):
            writer.writerow(
                [
                    f"Reader.{i}@Example{i % 97}.org",
                    f"Reader Number {i}",
                    rng.choice(TOPICS),
                    "paused" if i % 50 == 0 else "active",
                ]
            )


def run(url: str, csv_path: Path) -> tuple[float, int]:
    from newsletter.config import load_settings
    from newsletter.services import App, imports, subscribers
    from newsletter.services.setup import upgrade_store

    upgrade_store(url)
    with App(load_settings(overrides={"database_url": url}, environ={})) as app:
        start = time.perf_counter()
        report = imports.import_subscribers(app, csv_path)
        elapsed = time.perf_counter() - start
        assert not report.errors, report.errors[:3]
        assert subscribers.stats(app).total == report.added
    return elapsed, report.added


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        csv_path = Path(tmp) / "bench.csv"
        write_csv(csv_path, args.rows)
        if not args.postgres:
            elapsed, added = run(f"sqlite:///{tmp}/newsletter.db", csv_path)
            label = "SQLite"
        else:
            from sqlalchemy import create_engine, text

            from newsletter.store import normalise_url

            server = normalise_url(
                os.environ.get(
                    "NEWSLETTER_TEST_POSTGRES_URL",
                    "postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
                )
            )
            name = f"newsletter_bench_{uuid.uuid4().hex[:10]}"
            admin = create_engine(server, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            try:
                url = server.set(database=name).render_as_string(hide_password=False)
                elapsed, added = run(url, csv_path)
            finally:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                admin.dispose()
            label = "PostgreSQL"
    verdict = (
        ""
        if args.postgres
        else (
            f" (target < {TARGET_SECONDS:.0f} s: {'met' if elapsed < TARGET_SECONDS else 'MISSED'})"
        )
    )
    print(
        f"import {added} rows into {label}: {elapsed:.2f} s, {added / elapsed:,.0f} rows/s{verdict}"
    )


if __name__ == "__main__":
    main()
