"""Throughput of the RFC 8058 one-click unsubscribe, against a bare UPDATE + INSERT.

    .venv/bin/python bench/bench_oneclick.py [--people 30000] [--seconds 10]
        [--concurrency 16] [--database postgresql://postgres@127.0.0.1:5432/postgres]
        [--client wrk|python]

1. A fresh project: SQLite by default; with ``--database`` a scratch database made on that
   PostgreSQL server (and dropped afterwards). ``newsletter db upgrade``, then
   ``--people`` subscribers through ``newsletter subscribers import``.
2. A real ``newsletter serve`` process (waitress, its default threads). The load client
   (Debian's ``wrk`` with a Lua script walking a list of paths, or a Python client with
   ``--client python``) POSTs ``List-Unsubscribe=One-Click`` to ``/unsubscribe/<token>``
   at ``--concurrency`` connections, every request for a different person (a token signed
   with the project's key), after a short warm-up on other people.
3. The reference, in the same run: the same waitress (:func:`newsletter.web.serving.
   make_server`, as many threads) serving a minimal WSGI app that, per request, runs
   ``UPDATE subscribers SET status='unsubscribed' WHERE id=?`` and one ``INSERT INTO
   consent_events`` in one transaction on the same database, through the store's engine
   (:func:`newsletter.store.db.make_engine`: the same connection settings).
4. Prints requests/s and p99 of both, and the ratio. It checks that every answered
   one-click request unsubscribed a different person (the consent log must hold one
   "unsubscribed" event per answer): a run that runs out of people says so.

The program is driven through its CLI, HTTP and ``newsletter.tokens.make_token`` only, so
the same script measures any version of it.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import http.client
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

BODY = "List-Unsubscribe=One-Click"
WARM_UP = 1500  # people unsubscribed before the measured run (connections, caches)
WARM_UP_SECONDS = 1

# The wrk script: each of wrk's threads reads its own list of paths (one per line) and
# walks it, one path per request; done() prints one line this script reads.
WRK_LUA = """
local counter = 0
local paths = {}
local threads = {}
local n = 0
local headers = {["Content-Type"] = "application/x-www-form-urlencoded"}

function setup(thread)
  thread:set("tid", n)
  n = n + 1
  table.insert(threads, thread)
end

function init(args)
  for line in io.lines(args[1] .. "." .. tid) do
    table.insert(paths, line)
  end
end

function request()
  counter = counter + 1
  if counter > #paths then
    over = (over or 0) + 1
    return wrk.format("POST", paths[#paths], headers, "@BODY@")
  end
  return wrk.format("POST", paths[counter], headers, "@BODY@")
end

function done(summary, latency, requests)
  local over = 0
  for _, t in ipairs(threads) do over = over + (t:get("over") or 0) end
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d micros=%d p50=%d p99=%d errors=%d over=%d\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout, over))
end
""".replace("@BODY@", BODY)


# --- the reference server ----------------------------------------------------------------


def reference_app(database_url: str):
    """A WSGI app: ``POST /ref/<id>`` = bare UPDATE + INSERT in one transaction."""
    from sqlalchemy import text

    from newsletter.store.db import make_engine

    engine = make_engine(database_url)
    update = text("UPDATE subscribers SET status = 'unsubscribed' WHERE id = :id")
    insert = text(
        "INSERT INTO consent_events (subscriber_id, at, event, source, ip, detail) "
        "VALUES (:id, :at, 'unsubscribed', 'web', :ip, 'one-click')"
    )

    def app(environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        environ["wsgi.input"].read(length)
        if environ["REQUEST_METHOD"] != "POST":  # the benchmark asking whether it runs
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        subscriber_id = int(environ["PATH_INFO"].rsplit("/", 1)[1])
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        with engine.begin() as conn:
            conn.execute(update, {"id": subscriber_id})
            conn.execute(insert, {"id": subscriber_id, "at": now, "ip": environ["REMOTE_ADDR"]})
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
        return [b"ok\n"]

    return app


def serve_reference(database_url: str, port: int, threads: int) -> None:
    """Run the reference server until killed (the child process of the benchmark)."""
    from newsletter.web.serving import make_server

    make_server(reference_app(database_url), "127.0.0.1", port, threads).run()


# --- helpers -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def program(folder: Path, *args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env["NEWSLETTER_CONFIG"] = str(folder / "newsletter.toml")
    return subprocess.Popen(
        [sys.executable, "-m", "newsletter", *args],
        cwd=folder,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_listening(port: int, proc: subprocess.Popen, path: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            sys.exit(f"the server on port {port} stopped (exit {proc.returncode})")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2)
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            if time.monotonic() > deadline:
                sys.exit(f"nothing listens on port {port}")
            time.sleep(0.1)


def scratch_database(server_url: str) -> tuple[str, Callable[[], None]]:
    """A new empty database on the PostgreSQL server of ``server_url``, and its dropper."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from newsletter.store.db import normalise_url

    server = normalise_url(server_url)
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    name = f"bench_oneclick_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    url = make_url(server).set(database=name).render_as_string(hide_password=False)
    return url, drop


def people_ids(database_url: str) -> list[int]:
    from sqlalchemy import text

    from newsletter.store.db import make_engine

    engine = make_engine(database_url)
    with engine.connect() as conn:
        ids = [r[0] for r in conn.execute(text("SELECT id FROM subscribers ORDER BY id"))]
    engine.dispose()
    return ids


def unsubscribed_since(database_url: str, first_id: int) -> int:
    """How many people from ``first_id`` on are unsubscribed."""
    from sqlalchemy import text

    from newsletter.store.db import make_engine

    engine = make_engine(database_url)
    with engine.connect() as conn:
        n = conn.execute(
            text("SELECT count(*) FROM subscribers WHERE status = 'unsubscribed' AND id >= :f"),
            {"f": first_id},
        ).scalar_one()
    engine.dispose()
    return int(n)


# --- load clients ------------------------------------------------------------------------


class Result:
    def __init__(
        self, requests: int, seconds: float, p50: float, p99: float, errors: int, over: int
    ):
        self.requests, self.seconds = requests, seconds
        self.p50, self.p99, self.errors, self.over = p50, p99, errors, over

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def run_wrk(port: int, paths: list[str], seconds: float, concurrency: int, work: Path) -> Result:
    threads = 2
    script = work / "walk.lua"
    script.write_text(WRK_LUA)
    listing = work / f"paths-{port}"
    for t in range(threads):
        Path(f"{listing}.{t}").write_text("\n".join(paths[t::threads]) + "\n")
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{concurrency}",
            f"-d{seconds:g}s",
            "--timeout",
            "30s",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}/",
            "--",
            str(listing),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    v = {k: int(x) for k, x in (p.split("=") for p in line.split()[1:])}
    return Result(
        v["requests"], v["micros"] / 1e6, v["p50"] / 1e6, v["p99"] / 1e6, v["errors"], v["over"]
    )


def run_python(
    port: int, paths: list[str], seconds: float, concurrency: int, _work: Path
) -> Result:
    """Keep-alive connections, one thread each, walking the shared list of paths."""
    lock = threading.Lock()
    walk = iter(paths)
    times: list[float] = []
    errors = [0]
    over = [0]
    stop = time.monotonic() + seconds
    headers = {"Content-Type": "application/x-www-form-urlencoded"}

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine: list[float] = []
        while time.monotonic() < stop:
            with lock:
                path = next(walk, None)
            if path is None:
                over[0] += 1
                break
            began = time.perf_counter()
            conn.request("POST", path, BODY, headers)
            answer = conn.getresponse()
            answer.read()
            mine.append(time.perf_counter() - began)
            if answer.status != 200:
                errors[0] += 1
        conn.close()
        with lock:
            times.extend(mine)

    began = time.monotonic()
    workers = [threading.Thread(target=client) for _ in range(concurrency)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    took = time.monotonic() - began
    times.sort()
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    return Result(len(times), took, statistics.median(times), p99, errors[0], over[0])


# --- the benchmark -----------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=30000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--threads", type=int, default=8, help="waitress threads (serve's default)")
    parser.add_argument("--database", help="a PostgreSQL server URL (default: SQLite)")
    parser.add_argument("--client", choices=("wrk", "python"), default=None)
    parser.add_argument(
        "--serve-reference", nargs=2, metavar=("URL", "PORT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.serve_reference:
        serve_reference(args.serve_reference[0], int(args.serve_reference[1]), args.threads)
        return
    client = args.client or ("wrk" if shutil.which("wrk") else "python")
    load = run_wrk if client == "wrk" else run_python

    from newsletter.config import load_settings
    from newsletter.tokens import make_token

    work = Path(tempfile.mkdtemp(prefix="bench-oneclick-"))
    drop = None
    servers: list[subprocess.Popen] = []
    try:
        if args.database:
            database_url, drop = scratch_database(args.database)
        else:
            database_url = f"sqlite:///{work}/subscribers/newsletter.db"
        web_port, ref_port = free_port(), free_port()
        (work / "newsletter.toml").write_text(
            'sender_address = "bench@example.org"\n'
            'postal_address = "1 Example Street"\n'
            'secret_key = "bench-key"\n'
            f'base_url = "http://127.0.0.1:{web_port}"\n'
            f'database_url = "{database_url}"\n'
        )
        with (work / "people.csv").open("w", newline="") as fh:
            out = csv.writer(fh)
            out.writerow(["email", "topics"])
            for i in range(args.people):
                out.writerow([f"reader{i:06d}@example.org", "all"])
        for setup in (("db", "upgrade"), ("subscribers", "import", "people.csv")):
            if program(work, *setup).wait(600) != 0:
                sys.exit(f"setting up failed: newsletter {' '.join(setup)}")
        settings = load_settings(work / "newsletter.toml", environ={})
        ids = people_ids(database_url)
        paths = [f"/unsubscribe/{make_token(settings, 'unsubscribe', i)}" for i in ids]
        warm, measured = paths[:WARM_UP], paths[WARM_UP:]

        serve = program(work, "serve", "--port", str(web_port), "--threads", str(args.threads))
        servers.append(serve)
        wait_listening(web_port, serve, "/healthz")
        load(web_port, warm, WARM_UP_SECONDS, args.concurrency, work)
        got = load(web_port, measured, args.seconds, args.concurrency, work)
        serve.terminate()
        serve.wait(30)
        changed = unsubscribed_since(database_url, ids[WARM_UP])

        # The reference may update the same rows again: a bare UPDATE + INSERT costs the
        # same whether or not the status changes, so it walks every id in turn.
        reference = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--threads",
                str(args.threads),
                "--serve-reference",
                database_url,
                str(ref_port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        servers.append(reference)
        wait_listening(ref_port, reference, "/")
        ref_paths = [f"/ref/{i}" for i in ids]
        load(ref_port, ref_paths[:WARM_UP], WARM_UP_SECONDS, args.concurrency, work)
        ref = load(ref_port, ref_paths * 3, args.seconds, args.concurrency, work)

        where = "PostgreSQL" if args.database else "SQLite"
        print(
            f"{where}, {args.people} people, concurrency {args.concurrency}, "
            f"{args.threads} waitress threads, {client}, {args.seconds:g} s each"
        )
        for name, r in (("one-click unsubscribe", got), ("bare UPDATE + INSERT", ref)):
            print(
                f"  {name:22s} {r.rate:8.0f} requests/s   p50 {r.p50 * 1000:6.1f} ms   "
                f"p99 {r.p99 * 1000:6.1f} ms   errors {r.errors}"
            )
        print(f"  ratio {got.rate / ref.rate:.2f} of the reference")
        # Requests still in the server when the client stopped are done but not counted.
        if got.over or not got.requests <= changed <= got.requests + args.concurrency:
            print(
                f"  WARNING: {got.requests} answers but {changed} people unsubscribed "
                f"({got.over} requests repeated a path): raise --people"
            )
    finally:
        for proc in servers:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(30)
        if drop is not None:
            drop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
