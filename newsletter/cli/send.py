"""``newsletter send``, ``send-test``, ``worker`` and ``deliveries``."""

from __future__ import annotations

import click

from newsletter.cli.base import (
    AppContext,
    console,
    delivery_state,
    esc,
    log_to_stderr,
    plural,
    print_json,
    short_times,
)
from newsletter.rules.statuses import DELIVERY_STATUSES

#: Exit status when the SMTP server stayed unreachable: the send is paused, the rest
#: queued (EX_TEMPFAIL: try again later).
EXIT_PAUSED = 75

workers_option = click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=None,
    help="Sender threads (default: smtp_pool_size).",
)


def _stop_on_signals():
    """An event set by SIGTERM/SIGINT: in-flight messages finish, the rest stays queued."""
    import signal
    import threading

    stop = threading.Event()

    def handler(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def _preview_table(preview, title: str):
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column("Variant")
    table.add_column("Summaries")
    table.add_column("Recipients", justify="right")
    for key, n in preview.variants.items():
        if key.is_everything:
            which = "every summary"
        elif key.is_teaser:
            which = "teaser (titles only)"
        else:
            which = esc("; ".join(key.pick(preview.titles)))
        table.add_row(esc(key.name), which, str(n))
    for reason, n in sorted(preview.skipped.items()):
        table.add_row("[dim]skipped[/dim]", f"[dim]{esc(reason)}[/dim]", f"[dim]{n}[/dim]")
    return table


def _result_table(result):
    from rich.table import Table

    report = result.report
    table = Table(title="Result", title_justify="left")
    for col in ("Issue", "Status", "Sent", "Skipped", "Queued", "Retrying", "Failed", "Msg/s"):
        table.add_column(col, justify="right" if col not in ("Issue", "Status") else "left")
    for st in result.statuses:
        # Retrying: tried and refused for now, waiting for their time; queued: never tried.
        queued = st.counts.get("pending", 0) - st.retrying + st.counts.get("sending", 0)
        table.add_row(
            st.month,
            st.status,
            str(st.counts.get("sent", 0)),
            str(st.counts.get("skipped", 0)),
            str(queued),
            str(st.retrying),
            str(st.counts.get("failed", 0)),
            f"{report.rate:.0f}",
        )
    return table


#: What `send` says while the SMTP server cannot be reached (instead of a still 0/5).
WAITING = "[yellow]waiting for the server; Ctrl-C leaves the rest queued[/yellow]"


def _drain(app, options, total: int, planning=None):
    """Run a worker with a progress bar; returns the SendResult. ``planning``: the rest
    of the send is being planned meanwhile (the total is known once it is over)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from newsletter.services import sends

    stop = _stop_on_signals()
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:.0f} msg/s"),
        TimeRemainingColumn(),
        console=console(stderr=True, soft_wrap=False),
        transient=False,
    ) as progress:
        known = planning is None or options.limit is not None or planning.total is not None
        task = progress.add_task("sending", total=max(total, 1) if known else None, rate=0.0)
        waiting = False

        def on_progress(report) -> None:
            nonlocal waiting, known
            if not known and planning.total is not None:
                known = True
                progress.update(task, total=max(planning.total, 1))
            if report.waiting != waiting:  # the server went away, or came back: say so
                waiting = report.waiting
                progress.console.print(WAITING if waiting else "the server is back; sending")
            progress.update(
                task,
                completed=report.handled,
                rate=report.rate,
                description="waiting" if waiting else "sending",
            )

        result = sends.run_worker(
            app, options, on_progress=on_progress, stop=stop, planning=planning
        )
        progress.update(task, completed=result.report.handled)
    return result


@click.command()
@click.argument("month")
@click.option("--dry-run", is_flag=True, help="Show who would get what; change nothing.")
@workers_option
@click.option(
    "--limit",
    type=click.IntRange(1),
    default=None,
    help="Send at most this many messages now; the rest stays queued.",
)
@click.option(
    "--replan",
    is_flag=True,
    help="Send the issue file as it is now to everyone not sent to yet (after an edit).",
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def send(
    app: AppContext,
    month: str,
    dry_run: bool,
    workers: int | None,
    limit: int | None,
    replan: bool,
    yes: bool,
) -> None:
    """Send the issue of MONTH to every subscriber whose topics it meets.

    Plans the send (once: running it again never sends anyone a second copy), shows how
    many get each variant, asks to confirm, then sends with a progress bar. Messages the
    server refuses for now stay queued for `newsletter worker`. A planned send goes out
    as it was planned, even if the issue file is edited since; --replan sends the file as
    it is now to everyone not sent to yet.

    \b
    Example:
        newsletter send 2026-12 --dry-run
        newsletter send 2026-12 --yes
        newsletter send 2026-12 --replan
    """
    from newsletter.services import sends

    out = console()
    ctx = app.app()
    # With --yes a new send is planned at once: its table comes from the plan, not from
    # a counting pass of its own before it (at a million people that pass took as long
    # as planning, before the first message could go).
    prepared = sends.prepare(
        ctx, month, replan=replan, count=not (yes and not dry_run), dry_run=dry_run
    )
    preview, issue = prepared.preview, prepared.issue
    out.print(f"[bold]{issue.month_name}[/bold]: {esc(preview.subject)}")
    if preview.finished:
        sent = plural(preview.sent, "message")
        out.print(f"{issue.month} was sent already ({sent}): nothing to send.")
        return
    counted = preview.outstanding >= 0
    if counted:
        out.print(_preview_table(preview, f"Send of {issue.month} ({preview.status})"))
    for warning in prepared.warnings:
        out.print(f"[yellow]warning:[/yellow] {esc(warning)}")
    if prepared.changed and not replan:
        out.print(
            f"[yellow]the issue file changed since the send of {issue.month} was planned:[/yellow]"
            " the rest of the send goes out as planned; to send the file as it is now to the "
            f"{plural(preview.outstanding, 'person', 'people')} not sent to yet, run: "
            f"newsletter send {issue.month} --replan",
            soft_wrap=True,
        )
    if dry_run:
        out.print("dry run: nothing was planned or sent")
        return
    if preview.outstanding == 0 and preview.status != "new" and not (replan or preview.planning):
        out.print("nothing left to send")
        return
    question = f"Send {plural(preview.outstanding, 'message')} now?"
    if not yes and not click.confirm(question, default=False):
        raise click.ClickException("cancelled; nothing was sent")
    planning = None
    if counted or replan:
        preview = sends.plan(ctx, month, issue=issue, replan=replan)
    else:
        # Not counted first (--yes): the first messages go while the rest is planned.
        planning = sends.plan_while_sending(ctx, month, issue=issue)
        preview = planning.preview
    background = planning is not None and planning.more_coming()
    if background:
        out.print("planning the rest of the list while the first messages go")
    elif not counted:
        out.print(_preview_table(preview, f"Send of {issue.month} (planned)"))
    # An unreachable server pauses the send; smtp_outage_wait (two minutes) after it went
    # away `send` hands it over to `newsletter worker` (exit status 75) instead of hanging.
    options = sends.WorkerOptions(
        threads=workers or 0,
        limit=limit,
        months=[issue.month],
        max_unavailable_wait=ctx.settings.smtp_outage_wait,
    )
    result = _drain(ctx, options, limit or preview.outstanding, planning)
    # The plan's table, now that it is whole.
    if background and planning is not None and planning.total is not None:
        out.print(_preview_table(sends.preview(ctx, issue.month), f"Send of {issue.month}"))
    out.print(_result_table(result))
    _report_tail(out, result)


def _report_tail(out, result) -> None:
    _print_tail(out, result)
    if result.report.paused:
        raise click.exceptions.Exit(EXIT_PAUSED)


def _print_tail(out, result) -> None:
    report = result.report
    if report.recovered:
        out.print(f"recovered {plural(report.recovered, 'message')} left by a stopped worker")
    if report.paused:
        out.print(
            "[yellow]the SMTP server is unreachable: the send is paused; "
            "`newsletter worker` resumes it[/yellow]"
        )
    if report.stopped and not report.paused:
        out.print("stopped: what is left stays queued; `newsletter worker` resumes it")
    waiting = sum(s.retrying for s in result.statuses)
    if waiting and not report.stopped:
        out.print(
            f"{plural(waiting, 'message')} wait{'s' if waiting == 1 else ''} for a retry: run "
            "`newsletter worker` (or leave one running)",
            soft_wrap=True,
        )


@click.command()
@click.option("--once", is_flag=True, help="Send what is due now, then exit.")
@workers_option
@click.option(
    "--poll",
    type=click.FloatRange(0.1),
    default=5.0,
    show_default=True,
    help="Seconds between looks at the queue when it is empty.",
)
@click.option(
    "--give-up-after",
    type=click.FloatRange(0),
    default=None,
    help="Seconds to wait for an unreachable SMTP server before exiting (status 75, the "
    "rest stays queued). Default: smtp_outage_wait with --once, forever without.",
)
@click.pass_obj
def worker(
    app: AppContext, once: bool, workers: int | None, poll: float, give_up_after: float | None
) -> None:
    """Deliver every pending send: retries, resumed sends, sends left by the scheduler.

    Runs until stopped (SIGTERM or Ctrl-C finish the messages in flight and leave the
    rest queued), or with --once until nothing is due. Several workers may run at once
    on PostgreSQL, on any number of machines. If the SMTP server cannot be reached the
    send pauses; --once gives up after smtp_outage_wait (two minutes) and exits with
    status 75.

    \b
    Example:
        newsletter worker --once
        newsletter worker --workers 4
    """
    from newsletter.services import sends

    log_to_stderr()
    if give_up_after is None and once:
        give_up_after = app.app().settings.smtp_outage_wait
    options = sends.WorkerOptions(
        threads=workers or 0, once=once, poll_interval=poll, max_unavailable_wait=give_up_after
    )
    stop = _stop_on_signals()
    result = sends.run_worker(app.app(), options, stop=stop)
    out = console()
    out.print(
        f"sent {result.report.sent}, retrying {result.report.retry}, failed "
        f"{result.report.failed} in {result.report.elapsed:.1f} s"
    )
    if result.statuses:
        out.print(_result_table(result))
    _report_tail(out, result)


@click.command(name="send-test")
@click.argument("month")
@click.option("--to", "to", required=True, help="Address to send the test to.")
@click.option("--topics", default=None, help='Variant of these topics, e.g. "CBT; Empathy".')
@click.option(
    "--subscriber",
    metavar="EMAIL",
    default=None,
    help="Send what this subscriber would get, with their working links (needs the store).",
)
@click.pass_obj
def send_test(
    app: AppContext, month: str, to: str, topics: str | None, subscriber: str | None
) -> None:
    """Send one test message of MONTH (subject marked [TEST]; not recorded).

    Without --subscriber, the links in the test open a page saying they come from a
    test. With --subscriber EMAIL, the test is what that subscriber would get: their
    name, their topics, and links that act for them (its Unsubscribe unsubscribes them).

    \b
    Example:
        newsletter send-test 2026-12 --to me@example.org
        newsletter send-test 2026-12 --to me@example.org --topics "Training"
        newsletter send-test 2026-12 --to me@example.org --subscriber ann@example.org
    """
    from newsletter.services import sends

    if topics and subscriber:
        raise click.UsageError("give --topics or --subscriber, not both")
    result = sends.send_test(app.app(), month, to, topics, subscriber)
    if result.status != "sent":
        raise click.ClickException(
            f"test message to {to} not sent ({result.status}): {result.reply}"
        )
    click.echo(f"sent {result.variant!r} variant to {to}: {result.subject} {result.message_id}")
    if subscriber:
        click.echo(f"as {subscriber}: its links act for them (Unsubscribe would unsubscribe them)")


@click.group()
def deliveries() -> None:
    """The delivery record of each send: status, per-person rows, retries.

    \b
    Example:
        newsletter deliveries status 2026-12
    """


@deliveries.command()
@click.argument("month")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
def status(app: AppContext, month: str, as_json: bool) -> None:
    """Counts of the send of MONTH by status, variant and skip reason.

    \b
    Example:
        newsletter deliveries status 2026-12 --json
    """
    from newsletter.services import sends

    ctx = app.app()
    st = sends.delivery_status(ctx, month)
    report = sends.bounce_report(ctx, month)
    data = {
        "month": st.month,
        "status": st.status,
        "subject": st.subject,
        "created_at": st.created_at,
        "started_at": st.started_at,
        "finished_at": st.finished_at,
        "paused_reason": st.paused_reason,
        "planning": st.planning,
        "counts": st.counts,
        "queued": st.counts.get("pending", 0) - st.retrying,
        "retrying": st.retrying,
        "skipped": st.skipped,
        "variants": {str(k): v for k, v in st.variants.items()},
        "bounces": {
            "counts": report.counts,
            "attempted": report.attempted,
            "hard_rate": report.rate("hard"),
            "complaint_rate": report.rate("complaint"),
            "warnings": report.warnings,
        },
    }
    if as_json:
        print_json(data)
        return
    from rich.table import Table

    table = Table(title=f"Send of {st.month}: {esc(st.status)}", title_justify="left")
    table.add_column("Status")
    table.add_column("Messages", justify="right")
    rows = {
        "sent": st.counts.get("sent", 0),
        "queued (never tried)": st.counts.get("pending", 0) - st.retrying,
        "retrying (tried, waiting)": st.retrying,
        "sending": st.counts.get("sending", 0),
        "failed": st.counts.get("failed", 0),
        "skipped": st.counts.get("skipped", 0),
    }
    for key, n in rows.items():
        table.add_row(key, str(n))
    console().print(table)
    for reason, n in st.skipped.items():
        console().print(f"  skipped, {esc(reason)}: {n}")
    if st.paused_reason:
        console().print(f"[yellow]paused: {esc(st.paused_reason)}[/yellow]")
    if st.planning:
        console().print(
            "[yellow]planning is not over: not everyone has a row yet (if no `newsletter "
            f"send` is running, `newsletter send {st.month} --yes` finishes it)[/yellow]",
            soft_wrap=True,
        )
    if report.counts:
        c = report.counts
        console().print(
            f"bounces: hard {c.get('hard', 0)} ({report.rate('hard'):.2%}), soft "
            f"{c.get('soft', 0)}, blocks {c.get('block', 0)}, complaints "
            f"{c.get('complaint', 0)} ({report.rate('complaint'):.2%})"
        )
    for warning in report.warnings:
        console().print(f"[yellow]warning:[/yellow] {esc(warning)}")


@deliveries.command(name="list")
@click.argument("month")
@click.option(
    "--status",
    "status_",
    type=click.Choice(DELIVERY_STATUSES),
    default=None,
)
@click.option("--limit", type=click.IntRange(1), default=1000, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
def list_(app: AppContext, month: str, status_: str | None, limit: int, as_json: bool) -> None:
    """One row per recipient of the send of MONTH.

    \b
    Example:
        newsletter deliveries list 2026-12 --status failed
    """
    from dataclasses import asdict

    from newsletter.services import sends

    ctx = app.app()
    rows = sends.list_deliveries(ctx, month, status_, limit)
    if as_json:
        print_json([{**asdict(r), "variant": r.variant} for r in rows])
        return
    from rich.table import Table

    zone, times = short_times(
        [r.sent_at or (r.next_attempt_at if r.status == "pending" else None) for r in rows],
        ctx.settings,
    )
    from rich import box

    table = Table(
        title=plural(len(rows), "delivery", "deliveries"),
        title_justify="left",
        box=box.SIMPLE_HEAD,  # no side borders: their room goes to the addresses
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
        caption=f"When: sent, or the next try; times in {zone}",
        caption_justify="left",
    )
    # The reply or reason sits under the address (wrapping between words), so that the
    # address has the room and stays whole at 80 columns.
    table.add_column("Email [dim]and reply or reason[/dim]", overflow="fold")
    table.add_column("Status", no_wrap=True)
    table.add_column("Variant", no_wrap=True)
    table.add_column("Tries", justify="right", no_wrap=True)
    table.add_column("When", no_wrap=True)
    for r, time in zip(rows, times, strict=True):
        # A sent row's reply ("250 ok") says nothing more than its status.
        why = r.skip_reason or (r.last_reply if r.status != "sent" else "") or ""
        table.add_row(
            esc(r.email) + (f"\n[dim]  {esc(why)}[/dim]" if why else ""),
            delivery_state(r.status, r.attempts),
            r.variant or "-",
            str(r.attempts),
            time,
        )
    console().print(table)


@deliveries.command()
@click.argument("month")
@click.option(
    "--include-hard",
    is_flag=True,
    help="Also those refused with a hard bounce (the address does not exist); reactivate "
    "the person first (`newsletter subscribers reactivate`), or they are skipped again.",
)
@click.pass_obj
def retry(app: AppContext, month: str, include_hard: bool) -> None:
    """Put the failed deliveries of MONTH back in the queue (then run a worker).

    Deliveries refused with a hard bounce stay failed unless --include-hard.

    \b
    Example:
        newsletter deliveries retry 2026-12 && newsletter worker --once
    """
    from newsletter.services import sends

    n = sends.retry_failed(app.app(), month, include_hard=include_hard)
    click.echo(
        f"{plural(n, 'failed delivery', 'failed deliveries')} queued again; "
        "run `newsletter worker --once`"
    )
