"""Fixtures of the archive import tests: the fixture pages and a CLI runner."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

PAGES = Path(__file__).resolve().parent / "archive_pages"


@pytest.fixture
def pages() -> Path:
    """The folder of fixture archive pages (each named for the case it covers)."""
    return PAGES


@pytest.fixture
def run_import(isolated_env: Path):
    """Run ``newsletter issue import-archive ARGS...`` in the temporary folder."""

    def run(*args: str | Path) -> Result:
        from newsletter.cli import cli

        return CliRunner().invoke(cli, ["issue", "import-archive", *map(str, args)])

    return run
