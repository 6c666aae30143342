"""The public archive under load, against the same waitress serving the page as a file.

    .venv/bin/python bench/bench_archive.py [--subscribers 30000] [--back-issues 120]
                                            [--connections 16] [--seconds 10]

1. A fresh SQLite project (or ``--database URL``) with ``--back-issues`` published back
   issues (copies of the samples, one a month going back), ``--subscribers`` people (CSV
   import) and one sent issue whose ledger holds a delivery row for each of them (planned
   by the service, then marked sent in one UPDATE, so a 1M-row ledger takes a minute, not
   a real send).
2. A real ``newsletter serve`` process; wrk (Debian's ``wrk``) requests ``/archive``,
   ``/archive?topic=empathy`` and ``/archive/2026-11`` (the sent issue) for ``--seconds``
   each at ``--connections``, after a warm-up.
3. The reference: the same waitress, with the same threads, serving the archive page's
   bytes from memory (a static file). Prints requests/s, p99 latency and the ratio.

Targets (issue 14): >= 1,500 requests/s at concurrency 16, >= 0.25 x the static
reference, p99 < 50 ms, the same with a 1M-row ledger.

``--search`` measures the catalogue instead, in this process, on SQLite and on
PostgreSQL (``--pg-admin-url``, a scratch database is made and dropped): the generated
150-issue catalogue of ``tests/support/catalogue.py`` (350 summaries), the time to
parse it, the time to build the search index, and the latency of search requests
(``/archive?q=...`` through the Flask app: search, counts and page), median and p95 over
``--repeat`` rounds of a few queries.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
NEWSLETTER = str(BIN / "newsletter")
TARGET_RPS, TARGET_RATIO, TARGET_P99_MS = 1500.0, 0.25, 50.0
THREADS = 8  # `newsletter serve`'s default

STATIC_SERVER = """
import logging, sys
from waitress import serve
logging.getLogger("waitress.queue").setLevel(logging.ERROR)
body = open(sys.argv[1], "rb").read()
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                              ("Content-Length", str(len(body)))])
    return [body]
serve(app, host="127.0.0.1", port=int(sys.argv[2]), threads=int(sys.argv[3]), _quiet=True)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [NEWSLETTER, *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        sys.exit(f"newsletter {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def wait_up(url: str, deadline: float = 60.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"{url} did not answer")


def wrk(url: str, connections: int, seconds: int) -> tuple[float, float]:
    """(requests per second, p99 latency in ms) of wrk against ``url``."""
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
    p99 = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    if "Non-2xx" in out:
        sys.exit(f"wrk saw errors against {url}:\n{out}")
    return rps, p99


def make_project(folder: Path, args: argparse.Namespace, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    if args.database:
        env["NEWSLETTER_DATABASE_URL"] = args.database
    run(
        "init",
        "--sender-address",
        "digest@news.example.org",
        "--postal-address",
        "1 Example Street, Exampletown",
        "--base-url",
        f"http://127.0.0.1:{port}",
        cwd=folder,
        env=env,
    )
    if args.database:
        run("db", "upgrade", cwd=folder, env=env)
    issues = folder / "issues"
    for sample in sorted((REPO / "issues").glob("*.md")):
        shutil.copy(sample, issues / sample.name)
    template = (REPO / "issues" / "2026-09.md").read_text("utf-8")
    year, month = 2026, 8
    for _ in range(args.back_issues):
        text = re.sub(r"^month: \S+", f"month: {year}-{month:02d}", template, flags=re.M)
        (issues / f"{year}-{month:02d}.md").write_text(text, "utf-8")
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    people = folder / "people.csv"
    with people.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["email", "name", "topics"])
        for i in range(args.subscribers):
            w.writerow([f"reader{i}@example.org", f"Reader {i}", ""])
    run("subscribers", "import", str(people), cwd=folder, env=env)
    # The ledger: planned by the service, marked sent at once (a real send of 1M people
    # would take the benchmark's whole budget and measure something else).
    code = (
        "from newsletter.config import load_settings\n"
        "from newsletter.services import App, sends\n"
        "from sqlalchemy import text\n"
        "with App(load_settings()) as app:\n"
        "    sends.plan(app, '2026-11')\n"
        "    with app.store.engine.begin() as c:\n"
        "        c.execute(text(\"UPDATE deliveries SET status = 'sent'\"))\n"
        "        c.execute(text(\"UPDATE sends SET status = 'done'\"))\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=folder, env=env, check=True)
    return env


def main() -> None:
    """Build the project, load the archive, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=30_000)
    parser.add_argument("--back-issues", type=int, default=120)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--database", default="", help="a PostgreSQL URL (default SQLite)")
    parser.add_argument("--search", action="store_true", help="measure index and search")
    parser.add_argument("--issues", type=int, default=150, help="catalogue size (--search)")
    parser.add_argument("--repeat", type=int, default=30, help="rounds of queries (--search)")
    parser.add_argument(
        "--pg-admin-url",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
        help="where to make the scratch database (--search); '' for SQLite only",
    )
    args = parser.parse_args()
    if args.search:
        search_bench(args)
        return
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        port, static_port = free_port(), free_port()
        start = time.perf_counter()
        env = make_project(folder, args, port)
        print(
            f"project: {args.subscribers:,} subscribers, a ledger of {args.subscribers:,} "
            f"rows, {args.back_issues + 3} issues ({time.perf_counter() - start:.0f} s to make)"
        )
        server = subprocess.Popen(
            [NEWSLETTER, "serve", "--port", str(port)],
            cwd=folder,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        static = None
        try:
            base = f"http://127.0.0.1:{port}"
            wait_up(base + "/archive")
            with urllib.request.urlopen(base + "/archive") as r:
                (folder / "archive.html").write_bytes(r.read())
            static = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    STATIC_SERVER,
                    str(folder / "archive.html"),
                    str(static_port),
                    str(THREADS),
                ]
            )
            wait_up(f"http://127.0.0.1:{static_port}/")
            results = {}
            for label, url in [
                ("static file (reference)", f"http://127.0.0.1:{static_port}/"),
                ("/archive", base + "/archive"),
                ("/archive?topic=empathy", base + "/archive?topic=empathy"),
                ("/archive/2026-11", base + "/archive/2026-11"),
            ]:
                wrk(url, args.connections, 2)  # warm-up
                results[label] = wrk(url, args.connections, args.seconds)
        finally:
            server.terminate()
            if static is not None:
                static.terminate()
            server.wait()
        ref = results.pop("static file (reference)")
        print(f"concurrency {args.connections}, {args.seconds} s each, waitress {THREADS} threads")
        print(f"{'static file (reference)':<26} {ref[0]:8.0f} req/s   p99 {ref[1]:7.1f} ms")
        ok = True
        for label, (rps, p99) in results.items():
            ratio = rps / ref[0]
            good = rps >= TARGET_RPS and ratio >= TARGET_RATIO and p99 < TARGET_P99_MS
            ok &= good
            print(
                f"{label:<26} {rps:8.0f} req/s   p99 {p99:7.1f} ms   "
                f"{ratio:5.2f} x the reference  {'ok' if good else 'below target'}"
            )
        print(
            f"{'PASS' if ok else 'FAIL'}: targets >= {TARGET_RPS:.0f} req/s, "
            f">= {TARGET_RATIO} x static, p99 < {TARGET_P99_MS:.0f} ms"
        )


SEARCHES = ("rumination", "exposure therapy", '"number 12"', "superv*", "sleep clients")


def search_bench(args: argparse.Namespace) -> None:
    """Index the generated catalogue and time search requests, on each database."""
    import statistics
    import uuid

    sys.path.insert(0, str(REPO))
    from sqlalchemy import create_engine, text

    from newsletter.config import load_settings
    from newsletter.services import App, archive
    from newsletter.store import upgrade_database
    from newsletter.web import create_app
    from tests.support.catalogue import write_catalogue

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        entries = write_catalogue(folder / "issues", args.issues)
        print(f"catalogue: {args.issues} issues, {len(entries)} summaries")
        databases = [("SQLite", f"sqlite:///{folder}/newsletter.db", None)]
        if args.pg_admin_url:
            name = f"bench_archive_{uuid.uuid4().hex[:8]}"
            admin = create_engine(args.pg_admin_url, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            pg_url = args.pg_admin_url.rsplit("/", 1)[0] + f"/{name}"
            databases.append(("PostgreSQL", pg_url, (admin, name)))
        try:
            for label, url, _ in databases:
                upgrade_database(url)
                settings = load_settings(
                    overrides={
                        "database_url": url,
                        "issues_dir": str(folder / "issues"),
                        "secret_key": "bench",
                        "base_url": "https://news.example.org",
                    },
                    environ={},
                )
                with App(settings) as app:
                    start = time.perf_counter()
                    app.library.issues()
                    parsed = time.perf_counter() - start
                    start = time.perf_counter()
                    archive.refresh_index(app)
                    indexed = time.perf_counter() - start
                flask_app = create_app(settings)
                client = flask_app.test_client()
                for q in SEARCHES:  # warm-up (and the first look at the version)
                    client.get("/archive", query_string={"q": q})
                times = []
                for _ in range(args.repeat):
                    for q in SEARCHES:
                        start = time.perf_counter()
                        r = client.get("/archive", query_string={"q": q})
                        times.append(time.perf_counter() - start)
                        assert r.status_code == 200, (q, r.status_code)
                flask_app.extensions["newsletter"].close()
                times.sort()
                p95 = times[int(len(times) * 0.95) - 1]
                print(
                    f"{label:<11} parse {parsed * 1000:6.0f} ms   index {indexed * 1000:6.0f} ms   "
                    f"search request median {statistics.median(times) * 1000:5.1f} ms, "
                    f"p95 {p95 * 1000:5.1f} ms ({len(times)} requests)"
                )
        finally:
            for _, _, pg in databases:
                if pg is not None:
                    admin, name = pg
                    with admin.connect() as conn:
                        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                    admin.dispose()


if __name__ == "__main__":
    main()
