"""``newsletter bounces``: refused mail and what it did to the list."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from newsletter.cli.base import (
    AppContext,
    console,
    esc,
    log_to_stderr,
    plural,
    print_json,
    short_times,
)


def _row_json(b) -> dict:
    return {
        "at": b.at.isoformat(),
        "email": b.email,
        "kind": b.kind,
        "code": b.code,
        "status": b.status,
        "diagnostic": b.diagnostic,
        "month": b.month,
        "message_id": b.message_id,
        "source": b.source,
    }


def _table(rows, title: str, settings, with_email: bool = True):
    from rich import box
    from rich.table import Table

    zone, times = short_times([b.at for b in rows], settings)
    # What the server said sits under the address (wrapping between words), so the
    # address has the room and stays whole at 80 columns.
    table = Table(
        title=title,
        caption=f"times in {zone}",
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
    )
    table.add_column("When", no_wrap=True)
    table.add_column("Kind", no_wrap=True)
    table.add_column("Issue", no_wrap=True)
    label = "Email [dim]and what the server said[/dim]" if with_email else "Server said"
    table.add_column(label, overflow="fold")
    for b, time in zip(rows, times, strict=True):
        said = esc(b.diagnostic)
        if with_email:
            said = f"{esc(b.email)}\n[dim]  {said}[/dim]"
        table.add_row(time, b.kind, b.month or "-", said)
    return table


@click.group()
def bounces() -> None:
    """Refused mail: hard bounces mark an address bounced at once, soft ones add up.

    Policy: 5.1.x and 5.2.1 (or 550/551/553) are hard; mailbox full (x.2.2, 552) and a
    delivery given up after retries are soft (bounce_soft_threshold within
    bounce_soft_window_days marks the address bounced); other 5xx (policy and spam
    blocks, 5.7.x, 554) are recorded only.

    \b
    Example:
        newsletter bounces list --since 2026-12-01
        newsletter bounces show ann@example.org
        newsletter bounces fetch --maildir /var/mail/bounces
        newsletter bounces fetch --imap
        newsletter bounces serve --port 2525
    """


@bounces.command(name="list")
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Only bounces from this day on (YYYY-MM-DD).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
def list_(app: AppContext, since: dt.datetime | None, as_json: bool) -> None:
    """List recorded bounces, newest first.

    \b
    Example:
        newsletter bounces list --since 2026-12-01
    """
    from newsletter.services import bounces as service

    ctx = app.app()
    rows = service.list_bounces(ctx, since.date() if since else None)
    if as_json:
        print_json([_row_json(b) for b in rows])
        return
    if not rows:
        click.echo("no bounces recorded")
        return
    console().print(_table(rows, plural(len(rows), "bounce"), ctx.settings))


@bounces.command()
@click.option(
    "--maildir",
    "maildir",
    type=click.Path(path_type=Path),
    default=None,
    help="A Maildir folder (new messages are moved to cur/ and flagged seen).",
)
@click.option(
    "--mbox",
    "mbox",
    type=click.Path(path_type=Path),
    default=None,
    help="An mbox file.",
)
@click.option(
    "--imap",
    "imap",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[URL]",
    help="An IMAP folder: bounce_imap_url, or the imaps://user@host/FOLDER given "
    "(the password is always bounce_imap_password).",
)
@click.option(
    "--keep",
    is_flag=True,
    help="IMAP: move nothing; mark processed messages seen and $NewsletterDone instead.",
)
@click.option(
    "--ca-file",
    "ca_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="IMAP: also trust this certificate authority (PEM); default bounce_imap_ca_file.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
def fetch(
    app: AppContext,
    maildir: Path | None,
    mbox: Path | None,
    imap: str | None,
    keep: bool,
    ca_file: Path | None,
    as_json: bool,
) -> None:
    """Read bounces and complaints that came back by mail, each message once.

    DSNs (RFC 3464), complaints (ARF) and other servers' bounce formats are recorded
    against the delivery they are about (by the VERP tag, the returned Message-ID or the
    address); auto-replies and messages that prove nothing are set aside. Reading the
    same mailbox again changes nothing.

    Over IMAP, each processed message is then moved to bounce_imap_processed_folder
    (default Processed) and each one set aside to bounce_imap_set_aside_folder (default
    Set-aside), both created if missing; with --keep they stay where they are, flagged.

    \b
    Example:
        newsletter bounces fetch --maildir /var/mail/bounces
        newsletter bounces fetch --imap
        newsletter bounces fetch --imap imaps://bounces@mail.example.org/INBOX --keep
    """
    from newsletter.services import bounces as service

    if sum(x is not None for x in (maildir, mbox, imap)) != 1:
        raise click.UsageError("give one of --maildir FOLDER, --mbox FILE or --imap [URL]")
    if imap is None and (keep or ca_file is not None):
        raise click.UsageError("--keep and --ca-file only apply to --imap")
    if imap is not None:
        report = service.fetch_imap(
            app.app(),
            imap or None,
            ca_file=str(ca_file) if ca_file is not None else None,
            keep=keep,
        )
    else:
        path = maildir or mbox
        assert path is not None
        report = service.fetch_mailbox(app.app(), path, "maildir" if maildir else "mbox")
    data: dict[str, object] = {
        "read": report.read,
        "recorded": report.recorded,
        "already": report.already,
        "set_aside": report.ignored,
        "marked": report.marked,
    }
    if imap is not None:
        data["moved"] = report.moved
        data["flagged"] = report.flagged
    if as_json:
        print_json(data)
        return
    aside = ", ".join(f"{n} {what}" for what, n in sorted(report.ignored.items())) or "none"
    out = console()
    out.print(
        f"read {report.read}: {report.recorded} recorded, {report.already} seen before, "
        f"set aside: {aside}"
    )
    if imap is not None:
        if keep:
            out.print(f"flagged {report.flagged} {service.DONE_KEYWORD} (nothing moved)")
        else:
            moved = ", ".join(f"{n} to {esc(f)}" for f, n in report.moved.items()) or "nothing"
            out.print(f"moved {moved}")
    for email in report.marked:
        out.print(f"  {esc(email)}: no more mail (bounced or complained)")


@bounces.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=2525, show_default=True)
@click.pass_obj
def serve(app: AppContext, host: str, port: int) -> None:
    """Receive bounces by SMTP: point a relay or MX for the bounce address here.

    Each message is processed like one read by `bounces fetch` and answered 250; if it
    cannot be recorded now (the database is away) the answer is 451, so the relay keeps it
    and tries again. Runs until Ctrl-C or SIGTERM.

    \b
    Example:
        newsletter bounces serve --port 2525
    """
    import signal
    import threading

    from newsletter.services import bounces as service

    log_to_stderr()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    def ready(bound: int) -> None:
        click.echo(f"receiving bounces on {host}:{bound}; Ctrl-C stops", err=True)

    service.serve_bounces(app.app(), host, port, stop, on_ready=ready)


@bounces.command()
@click.argument("email")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
def show(app: AppContext, email: str, as_json: bool) -> None:
    """Show one person's status and every bounce recorded for them.

    \b
    Example:
        newsletter bounces show ann@example.org
    """
    from newsletter.services import bounces as service

    ctx = app.app()
    view, rows = service.show_bounces(ctx, email)
    if as_json:
        print_json(
            {"email": view.email, "status": view.status, "bounces": [_row_json(b) for b in rows]}
        )
        return
    out = console()
    out.print(f"{esc(view.email)}: {view.status}")
    if not rows:
        out.print("no bounces recorded")
        return
    out.print(_table(rows, "Bounces", ctx.settings, with_email=False))
    if view.status == "bounced":
        out.print(
            f"to send to this address again: newsletter subscribers reactivate {esc(view.email)}",
            soft_wrap=True,
        )
