"""CSV import and export of subscribers.

Import reads the whole file first and checks every row, so that every bad row is reported
with its physical line number (the header is line 1; blank lines are skipped but counted)
before anything is written; then the good rows are written in batches, in one
transaction. Export writes every field; cells a spreadsheet would run as a formula are
prefixed with ``'``, and import removes that prefix again, so export-then-import into an
empty store gives the same store back.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import functools
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from sqlalchemy import delete, func, insert, select

from newsletter.errors import UnknownTopicError
from newsletter.store.errors import CsvError, InvalidEmailError, StoreError
from newsletter.store.models import (
    SOURCES,
    STATUSES,
    ConsentRecord,
    Subscriber,
    SubscriberTopic,
    Suppression,
    utcnow,
)
from newsletter.store.operations import (
    ALL_TOPICS_WORDS,
    email_hash,
    normalise_email,
    resolve_topics,
)
from newsletter.store.views import ImportReport, RowProblem

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from newsletter.store.db import Store

COLUMNS = (
    "email",
    "name",
    "status",
    "topics",
    "all_topics",
    "paused_until",
    "source",
    "created_at",
    "confirmed_at",
    "unsubscribed_at",
)
DELIMITERS = (",", ";", "\t")
CHUNK = 5000  # rows per executemany / per IN (...) lookup (under SQLite's 32766 limit)
# What a spreadsheet would take as the start of a formula (OWASP's CSV injection list).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# Escaped cells are the dangerous ones plus those that already look escaped, so that
# neutralise() and unneutralise() are exact inverses.
_ESCAPED = re.compile(r"^'*[=+\-@\t\r]")
_TRUE = ("1", "true", "yes", "y", "t")
_FALSE = ("0", "false", "no", "n", "f", "")

ProgressFn = Callable[[str, int, int], None]


def neutralise(cell: str) -> str:
    """Prefix ``'`` to a cell a spreadsheet would run as a formula."""
    return "'" + cell if _ESCAPED.match(cell) else cell


def unneutralise(cell: str) -> str:
    """Undo :func:`neutralise`."""
    return cell[1:] if cell.startswith("'") and _ESCAPED.match(cell[1:]) else cell


# --- reading -----------------------------------------------------------------------------


def decode_csv(data: bytes, name: str, encoding: str | None = None) -> str:
    """The text of a CSV file: UTF-8 (a BOM is fine) unless ``encoding`` says otherwise."""
    enc = encoding or "utf-8"
    try:
        codec = codecs.lookup(enc)
    except LookupError:
        raise CsvError(
            f"unknown encoding {enc!r}", hint="e.g. --encoding utf-8, cp1252 or latin-1"
        ) from None
    if codec.name == "utf-8":
        enc = "utf-8-sig"  # drops the byte-order mark Excel writes
    try:
        return data.decode(enc)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise CsvError(
            f"{name}: line {line}: not valid {codec.name} (byte 0x{data[exc.start]:02x})",
            hint="save the file as UTF-8, or say its encoding, e.g. --encoding cp1252 "
            "(Excel on Windows) or --encoding latin-1",
        ) from None


def sniff_delimiter(header_line: str) -> str:
    """Comma, semicolon or tab: whichever the header line uses most (comma if none).

    Only the header is looked at: data cells contain ``;`` between topics.
    """
    counts = {d: header_line.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


@dataclass
class _Row:
    line: int
    email: str
    name: str | None = None
    status: str | None = None
    topics: list[str] | None = None
    all_topics: bool | None = None
    paused_until: dt.date | None = None
    source: str | None = None
    created_at: dt.datetime | None = None
    confirmed_at: dt.datetime | None = None
    unsubscribed_at: dt.datetime | None = None
    given: set[str] = field(default_factory=set)  # columns with a value in this row
    columns: frozenset[str] = frozenset()  # columns of the file


def _records(text: str, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """(first physical line, cells) of every non-blank record."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=False)
    previous_end = 0
    for cells in reader:
        start = previous_end + 1
        previous_end = reader.line_num
        if not cells or all(not c.strip() for c in cells):
            continue
        yield start, cells


def _header(cells: list[str], name: str) -> list[str]:
    columns = [
        c.strip().lstrip("\ufeff").lower().replace(" ", "_").replace("-", "_") for c in cells
    ]
    unknown = [c for c in columns if c not in COLUMNS]
    if unknown:
        raise CsvError(
            f"{name}: line 1: unknown column {unknown[0]!r}",
            hint="columns: " + ", ".join(COLUMNS) + " (only email is required)",
        )
    dupes = {c for c in columns if columns.count(c) > 1}
    if dupes:
        raise CsvError(f"{name}: line 1: column {sorted(dupes)[0]!r} appears twice")
    if "email" not in columns:
        raise CsvError(
            f"{name}: line 1: no 'email' column",
            hint="the first line must name the columns, e.g. email,name,topics",
        )
    return columns


def _parse_time(value: str) -> dt.datetime:
    when = dt.datetime.fromisoformat(value)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.astimezone(dt.UTC)


def _parse_row(line: int, columns: list[str], cells: list[str], check_dns: bool) -> _Row:
    """One row checked; raises ValueError with the reason if it is bad."""
    if len(cells) > len(columns) and any(c.strip() for c in cells[len(columns) :]):
        raise ValueError(f"{len(cells)} cells but the header names {len(columns)} columns")
    values = {
        col: unneutralise(cells[i].strip()) if i < len(cells) else ""
        for i, col in enumerate(columns)
    }
    try:
        row = _Row(line, normalise_email(values["email"], check_dns=check_dns))
    except InvalidEmailError as exc:
        raise ValueError(exc.message) from None
    row.given = {c for c, v in values.items() if v != ""}
    row.columns = frozenset(columns)
    if "name" in values:
        row.name = values["name"]
        if len(row.name) > 200:
            raise ValueError("name longer than 200 characters")
    status = values.get("status", "").lower()
    if status:
        if status not in STATUSES:
            raise ValueError(f"unknown status {values['status']!r} (one of: {', '.join(STATUSES)})")
        row.status = status
    source = values.get("source", "").lower()
    if source:
        if source not in SOURCES:
            raise ValueError(f"unknown source {values['source']!r} (one of: {', '.join(SOURCES)})")
        row.source = source
    if "all_topics" in values:
        flag = values["all_topics"].lower()
        if flag not in _TRUE + _FALSE:
            raise ValueError(f"all_topics is {values['all_topics']!r}; write true or false")
        row.all_topics = flag in _TRUE if flag else None
    topics_text = values.get("topics", "")
    if topics_text.lower() in ALL_TOPICS_WORDS:
        row.all_topics, row.topics = True, []
    elif topics_text:
        try:
            row.topics = resolve_topics(topics_text)
        except UnknownTopicError as exc:
            raise ValueError(f"{exc.message} ({exc.hint})") from None
    if row.all_topics:
        row.topics = []
    for col in ("paused_until", "created_at", "confirmed_at", "unsubscribed_at"):
        text = values.get(col, "")
        if not text:
            continue
        try:
            if col == "paused_until":
                row.paused_until = dt.date.fromisoformat(text)
            else:
                setattr(row, col, _parse_time(text))
        except ValueError:
            raise ValueError(f"{col} {text!r} is not a date (YYYY-MM-DD)") from None
    return row


def read_rows(
    text: str, name: str, check_dns: bool = False, progress: ProgressFn | None = None
) -> tuple[list[_Row], list[RowProblem], int]:
    """Check every row: (good rows, bad rows with reasons, number of data rows)."""
    first_line = next((ln for ln in text.splitlines() if ln.strip()), "")
    records = list(_records(text, sniff_delimiter(first_line)))
    if not records:
        raise CsvError(f"{name} is empty", hint="the first line must name the columns: email,...")
    columns = _header(records[0][1], name)
    good: list[_Row] = []
    bad: list[RowProblem] = []
    seen: dict[str, int] = {}
    total = len(records) - 1
    for n, (line, cells) in enumerate(records[1:], 1):
        raw_email = (
            cells[columns.index("email")].strip() if columns.index("email") < len(cells) else ""
        )
        try:
            row = _parse_row(line, columns, cells, check_dns)
        except ValueError as exc:
            bad.append(RowProblem(line, raw_email, str(exc)))
        else:
            if row.email in seen:
                bad.append(RowProblem(line, raw_email, f"duplicate of line {seen[row.email]}"))
            else:
                seen[row.email] = line
                good.append(row)
        if progress and n % 2000 == 0:
            progress("checking", n, total)
    if progress:
        progress("checking", total, total)
    return good, bad, total


# --- writing -----------------------------------------------------------------------------


class _DryRun(Exception):
    """Raised inside the transaction to roll a dry run back."""


def _chunks(items: list[Any], size: int = CHUNK) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def import_csv(
    store: Store,
    path: str | Path,
    *,
    encoding: str | None = None,
    on_duplicate: str = "skip",
    atomic: bool = False,
    dry_run: bool = False,
    resubscribe: bool = False,
    check_dns: bool = False,
    progress: ProgressFn | None = None,
) -> ImportReport:
    """Import subscribers from a CSV file; see the module docstring for the rules.

    Addresses already in the store are left alone (``on_duplicate="skip"``) or get the
    row's name, topics and status (``"update"``). Unsubscribed and erased people are never
    brought back unless ``resubscribe``, which is logged in their consent history. With
    ``atomic`` one bad row means nothing is imported; ``dry_run`` changes nothing.
    """
    if on_duplicate not in ("skip", "update"):
        raise StoreError(f"on_duplicate must be skip or update, not {on_duplicate!r}")
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CsvError(f"cannot read {path}: {exc.strerror}", hint="check the path") from None
    text = decode_csv(data, path.name, encoding)
    good, bad, total = read_rows(text, path.name, check_dns, progress)
    report = ImportReport(rows=total, errors=bad, dry_run=dry_run)
    if atomic and bad:
        report.atomic_aborted = True
        return report
    try:
        with store.transaction() as session:
            _write(store, session, good, report, path.name, on_duplicate, resubscribe, progress)
            if dry_run:
                raise _DryRun
    except _DryRun:
        pass
    report.errors.sort(key=lambda p: p.line)
    report.skipped.sort(key=lambda p: p.line)
    return report


def _write(
    store: Store,
    s: Session,
    rows: list[_Row],
    report: ImportReport,
    file_name: str,
    on_duplicate: str,
    resubscribe: bool,
    progress: ProgressFn | None,
) -> None:
    now = utcnow()
    existing: dict[str, Subscriber] = {}
    for chunk in _chunks([r.email for r in rows]):
        for sub in s.scalars(select(Subscriber).where(Subscriber.email.in_(chunk))):
            existing[sub.email] = sub
    fresh = [r for r in rows if r.email not in existing]
    hashes = {r.email: email_hash(store, s, r.email) for r in fresh}
    suppressed: set[str] = set()
    for chunk in _chunks(list(hashes.values())):
        suppressed.update(
            s.scalars(select(Suppression.email_hash).where(Suppression.email_hash.in_(chunk)))
        )

    new_rows: list[tuple[_Row, str]] = []  # (row, consent event)
    lift: list[str] = []  # suppression hashes to drop
    for row in fresh:
        if hashes[row.email] in suppressed:
            if not resubscribe:
                report.skipped.append(
                    RowProblem(
                        row.line,
                        row.email,
                        "erased earlier at their request (suppression list); "
                        "pass --resubscribe only if they asked to come back",
                    )
                )
                continue
            lift.append(hashes[row.email])
            new_rows.append((row, "resubscribed"))
            report.resubscribed += 1
        else:
            new_rows.append((row, "subscribed"))
            report.added += 1

    _insert_new(s, new_rows, now, file_name, progress, len(rows))
    for chunk in _chunks(lift):
        s.execute(delete(Suppression).where(Suppression.email_hash.in_(chunk)))

    for row in rows:
        sub = existing.get(row.email)
        if sub is None:
            continue
        if sub.status == "unsubscribed" and row.status != "unsubscribed":
            if resubscribe:
                _update_existing(
                    s,
                    sub,
                    row,
                    now,
                    file_name,
                    resubscribing=True,
                    apply_fields=on_duplicate == "update",
                )
                report.resubscribed += 1
            elif on_duplicate == "update":
                report.skipped.append(
                    RowProblem(
                        row.line,
                        row.email,
                        "unsubscribed; left as is (pass --resubscribe only if they asked to "
                        "come back)",
                    )
                )
            else:
                report.unchanged += 1
            continue
        if on_duplicate == "update" and _update_existing(s, sub, row, now, file_name):
            report.updated += 1
        else:
            report.unchanged += 1


def _insert_new(
    s: Session,
    new_rows: list[tuple[_Row, str]],
    now: dt.datetime,
    file_name: str,
    progress: ProgressFn | None,
    total: int,
) -> None:
    """Multi-row INSERTs for new subscribers, their topics and consent records."""
    sub_table = Subscriber.__table__
    done = 0
    for chunk in _chunks(new_rows):
        params = []
        for row, _event in chunk:
            status = row.status or "active"
            params.append(
                {
                    "email": row.email,
                    "name": row.name or "",
                    "status": status,
                    "all_topics": bool(row.all_topics)
                    if row.all_topics is not None
                    else not row.topics,
                    "paused_until": row.paused_until if status == "paused" else None,
                    "source": row.source or "import",
                    "created_at": row.created_at or now,
                    # A column in the file is taken as it is, even empty (exports round-trip).
                    "confirmed_at": row.confirmed_at
                    if "confirmed_at" in row.columns
                    else (None if status == "pending" else now),
                    "unsubscribed_at": row.unsubscribed_at
                    if "unsubscribed_at" in row.columns
                    else (now if status == "unsubscribed" else None),
                }
            )
        # Ids come back from one query by key range, not RETURNING: rows written
        # meanwhile by others (the web sign-up) are ignored by the lookup by address.
        before = s.scalar(select(func.coalesce(func.max(sub_table.c.id), 0)))
        _bulk_insert(s, sub_table, params)
        found = s.execute(select(sub_table.c.email, sub_table.c.id).where(sub_table.c.id > before))
        id_of = {email: sid for email, sid in found}
        ids = [id_of[p["email"]] for p in params]
        # An all-topics row stores no topic rows.
        topic_params = [
            {"subscriber_id": sid, "topic_slug": slug}
            for sid, (row, _e), p in zip(ids, chunk, params, strict=True)
            if not p["all_topics"]
            for slug in (row.topics or [])
        ]
        _bulk_insert(s, SubscriberTopic.__table__, topic_params)
        _bulk_insert(
            s,
            ConsentRecord.__table__,
            [
                {
                    "subscriber_id": sid,
                    "at": now,
                    "event": event,
                    "source": "import",
                    "ip": None,
                    "consent_version": None,
                    "detail": f"imported from {file_name}"
                    + (f" ({p['status']})" if p["status"] != "active" else ""),
                }
                for sid, (_row, event), p in zip(ids, chunk, params, strict=True)
            ],
        )
        done += len(chunk)
        if progress:
            progress("writing", done, total)


def _bulk_insert(s: Session, table: Any, rows: list[dict[str, Any]]) -> None:
    """``executemany`` straight on the driver, with the columns' own bind conversions.

    SQLAlchemy's executemany builds each row's parameters in Python; for 10^5 rows that
    alone would take most of the import's time budget. The statement is still generated
    by SQLAlchemy, and each value passes through the same type conversion it would apply.
    """
    if not rows:
        return
    conn = s.connection()
    dialect = conn.dialect
    names = list(rows[0])
    # Values repeat (every row of an import shares its time stamp), so each column's
    # conversion is cached; every value is hashable (str, int, bool, date, datetime, None).
    procs = [
        functools.lru_cache(maxsize=256)(proc) if proc is not None else None
        for proc in (table.c[n].type.dialect_impl(dialect).bind_processor(dialect) for n in names)
    ]
    mark = "?" if dialect.paramstyle in ("qmark", "numeric") else "%s"
    sql = f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({', '.join([mark] * len(names))})"
    data = [
        tuple(v if p is None else p(v) for v, p in zip(row.values(), procs, strict=True))
        for row in rows
    ]
    conn.exec_driver_sql(sql, data)


def _update_existing(
    s: Session,
    sub: Subscriber,
    row: _Row,
    now: dt.datetime,
    file_name: str,
    resubscribing: bool = False,
    apply_fields: bool = True,
) -> bool:
    """Apply a row to a subscriber already in the store; True if anything changed."""
    changed = False
    detail = f"imported from {file_name}"
    if resubscribing:
        sub.status = row.status or "active"
        sub.unsubscribed_at = None
        _add_event(s, sub.id, "resubscribed", now, detail)
        changed = True
    if not apply_fields:
        return changed
    if "name" in row.given and row.name != sub.name:
        sub.name = row.name or ""
        changed = True
    if row.topics is not None or row.all_topics is not None:
        before = (sub.all_topics, sorted(t.topic_slug for t in sub.topics))
        all_topics = bool(row.all_topics) if row.all_topics is not None else not row.topics
        slugs = [] if all_topics else sorted(set(row.topics or []))
        if before != (all_topics, slugs):
            sub.all_topics = all_topics
            s.execute(delete(SubscriberTopic).where(SubscriberTopic.subscriber_id == sub.id))
            s.expire(sub, ["topics"])
            if slugs:
                s.execute(
                    insert(SubscriberTopic.__table__),
                    [{"subscriber_id": sub.id, "topic_slug": t} for t in slugs],
                )
            _add_event(s, sub.id, "topics_changed", now, detail)
            changed = True
    if row.status and row.status != sub.status and not resubscribing:
        event = {
            "unsubscribed": "unsubscribed",
            "paused": "paused",
            "active": "resumed" if sub.status == "paused" else "confirmed",
        }.get(row.status)
        sub.status = row.status
        if row.status == "unsubscribed":
            sub.unsubscribed_at = now
        if row.status == "active" and sub.confirmed_at is None:
            sub.confirmed_at = now
        sub.paused_until = row.paused_until if row.status == "paused" else None
        if event:
            _add_event(s, sub.id, event, now, detail)
        changed = True
    return changed


def _add_event(s: Session, sid: int, event: str, now: dt.datetime, detail: str) -> None:
    s.execute(
        insert(ConsentRecord.__table__),
        [
            {
                "subscriber_id": sid,
                "at": now,
                "event": event,
                "source": "import",
                "ip": None,
                "consent_version": None,
                "detail": detail,
            }
        ],
    )


# --- export ------------------------------------------------------------------------------


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return neutralise(str(value))


def export_csv(store: Store, out: TextIO, progress: ProgressFn | None = None) -> int:
    """Write every subscriber (all fields; topics as ``;``-separated slugs) to ``out``.

    Returns the number of subscribers written. Reads in batches by key, so memory stays
    flat on large stores.
    """
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    written = 0
    last_id = 0
    with store.transaction() as s:
        total = s.scalar(select(func.count(Subscriber.id))) or 0
        while True:
            subs = list(
                s.scalars(
                    select(Subscriber)
                    .where(Subscriber.id > last_id)
                    .order_by(Subscriber.id)
                    .limit(CHUNK)
                )
            )
            if not subs:
                break
            topics: dict[int, list[str]] = {sub.id: [] for sub in subs}
            for sid, slug in s.execute(
                select(SubscriberTopic.subscriber_id, SubscriberTopic.topic_slug)
                .where(SubscriberTopic.subscriber_id.in_(list(topics)))
                .order_by(SubscriberTopic.topic_slug)
            ):
                topics[sid].append(slug)
            for sub in subs:
                writer.writerow(
                    [
                        _cell(sub.email),
                        _cell(sub.name),
                        sub.status,
                        ";".join(topics[sub.id]),
                        _cell(sub.all_topics),
                        _cell(sub.paused_until),
                        sub.source,
                        _cell(sub.created_at),
                        _cell(sub.confirmed_at),
                        _cell(sub.unsubscribed_at),
                    ]
                )
            written += len(subs)
            last_id = subs[-1].id
            s.expunge_all()  # keep memory flat on large stores
            if progress:
                progress("exporting", written, total)
    return written
