"""A streamed CSV import, on SQLite and PostgreSQL: chunks change nothing but memory.

The importer checks and writes a file ``chunk_rows`` rows at a time inside one
transaction. These tests import generated files with small chunks and with the whole
file as one chunk (how every row was read before anything was written), and check that
the store and the report come out the same, that line numbers stay right across chunk
boundaries, and that an error in the last chunk undoes every chunk before it.
"""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import pytest
from sqlalchemy import text

from newsletter.content.taxonomy import resolve_topics
from newsletter.importers.subscribers_csv import (
    CsvError,
    ImportOptions,
    ImportReport,
    csv_line,
    import_csv,
)
from newsletter.rules import statuses
from newsletter.services.subscribers import (
    add_subscriber,
    erase,
    list_subscribers,
    unsubscribe,
)
from newsletter.store import subscribers as store_people
from newsletter.store.errors import StoreError

WHOLE_FILE = 10**9  # chunk_rows: the whole file is one chunk
TOPICS = ["CBT", "Alliance; Attachment", "empathy", "all", "", "Dropout", "Training"]
# People in the store before the import, and what the file then says about them.
KEPT_AWAY = {"gone@example.org": "unsubscribed", "dead@example.org": "bounced"}


@pytest.fixture
def app(store_app):
    return store_app


def seed(app) -> None:
    """People already in the store: active, unsubscribed, bounced, and one erased."""
    for i in range(0, 300, 3):
        add_subscriber(app, f"person{i}@example.org", name="Old Name", topics="CBT")
    add_subscriber(app, "gone@example.org")
    unsubscribe(app, "gone@example.org")
    add_subscriber(app, "dead@example.org")
    store_people.change_status(
        app.store,
        "dead@example.org",
        lambda sub: statuses.bounced(sub.status, "hard bounce: 550 5.1.1 User unknown"),
        source="cli",
    )
    add_subscriber(app, "erased@example.org")
    erase(app, "erased@example.org")


def empty_store(app) -> None:
    with app.store.engine.begin() as conn:
        for table in ("consent_events", "subscriber_topics", "bounces", "subscribers"):
            conn.execute(text(f"DELETE FROM {table}"))
        conn.execute(text("DELETE FROM suppressions"))


def big_csv(path: Path, rows: int = 30_000) -> dict[int, str]:
    """A generated list with planted faults; returns line -> expected reason words.

    Quoted names running over two lines, blank lines and bad rows are spread over the
    file, so that they fall on both sides of chunk boundaries; duplicates refer back to
    rows several chunks earlier.
    """
    rng = random.Random(14)
    out = [csv_line(["email", "name", "topics", "status"])]
    line = 2  # the physical line the next record starts on
    expected: dict[int, str] = {}
    first_line: dict[str, int] = {}
    for i in range(rows):
        email = f"person{i}@example.org"
        name = f"Person {i}"
        if i % 997 == 5:
            name = f"Person\u00a0{i}"  # not printable: the slow path of the name rule
        status = "paused" if i % 50 == 0 else "active"
        record = [email, name, rng.choice(TOPICS), status]
        if i % 1009 == 7:
            record = ["not an address", "X", "", ""]
            expected[line] = "not a valid email address"
        elif i % 1013 == 11 and first_line:
            earlier = rng.choice(sorted(first_line))
            record = [earlier.upper(), "Dup", "", ""]
            expected[line] = f"duplicate of line {first_line[earlier]}"
        elif i % 1019 == 13:
            record = [email, "N", "Alliens", ""]
            expected[line] = "unknown topic 'Alliens'"
        elif i % 541 == 3:
            record[1] = f"Two\nLines {i}"  # a quoted cell over two physical lines
            expected[line] = "the name contains a line break"
        else:
            first_line[email] = line
        written = csv_line(record)
        out.append(written)
        line += written.count("\n")
        if i % 733 == 0:
            out.append("\n")
            line += 1
    for email in (*KEPT_AWAY, "erased@example.org"):
        written = csv_line([email, "Back", "CBT", "active"])
        out.append(written)
        line += 1
    path.write_text("".join(out), "utf-8")
    return expected


def store_contents(app) -> list[tuple[object, ...]]:
    """Everyone's fields, topics and consent history, in address order, without ids and
    time stamps (the imports compared run at different times). Read in three queries:
    one service call per person would take longer than the import."""
    with app.store.engine.connect() as conn:
        topics: dict[str, list[str]] = {}
        for email, slug in conn.execute(
            text(
                "SELECT s.email, t.topic_slug FROM subscriber_topics t "
                "JOIN subscribers s ON s.id = t.subscriber_id ORDER BY s.email, t.topic_slug"
            )
        ):
            topics.setdefault(email, []).append(slug)
        history: dict[str, list[tuple[str, str, str]]] = {}
        for email, *event in conn.execute(
            text(
                "SELECT s.email, c.event, c.source, c.detail FROM consent_events c "
                "JOIN subscribers s ON s.id = c.subscriber_id ORDER BY s.email, c.at, c.id"
            )
        ):
            history.setdefault(email, []).append(tuple(event))
        people = conn.execute(
            text(
                "SELECT email, name, status, all_topics, paused_until, source "
                "FROM subscribers ORDER BY email"
            )
        ).all()
    return [
        (*person, tuple(topics.get(person[0], ())), tuple(history.get(person[0], ())))
        for person in people
    ]


def run(app, path: Path, chunk_rows: int, **options: object) -> ImportReport:
    return import_csv(app.store, path, ImportOptions(**options), chunk_rows=chunk_rows)


def test_a_large_import_in_chunks_gives_the_store_and_report_of_one_chunk(app, tmp_path) -> None:
    path = tmp_path / "big.csv"
    expected = big_csv(path)
    results = []
    for chunk_rows in (WHOLE_FILE, 997):
        empty_store(app)
        seed(app)
        report = run(app, path, chunk_rows, on_duplicate="update", resubscribe=True)
        results.append((report.to_dict(), store_contents(app)))
    (whole_report, whole_store), (chunked_report, chunked_store) = results
    assert chunked_report == whole_report
    assert chunked_store == whole_store

    # And what both say is right: every planted fault on its line, with its reason.
    assert {p["line"]: p["reason"] for p in chunked_report["errors"]}.keys() == expected.keys()
    for problem in chunked_report["errors"]:
        assert expected[problem["line"]] in problem["reason"]
    assert chunked_report["rows"] == 30_003
    assert chunked_report["resubscribed"] == 2  # gone@ (unsubscribed) and erased@
    [bounced] = chunked_report["skipped"]
    assert bounced["email"] == "dead@example.org" and "--force-resubscribe" in bounced["reason"]
    people = {p[0]: p for p in chunked_store}
    assert people["gone@example.org"][2] == "active"
    assert people["dead@example.org"][2] == "bounced"
    assert people["person6@example.org"][1] == "Person 6"  # updated from "Old Name"
    assert people["person6@example.org"][7][-1][2] == "imported from big.csv"
    # The 102 seeded people still in the store (100, gone@, dead@), the new ones, and
    # erased@ back.
    assert len(people) == 102 + chunked_report["added"] + 1


def test_line_numbers_are_right_across_chunk_boundaries(app, tmp_path) -> None:
    path = tmp_path / "lines.csv"
    expected = big_csv(path, rows=2_000)
    for chunk_rows in (7, 250):
        empty_store(app)
        report = run(app, path, chunk_rows)
        assert [p.line for p in report.errors] == sorted(expected), chunk_rows
        for problem in report.errors:
            assert expected[problem.line] in problem.reason


def test_a_bad_record_at_the_end_undoes_every_chunk_before_it(app, tmp_path) -> None:
    seed(app)
    before = store_contents(app)
    path = tmp_path / "late.csv"
    rows = [csv_line([f"person{i}@example.org", "New", "Empathy", "active"]) for i in range(3000)]
    rows.append('last@example.org,"never closed,CBT,active\n')  # line 3002
    path.write_text(csv_line(["email", "name", "topics", "status"]) + "".join(rows), "utf-8")
    with pytest.raises(CsvError, match="line 3002: a quoted cell starts here"):
        run(app, path, 500, on_duplicate="update")
    # The 2,900 new people and the 100 updates of the first six chunks are gone.
    assert store_contents(app) == before


def test_a_byte_that_does_not_decode_at_the_end_undoes_everything(app, tmp_path) -> None:
    path = tmp_path / "latin.csv"
    rows = "".join(csv_line([f"p{i}@example.org", f"P {i}"]) for i in range(3000))
    path.write_bytes(b"email,name\n" + rows.encode() + "z@example.org,Zo\u00eb\n".encode("cp1252"))
    with pytest.raises(CsvError, match=r"latin.csv: line 3002: not valid utf-8 \(byte 0xeb\)"):
        run(app, path, 500)
    assert list_subscribers(app).total == 0
    assert run(app, path, 500, encoding="cp1252").added == 3001


def test_atomic_with_a_bad_row_in_the_last_chunk_imports_nothing(app, tmp_path) -> None:
    seed(app)
    before = store_contents(app)
    path = tmp_path / "atomic.csv"
    rows = [csv_line([f"person{i}@example.org", "New"]) for i in range(3000)]
    rows.append(csv_line(["bad address", "X"]))
    path.write_text("email,name\n" + "".join(rows), "utf-8")
    report = run(app, path, 500, atomic=True, on_duplicate="update")
    assert report.atomic_aborted and [p.line for p in report.errors] == [3002]
    assert (report.rows, report.added, report.updated, report.unchanged) == (3001, 0, 0, 0)
    assert store_contents(app) == before
    dry = run(app, path, 500, dry_run=True, on_duplicate="update")
    assert (dry.added, dry.updated, len(dry.errors)) == (2900, 100, 1)
    assert store_contents(app) == before


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
def test_an_address_added_by_someone_else_meanwhile_fails_the_import_whole(
    app, tmp_path, monkeypatch
) -> None:
    """Between a chunk's look-up and its COPY another session adds one of its people:
    the import fails with a clear error and imports nothing. (On SQLite the import
    holds the write lock from its first chunk on, so no one else can add anyone.)"""
    from newsletter.config import load_settings
    from newsletter.services import App
    from newsletter.store.subscriber_import import BulkImport

    path = tmp_path / "race.csv"
    path.write_text("email\n" + "".join(f"p{i}@example.org\n" for i in range(2000)), "utf-8")
    other = App(load_settings(overrides={"database_url": app.settings.database_url}, environ={}))
    plan = BulkImport.plan

    def plan_then_someone_adds_p1203(self, rows):
        found = plan(self, rows)
        if any(r.email == "p1203@example.org" for r in rows):
            add_subscriber(other, "p1203@example.org")  # committed at once
        return found

    monkeypatch.setattr(BulkImport, "plan", plan_then_someone_adds_p1203)
    with other, pytest.raises(StoreError, match="added by someone else") as exc:
        import_csv(app.store, path, ImportOptions(), chunk_rows=500)
    assert exc.value.hint
    assert [v.email for v in list_subscribers(app).items] == ["p1203@example.org"]


def test_every_field_of_a_new_person_reaches_the_store_as_written(app, tmp_path) -> None:
    """New people are written in bulk (multi-row INSERTs on SQLite, COPY text on
    PostgreSQL): text the bulk formats treat specially (a backslash, ``\\N``, a tab
    written as two characters) and every kind of value arrive unchanged."""
    odd_names = ["Back\\slash", "\\N", "Tab\\tTab", 'Ann "Bo" O\'Lee', "Zoë 李", ""]
    columns = [
        "email", "name", "status", "topics", "all_topics", "paused_until", "source",
        "created_at", "confirmed_at", "unsubscribed_at",
    ]  # fmt: skip
    rows = [
        [f"odd{i}@example.org", name, "active", "CBT", "", "", "", "", "", ""]
        for i, name in enumerate(odd_names)
    ]
    rows += [
        ["paused@example.org", "P", "paused", "Alliance; Empathy", "false", "2027-01-31",
         "web", "2024-02-03T04:05:06.789123+02:00", "2024-02-04T00:00:00", ""],
        ["pending@example.org", "Q", "pending", "all", "", "", "cli", "", "", ""],
        ["left@example.org", "R", "unsubscribed", "", "true", "", "", "2020-01-01", "",
         "2021-06-07T08:09:10Z"],
    ]  # fmt: skip
    path = tmp_path / "odd\\name.csv"  # a backslash in the consent events' detail too
    path.write_text("".join(csv_line(r) for r in [columns, *rows]), "utf-8")

    # A chunk of 4: a multi-row statement's remainder and several chunks.
    report = run(app, path, 4)

    assert (report.added, report.errors) == (len(rows), [])
    cbt = tuple(resolve_topics("CBT"))
    for i, name in enumerate(odd_names):
        person = store_people.get_subscriber(app.store, f"odd{i}@example.org", history=True)
        assert (person.name, person.topics, person.all_topics) == (name, cbt, False)
        assert [e.detail for e in person.events] == ["imported from odd\\name.csv"]
    paused = store_people.get_subscriber(app.store, "paused@example.org")
    assert (paused.status, paused.source, paused.all_topics) == ("paused", "web", False)
    assert paused.topics == tuple(sorted(resolve_topics("Alliance; Empathy")))
    assert paused.paused_until == dt.date(2027, 1, 31)
    assert paused.created_at == dt.datetime(2024, 2, 3, 2, 5, 6, 789123, tzinfo=dt.UTC)
    assert paused.confirmed_at == dt.datetime(2024, 2, 4, tzinfo=dt.UTC)
    assert paused.unsubscribed_at is None
    pending = store_people.get_subscriber(app.store, "pending@example.org", history=True)
    assert (pending.status, pending.all_topics, pending.topics) == ("pending", True, ())
    assert pending.confirmed_at is None  # the column is in the file, empty
    assert [e.detail for e in pending.events] == ["imported from odd\\name.csv (pending)"]
    left = store_people.get_subscriber(app.store, "left@example.org")
    assert (left.status, left.all_topics) == ("unsubscribed", True)
    assert left.created_at == dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    assert left.unsubscribed_at == dt.datetime(2021, 6, 7, 8, 9, 10, tzinfo=dt.UTC)


def test_the_import_s_planner_setting_ends_with_its_transaction(app, tmp_path) -> None:
    """PostgreSQL: the import turns sequential scans off for its own transaction only;
    the pooled connection is as it was after an import and after a dry run."""
    if app.store.dialect != "postgresql":
        pytest.skip("PostgreSQL only")
    path = tmp_path / "list.csv"
    path.write_text("email\nann@example.org\n", "utf-8")
    for dry_run in (True, False):
        run(app, path, WHOLE_FILE, dry_run=dry_run)
        with app.store.engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW enable_seqscan").scalar_one() == "on"
