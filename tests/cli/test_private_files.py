"""Files holding personal data are private by default: readable by their owner only.

The store and its -wal/-shm files, CSV exports, the outbox's .eml files and previews made
for a subscriber are created 0600, their folders 0700, whatever the umask lets others
read. Each is checked after a real run of the command that writes it.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli import cli
from tests.plugin import need_browser
from tests.support.services import SAMPLE_MONTH

ADDRESS = "ann@example.org"


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """The common umask 022, which lets everyone read new files unless the program says no."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_store_and_its_wal_and_shm_files_are_private(isolated_env: Path) -> None:
    run("init")
    db = isolated_env / "subscribers" / "newsletter.db"
    assert mode(isolated_env / "newsletter.toml") == 0o600
    assert mode(isolated_env / "subscribers") == 0o700
    assert mode(db) == 0o600
    # Another reader keeps the database open, so its -wal and -shm files stay after the
    # command's own connections close (as with `newsletter serve` running).
    reader = sqlite3.connect(db)
    try:
        reader.execute("SELECT count(*) FROM subscribers").fetchall()
        run("subscribers", "add", ADDRESS, "--name", "Ann", "--topics", "CBT")
        for suffix in ("-wal", "-shm"):
            side = db.with_name(db.name + suffix)
            assert side.exists(), suffix
            assert mode(side) == 0o600, suffix
    finally:
        reader.close()
    assert mode(db) == 0o600


def test_a_store_in_a_new_folder_is_private(isolated_env: Path) -> None:
    db = isolated_env / "data" / "store" / "newsletter.db"
    run("--set", f"database_url=sqlite:///{db}", "db", "upgrade")
    assert mode(db) == 0o600 and mode(db.parent) == 0o700


def test_an_export_is_private(project: Path, tmp_path: Path) -> None:
    run("subscribers", "add", ADDRESS, "--name", "Ann", "--topics", "CBT")
    target = tmp_path / "backup.csv"
    target.write_text("an older, world-readable export\n")
    target.chmod(0o644)
    run("subscribers", "export", str(target))
    assert ADDRESS in target.read_text()
    assert mode(target) == 0o600


def test_the_outbox_is_private(project: Path) -> None:
    run("subscribers", "add", ADDRESS, "--name", "Ann", "--all-topics")
    run("send", SAMPLE_MONTH, "--yes")
    outbox = project / "outbox"
    [eml] = list(outbox.glob("*.eml"))
    assert ADDRESS in eml.read_text()
    assert mode(outbox) == 0o700 and mode(eml) == 0o600


def test_a_preview_for_a_subscriber_is_private(project: Path) -> None:
    run("subscribers", "add", ADDRESS, "--name", "Annabel", "--all-topics")
    run("issue", "preview", SAMPLE_MONTH, "--subscriber", ADDRESS, "--out", "shown")
    folder = project / "shown"
    files = sorted(folder.iterdir())
    assert files and any("Annabel" in f.read_text() for f in files)
    assert mode(folder) == 0o700
    assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}


@pytest.mark.slow
def test_preview_screenshots_are_private(project: Path) -> None:
    need_browser()
    run("subscribers", "add", ADDRESS, "--name", "Annabel", "--all-topics")
    run("issue", "preview", SAMPLE_MONTH, "--subscriber", ADDRESS, "--out", "shown", "--png")
    shots = sorted((project / "shown").glob("*.png"))
    assert shots
    assert {f.name: mode(f) for f in shots} == {f.name: 0o600 for f in shots}
