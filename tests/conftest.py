"""Fixtures shared by every test module.

Conventions for the suite:

- Tests never read the developer's own newsletter.toml or NEWSLETTER_* variables: the
  ``isolated_env`` fixture (autouse) clears them and runs each test in a temporary folder.
- PostgreSQL tests use ``NEWSLETTER_TEST_POSTGRES_URL`` (default: the local server) and are
  skipped when it cannot be reached, unless ``NEWSLETTER_REQUIRE_POSTGRES=1`` (set by
  .ci/run), which turns the skip into a failure.
- Browser tests use Debian's chromium at /usr/bin/chromium and are skipped when it is
  missing, unless ``NEWSLETTER_REQUIRE_BROWSER=1`` (set by .ci/run).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SAMPLE_ISSUES = REPO / "issues"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in an empty temporary folder with no NEWSLETTER_* settings leaking in."""
    for key in list(os.environ):
        if key.startswith("NEWSLETTER_") and not key.startswith(
            ("NEWSLETTER_TEST_", "NEWSLETTER_REQUIRE_")
        ):
            monkeypatch.delenv(key)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


@pytest.fixture
def project(isolated_env: Path) -> Path:
    """A project folder with a newsletter.toml and copies of the sample issues."""
    from newsletter.project import init_project

    init_project(
        isolated_env / "newsletter.toml",
        {
            "sender_name": "Research Digest",
            "sender_address": "digest@example.org",
            "postal_address": "1 Example Street, Exampletown",
        },
    )
    shutil.rmtree(isolated_env / "issues")
    shutil.copytree(SAMPLE_ISSUES, isolated_env / "issues")
    return isolated_env


def require_or_skip(env_flag: str, reason: str) -> None:
    """Skip with ``reason``, or fail if the environment says the resource is required."""
    if os.environ.get(env_flag) == "1":
        pytest.fail(f"{reason} (and {env_flag}=1 says it must be available)")
    pytest.skip(reason)


def need_browser() -> None:
    """Skip (or fail, with NEWSLETTER_REQUIRE_BROWSER=1) without chromium and Playwright."""
    import importlib.util

    from newsletter.render.preview import CHROMIUM

    if not Path(CHROMIUM).exists():
        require_or_skip("NEWSLETTER_REQUIRE_BROWSER", f"{CHROMIUM} is not installed")
    if importlib.util.find_spec("playwright") is None:
        require_or_skip("NEWSLETTER_REQUIRE_BROWSER", "playwright is not installed")


@pytest.fixture(scope="module")
def browser():
    """Headless Debian chromium through Playwright, shared by the tests of a module."""
    need_browser()
    from playwright.sync_api import sync_playwright

    from newsletter.render.preview import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()
