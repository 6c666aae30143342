"""Shared pieces of the CLI: the app context, error translation, output helpers."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import click

from newsletter.errors import NewsletterError

if TYPE_CHECKING:
    from rich.console import Console

    from newsletter.config import Settings
    from newsletter.services import App


class NewsletterGroup(click.Group):
    """A click group that turns library errors into ``ClickException`` with a hint."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NewsletterError as exc:
            message = exc.message
            if exc.hint:
                message += f"\n  hint: {exc.hint}"
            raise click.ClickException(message) from None


@dataclass
class AppContext:
    """What every command gets through ``click.pass_obj``: the settings and the
    :class:`~newsletter.services.App`, both made on first use (``--help`` needs neither)."""

    config: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    _settings: Settings | None = None
    _app: App | None = None

    def settings(self) -> Settings:
        """The settings: defaults < newsletter.toml < environment < ``--set`` flags."""
        from newsletter.config import load_settings

        if self._settings is None:
            self._settings = load_settings(self.config, self.overrides)
        return self._settings

    def app(self) -> App:
        """The application the command calls services with (closed when the command ends)."""
        if self._app is None:
            from newsletter.services import App

            self._app = App(self.settings())
            click.get_current_context().find_root().call_on_close(self._app.close)
        return self._app


def console(stderr: bool = False, soft_wrap: bool = True) -> Console:
    """A rich console (imported on first use to keep start-up fast).

    Lines of text are soft-wrapped: rich never breaks them itself, so a command or a path
    in a message copies whole from the terminal (a pasted ``python3 -c ...`` that rich
    had cut in two would not run). Tables still fit their columns to the width.
    ``soft_wrap=False`` for panels and Markdown, which must be laid out to the width.
    """
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=soft_wrap)


def esc(text: object) -> str:
    """``text`` made safe to print through rich: square brackets are not read as markup.

    Everything that comes from outside the program's own strings goes through it before
    rich prints it: names, addresses, titles, subjects, paths, settings, SMTP replies and
    skip reasons (an SMTP reply holding ``[/bold]`` would otherwise stop the command).
    Control characters but line feed and tab are shown as ``\\xNN``.
    """
    from rich.markup import escape

    return escape(_CONTROL.sub(_visible, str(text)))


# Control characters other than line feed and tab, shown as \xNN rather than sent to the
# terminal (an ESC from a stored name could otherwise drive it).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _visible(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group()):02x}"


def print_json(data: Any) -> None:
    """Machine-readable output for ``--json``: plain JSON on stdout, nothing else. Times
    and dates are ISO 8601 (a time with its offset)."""
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=_json_value))


def _json_value(value: Any) -> Any:
    import datetime as dt

    if isinstance(value, dt.datetime):
        if value.tzinfo is None:  # the store's times are UTC
            value = value.replace(tzinfo=dt.UTC)
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def when(moment: Any, settings: Settings, *, seconds: bool = False) -> str:
    """A time shown to a person: in the configured ``timezone``, with its UTC offset;
    empty for None."""
    from newsletter.rules.schedules import shown_time

    if moment is None:
        return ""
    return shown_time(moment, settings.timezone, seconds=seconds)


def plural(n: int, noun: str, plural_form: str | None = None) -> str:
    """``n`` and the noun in the right number: "1 row", "2 rows", "1 summary", "3 summaries"."""
    if n == 1:
        return f"{n} {noun}"
    if plural_form is None:
        plural_form = (
            noun[:-1] + "ies" if noun.endswith("y") and noun[-2:-1] not in "aeiou" else noun + "s"
        )
    return f"{n} {plural_form}"


def short_times(moments: list[Any], settings: Settings) -> tuple[str, list[str]]:
    """Times for a table column: ``12-01 09:03`` in the configured timezone, and the
    column's note naming the zone and offset (``Europe/Paris +01:00``). When the rows
    straddle a change of offset each cell carries its own. None gives an empty cell."""
    from newsletter.rules.schedules import shown_time

    full = [shown_time(m, settings.timezone) if m is not None else "" for m in moments]
    offsets = {f.rsplit(" ", 1)[1] for f in full if f}
    if len(offsets) > 1:
        return settings.timezone, [f[5:] for f in full]
    note = settings.timezone + (f" {offsets.pop()}" if offsets else "")
    return note, [f[5:].rsplit(" ", 1)[0] if f else "" for f in full]


def delivery_state(status: str, attempts: int) -> str:
    """A delivery's status as a person reads it: a pending row is "queued" until it was
    tried once, then "retrying"."""
    if status == "pending":
        return "retrying" if attempts else "queued"
    return status


def log_to_stderr() -> None:
    """Log the program's own messages (INFO and up) to standard error, for the long
    running commands; the libraries' chatter (Alembic's "Context impl SQLiteImpl.") only
    from WARNING up."""
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)


def print_audience(
    out: Console,
    title: str,
    histogram: dict[int, int],
    titles: tuple[str, ...] | list[str],
    per_summary: tuple[int, ...] | list[int],
    labels: tuple[str, str] = ("Summaries they get", "Readers"),
) -> None:
    """The two tables of an issue's audience: readers by how many summaries they get,
    and readers per summary (``labels``: the count's and the readers' column names)."""
    from rich.table import Table

    count_label, who = labels
    table = Table(title=title, title_justify="left")
    table.add_column(count_label, justify="right")
    table.add_column(who, justify="right")
    for k, n in histogram.items():
        table.add_row(str(k), str(n))
    out.print(table)
    per = Table(title="Per summary", title_justify="left")
    per.add_column("Summary", overflow="fold")
    per.add_column(who, justify="right")
    for summary, n in zip(titles, per_summary, strict=True):
        per.add_row(esc(summary), str(n))
    out.print(per)
