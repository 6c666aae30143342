"""CSV import and export of subscribers.

Import streams: the file is decoded, read and checked one chunk of rows at a time
(:data:`CHUNK_ROWS`), and each chunk is written before the next is read, all inside one
transaction (:func:`newsletter.store.subscriber_import.bulk_import`). So memory does not
grow with the file, and the import is still all or nothing: a file the CSV grammar or the
encoding cannot read, found at any line, rolls back every chunk written before it. Every
bad row is reported with its physical line number (the header is line 1; blank lines are
skipped but counted); the good rows are imported, or with ``atomic`` none. The rules below
decide what each row does to someone already in the store. Export writes every field;
cells a spreadsheet would run as a formula are prefixed with ``'``, and import removes
that prefix again, so export-then-import into an empty store gives the same store back.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import functools
import io
import itertools
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from newsletter.content.taxonomy import means_all_topics, resolve_topics
from newsletter.errors import NewsletterError, UnknownTopicError
from newsletter.importers import csv_columns
from newsletter.importers.csv_columns import (
    STATUS_WORDS,
    ColumnError,
    Header,
    status_word,
    stricter,
)
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
from newsletter.store import subscriber_import as subscribers_import
from newsletter.store import subscribers
from newsletter.store.db import Store
from newsletter.store.subscriber_import import ImportPlan, ImportRow, ImportWrite

COLUMNS = csv_columns.OWN_FIELDS  # the columns of our own export, in its order
DELIMITERS = (",", ";", "\t")
# What a spreadsheet would take as the start of a formula (OWASP's CSV injection list).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# Escaped cells are the dangerous ones plus those that already look escaped, so that
# neutralise() and unneutralise() are exact inverses.
_ESCAPED = re.compile(r"^'*[=+\-@\t\r]")
MAX_CELL = csv.field_size_limit()  # characters in one cell (the csv module's limit, 128 KB)
_TRUE = ("1", "true", "yes", "y", "t")
_FALSE = ("0", "false", "no", "n", "f", "")
_SAID_FALSE = _FALSE[:-1]  # an empty cell says nothing
# Rows checked and written at a time: large enough that per-chunk queries cost little,
# small enough that a chunk's rows and objects are a few megabytes.
CHUNK_ROWS = 10_000

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
    #: (the file's column, the field it filled), in the file's order
    mapping: list[tuple[str, str]] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    #: tags of a tags column that are not topics -> rows with them (those rows keep
    #: only the tags that are topics)
    other_tags: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        """A JSON-able dict."""
        return {
            "mapping": [{"column": c, "field": f} for c, f in self.mapping],
            "ignored_columns": self.ignored_columns,
            "other_tags": self.other_tags,
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


def _codec(encoding: str | None) -> tuple[str, str]:
    """(the encoding to decode with, its name for messages): UTF-8 unless told."""
    enc = encoding or "utf-8"
    try:
        codec = codecs.lookup(enc)
    except LookupError:
        raise CsvError(
            f"unknown encoding {enc!r}", hint="e.g. --encoding utf-8, cp1252 or latin-1"
        ) from None
    # utf-8-sig drops the byte-order mark Excel writes.
    return ("utf-8-sig" if codec.name == "utf-8" else enc), codec.name


def _not_decodable(name: str, codec_name: str, line: int, byte: int) -> CsvError:
    return CsvError(
        f"{name}: line {line}: not valid {codec_name} (byte 0x{byte:02x})",
        hint="save the file as UTF-8, or say its encoding, e.g. --encoding cp1252 "
        "(Excel on Windows) or --encoding latin-1",
    )


def _decode_error(path: Path, enc: str, codec_name: str) -> CsvError:
    """The error naming the line of the first byte of ``path`` that ``enc`` cannot decode.

    Only called once decoding has failed: the file is read again in blocks, counting
    line feeds in the bytes before the bad one, as :func:`decode_csv` does.
    """
    decoder = codecs.getincrementaldecoder(enc)()
    line_feeds = 0
    with path.open("rb") as fh:
        while True:
            block = fh.read(1 << 20)
            pending = decoder.getstate()[0]  # bytes of a character the last block cut
            try:
                decoder.decode(block, final=not block)
            except UnicodeDecodeError as exc:
                # The decoder saw the pending bytes and this block (less a BOM it dropped).
                seen = bytes(exc.object)
                line = line_feeds - pending.count(b"\n") + seen[: exc.start].count(b"\n") + 1
                return _not_decodable(path.name, codec_name, line, seen[exc.start])
            if not block:
                break
            line_feeds += block.count(b"\n")
    # Not reached for a file that failed to decode; kept as a plain answer all the same.
    return CsvError(f"{path.name}: not valid {codec_name}")  # pragma: no cover


def sniff_delimiter(header_line: str) -> str:
    """Comma, semicolon or tab: whichever the header line uses most (comma if none).

    Only the header is looked at: data cells contain ``;`` between topics.
    """
    counts = {d: header_line.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


Reopen = Callable[[], TextIO]  # the lines again, from the start (closed after use)


class _Records:
    """(first physical line, last physical line, cells) of every non-blank record.

    ``lines`` are the physical lines with their ends (a file opened with
    ``newline=""``), read as they are needed; ``reopen`` gives them again from the start,
    which only an error message needs. A file the CSV grammar cannot read (a quote never
    closed, text after a closing quote, a cell over the size limit) is a
    :class:`CsvError` naming the line: nothing of such a file is imported, as a quote
    out of place would shift every row after it.
    """

    def __init__(self, lines: Iterable[str], name: str, reopen: Reopen) -> None:
        self.name = name
        self.reopen = reopen
        lines = iter(lines)
        # The delimiter is sniffed from the first line that is not blank; the lines read
        # for it go to the reader first.
        head: list[str] = []
        first = ""
        for physical in lines:
            head.append(physical)
            if physical.strip():
                first = next(p for p in physical.splitlines() if p.strip())
                break
        self.delimiter = sniff_delimiter(first)
        self.reader = csv.reader(
            itertools.chain(head, lines), delimiter=self.delimiter, strict=True
        )
        self.previous_end = 0

    def __iter__(self) -> Iterator[tuple[int, int, list[str]]]:
        reader = self.reader
        while True:
            start = self.previous_end + 1
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise self._malformed(start, reader.line_num, str(exc)) from None
            self.previous_end = reader.line_num
            if not "".join(cells).strip():  # no cells, or only blank ones
                continue
            yield start, self.previous_end, cells

    def _malformed(self, start: int, at: int, reason: str) -> CsvError:
        """The error for a record the csv module could not read (``reason`` is its message)."""
        name = self.name
        if "field larger than field limit" in reason:
            return CsvError(
                f"{name}: line {start}: a cell is longer than {MAX_CELL // 1024} KB "
                f"({MAX_CELL} characters); nothing was imported",
                hint="no subscriber field is that long: is a closing quote missing, so that "
                "the cell runs on over the rows after it?",
            )
        if "unexpected end of data" in reason:
            with self.reopen() as again:
                line = _open_quote_line(again, self.delimiter, start)
            return CsvError(
                f"{name}: line {line}: a quoted cell starts here and its closing quote never "
                "comes; nothing was imported",
                hint='close the quote; a quote inside a quoted cell is written twice ("")',
            )
        if "expected after" in reason:
            return CsvError(
                f"{name}: line {at}: text after the closing quote of a cell; nothing was imported",
                hint="quote the whole cell and write each quote inside it twice, "
                'e.g. "Ann ""Bo"" Lee"',
            )
        return CsvError(
            f"{name}: line {at}: not readable as CSV ({reason}); nothing was imported",
            hint="save the file as CSV (comma, semicolon or tab separated) and check its quotes",
        )


def _open_quote_line(lines: Iterable[str], delimiter: str, start: int) -> int:
    """The line where the quoted cell left open at the end of the file starts.

    Scans from physical line ``start`` (the first line of the record the csv module
    could not finish) with the grammar it uses: a quote opens a cell only as the cell's
    first character, and ``""`` inside a quoted cell is one quote.
    """
    line, opened_at = start, start
    at_cell_start, quoted, after_quote = True, False, False
    for physical in itertools.islice(lines, start - 1, None):
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


def _header(cells: list[str], name: str, overrides: dict[str, str] | None = None) -> Header:
    try:
        return csv_columns.read_header(cells, name, overrides)
    except ColumnError as exc:
        raise CsvError(exc.message, hint=exc.hint) from None


_UTC_SUFFIX = re.compile(r"\s*(?:UTC|GMT)$", re.IGNORECASE)


def _parse_time(value: str) -> dt.datetime:
    """An ISO 8601 time (without a zone: UTC); other tools' ``... UTC`` suffix too."""
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        bare = _UTC_SUFFIX.sub("", value)
        if bare == value:
            raise
        when = dt.datetime.fromisoformat(bare).replace(tzinfo=dt.UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.astimezone(dt.UTC)


@functools.lru_cache(maxsize=1024)
def _topic_cell(text: str) -> tuple[bool, tuple[str, ...]]:
    """(every topic?, slugs) of a topics cell. Cached: a file repeats a few choices."""
    if means_all_topics(text):
        return True, ()
    try:
        return False, tuple(resolve_topics(text)) if text else ()
    except UnknownTopicError as exc:
        raise ValueError(f"{exc.message} ({exc.hint})") from None


_DATE_COLUMNS = ("paused_until", "created_at", "confirmed_at", "unsubscribed_at")


class _RowParser:
    """Checks one data row of a file with a given header (built once per file).

    Each column's position is found once, so a row is a few list look-ups, not a dict
    of its cells. Raises ValueError with the reason for a bad row; the checks run in a
    fixed order (cell count, email, name, status, source, all_topics, topics, dates), so
    a row with several faults always reports the same first one. The columns of other
    tools (first and last name, tags, their status columns) cost nothing when absent.
    """

    def __init__(self, header: Header | list[str], check_dns: bool) -> None:
        if not isinstance(header, Header):
            header = Header(list(header))
        fields = header.fields
        self.width = len(fields)
        # The store's fields the file speaks of (what `update` may change).
        real = {_REAL_FIELD.get(f, f) for f in fields if f is not None}
        self.names = frozenset(real)
        self.columns = [f if f in COLUMNS else None for f in fields]
        self.shown = {f: c for c, f in header.mapping}
        self.check_dns = check_dns
        at = {f: i for i, f in enumerate(fields) if f is not None}
        self.email_at = at["email"]
        self.name_at = at.get("name")
        self.status_at = at.get("status")
        self.source_at = at.get("source")
        self.all_topics_at = at.get("all_topics")
        self.topics_at = at.get("topics")
        self.dates = [(at[col], col) for col in _DATE_COLUMNS if col in at]
        self.first_at = at.get("first_name")
        self.last_at = at.get("last_name")
        self.tags_at = at.get("tags")
        self.disabled_at = at.get("email_disabled")
        self.subscribed_at = at.get("subscribed")
        self.cleaned_at = at.get("cleaned_at")
        # An unsubscribe time with no status column says the person left.
        self.unsub_means_left = "unsubscribed_at" in at and self.status_at is None
        # Only our own columns: the status is the status column's.
        self.plain = not self.unsub_means_left and not any(f in _REAL_FIELD for f in at)
        self.other_tags: dict[str, int] = {}

    def __call__(self, line: int, cells: list[str]) -> ImportRow:
        width = self.width
        if len(cells) != width:
            if len(cells) > width:
                if any(c.strip() for c in cells[width:]):
                    raise ValueError(f"{len(cells)} cells but the header names {width} columns")
                cells = cells[:width]
            else:  # a short row: the missing cells are empty
                cells = cells + [""] * (width - len(cells))
        cells = [c.strip() for c in cells]
        if "'" in "".join(cells):  # rare: only then is each cell looked at
            cells = [unneutralise(c) if c[:1] == "'" else c for c in cells]
        # The columns with a value in this row: usually all of them.
        given = self.names
        if not all(cells):
            given = frozenset(c for c, v in zip(self.columns, cells, strict=True) if v and c)
        try:
            address = normalise_address(cells[self.email_at])
            if self.check_dns:
                check_deliverable(address)
        except InvalidAddressError as exc:
            raise ValueError(exc.message) from None
        name = None if self.name_at is None else check_name(cells[self.name_at])
        if not name and (self.first_at is not None or self.last_at is not None):
            parts = [cells[i] for i in (self.first_at, self.last_at) if i is not None]
            joined = " ".join(p for p in parts if p)
            name = check_name(joined)
            if joined:
                given = given | {"name"}
        status = source = None
        if self.status_at is not None and (word := cells[self.status_at].lower()):
            status = status_word(word)
            if status is None:
                raise ValueError(
                    f"unknown {self.shown.get('status', 'status')} {cells[self.status_at]!r} "
                    f"(one of: {', '.join(SUBSCRIBER_STATUSES)}, or another tool's word: "
                    f"{', '.join(w for w in STATUS_WORDS if w not in SUBSCRIBER_STATUSES)})"
                )
        if not self.plain:
            status = self._stricter_status(cells, status)
        if self.source_at is not None:
            # Another tool's word for where someone came from says nothing of ours.
            source = cells[self.source_at].lower()
            source = source if source in SOURCES else None
        all_topics = None
        if self.all_topics_at is not None:
            flag = cells[self.all_topics_at].lower()
            if flag not in _TRUE + _FALSE:
                raise ValueError(
                    f"all_topics is {cells[self.all_topics_at]!r}; write true or false"
                )
            all_topics = flag in _TRUE if flag else None
        topics = None
        if self.topics_at is not None:
            topics_text = cells[self.topics_at]
            every, slugs = _topic_cell(topics_text)
            if every:
                all_topics, topics = True, []
            elif topics_text:
                topics = list(slugs)
        if self.tags_at is not None and cells[self.tags_at]:
            tagged, other = csv_columns.tag_topics(cells[self.tags_at])
            for tag in other:
                self.other_tags[tag] = self.other_tags.get(tag, 0) + 1
            if tagged and not all_topics:
                topics = list(dict.fromkeys((topics or []) + list(tagged)))
        if all_topics:
            topics = []
        row = ImportRow(line, address, name, status, topics, all_topics, None, source)
        row.given = given
        row.columns = self.names
        for i, col in self.dates:
            text = cells[i]
            if not text:
                continue
            try:
                if col == "paused_until":
                    row.paused_until = dt.date.fromisoformat(text)
                else:
                    setattr(row, col, _parse_time(text))
            except ValueError:
                shown = self.shown.get(col, col)
                raise ValueError(f"{shown} {text!r} is not a date (YYYY-MM-DD)") from None
        return row

    def _stricter_status(self, cells: list[str], status: str | None) -> str | None:
        """The status once the other tools' columns that stop mail are read: a row
        they mark as gone is never imported as active."""
        if self.disabled_at is not None:
            flag = cells[self.disabled_at].lower()
            if flag not in _TRUE + _FALSE:
                raise ValueError(
                    f"{self.shown.get('email_disabled')} is {cells[self.disabled_at]!r}; "
                    "expected true or false"
                )
            if flag in _TRUE:
                status = stricter(status, "unsubscribed")
        if self.subscribed_at is not None and cells[self.subscribed_at].lower() in _SAID_FALSE:
            # Only an explicit "false" says they left (some tools write a date here).
            status = stricter(status, "unsubscribed")
        if self.cleaned_at is not None and cells[self.cleaned_at]:
            status = stricter(status, "bounced")
        if self.unsub_means_left:
            at = self.dates[[c for _, c in self.dates].index("unsubscribed_at")][0]
            if cells[at]:
                status = stricter(status, "unsubscribed")
        return status


# Fields of other tools' columns -> the subscriber field they fill.
_REAL_FIELD = {
    "first_name": "name",
    "last_name": "name",
    "tags": "topics",
    "email_disabled": "status",
    "subscribed": "status",
    "cleaned_at": "status",
}


def _parse_row(line: int, columns: list[str], cells: list[str], check_dns: bool) -> ImportRow:
    """One row checked (``columns``: the field of each cell); raises ValueError with the
    reason if it is bad."""
    return _RowParser(columns, check_dns)(line, cells)


@dataclass
class _Chunk:
    """Up to ``CHUNK_ROWS`` data rows, checked: the good ones and the bad ones."""

    good: list[ImportRow]
    bad: list[RowProblem]
    rows: int  # data rows read, good and bad


class _RowChecker:
    """Checks rows one chunk at a time, remembering across chunks only what must be
    global: the address and first line of every good row, to report duplicates."""

    def __init__(
        self,
        records: _Records,
        name: str,
        check_dns: bool,
        overrides: dict[str, str] | None = None,
    ) -> None:
        self.records = iter(records)
        first = next(self.records, None)
        if first is None:
            raise CsvError(
                f"{name} is empty", hint="the first line must name the columns: email,..."
            )
        self.header = _header(first[2], name, overrides)
        self.parse = _RowParser(self.header, check_dns)
        # Address (as bytes: a third smaller than str for ASCII) -> line of its first good
        # row. The one structure that grows with the file: about 120 bytes a row.
        self.seen: dict[bytes, int] = {}

    def chunks(self, size: int = 0) -> Iterator[_Chunk]:
        """The file's data rows, checked, ``size`` (default ``CHUNK_ROWS``) at a time."""
        size = size or CHUNK_ROWS
        while True:
            chunk = self._check(itertools.islice(self.records, size))
            if not chunk.rows:
                return
            yield chunk

    def _check(self, records: Iterable[tuple[int, int, list[str]]]) -> _Chunk:
        parse, seen = self.parse, self.seen
        email_at = parse.email_at
        good: list[ImportRow] = []
        bad: list[RowProblem] = []
        rows = 0
        for line, end, cells in records:
            rows += 1
            try:
                row = parse(line, cells)
            except ValueError as exc:
                raw_email = cells[email_at].strip() if email_at < len(cells) else ""
                reason = str(exc)
                if end > line and isinstance(exc, InvalidNameError):
                    reason += f" (the row runs from line {line} to {end}: is a quote not closed?)"
                bad.append(RowProblem(line, raw_email, reason))
                continue
            first = seen.setdefault(row.email.encode(), line)
            if first != line:
                raw_email = cells[email_at].strip()
                bad.append(RowProblem(line, raw_email, f"duplicate of line {first}"))
            else:
                good.append(row)
        return _Chunk(good, bad, rows)


def read_rows(
    text: str, name: str, check_dns: bool = False, progress: ProgressFn | None = None
) -> tuple[list[ImportRow], list[RowProblem], int]:
    """Check every row of a CSV text: (good rows, bad rows with reasons, number of data
    rows). Nothing is written; :func:`import_csv` reads a file in chunks instead."""

    def lines() -> TextIO:
        return io.StringIO(text, newline="")

    checker = _RowChecker(_Records(lines(), name, lines), name, check_dns)
    good: list[ImportRow] = []
    bad: list[RowProblem] = []
    total = 0
    for chunk in checker.chunks():
        good += chunk.good
        bad += chunk.bad
        total += chunk.rows
        if progress:
            progress("checking", total, total)
    return good, bad, total


# --- importing ---------------------------------------------------------------------------


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
    #: ``Column Name=field`` pairs (``--map``), deciding over the known column names
    column_map: tuple[str, ...] = ()


def import_csv(
    store: Store,
    path: str | Path,
    options: ImportOptions = ImportOptions(),
    progress: ProgressFn | None = None,
    *,
    chunk_rows: int = 0,
) -> ImportReport:
    """Import subscribers from a CSV file; see the module docstring and
    :class:`ImportOptions` for the rules. ``chunk_rows`` (default ``CHUNK_ROWS``) is how
    many rows are checked and written at a time; it changes nothing but memory."""
    on_duplicate, atomic, dry_run = options.on_duplicate, options.atomic, options.dry_run
    if on_duplicate not in ("skip", "update"):
        raise CsvError(f"on_duplicate must be skip or update, not {on_duplicate!r}")
    path = Path(path)
    enc, codec_name = _codec(options.encoding)
    try:
        overrides = csv_columns.parse_overrides(options.column_map)
    except ColumnError as exc:
        raise CsvError(exc.message, hint=exc.hint) from None
    try:
        binary = path.open("rb")
        size = os.fstat(binary.fileno()).st_size
    except OSError as exc:
        raise CsvError(f"cannot read {path}: {exc.strerror}", hint="check the path") from None

    def reopen() -> TextIO:
        # Only for an error message, after the whole file was read once.
        return path.open(encoding=enc, newline="")

    report = ImportReport(dry_run=dry_run)
    rules = _ImportRules(report, on_duplicate, options.resubscribe, options.force_resubscribe)
    with io.TextIOWrapper(binary, encoding=enc, newline="") as text:
        try:
            records = _Records(text, path.name, reopen)
            checker = _RowChecker(records, path.name, options.check_dns, overrides)
            with subscribers_import.bulk_import(store, path.name, dry_run=dry_run) as bulk:
                for chunk in checker.chunks(chunk_rows):
                    report.rows += chunk.rows
                    report.errors += chunk.bad
                    # With --atomic the first bad row ends the writing; the rest of the
                    # file is still checked, so that every bad row is reported.
                    if not (atomic and report.errors):
                        changed = bulk.write(rules.decide(chunk.good, bulk.plan(chunk.good)))
                        rules.count_updates(changed)
                    if progress:
                        progress("importing", min(binary.tell(), size), size)
                if atomic and report.errors:
                    bulk.cancel()
        except UnicodeDecodeError:
            raise _decode_error(path, enc, codec_name) from None
    if atomic and report.errors:
        # Nothing was imported: the report says only what was wrong.
        report = ImportReport(
            rows=report.rows, errors=report.errors, dry_run=dry_run, atomic_aborted=True
        )
    report.mapping = list(checker.header.mapping)
    report.ignored_columns = list(checker.header.ignored)
    report.other_tags = dict(sorted(checker.parse.other_tags.items()))
    report.errors.sort(key=lambda p: p.line)
    report.skipped.sort(key=lambda p: p.line)
    return report


class _ImportRules:
    """What each row does, given who is already in the store (and who was erased)."""

    def __init__(
        self,
        report: ImportReport,
        on_duplicate: str,
        resubscribe: bool,
        force: bool = False,
    ) -> None:
        self.report = report
        self.update = on_duplicate == "update"
        self.resubscribe = resubscribe
        self.force = force
        self.resubscribing: set[int] = set()  # indexes into the chunk's ImportWrite.updates

    def decide(self, rows: list[ImportRow], plan: ImportPlan) -> ImportWrite:
        """What one chunk's rows do. The file's addresses are distinct (duplicates are
        rejected while reading), so no chunk's decisions depend on another's."""
        report = self.report
        self.resubscribing = set()
        new: list[tuple[ImportRow, str]] = []
        lift: list[str] = []
        updates: list[tuple[ImportRow, StatusChange | None, bool]] = []
        for row in rows:
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

    def count_updates(self, changed: list[bool]) -> None:
        """Count the chunk's updates (resubscriptions were counted when decided)."""
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
