"""Fixtures of the store tests: every ``store`` test runs on SQLite and on PostgreSQL.

SQLite: the migrations run once per session into a template file that each test copies.
PostgreSQL: each test run creates its own scratch database on the server of
``NEWSLETTER_TEST_POSTGRES_URL`` (default: the local server), migrates it once, empties
the tables before each test, and drops it at the end.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_or_skip

PG_SERVER = os.environ.get(
    "NEWSLETTER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
DATA_TABLES = (
    "deliveries",
    "sends",
    "consent_events",
    "subscriber_topics",
    "subscribers",
    "suppressions",
)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated, empty SQLite store to copy."""
    from newsletter.store import upgrade_database

    path = tmp_path_factory.mktemp("template") / "newsletter.db"
    upgrade_database(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def pg_scratch() -> Iterator[str | None]:
    """URL of a migrated scratch database, or None when the server is unreachable."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError

    from newsletter.store import normalise_url, upgrade_database

    server = normalise_url(PG_SERVER)
    admin = create_engine(server, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    name = f"newsletter_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError:
        admin.dispose()
        yield None
        return
    url = make_url(server).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade_database(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(
    request: pytest.FixtureRequest,
    sqlite_template: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> str:
    """An empty, migrated store (also set as NEWSLETTER_DATABASE_URL for CLI tests)."""
    if request.param == "sqlite":
        target = tmp_path / "store" / "newsletter.db"
        target.parent.mkdir()
        shutil.copy(sqlite_template, target)
        url = f"sqlite:///{target}"
    else:
        url = request.getfixturevalue("pg_scratch")
        if url is None:
            require_or_skip(
                "NEWSLETTER_REQUIRE_POSTGRES", f"PostgreSQL is not reachable at {PG_SERVER}"
            )
        from sqlalchemy import create_engine, text

        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {', '.join(DATA_TABLES)} RESTART IDENTITY CASCADE"))
        engine.dispose()
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", url)
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[object]:
    """An open, empty store on SQLite or PostgreSQL."""
    from newsletter.store import open_store

    with open_store(store_url) as opened:
        yield opened
