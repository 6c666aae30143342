"""``subscribers erase`` on SQLite really erases: no copy of the person stays in the
database file, its write-ahead log or its shared-memory file, even while another process
(say ``newsletter serve``) has the database open."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.store import db, upgrade_database

pytestmark = pytest.mark.slow

TYPED = "Ann.Erase@Bücher.example"
STORED = "ann.erase@xn--bcher-kva.example"  # its stored (IDNA, lower-case) form
NAME = "Zelda Quuxington"
# Every form of the person's data that must not be found in the files afterwards.
NEEDLES = [TYPED, TYPED.lower(), STORED, STORED.split("@")[0], "xn--bcher-kva", NAME]

# A second process with the database open. "read" makes one read and finishes it; "hold"
# keeps its read transaction open (so no checkpoint can empty the log). It says "ready",
# then waits for a line on stdin.
HOLDER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
if sys.argv[2] == "hold":
    conn.execute("BEGIN")
conn.execute("SELECT count(*) FROM subscribers").fetchall()
print("ready", flush=True)
sys.stdin.readline()
if sys.argv[2] == "hold":
    conn.execute("COMMIT")
conn.close()
"""


def run(*args: str, code: int = 0):
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result


@pytest.fixture
def sqlite_store(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = isolated_env / "subscribers" / "newsletter.db"
    url = f"sqlite:///{path}"
    upgrade_database(url)
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", url)
    run("subscribers", "add", "other@example.org", "--name", "Bo Other", "--topics", "CBT")
    return path


class Holder:
    """A real second process with the store open (see HOLDER)."""

    def __init__(self, path: Path, mode: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(path), mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready"

    def release(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write("done\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=30)


@pytest.fixture
def holder(sqlite_store: Path) -> Iterator[object]:
    made: list[Holder] = []

    def start(mode: str) -> Holder:
        h = Holder(sqlite_store, mode)
        made.append(h)
        return h

    yield start
    for h in made:
        h.release()
        if h.proc.poll() is None:
            h.proc.kill()


def found_in_files(path: Path) -> dict[str, list[str]]:
    """Which needles occur in the raw bytes of the database, -wal and -shm files."""
    found: dict[str, list[str]] = {}
    for f in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if not f.exists():
            continue
        data = f.read_bytes().lower()
        hits = [n for n in NEEDLES if n.lower().encode("utf-8") in data]
        if hits:
            found[f.name] = hits
    return found


def test_erase_leaves_no_copy_in_the_files_while_another_process_has_them_open(
    sqlite_store: Path, holder
) -> None:
    holder("read")  # opened before the person was added, like a running `newsletter serve`
    run("subscribers", "add", TYPED, "--name", NAME, "--topics", "CBT; Alliance")
    run("subscribers", "pause", STORED)  # a change leaves more old copies of the row
    run("subscribers", "resume", STORED)
    assert found_in_files(sqlite_store), "the test must see the data before the erase"

    out = run("subscribers", "erase", TYPED, "--yes").output
    assert "erased" in out and "warning" not in out

    assert found_in_files(sqlite_store) == {}
    # The other subscriber is untouched and the erased one is gone.
    assert "other@example.org" in run("subscribers", "list").output
    assert "no subscriber" in run("subscribers", "show", STORED, code=1).output


def test_erase_warns_when_a_reader_keeps_the_log_busy(
    sqlite_store: Path, holder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "CHECKPOINT_WAIT_MS", 50)
    run("subscribers", "add", TYPED, "--name", NAME, "--topics", "CBT")
    reader = holder("hold")  # a read transaction that stays open through the erase
    result = run("subscribers", "erase", TYPED, "--yes")
    assert "erased" in result.output
    assert "warning" in result.output and "write-ahead log" in result.output
    # Once the reader is done and the database is closed, nothing is left.
    reader.release()
    assert found_in_files(sqlite_store) == {}


def test_store_connections_overwrite_deleted_rows(sqlite_store: Path) -> None:
    # Debian builds SQLite with SECURE_DELETE on; other builds (macOS, python.org) do not,
    # so the store turns it on for every connection itself.
    from newsletter.store import open_store

    with open_store(f"sqlite:///{sqlite_store}") as store, store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA secure_delete").scalar() == 1
