"""Migrations agree with the models; opening a missing or old store fails clearly."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.store import (
    StoreNotMigratedError,
    StoreUnavailableError,
    database_status,
    normalise_url,
    open_store,
    upgrade_database,
)


def test_models_and_migrations_agree(store) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from newsletter.store.models import Base, is_mapped_name

    with store.engine.connect() as conn:
        opts = {"compare_type": True, "include_name": is_mapped_name}
        context = MigrationContext.configure(conn, opts=opts)
        assert compare_metadata(context, Base.metadata) == []


def test_sqlite_connection_settings(store) -> None:
    from sqlalchemy import text

    if store.dialect != "sqlite":
        pytest.skip("SQLite only")
    with store.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 5000


def test_upgrade_is_repeatable_and_status_reports(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/sub/dir/newsletter.db"
    assert database_status(url).current is None
    first = upgrade_database(url)
    assert first.up_to_date and first.current == first.head
    assert upgrade_database(url).current == first.current
    assert database_status(url).up_to_date


def test_missing_or_unmigrated_store_is_a_clear_error(tmp_path: Path) -> None:
    import sqlite3

    with pytest.raises(StoreNotMigratedError) as missing:
        open_store(f"sqlite:///{tmp_path}/none.db")
    assert "newsletter db upgrade" in (missing.value.hint or "")
    assert not (tmp_path / "none.db").exists()  # opening never creates the file
    sqlite3.connect(tmp_path / "empty.db").close()
    with pytest.raises(StoreNotMigratedError, match="no subscriber tables"):
        open_store(f"sqlite:///{tmp_path}/empty.db")


def test_unreachable_server_never_shows_the_password() -> None:
    with pytest.raises(StoreUnavailableError) as exc:
        open_store("postgresql://news:s3cret@127.0.0.1:1/news")
    assert "s3cret" not in str(exc.value) and "s3cret" not in (exc.value.hint or "")
    assert "NEWSLETTER_DATABASE_URL" in (exc.value.hint or "")


def test_url_normalisation() -> None:
    assert normalise_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert normalise_url("postgres://u@h/db").drivername == "postgresql+psycopg"
    from newsletter.store import StoreError

    with pytest.raises(StoreError, match="unsupported"):
        normalise_url("mysql://u@h/db")
    with pytest.raises(StoreError, match="not a database URL"):
        normalise_url("nonsense")


def test_head_is_signup_requests_and_it_downgrades(tmp_path: Path) -> None:
    """0005 adds the sign-up requests table (ids never reused); down to 0004 and back."""
    import sqlite3

    from alembic import command
    from sqlalchemy import create_engine

    from newsletter.store.db import alembic_config, head_revision, table_names

    url = f"sqlite:///{tmp_path}/n.db"
    assert upgrade_database(url).current == head_revision()
    engine = create_engine(url)
    try:
        assert "signup_requests" in table_names(engine)
        with engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0004")
        assert "worker_leases" not in table_names(engine)
        assert "signup_requests" not in table_names(engine)
        assert database_status(url).current == "0004"
    finally:
        engine.dispose()
    assert upgrade_database(url).up_to_date
    with sqlite3.connect(tmp_path / "n.db") as db:
        (sql,) = db.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'signup_requests'"
        ).fetchone()
    assert "AUTOINCREMENT" in sql


def test_0006_keeps_every_row_and_ids_of_erased_people_are_never_reused(tmp_path: Path) -> None:
    """Rebuilding ``subscribers`` on SQLite (for AUTOINCREMENT) cascades into nothing,
    and after it an erased person's id is not given to the next person."""
    from alembic import command
    from sqlalchemy import create_engine, text

    from newsletter.config import load_settings
    from newsletter.services import App, subscribers
    from newsletter.store.db import alembic_config

    url = f"sqlite:///{tmp_path}/n.db"
    engine = create_engine(url)
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0005_signup_requests")
        for n, who in enumerate("ab", start=1):
            conn.execute(
                text(
                    "INSERT INTO subscribers (id, email, name, status, all_topics, source, "
                    "created_at) VALUES (:n, :e, '', 'active', 0, 'cli', '2026-11-01 00:00:00')"
                ),
                {"n": n, "e": f"{who}@example.org"},
            )
            conn.execute(text("INSERT INTO subscriber_topics VALUES (:n, 'training')"), {"n": n})
            conn.execute(
                text(
                    "INSERT INTO consent_events (subscriber_id, at, event, source) "
                    "VALUES (:n, '2026-11-01 00:00:00', 'subscribed', 'cli')"
                ),
                {"n": n},
            )
    engine.dispose()
    settings = load_settings(None, environ={"NEWSLETTER_DATABASE_URL": url})
    assert upgrade_database(url).up_to_date  # 0006 rebuilds subscribers
    engine = create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM subscriber_topics")).scalar() == 2
        assert (
            conn.execute(
                text("SELECT count(*) FROM consent_events WHERE subscriber_id IS NOT NULL")
            ).scalar()
            == 2
        )
    engine.dispose()
    with App(settings) as app:
        erased = subscribers.get_subscriber(app, "b@example.org").id
        subscribers.erase(app, "b@example.org")
        newcomer = subscribers.add_subscriber(app, "c@example.org", topics="Training")
        assert newcomer.id > erased


def test_0008_gives_every_earlier_suppression_the_reason_erased(tmp_path: Path) -> None:
    """Entries written before suppression reasons existed were all erasures."""
    import sqlite3

    from alembic import command
    from sqlalchemy import create_engine

    from newsletter.store.db import alembic_config

    url = f"sqlite:///{tmp_path}/n.db"
    upgrade_database(url)
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0007")
    finally:
        engine.dispose()
    with sqlite3.connect(tmp_path / "n.db") as db:
        db.execute("INSERT INTO suppressions (email_hash, created_at) VALUES ('ab', '2026-01-01')")
    assert upgrade_database(url).up_to_date
    with sqlite3.connect(tmp_path / "n.db") as db:
        assert db.execute("SELECT reason FROM suppressions").fetchall() == [("erased",)]
        with pytest.raises(sqlite3.IntegrityError):
            db.execute("UPDATE suppressions SET reason = 'whim'")


def test_the_store_reads_the_revisions_as_alembic_does() -> None:
    """Opening a store compares revisions without importing Alembic: its reading of the
    migration files must agree with Alembic's own."""
    import subprocess
    import sys

    from alembic.script import ScriptDirectory

    from newsletter.store.db import alembic_config, head_revision, revision_graph

    script = ScriptDirectory.from_config(alembic_config())
    assert head_revision() == script.get_current_head()
    assert revision_graph() == {s.revision: s.down_revision for s in script.walk_revisions()}
    # And the commands that only use the store do not load it.
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, newsletter.cli, newsletter.services.sends, newsletter.store.db; "
            "print('alembic' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert loaded.stdout.strip() == "False"
