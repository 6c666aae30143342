"""The fixtures every test may use, in one plugin module (registered by tests/conftest.py).

Conventions for the suite:

- Tests never read the developer's own newsletter.toml or NEWSLETTER_* variables: the
  ``isolated_env`` fixture (autouse) clears them and runs each test in a temporary folder.
- Store tests run on SQLite and on PostgreSQL (``store_url`` is parametrized). PostgreSQL
  tests use ``NEWSLETTER_TEST_POSTGRES_URL`` (default: the local server) and are skipped
  when it cannot be reached, unless ``NEWSLETTER_REQUIRE_POSTGRES=1`` (set by .ci/run),
  which turns the skip into a failure.
- Browser tests use Debian's chromium at /usr/bin/chromium and are skipped when it is
  missing, unless ``NEWSLETTER_REQUIRE_BROWSER=1`` (set by .ci/run).
- The real-DSN test starts a private Postfix instance (``tests/support/postfix.py``) and is
  skipped when Postfix is missing (or not root), unless ``NEWSLETTER_REQUIRE_POSTFIX=1``
  (set by .ci/run).
- IMAP tests use a private Dovecot (``dovecot``, Debian's dovecot-imapd) and are skipped
  when it is missing, unless ``NEWSLETTER_REQUIRE_DOVECOT=1`` (set by .ci/run).
- A real SMTP server (aiosmtpd, ``tests/support/smtpserver.py``): ``smtp_server``,
  ``smtp_server_factory``; a scripted fault server (``tests/support/fault_smtp.py``):
  ``fault_smtp``; ``tls_certificate`` and ``dkim_key`` are made once a session.
- A real DNS server (``tests/support/dns_server.py``, UDP and TCP on 127.0.0.1):
  ``dns_server``, answering from the zone files of ``tests/fixtures/dns/``.
- Tests that start real processes of the program are marked ``slow``
  (``python3 dev.py test -m "not slow"`` runs the rest in under a minute).
- No test depends on wall-clock margins: time is driven by a clock the test controls
  (``App(clock=...)``) or the test waits on a condition.

Local conftest.py files hold only what their own folder uses; none imports another.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from newsletter.browser import CHROMIUM, CHROMIUM_ARGS
from newsletter.config import Settings, load_settings
from tests.support.dns_server import DnsTestServer
from tests.support.fault_smtp import FaultSmtpServer
from tests.support.scheduling import AUTHOR, PEOPLE, SCHEDULER_TABLES, SchedulerProcess
from tests.support.smtpserver import AUTH_WARNING_FILTER, SmtpTestServer, make_certificate

REPO = Path(__file__).resolve().parent.parent
SAMPLE_ISSUES = REPO / "issues"
# One issue file per parser edge case, named for it.
FIXTURES = Path(__file__).resolve().parent / "content" / "fixtures"
PG_SERVER = os.environ.get(
    "NEWSLETTER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def _data_tables() -> tuple[str, ...]:
    """Every table of the store but its meta row (emptied between PostgreSQL tests), and
    the archive's search index, which no model maps."""
    from newsletter.store.archive_index import TABLE
    from newsletter.store.models import Base

    return (*(t for t in Base.metadata.tables if t != "store_meta"), TABLE)


DATA_TABLES = _data_tables()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("filterwarnings", AUTH_WARNING_FILTER)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that drive the real browser start a process too: they are ``slow``."""
    for item in items:
        if "browser" in getattr(item, "fixturenames", ()) or item.get_closest_marker("browser"):
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.slow)


# --- the environment ---------------------------------------------------------------------


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
    from newsletter.services.setup import init_project

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

    if not Path(CHROMIUM).exists():
        require_or_skip("NEWSLETTER_REQUIRE_BROWSER", f"{CHROMIUM} is not installed")
    if importlib.util.find_spec("playwright") is None:
        require_or_skip("NEWSLETTER_REQUIRE_BROWSER", "playwright is not installed")


@pytest.fixture(scope="module")
def browser():
    """Headless Debian chromium through Playwright, shared by the tests of a module."""
    need_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


# --- the store ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated, empty SQLite store to copy."""
    from newsletter.store import upgrade_database

    path = tmp_path_factory.mktemp("template") / "newsletter.db"
    upgrade_database(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def pg_scratch() -> Iterator[str | None]:
    """URL of a migrated scratch database, or None when the server is unreachable."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError

    from newsletter.store import normalise_url, upgrade_database

    server = normalise_url(PG_SERVER)
    admin = create_engine(server, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    name = f"newsletter_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError:
        admin.dispose()
        yield None
        return
    url = make_url(server).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade_database(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(
    request: pytest.FixtureRequest,
    sqlite_template: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> str:
    """An empty, migrated store (also set as NEWSLETTER_DATABASE_URL for CLI tests)."""
    if request.param == "sqlite":
        target = tmp_path / "store" / "newsletter.db"
        target.parent.mkdir()
        shutil.copy(sqlite_template, target)
        url = f"sqlite:///{target}"
    else:
        url = request.getfixturevalue("pg_scratch")
        if url is None:
            require_or_skip(
                "NEWSLETTER_REQUIRE_POSTGRES", f"PostgreSQL is not reachable at {PG_SERVER}"
            )
        from sqlalchemy import create_engine, text

        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {', '.join(DATA_TABLES)} RESTART IDENTITY CASCADE"))
        engine.dispose()
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", url)
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[object]:
    """An open, empty store on SQLite or PostgreSQL."""
    from newsletter.store import open_store

    with open_store(store_url) as opened:
        yield opened


# --- SMTP --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tls_certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate (cert.pem, key.pem) valid for 127.0.0.1 and localhost."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    return make_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def smtp_server_factory() -> Iterator[Callable[..., SmtpTestServer]]:
    """Make and start SmtpTestServer(**options); all are stopped after the test."""
    made: list[SmtpTestServer] = []

    def make(**options: Any) -> SmtpTestServer:
        server = SmtpTestServer(**options).start()
        made.append(server)
        return server

    yield make
    for server in made:
        server.stop()


@pytest.fixture
def smtp_server(smtp_server_factory: Callable[..., SmtpTestServer]) -> SmtpTestServer:
    """A started plain SMTP test server on a free 127.0.0.1 port."""
    return smtp_server_factory()


@pytest.fixture
def fault_smtp() -> Iterator[FaultSmtpServer]:
    """A started scripted fault SMTP server (``tests/support/fault_smtp.py``) on a free
    127.0.0.1 port; stopped after the test."""
    server = FaultSmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
def smtp_settings(isolated_env: Path) -> Callable[..., Settings]:
    """Build Settings from defaults plus ``smtp_url`` and other overrides."""

    def build(url: str, **overrides: Any) -> Settings:
        return load_settings(overrides={"smtp_url": url, **overrides}, environ={})

    return build


@pytest.fixture(scope="session")
def dkim_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """(private key PEM file, the DNS TXT record publishing its public half), made once."""
    import base64
    import subprocess

    folder = tmp_path_factory.mktemp("dkim")
    key = folder / "dkim.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    der = subprocess.run(
        ["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout
    return key, b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)


# --- IMAP --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def dovecot(tls_certificate: tuple[Path, Path]) -> Iterator[Any]:
    """A private Dovecot IMAP server (``tests/support/dovecot.py``) for the session: IMAP
    with STARTTLS and IMAPS on free 127.0.0.1 ports, the test certificate; each test
    makes its own user with ``dovecot.add_user(password)``. Skipped when dovecot-imapd
    is not installed, unless ``NEWSLETTER_REQUIRE_DOVECOT=1`` (set by .ci/run)."""
    from tests.support.dovecot import DovecotServer, dovecot_available

    if not dovecot_available():
        require_or_skip("NEWSLETTER_REQUIRE_DOVECOT", "dovecot-imapd is not installed")
    server = DovecotServer(tls_certificate).start()
    yield server
    server.stop()


# --- DNS ---------------------------------------------------------------------------------


@pytest.fixture
def dns_server() -> Iterator[DnsTestServer]:
    """A started DNS server on 127.0.0.1 (UDP and TCP, one random port) answering from the
    zone files of ``tests/fixtures/dns/`` (``tests/support/dns_server.py``); records can be
    added per test. Pass ``dns_server.address`` as ``newsletter doctor --nameserver``."""
    server = DnsTestServer().start()
    yield server
    server.stop()


# --- the application ---------------------------------------------------------------------


@pytest.fixture
def store_app(store_url: str) -> Iterator[Any]:
    """A services App on the empty store of ``store_url`` (default settings otherwise)."""
    from newsletter.services import App

    settings = load_settings(overrides={"database_url": store_url}, environ={})
    with App(settings) as app:
        yield app


# --- the scheduler -----------------------------------------------------------------------


@pytest.fixture
def scheduler_project(isolated_env: Path, store_url: str, smtp_server: Any) -> Path:
    """A project: sample issues, three subscribers, the test SMTP server, fast scheduler."""
    (isolated_env / "newsletter.toml").write_text(
        'sender_address = "digest@example.org"\n'
        'postal_address = "1 Example Street, Exampletown"\n'
        'secret_key = "test-secret"\n'
        f'author_address = "{AUTHOR}"\n'
        f'database_url = "{store_url}"\n'
        f'smtp_url = "{smtp_server.url}"\n'
        "scheduler_lease_seconds = 3\n"
        "scheduler_heartbeat_seconds = 0.3\n"
        "scheduler_poll_seconds = 0.3\n"
    )
    shutil.copytree(REPO / "issues", isolated_env / "issues")
    from newsletter.services import App, subscribers

    with App(load_settings(isolated_env / "newsletter.toml", environ={})) as app:
        _clean_scheduler_tables(app.store)
        for addr, topics in PEOPLE.items():
            if topics is None:
                subscribers.add_subscriber(app, addr, all_topics=True)
            else:
                subscribers.add_subscriber(app, addr, topics=topics)
    return isolated_env


def _clean_scheduler_tables(store: Any) -> None:
    """The PostgreSQL scratch database is shared by the session: empty our tables."""
    from sqlalchemy import text

    with store.engine.begin() as conn:
        for table in SCHEDULER_TABLES:
            conn.execute(text(f"DELETE FROM {table}"))
        conn.execute(text("DELETE FROM store_meta WHERE key LIKE 'send_report:%'"))
        conn.execute(text("DELETE FROM store_meta WHERE key = 'monthly_rule'"))


@pytest.fixture
def scheduler_process(scheduler_project: Path) -> Iterator[Any]:
    """Start scheduler processes; every one still running is stopped after the test."""
    made: list[SchedulerProcess] = []

    def start(*args: str, started: bool = True) -> SchedulerProcess:
        p = SchedulerProcess(scheduler_project, *args)
        made.append(p)
        if started:
            # The command's own line, printed after its job list (the log line "scheduler
            # started (holder); N jobs" comes before the list).
            p.wait_for("scheduler started\n")
        return p

    yield start
    for p in made:
        if p.proc.poll() is None:
            p.kill()


# --- the web pages -----------------------------------------------------------------------

# email -> topics (None = all topics), status
WEB_PEOPLE: dict[str, tuple[str | None, str]] = {
    "ann@example.org": ("Empathy; Training", "active"),
    "all@example.org": (None, "active"),
    "solo@example.org": ("Empathy", "active"),
    "left@example.org": ("Training", "unsubscribed"),
}


@pytest.fixture
def web_project(isolated_env: Path, store_url: str, smtp_server: Any) -> Path:
    """A project folder with the sample issues, the store and the test SMTP server."""
    from newsletter.services import App, subscribers

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
    with App(settings) as app:
        for addr, (topics, status) in WEB_PEOPLE.items():
            if topics is None:
                subscribers.add_subscriber(app, addr, name="Ann Example", all_topics=True)
            else:
                subscribers.add_subscriber(app, addr, name="Ann Example", topics=topics)
            if status == "unsubscribed":
                subscribers.unsubscribe(app, addr)
    return isolated_env


# --- a project that sends ----------------------------------------------------------------


@pytest.fixture
def send_project(isolated_env: Path, store_url: str, smtp_server: Any) -> Path:
    """A project folder: the sample issues, the store of ``store_url``, the SMTP test
    server, https links; no subscribers yet (``tests.support.services.add_people``)."""
    (isolated_env / "newsletter.toml").write_text(
        'sender_name = "Research Digest"\n'
        'sender_address = "digest@example.org"\n'
        'postal_address = "1 Example Street, Exampletown"\n'
        'secret_key = "test-secret"\n'
        'base_url = "https://news.example.org"\n'
        f'database_url = "{store_url}"\n'
        f'smtp_url = "{smtp_server.url}"\n'
        "retry_initial_delay = 0\n"
    )
    shutil.copytree(REPO / "issues", isolated_env / "issues")
    return isolated_env
