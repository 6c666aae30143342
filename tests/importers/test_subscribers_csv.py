"""CSV import and export, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter.importers import subscribers_csv
from newsletter.importers.subscribers_csv import CsvError, neutralise, unneutralise
from newsletter.services import imports
from newsletter.services.subscribers import (
    add_subscriber,
    erase,
    get_subscriber,
    list_subscribers,
    pause,
    unsubscribe,
)


@pytest.fixture
def app(store_app):
    return store_app


def import_csv(app, path, **options):
    return imports.import_subscribers(app, Path(path), imports.ImportOptions(**options))


def export_csv(app, out) -> int:
    return subscribers_csv.export_csv(app.store, out)


TOPIC_CHOICES = ["CBT", "Alliance; Attachment", "empathy", "Adherance", "all", "", "Dropout"]


def _line(cells: list[str], delimiter: str = ";") -> str:
    buf = io.StringIO()
    csv.writer(buf, delimiter=delimiter, lineterminator="\n").writerow(cells)
    return buf.getvalue()


def _all_views(app) -> list[dict]:
    page = list_subscribers(app, page_size=1000)
    return [v.to_dict() for v in page.items]


def planted_csv(path: Path, good: int = 3000) -> dict:
    """A semicolon CSV with a BOM, blank lines and planted bad rows; returns expectations."""
    rng = random.Random(7)
    lines = [_line(["Email", "NAME", "Topics", "status"])]
    bad: dict[int, str] = {}  # line -> expected words in the reason
    formula_line = 0
    for i in range(good):
        status = "paused" if i % 100 == 99 else "active"
        name = f"Person {i}"
        if i == 1234:
            name = '=HYPERLINK("http://evil.example","x")'
        lines.append(_line([f"person{i}@example.org", name, rng.choice(TOPIC_CHOICES), status]))
        if i == 1234:
            formula_line = len(lines)
        if i == 500:
            lines.append("\n")
            lines.append("\n")
        if i % 600 == 17:  # a bad one among the good ones
            kind = (i // 600) % 5
            row, reason = [
                (["not-an-email", "X", "CBT", ""], "not a valid email"),
                ([f"PERSON{i}@Example.ORG", "Dup", "", ""], "duplicate of line"),
                ([f"typo{i}@example.org", "T", "CBT; Alliens", ""], "unknown topic 'Alliens'"),
                ([f"zed{i}@example.org", "Z", "", "zombie"], "unknown status"),
                (["two@@example.org", "", "", ""], "not a valid email"),
            ][kind]
            lines.append(_line(row))
            bad[len(lines)] = reason
    path.write_bytes("\ufeff".encode() + "".join(lines).encode("utf-8"))
    return {"bad": bad, "good": good, "rows": good + len(bad), "formula_line": formula_line}


def test_import_reports_every_bad_row_by_line_and_imports_the_rest(app, tmp_path) -> None:
    csv_path = tmp_path / "list.csv"
    expected = planted_csv(csv_path)
    report = import_csv(app, csv_path)
    assert report.rows == expected["rows"]
    assert report.added == expected["good"]
    assert {p.line: p.reason for p in report.errors}.keys() == expected["bad"].keys()
    for problem in report.errors:
        assert expected["bad"][problem.line] in problem.reason
    duplicate = next(p for p in report.errors if "duplicate" in p.reason)
    # The duplicate's first occurrence is the line just above the planted one (no blanks).
    assert duplicate.reason == f"duplicate of line {duplicate.line - 1}"
    assert list_subscribers(app).total == expected["good"]
    formula = get_subscriber(app, "person1234@example.org")
    assert formula.name.startswith("=HYPERLINK")
    assert get_subscriber(app, "person99@example.org").status == "paused"
    assert get_subscriber(app, "person0@example.org").source == "import"

    again = import_csv(app, csv_path)
    assert (again.added, again.updated, again.unchanged) == (0, 0, expected["good"])
    assert len(again.errors) == len(expected["bad"])
    assert list_subscribers(app).total == expected["good"]


def test_line_numbers_count_blank_and_multiline_records(app, tmp_path) -> None:
    path = tmp_path / "l.csv"
    path.write_text(
        "email,topics\n"
        "\n"
        'a@example.org,"CBT;\nAlliance"\n'
        "bad address,x\n"
        "\n"
        "b@example.org,CBT\n"
        "B@example.org,Empathy\n",
        "utf-8",
    )
    report = import_csv(app, path)
    assert [(p.line, p.reason) for p in report.errors][1] == (8, "duplicate of line 7")
    assert report.errors[0].line == 5  # the quoted topics span lines 3 and 4
    assert len(get_subscriber(app, "a@example.org").topics) == 2


def test_export_import_round_trip(app, tmp_path) -> None:
    from sqlalchemy import text

    add_subscriber(app, "ann@example.org", name='Ann, "the" Lee', topics="CBT; Alliance")
    add_subscriber(app, "all@example.org", name="=1+2")
    add_subscriber(app, "minus@example.org", name="-minus", topics="Attachment")
    add_subscriber(app, "quote@example.org", name="'=already escaped", topics="Empathy")
    add_subscriber(app, "wait@example.org", name="@mention", pending=True)
    add_subscriber(app, "tab@example.org", name="\tTabbed", topics="Training")
    add_subscriber(app, "=eq@example.org", name="Ünïcode Näme", topics="Training")
    add_subscriber(app, "pause@example.org", topics="CBT")
    pause(app, "pause@example.org", until=__import__("datetime").date(2099, 1, 1))
    add_subscriber(app, "gone@example.org", topics="CBT")
    unsubscribe(app, "gone@example.org")
    before = _all_views(app)

    first = io.StringIO()
    assert export_csv(app, first) == 9
    exported = first.getvalue()
    assert ",'=1+2," in exported
    assert ",'-minus," in exported
    assert ",''=already escaped," in exported
    assert "'=eq@example.org" in exported
    assert ",'@mention," in exported

    with app.store.engine.begin() as conn:
        for table in ("consent_events", "subscriber_topics", "subscribers"):
            conn.execute(text(f"DELETE FROM {table}"))
    path = tmp_path / "export.csv"
    path.write_text(exported, "utf-8")
    report = import_csv(app, path)
    assert (report.added, report.errors) == (9, [])

    assert _all_views(app) == before
    second = io.StringIO()
    export_csv(app, second)
    assert second.getvalue() == exported


def test_encodings(app, tmp_path) -> None:
    path = tmp_path / "latin.csv"
    # The address is ASCII (the one address rule refuses others); the names are not.
    path.write_bytes("email,name\nz@example.org,Zoë\nmu@example.org,Mü\n".encode("cp1252"))
    with pytest.raises(CsvError) as exc:
        import_csv(app, path)
    assert "line 2" in exc.value.message and "--encoding" in (exc.value.hint or "")
    assert list_subscribers(app).total == 0
    report = import_csv(app, path, encoding="cp1252")
    assert report.added == 2
    assert get_subscriber(app, "z@example.org").name == "Zoë"
    with pytest.raises(CsvError, match="unknown encoding"):
        import_csv(app, path, encoding="klingon")


@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
def test_delimiters_and_header_case(app, tmp_path, delimiter) -> None:
    path = tmp_path / "d.csv"
    path.write_text(
        _line([" EMAIL ", "Topics"], delimiter)
        + _line(["a@example.org", "CBT; Empathy"], delimiter),
        "utf-8",
    )
    report = import_csv(app, path)
    assert report.added == 1, report.errors
    assert len(get_subscriber(app, "a@example.org").topics) == 2


def test_header_problems(app, tmp_path) -> None:
    path = tmp_path / "h.csv"
    path.write_text("mail,name\na@example.org,A\n", "utf-8")
    with pytest.raises(CsvError, match="unknown column 'mail'"):
        import_csv(app, path)
    path.write_text("name\nA\n", "utf-8")
    with pytest.raises(CsvError, match="no 'email' column"):
        import_csv(app, path)
    path.write_text("", "utf-8")
    with pytest.raises(CsvError, match="empty"):
        import_csv(app, path)
    with pytest.raises(CsvError, match="cannot read"):
        import_csv(app, tmp_path / "missing.csv")


def test_atomic_and_dry_run_change_nothing(app, tmp_path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("email,topics\na@example.org,CBT\nb@example.org,Alliens\n", "utf-8")
    atomic = import_csv(app, path, atomic=True)
    assert atomic.atomic_aborted and [p.line for p in atomic.errors] == [3]
    assert list_subscribers(app).total == 0
    dry = import_csv(app, path, dry_run=True)
    assert dry.dry_run and dry.added == 1 and len(dry.errors) == 1
    assert list_subscribers(app).total == 0
    real = import_csv(app, path)
    assert real.added == 1 and list_subscribers(app).total == 1


def test_on_duplicate_update(app, tmp_path) -> None:
    add_subscriber(app, "a@example.org", name="Old", topics="CBT")
    path = tmp_path / "u.csv"
    path.write_text("email,name,topics\nA@example.org,New,Attachment\n", "utf-8")
    skipped = import_csv(app, path)
    assert (skipped.added, skipped.updated, skipped.unchanged) == (0, 0, 1)
    assert get_subscriber(app, "a@example.org").name == "Old"
    updated = import_csv(app, path, on_duplicate="update")
    assert updated.updated == 1
    view = get_subscriber(app, "a@example.org", history=True)
    assert (view.name, view.topics) == ("New", ("attachment",))
    assert view.events[-1].event == "topics_changed" and view.events[-1].source == "import"
    assert import_csv(app, path, on_duplicate="update").unchanged == 1


def test_unsubscribed_and_erased_people_stay_away(app, tmp_path) -> None:
    add_subscriber(app, "gone@example.org")
    unsubscribe(app, "gone@example.org")
    add_subscriber(app, "erased@example.org")
    erase(app, "erased@example.org")
    path = tmp_path / "back.csv"
    path.write_text("email\ngone@example.org\nERASED@example.org\n", "utf-8")

    for mode in ("skip", "update"):
        report = import_csv(app, path, on_duplicate=mode)
        assert report.added == 0 and report.resubscribed == 0
        assert get_subscriber(app, "gone@example.org").status == "unsubscribed"
        assert [p.line for p in report.skipped] == ([2, 3] if mode == "update" else [3])
        assert "--resubscribe" in report.skipped[-1].reason
    assert list_subscribers(app).total == 1

    report = import_csv(app, path, resubscribe=True)
    assert report.resubscribed == 2 and report.skipped == []
    for email in ("gone@example.org", "erased@example.org"):
        view = get_subscriber(app, email, history=True)
        assert view.status == "active"
        assert view.events[-1].event == "resubscribed"


@given(st.text(max_size=12))
def test_neutralise_round_trips(cell: str) -> None:
    escaped = neutralise(cell)
    assert unneutralise(escaped) == cell
    assert not escaped.startswith(("=", "+", "-", "@", "\t", "\r"))


# --- malformed files, hostile names, the export's quoting ------------------------------


def _people(n: int) -> list[str]:
    return [f"person{i}@example.org,Person {i}\n" for i in range(n)]


def test_an_unterminated_quote_is_an_error_naming_its_line_and_nothing_is_imported(
    app, tmp_path
) -> None:
    rows = _people(1000)
    rows[500] = 'person500@example.org,"Person 500\n'  # line 502: the quote never closes
    path = tmp_path / "open-quote.csv"
    path.write_text("email,name\n" + "".join(rows), "utf-8")
    with pytest.raises(CsvError) as exc:
        import_csv(app, path)
    assert exc.value.message.startswith("open-quote.csv: line 502: a quoted cell starts here")
    assert "nothing was imported" in exc.value.message
    assert '""' in (exc.value.hint or "")
    assert list_subscribers(app).total == 0

    rows[500] = 'person500@example.org,"Person ""500""\n'  # the doubled quotes are not it
    path.write_text("email,name\n" + "".join(rows), "utf-8")
    with pytest.raises(CsvError, match="line 502: a quoted cell"):
        import_csv(app, path)


def test_the_open_quote_is_found_inside_a_record_of_several_lines(app, tmp_path) -> None:
    path = tmp_path / "later.csv"
    path.write_text(
        'email,topics,name\na@example.org,"CBT;\nEmpathy","Ann\nb@example.org,CBT,B\n', "utf-8"
    )
    with pytest.raises(CsvError, match="line 3: a quoted cell starts here"):
        import_csv(app, path)


def test_text_after_a_closing_quote_is_an_error(app, tmp_path) -> None:
    path = tmp_path / "after.csv"
    path.write_text('email,name\na@example.org,A\nb@example.org,"Bo" Lee\n', "utf-8")
    with pytest.raises(CsvError, match="line 3: text after the closing quote") as exc:
        import_csv(app, path)
    assert exc.value.hint
    assert list_subscribers(app).total == 0


def test_a_cell_over_the_size_limit_is_an_error_with_its_line(app, tmp_path) -> None:
    path = tmp_path / "huge.csv"
    big = "x" * (subscribers_csv.MAX_CELL + 10)
    path.write_text(f"email,name\na@example.org,A\nb@example.org,{big}\n", "utf-8")
    with pytest.raises(CsvError, match="line 3: a cell is longer than 128 KB") as exc:
        import_csv(app, path)
    assert exc.value.hint
    assert list_subscribers(app).total == 0


def test_row_counts_are_right(app, tmp_path) -> None:
    path = tmp_path / "count.csv"
    rows = _people(1000)
    rows[10] = 'person10@example.org,"Ann ""Bo"" Lee"\n'
    rows[20] = "not an address,X\n"
    path.write_text("email,name\n\n" + "".join(rows), "utf-8")
    report = import_csv(app, path)
    assert (report.rows, report.added, len(report.errors)) == (1000, 999, 1)
    assert report.errors[0].line == 23
    assert get_subscriber(app, "person10@example.org").name == 'Ann "Bo" Lee'


@pytest.mark.parametrize(
    ("cell", "reason"),
    [
        ("Ann\x00Lee", "NUL character (U+0000) at character 4"),
        ('"Ann\rLee"', "carriage return (U+000D)"),
        ('"Ann\nLee"', "line break (U+000A)"),
        ("\x1b[31mAnn", "escape character (ESC) (U+001B) at character 1"),
        ("Ann\x85Lee", "control character (U+0085)"),
        ("Ann\u2028Lee", "line separator (U+2028)"),
        ("A" * 201, "201 characters long; at most 200"),
    ],
)
def test_names_with_control_characters_or_too_long_are_rejected_by_row(
    app, tmp_path, cell, reason
) -> None:
    path = tmp_path / "names.csv"
    path.write_text(f"email,name\na@example.org,Ann\nb@example.org,{cell}\n", "utf-8")
    report = import_csv(app, path, atomic=True)
    assert report.atomic_aborted and [p.line for p in report.errors] == [3]
    assert reason in report.errors[0].reason
    assert list_subscribers(app).total == 0
    report = import_csv(app, path)
    assert report.added == 1 and [p.line for p in report.errors] == [3]


def test_a_name_running_over_lines_asks_about_a_missing_quote(app, tmp_path) -> None:
    path = tmp_path / "runs.csv"
    path.write_text('email,name\na@example.org,"Ann\nb@example.org,B"\nc@example.org,C\n', "utf-8")
    report = import_csv(app, path)
    assert (report.rows, report.added, [p.line for p in report.errors]) == (2, 1, [2])
    assert "runs from line 2 to 3: is a quote not closed?" in report.errors[0].reason


def test_names_are_cleaned(app, tmp_path) -> None:
    path = tmp_path / "clean.csv"
    path.write_text("email,name\na@example.org,  Ann \t  Lee  \n", "utf-8")
    assert import_csv(app, path).added == 1
    assert get_subscriber(app, "a@example.org").name == "Ann Lee"


def test_export_quotes_carriage_returns_and_line_feeds(app) -> None:
    from newsletter.store import subscribers as db

    # Stored before the name rule existed: export must still write it back readably.
    for email, name in (("cr@example.org", "Ann\rLee"), ("lf@example.org", "Bo\nLee")):
        db.insert_subscriber(
            app.store,
            db.NewSubscriber(email, name, "active", True, (), "cli"),
            event="subscribed",
            detail="all topics",
        )
    out = io.StringIO()
    assert export_csv(app, out) == 2
    records = list(csv.reader(io.StringIO(out.getvalue(), newline="")))
    assert [r[:2] for r in records[1:]] == [
        ["cr@example.org", "Ann\rLee"],
        ["lf@example.org", "Bo\nLee"],
    ]
    assert subscribers_csv.csv_line(["a\rb", 'q"', "plain", ""]) == '"a\rb","q""",plain,\n'


_PRINTABLE = st.text(
    st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=40
).filter(lambda s: s.strip())


@settings(max_examples=40, deadline=None)
@given(st.lists(_PRINTABLE, min_size=1, max_size=5))
def test_export_then_import_gives_printable_names_back(names: list[str]) -> None:
    """The CSV layer of the round trip: export's lines, read by import's reader."""
    from newsletter.rules.names import check_name

    text = subscribers_csv.csv_line(["email", "name"]) + "".join(
        subscribers_csv.csv_line([f"p{i}@example.org", neutralise(check_name(n))])
        for i, n in enumerate(names)
    )
    good, bad, total = subscribers_csv.read_rows(text, "names.csv")
    expected = [check_name(n) for n in names]
    assert bad == [] and total == len(names)
    assert [row.name for row in good] == expected


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(names=st.lists(_PRINTABLE, min_size=1, max_size=4))
def test_export_import_round_trip_of_printable_names(app, tmp_path, names: list[str]) -> None:
    from sqlalchemy import text

    with app.store.engine.begin() as conn:
        for table in ("consent_events", "subscriber_topics", "subscribers"):
            conn.execute(text(f"DELETE FROM {table}"))
    for i, name in enumerate(names):
        add_subscriber(app, f"p{i}@example.org", name=name)
    before = _all_views(app)
    out = io.StringIO()
    export_csv(app, out)
    with app.store.engine.begin() as conn:
        for table in ("consent_events", "subscriber_topics", "subscribers"):
            conn.execute(text(f"DELETE FROM {table}"))
    path = tmp_path / "round.csv"
    path.write_text(out.getvalue(), "utf-8")
    report = import_csv(app, path)
    assert (report.added, report.errors) == (len(names), [])
    assert _all_views(app) == before


def test_a_bounced_address_is_never_brought_back_by_an_import(app, tmp_path) -> None:
    from newsletter.rules import statuses
    from newsletter.store import subscribers as store_people

    add_subscriber(app, "dead@example.org", topics="Training")
    store_people.change_status(
        app.store,
        "dead@example.org",
        lambda sub: statuses.bounced(sub.status, "hard bounce: 550 5.1.1 User unknown"),
        source="cli",
    )
    path = tmp_path / "back.csv"
    path.write_text("email,status\ndead@example.org,active\n", "utf-8")
    for options in ({"on_duplicate": "update"}, {"on_duplicate": "update", "resubscribe": True}):
        report = import_csv(app, path, **options)
        assert get_subscriber(app, "dead@example.org").status == "bounced"
        [problem] = report.skipped
        assert problem.line == 2 and "--force-resubscribe" in problem.reason
    # Only on the administrator's explicit word, and logged.
    report = import_csv(app, path, on_duplicate="update", force_resubscribe=True)
    assert report.resubscribed == 1 and report.skipped == []
    view = get_subscriber(app, "dead@example.org", history=True)
    assert view.status == "active"
    assert any(
        e.event == "resubscribed" and "--force-resubscribe (was bounced)" in e.detail
        for e in view.events
        if e.detail
    )
