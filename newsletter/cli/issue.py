"""``newsletter issue``: the author's commands."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from newsletter.cli.base import (
    AppContext,
    console,
    esc,
    plural,
    print_audience,
    print_json,
    when,
)


@click.group()
def issue() -> None:
    """Write, check, list and read the monthly issues in issues/.

    \b
    Example:
        newsletter issue new 2026-12
        newsletter issue check issues/2026-12.md
    """


@issue.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--strict", is_flag=True, help="Fail on warnings too.")
@click.pass_obj
def check(app: AppContext, paths: tuple[Path, ...], strict: bool) -> None:
    """Check issue files and report every problem as path:line.

    Without PATHS, checks every file in the issues folder. Exits 1 if any file has an
    error (or, with --strict, a warning).

    \b
    Example:
        newsletter issue check
        newsletter issue check --strict issues/2026-12.md
    """
    from newsletter.content.files import format_problem
    from newsletter.services import issues

    checked = issues.check(app.app(), paths)
    errors = warnings = 0
    for item in checked:
        for problem in item.result.problems:
            click.echo(format_problem(problem), err=False)
        errors += len(item.result.errors)
        warnings += len(item.result.warnings)
    files = len(checked)
    bad = sum(1 for c in checked if c.result.errors)
    summary = (
        f"{files} file{'s' if files != 1 else ''} checked: "
        f"{errors} error{'s' if errors != 1 else ''}, "
        f"{warnings} warning{'s' if warnings != 1 else ''}"
    )
    if bad:
        summary += f" ({bad} file{'s' if bad != 1 else ''} with errors)"
    click.echo(summary, err=True)
    if errors or (strict and warnings):
        raise SystemExit(1)


@issue.command(name="accept-suggestions")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--all", "every_file", is_flag=True, help="Every file of the issues folder.")
@click.pass_obj
def accept_suggestions(app: AppContext, paths: tuple[Path, ...], every_file: bool) -> None:
    """Confirm the topics and research types the archive import suggested.

    In each file (a month or a path; --all for the whole issues folder), every
    'Topics-Suggested:' line becomes 'Topics:' (joined to an existing 'Topics:' line) and
    'Research-Suggested:' becomes 'Research:'. Read the summaries and correct the
    suggestions first: 'newsletter issue check' lists them. Nothing else changes.

    \b
    Example:
        newsletter issue accept-suggestions 2019-02
        newsletter issue accept-suggestions --all
    """
    from newsletter.services import issues

    if not paths and not every_file:
        raise click.UsageError("name a month or a file, or use --all")
    done = issues.accept_suggestions(app.app(), paths, every_file=every_file)
    changed = [d for d in done if d.lines]
    for d in changed:
        where = plural(d.summaries, "summary")
        click.echo(f"{d.path}: accepted {plural(d.lines, 'suggestion')} in {where}")
    if not changed:
        click.echo("nothing to accept: no 'Topics-Suggested:' or 'Research-Suggested:' lines")
    else:
        click.echo(f"{plural(len(changed), 'file')} changed", err=True)


@issue.command()
@click.argument("month")
@click.pass_obj
def new(app: AppContext, month: str) -> None:
    """Create issues/MONTH.md with a commented skeleton (never overwrites).

    \b
    Example:
        newsletter issue new 2026-12
    """
    from newsletter.services import issues

    path = issues.new_issue(app.app(), month)
    click.echo(f"wrote {path}\nedit it, then run: newsletter issue check {month}")


@issue.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
def list_(app: AppContext, as_json: bool) -> None:
    """List the issues: month, subject, status, summaries and topics.

    \b
    Example:
        newsletter issue list
        newsletter issue list --json | jq '.[0].subject'
    """
    from newsletter.services import issues

    listing = issues.list_issues(app.app())
    # Scheduled and sent status come from the store; without one, file status only.
    infos, states = listing.issues, listing.states
    rows: list[dict[str, Any]] = []
    for info in infos:
        i = info.issue
        state = states.get(info.month, issues.IssueState())
        rows.append(
            {
                "month": info.month,
                "path": str(info.path),
                "valid": i is not None,
                "errors": info.errors,
                "warnings": info.warnings,
                "subject": i.effective_subject if i else None,
                "status": i.status if i else "invalid",
                "summaries": len(i.summaries) if i else None,
                "topics": [t.slug for t in i.topics] if i else [],
                "scheduled": state.scheduled.isoformat() if state.scheduled else None,
                "scheduled_by": ("monthly" if state.monthly else "once")
                if state.scheduled
                else None,
                "send_status": state.send_status,
                "sent": state.sent,
            }
        )
    if as_json:
        print_json(rows)
        return
    from rich.table import Table

    table = Table(title=plural(len(rows), "issue"), title_justify="left")
    table.add_column("Month", no_wrap=True)
    table.add_column("Status", no_wrap=True)
    table.add_column("Subject")
    table.add_column("Summaries", no_wrap=True)
    if states:
        table.add_column("Scheduled")
    settings = app.settings()
    invalid = []
    for info, row in zip(infos, rows, strict=True):
        state = states.get(info.month, issues.IssueState())
        if info.issue is None:
            invalid.append(info)
            errors = plural(info.errors, "error")
            table.add_row(row["month"], "[red]invalid[/red]", errors, "", *([""] if states else []))
            continue
        status = row["status"]
        if row["send_status"]:
            status += f"\n{row['send_status']}, {row['sent']} sent"
        summaries = f"{row['summaries']} ({plural(len(row['topics']), 'topic')})"
        extra = []
        if states:
            scheduled = when(state.scheduled, settings)
            extra = [scheduled + (" (monthly)" if state.monthly else "")]
        table.add_row(row["month"], status, esc(row["subject"]), summaries, *extra)
    console().print(table)
    for info in invalid:
        console().print(f"{info.month}: run `newsletter issue check {esc(info.path.name)}`")


@issue.command()
@click.argument("month")
@click.option("--json", "as_json", is_flag=True, help="Print the parsed issue as JSON.")
@click.pass_obj
def show(app: AppContext, month: str, as_json: bool) -> None:
    """Print one parsed issue readably.

    MONTH is YYYY-MM (the file issues/YYYY-MM.md) or a path.

    \b
    Example:
        newsletter issue show 2026-11
    """
    from newsletter.services import issues

    i = issues.load_issue(app.app(), month)
    if as_json:
        print_json(issue_to_dict(i))
        return
    from rich.panel import Panel

    out = console(soft_wrap=False)  # Markdown and panels are laid out to the width
    out.print(f"[bold]{i.month_name}[/bold]  ({i.status})  {esc(i.path or '')}", soft_wrap=True)
    out.print(
        f"Subject: {esc(i.effective_subject)}" + ("" if i.subject else "  [dim](default)[/dim]")
    )
    if i.intro:
        out.print(_markdown(i.intro))
    for n, s in enumerate(i.summaries, 1):
        lines = [f"[bold]{n}. {esc(s.title)}[/bold]"]
        if s.citation:
            lines.append(f"[italic]{esc(s.citation)}[/italic]")
        confirmed = [t.name for t in s.topics if t not in s.suggested_topics]
        if confirmed:
            lines.append("Topics: " + esc("; ".join(confirmed)))
        if s.suggested_topics:
            guessed = "; ".join(t.name for t in s.suggested_topics)
            lines.append(f"Topics-Suggested: {esc(guessed)}  [yellow](not confirmed)[/yellow]")
        if s.research:
            key = "Research-Suggested" if s.research_suggested else "Research"
            unsure = "  [yellow](not confirmed)[/yellow]" if s.research_suggested else ""
            lines.append(f"{key}: {esc(s.research.name)}{unsure}")
        if s.link:
            lines.append(f"Link: {esc(s.link)}")
        out.print(Panel("\n".join(lines), expand=True))
        out.print(_markdown(s.body))
        out.print("[bold]Practice Implications[/bold]")
        out.print(_markdown(s.implications))
        out.print()


def _markdown(text: str) -> Any:
    """Issue Markdown for the terminal, parsed as the email parses it: raw HTML is shown
    literally, as text (rich's own parser would drop it without a trace)."""
    from rich.markdown import Markdown

    from newsletter.content.markdown import markdown_parser

    shown = Markdown(text)
    shown.parsed = markdown_parser().parse(text)
    return shown


def issue_to_dict(i) -> dict:
    """A JSON-able view of an Issue."""
    return {
        "month": i.month,
        "status": i.status,
        "subject": i.effective_subject,
        "intro": i.intro,
        "summaries": [
            {
                "key": s.key,
                "title": s.title,
                "citation": s.citation,
                "topics": [{"slug": t.slug, "name": t.name} for t in s.topics],
                "research": s.research.slug if s.research else None,
                "suggested_topics": [t.slug for t in s.suggested_topics],
                "research_suggested": s.research_suggested,
                "link": s.link,
                "body": s.body,
                "implications": s.implications,
            }
            for s in i.summaries
        ],
    }


@issue.command()
@click.argument("month")
@click.option(
    "--months",
    type=int,
    default=3,
    show_default=True,
    help="Count readers sent no summary for this many months.",
)
@click.option("--list", "show_list", is_flag=True, help="Also list those readers' addresses.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
def audience(app: AppContext, month: str, months: int, show_list: bool, as_json: bool) -> None:
    """Plan an issue's audience before sending it (changes nothing).

    With the current subscribers: how many readers would get 0, 1, 2, 3 ... summaries;
    the topics readers chose that no summary of MONTH covers (and how many chose each);
    and how many readers were sent no summary in the last --months months (--list shows
    their addresses: people a teaser of past summaries on their topics could reach).

    \b
    Example:
        newsletter issue audience 2026-12
        newsletter issue audience 2026-12 --months 6 --list
    """
    from rich.table import Table

    from newsletter.content.taxonomy import topic_names
    from newsletter.rules.months import month_name
    from newsletter.services import reports

    plan = reports.audience(app.app(), month, months)
    if as_json:
        print_json(plan.to_dict(addresses=show_list))
        return
    out = console()
    print_audience(
        out,
        f"{month_name(plan.month)}: {plural(plan.receiving, 'receiving reader')}",
        plan.histogram,
        plan.titles,
        plan.per_summary,
    )
    if plan.uncovered:
        names = topic_names(plan.uncovered)
        gaps = Table(
            title=f"{plural(len(plan.uncovered), 'chosen topic')} no summary covers",
            title_justify="left",
        )
        gaps.add_column("Topic", overflow="fold")
        gaps.add_column("Readers who chose it", justify="right")
        for name, n in zip(names, plan.uncovered.values(), strict=True):
            gaps.add_row(esc(name), str(n))
        out.print(gaps)
    else:
        out.print("Every topic readers chose is covered by a summary.")
    quiet = len(plan.without_summaries)
    out.print(
        f"{plural(quiet, 'reader')} sent no summary since {plan.since.isoformat()} "
        f"({plural(plan.months, 'month')})"
        + (": a teaser of past summaries on their topics could reach them" if quiet else "")
    )
    if show_list:
        for address in plan.without_summaries:
            click.echo(address)
