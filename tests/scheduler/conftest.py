"""Fixtures of the scheduler tests: a project on SQLite or PostgreSQL, a real SMTP server,
and real ``python -m newsletter scheduler run`` processes with short lease times.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from newsletter.config import load_settings
from newsletter.store import add_subscriber, open_store
from tests.delivery.conftest import smtp_server, smtp_server_factory  # noqa: F401
from tests.store.conftest import pg_scratch, sqlite_template, store_url  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
MONTH = "2026-11"  # the ready sample issue
AUTHOR = "author@example.org"
PEOPLE = {
    "all@example.org": None,
    "training@example.org": "Training",
    "pdt@example.org": "psychodynamic-therapy-pdt",
}
SCHEDULER_TABLES = ("schedule_runs", "schedules", "scheduler_lease")


@pytest.fixture
def project(isolated_env: Path, store_url: str, smtp_server) -> Path:  # noqa: F811
    """A project: sample issues, three subscribers, the test SMTP server, fast scheduler."""
    (isolated_env / "newsletter.toml").write_text(
        'sender_address = "digest@example.org"\n'
        'postal_address = "1 Example Street, Exampletown"\n'
        'secret_key = "test-secret"\n'
        f'author_address = "{AUTHOR}"\n'
        f'database_url = "{store_url}"\n'
        f'smtp_url = "{smtp_server.url}"\n'
        "scheduler_lease_seconds = 3\n"
        "scheduler_heartbeat_seconds = 0.3\n"
        "scheduler_poll_seconds = 0.3\n"
    )
    shutil.copytree(REPO / "issues", isolated_env / "issues")
    settings = load_settings(isolated_env / "newsletter.toml", environ={})
    with open_store(settings) as store:
        _clean(store)
        for addr, topics in PEOPLE.items():
            if topics is None:
                add_subscriber(store, addr, all_topics=True)
            else:
                add_subscriber(store, addr, topics=topics)
    return isolated_env


def _clean(store) -> None:
    """The PostgreSQL scratch database is shared by the session: empty our tables."""
    from sqlalchemy import text

    with store.engine.begin() as conn:
        for table in SCHEDULER_TABLES:
            conn.execute(text(f"DELETE FROM {table}"))
        conn.execute(text("DELETE FROM store_meta WHERE key LIKE 'send_report:%'"))
        conn.execute(text("DROP TABLE IF EXISTS apscheduler_jobs"))


def settings_of(project: Path):
    """The project's settings."""
    return load_settings(project / "newsletter.toml", environ={})


def soon(seconds: float) -> str:
    """A local (UTC) time ``seconds`` ahead, to the second, as --at takes it."""
    moment = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


class SchedulerProcess:
    """A real ``newsletter scheduler run`` subprocess whose output is collected."""

    def __init__(self, project: Path, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
        env["NEWSLETTER_CONFIG"] = str(project / "newsletter.toml")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "newsletter", "scheduler", "run", *args],
            cwd=project,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output:
                return
            if self.proc.poll() is not None:
                self._reader.join(2)
                if text in self.output:
                    return
                raise AssertionError(f"scheduler exited ({self.proc.returncode}):\n{self.output}")
            time.sleep(0.05)
        raise AssertionError(f"no {text!r} within {timeout} s:\n{self.output}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(30)
        self._reader.join(5)
        return code

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def scheduler_process(project: Path) -> Iterator:
    """Start scheduler processes; every one still running is stopped after the test."""
    made: list[SchedulerProcess] = []

    def start(*args: str, started: bool = True) -> SchedulerProcess:
        p = SchedulerProcess(project, *args)
        made.append(p)
        if started:
            p.wait_for("scheduler started")
        return p

    yield start
    for p in made:
        if p.proc.poll() is None:
            p.kill()
