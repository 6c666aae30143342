"""CSV import and export of subscribers.

Import reads the whole file first and checks every row, so that every bad row is reported
with its physical line number (the header is line 1; blank lines are skipped but counted)
before anything is written; then the good rows are written in batches, in one
transaction (:func:`newsletter.store.subscribers.import_rows`), with the rules below
deciding what each row does to someone already in the store. Export writes every field;
cells a spreadsheet would run as a formula are prefixed with ``'``, and import removes
that prefix again, so export-then-import into an empty store gives the same store back.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from newsletter.content.taxonomy import means_all_topics, resolve_topics
from newsletter.errors import NewsletterError, UnknownTopicError
from newsletter.importers.deliverability import check_deliverable
from newsletter.rules.addresses import InvalidAddressError, normalise_address
from newsletter.rules.names import InvalidNameError, check_name
from newsletter.rules.statuses import (
    SOURCES,
    SUBSCRIBER_STATUSES,
    StatusChange,
    forced_back,
    imported,
    resubscribe,
)
from newsletter.store import subscribers
from newsletter.store.db import Store
from newsletter.store.subscribers import ImportPlan, ImportRow, ImportWrite

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
# What a spreadsheet would take as the start of a formula (OWASP's CSV injection list).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# Escaped cells are the dangerous ones plus those that already look escaped, so that
# neutralise() and unneutralise() are exact inverses.
_ESCAPED = re.compile(r"^'*[=+\-@\t\r]")
MAX_CELL = csv.field_size_limit()  # characters in one cell (the csv module's limit, 128 KB)
_TRUE = ("1", "true", "yes", "y", "t")
_FALSE = ("0", "false", "no", "n", "f", "")

ProgressFn = Callable[[str, int, int], None]


class CsvError(NewsletterError):
    """A CSV file cannot be read as a whole (encoding, header)."""


@dataclass(frozen=True)
class RowProblem:
    """One CSV row that was not imported, with its physical line number."""

    line: int
    email: str
    reason: str


@dataclass
class ImportReport:
    """What an import did (or, with ``dry_run``, would do)."""

    rows: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0  # already in the store and skipped, or updated to the same values
    resubscribed: int = 0
    errors: list[RowProblem] = field(default_factory=list)
    skipped: list[RowProblem] = field(default_factory=list)  # not faults: e.g. suppressed
    dry_run: bool = False
    atomic_aborted: bool = False  # --atomic and some row was bad: nothing was imported

    def to_dict(self) -> dict[str, object]:
        """A JSON-able dict."""
        return {
            "rows": self.rows,
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "resubscribed": self.resubscribed,
            "errors": [vars(p) for p in self.errors],
            "skipped": [vars(p) for p in self.skipped],
            "dry_run": self.dry_run,
            "atomic_aborted": self.atomic_aborted,
        }


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


def _records(text: str, delimiter: str, name: str) -> Iterator[tuple[int, int, list[str]]]:
    """(first physical line, last physical line, cells) of every non-blank record.

    A file the CSV grammar cannot read (a quote never closed, text after a closing quote,
    a cell over the size limit) is a :class:`CsvError` naming the line: nothing of such a
    file is imported, as a quote out of place would shift every row after it.
    """
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    previous_end = 0
    while True:
        start = previous_end + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise _malformed(text, delimiter, name, start, reader.line_num, str(exc)) from None
        previous_end = reader.line_num
        if not cells or all(not c.strip() for c in cells):
            continue
        yield start, previous_end, cells


def _malformed(text: str, delimiter: str, name: str, start: int, at: int, reason: str) -> CsvError:
    """The error for a record the csv module could not read (``reason`` is its message)."""
    if "field larger than field limit" in reason:
        return CsvError(
            f"{name}: line {start}: a cell is longer than {MAX_CELL // 1024} KB "
            f"({MAX_CELL} characters); nothing was imported",
            hint="no subscriber field is that long: is a closing quote missing, so that "
            "the cell runs on over the rows after it?",
        )
    if "unexpected end of data" in reason:
        line = _open_quote_line(text, delimiter, start)
        return CsvError(
            f"{name}: line {line}: a quoted cell starts here and its closing quote never "
            "comes; nothing was imported",
            hint='close the quote; a quote inside a quoted cell is written twice ("")',
        )
    if "expected after" in reason:
        return CsvError(
            f"{name}: line {at}: text after the closing quote of a cell; nothing was imported",
            hint='quote the whole cell and write each quote inside it twice, e.g. "Ann ""Bo"" Lee"',
        )
    return CsvError(
        f"{name}: line {at}: not readable as CSV ({reason}); nothing was imported",
        hint="save the file as CSV (comma, semicolon or tab separated) and check its quotes",
    )


def _open_quote_line(text: str, delimiter: str, start: int) -> int:
    """The line where the quoted cell left open at the end of the file starts.

    Scans from physical line ``start`` (the first line of the record the csv module
    could not finish) with the grammar it uses: a quote opens a cell only as the cell's
    first character, and ``""`` inside a quoted cell is one quote.
    """
    lines = io.StringIO(text, newline="").readlines()
    line, opened_at = start, start
    at_cell_start, quoted, after_quote = True, False, False
    for physical in lines[start - 1 :]:
        for char in physical:
            if quoted:
                if char == '"':
                    quoted, after_quote = False, True
                continue
            if after_quote and char == '"':  # "" inside a quoted cell
                quoted, after_quote = True, False
                continue
            after_quote = False
            if char == '"' and at_cell_start:
                quoted, opened_at = True, line
            at_cell_start = char in (delimiter, "\r", "\n")
        line += 1
    return opened_at


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


def _parse_row(line: int, columns: list[str], cells: list[str], check_dns: bool) -> ImportRow:
    """One row checked; raises ValueError with the reason if it is bad."""
    if len(cells) > len(columns) and any(c.strip() for c in cells[len(columns) :]):
        raise ValueError(f"{len(cells)} cells but the header names {len(columns)} columns")
    values = {
        col: unneutralise(cells[i].strip()) if i < len(cells) else ""
        for i, col in enumerate(columns)
    }
    try:
        address = normalise_address(values["email"])
        if check_dns:
            check_deliverable(address)
    except InvalidAddressError as exc:
        raise ValueError(exc.message) from None
    row = ImportRow(line, address)
    row.given = {c for c, v in values.items() if v != ""}
    row.columns = frozenset(columns)
    if "name" in values:
        row.name = check_name(values["name"])
    status = values.get("status", "").lower()
    if status:
        if status not in SUBSCRIBER_STATUSES:
            raise ValueError(
                f"unknown status {values['status']!r} (one of: {', '.join(SUBSCRIBER_STATUSES)})"
            )
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
    if means_all_topics(topics_text):
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
) -> tuple[list[ImportRow], list[RowProblem], int]:
    """Check every row: (good rows, bad rows with reasons, number of data rows)."""
    first_line = next((ln for ln in text.splitlines() if ln.strip()), "")
    records = list(_records(text, sniff_delimiter(first_line), name))
    if not records:
        raise CsvError(f"{name} is empty", hint="the first line must name the columns: email,...")
    columns = _header(records[0][2], name)
    good: list[ImportRow] = []
    bad: list[RowProblem] = []
    seen: dict[str, int] = {}
    total = len(records) - 1
    for n, (line, end, cells) in enumerate(records[1:], 1):
        raw_email = (
            cells[columns.index("email")].strip() if columns.index("email") < len(cells) else ""
        )
        try:
            row = _parse_row(line, columns, cells, check_dns)
        except ValueError as exc:
            reason = str(exc)
            if end > line and isinstance(exc, InvalidNameError):
                reason += f" (the row runs from line {line} to {end}: is a quote not closed?)"
            bad.append(RowProblem(line, raw_email, reason))
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


@dataclass(frozen=True)
class ImportOptions:
    """How an import treats its file and the people already in the store.

    ``on_duplicate``: addresses already in the store are left alone ("skip") or get the
    row's name, topics and status ("update"). Unsubscribed and erased people are never
    brought back unless ``resubscribe``, which is logged in their consent history. With
    ``atomic`` one bad row means nothing is imported; ``dry_run`` changes nothing;
    ``check_dns`` also checks that each domain receives mail. A bounced address or
    someone who reported the list as spam comes back only with ``force_resubscribe``
    (logged).
    """

    encoding: str | None = None
    on_duplicate: str = "skip"
    atomic: bool = False
    dry_run: bool = False
    resubscribe: bool = False
    check_dns: bool = False
    force_resubscribe: bool = False


def import_csv(
    store: Store,
    path: str | Path,
    options: ImportOptions = ImportOptions(),
    progress: ProgressFn | None = None,
) -> ImportReport:
    """Import subscribers from a CSV file; see the module docstring and
    :class:`ImportOptions` for the rules."""
    encoding, on_duplicate, atomic = options.encoding, options.on_duplicate, options.atomic
    dry_run, resubscribe, check_dns = options.dry_run, options.resubscribe, options.check_dns
    if on_duplicate not in ("skip", "update"):
        raise CsvError(f"on_duplicate must be skip or update, not {on_duplicate!r}")
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
    rules = _ImportRules(good, report, on_duplicate, resubscribe, options.force_resubscribe)
    write, changed = subscribers.import_rows(
        store, good, rules.decide, file_name=path.name, dry_run=dry_run, progress=progress
    )
    rules.count_updates(write, changed)
    report.errors.sort(key=lambda p: p.line)
    report.skipped.sort(key=lambda p: p.line)
    return report


class _ImportRules:
    """What each row does, given who is already in the store (and who was erased)."""

    def __init__(
        self,
        rows: list[ImportRow],
        report: ImportReport,
        on_duplicate: str,
        resubscribe: bool,
        force: bool = False,
    ) -> None:
        self.rows = rows
        self.report = report
        self.update = on_duplicate == "update"
        self.resubscribe = resubscribe
        self.force = force
        self.resubscribing: set[int] = set()  # indexes into ImportWrite.updates

    def decide(self, plan: ImportPlan) -> ImportWrite:
        report = self.report
        new: list[tuple[ImportRow, str]] = []
        lift: list[str] = []
        updates: list[tuple[ImportRow, StatusChange | None, bool]] = []
        for row in self.rows:
            current = plan.existing.get(row.email)
            if current is None:
                reason = plan.suppressed.get(row.email)
                if reason is not None:
                    # Someone who reported spam needs the stronger flag, as when their
                    # record is still here (below).
                    allowed = self.force if reason == "complaint" else self.resubscribe
                    if not allowed:
                        report.skipped.append(
                            RowProblem(
                                row.line,
                                row.email,
                                "reported the list as spam (suppression list); pass "
                                "--force-resubscribe only if they asked to come back (logged)"
                                if reason == "complaint"
                                else "erased earlier at their request (suppression list); "
                                "pass --resubscribe only if they asked to come back",
                            )
                        )
                        continue
                    lift.append(row.email)
                    new.append((row, "resubscribed"))
                    report.resubscribed += 1
                else:
                    new.append((row, "subscribed"))
                    report.added += 1
                continue
            stopped = current.status == "bounced" or (
                current.status == "unsubscribed" and row.email in plan.complained
            )
            if stopped and row.status != current.status:
                # A dead address, or someone who reported the list as spam, comes back
                # only by an administrator's explicit decision.
                if self.force:
                    change = forced_back(current.status, row.status or None)
                    self.resubscribing.add(len(updates))
                    updates.append((row, change, self.update))
                    report.resubscribed += 1
                    continue
                why = (
                    "bounced (mail to it was refused)"
                    if current.status == "bounced"
                    else "unsubscribed after reporting the list as spam"
                )
                report.skipped.append(
                    RowProblem(
                        row.line,
                        row.email,
                        f"{why}; left as is: `newsletter bounces show` has the evidence; "
                        "pass --force-resubscribe only if they asked to come back (logged)",
                    )
                )
                continue
            if current.status == "unsubscribed" and row.status != "unsubscribed":
                if self.resubscribe:
                    change = resubscribe(current.status, pending=False, to=row.status or "active")
                    self.resubscribing.add(len(updates))
                    updates.append((row, change, self.update))
                    report.resubscribed += 1
                elif self.update:
                    report.skipped.append(
                        RowProblem(
                            row.line,
                            row.email,
                            "unsubscribed; left as is (pass --resubscribe only if they asked "
                            "to come back)",
                        )
                    )
                else:
                    report.unchanged += 1
                continue
            if self.update:
                status_change = (
                    imported(current.status, row.status, row.paused_until) if row.status else None
                )
                updates.append((row, status_change, True))
            else:
                report.unchanged += 1
        return ImportWrite(new, lift, updates)

    def count_updates(self, write: ImportWrite, changed: list[bool]) -> None:
        for i, did in enumerate(changed):
            if i in self.resubscribing:
                continue
            if did:
                self.report.updated += 1
            else:
                self.report.unchanged += 1


# --- export ------------------------------------------------------------------------------


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return neutralise(str(value))


_NEEDS_QUOTES = re.compile(r'[,"\r\n]')


def csv_line(cells: Iterable[str]) -> str:
    """One CSV record with ``\n`` at its end.

    A cell holding a comma, a quote, a line feed or a carriage return is quoted (quotes
    inside doubled), so that every reader, this module's import included, reads it back
    as it was. (Python's ``csv.writer`` leaves a bare carriage return unquoted when its
    line ends are ``\n``, and the cell then splits in two on reading.)
    """
    return (
        ",".join(
            '"' + cell.replace('"', '""') + '"' if _NEEDS_QUOTES.search(cell) else cell
            for cell in cells
        )
        + "\n"
    )


def export_csv(store: Store, out: TextIO, progress: ProgressFn | None = None) -> int:
    """Write every subscriber (all fields; topics as ``;``-separated slugs) to ``out``.

    Returns the number of subscribers written. Reads in batches by key, so memory stays
    flat on large stores.
    """
    out.write(csv_line(COLUMNS))
    written = 0
    for total, batch in subscribers.export_batches(store):
        for sub in batch:
            out.write(
                csv_line(
                    [
                        _cell(sub.email),
                        _cell(sub.name),
                        sub.status,
                        ";".join(sub.topics),
                        _cell(sub.all_topics),
                        _cell(sub.paused_until),
                        sub.source,
                        _cell(sub.created_at),
                        _cell(sub.confirmed_at),
                        _cell(sub.unsubscribed_at),
                    ]
                )
            )
        written += len(batch)
        if progress:
            progress("exporting", written, total)
    return written
