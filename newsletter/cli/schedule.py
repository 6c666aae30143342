"""``newsletter schedule`` (one-off sends) and ``newsletter scheduler`` (run, list)."""

from __future__ import annotations

import click

from newsletter.cli.base import (
    AppContext,
    console,
    esc,
    log_to_stderr,
    plural,
    print_json,
    when,
)
from newsletter.rules.months import looks_like_month


class _ScheduleGroup(click.Group):
    """A group whose first argument may be a month: ``schedule 2026-12 --at ...`` = ``add``."""

    def resolve_command(self, ctx: click.Context, args: list[str]):
        if args and looks_like_month(args[0]) and args[0] not in self.commands:
            cmd = self.get_command(ctx, "add")
            assert cmd is not None
            return "add", cmd, args  # the month stays: it is add's argument
        return super().resolve_command(ctx, args)


@click.group(cls=_ScheduleGroup)
def schedule() -> None:
    """Schedule a one-off send of an issue, or cancel one.

    `newsletter schedule MONTH --at TIME` is short for `newsletter schedule add`. The
    running scheduler (`newsletter scheduler run`) picks the request up within seconds.
    The monthly send is set in newsletter.toml (monthly_schedule), not here.

    \b
    Example:
        newsletter schedule 2026-12 --at "2026-12-01 09:00"
        newsletter schedule 2026-12 --at "2026-12-01 09:00" --tz Europe/Paris
        newsletter schedule cancel 2026-12
    """


@schedule.command()
@click.argument("month")
@click.option("--at", "at", required=True, help='Local date and time, "YYYY-MM-DD HH:MM[:SS]".')
@click.option("--tz", "tz", default=None, help="IANA time zone of --at (default: timezone).")
@click.pass_obj
def add(app: AppContext, month: str, at: str, tz: str | None) -> None:
    """Send the issue of MONTH once, at a given time (again: moves the time).

    At that time the issue must be valid and marked `status: ready`, or the author is told
    what is wrong and nothing is sent. A send that could not start on time (scheduler
    down) still starts within misfire_grace_time, else it is reported as missed.

    \b
    Example:
        newsletter schedule add 2026-12 --at "2026-12-01 09:00" --tz Europe/Paris
    """
    from newsletter.rules.schedules import shown_time
    from newsletter.services import schedules

    ctx = app.app()
    result = schedules.schedule_once(ctx, month, at, tz)
    verb = "moved" if result.replaced else "scheduled"
    zone_name = tz or ctx.settings.timezone
    local = f"{shown_time(result.run_at, zone_name)} ({zone_name})"
    if zone_name != ctx.settings.timezone:
        local += f", {when(result.run_at, ctx.settings)} ({ctx.settings.timezone})"
    click.echo(f"{result.month} {verb}: sends at {local}")
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)


@schedule.command()
@click.argument("month")
@click.pass_obj
def cancel(app: AppContext, month: str) -> None:
    """Cancel the one-off send of MONTH.

    \b
    Example:
        newsletter schedule cancel 2026-12
    """
    from newsletter.services import schedules

    row = schedules.cancel_once(app.app(), month)
    click.echo(f"the send of {row.month} is cancelled")


@click.group()
def scheduler() -> None:
    """The store's one scheduler process: run it, list what it will send.

    \b
    Example:
        newsletter scheduler run
        newsletter scheduler list --json
    """


@scheduler.command()
@click.option(
    "--wait",
    type=click.FloatRange(0),
    default=0.0,
    help="Seconds to wait for another scheduler's lease to end instead of refusing at once.",
)
@click.pass_obj
def run(app: AppContext, wait: float) -> None:
    """Run the scheduler until stopped (SIGTERM or Ctrl-C).

    Sends the monthly issue (monthly_schedule) and the one-off sends of `newsletter
    schedule`. Only one scheduler may run per store: a second one refuses to start. Jobs
    live in the store's database, so restarts lose nothing and never send twice.

    \b
    Example:
        newsletter scheduler run
        newsletter scheduler run --wait 120
    """
    import logging
    import signal
    import threading

    from newsletter.scheduling.runner import run_scheduler

    log_to_stderr()
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    stop = threading.Event()

    def handler(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)

    settings = app.settings()

    def started(jobs) -> None:
        for job_id, next_run in jobs:
            click.echo(f"job {job_id}: next run {when(next_run, settings) or '-'}", err=True)
        click.echo("scheduler started", err=True)

    if not run_scheduler(app.app(), stop=stop, wait=wait, on_started=started):
        raise click.ClickException("another scheduler took over the lease; stopped")
    click.echo("scheduler stopped", err=True)


@scheduler.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
def list_(app: AppContext, as_json: bool) -> None:
    """Scheduled sends: next run time, last outcome, misfires; is a scheduler running?

    \b
    Example:
        newsletter scheduler list
        newsletter scheduler list --json | jq '.jobs[] | select(.misfires > 0)'
    """
    from dataclasses import asdict

    from newsletter.services import schedules

    ctx = app.app()
    view = schedules.overview(ctx)
    if as_json:
        print_json(asdict(view))
        return
    from rich.table import Table

    out = console()
    if view.running:
        out.print(
            f"scheduler: running ({esc(view.holder)}, heartbeat "
            f"{when(view.heartbeat_at, ctx.settings, seconds=True)})"
        )
    else:
        out.print("[yellow]scheduler: not running[/yellow] (start `newsletter scheduler run`)")
    table = Table(
        title=f"{plural(len(view.jobs), 'scheduled send')} (times in {view.timezone})",
        title_justify="left",
    )
    table.add_column("Job", no_wrap=True)
    table.add_column("When")
    table.add_column("Next run", no_wrap=True)
    table.add_column("State", no_wrap=True)
    table.add_column("Missed", justify="right", no_wrap=True)
    outcomes = []
    for j in view.jobs:
        state = f"[red]{j.state}[/red]" if j.state == "missed" else esc(j.state)
        # The title names the configured zone; a rule or one-off in it need not repeat it.
        rule = j.when.removesuffix(f" ({view.timezone})").removesuffix(f" {view.timezone}")
        table.add_row(
            esc(j.job_id), esc(rule), when(j.next_run, ctx.settings), state, str(j.misfires)
        )
        if j.last_outcome:
            last = f"{j.job_id}: last {j.last_outcome} {when(j.last_at, ctx.settings)}"
            if j.last_detail:
                last += f": {j.last_detail}"
            outcomes.append(last)
    out.print(table)
    for line in outcomes:
        out.print(esc(line))
