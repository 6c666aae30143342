"""Whole-store backups: every table, streamed out of one store and into another.

The tables are those of the models' metadata (``Base.metadata.sorted_tables``, parents
before the rows that refer to them), so a table added later is never forgotten. Reading
(:func:`read_store`) happens in one snapshot of the source (a ``REPEATABLE READ``
transaction on PostgreSQL, one read transaction on SQLite) and yields a
:class:`DumpManifest` first, then :class:`TableRows` batches of at most ``BATCH_ROWS``
rows, so memory does not grow with the store. Loading (:func:`load_store`) writes them
into an empty store in one transaction, ids kept, and then moves each id sequence past
the highest id the source ever gave (ids are never reused: signed links name them).

A dump file (:func:`write_dump`, :func:`read_dump`) is gzip'd JSON lines: the manifest,
then per table a ``{"table": ..., "columns": [...]}`` line followed by one JSON array per
row, and an ``{"end": ...}`` line with the counts again, so a file cut short is noticed
even where gzip's own check is not reached. Values are written by column type (times in
ISO 8601, bytes in base64) and read back to the same Python values on either database.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import decimal
import gzip
import json
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from sqlalchemy import (
    JSON,
    Date,
    DateTime,
    Float,
    Interval,
    LargeBinary,
    Numeric,
    Table,
    Time,
    Uuid,
    func,
    select,
    text,
)
from sqlalchemy.engine import Connection
from sqlalchemy.types import TypeDecorator, TypeEngine

from newsletter.store.db import Store, head_revision
from newsletter.store.errors import StoreError
from newsletter.store.models import Base

FORMAT = "newsletter-dump"
#: The dump format's version; a reader refuses versions it does not know.
FORMAT_VERSION = 1
#: Rows read, written and inserted at a time.
BATCH_ROWS = 2000
#: Tables a freshly migrated store already fills (the suppression salt): a restore
#: replaces their rows instead of calling the store "not empty".
INSTALLATION_TABLES = ("store_meta",)

ProgressFn = Callable[[str, int, int], None]


class BackupError(StoreError):
    """A dump file cannot be read or restored, or the target store cannot take it."""


_DAMAGED_HINT = "the file is damaged or cut short: restore from another backup"


@dataclass(frozen=True)
class DumpManifest:
    """What a dump holds: its format, the store's revision, and rows per table."""

    revision: str
    created_at: dt.datetime
    counts: dict[str, int]
    #: table -> the highest id its sequence ever gave (may exceed the highest id kept)
    sequences: dict[str, int] = field(default_factory=dict)
    version: int = FORMAT_VERSION

    @property
    def rows(self) -> int:
        """Rows in every table together."""
        return sum(self.counts.values())

    def to_dict(self) -> dict[str, Any]:
        """The manifest as JSON-able data (the first line of a dump file)."""
        return {
            "format": FORMAT,
            "version": self.version,
            "revision": self.revision,
            "created_at": self.created_at.isoformat(),
            "counts": self.counts,
            "sequences": self.sequences,
        }


@dataclass(frozen=True)
class TableRows:
    """A batch of one table's rows, values in ``columns`` order."""

    table: str
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]


Item = DumpManifest | TableRows


def tables() -> list[Table]:
    """Every table of the store, parents before children."""
    return list(Base.metadata.sorted_tables)


# --- reading a store ---------------------------------------------------------------------


@contextlib.contextmanager
def _snapshot(store: Store) -> Iterator[Connection]:
    """A connection whose reads all see the same moment of the store."""
    with store.engine.connect() as conn:
        if store.dialect == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            try:
                yield conn
            finally:
                conn.rollback()
            return
        # pysqlite opens a transaction only before a write; a read snapshot needs BEGIN.
        conn.exec_driver_sql("BEGIN")
        try:
            yield conn
        finally:
            conn.rollback()


def _sequences(conn: Connection) -> dict[str, int]:
    """table -> the highest id its id sequence has given (tables with one)."""
    found: dict[str, int] = {}
    if conn.dialect.name == "sqlite":
        has = conn.exec_driver_sql(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_sequence'"
        ).first()
        if has:
            found = {
                name: int(seq)
                for name, seq in conn.exec_driver_sql("SELECT name, seq FROM sqlite_sequence")
            }
        return {t.name: found[t.name] for t in tables() if t.name in found}
    for table in tables():
        col = table.autoincrement_column
        if col is None:
            continue
        seq = conn.execute(
            text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": table.name, "c": col.name}
        ).scalar()
        if seq is None:
            continue
        last, called = conn.exec_driver_sql(f"SELECT last_value, is_called FROM {seq}").one()
        found[table.name] = int(last) if called else int(last) - 1
    return {k: v for k, v in found.items() if v > 0}


def read_store(store: Store, now: dt.datetime) -> Iterator[Item]:
    """Every row of ``store``: the manifest first, then each table's rows in batches.

    All reads share one snapshot, so the counts in the manifest are the rows that follow.
    """
    with _snapshot(store) as conn:
        counts = {
            t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one())
            for t in tables()
        }
        yield DumpManifest(head_revision(), now, counts, _sequences(conn))
        for table in tables():
            columns = tuple(c.name for c in table.columns)
            order = list(table.primary_key.columns) or list(table.columns)
            result = conn.execution_options(yield_per=BATCH_ROWS).execute(
                select(table).order_by(*order)
            )
            empty = True
            for part in result.partitions():
                empty = False
                yield TableRows(table.name, columns, [tuple(r) for r in part])
            if empty:  # still named, so that a reader checks its columns
                yield TableRows(table.name, columns, [])


# --- loading a store ---------------------------------------------------------------------


def _holdings(conn: Connection) -> dict[str, int]:
    """Tables of the target that already hold rows (installation tables aside)."""
    held: dict[str, int] = {}
    for table in tables():
        if table.name in INSTALLATION_TABLES:
            continue
        n = int(conn.execute(select(func.count()).select_from(table)).scalar_one())
        if n:
            held[table.name] = n
    return held


def check_manifest(manifest: DumpManifest, where: str) -> None:
    """Refuse a dump this program cannot restore as it is (format or revision)."""
    if manifest.version != FORMAT_VERSION:
        raise BackupError(
            f"{where}: dump format version {manifest.version}; this program reads "
            f"version {FORMAT_VERSION}",
            hint="restore it with the version of newsletter that wrote it",
        )
    head = head_revision()
    if manifest.revision != head:
        raise BackupError(
            f"{where}: the dump is of a store at revision {manifest.revision}; this "
            f"program's stores are at revision {head}",
            hint="restore it with the version of newsletter that wrote it into an empty "
            "store, run `newsletter db upgrade` there, and dump again",
        )
    unknown = sorted(set(manifest.counts) - {t.name for t in tables()})
    if unknown:
        raise BackupError(
            f"{where}: the dump has tables this store does not: {', '.join(unknown)}",
            hint=_DAMAGED_HINT,
        )


def load_store(
    store: Store, items: Iterable[Item], where: str, progress: ProgressFn | None = None
) -> DumpManifest:
    """Write the rows of ``items`` (as :func:`read_store` or :func:`read_dump` yield them)
    into the empty, migrated ``store``, in one transaction: on any error nothing is kept.

    Raises :class:`BackupError` when the store already holds data, when the manifest
    does not fit this program, or when the rows do not match the manifest's counts.
    """
    stream = iter(items)
    manifest = next(stream, None)
    if not isinstance(manifest, DumpManifest):
        raise BackupError(f"{where}: no manifest at the start", hint=_DAMAGED_HINT)
    check_manifest(manifest, where)
    by_name = {t.name: t for t in tables()}
    written: dict[str, int] = dict.fromkeys(manifest.counts, 0)
    total = manifest.rows
    done = 0
    with store.writing() as conn:
        held = _holdings(conn)
        if held:
            listed = ", ".join(f"{n} in {t}" for t, n in held.items())
            raise BackupError(
                f"the target store is not empty ({listed}); nothing was written to it",
                hint="restore into a new database: point database_url (or --to) at an "
                "empty one; `newsletter db upgrade` makes its tables",
            )
        for name in INSTALLATION_TABLES:
            conn.execute(by_name[name].delete())
        for batch in stream:
            if not isinstance(batch, TableRows):
                raise BackupError(f"{where}: a second manifest", hint=_DAMAGED_HINT)
            if not batch.rows:
                continue
            table = by_name[batch.table]
            conn.execute(
                table.insert(), [dict(zip(batch.columns, r, strict=True)) for r in batch.rows]
            )
            written[batch.table] = written.get(batch.table, 0) + len(batch.rows)
            done += len(batch.rows)
            if progress:
                progress("restoring", done, total)
        if written != manifest.counts:
            wrong = sorted(t for t in written if written[t] != manifest.counts.get(t))
            raise BackupError(
                f"{where}: table {wrong[0]} has {written[wrong[0]]} rows, the manifest "
                f"says {manifest.counts.get(wrong[0], 0)}; nothing was written",
                hint=_DAMAGED_HINT,
            )
        _move_sequences(conn, manifest.sequences)
    return manifest


def _move_sequences(conn: Connection, highs: dict[str, int]) -> None:
    """Make each id sequence give ids above both the rows restored and the source's
    highest id ever (explicit ids do not move a PostgreSQL sequence)."""
    for table in tables():
        col = table.autoincrement_column
        if col is None:
            continue
        top = int(conn.execute(select(func.coalesce(func.max(col), 0))).scalar_one())
        high = max(top, highs.get(table.name, 0))
        if conn.dialect.name == "postgresql":
            seq = conn.execute(
                text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": table.name, "c": col.name}
            ).scalar()
            if seq is not None:
                conn.execute(
                    text("SELECT setval(CAST(:s AS regclass), :v, :called)"),
                    {"s": seq, "v": max(high, 1), "called": high > 0},
                )
        elif table.dialect_options["sqlite"]["autoincrement"] and high > 0:
            # SQLite's AUTOINCREMENT keeps its high-water mark in sqlite_sequence.
            updated = conn.execute(
                text("UPDATE sqlite_sequence SET seq = :v WHERE name = :t"),
                {"v": high, "t": table.name},
            )
            if not updated.rowcount:
                conn.execute(
                    text("INSERT INTO sqlite_sequence (name, seq) VALUES (:t, :v)"),
                    {"v": high, "t": table.name},
                )


# --- the dump file -----------------------------------------------------------------------

Codec = tuple[Callable[[Any], Any], Callable[[Any], Any]]  # (to JSON, from JSON)


def _same(value: Any) -> Any:
    return value


def _iso(value: Any) -> Any:
    return value.isoformat()


def _from(parse: Callable[[str], Any]) -> Callable[[Any], Any]:
    return lambda value: parse(value)


def _codec(sql_type: TypeEngine[Any]) -> Codec:
    """How a column's Python values become JSON and come back."""
    if isinstance(sql_type, Interval):  # a TypeDecorator over DateTime on some databases
        return (
            lambda v: [v.days, v.seconds, v.microseconds],
            lambda v: dt.timedelta(days=v[0], seconds=v[1], microseconds=v[2]),
        )
    if isinstance(sql_type, TypeDecorator):
        sql_type = sql_type.impl_instance
    if isinstance(sql_type, DateTime):
        return _iso, _from(dt.datetime.fromisoformat)
    if isinstance(sql_type, Date):
        return _iso, _from(dt.date.fromisoformat)
    if isinstance(sql_type, Time):
        return _iso, _from(dt.time.fromisoformat)
    if isinstance(sql_type, LargeBinary):
        return (lambda v: base64.b64encode(v).decode("ascii")), _from(base64.b64decode)
    if isinstance(sql_type, Numeric) and not isinstance(sql_type, Float):
        return str, _from(decimal.Decimal)
    if isinstance(sql_type, Uuid):
        return str, _from(uuid.UUID)
    if isinstance(sql_type, JSON):
        return _same, _same
    return _same, _same


def _codecs(table: Table, columns: Iterable[str]) -> list[Codec]:
    return [_codec(table.columns[c].type) for c in columns]


def write_dump(
    items: Iterable[Item], out: IO[bytes], progress: ProgressFn | None = None
) -> DumpManifest:
    """Write ``items`` (from :func:`read_store`) to ``out`` as a dump file."""
    stream = iter(items)
    manifest = next(stream)
    assert isinstance(manifest, DumpManifest)
    by_name = {t.name: t for t in tables()}
    current = ""
    encoders: list[Callable[[Any], Any]] = []
    done = 0
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=6, mtime=0) as gz:

        def line(data: Any) -> None:
            gz.write(json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")

        line(manifest.to_dict())
        for batch in stream:
            assert isinstance(batch, TableRows)
            if batch.table != current:
                current = batch.table
                line({"table": current, "columns": list(batch.columns)})
                encoders = [enc for enc, _ in _codecs(by_name[current], batch.columns)]
            for row in batch.rows:
                line([None if v is None else enc(v) for enc, v in zip(encoders, row, strict=True)])
            done += len(batch.rows)
            if progress:
                progress("dumping", done, manifest.rows)
        line({"end": manifest.counts})
    return manifest


def _manifest_of(data: Any, where: str) -> DumpManifest:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BackupError(
            f"{where}: not a newsletter dump",
            hint="give a file written by `newsletter db dump`",
        )
    try:
        return DumpManifest(
            revision=str(data["revision"]),
            created_at=dt.datetime.fromisoformat(data["created_at"]),
            counts={str(k): int(v) for k, v in data["counts"].items()},
            sequences={str(k): int(v) for k, v in data.get("sequences", {}).items()},
            version=int(data["version"]),
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        raise BackupError(
            f"{where}: line 1: the manifest is incomplete", hint=_DAMAGED_HINT
        ) from None


def read_manifest(path: Path) -> DumpManifest:
    """The manifest of the dump file at ``path`` (reads its first line only)."""
    with _lines(path) as lines:
        return next(_items(lines, path.name, manifest_only=True))  # type: ignore[return-value]


@contextlib.contextmanager
def _lines(path: Path) -> Iterator[Iterator[tuple[int, bytes]]]:
    try:
        raw = path.open("rb")
    except OSError as exc:
        raise BackupError(f"cannot read {path}: {exc.strerror}", hint="check the path") from None
    with raw, gzip.GzipFile(fileobj=raw, mode="rb") as gz:

        def numbered() -> Iterator[tuple[int, bytes]]:
            n = 0
            try:
                for n, data in enumerate(gz, start=1):
                    yield n, data
            except (OSError, EOFError, zlib.error) as exc:
                reason = (
                    "it ends in the middle (cut short)"
                    if isinstance(exc, EOFError)
                    else f"not a readable gzip file ({exc})"
                )
                raise BackupError(
                    f"{path.name}: after line {n}: {reason}; nothing was restored",
                    hint=_DAMAGED_HINT,
                ) from None

        yield numbered()


def _items(
    lines: Iterator[tuple[int, bytes]], where: str, manifest_only: bool = False
) -> Iterator[Item]:
    def bad(n: int, what: str) -> BackupError:
        return BackupError(f"{where}: line {n}: {what}; nothing was restored", hint=_DAMAGED_HINT)

    def parse(n: int, data: bytes) -> Any:
        try:
            return json.loads(data)
        except ValueError:
            raise bad(n, "not a JSON line") from None

    first = next(lines, None)
    if first is None:
        raise BackupError(f"{where} is empty", hint=_DAMAGED_HINT)
    manifest = _manifest_of(parse(*first), where)
    yield manifest
    if manifest_only:
        return
    check_manifest(manifest, where)
    by_name = {t.name: t for t in tables()}
    table: Table | None = None
    columns: tuple[str, ...] = ()
    decoders: list[Callable[[Any], Any]] = []
    rows: list[tuple[Any, ...]] = []
    for n, data in lines:
        value = parse(n, data)
        if isinstance(value, list):
            if table is None or len(value) != len(columns):
                raise bad(n, "a row that does not fit its table's columns")
            try:
                rows.append(
                    tuple(
                        None if v is None else dec(v)
                        for dec, v in zip(decoders, value, strict=True)
                    )
                )
            except (ValueError, TypeError) as exc:
                raise bad(n, f"a value of table {table.name} cannot be read ({exc})") from None
            if len(rows) >= BATCH_ROWS:
                yield TableRows(table.name, columns, rows)
                rows = []
            continue
        if not isinstance(value, dict):
            raise bad(n, "neither a row nor a table heading")
        if rows and table is not None:
            yield TableRows(table.name, columns, rows)
            rows = []
        if "end" in value:
            if next(lines, None) is not None:
                raise bad(n + 1, "text after the end of the dump")
            return
        name = value.get("table")
        if name not in by_name or name not in manifest.counts:
            raise bad(n, f"unknown table {name!r}")
        table = by_name[name]
        columns = tuple(value.get("columns") or ())
        expected = {c.name for c in table.columns}
        if set(columns) != expected or len(columns) != len(expected):
            raise bad(n, f"table {name}'s columns are not this store's")
        decoders = [dec for _, dec in _codecs(table, columns)]
    raise BackupError(
        f"{where}: the end line is missing: the file was cut short; nothing was restored",
        hint=_DAMAGED_HINT,
    )


@contextlib.contextmanager
def read_dump(path: Path) -> Iterator[Iterator[Item]]:
    """The items of the dump file at ``path``: its manifest, then batches of rows.

    A file that is not a dump, damaged or cut short is a :class:`BackupError` naming the
    line, raised when that line is reached (so while loading, inside its transaction).
    """
    with _lines(path) as lines:
        yield _items(lines, path.name)
