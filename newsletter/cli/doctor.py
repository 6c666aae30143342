"""``newsletter doctor``: check the set-up before the first real send."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from newsletter.cli.base import AppContext, console, esc, plural, print_json

if TYPE_CHECKING:
    from newsletter.services.doctor import DoctorReport

#: The mark and colour of each status: ✓ passed, ✗ failed, ! warning, - not checked.
MARKS = {
    "ok": ("✓", "green"),
    "fail": ("✗", "red"),
    "warn": ("!", "yellow"),
    "skip": ("-", "dim"),
}


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
@click.option(
    "--nameserver",
    metavar="HOST[:PORT]",
    default=None,
    help="Ask this DNS server (an IP address) instead of the system's resolver.",
)
@click.option(
    "--dns-timeout",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    help="Seconds to wait for a DNS answer.",
)
@click.pass_obj
def doctor(app: AppContext, as_json: bool, nameserver: str | None, dns_timeout: float) -> None:
    """Check the set-up before the first real send, and say how to fix what is wrong.

    Checks that the settings a send needs are set, that the subscriber store is reachable
    and up to date, that the SMTP server accepts a login (STARTTLS and certificate
    included; nothing is sent) or the outbox folder is writable, that base_url is https,
    and, in DNS, the DKIM key, the SPF and DMARC records of the sender's domain and the
    MX of the bounce domain. ✓ passed, ✗ failed (with a fix), ! warning, - not checked
    (e.g. DNS not reachable). Exits 1 when any check failed.

    \b
    Example:
        newsletter doctor
        newsletter doctor --json
        newsletter doctor --nameserver 9.9.9.9
    """
    from newsletter.services.doctor import run_doctor

    report = run_doctor(app.config, app.overrides, nameserver=nameserver, dns_timeout=dns_timeout)
    if as_json:
        print_json(report.to_list())
    else:
        _print(report)
    if not report.ok:
        raise SystemExit(1)


def _print(report: DoctorReport) -> None:
    out = console()
    for check in report.checks:
        mark, colour = MARKS[check.status]
        title = f"[bold]{esc(check.title)}[/bold]"
        out.print(f"[{colour}]{mark}[/{colour}] {title}: {esc(check.detail)}")
        if check.fix and check.status in ("fail", "warn"):
            # One long line the terminal wraps: the commands in it copy whole.
            out.print(f"    fix: {esc(check.fix)}")
    failed, warned = report.count("fail"), report.count("warn")
    skipped = report.count("skip")
    summary = f"{len(report.checks) - failed - warned - skipped} passed, {failed} failed, "
    summary += f"{plural(warned, 'warning')}, {skipped} not checked"
    out.print(("[red]" if failed else "[green]") + summary + ("[/red]" if failed else "[/green]"))
