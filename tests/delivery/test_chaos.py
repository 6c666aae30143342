"""Chaos: real `newsletter send` and `newsletter worker` processes killed mid-send.

A send to a few hundred people goes through the normal aiosmtpd test server while
several real processes drain it at once and are SIGKILLed at random points (a seeded
``random.Random``; the seed is printed, and ``NEWSLETTER_TEST_CHAOS_SEED=N`` replays it).
Kill points are picked by the number of messages the server has received, never by
sleeping. After each kill another process is started, until the send is done. Then, per
recipient, against the server's log: missing 0, wrong 0, and duplicates within the bound
the worker documents (``newsletter/delivery/worker.py``): outcomes go to the store by group
commit, and a sender thread never has more than ``2 x pipeline_depth`` messages on the wire
or waiting for their record, so a SIGKILL repeats at most ``2 x threads x pipeline_depth``
messages (8 with the defaults). So ``total duplicates <= kills * bound``, and every extra
copy must follow a kill (a copy with no crash between it and the first is a bug). The
duplicates per kill are printed. A second test kills one process at a time at full speed
(no delay at the server), where each kill's copies are its own, and checks every kill.

Also: PostgreSQL connections cut by ``pg_terminate_backend`` during a send, and a SQLite
write lock held by another process for longer than the busy timeout during a send.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from newsletter.store.db import SQLITE_BUSY_TIMEOUT_MS
from tests.plugin import PG_SERVER, require_or_skip
from tests.support.audit import Audit, audit
from tests.support.delivery_runs import (
    NewsletterProcess,
    add_many,
    bulk_people,
    create_database,
    drop_database,
    expected_digests,
    ledger_rows,
    send_status,
    settings_of,
    subscriber_ids,
    terminate_backends,
    terminate_busy_backends,
    write_send_project,
)
from tests.support.services import SAMPLE_MONTH, WorkerOptions, plan_issue_send
from tests.support.smtpserver import SmtpTestServer

pytestmark = pytest.mark.slow

MONTH = SAMPLE_MONTH
PEOPLE = 600
KILLS = 20
THREADS = 2  # --workers of every process
#: What one SIGKILL may send twice: the messages of each sender thread on the wire or
#: waiting for their record (the CLI does not change pipeline_depth).
BOUND = 2 * THREADS * WorkerOptions().pipeline_depth
RUN_LIMIT = 150.0  # seconds one database's run may take before the test gives up


def chaos_seed() -> int:
    """The seed: NEWSLETTER_TEST_CHAOS_SEED, or a new one (printed either way)."""
    given = os.environ.get("NEWSLETTER_TEST_CHAOS_SEED")
    seed = int(given) if given else random.SystemRandom().randrange(1_000_000)
    print(f"chaos seed {seed} (replay: NEWSLETTER_TEST_CHAOS_SEED={seed})")
    return seed


class Fleet:
    """The processes of one run; every one is killed or stopped at the end."""

    def __init__(self, project: Path) -> None:
        self.project = project
        self.all: list[NewsletterProcess] = []
        self.excused: set[int] = set()  # killed, or expected to stop with an error

    def start(self, kind: str) -> NewsletterProcess:
        args = {
            "send": ("send", MONTH, "--yes", "--workers", str(THREADS)),
            "worker": ("worker", "--workers", str(THREADS), "--poll", "0.2"),
            "worker --once": ("worker", "--once", "--workers", str(THREADS)),
        }[kind]
        proc = NewsletterProcess(self.project, *args)
        self.all.append(proc)
        return proc

    def alive(self) -> list[NewsletterProcess]:
        return [p for p in self.all if p.poll() is None]

    def kill(self, proc: NewsletterProcess) -> None:
        proc.kill()  # and reaped: a zombie's pid would still look alive to release_stale
        self.excused.add(proc.pid)

    def failures(self) -> list[str]:
        """Output of every process that exited non-zero without being killed."""
        return [
            f"{p!r}:\n{p.output()[-6000:]}"
            for p in self.all
            if p.pid not in self.excused and p.poll() not in (None, 0)
        ]

    def stop_all(self) -> list[int | None]:
        """Let `send` and `worker --once` end by themselves, SIGTERM the long-running
        workers (in-flight messages finish); every exit code."""
        alive = self.alive()
        endless = [p for p in alive if p.args[0] == "worker" and "--once" not in p.args]
        return [p.wait(60) for p in alive if p not in endless] + [p.terminate(60) for p in endless]

    def cleanup(self) -> None:
        for p in self.all:
            if p.poll() is None:
                p.kill()

    def describe(self) -> str:
        return "\n".join(f"{p!r}: {p.output()[-600:]}" for p in self.all[-6:])


def wait_for(condition, what: str, fleet: Fleet, limit: float) -> None:
    """Poll ``condition`` (a cheap check) until it holds; fail after ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}\n{fleet.describe()}")
        time.sleep(0.01)


def finish(fleet: Fleet, settings, limit: float) -> None:
    """Keep a `worker --once` going until the send is done (it also puts back the rows
    of killed processes); then stop the long-running workers, which must exit 0."""
    deadline = time.monotonic() + limit
    while (status := send_status(settings, MONTH)) is None or status.status != "done":
        if time.monotonic() > deadline:
            pytest.fail(f"the send is not done: {status}\n{fleet.describe()}")
        if not fleet.alive():
            fleet.start("worker --once")
        time.sleep(0.2)
    assert all(code == 0 for code in fleet.stop_all()), fleet.describe()
    assert not fleet.failures(), "\n".join(fleet.failures())


def duplicates_per_kill(found: Audit, boundaries: list[int]) -> list[int]:
    """Extra copies per kill, each counted under the first kill after its previous copy
    came (the kill that caused it is that one or a later one). A copy with no kill between
    it and the previous one is counted last, under index -1."""
    per_kill = [0] * (len(boundaries) + 1)
    for positions in found.positions.values():
        for before in positions[:-1]:
            after_kills = [i for i, b in enumerate(boundaries) if b > before]
            per_kill[after_kills[0] if after_kills else -1] += 1
    return per_kill


def check_end_state(server: SmtpTestServer, project: Path, people, kills: int, boundaries):
    """Audit every message the server took; print and bound the duplicates."""
    settings = settings_of(project)
    found = audit(
        [(m.rcpt_tos, m.data) for m in server.messages],
        expected_digests(people),
        settings=settings,
        ids=subscriber_ids(settings),
    )
    per_kill = duplicates_per_kill(found, boundaries)
    print(
        f"{len(server.messages)} messages, {kills} kills, duplicates per kill "
        f"{per_kill[:-1]}, total {found.extra_copies} (bound {kills} x {BOUND})"
    )
    assert not found.missing, found.summary()
    assert not found.unexpected, found.summary()
    assert not found.wrong, found.summary()
    assert per_kill[-1] == 0, f"{per_kill[-1]} copies sent twice with no crash between"
    assert found.extra_copies <= kills * BOUND, found.summary()
    # A copy is caused by a kill after its first copy arrived: the copies whose first one
    # came after kill j are bounded by the kills that followed.
    for j in range(len(boundaries)):
        later = sum(per_kill[j:-1])
        assert later <= (len(boundaries) - j) * BOUND, (j, per_kill)
    rows = ledger_rows(settings, MONTH)
    statuses = {r.status for a, r in rows.items() if people[a][1] is not None}
    assert statuses == {"sent"}, statuses
    return found


@pytest.fixture
def chaos_project(isolated_env: Path, store_url: str, smtp_server: SmtpTestServer) -> Path:
    project = write_send_project(isolated_env / "chaos", store_url, smtp_server.url)
    add_many(settings_of(project), bulk_people(PEOPLE), isolated_env)
    return project


def test_sigkilled_senders_and_workers_lose_nothing(
    chaos_project: Path, smtp_server: SmtpTestServer, store_url: str
) -> None:
    rng = random.Random(chaos_seed())
    # A little slower than the machine allows, so twenty kills land in one send.
    smtp_server.delay_all = 0.004
    settings = settings_of(chaos_project)
    fleet = Fleet(chaos_project)
    boundaries: list[int] = []
    started = time.monotonic()
    try:
        fleet.start("send")
        fleet.start("worker")
        fleet.start("worker --once")
        while len(boundaries) < KILLS:
            target = len(smtp_server.messages) + rng.randint(1, 18)
            wait_for(
                lambda t=target: len(smtp_server.messages) >= t,
                f"message {target} (kill {len(boundaries) + 1})",
                fleet,
                60,
            )
            alive = fleet.alive()
            if not alive:  # everything exited between two looks: nothing to kill now
                fleet.start("worker --once")
                continue
            victim = rng.choice(alive)
            fleet.kill(victim)
            boundaries.append(len(smtp_server.messages))
            print(
                f"kill {len(boundaries)} at message {boundaries[-1]}, "
                f"{time.monotonic() - started:.1f} s: {victim!r}"
            )
            fleet.start(rng.choice(["send", "worker", "worker --once", "worker --once"]))
        finish(fleet, settings, RUN_LIMIT - (time.monotonic() - started))
    finally:
        fleet.cleanup()
    print(f"{len(fleet.all)} processes, done in {time.monotonic() - started:.1f} s")
    check_end_state(smtp_server, chaos_project, bulk_people(PEOPLE), KILLS, boundaries)


FAST_PEOPLE = 2400


def test_each_sigkill_at_full_speed_repeats_only_the_messages_in_flight(
    isolated_env: Path, store_url: str, smtp_server: SmtpTestServer
) -> None:
    """One process at a time, at full speed, killed 20 times at random points: the copies
    each kill causes are that process's messages in flight, never more than BOUND."""
    rng = random.Random(chaos_seed())
    project = write_send_project(isolated_env / "fast", store_url, smtp_server.url)
    people = bulk_people(FAST_PEOPLE)
    add_many(settings_of(project), people, isolated_env)
    settings = settings_of(project)
    fleet = Fleet(project)
    boundaries: list[int] = []
    started = time.monotonic()
    try:
        proc = fleet.start("send")
        while len(boundaries) < KILLS:
            target = len(smtp_server.messages) + rng.randint(10, 80)
            wait_for(
                lambda t=target, p=proc: len(smtp_server.messages) >= t or p.poll() is not None,
                f"message {target} (kill {len(boundaries) + 1})",
                fleet,
                60,
            )
            assert proc.poll() is None, (
                f"the process ended before kill {len(boundaries) + 1}: {proc!r}\n{proc.output()}"
            )
            fleet.kill(proc)
            boundaries.append(len(smtp_server.messages))
            proc = fleet.start(rng.choice(["send", "worker --once"]))
        # Twenty process starts on a loaded machine take a while: a limit, not a margin.
        finish(fleet, settings, 4 * RUN_LIMIT - (time.monotonic() - started))
    finally:
        fleet.cleanup()
    found = check_end_state(smtp_server, project, people, KILLS, boundaries)
    per_kill = duplicates_per_kill(found, boundaries)
    assert max(per_kill[:-1]) <= BOUND, per_kill


# --- the database goes away --------------------------------------------------------------

SMALL = 240


@pytest.fixture
def own_database(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A PostgreSQL database of this test only (its backends may be terminated)."""
    from sqlalchemy.exc import OperationalError

    try:
        url = create_database("postgres", tmp_path / "db", PG_SERVER)
    except OperationalError:
        require_or_skip(
            "NEWSLETTER_REQUIRE_POSTGRES", f"PostgreSQL is not reachable at {PG_SERVER}"
        )
    yield url
    drop_database(url, PG_SERVER)


def _small_send(folder: Path, url: str, server: SmtpTestServer) -> Path:
    project = write_send_project(folder / "project", url, server.url)
    add_many(settings_of(project), bulk_people(SMALL), folder)
    plan_issue_send(settings_of(project), MONTH)
    return project


def test_postgres_connections_cut_during_a_send(
    tmp_path: Path, own_database: str, smtp_server: SmtpTestServer
) -> None:
    project = _small_send(tmp_path, own_database, smtp_server)
    smtp_server.delay_all = 0.004
    fleet = Fleet(project)
    boundaries: list[int] = []
    try:
        worker = fleet.start("worker")
        for at, mid_transaction in ((40, False), (120, True)):
            wait_for(lambda a=at: len(smtp_server.messages) >= a, f"message {at}", fleet, 60)
            if mid_transaction:  # cut while a transaction of the worker is open
                assert terminate_busy_backends(own_database, PG_SERVER) >= 1
            else:
                assert terminate_backends(own_database, PG_SERVER) >= 1
            # The worker may go on (a new connection) or stop with a clear error; what it
            # sent and did not record up to its end may go again. Wait for either.
            cut_at = len(smtp_server.messages)
            wait_for(
                lambda c=cut_at, w=worker: (
                    w.poll() is not None or len(smtp_server.messages) >= c + 30
                ),
                "the worker to stop or go on",
                fleet,
                60,
            )
            stopped = worker.poll() is not None
            boundaries.append(len(smtp_server.messages))
            print(
                f"cut the connections at message {at}: the worker "
                + ("stopped: " + worker.output().strip().splitlines()[-1] if stopped else "went on")
            )
            if stopped:
                out = worker.output()
                assert "Traceback" not in out and "Error:" in out, out
                fleet.excused.add(worker.pid)
                worker = fleet.start("worker")
        finish(fleet, settings_of(project), RUN_LIMIT)
    finally:
        fleet.cleanup()
    check_end_state(smtp_server, project, bulk_people(SMALL), len(boundaries), boundaries)


LOCKER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=60)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
db.execute("ROLLBACK")
"""


def test_a_sqlite_lock_held_past_the_busy_timeout_during_a_send(
    tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    url = create_database("sqlite", tmp_path / "db", PG_SERVER)
    project = _small_send(tmp_path, url, smtp_server)
    smtp_server.delay_all = 0.004
    fleet = Fleet(project)
    locker = None
    try:
        worker = fleet.start("worker")
        wait_for(lambda: len(smtp_server.messages) >= 40, "message 40", fleet, 60)
        locker = subprocess.Popen(
            [sys.executable, "-c", LOCKER, url.removeprefix("sqlite:///")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
        # Held until the worker gave up (it waits busy_timeout per statement), or for
        # well past the busy timeout if it keeps waiting.
        worker.wait(max(30.0, 6 * SQLITE_BUSY_TIMEOUT_MS / 1000))
        held_until_exit = worker.poll() is not None
        boundary = len(smtp_server.messages)  # what the worker sent while it could
        assert locker.stdin is not None
        locker.stdin.write("\n")
        locker.stdin.flush()
        assert locker.wait(30) == 0
        print(
            "the worker "
            + (
                "stopped: " + worker.output().strip().splitlines()[-1]
                if held_until_exit
                else "waited"
            )
        )
        if held_until_exit:
            out = worker.output()
            assert "Traceback" not in out and "locked" in out, out
            fleet.excused.add(worker.pid)
        finish(fleet, settings_of(project), RUN_LIMIT)
    finally:
        if locker is not None and locker.poll() is None:
            locker.kill()
            locker.wait()
        fleet.cleanup()
    check_end_state(smtp_server, project, bulk_people(SMALL), 1, [boundary])
