"""``newsletter report``: the administrators' reports page."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from newsletter.cli.base import AppContext, console, esc, plural, print_json


@click.command()
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Start the report on this day (YYYY-MM-DD; default: a year ago).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("report.html"),
    show_default=True,
    help="The HTML file to write.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON instead.")
@click.pass_obj
def report(app: AppContext, since: dt.datetime | None, out: Path, as_json: bool) -> None:
    """Write the reports page: one HTML file with charts that opens offline.

    Subscribers over time by status, subscribers per topic (and the change since the
    last issue), for each issue its readers per variant, each summary's reach, skipped
    reasons, and the bounces, unsubscribes and topic removals after it, and sign-ups per
    week. --json prints the same figures instead of writing the page.

    \b
    Example:
        newsletter report --out report.html
        newsletter report --since 2026-01-01 --json | jq '.issues[-1].readers'
    """
    from newsletter.services import reports

    day = since.date() if since else None
    if as_json:
        print_json(reports.build(app.app(), day).to_dict())
        return
    result = reports.write_html(app.app(), out, day)
    from rich.table import Table

    table = Table(title=plural(len(result.issues), "issue"), title_justify="left")
    table.add_column("Issue", no_wrap=True)
    table.add_column("Readers", justify="right")
    table.add_column("Skipped", justify="right")
    table.add_column("Bounces", justify="right")
    table.add_column("Unsubscribes", justify="right")
    table.add_column("Topic removals", justify="right")
    for i in result.issues:
        table.add_row(
            i.month,
            str(i.readers),
            str(sum(i.skipped.values())),
            str(sum(i.bounces.values())),
            str(i.unsubscribes),
            str(sum(i.topic_removals.values())),
        )
    console().print(table)
    click.echo(f"wrote the report from {result.since.isoformat()} to {esc(out)}")
