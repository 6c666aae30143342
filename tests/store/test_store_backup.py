"""Whole-store backups: `db dump` / `db restore` and `db copy`, between SQLite and PostgreSQL.

The source store is filled by the real services (people added and imported, a send
through the scripted SMTP server with a hard bounce, a pause, an unsubscribe, an erasure,
a schedule, a sign-up request), so every kind of row is in it. After a round trip to the
other kind of database every table holds the same rows, read back through the models.
"""

from __future__ import annotations

import gzip
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.config import load_settings
from newsletter.services import App, schedules, signup, subscribers
from newsletter.services.imports import import_subscribers
from newsletter.store.backup import tables
from newsletter.store.db import normalise_url, upgrade_database
from newsletter.store.models import Base
from tests.plugin import DATA_TABLES, PG_SERVER, REPO, require_or_skip
from tests.support.fault_smtp import FaultSmtpServer
from tests.support.services import (
    SAMPLE_MONTH,
    SAMPLE_PEOPLE,
    WorkerOptions,
    add_people,
    plan_issue_send,
    run_worker,
)

DEAD = "pdt@example.org"


def _empty_pg(request: pytest.FixtureRequest) -> str:
    """The session's migrated PostgreSQL scratch database, emptied (as ``store_url`` empties
    it: making a new database each time is slow)."""
    url = request.getfixturevalue("pg_scratch")
    if url is None:
        require_or_skip(
            "NEWSLETTER_REQUIRE_POSTGRES", f"PostgreSQL is not reachable at {PG_SERVER}"
        )
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {', '.join(DATA_TABLES)} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return str(url)


def _other(store_url: str, tmp_path: Path, request: pytest.FixtureRequest, name: str) -> str:
    """An empty database of the other kind than ``store_url``'s."""
    if store_url.startswith("sqlite"):
        return _empty_pg(request)
    return f"sqlite:///{tmp_path / name / 'newsletter.db'}"


@pytest.fixture
def source(isolated_env: Path, store_url: str, fault_smtp: FaultSmtpServer) -> Path:
    """A project whose store (``store_url``) holds every kind of row."""
    (isolated_env / "newsletter.toml").write_text(
        'sender_name = "Research Digest"\n'
        'sender_address = "digest@example.org"\n'
        'postal_address = "1 Example Street, Exampletown"\n'
        'secret_key = "test-secret"\n'
        'base_url = "https://news.example.org"\n'
        f'database_url = "{store_url}"\n'
        f'smtp_url = "{fault_smtp.url}"\n'
    )
    shutil.copytree(REPO / "issues", isolated_env / "issues")
    settings = load_settings(isolated_env / "newsletter.toml", environ={})
    add_people(settings, {addr: topics for addr, (topics, _) in SAMPLE_PEOPLE.items()})
    csv = isolated_env / "list.csv"
    csv.write_text(
        "email,name,topics,created_at\n"
        "imported@example.org,Zoë Ünal,Training,2024-02-29T13:14:15.123456+00:00\n"
        "leaver@example.org,Lee Ver,,2025-01-01\n"
    )
    with App(settings) as app:
        import_subscribers(app, csv)
        schedules.schedule_once(app, SAMPLE_MONTH, "2099-01-05 09:00")
    plan_issue_send(settings, SAMPLE_MONTH)
    fault_smtp.refuse("rcpt", "550 5.1.1 <pdt@example.org>: User unknown", recipient=DEAD)
    run_worker(settings, WorkerOptions(months=[SAMPLE_MONTH], threads=1))
    with App(settings) as app:
        subscribers.pause(app, "training@example.org")
        subscribers.unsubscribe(app, "leaver@example.org", detail="moving away")
        subscribers.erase(app, "nomatch@example.org")
        signup.request_signup(app, "new@example.org", "New Person", ["training"], False, None)
    return isolated_env


def contents(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, read through the models' types, in a stable order."""
    engine = sa.create_engine(normalise_url(url))
    try:
        with engine.connect() as conn:
            return {
                t.name: sorted((tuple(r) for r in conn.execute(sa.select(t))), key=repr)
                for t in Base.metadata.sorted_tables
            }
    finally:
        engine.dispose()


def _run(*args: str, url: str) -> Any:
    return CliRunner().invoke(cli, list(args), env={"NEWSLETTER_DATABASE_URL": url})


def _assert_same(source_url: str, target_url: str) -> None:
    before, after = contents(source_url), contents(target_url)
    assert {t: len(r) for t, r in after.items()} == {t: len(r) for t, r in before.items()}
    assert after == before
    # The store held every kind of history that matters.
    held = {t for t, rows in before.items() if rows}
    assert {
        "subscribers",
        "subscriber_topics",
        "consent_events",
        "suppressions",
        "signup_requests",
        "sends",
        "send_variants",
        "deliveries",
        "bounces",
        "schedules",
        "store_meta",
    } <= held


def _next_ids_continue(url: str, source_url: str) -> None:
    """A row added after the restore gets a new id above every id the source gave."""
    top = max(r[0] for r in contents(source_url)["subscribers"])
    settings = load_settings(overrides={"database_url": url}, environ={})
    with App(settings) as app:
        added = subscribers.add_subscriber(app, "later@example.org")
        assert added.id > top
        # The suppression salt came along: the erased address is still suppressed.
        with pytest.raises(Exception, match="erased"):
            subscribers.add_subscriber(app, "nomatch@example.org")


def test_dump_restore_and_copy_into_the_other_database(
    source: Path, store_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    restored = _other(store_url, tmp_path, request, "restored")
    dump = tmp_path / "backup.jsonl.gz"
    result = _run("db", "dump", str(dump), "--json", url=store_url)
    assert result.exit_code == 0, result.output
    manifest = json.loads(result.output)
    assert set(manifest["counts"]) == {t.name for t in tables()}
    assert (dump.stat().st_mode & 0o777) == 0o600
    result = _run("db", "restore", str(dump), url=restored)
    assert result.exit_code == 0, result.output
    _assert_same(store_url, restored)
    _next_ids_continue(restored, store_url)

    copied = _other(store_url, tmp_path, request, "copied")  # (emptied again)
    result = _run("db", "copy", "--to", copied, url=store_url)
    assert result.exit_code == 0, result.output
    _assert_same(store_url, copied)
    _next_ids_continue(copied, store_url)


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    """An empty, migrated SQLite store of its own."""
    path = tmp_path / "own" / "newsletter.db"
    path.parent.mkdir()
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture(scope="module")
def small_dump(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The dump of a small SQLite store: five subscribers."""
    folder = tmp_path_factory.mktemp("small")
    url = f"sqlite:///{folder / 'newsletter.db'}"
    upgrade_database(url)
    settings = load_settings(overrides={"database_url": url}, environ={})
    add_people(settings, {f"p{i}@example.org": "Training" for i in range(5)})
    dump = folder / "backup.jsonl.gz"
    assert _run("db", "dump", str(dump), url=url).exit_code == 0
    return dump


def test_every_table_of_the_models_is_in_the_dump(sqlite_url: str, tmp_path: Path) -> None:
    dump = tmp_path / "empty.jsonl.gz"
    assert _run("db", "dump", str(dump), url=sqlite_url).exit_code == 0
    with gzip.open(dump, "rt") as fh:
        lines = [json.loads(line) for line in fh]
    headings = [x["table"] for x in lines if isinstance(x, dict) and "table" in x]
    assert headings == [t.name for t in Base.metadata.sorted_tables]
    assert set(lines[0]["counts"]) == set(Base.metadata.tables)


def test_a_target_with_data_is_refused_and_left_as_it_was(store_url: str, small_dump: Path) -> None:
    settings = load_settings(overrides={"database_url": store_url}, environ={})
    add_people(settings, {"there@example.org": "Training"})
    before = contents(store_url)
    result = _run("db", "restore", str(small_dump), url=store_url)
    assert result.exit_code == 1
    assert "not empty (1 in subscribers" in result.output and "hint:" in result.output
    assert "Traceback" not in result.output
    assert contents(store_url) == before


@pytest.mark.parametrize(
    "damage, said",
    [
        ("cut", "cut short"),
        ("bad_row", "line 2"),
        ("not_gzip", "not a readable gzip file"),
        ("no_end", "end line is missing"),
        ("revision", "revision"),
    ],
)
def test_a_damaged_dump_restores_nothing(
    sqlite_url: str, small_dump: Path, tmp_path: Path, damage: str, said: str
) -> None:
    whole = small_dump.read_bytes()
    lines = gzip.decompress(whole).splitlines(keepends=True)
    bad = tmp_path / "bad.jsonl.gz"
    if damage == "cut":
        bad.write_bytes(whole[: len(whole) // 2])
    elif damage == "not_gzip":
        bad.write_bytes(b"email,name\nann@example.org,Ann\n")
    elif damage == "bad_row":
        lines[1] = b'{"table": "subscribers", "columns": ["id"]}\n'
        bad.write_bytes(gzip.compress(b"".join(lines)))
    elif damage == "no_end":
        bad.write_bytes(gzip.compress(b"".join(lines[:-1])))
    else:
        head = json.loads(lines[0])
        head["revision"] = "0001"
        lines[0] = json.dumps(head).encode() + b"\n"
        bad.write_bytes(gzip.compress(b"".join(lines)))
    before = contents(sqlite_url)
    result = _run("db", "restore", str(bad), url=sqlite_url)
    assert result.exit_code == 1, result.output
    assert said in result.output and "hint:" in result.output
    assert "Traceback" not in result.output
    assert contents(sqlite_url) == before


def test_dump_refuses_to_overwrite_without_force(sqlite_url: str, tmp_path: Path) -> None:
    dump = tmp_path / "backup.jsonl.gz"
    dump.write_text("keep me")
    result = _run("db", "dump", str(dump), url=sqlite_url)
    assert result.exit_code == 1 and "--force" in result.output
    assert dump.read_text() == "keep me"
    assert _run("db", "dump", str(dump), "--force", url=sqlite_url).exit_code == 0
    assert dump.read_bytes()[:2] == b"\x1f\x8b"
    assert not list(tmp_path.glob("*.part"))


def test_copy_never_prints_the_target_password(
    sqlite_url: str, request: pytest.FixtureRequest
) -> None:
    target = _empty_pg(request)
    url = normalise_url(target).set(password="s3cret-pw").render_as_string(hide_password=False)
    result = _run("db", "copy", "--to", url, url=sqlite_url)
    assert result.exit_code == 0, result.output
    assert "s3cret-pw" not in result.output and "***" in result.output


def test_values_of_every_column_type_come_back_exactly() -> None:
    """Tables added later may use types the store has none of yet: each converts to
    JSON and back to the same Python value."""
    import datetime as dt
    import decimal

    from newsletter.store.backup import _codec
    from newsletter.store.models import UTCDateTime

    samples = [
        (UTCDateTime(), dt.datetime(2026, 2, 3, 4, 5, 6, 789012, tzinfo=dt.UTC)),
        (sa.DateTime(), dt.datetime(2026, 2, 3, 4, 5, 6, 7)),
        (sa.DateTime(timezone=True), dt.datetime(2026, 2, 3, 4, 5, tzinfo=dt.UTC)),
        (sa.Date(), dt.date(2024, 2, 29)),
        (sa.Time(), dt.time(23, 59, 58, 1)),
        (sa.Interval(), dt.timedelta(days=2, microseconds=5)),
        (sa.LargeBinary(), bytes(range(256))),
        (sa.Numeric(10, 4), decimal.Decimal("12.3400")),
        (sa.Float(), 0.1),
        (sa.Uuid(), uuid.UUID("12345678-1234-5678-1234-567812345678")),
        (sa.JSON(), {"a": [1, 2.5, None, "é"], "b": {"c": True}}),
        (sa.Boolean(), False),
        (sa.Integer(), 2**40),
        (sa.Text(), 'quote " newline \n nul-free é 🙂'),
    ]
    for sql_type, value in samples:
        to_json, from_json = _codec(sql_type)
        text = json.dumps(to_json(value))
        back = from_json(json.loads(text))
        assert back == value and type(back) is type(value), sql_type
