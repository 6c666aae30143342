"""Opening the store: URLs, engines, sessions and Alembic migrations.

Tables are only ever created by the migrations shipped in ``migrations/`` (never
``create_all``); :func:`open_store` refuses a database that is not at the newest revision.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from sqlalchemy import create_engine, event, inspect
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import (
    URL,
    Connection,
    CursorResult,
    Dialect,
    Engine,
    ExceptionContext,
    Result,
    make_url,
)
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from newsletter.store.errors import (
    ConnectionLostError,
    StoreError,
    StoreLockedError,
    StoreNotMigratedError,
    StoreUnavailableError,
)

if TYPE_CHECKING:
    from newsletter.config import Settings

SQLITE_BUSY_TIMEOUT_MS = 5000
#: Seconds a SQLite writer waits for its process's turn (:meth:`Store.writing`).
WRITE_TURN_WAIT = SQLITE_BUSY_TIMEOUT_MS / 1000
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
    # Deleted rows are overwritten with zeros, not merely marked free: an erased person's
    # address must not stay readable in the file's free space (see checkpoint()).
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


# --- database faults ---------------------------------------------------------------------

# SQLSTATEs of a PostgreSQL connection that is gone: class 08 (connection exception) and
# the server ending the session (57P01 pg_terminate_backend or a fast shutdown, 57P02 a
# crash, 57P03 not accepting connections yet).
_PG_GONE = ("57P01", "57P02", "57P03")


def _sqlite_busy(exc: BaseException) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED (and their extended codes)
    return "database is locked" in str(exc) or "database table is locked" in str(exc)


def _pg_gone(exc: BaseException) -> bool:
    state = getattr(exc, "sqlstate", None) or ""
    return state.startswith("08") or state in _PG_GONE


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


#: SQLSTATEs of a transaction PostgreSQL rolled back so that it can simply be run again.
TRANSIENT_SQLSTATES = ("40P01", "40001")  # deadlock detected, serialization failure

T = TypeVar("T")


def is_transient(exc: BaseException) -> bool:
    """True for a fault that running the same transaction again resolves (a deadlock)."""
    orig = getattr(exc, "orig", exc)
    return getattr(orig, "sqlstate", None) in TRANSIENT_SQLSTATES


def retrying(work: Callable[[], T], attempts: int = 5) -> T:
    """Run ``work`` (one whole transaction) again when the database rolled it back for a
    transient reason, such as two workers' transactions deadlocking."""
    for n in range(attempts):
        try:
            return work()
        except SQLAlchemyError as exc:
            if n == attempts - 1 or not is_transient(exc):
                raise
            time.sleep(0.005 * 2**n)
    raise AssertionError("unreachable")  # pragma: no cover


def store_fault(
    url: URL, exc: BaseException, *, connected: bool, disconnect: bool
) -> StoreError | None:
    """The :class:`StoreError` for a database fault the administrator can act on, or None.

    ``exc`` is the driver's exception; ``connected`` is False when opening a connection
    failed, ``disconnect`` True when the driver says the connection is gone. Only two
    faults are translated: SQLite locked beyond the busy timeout, and a PostgreSQL
    connection that was lost (or could not be made). Every store function is one
    transaction, so after either nothing was half-written.
    """
    if url.get_backend_name() == "sqlite":
        if not _sqlite_busy(exc):
            return None
        return locked_error(url)
    if not connected:
        return cannot_open(url, exc)
    if disconnect or _pg_gone(exc):
        return ConnectionLostError(
            f"lost the connection to the database server ({_first_line(exc)}); nothing was "
            "half-written, re-run the command",
            hint="the server restarted or an administrator ended the session; every change "
            "is one transaction and a send picks up where it stopped",
        )
    return None


def locked_error(url: URL) -> StoreLockedError:
    """The error for a SQLite database still locked after the busy timeout."""
    seconds = SQLITE_BUSY_TIMEOUT_MS / 1000
    return StoreLockedError(
        f"the database {shown_url(url)} is locked by another process (waited {seconds:g} s "
        "for it); nothing was changed, try again",
        hint="another newsletter command (an import, a send) or a database tool is "
        "writing to it; wait until it finishes, then re-run the command",
    )


def cannot_open(url: URL, exc: BaseException) -> StoreUnavailableError:
    """The error for a database that cannot be reached or opened (no password shown)."""
    return StoreUnavailableError(
        f"cannot open the database {shown_url(url)}: {_first_line(exc)}",
        hint="check database_url / NEWSLETTER_DATABASE_URL and that the server is running",
    )


def _on_error(url: URL) -> Any:
    def handle_error(context: ExceptionContext) -> None:
        # A failed pre-ping is not a fault: the pool reconnects on its own.
        if context.is_pre_ping:
            return
        fault = store_fault(
            url,
            context.original_exception,
            connected=context.connection is not None,
            disconnect=context.is_disconnect,
        )
        if fault is not None:
            raise fault

    return handle_error


def make_engine(url: str | URL) -> Engine:
    """An engine for ``url`` with the store's connection settings."""
    parsed = normalise_url(url) if isinstance(url, str) else url
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(parsed)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "handle_error", _on_error(parsed))
        return engine
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise StoreError(
            "PostgreSQL needs the psycopg package",
            hint="pip install 'newsletter[postgres]'",
        ) from None
    # A server that does not answer should fail the command soon, not hang it.
    engine = create_engine(parsed, pool_pre_ping=True, connect_args={"connect_timeout": 5})
    event.listen(engine, "handle_error", _on_error(parsed))
    return engine


def sqlite_path(url: URL) -> Path | None:
    """The file of a SQLite URL (None for other databases and in-memory ones)."""
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database)


def create_private_file(path: Path) -> None:
    """Create an empty ``path`` readable by its owner only (mode 0600; a new folder 0700).

    SQLite gives the write-ahead log and shared-memory files it makes beside a database
    the database file's mode, so they are private too. An existing file is left as it is.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError as exc:
        raise StoreUnavailableError(
            f"cannot create the database file {path}: {exc.strerror or exc}",
            hint="check database_url and that the folder can be written",
        ) from None
    os.close(fd)


# --- migrations --------------------------------------------------------------------------


# Opening the store only compares the database's revision with the newest one; Alembic
# (about a third of a second to import, and more to load every migration) is imported
# only to migrate. The revisions are read from the migration files' own lines, and a
# test checks that Alembic reads the same.
_REVISION_LINE = re.compile(r'^(revision|down_revision)\s*=\s*"([^"]+)"', re.MULTILINE)


@functools.cache
def revision_graph() -> dict[str, str | None]:
    """Each revision shipped with the program -> the one it revises (None: the first)."""
    graph: dict[str, str | None] = {}
    versions = resources.files("newsletter.store").joinpath("migrations", "versions")
    for item in versions.iterdir():
        if item.name.endswith(".py") and not item.name.startswith("__"):
            found = dict(_REVISION_LINE.findall(item.read_text("utf-8")))
            if "revision" in found:
                graph[found["revision"]] = found.get("down_revision")
    return graph


def alembic_config(connection: Connection | None = None) -> Any:
    """An Alembic config pointing at the migrations inside the package (no alembic.ini)."""
    from alembic.config import Config

    cfg = Config()
    location = resources.files("newsletter.store").joinpath("migrations")
    cfg.set_main_option("script_location", str(location))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    """The newest revision shipped with this version of the program."""
    graph = revision_graph()
    [head] = set(graph) - set(graph.values())  # one line of revisions, one head
    return head


def _current_revision(connection: Connection) -> str | None:
    """The database's revision (None: no tables yet), as Alembic records it."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    row = connection.exec_driver_sql("SELECT version_num FROM alembic_version").first()
    return None if row is None else str(row[0])


@contextlib.contextmanager
def _connect(engine: Engine, url: URL) -> Iterator[Connection]:
    try:
        conn = engine.connect()
    except OperationalError as exc:
        raise cannot_open(url, exc.orig or exc) from None
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
        create_private_file(path)
    engine = make_engine(url)
    try:
        with _connect(engine, url) as conn:
            sqlite = conn.dialect.name == "sqlite"
            if sqlite:
                # Rebuilding a table (SQLite's way to alter it) drops the old one; with
                # foreign keys on, that would cascade into the rows that refer to it.
                # The pragma only works outside a transaction.
                conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
                conn.commit()
            from alembic import command

            with conn.begin():
                command.upgrade(alembic_config(conn), "head")
                if sqlite and conn.exec_driver_sql("PRAGMA foreign_key_check").first():
                    raise StoreError(
                        "the migrated database has rows that refer to missing rows",
                        hint="restore the backup and report this as a bug",
                    )
            if sqlite:
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                conn.commit()
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
    # SQLite: this process's writers of :meth:`writing` take turns here (see there).
    _write_turn: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        """One session in one transaction: committed on success, rolled back on any error."""
        with self._sessions() as session, session.begin():
            yield session

    @contextlib.contextmanager
    def writing(self) -> Iterator[Connection]:
        """One Core connection in one transaction whose first statement writes.

        On SQLite only one connection writes at a time. Threads of one process that
        collide on the write lock would each wait in SQLite's busy handler, which sleeps
        1, 2, 5, 10, 15, 20, 25 ... ms between tries whether or not the lock was freed
        meanwhile: under a burst of one-click unsubscribes most of the time went to
        those sleeps. Here they queue on a lock of the process instead and each starts
        as soon as the one before commits (other processes still meet the busy
        timeout). Use it for short transactions only; PostgreSQL locks rows and needs
        no turn.

        The wait for the turn counts as a wait for the lock: after ``WRITE_TURN_WAIT``
        (the busy timeout) it is :class:`StoreLockedError`, as the busy timeout is, so a
        database another process keeps locked fails each request after the same time
        as before rather than after the requests queued ahead of it.
        """
        if self.dialect != "sqlite":
            with self.engine.begin() as conn:
                yield conn
            return
        if not self._write_turn.acquire(timeout=WRITE_TURN_WAIT):
            raise locked_error(self.url)
        try:
            with self.engine.begin() as conn:
                yield conn
        finally:
            self._write_turn.release()

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


class Prepared:
    """A Core statement compiled once for one dialect, run with ``exec_driver_sql``.

    For the few statements a page runs hundreds of times a second (the one-click
    unsubscribe). ``Connection.execute`` looks the statement up in the compiled cache,
    builds an execution context, processes every parameter and sets up the result on
    each call: about 100 µs a statement, several times what the database itself takes.
    Here the SQL and the parameters' order are fixed once; each run only applies the
    type processors of the parameters that have one (on SQLite, timestamps become the
    text SQLAlchemy stores) and of the columns read back (:meth:`row`), so values are
    the same as through ``Connection.execute``. The engine's events still see every
    statement and its faults are translated as usual (``handle_error``).
    """

    def __init__(self, statement: Any, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql: str = compiled.string
        #: every bind's value when not given: the statement's constants, None for the rest
        self._defaults: dict[str, Any] = compiled.construct_params(_check=False)
        self._order = tuple(compiled.positiontup or ()) if compiled.positional else None
        self._binders = {
            name: fn
            for name, bind in compiled.binds.items()
            if name in self._defaults
            and (fn := bind.type.dialect_impl(dialect).bind_processor(dialect)) is not None
        }
        columns = list(getattr(statement, "exported_columns", ()))
        self._names = tuple(c.key for c in columns)
        self._readers = tuple(
            c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns
        )

    def run(self, conn: Connection, values: Mapping[str, Any]) -> CursorResult[Any]:
        """Execute with ``values`` (by bind name) on ``conn``."""
        params = {**self._defaults, **values}
        for name, fn in self._binders.items():
            params[name] = fn(params[name])
        if self._order is None:
            return conn.exec_driver_sql(self.sql, params)
        return conn.exec_driver_sql(self.sql, tuple(params[n] for n in self._order))

    def row(self, result: CursorResult[Any]) -> dict[str, Any] | None:
        """The first row of ``result`` by column name, each value read by its column's
        type (None when there is no row)."""
        raw = result.first()
        if raw is None:
            return None
        return {
            name: value if read is None else read(value)
            for name, value, read in zip(self._names, raw, self._readers, strict=True)
        }


def prepared(store: Store, name: str, build: Callable[[], Any]) -> Prepared:
    """The :class:`Prepared` form of the statement ``build()`` makes, kept per store
    under ``name`` (compiled on first use, when the dialect knows its server)."""
    key = f"prepared:{name}"
    found = store.cache.get(key)
    if found is None:
        found = store.cache[key] = Prepared(build(), store.engine.dialect)
    return cast(Prepared, found)


# How hard checkpoint() tries while another process is reading from the write-ahead log.
CHECKPOINT_ATTEMPTS = 3
CHECKPOINT_WAIT_MS = 1000


def checkpoint(store: Store) -> bool:
    """SQLite: move the write-ahead log into the database file and cut the log to 0 bytes.

    The log keeps old copies of changed pages (an erased person's row among them) until a
    checkpoint; with ``secure_delete`` on, the copies written to the database file hold
    zeros where deleted rows were. True when the log is empty now (always on PostgreSQL);
    False when another process kept reading from the log through every attempt (each
    waits up to ``CHECKPOINT_WAIT_MS``): then the old copies stay in the ``-wal`` file until
    the last process using the database closes it or a later checkpoint succeeds.
    """
    if store.dialect != "sqlite":
        return True
    for attempt in range(CHECKPOINT_ATTEMPTS):
        if attempt:
            time.sleep(CHECKPOINT_WAIT_MS / 1000 / 4)
        try:
            with store.engine.connect() as conn:
                conn.exec_driver_sql(f"PRAGMA busy_timeout={CHECKPOINT_WAIT_MS}")
                try:
                    busy = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").scalar()
                finally:
                    conn.exec_driver_sql(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
                    conn.rollback()
        except StoreLockedError:
            continue
        if busy == 0:
            return True
    return False


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
    return set(revision_graph())


def table_names(engine: Engine) -> list[str]:
    """The tables in the database (for diagnostics and tests)."""
    try:
        return sorted(inspect(engine).get_table_names())
    except SQLAlchemyError as exc:  # pragma: no cover - diagnostics only
        raise StoreUnavailableError(str(exc)) from None
