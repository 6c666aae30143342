"""Database faults are clear errors, not tracebacks: a SQLite store locked by another
process beyond the busy timeout, and a PostgreSQL connection ended mid-command."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.store import db, upgrade_database
from tests.plugin import PG_SERVER, require_or_skip

pytestmark = pytest.mark.slow

# Holds SQLite's write lock (BEGIN EXCLUSIVE) until told to stop on stdin.
LOCKER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("ROLLBACK")
conn.close()
"""
APP_NAME = "newsletter-fault-test"


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_a_store_locked_by_another_process_is_a_clear_error(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = isolated_env / "subscribers" / "newsletter.db"
    url = f"sqlite:///{path}"
    upgrade_database(url)
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", url)
    # The lock is held until released below, so any timeout is exceeded; a short one
    # only keeps the test quick.
    monkeypatch.setattr(db, "SQLITE_BUSY_TIMEOUT_MS", 100)
    locker = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
        result = run("subscribers", "add", "ann@example.org", "--topics", "CBT")
    finally:
        assert locker.stdin is not None
        locker.stdin.write("go\n")
        locker.stdin.flush()
        locker.wait(timeout=30)
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # a click error, not a crash
    assert "locked by another process" in result.output and "try again" in result.output
    assert "hint:" in result.output and "Traceback" not in result.output
    # Nothing was written; with the lock gone the same command works.
    assert "ann@example.org" not in run("subscribers", "list").output
    assert run("subscribers", "add", "ann@example.org", "--topics", "CBT").exit_code == 0


@pytest.fixture
def scratch_database() -> Iterator[tuple[str, str]]:
    """(URL, name) of a migrated PostgreSQL database made for this test alone."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError

    server = db.normalise_url(PG_SERVER)
    admin = create_engine(server, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    name = f"newsletter_fault_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError:
        admin.dispose()
        require_or_skip(
            "NEWSLETTER_REQUIRE_POSTGRES", f"PostgreSQL is not reachable at {PG_SERVER}"
        )
    url = make_url(server).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade_database(url)
        yield url, name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_a_lost_postgresql_connection_is_a_clear_error(
    scratch_database: tuple[str, str], isolated_env: Path
) -> None:
    from sqlalchemy import create_engine, text

    url, name = scratch_database
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env |= {"NEWSLETTER_DATABASE_URL": url, "PGAPPNAME": APP_NAME}
    with engine.connect() as watcher, engine.connect() as locker:
        # The command will wait on this lock: that is where its backend is ended.
        locker.execute(text("BEGIN"))
        locker.execute(text("LOCK TABLE subscribers IN ACCESS EXCLUSIVE MODE"))
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "newsletter",
                "subscribers",
                "add",
                "ann@example.org",
                "--all-topics",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            waiting = text(
                "SELECT pid FROM pg_stat_activity WHERE datname = :db "
                "AND application_name = :app AND wait_event_type = 'Lock'"
            )
            deadline = time.monotonic() + 120
            pid = None
            while pid is None:
                pid = watcher.execute(waiting, {"db": name, "app": APP_NAME}).scalar()
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "the command never reached the lock"
                time.sleep(0.05)
            ended = watcher.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            assert ended.scalar() is True
            out, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
            locker.execute(text("ROLLBACK"))
        assert proc.returncode == 1, (out, err)
        assert "lost the connection to the database server" in err
        assert "nothing was half-written, re-run the command" in err and "hint:" in err
        assert "Traceback" not in err + out
        count = watcher.execute(text("SELECT count(*) FROM subscribers")).scalar()
        assert count == 0
    engine.dispose()
