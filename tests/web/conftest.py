"""Fixtures of the web tests: a project on SQLite and PostgreSQL, the app, a test client.

- ``web_project``: a project folder whose store is ``store_url`` (SQLite and PostgreSQL)
  and whose SMTP server is the real aiosmtpd ``smtp_server``; people from :data:`PEOPLE`.
- ``web_settings``, ``app``, ``client``: settings of that project, the Flask app, its
  test client.
- ``token(purpose, email)``: a signed link token for a subscriber of the store.
- ``csrf_of(html)``: the CSRF token in a rendered form.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from newsletter.config import Settings, load_settings
from tests.delivery.conftest import smtp_server, smtp_server_factory  # noqa: F401
from tests.store.conftest import pg_scratch, sqlite_template, store_url  # noqa: F401

REPO = Path(__file__).resolve().parents[2]

# email -> topics (None = all topics), status
PEOPLE: dict[str, tuple[str | None, str]] = {
    "ann@example.org": ("Empathy; Training", "active"),
    "all@example.org": (None, "active"),
    "solo@example.org": ("Empathy", "active"),
    "left@example.org": ("Training", "unsubscribed"),
}


@pytest.fixture
def web_project(isolated_env: Path, store_url: str, smtp_server) -> Path:  # noqa: F811
    """A project folder with the sample issues, the store and the test SMTP server."""
    from newsletter.store import add_subscriber, open_store, unsubscribe

    (isolated_env / "newsletter.toml").write_text(
        'newsletter_name = "Research Digest"\n'
        'sender_name = "Research Digest"\n'
        'sender_address = "digest@example.org"\n'
        'postal_address = "1 Example Street, Exampletown"\n'
        'secret_key = "new-web-key, old-web-key"\n'
        'base_url = "https://news.example.org"\n'
        f'database_url = "{store_url}"\n'
        f'smtp_url = "{smtp_server.url}"\n'
        'consent_version = "test-consent-1"\n'
        "retry_initial_delay = 0\n"
    )
    shutil.copytree(REPO / "issues", isolated_env / "issues")
    settings = load_settings(isolated_env / "newsletter.toml", environ={})
    with open_store(settings) as store:
        for addr, (topics, status) in PEOPLE.items():
            if topics is None:
                add_subscriber(store, addr, name="Ann Example", all_topics=True)
            else:
                add_subscriber(store, addr, name="Ann Example", topics=topics)
            if status == "unsubscribed":
                unsubscribe(store, addr)
    return isolated_env


@pytest.fixture
def web_settings(web_project: Path) -> Settings:
    """The settings of ``web_project``."""
    return load_settings(web_project / "newsletter.toml", environ={})


@pytest.fixture
def app(web_settings: Settings) -> Iterator[object]:
    """The Flask app of the project (its background jobs drained after the test)."""
    from newsletter.web import create_app

    application = create_app(web_settings)
    application.config["TESTING"] = True
    yield application
    ctx = application.extensions["newsletter"]
    ctx.jobs.wait_idle()
    ctx.jobs.close()
    ctx.store.close()


@pytest.fixture
def client(app):
    """A Flask test client (it keeps cookies, like a browser)."""
    return app.test_client()


@pytest.fixture
def token(web_settings: Settings) -> Callable[[str, str], str]:
    """``token(purpose, email)``: a link token for the subscriber with that address."""
    from newsletter.store import get_subscriber, open_store
    from newsletter.tokens import make_token

    def make(purpose: str, email: str) -> str:
        with open_store(web_settings) as store:
            sub = get_subscriber(store, email)
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
    from newsletter.store import get_subscriber, open_store

    with open_store(settings) as store:
        return get_subscriber(store, email, history=history)


def wait_jobs(app) -> None:
    """Wait for the background jobs (sign-up and lost-link emails)."""
    assert app.extensions["newsletter"].jobs.wait_idle(30)
