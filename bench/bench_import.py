"""Benchmark: import generated rows into a fresh store, against the database's own loader.

    .venv/bin/python bench/bench_import.py                 # SQLite in a temporary folder
    .venv/bin/python bench/bench_import.py --postgres      # a scratch database on the
        local server (NEWSLETTER_TEST_POSTGRES_URL), dropped afterwards
    .venv/bin/python bench/bench_import.py --rows 1000000

The import runs in a child process (so that its peak memory is its own, read with
``os.wait4``) and times the service call only. In the same run the reference loads the
same CSV with the database's bulk loader into a plain table: ``sqlite3 FILE '.import
--csv ...'`` (Debian's ``sqlite3``) or PostgreSQL's ``COPY ... FROM STDIN`` (through
psycopg). Prints both times, their ratio and the import's peak memory, and the CPU
seconds each used (this process's and, on PostgreSQL, the server backend's, read from
``/proc``): on a busy machine the wall-clock times swing with the load, the CPU seconds
much less.

Targets (issue 14, goal 9): at most 4 x the reference, and at most 300 MB of memory at
1,000,000 rows.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
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


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a local process has used so far, from ``/proc``."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def backends_cpu(url: str) -> dict[int, float]:
    """CPU seconds of each PostgreSQL backend connected to ``url``'s database (a local
    server only; an empty dict for SQLite)."""
    if not url.startswith("postgresql"):
        return {}
    import psycopg
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    with psycopg.connect(
        host=parsed.host, port=parsed.port, user=parsed.username, dbname=parsed.database
    ) as conn:
        pids = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        ).fetchall()
    return {pid: process_cpu(pid) for (pid,) in pids}


def child(url: str, csv_path: Path) -> None:
    """Import ``csv_path`` into the migrated store at ``url``; print the result as JSON."""
    from newsletter.config import load_settings
    from newsletter.services import App, imports, subscribers

    with App(load_settings(overrides={"database_url": url}, environ={})) as app:
        server_before = backends_cpu(url)
        cpu = time.process_time()
        start = time.perf_counter()
        report = imports.import_subscribers(app, csv_path)
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu
        # The pool keeps the import's connection open until the app closes.
        server = sum(t - server_before.get(pid, 0.0) for pid, t in backends_cpu(url).items())
        assert not report.errors, report.errors[:3]
        assert subscribers.stats(app).total == report.added
    print(json.dumps({"seconds": elapsed, "added": report.added, "cpu": [cpu, server]}))


def run_import(url: str, csv_path: Path) -> tuple[float, int, float, list[float]]:
    """(seconds, rows added, peak resident MB, [CPU seconds of the process, of the
    server]) of an import in a child process."""
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
    return result["seconds"], result["added"], usage.ru_maxrss / 1024, result["cpu"]  # KB


# --- the references ----------------------------------------------------------------------


def sqlite_reference(folder: Path, csv_path: Path) -> tuple[float, float]:
    """(seconds, CPU seconds) of ``sqlite3 .import --csv`` of the same file into a new
    plain table."""
    if shutil.which("sqlite3") is None:
        raise SystemExit("the reference needs the sqlite3 command: apt-get install -y sqlite3")
    db = folder / "reference.db"
    # The same journal as the store (WAL, synchronous NORMAL), so only the loader differs.
    setup = "PRAGMA journal_mode=WAL;\nPRAGMA synchronous=NORMAL;\n"
    subprocess.run(["sqlite3", str(db)], input=setup, text=True, check=True, capture_output=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(
        ["sqlite3", str(db), f".import --csv {csv_path} reference"], check=True, capture_output=True
    )
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return elapsed, cpu


def postgres_reference(url: str, csv_path: Path) -> tuple[float, float]:
    """(seconds, CPU seconds of this process and the server backend) of ``COPY ... FROM
    STDIN (FORMAT csv, HEADER)`` into a new plain table."""
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
        backend = conn.info.backend_pid
        cpu = time.process_time() + process_cpu(backend)
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
        cpu = time.process_time() + process_cpu(backend) - cpu
        conn.execute("DROP TABLE reference")
        conn.commit()
    return elapsed, cpu


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
            elapsed, added, peak_mb, cpu = run_import(f"sqlite:///{folder}/newsletter.db", csv_path)
            reference, ref_cpu = sqlite_reference(folder, csv_path)
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
                elapsed, added, peak_mb, cpu = run_import(url, csv_path)
                reference, ref_cpu = postgres_reference(url, csv_path)
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
    total_cpu = sum(cpu)
    print(
        f"CPU seconds (process + server backend): import {total_cpu:.2f} "
        f"({cpu[0]:.2f} + {cpu[1]:.2f}), reference {ref_cpu:.2f}, "
        f"ratio {total_cpu / max(ref_cpu, 0.01):.1f} x"
    )
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
