"""Helpers for the fault and chaos tests: projects, databases of their own, processes.

- :func:`write_send_project` makes a project folder like the ``send_project`` fixture's,
  on any database URL and SMTP URL, with extra settings.
- :func:`create_database` / :func:`drop_database` make an empty migrated database that
  belongs to one test (a SQLite file, or a PostgreSQL database it may terminate the
  backends of).
- :class:`NewsletterProcess` runs ``python -m newsletter ...`` on a project, its output
  in a file (many processes at once never block on a full pipe).
- :func:`expected_digests`, :func:`subscriber_ids` and :func:`ledger_rows` read what the
  audit of :mod:`tests.support.audit` compares against.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from newsletter.config import Settings, load_settings
from newsletter.services import App, subscribers
from newsletter.store import ledger, open_store
from newsletter.store.ledger import DeliveryRow
from tests.support.services import SAMPLE_PEOPLE

REPO = Path(__file__).resolve().parents[2]


def write_send_project(folder: Path, database_url: str, smtp_url: str, extra: str = "") -> Path:
    """A project in ``folder``: the sample issues, https links, retries due at once."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "newsletter.toml").write_text(
        'sender_name = "Research Digest"\n'
        'sender_address = "digest@example.org"\n'
        'postal_address = "1 Example Street, Exampletown"\n'
        'secret_key = "test-secret"\n'
        'base_url = "https://news.example.org"\n'
        f'database_url = "{database_url}"\n'
        f'smtp_url = "{smtp_url}"\n'
        "retry_initial_delay = 0\n" + extra
    )
    if not (folder / "issues").exists():
        shutil.copytree(REPO / "issues", folder / "issues")
    return folder


def add_settings(project: Path, lines: str) -> None:
    """Append settings (TOML lines) to the project's newsletter.toml."""
    toml = project / "newsletter.toml"
    toml.write_text(toml.read_text() + lines.rstrip("\n") + "\n")


def settings_of(project: Path) -> Settings:
    """The project's settings, from its newsletter.toml only."""
    return load_settings(project / "newsletter.toml", environ={})


# --- people ------------------------------------------------------------------------------


def bulk_people(n: int) -> dict[str, tuple[str | None, set[str] | None]]:
    """``n`` people whose topics cycle through the sample people's (every variant, and
    someone with no matching topic): address -> (topics, expected summaries or None)."""
    kinds = list(SAMPLE_PEOPLE.values())
    return {f"p{i:04d}@example.org": kinds[i % len(kinds)] for i in range(n)}


def add_many(
    settings: Settings, people: dict[str, tuple[str | None, set[str] | None]], folder: Path
) -> None:
    """Add everyone active, through the CSV import (one subscriber per transaction is
    too slow on PostgreSQL for hundreds of people); the file is written in ``folder``."""
    import csv

    from newsletter.services import imports

    path = folder / "people.csv"
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["email", "name", "status", "topics", "all_topics"])
        for addr, (topics, _) in people.items():
            writer.writerow(
                [addr, "Ann Example", "active", topics or "", "true" if topics is None else "false"]
            )
    with App(settings) as app:
        report = imports.import_subscribers(app, path)
    assert report.added == len(people) and not report.errors, report.to_dict()


def expected_digests(
    people: dict[str, tuple[str | None, set[str] | None]],
) -> dict[str, set[str] | None]:
    """address -> the summaries their digest holds (None: nothing may arrive)."""
    return {addr: want for addr, (_, want) in people.items()}


def subscriber_ids(settings: Settings) -> dict[int, str]:
    """subscriber id -> address, for checking whose signed links a message carries."""
    out: dict[int, str] = {}
    with App(settings) as app:
        page = 1
        while True:
            found = subscribers.list_subscribers(app, page=page, page_size=500)
            for sub in found.items:
                out[sub.id] = sub.email
            if len(found.items) < 500:
                return out
            page += 1


def ledger_rows(settings: Settings, month: str) -> dict[str, DeliveryRow]:
    """The delivery rows of the send of ``month``, by address."""
    with open_store(settings) as store:
        return {r.email: r for r in ledger.list_deliveries(store, month, limit=100_000)}


def send_status(settings: Settings, month: str) -> ledger.SendStatus | None:
    """The send of ``month`` with its counts, or None when it is not planned yet."""
    with open_store(settings) as store:
        if ledger.find_send(store, month) is None:
            return None
        return ledger.send_status(store, month)


# --- databases of one test ---------------------------------------------------------------


def create_database(kind: str, folder: Path, pg_server: str) -> str:
    """An empty migrated database: a SQLite file in ``folder``, or a new PostgreSQL
    database on ``pg_server`` (raises sqlalchemy's OperationalError when unreachable)."""
    from newsletter.store import upgrade_database

    if kind == "sqlite":
        folder.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{folder / 'newsletter.db'}"
    else:
        from sqlalchemy import create_engine, text
        from sqlalchemy.engine import make_url

        from newsletter.store import normalise_url

        server = normalise_url(pg_server)
        name = f"newsletter_fault_{uuid.uuid4().hex[:12]}"
        admin = create_engine(
            server, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3}
        )
        try:
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            admin.dispose()
        url = make_url(server).set(database=name).render_as_string(hide_password=False)
    upgrade_database(url)
    return url


def drop_database(url: str, pg_server: str) -> None:
    """Drop a PostgreSQL database made by :func:`create_database` (SQLite: nothing)."""
    if not url.startswith("postgresql"):
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from newsletter.store import normalise_url

    name = make_url(url).database
    admin = create_engine(normalise_url(pg_server), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def terminate_backends(url: str, pg_server: str) -> int:
    """Cut every connection to the database of ``url`` (pg_terminate_backend, from a
    connection to another database); how many were cut."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from newsletter.store import normalise_url

    name = make_url(url).database
    admin = create_engine(normalise_url(pg_server), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            cut = conn.execute(
                text(
                    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) "
                    "FROM pg_stat_activity WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": name},
            ).scalar_one()
    finally:
        admin.dispose()
    return int(cut)


def terminate_busy_backends(url: str, pg_server: str, limit: float = 30.0) -> int:
    """Cut the connections to the database of ``url`` at a moment when at least one of
    them is inside a transaction (polled, up to ``limit`` seconds); how many busy ones
    were cut (0 if none was seen busy in time)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from newsletter.store import normalise_url

    name = make_url(url).database
    admin = create_engine(normalise_url(pg_server), isolation_level="AUTOCOMMIT")
    deadline = time.monotonic() + limit
    try:
        with admin.connect() as conn:
            while time.monotonic() < deadline:
                busy = conn.execute(
                    text(
                        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) "
                        "FROM pg_stat_activity WHERE datname = :name "
                        "AND pid <> pg_backend_pid() "
                        "AND state IN ('active', 'idle in transaction')"
                    ),
                    {"name": name},
                ).scalar_one()
                if busy:
                    terminate_backends(url, pg_server)  # and the idle ones with them
                    return int(busy)
    finally:
        admin.dispose()
    return 0


# --- processes ---------------------------------------------------------------------------


class NewsletterProcess:
    """``python -m newsletter ARGS`` in ``project``, its output in ``log``."""

    def __init__(self, project: Path, *args: str, log: Path | None = None) -> None:
        self.args = args
        self.log = log or project / f"process-{uuid.uuid4().hex[:8]}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
        env["NEWSLETTER_CONFIG"] = str(project / "newsletter.toml")
        env["COLUMNS"] = "200"  # rich wraps nothing the tests look for
        self.started = time.monotonic()
        self.ended: float | None = None
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "newsletter", *args],
                cwd=project,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    @property
    def pid(self) -> int:
        """The process id."""
        return self.proc.pid

    def poll(self) -> int | None:
        """The exit code, or None while it runs (notes when it ended)."""
        code = self.proc.poll()
        if code is not None and self.ended is None:
            self.ended = time.monotonic()
        return code

    @property
    def elapsed(self) -> float:
        """Seconds from start to exit (or to now, while it runs)."""
        return (self.ended or time.monotonic()) - self.started

    def wait(self, timeout: float) -> int | None:
        """Wait up to ``timeout`` seconds for the exit; the exit code or None."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.poll()

    def kill(self) -> None:
        """SIGKILL, then reap it, so its pid is really gone (a zombie still 'runs')."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        self.poll()

    def terminate(self, timeout: float = 60) -> int | None:
        """SIGTERM (in-flight messages finish), then wait; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def output(self) -> str:
        """Everything it printed so far."""
        return self.log.read_text(errors="replace")

    def __repr__(self) -> str:
        return f"<newsletter {' '.join(self.args)} pid={self.pid} rc={self.proc.poll()}>"
