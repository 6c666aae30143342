"""A whole send at scale, stage by stage, against Postfix's smtp-source in the same run.

    .venv/bin/python bench/bench_scale.py --subscribers 1000000 \\
        --database postgresql://postgres@127.0.0.1:5432/postgres
    .venv/bin/python bench/bench_scale.py --subscribers 100000            # SQLite
    options: [--connections 2] [--processes 1] [--dkim] [--claims-only]
             [--template NAME] (PostgreSQL: keep the imported list as database NAME and
             reuse it next time, so only the send is measured again)

1. **list**: a fresh project and store (PostgreSQL: a scratch database on the server of
   ``--database``, autovacuum off for it, as on a server where nobody tunes it; dropped
   afterwards) and ``newsletter subscribers import`` of a generated CSV of N people with
   varied topics.
2. **claims**: after planning, the time of one 200-row claim (``ledger.claim_batch``) at
   0 % progress and after 90 % of the rows were sent (one UPDATE marks them, leaving the
   dead row versions a real send leaves; autovacuum is off): after one claim that warms
   the cache, the median of ten at each point. The claims are given back afterwards.
3. **send**: ``newsletter send 2026-11 --yes`` as a real process to ``smtp-sink``: the time
   from its start to the first message accepted (the earliest ``sent_at`` in the ledger),
   the whole command's time, messages/s and CPU seconds (user + system of the process; the
   database server's own CPU is not counted). With ``--processes P`` > 1, P-1
   ``newsletter worker --once`` processes join the send once it is planned.
4. **reference**: ``smtp-source -d`` sends as many messages of the same average size over
   the same number of connections (times the processes); its rate and CPU seconds.

Prints each figure and the ratios the goals name: whole command >= 0.7 x smtp-source
(DKIM off), CPU per message <= 2.5 x smtp-source's, claims <= 10 ms at 0 % and 90 %,
first message <= 10 s. No message may be lost or doubled: the ledger's sent count must
equal the planned rows.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import random
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NEWSLETTER = str(Path(sys.executable).parent / "newsletter")
MONTH = "2026-11"
# Most people take a topic of one of 2026-11's summaries (so they get a message), some
# take every topic; the mix gives the send several variants.
TOPICS = [
    "Training",
    "Efficacy of Treatments",
    "Psychodynamic Therapy (PDT); Long-term Outcomes",
    "Therapist Factors; Common Factors",
    "all",
    "Depression and Depressive Symptoms; Training",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def write_csv(path: Path, rows: int) -> None:
    rng = random.Random(7)
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["email", "name", "topics"])
        for i in range(rows):
            w.writerow([f"reader{i}@example{i % 97}.org", f"Reader {i}", rng.choice(TOPICS)])


def pg_admin(url: str):
    import psycopg

    return psycopg.connect(
        re.sub(r"^postgresql(\+psycopg)?://", "postgresql://", url), autocommit=True
    )


def db_url(base: str, name: str) -> str:
    return re.sub(r"/[^/]*$", f"/{name}", re.sub(r"^postgresql://", "postgresql+psycopg://", base))


def run(args: list[str], folder: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, cwd=folder, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done


def make_project(folder: Path, database: str, port: int, dkim: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env["NEWSLETTER_DATABASE_URL"] = database
    run(
        [
            NEWSLETTER,
            "init",
            "--sender-address",
            "digest@news.example.org",
            "--postal-address",
            "1 Example Street, Exampletown",
            "--base-url",
            "https://news.example.org",
        ],
        folder,
        env,
    )
    for sample in (REPO / "issues").glob("*.md"):
        shutil.copy(sample, folder / "issues" / sample.name)
    env["NEWSLETTER_SMTP_URL"] = f"smtp://127.0.0.1:{port}"
    if dkim:
        key = folder / "dkim.pem"
        subprocess.run(
            ["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True
        )
        env.update(
            NEWSLETTER_DKIM_DOMAIN="news.example.org",
            NEWSLETTER_DKIM_SELECTOR="bench",
            NEWSLETTER_DKIM_KEY_FILE=str(key),
        )
    return env


def python(code: str, folder: Path, env: dict[str, str]) -> str:
    return run([sys.executable, "-c", code], folder, env).stdout


CLAIMS = """
import inspect, json, statistics, time
from sqlalchemy import text
from newsletter.config import load_settings
from newsletter.services import App, sends
from newsletter.store import ledger

# A worker claims from the highest id it claimed before, where the version has that.
CURSOR = "after" in inspect.signature(ledger.claim_batch).parameters

def timed(store, after):
    # One claim first (it reads the pages into the cache, as a worker's first claim
    # does), then the median of ten: the cost of a claim in a running send.
    out = []
    for i in range(11):
        extra = {{"after": after}} if CURSOR else {{}}
        start = time.perf_counter()
        got = ledger.claim_batch(store, 200, claimer="bench:claims", months=["{month}"], **extra)
        if i:
            out.append((time.perf_counter() - start) * 1000)
        assert len(got) == 200, len(got)
        after = max(g.delivery_id for g in got)
    return statistics.median(out)

with App(load_settings()) as app:
    start = time.perf_counter()
    sends.plan(app, "{month}")
    plan_s = time.perf_counter() - start
    store = app.store
    first = timed(store, 0)
    with store.engine.begin() as c:
        lo, n = c.execute(text("SELECT min(id), count(*) FROM deliveries")).one()
        mark = lo + int(n * 0.9)
        c.execute(text("UPDATE deliveries SET status = 'sent', sent_at = CURRENT_TIMESTAMP "
                       "WHERE id <= :mark AND status = 'pending'"), {{"mark": mark}})
    late = timed(store, mark)
    with store.engine.begin() as c:  # give everything back: the send starts from scratch
        c.execute(text("UPDATE deliveries SET status = 'pending', sent_at = NULL, "
                       "claimed_by = NULL, claimed_at = NULL, first_attempt_at = NULL "
                       "WHERE status IN ('sent', 'sending')"))
        c.execute(text("UPDATE sends SET status = 'planned', started_at = NULL"))
    print(json.dumps({{"plan_s": plan_s, "claim_0": first, "claim_90": late, "rows": n,
                      "cursor": CURSOR}}))
"""

FIRST = """
import json
from sqlalchemy import text
from newsletter.config import load_settings
from newsletter.services import App
with App(load_settings()) as app, app.store.engine.begin() as c:
    row = c.execute(text("SELECT min(d.sent_at), count(*) FROM deliveries d "
                         "WHERE d.status = 'sent'")).one()
    started = c.execute(text("SELECT count(*) FROM deliveries "
                             "WHERE status NOT IN ('sent', 'skipped')")).scalar()
    first = row[0] if row[0] is None or isinstance(row[0], str) else row[0].isoformat()
    print(json.dumps({"first": first, "sent": row[1],
                      "other": started}))
"""


class LockWaits:
    """Samples PostgreSQL's sessions of the scratch database for lock waits."""

    def __init__(self, server: str, database: str) -> None:
        import threading

        self.samples = self.waiting = 0
        self.what: dict[str, int] = {}  # lock wait and statement -> samples
        self._done = threading.Event()
        self._conn = pg_admin(server)
        self._database = database
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(0.02):
            rows = self._conn.execute(
                "SELECT wait_event, left(regexp_replace(query, '\\s+', ' ', 'g'), 70) "
                "FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'",
                (self._database,),
            ).fetchall()
            self.samples += 1
            self.waiting += 1 if rows else 0
            for event, query in rows:
                key = f"{event}: {query}"
                self.what[key] = self.what.get(key, 0) + 1

    def stop(self) -> None:
        self._done.set()
        self._thread.join()
        self._conn.close()


def send_started(folder: Path, env: dict[str, str]) -> bool:
    code = (
        "from sqlalchemy import text\n"
        "from newsletter.config import load_settings\n"
        "from newsletter.services import App\n"
        "with App(load_settings()) as app, app.store.engine.connect() as c:\n"
        "    q = \"SELECT count(*) FROM sends WHERE status = 'sending'\"\n"
        "    print(c.execute(text(q)).scalar())\n"
    )
    return python(code, folder, env).strip() != "0"


def average_size(folder: Path, env: dict[str, str]) -> int:
    code = (
        "from newsletter.config import load_settings\n"
        "from newsletter.content.files import get_issue\n"
        "from newsletter.delivery.message import assemble, build_message_template\n"
        "from newsletter.delivery.personalise import Recipient\n"
        "from newsletter.render.build import build_issue\n"
        "s = load_settings()\n"
        f"b = build_issue(get_issue(s.issues_dir, '{MONTH}'), s)\n"
        "sizes = [len(assemble(build_message_template(v, s, issue_month="
        f"'{MONTH}'), Recipient('reader1@example1.org', 1, 'Reader 1', ('training',))).data)"
        " for v in b.variants.values()]\n"
        "print(sum(sizes) // len(sizes))\n"
    )
    return int(python(code, folder, env).strip())


def main() -> None:
    """Run the stages and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--database", default="", help="a PostgreSQL server URL; default SQLite")
    parser.add_argument("--connections", type=int, default=2)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--dkim", action="store_true")
    parser.add_argument("--claims-only", action="store_true")
    parser.add_argument(
        "--first-only", action="store_true", help="stop the send after its first message"
    )
    parser.add_argument("--template", default="", help="PostgreSQL: reuse/keep the list")
    parser.add_argument("--profile", default="", help="py-spy the send into this file (raw)")
    parser.add_argument("--code", default="", help="run the newsletter package from this checkout")
    args = parser.parse_args()
    sink = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    source = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
    if not os.path.exists(sink):
        sys.exit("smtp-sink not found: apt-get install postfix (it need not run)")
    n = args.subscribers
    folder = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    scratch = f"bench_scale_{uuid.uuid4().hex[:8]}"
    port = free_port()
    if args.database:
        database = db_url(args.database, scratch)
    else:
        database = f"sqlite:///{folder}/subscribers/newsletter.db"
    admin = pg_admin(args.database) if args.database else None
    figures: dict[str, float] = {}
    sink_proc = None
    reused = False
    if admin is not None:
        exists = (
            args.template
            and admin.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (args.template,)
            ).fetchone()
        )
        if exists:
            admin.execute(f'CREATE DATABASE "{scratch}" TEMPLATE "{args.template}"')
            reused = True
        else:
            admin.execute(f'CREATE DATABASE "{scratch}"')
    if args.code:  # measure another version (a worktree) with the same script
        os.environ["PYTHONPATH"] = str(Path(args.code).resolve())
    env = make_project(folder, database, port, args.dkim)
    try:
        # A reused list may come from another version: bring it to this one's schema.
        run([NEWSLETTER, "db", "upgrade"], folder, env)
        if not reused:
            people = folder / "people.csv"
            write_csv(people, n)
            start = time.perf_counter()
            run([NEWSLETTER, "subscribers", "import", str(people)], folder, env)
            figures["list_s"] = time.perf_counter() - start
            people.unlink()
            if admin is not None and args.template:
                admin.execute(f'DROP DATABASE IF EXISTS "{args.template}"')
                admin.execute(f'CREATE DATABASE "{args.template}" TEMPLATE "{scratch}"')
        if admin is not None:
            import psycopg

            with psycopg.connect(
                db_url(args.database, scratch).replace("+psycopg", ""), autocommit=True
            ) as c:
                c.execute("ALTER TABLE deliveries SET (autovacuum_enabled = false)")
        print(
            f"{n:,} subscribers on {'PostgreSQL' if admin else 'SQLite'}"
            + (
                f" (list made in {figures['list_s']:.1f} s)"
                if "list_s" in figures
                else " (list reused)"
            )
        )

        if not args.first_only:  # planning is part of what --first-only times
            claims = json.loads(
                python(CLAIMS.format(month=MONTH), folder, env).strip().splitlines()[-1]
            )
            print(
                f"plan (service, first time): {claims['plan_s']:.1f} s for {claims['rows']:,} rows"
            )
            print(
                f"claim of 200 rows: {claims['claim_0']:.1f} ms at 0 %, "
                f"{claims['claim_90']:.1f} ms at 90 % (target <= 10 ms)"
            )
        if args.claims_only:
            return

        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        sink_proc = subprocess.Popen([sink, *user, f"127.0.0.1:{port}", "1024"])
        time.sleep(0.3)
        size = average_size(folder, env)
        env_send = dict(env, NEWSLETTER_SMTP_POOL_SIZE=str(args.connections))
        cpu0 = child_cpu()
        t0 = time.time()
        start = time.perf_counter()
        spy = []
        if args.profile:
            spy = [str(Path(sys.executable).parent / "py-spy"), "record", "-r", "250", "-f"]
            spy += ["raw", "-o", args.profile, "--nonblocking", "--gil", "--"]
        main_proc = subprocess.Popen(
            [*spy, NEWSLETTER, "send", MONTH, "--yes"],
            cwd=folder,
            env=env_send,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        helpers = []
        waits = LockWaits(args.database, scratch) if admin is not None else None
        if args.processes > 1:
            # The extra workers join once the send is planned (before, nothing is due).
            while main_proc.poll() is None and not send_started(folder, env):
                time.sleep(0.2)
            helpers = [
                subprocess.Popen(
                    [NEWSLETTER, "worker", "--once"],
                    cwd=folder,
                    env=env_send,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for _ in range(args.processes - 1)
            ]
        if args.first_only:
            while main_proc.poll() is None:
                seen = json.loads(python(FIRST, folder, env).strip().splitlines()[-1])
                if seen["first"]:
                    first_at = dt.datetime.fromisoformat(seen["first"])
                    first_s = first_at.replace(tzinfo=dt.UTC).timestamp() - t0
                    print(f"first message after {first_s:.1f} s (target <= 10 s)")
                    main_proc.terminate()
                    main_proc.wait()
                    return
                time.sleep(0.5)
        _, err = main_proc.communicate()
        for h in helpers:
            h.wait()
        if waits is not None:
            waits.stop()
            print(
                f"lock waits (pg_stat_activity every 20 ms): {waits.waiting} of "
                f"{waits.samples} samples saw a backend waiting on a lock"
            )
            for what, n in sorted(waits.what.items(), key=lambda kv: -kv[1]):
                print(f"  {n} x {what}")
        elapsed = time.perf_counter() - start
        cpu = child_cpu() - cpu0
        if main_proc.returncode != 0:
            sys.exit(f"newsletter send failed ({main_proc.returncode}): {err[-2000:]}")
        ledger = json.loads(python(FIRST, folder, env).strip().splitlines()[-1])
        first_s = dt.datetime.fromisoformat(ledger["first"]).replace(tzinfo=dt.UTC).timestamp() - t0
        sent = ledger["sent"]
        rate = sent / elapsed
        print(
            f"newsletter send --yes: {sent:,} messages of {size / 1024:.1f} KB in "
            f"{elapsed:.1f} s = "
            f"{rate:,.0f} msg/s; first message after {first_s:.1f} s (target <= 10 s); "
            f"CPU {cpu:.1f} s = {cpu / sent * 1e6:.0f} µs a message"
            + (f"; {args.processes} processes" if args.processes > 1 else "")
            + (" ; DKIM on" if args.dkim else "")
        )
        if ledger["other"]:
            print(f"WARNING: {ledger['other']} rows not sent")

        conns = args.connections * args.processes
        cpu0 = child_cpu()
        start = time.perf_counter()
        subprocess.run(
            [
                source,
                "-d",
                "-s",
                str(conns),
                "-l",
                str(size),
                "-m",
                str(sent),
                "-f",
                "bench@example.org",
                "-t",
                "reader@example.org",
                f"127.0.0.1:{port}",
            ],
            check=True,
        )
        ref_s = time.perf_counter() - start
        ref_cpu = child_cpu() - cpu0
        ref_rate = sent / ref_s
        print(
            f"smtp-source -d -s {conns}: {ref_rate:,.0f} msg/s; CPU {ref_cpu:.1f} s = "
            f"{ref_cpu / sent * 1e6:.0f} µs a message"
        )
        print(
            f"ratio (whole command / smtp-source): {rate / ref_rate:.2f} "
            f"(target >= {0.35 if args.dkim else 0.7}); "
            f"CPU per message: {cpu / max(ref_cpu, 1e-9):.1f} x smtp-source's (target <= 2.5)"
        )
    finally:
        if sink_proc is not None:
            sink_proc.terminate()
            sink_proc.wait()
        if admin is not None:
            admin.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
            admin.close()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
