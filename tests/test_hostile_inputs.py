"""Hostile inputs through the real entry points: CSV imports, issue files, settings.

Every file of ``tests/fixtures/hostile/`` (one small file per case, named for it; what it
must give is in ``expected.toml``) is run through the ``newsletter`` command. Each must
give a clear error naming its place (file and line, or the CSV row's line), a non-zero
exit, no traceback, and leave the store as it was. Hypothesis then feeds garbled CSV
rows, garbled issue files and random TOML values to the same entry points.
"""

from __future__ import annotations

import io
import json
import math
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter.cli import cli
from newsletter.config import SETTINGS, Settings, load_settings
from newsletter.content.parser import MAX_FILE_BYTES, read_issue_file
from newsletter.errors import ConfigError
from newsletter.importers.subscribers_csv import MAX_CELL, CsvError
from newsletter.rules.names import check_name
from newsletter.services import App, imports, subscribers
from tests.plugin import DATA_TABLES, REPO

HOSTILE = Path(__file__).resolve().parent / "fixtures" / "hostile"
EXPECTED: dict[str, dict[str, dict[str, Any]]] = tomllib.loads(
    (HOSTILE / "expected.toml").read_text("utf-8")
)
SQLITE_ONLY = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)


def cases(kind: str) -> list[str]:
    return sorted(p.name for p in (HOSTILE / kind).iterdir())


def test_every_hostile_file_says_what_it_must_give() -> None:
    for kind in ("csv", "issues", "config"):
        assert cases(kind) == sorted(EXPECTED[kind]), kind


# --- the store before and after ----------------------------------------------------------


@pytest.fixture
def project(isolated_env: Path, store_url: str) -> Path:
    """A project that could send: settings, the sample issues, one subscriber."""
    import shutil

    (isolated_env / "newsletter.toml").write_text(
        'sender_address = "digest@example.org"\n'
        'postal_address = "1 Example Street, Exampletown"\n'
        'secret_key = "test-secret"\n'
        f'database_url = "{store_url}"\n'
        f'smtp_url = "outbox:///{isolated_env / "outbox"}"\n'
    )
    shutil.copytree(REPO / "issues", isolated_env / "issues")
    with App(_settings(isolated_env)) as app:
        subscribers.add_subscriber(app, "ann@example.org", name="Ann", topics="CBT")
    return isolated_env


def _settings(project: Path) -> Settings:
    return load_settings(project / "newsletter.toml", environ={})


def store_state(project: Path) -> tuple[dict[str, int], str]:
    """Row counts of every data table and the full export of the subscribers."""
    from sqlalchemy import text

    with App(_settings(project)) as app:
        with app.store.engine.connect() as conn:
            counts = {
                t: conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one() for t in DATA_TABLES
            }
        out = io.StringIO()
        imports.export_subscribers(app, out=out)
    return counts, out.getvalue()


def run(project: Path, *args: str) -> Result:
    return CliRunner().invoke(
        cli, ["-c", str(project / "newsletter.toml"), *args], env={"COLUMNS": "250"}
    )


def assert_refused(
    result: Result, name: str, line: int, message: str, *, row: bool = False
) -> None:
    """A clear error: non-zero exit, no traceback, the message and where it is."""
    output = result.output
    assert result.exit_code != 0, output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "Traceback" not in output
    assert message in output, output
    if line == 0:
        assert name in output
    elif row:  # a rejected row: the report's Line column
        assert re.search(rf"│\s*{line}\s*│", output), output
    else:
        assert f"{name}:{line}" in output or f"{name}: line {line}:" in output, output


# --- the corpus ----------------------------------------------------------------------------


@pytest.mark.parametrize("case", cases("csv"))
def test_hostile_csv_files(project: Path, case: str) -> None:
    want = EXPECTED["csv"][case]
    before = store_state(project)
    result = run(project, "subscribers", "import", str(HOSTILE / "csv" / case))
    whole_file = f"{case}: line" in result.output or want["line"] == 0
    assert_refused(result, case, want["line"], want["message"], row=not whole_file)
    assert store_state(project) == before


@SQLITE_ONLY
@pytest.mark.parametrize("case", cases("issues"))
def test_hostile_issue_files(project: Path, case: str) -> None:
    want = EXPECTED["issues"][case]
    path = str(HOSTILE / "issues" / case)
    before = store_state(project)
    assert_refused(run(project, "issue", "check", path), case, want["line"], want["message"])
    sent = run(project, "send", path, "--yes")
    assert sent.exit_code != 0 and "Traceback" not in sent.output and f"{case}:" in sent.output
    assert store_state(project) == before


@SQLITE_ONLY
@pytest.mark.parametrize("case", cases("config"))
def test_hostile_config_files(project: Path, case: str) -> None:
    want = EXPECTED["config"][case]
    before = store_state(project)
    result = CliRunner().invoke(cli, ["-c", str(HOSTILE / "config" / case), "subscribers", "list"])
    assert_refused(result, case, want["line"], want["message"])
    assert store_state(project) == before


def test_huge_inputs_are_refused_before_they_are_read_whole(project: Path) -> None:
    big_csv = project / "huge_cell.csv"
    big_csv.write_text(
        "email,name\nbo@example.org,Bo\ncy@example.org," + "C" * (MAX_CELL + 1) + "\n"
    )
    before = store_state(project)
    result = run(project, "subscribers", "import", str(big_csv))
    assert_refused(result, "huge_cell.csv", 3, "a cell is longer than 128 KB")
    big_issue = project / "issues" / "2026-12.md"
    big_issue.write_text("---\nmonth: 2026-12\n---\n" + "x" * MAX_FILE_BYTES)
    result = run(project, "issue", "check", str(big_issue))
    assert_refused(result, "2026-12.md", 1, "file is larger than 1 MB")
    assert store_state(project) == before


# --- hypothesis: garbled CSV rows ------------------------------------------------------------

_GOOD_ROWS = ["ann@example.org,Ann", "bo@example.org,Bo Lee", "cy@example.org,Cy"]
_NOISE = st.sampled_from(['"', '"', ",", "\n", "\r", "\x00", "\x1b", ";", "é", " ", "\t", "@", "x"])


@st.composite
def garbled_csv(draw: st.DrawFn) -> bytes:
    rows = ["email,name", *draw(st.lists(st.sampled_from(_GOOD_ROWS), min_size=1, max_size=4))]
    text = "\n".join(rows) + "\n"
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.text(_NOISE, min_size=1, max_size=3)) + text[at:]
    data = text.encode()
    if draw(st.booleans()):
        data += draw(st.binary(max_size=20))
    return data


@SQLITE_ONLY
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=garbled_csv())
def test_garbled_csv_is_imported_row_by_row_or_refused_whole(project: Path, data: bytes) -> None:
    from sqlalchemy import text

    with App(_settings(project)) as app:
        with app.store.engine.begin() as conn:
            for table in ("consent_events", "subscriber_topics", "subscribers"):
                conn.execute(text(f"DELETE FROM {table}"))
        path = project / "garbled.csv"
        path.write_bytes(data)
        try:
            report = imports.import_subscribers(app, path)
        except CsvError as exc:
            assert ("garbled.csv: line" in exc.message and exc.hint) or "empty" in exc.message
            assert subscribers.list_subscribers(app).total == 0
            return
        accounted = report.added + report.unchanged + len(report.errors) + len(report.skipped)
        assert report.rows == accounted
        stored = subscribers.list_subscribers(app, page_size=1000).items
        assert len(stored) == report.added
        for person in stored:
            assert check_name(person.name) == person.name
        for problem in report.errors:
            assert 2 <= problem.line <= data.count(b"\n") + data.count(b"\r") + 1


# --- hypothesis: garbled issue files -------------------------------------------------------

_VALID_ISSUE = (
    REPO / "tests" / "content" / "fixtures" / "issues" / "valid_two_summaries.md"
).read_bytes()


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, len(_VALID_ISSUE)), st.binary(min_size=1, max_size=4)), max_size=4
    )
)
def test_garbled_issue_files_give_problems_on_real_lines(tmp_path_factory, edits) -> None:
    data = _VALID_ISSUE
    for at, junk in edits:
        data = data[:at] + junk + data[at:]
    path = tmp_path_factory.mktemp("garbled") / "2026-12.md"
    path.write_bytes(data)
    result = read_issue_file(path)
    lines = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").count(b"\n") + 1
    for problem in result.problems:
        assert 0 <= problem.line <= lines + 1 and problem.message
    control = any(b < 32 and b not in (9, 10, 13) for _, junk in edits for b in junk)
    if control and not any("not UTF-8" in p.message for p in result.problems):
        assert result.issue is None


# --- hypothesis: random TOML values for every setting --------------------------------------

_SCALARS = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=40),
    st.sampled_from(
        ["https://news.example.org", "javascript:alert(1)", "a@example.org", "2", "true"]
    ),
)
_VALUES = st.one_of(
    _SCALARS,
    st.lists(_SCALARS, max_size=3),
    st.dictionaries(st.sampled_from(["a", "b"]), _SCALARS, max_size=2),
)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return (
            "nan"
            if math.isnan(value)
            else ("inf" if value > 0 else "-inf")
            if math.isinf(value)
            else repr(value)
        )
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        # JSON's escapes are TOML's, but for characters outside the BMP and DEL.
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from([s.name for s in SETTINGS]), value=_VALUES)
def test_random_toml_values_load_with_their_type_or_are_refused_by_name(
    tmp_path_factory, name, value
) -> None:
    path = tmp_path_factory.mktemp("conf") / "newsletter.toml"
    path.write_text(f"# random\n{name} = {_toml(value)}\n", "utf-8")
    try:
        loaded = load_settings(path, environ={})
    except ConfigError as exc:
        assert name in exc.message and f"{path}:2" in exc.message, exc.message
        return
    kind = next(s.kind for s in SETTINGS if s.name == name)
    got = getattr(loaded, name)
    if name in ("issues_dir", "templates_dir"):
        assert isinstance(got, Path)
    elif kind is float:
        assert isinstance(got, float) and math.isfinite(got)
    else:
        assert type(got) is kind
    assert loaded.base_url.startswith(("http://", "https://"))
