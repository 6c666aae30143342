"""``newsletter subscribers``: the administrator's commands for the subscriber list."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from newsletter.cli.base import (
    AppContext,
    console,
    delivery_state,
    esc,
    plural,
    print_audience,
    print_json,
    short_times,
    when,
)
from newsletter.rules.statuses import SUBSCRIBER_STATUSES

if TYPE_CHECKING:
    from rich.table import Table

    from newsletter.store.views import SubscriberView


def _topic_names(view: SubscriberView) -> str:
    from newsletter.content.taxonomy import topic_names

    if view.all_topics:
        return "all topics"
    return "; ".join(topic_names(view.topics)) or "(none)"


def _dated_table(title: str, zone: str) -> Table:
    """A table whose short times are in ``zone`` (said in its caption)."""
    from rich.table import Table  # rich's tables only when a command prints one

    return Table(
        title=title, title_justify="left", caption=f"times in {zone}", caption_justify="left"
    )


def _say(view: SubscriberView, what: str) -> None:
    console().print(f"{esc(view.email)}: {what}")


@click.group()
def subscribers() -> None:
    """Manage the subscriber list: add, list, change topics, pause, import, export, erase.

    \b
    Example:
        newsletter subscribers add ann@example.org --name "Ann Lee" --topics "CBT; Alliance"
        newsletter subscribers list --topic cbt
    """


@subscribers.command()
@click.argument("email")
@click.option("--name", default="", help="The person's name, used in the greeting.")
@click.option("--topics", default="", help='Topics, ";"-separated slugs or names.')
@click.option("--all-topics", is_flag=True, help="Every topic, including future ones.")
@click.option("--pending", is_flag=True, help="Add as pending (not sent to until confirmed).")
@click.option(
    "--resubscribe",
    is_flag=True,
    help="Bring back someone who unsubscribed or was erased (only if they asked).",
)
@click.option("--consent-version", default=None, help="Version of the consent text they saw.")
@click.pass_obj
def add(
    app: AppContext,
    email: str,
    name: str,
    topics: str,
    all_topics: bool,
    pending: bool,
    resubscribe: bool,
    consent_version: str | None,
) -> None:
    """Add one subscriber (active, or --pending). Without --topics: every topic.

    \b
    Example:
        newsletter subscribers add ann@example.org --name "Ann Lee" --topics "CBT; Alliance"
        newsletter subscribers add bo@example.org --all-topics
    """
    from newsletter.services import subscribers as service

    if topics.strip() and all_topics:
        raise click.UsageError("give --topics or --all-topics, not both")
    view = service.add_subscriber(
        app.app(),
        email,
        name=name,
        topics=topics,
        all_topics=True if all_topics else None,
        pending=pending,
        resubscribe=resubscribe,
        consent_version=consent_version,
    )
    _say(view, f"added as {view.status}, topics: {_topic_names(view)}")


@subscribers.command(name="list")
@click.option("--topic", default=None, help="Only people who get this topic (incl. all-topics).")
@click.option(
    "--status", type=click.Choice(SUBSCRIBER_STATUSES), default=None, help="Only this status."
)
@click.option("--search", default=None, help="Part of the address or name, any case.")
@click.option("--page", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--page-size", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
def list_(
    app: AppContext,
    topic: str | None,
    status: str | None,
    search: str | None,
    page: int,
    page_size: int,
    as_json: bool,
) -> None:
    """List subscribers in address order, a page at a time.

    \b
    Example:
        newsletter subscribers list --status active --topic "Alliance"
        newsletter subscribers list --search example.org --page 2 --json
    """
    from newsletter.services import subscribers as service

    result = service.list_subscribers(app.app(), topic, status, search, page, page_size)
    if as_json:
        print_json(
            {
                "total": result.total,
                "page": result.page,
                "pages": result.pages,
                "page_size": result.page_size,
                "items": [v.to_dict() for v in result.items],
            }
        )
        return
    from rich.table import Table

    settings = app.settings()
    from rich import box

    table = Table(
        title=f"{plural(result.total, 'subscriber')} (page {result.page} of {result.pages})",
        title_justify="left",
        box=box.SIMPLE_HEAD,  # no side borders: their room goes to the addresses
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
    )
    # The name sits under the address, so the address has the room: beside it, the two
    # would share the width and an address would be cut mid-word at 80 columns. Only an
    # address too long for the whole width folds.
    table.add_column("Email [dim]and name[/dim]", overflow="fold")
    table.add_column("Status", no_wrap=True)
    table.add_column("Topics", no_wrap=True)
    table.add_column("Since", no_wrap=True)
    for v in result.items:
        topics = "all" if v.all_topics else str(len(v.topics))
        status = v.status + (f"\nto {v.paused_until}" if v.paused_until else "")
        since = when(v.created_at, settings)[:10]  # the date in the configured timezone
        person = esc(v.email) + (f"\n[dim]  {esc(v.name)}[/dim]" if v.name else "")
        table.add_row(person, status, topics, since)
    console().print(table)


@subscribers.command()
@click.argument("email")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
def show(app: AppContext, email: str, as_json: bool) -> None:
    """Show one subscriber: profile, topics, consent history and deliveries.

    \b
    Example:
        newsletter subscribers show ann@example.org
    """
    from dataclasses import asdict

    from newsletter.services import subscribers as service

    record = service.subscriber_record(app.app(), email)
    view, deliveries = record.subscriber, record.deliveries
    if as_json:
        data: dict[str, Any] = view.to_dict()
        data["consent_log"] = [vars(e) for e in view.events]
        data["deliveries"] = [{**asdict(d), "variant": d.variant} for d in deliveries]
        print_json(data)
        return
    out = console()
    out.print(f"[bold]{esc(view.email)}[/bold]  {esc(view.name)}")
    status = view.status + (f" until {view.paused_until}" if view.paused_until else "")
    out.print(f"Status:     {status}")
    out.print(f"Source:     {view.source}")
    settings = app.settings()
    out.print(f"Subscribed: {when(view.created_at, settings)}")
    if view.confirmed_at:
        out.print(f"Confirmed:  {when(view.confirmed_at, settings)}")
    if view.unsubscribed_at:
        out.print(f"Left:       {when(view.unsubscribed_at, settings)}")
    out.print(f"Topics:     {esc(_topic_names(view))}")
    zone, times = short_times([e.at for e in view.events], settings)
    table = _dated_table("Consent history", zone)
    for col in ("When", "Event", "Source", "IP", "Consent text"):
        table.add_column(col, no_wrap=True)
    table.add_column("Detail")
    for e, time in zip(view.events, times, strict=True):
        table.add_row(
            time,
            e.event,
            e.source,
            esc(e.ip or ""),
            esc(e.consent_version or ""),
            esc(e.detail or ""),
        )
    out.print(table)
    zone, times = short_times([d.sent_at for d in deliveries], settings)
    table = _dated_table("Deliveries", zone)
    for col in ("Issue", "Status", "Variant", "Tries", "Sent"):
        table.add_column(col, no_wrap=True)
    table.add_column("Reply or reason", overflow="fold")
    for d, time in zip(deliveries, times, strict=True):
        table.add_row(
            d.month,
            delivery_state(d.status, d.attempts),
            d.variant or "-",
            str(d.attempts),
            time,
            # A sent row's reply ("250 ok") says nothing more than its status.
            esc(d.skip_reason or (d.last_reply if d.status != "sent" else "") or ""),
        )
    out.print(table if deliveries else "Deliveries: none yet")


def _topics_command(name: str, doc: str, func_name: str) -> click.Command:
    @click.command(name=name, help=doc)
    @click.argument("email")
    @click.argument("topics", required=name != "set-topics", default="")
    @click.pass_obj
    def command(app: AppContext, email: str, topics: str, **kwargs: Any) -> None:
        from newsletter.services import subscribers as service

        view = getattr(service, func_name)(app.app(), email, topics, **kwargs)
        _say(view, f"topics now: {_topic_names(view)}")

    return command


add_topics_cmd = _topics_command(
    "add-topics",
    """Add topics to a subscriber's choice.

    TOPICS is a ";"-separated list of slugs or names.

    \b
    Example:
        newsletter subscribers add-topics ann@example.org "Attachment; Dropout"
    """,
    "add_topics",
)
remove_topics_cmd = _topics_command(
    "remove-topics",
    """Remove topics from a subscriber's choice.

    \b
    Example:
        newsletter subscribers remove-topics ann@example.org "Attachment"
    """,
    "remove_topics",
)
subscribers.add_command(add_topics_cmd)
subscribers.add_command(remove_topics_cmd)


@subscribers.command(name="set-topics")
@click.argument("email")
@click.argument("topics", required=False, default="")
@click.option("--all-topics", is_flag=True, help="Every topic, including future ones.")
@click.pass_obj
def set_topics_cmd(app: AppContext, email: str, topics: str, all_topics: bool) -> None:
    """Replace a subscriber's topics (TOPICS: ";"-separated slugs or names).

    \b
    Example:
        newsletter subscribers set-topics ann@example.org "CBT; Alliance"
        newsletter subscribers set-topics ann@example.org --all-topics
    """
    from newsletter.services import subscribers as service

    if topics.strip() and all_topics:
        raise click.UsageError("give TOPICS or --all-topics, not both")
    view = service.set_topics(app.app(), email, topics, all_topics=all_topics)
    _say(view, f"topics now: {_topic_names(view)}")


@subscribers.command(name="rename")
@click.argument("email")
@click.option("--name", required=True, help='The new name ("" for none), used in the greeting.')
@click.pass_obj
def rename_cmd(app: AppContext, email: str, name: str) -> None:
    """Change a subscriber's name (logged in their consent history).

    \b
    Example:
        newsletter subscribers rename ann@example.org --name "Ann Lee-Smith"
    """
    from newsletter.services import subscribers as service

    view = service.rename(app.app(), email, name)
    _say(view, f"name now: {esc(view.name) or '(none)'}")


@subscribers.command(name="change-email")
@click.argument("old")
@click.argument("new")
@click.pass_obj
def change_email_cmd(app: AppContext, old: str, new: str) -> None:
    """Move a subscriber to a new address, keeping topics, status and history (logged).

    Refused when NEW belongs to someone else or is on the suppression list.

    \b
    Example:
        newsletter subscribers change-email ann@example.org ann.lee@example.net
    """
    from newsletter.services import subscribers as service

    view = service.change_email(app.app(), old, new)
    console().print(f"{esc(old.strip())}: address changed to {esc(view.email)}")


@subscribers.command(name="pause")
@click.argument("email")
@click.option(
    "--until",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Resume by itself on this date (YYYY-MM-DD); without it, until `resume`.",
)
@click.pass_obj
def pause_cmd(app: AppContext, email: str, until: dt.datetime | None) -> None:
    """Stop sending to a subscriber for a while.

    \b
    Example:
        newsletter subscribers pause ann@example.org --until 2027-01-31
    """
    from newsletter.services import subscribers as service

    view = service.pause(app.app(), email, until.date() if until else None)
    _say(view, f"paused {'until ' + str(view.paused_until) if view.paused_until else ''}".strip())


@subscribers.command(name="resume")
@click.argument("email")
@click.pass_obj
def resume_cmd(app: AppContext, email: str) -> None:
    """Start sending again to a paused subscriber.

    \b
    Example:
        newsletter subscribers resume ann@example.org
    """
    from newsletter.services import subscribers as service

    view = service.resume(app.app(), email)
    _say(view, "active again")


@subscribers.command(name="unsubscribe")
@click.argument("email")
@click.pass_obj
def unsubscribe_cmd(app: AppContext, email: str) -> None:
    """Unsubscribe someone (kept in the store, never sent to again).

    \b
    Example:
        newsletter subscribers unsubscribe ann@example.org
    """
    from newsletter.services import subscribers as service

    view, changed = service.unsubscribe(app.app(), email)
    _say(view, "unsubscribed" if changed else "was already unsubscribed")


@subscribers.command(name="reactivate")
@click.argument("email")
@click.pass_obj
def reactivate_cmd(app: AppContext, email: str) -> None:
    """Send to a bounced address again (e.g. its mailbox works again); logged.

    \b
    Example:
        newsletter subscribers reactivate ann@example.org
    """
    from newsletter.services import bounces as service

    view = service.reactivate(app.app(), email)
    _say(view, "active again (reactivated after bounces)")


@subscribers.command(name="erase")
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def erase_cmd(app: AppContext, email: str, yes: bool) -> None:
    """Erase a person: their data and consent history are deleted.

    Only a salted hash of the address stays, on a suppression list, so that a later
    import does not add them back (unless --resubscribe). Cannot be undone.

    \b
    Example:
        newsletter subscribers erase ann@example.org --yes
    """
    from newsletter.services import subscribers as service

    if not yes:
        click.confirm(f"Erase {email} and their whole history? This cannot be undone", abort=True)
    done = service.erase(app.app(), email)
    click.echo(f"{email}: erased (only a salted hash remains on the suppression list)")
    if not done.log_cleared:
        click.echo(
            "warning: another process (newsletter serve, a send, the scheduler?) is reading "
            "the database, so old copies of the erased data stay in its write-ahead log "
            "file (-wal) until every process using the database has stopped; restart "
            "them (e.g. `newsletter serve`) to clear it now",
            err=True,
        )


@subscribers.command(name="import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--encoding", default=None, help="The file's encoding (default UTF-8).")
@click.option(
    "--on-duplicate",
    type=click.Choice(["skip", "update"]),
    default="skip",
    show_default=True,
    help="For addresses already in the store: leave them, or apply the row.",
)
@click.option("--atomic", is_flag=True, help="Import nothing if any row is bad.")
@click.option("--dry-run", is_flag=True, help="Check and count, change nothing.")
@click.option(
    "--resubscribe",
    is_flag=True,
    help="Bring back unsubscribed and erased people in the file (only if they asked).",
)
@click.option(
    "--force-resubscribe",
    is_flag=True,
    help="Also bring back bounced addresses and people who reported the list as spam "
    "(logged in their history; only if they asked).",
)
@click.option("--check-dns", is_flag=True, help="Also check that each domain receives mail.")
@click.option(
    "--map",
    "column_map",
    multiple=True,
    metavar='"COLUMN=FIELD"',
    help="Fill FIELD from COLUMN (FIELD 'ignore' drops it); repeatable.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def import_cmd(
    app: AppContext,
    file: Path,
    encoding: str | None,
    on_duplicate: str,
    atomic: bool,
    dry_run: bool,
    resubscribe: bool,
    force_resubscribe: bool,
    check_dns: bool,
    column_map: tuple[str, ...],
    as_json: bool,
) -> None:
    """Import subscribers from a CSV file with a header row.

    Columns (any case): email (required), name, topics (";"-separated slugs or names, or
    "all"), status, and the other columns `export` writes. The export columns of
    Mailchimp, listmonk, Substack, Buttondown and Mailman 3 are recognised ("Email
    Address", "First Name", TAGS, subscriber_type, ...; see the README); other columns
    are listed and ignored; --map decides any column. A row its old tool marks as
    unsubscribed, cleaned or bounced is imported as unsubscribed or bounced, never
    active. Comma, semicolon or tab separated; UTF-8 with or without BOM. Every bad row
    is listed with its line number and reason and the good rows are imported, and the
    exit code is 1 if any row was rejected (importing the fixed file again adds just
    those); with --atomic a bad row means nothing is imported. A row without topics gets
    every topic.

    \b
    Example:
        newsletter subscribers import subscribers/list.csv --dry-run
        newsletter subscribers import list.csv --on-duplicate update --encoding cp1252
        newsletter subscribers import mailchimp.csv --map "Areas of interest=tags"
    """
    from newsletter.services import imports

    options = imports.ImportOptions(
        encoding,
        on_duplicate,
        atomic,
        dry_run,
        resubscribe,
        check_dns,
        force_resubscribe=force_resubscribe,
        column_map=column_map,
    )
    with _progress(file) as progress:
        report = imports.import_subscribers(app.app(), file, options, progress)
    if as_json:
        print_json(report.to_dict())
    else:
        _print_report(file, report)
    if report.atomic_aborted or report.errors:
        raise SystemExit(1)


def _print_mapping(report: Any) -> None:
    """The columns used and the columns ignored, once, before the rows."""
    out = console()
    used = ", ".join(
        esc(column) if column == field else f"{esc(column)} → {field}"
        for column, field in report.mapping
    )
    out.print(f"columns: {used}")
    if report.ignored_columns:
        out.print(f"ignored columns: {esc(', '.join(report.ignored_columns))}")
    if report.other_tags:
        shown = ", ".join(f"{tag} ({n})" for tag, n in list(report.other_tags.items())[:20])
        more = len(report.other_tags) - 20
        out.print(
            f"tags that are not topics, left out: {esc(shown)}"
            + (f" and {more} more" if more > 0 else "")
        )


def _print_report(file: Path, report: Any) -> None:
    out = console()
    _print_mapping(report)
    for title, problems in (("Rejected rows", report.errors), ("Skipped rows", report.skipped)):
        if not problems:
            continue
        from rich.table import Table

        table = Table(title=f"{title}: {len(problems)}", title_justify="left")
        table.add_column("Line", justify="right", no_wrap=True)
        # The reason under the address: the address keeps the width and stays whole.
        table.add_column("Email [dim]and reason[/dim]", overflow="fold")
        for p in problems[:200]:
            email = esc(p.email) if p.email else "[dim](no address)[/dim]"
            table.add_row(str(p.line), f"{email}\n[dim]  {esc(p.reason)}[/dim]")
        out.print(table)
        if len(problems) > 200:
            out.print(f"... and {len(problems) - 200} more (use --json to see all)")
    prefix = "dry run, nothing changed: " if report.dry_run else ""
    if report.atomic_aborted:
        out.print(
            f"[red]nothing imported[/red]: {plural(len(report.errors), 'bad row')} in "
            f"{esc(file.name)} "
            "and --atomic was given; fix them and run again"
        )
        return
    out.print(
        f"{prefix}{plural(report.rows, 'row')}: {report.added} added, {report.updated} updated, "
        f"{report.resubscribed} resubscribed, {report.unchanged} already in the store, "
        f"{len(report.skipped)} skipped, {len(report.errors)} rejected"
    )
    if report.errors:
        out.print(
            "fix the rejected rows and import the file again: rows already imported are "
            "left as they are"
        )


class _progress:
    """A rich progress bar on stderr for large files; a no-op callback for small ones."""

    BIG = 256 * 1024  # bytes; smaller files import in well under a second

    def __init__(self, file: Path) -> None:
        try:
            self.enabled = file.stat().st_size >= self.BIG
        except OSError:
            self.enabled = False
        self.bar: Any = None
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> Any:
        if not self.enabled:
            return None
        from rich.progress import Progress

        self.bar = Progress(console=console(stderr=True, soft_wrap=False), transient=True)
        self.bar.start()
        return self.update

    def update(self, stage: str, done: int, total: int) -> None:
        if stage not in self.tasks:
            self.tasks[stage] = self.bar.add_task(stage, total=total)
        self.bar.update(self.tasks[stage], completed=done, total=total)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


@subscribers.command(name="export")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path), required=False)
@click.pass_obj
def export_cmd(app: AppContext, file: Path | None) -> None:
    """Export every subscriber as CSV (to FILE, or to standard output).

    All fields; topics as ";"-separated slugs. Cells a spreadsheet would run as a formula
    are prefixed with "'" (import removes it again).

    \b
    Example:
        newsletter subscribers export subscribers/backup.csv
        newsletter subscribers export | head
    """
    from newsletter.services import imports

    n = imports.export_subscribers(app.app(), file)
    if file is None:
        return
    click.echo(f"wrote {plural(n, 'subscriber')} to {file}", err=True)


@subscribers.command(name="stats")
@click.option("--issue", "month", default=None, help="Count summaries per subscriber (YYYY-MM).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
def stats_cmd(app: AppContext, month: str | None, as_json: bool) -> None:
    """Counts by status and by topic; with --issue, how many summaries each would get.

    Topic counts are of active subscribers (and paused ones whose pause has ended) who
    chose the topic; all-topics subscribers are counted on their own line.

    \b
    Example:
        newsletter subscribers stats
        newsletter subscribers stats --issue 2026-11
    """
    from rich.table import Table

    if month:
        from newsletter.services import issues

        result = issues.audience(app.app(), month)
        if as_json:
            print_json(
                {
                    "month": result.month,
                    "receiving": result.receiving,
                    "histogram": {str(k): v for k, v in result.histogram.items()},
                    "summaries": [
                        {"title": t, "subscribers": n}
                        for t, n in zip(result.summaries, result.per_summary, strict=True)
                    ],
                }
            )
            return
        out = console()
        from newsletter.rules.months import month_name

        print_audience(
            out,
            f"{month_name(result.month)}: {result.receiving} receiving subscribers",
            result.histogram,
            result.summaries,
            result.per_summary,
            labels=("Summaries received", "Subscribers"),
        )
        return

    from newsletter.content.taxonomy import load_taxonomy
    from newsletter.services import subscribers as service

    counts = service.stats(app.app())
    if as_json:
        print_json(
            {
                "total": counts.total,
                "by_status": counts.by_status,
                "receiving": counts.receiving,
                "all_topics": counts.all_topics,
                "by_topic": counts.by_topic,
            }
        )
        return
    out = console()
    table = Table(title=plural(counts.total, "subscriber"), title_justify="left")
    table.add_column("Status")
    table.add_column("Count", justify="right")
    for status, n in counts.by_status.items():
        table.add_row(status, str(n))
    out.print(table)
    taxonomy = load_taxonomy()
    topics = Table(
        title=f"{counts.receiving} receiving; by topic", title_justify="left", show_footer=False
    )
    topics.add_column("Topic", overflow="fold")
    topics.add_column("Subscribers", justify="right")
    topics.add_row("[italic]all topics[/italic]", str(counts.all_topics))
    for t in taxonomy:
        topics.add_row(esc(t.name), str(counts.by_topic.get(t.slug, 0)))
    out.print(topics)
