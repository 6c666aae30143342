"""Opening the store: URLs, engines, sessions and Alembic migrations.

Tables are only ever created by the migrations shipped in ``migrations/`` (never
``create_all``); :func:`open_store` refuses a database that is not at the newest revision.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event, inspect
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, CursorResult, Engine, Result, make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from newsletter.store.errors import StoreError, StoreNotMigratedError, StoreUnavailableError

if TYPE_CHECKING:
    from newsletter.config import Settings

SQLITE_BUSY_TIMEOUT_MS = 5000
UPGRADE_HINT = "run `newsletter db upgrade` (or `newsletter init` in a new project folder)"


def normalise_url(url: str) -> URL:
    """Parse a database URL; plain ``postgresql://`` means psycopg 3."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(
            f"database_url {url!r} is not a database URL",
            hint="e.g. sqlite:///subscribers/newsletter.db or postgresql://user@host/dbname",
        ) from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise StoreError(
            f"unsupported database {parsed.get_backend_name()!r}",
            hint="use SQLite (sqlite:///path) or PostgreSQL (postgresql://...)",
        )
    return parsed


def rowcount(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE changed (0 when the driver cannot say)."""
    return cast(CursorResult[Any], result).rowcount or 0


def shown_url(url: URL) -> str:
    """The URL for messages: never the password."""
    return url.render_as_string(hide_password=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the web process read while a send or import writes; foreign keys are off
    # by default in SQLite; the busy timeout makes a second writer wait instead of failing.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # In WAL mode NORMAL still survives a crash or kill of the process (only a power
    # loss can drop the newest commits, and then a send repeats, never loses, messages);
    # FULL would fsync on every commit, which made recording a send's outcomes its
    # slowest part.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def make_engine(url: str | URL) -> Engine:
    """An engine for ``url`` with the store's connection settings."""
    parsed = normalise_url(url) if isinstance(url, str) else url
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(parsed)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise StoreError(
            "PostgreSQL needs the psycopg package",
            hint="pip install 'newsletter[postgres]'",
        ) from None
    # A server that does not answer should fail the command soon, not hang it.
    return create_engine(parsed, pool_pre_ping=True, connect_args={"connect_timeout": 5})


def sqlite_path(url: URL) -> Path | None:
    """The file of a SQLite URL (None for other databases and in-memory ones)."""
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database)


# --- migrations --------------------------------------------------------------------------


def alembic_config(connection: Connection | None = None) -> Any:
    """An Alembic config pointing at the migrations inside the package (no alembic.ini)."""
    cfg = Config()
    location = resources.files("newsletter.store").joinpath("migrations")
    cfg.set_main_option("script_location", str(location))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    """The newest revision shipped with this version of the program."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None  # the package always ships at least one revision
    return head


def _current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


@contextlib.contextmanager
def _connect(engine: Engine, url: URL) -> Iterator[Connection]:
    try:
        conn = engine.connect()
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise StoreUnavailableError(
            f"cannot open the database {shown_url(url)}: {reason}",
            hint="check database_url / NEWSLETTER_DATABASE_URL and that the server is running",
        ) from None
    try:
        yield conn
    finally:
        conn.close()


@dataclass(frozen=True)
class MigrationStatus:
    """Where a database stands: its revision and the newest one."""

    url: str
    current: str | None
    head: str

    @property
    def up_to_date(self) -> bool:
        """True when the database is at the newest revision."""
        return self.current == self.head


def upgrade_database(database_url: str) -> MigrationStatus:
    """Create or update the store's tables to the newest revision (safe to repeat).

    For SQLite, creates the file and its folder if they do not exist.
    """
    url = normalise_url(database_url)
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = make_engine(url)
    try:
        with _connect(engine, url) as conn:
            with conn.begin():
                command.upgrade(alembic_config(conn), "head")
            current = _current_revision(conn)
    finally:
        engine.dispose()
    return MigrationStatus(shown_url(url), current, head_revision())


def database_status(database_url: str) -> MigrationStatus:
    """The database's revision without changing anything."""
    url = normalise_url(database_url)
    path = sqlite_path(url)
    if path is not None and not path.exists():
        return MigrationStatus(shown_url(url), None, head_revision())
    engine = make_engine(url)
    try:
        with _connect(engine, url) as conn:
            current = _current_revision(conn)
    finally:
        engine.dispose()
    return MigrationStatus(shown_url(url), current, head_revision())


# --- the store ---------------------------------------------------------------------------


@dataclass
class Store:
    """An open subscriber store. Get one with :func:`open_store`; close it when done."""

    engine: Engine
    url: URL
    _sessions: sessionmaker[Session]
    cache: dict[str, Any] = field(default_factory=dict)  # e.g. the suppression salt

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        """One session in one transaction: committed on success, rolled back on any error."""
        with self._sessions() as session, session.begin():
            yield session

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    @property
    def insert(self) -> Any:
        """The dialect's ``insert`` (it has ``on_conflict_do_nothing`` / ``_do_update``)."""
        return postgresql.insert if self.dialect == "postgresql" else sqlite.insert

    def close(self) -> None:
        """Release the connections."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_store(settings: Settings | str) -> Store:
    """Open the store of ``settings.database_url`` (or a URL) and check it is migrated.

    Raises :class:`StoreUnavailableError` if it cannot be reached and
    :class:`StoreNotMigratedError` if its tables are missing or older than this program.
    A missing SQLite file is never created here.
    """
    database_url = settings if isinstance(settings, str) else settings.database_url
    url = normalise_url(database_url)
    path = sqlite_path(url)
    if path is not None and not path.exists():
        raise StoreNotMigratedError(f"there is no subscriber store at {path}", hint=UPGRADE_HINT)
    engine = make_engine(url)
    try:
        with _connect(engine, url) as conn:
            current = _current_revision(conn)
            head = head_revision()
            if current != head:
                if current is None:
                    msg = f"the database {shown_url(url)} has no subscriber tables yet"
                elif current in _known_revisions():
                    msg = f"the database {shown_url(url)} is at an older revision ({current})"
                else:
                    raise StoreNotMigratedError(
                        f"the database {shown_url(url)} is at revision {current}, which this "
                        "version of newsletter does not know",
                        hint="upgrade the newsletter program",
                    )
                raise StoreNotMigratedError(msg, hint=UPGRADE_HINT)
    except BaseException:
        engine.dispose()
        raise
    return Store(engine, url, sessionmaker(engine, expire_on_commit=False))


def _known_revisions() -> set[str]:
    return {s.revision for s in ScriptDirectory.from_config(alembic_config()).walk_revisions()}


def table_names(engine: Engine) -> list[str]:
    """The tables in the database (for diagnostics and tests)."""
    try:
        return sorted(inspect(engine).get_table_names())
    except SQLAlchemyError as exc:  # pragma: no cover - diagnostics only
        raise StoreUnavailableError(str(exc)) from None
