"""``newsletter issue import-archive``: bring the blog's back catalogue into issues/."""

from __future__ import annotations

from pathlib import Path

import click

from newsletter.cli.base import AppContext, console, print_json

NO_TOPIC = ("all", "-", "none")


@click.command(name="import-archive")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--into",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder to write the issue files to (default: the issues folder).",
)
@click.option(
    "--topic",
    "topics",
    multiple=True,
    metavar="NAME",
    help="The topic the page is filtered by, added to all its summaries. Give it once per "
    "FILE, in the same order ('all' for a page without a filter).",
)
@click.option("--dry-run", is_flag=True, help="Show what would be written; write nothing.")
@click.option("--force", is_flag=True, help="Overwrite existing issue files.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def import_archive_cmd(
    app: AppContext,
    files: tuple[Path, ...],
    into: Path | None,
    topics: tuple[str, ...],
    dry_run: bool,
    force: bool,
    as_json: bool,
) -> None:
    """Turn plain-text copies of the blog's archive pages into issue files.

    Reads each FILE (a page: header, then months newest first, each with summaries),
    merges the pages (a summary on several pages is imported once), and writes one
    issues/YYYY-MM.md per month marked 'status: published' so it is never sent. Topics
    and a research type guessed from phrase rules are written as 'Topics-Suggested:' and
    'Research-Suggested:' for you to confirm (the report shows why each was guessed;
    'newsletter issue check' lists them until accepted). Existing files are kept unless
    --force. Lines that cannot be placed are listed with page and line number; the exit
    code is 1 if any were left out.

    --topic gives each page's topic filter: once per FILE, in file order; use 'all' for a
    page showing all topics.

    \b
    Example:
        newsletter issue import-archive --dry-run archive/all.txt
        newsletter issue import-archive archive/all.txt archive/alliance.txt \\
            --topic all --topic "Alliance and Therapeutic Relationship"
    """
    from newsletter.services import imports

    if topics and len(topics) != len(files):
        raise click.UsageError(
            f"{len(topics)} --topic for {len(files)} FILE(s): give --topic once per FILE, in "
            "the same order (use '--topic all' for a page without a topic filter)"
        )
    per_file = [None if t.strip().lower() in NO_TOPIC else t for t in topics] or [None] * len(files)
    report = imports.import_archive(
        app.app(), list(zip(files, per_file, strict=True)), into, dry_run=dry_run, force=force
    )
    if as_json:
        print_json(imports.archive_report_to_dict(report))
    else:
        _print_report(report)
    if report.errors:
        raise SystemExit(1)


def _print_report(report) -> None:
    from rich.markup import escape
    from rich.table import Table

    out = console()
    if report.dry_run:
        for f in report.files:
            out.rule(f"{f.path} ({f.action})")
            out.print(escape(f.text), end="")
    files = Table(
        title="Issue files" + (" (dry run: nothing written)" if report.dry_run else ""),
        title_justify="left",
    )
    for col in ("Month", "File", "Action", "Summaries"):
        files.add_column(col, overflow="fold")
    verbs = {
        "write": "would write" if report.dry_run else "written",
        "overwrite": "would overwrite" if report.dry_run else "overwritten",
        "skip": "skipped: exists (--force to overwrite)",
        "invalid": "[red]not written: invalid[/red]",
    }
    for f in report.files:
        titles = "\n".join(escape(s.entry.title) for s in f.summaries)
        files.add_row(f.month, escape(str(f.path)), verbs.get(f.action, f.action), titles)
    out.print(files)

    # Why each summary got its topics: the evidence, so the author can judge the guesses.
    out.print(
        "[bold]Topics[/bold] (page filter in bold, the rest suggested from the phrases "
        "shown; written as 'Topics-Suggested:' and 'Research-Suggested:' to confirm)"
    )
    for s in report.summaries:
        t = s.topics
        out.print(f"{s.entry.month}  {escape(s.entry.title)}")
        for topic in t.page_topics:
            out.print(f"    [bold]{escape(topic.name)}[/bold] (page filter)")
        for guess in t.guesses:
            if guess.target not in t.page_topics:
                out.print(f"    {escape(guess.target.name)} ← {escape(guess.explain())}")
        if t.fallback:
            out.print("    [yellow]Miscellaneous (nothing matched)[/yellow]")
        if t.research_guess:
            name = t.research_guess.target.name
            out.print(f"    research type: {escape(name)} ← {escape(t.research_guess.explain())}")

    for p in report.problems:
        colour = "red" if p.severity == "error" else "yellow"
        out.print(f"[{colour}]{escape(p.format())}[/{colour}]")
        if p.hint:
            out.print(f"    hint: {escape(p.hint)}")

    counts = [
        ("pages read", len(report.pages)),
        ("months", len(report.files)),
        ("summaries", len(report.summaries)),
        ("duplicates merged", report.duplicates),
        ("without citation", len(report.without_citation)),
        ("contact lines left out", sum(len(p.contacts) for p in report.pages)),
        (
            "files " + ("to write" if report.dry_run else "written"),
            len(report.files_with("write", "overwrite")),
        ),
        ("files skipped", len(report.files_with("skip", "invalid"))),
        ("lines or summaries not imported", len(report.errors)),
    ]
    out.print(", ".join(f"{label}: {n}" for label, n in counts))
