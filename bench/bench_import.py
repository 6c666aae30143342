"""Benchmark: import generated rows into a fresh store, against the database's own loader.

    .venv/bin/python bench/bench_import.py                 # SQLite in a temporary folder
    .venv/bin/python bench/bench_import.py --postgres      # a scratch database on the
        local server (NEWSLETTER_TEST_POSTGRES_URL), dropped afterwards
    .venv/bin/python bench/bench_import.py --rows 1000000

The import runs in a child process (so that its peak memory is its own, read with
``os.wait4``) and times the service call only. In the same run the reference loads the
same CSV with the database's bulk loader into a plain table: ``sqlite3 FILE '.import
--csv ...'`` (Debian's ``sqlite3``) or PostgreSQL's ``COPY ... FROM STDIN`` (through
psycopg). Prints both times, their ratio and the import's peak memory.

Targets (issue 14, goal 9): at most 4 x the reference, and at most 300 MB of memory at
1,000,000 rows.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

TOPICS = ["CBT", "Alliance", "Attachment; Empathy", "Training", "all", "Dropout; Termination", ""]
TARGET_RATIO = 4.0
TARGET_MB = 300.0
PG_SERVER = os.environ.get(
    "NEWSLETTER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


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


# --- the import (child process) ----------------------------------------------------------


def child(url: str, csv_path: Path) -> None:
    """Import ``csv_path`` into the migrated store at ``url``; print the result as JSON."""
    from newsletter.config import load_settings
    from newsletter.services import App, imports, subscribers

    with App(load_settings(overrides={"database_url": url}, environ={})) as app:
        start = time.perf_counter()
        report = imports.import_subscribers(app, csv_path)
        elapsed = time.perf_counter() - start
        assert not report.errors, report.errors[:3]
        assert subscribers.stats(app).total == report.added
    print(json.dumps({"seconds": elapsed, "added": report.added}))


def run_import(url: str, csv_path: Path) -> tuple[float, int, float]:
    """(seconds, rows added, peak resident MB) of an import in a child process."""
    from newsletter.services.setup import upgrade_store

    upgrade_store(url)
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", url, str(csv_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    out = proc.stdout.read()
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"the import failed (exit {proc.returncode})")
    result = json.loads(out)
    return result["seconds"], result["added"], usage.ru_maxrss / 1024  # KB on Linux


# --- the references ----------------------------------------------------------------------


def sqlite_reference(folder: Path, csv_path: Path) -> float:
    """Seconds for ``sqlite3 .import --csv`` of the same file into a new plain table."""
    if shutil.which("sqlite3") is None:
        raise SystemExit("the reference needs the sqlite3 command: apt-get install -y sqlite3")
    db = folder / "reference.db"
    # The same journal as the store (WAL, synchronous NORMAL), so only the loader differs.
    setup = "PRAGMA journal_mode=WAL;\nPRAGMA synchronous=NORMAL;\n"
    subprocess.run(["sqlite3", str(db)], input=setup, text=True, check=True, capture_output=True)
    start = time.perf_counter()
    subprocess.run(
        ["sqlite3", str(db), f".import --csv {csv_path} reference"], check=True, capture_output=True
    )
    return time.perf_counter() - start


def postgres_reference(url: str, csv_path: Path) -> float:
    """Seconds for ``COPY ... FROM STDIN (FORMAT csv, HEADER)`` into a new plain table."""
    import psycopg
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    with psycopg.connect(
        host=parsed.host,
        port=parsed.port,
        user=parsed.username,
        password=parsed.password,
        dbname=parsed.database,
    ) as conn:
        conn.execute("CREATE TABLE reference (email text, name text, topics text, status text)")
        conn.commit()
        start = time.perf_counter()
        with (
            conn.cursor() as cur,
            cur.copy("COPY reference FROM STDIN (FORMAT csv, HEADER)") as copy,
            csv_path.open("rb") as fh,
        ):
            while block := fh.read(1 << 20):
                copy.write(block)
        conn.commit()
        elapsed = time.perf_counter() - start
        conn.execute("DROP TABLE reference")
        conn.commit()
    return elapsed


# --- main --------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--child", nargs=2, metavar=("URL", "CSV"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        csv_path = folder / "bench.csv"
        write_csv(csv_path, args.rows)
        if not args.postgres:
            elapsed, added, peak_mb = run_import(f"sqlite:///{folder}/newsletter.db", csv_path)
            reference = sqlite_reference(folder, csv_path)
            label, ref_label = "SQLite", "sqlite3 .import"
        else:
            from sqlalchemy import create_engine, text

            from newsletter.store import normalise_url

            server = normalise_url(PG_SERVER)
            name = f"newsletter_bench_{uuid.uuid4().hex[:10]}"
            admin = create_engine(server, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            try:
                url = server.set(database=name).render_as_string(hide_password=False)
                elapsed, added, peak_mb = run_import(url, csv_path)
                reference = postgres_reference(url, csv_path)
            finally:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                admin.dispose()
            label, ref_label = "PostgreSQL", "COPY"
    ratio = elapsed / reference
    print(
        f"import {added} rows into {label}: {elapsed:.2f} s, {added / elapsed:,.0f} rows/s, "
        f"peak memory {peak_mb:.0f} MB"
    )
    print(f"reference ({ref_label} of the same file): {reference:.2f} s")
    memory = (
        f"; memory target <= {TARGET_MB:.0f} MB at 1M rows: "
        f"{'met' if peak_mb <= TARGET_MB else 'MISSED'}"
        if args.rows >= 1_000_000
        else ""
    )
    print(
        f"ratio {ratio:.1f} x (target <= {TARGET_RATIO:.0f} x: "
        f"{'met' if ratio <= TARGET_RATIO else 'MISSED'}){memory}"
    )


if __name__ == "__main__":
    main()
