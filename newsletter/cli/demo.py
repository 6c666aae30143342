"""``newsletter demo``."""

from __future__ import annotations

from pathlib import Path

import click

from newsletter.cli.base import console


@click.command()
@click.argument("folder", default="demo", type=click.Path(file_okay=False, path_type=Path))
def demo(folder: Path) -> None:
    """Run the main job on the embedded defaults in FOLDER (default: ./demo).

    Needs no servers: sets up a project with the sample issues, checks them and lists
    them. Safe to run again.

    \b
    Example:
        newsletter demo
        newsletter demo /tmp/try-newsletter
    """
    from rich.table import Table

    from newsletter.content.files import format_problem
    from newsletter.demo import list_issues, run_demo

    result = run_demo(folder)
    out = console()
    for step in result.steps:
        out.print(f"[green]✓[/green] {step}")
    errors = 0
    for item in result.checked:
        for problem in item.result.problems:
            out.print(format_problem(problem), markup=False)
        errors += len(item.result.errors)
    out.print(f"[green]✓[/green] checked {len(result.checked)} issue files: {errors} errors")
    table = Table(title="Issues", title_justify="left")
    for col in ("Month", "Status", "Subject", "Summaries", "Topics"):
        table.add_column(col)
    for info in list_issues(result.folder / "issues"):
        if info.issue:
            table.add_row(
                info.month,
                info.issue.status,
                info.issue.effective_subject,
                str(len(info.issue.summaries)),
                str(len(info.issue.topics)),
            )
    out.print(table)
    out.print(
        f"Project folder: {result.folder}\n"
        f"Try: cd {folder} && newsletter issue show "
        f"{max(i.result.issue.month for i in result.checked if i.result.issue)}"
    )
    if errors:
        raise SystemExit(1)
