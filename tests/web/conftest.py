"""Fixtures of the web tests: a project on SQLite and PostgreSQL, the app, a test client.

- ``web_project`` (in tests/plugin.py): a project folder whose store is ``store_url``
  (SQLite and PostgreSQL), whose SMTP server is the real aiosmtpd ``smtp_server``, with
  the people of ``WEB_PEOPLE``.
- ``web_settings``, ``app``, ``client``: settings of that project, the Flask app, its
  test client.
- ``token(purpose, email)``: a signed link token for a subscriber of the store.
- ``csrf_of(html)``: the CSRF token in a rendered form.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from newsletter.config import Settings, load_settings

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def web_settings(web_project: Path) -> Settings:
    """The settings of ``web_project``."""
    return load_settings(web_project / "newsletter.toml", environ={})


@pytest.fixture
def app(web_settings: Settings) -> Iterator[object]:
    """The Flask app of the project (its background jobs drained after the test)."""

    yield from flask_app(web_settings)


def flask_app(source: object) -> Iterator[object]:
    """A Flask app made from ``source`` (settings or an App), in testing mode; its
    background jobs are drained and its context closed afterwards."""
    from newsletter.web import create_app

    application = create_app(source)
    application.config["TESTING"] = True
    yield application
    ctx = application.extensions["newsletter"]
    ctx.jobs.wait_idle()
    ctx.close()


def serve_in_thread(application: object) -> Iterator[str]:
    """``application`` served by waitress in a thread; yields its base URL."""
    from waitress import create_server

    srv = create_server(application, host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.effective_port}"
    srv.close()
    thread.join(timeout=5)


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where screenshots go: SHOTS_DIR=folder to keep them and look, else a temp dir."""
    folder = Path(os.environ.get("SHOTS_DIR") or tmp_path / "shots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def client(app):
    """A Flask test client (it keeps cookies, like a browser)."""
    return app.test_client()


@pytest.fixture
def token(web_settings: Settings) -> Callable[[str, str], str]:
    """``token(purpose, email)``: a link token for the subscriber with that address."""
    from newsletter.services import App, subscribers
    from newsletter.tokens import make_token

    def make(purpose: str, email: str) -> str:
        with App(web_settings) as app:
            sub = subscribers.get_subscriber(app, email)
        return make_token(web_settings, purpose, sub.id)

    return make


CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')


def csrf_of(html: str) -> str:
    """The CSRF token of the (first) form in ``html``."""
    m = CSRF.search(html)
    assert m, "no CSRF token in the page"
    return m.group(1)


def subscriber(settings: Settings, email: str, history: bool = False):
    """The subscriber as the store has it now."""
    from newsletter.services import App, subscribers

    with App(settings) as app:
        return subscribers.get_subscriber(app, email, history=history)


def wait_jobs(app) -> None:
    """Wait for the background jobs (sign-up and lost-link emails)."""
    assert app.extensions["newsletter"].jobs.wait_idle(30)


def assert_security_headers(response) -> None:
    """The headers every answer of the site carries (pages, errors, redirects)."""
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"


# --- the JSON API ------------------------------------------------------------------------


class StepClock:
    """A clock the API tests move by hand (``advance``); aware UTC datetimes."""

    def __init__(self) -> None:
        import datetime as dt

        self.now = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)

    def __call__(self):
        return self.now

    def advance(self, seconds: float) -> None:
        import datetime as dt

        self.now += dt.timedelta(seconds=seconds)


@pytest.fixture
def api_clock() -> StepClock:
    """The clock of ``api_app`` (it drives the API's rate limit)."""
    return StepClock()


@pytest.fixture
def api_app(web_project: Path, api_clock: StepClock) -> Iterator[object]:
    """The Flask app of ``web_project`` with the JSON API on, on an App whose clock is
    ``api_clock``."""
    from newsletter.services import App

    settings = load_settings(
        web_project / "newsletter.toml",
        overrides={"api_enabled": True},
        environ={},
    )
    yield from flask_app(App(settings, clock=api_clock))


@pytest.fixture
def api_client(api_app):
    """A test client of ``api_app``."""
    return api_app.test_client()


@pytest.fixture
def api_token(api_app) -> Callable[..., str]:
    """``api_token(name, read_only=False)``: a new API token of ``api_app``'s store."""
    from newsletter.services import api_tokens

    def make(name: str = "tests", read_only: bool = False) -> str:
        app = api_app.extensions["newsletter"].app
        return api_tokens.create_token(app, name, read_only=read_only).token

    return make
