"""``newsletter demo``."""

from __future__ import annotations

from pathlib import Path

import click

from newsletter.cli.base import console, esc, plural


@click.command()
@click.argument("folder", default="demo", type=click.Path(file_okay=False, path_type=Path))
@click.option("--no-send", is_flag=True, help="Set up and check only; send nothing.")
def demo(folder: Path, no_send: bool) -> None:
    """Run the whole job on the embedded defaults in FOLDER (default: ./demo).

    Needs no servers: writes a newsletter.toml, creates the SQLite store, copies the
    sample issues, imports a few hundred sample subscribers, and sends the latest ready
    issue to the file outbox (FOLDER/outbox/). Safe to run again: nobody gets a second
    copy.

    \b
    Example:
        newsletter demo
        newsletter demo /tmp/try-newsletter
    """
    from newsletter.content.files import format_problem
    from newsletter.services import App, sends
    from newsletter.services.demo import run_demo

    out = console()
    result = run_demo(folder, send=not no_send)
    for step in result.steps:
        out.print(f"[green]✓[/green] {esc(step)}")
    errors = 0
    for item in result.checked:
        for problem in item.result.problems:
            out.print(format_problem(problem), markup=False)
        errors += len(item.result.errors)
    checked = plural(len(result.checked), "issue file")
    out.print(f"[green]✓[/green] checked {checked}: {plural(errors, 'error')}")
    if errors:
        raise SystemExit(1)
    if no_send or result.month is None:
        return
    from newsletter.cli.send import _drain, _preview_table, _result_table

    settings = result.settings
    assert settings is not None
    with App(settings) as app:
        preview = sends.plan(app, result.month)
        out.print(_preview_table(preview, f"Send of {result.month}: who gets which digest"))
        if preview.finished:
            out.print(f"{result.month} was sent already: nobody gets a second copy.")
        else:
            options = sends.WorkerOptions(months=[result.month])
            out.print(_result_table(_drain(app, options, preview.outstanding)))
    outbox = settings.smtp_url.removeprefix("outbox://")
    files = sorted(Path(outbox).glob("*.eml"))
    out.print(f"\nThe messages are in {esc(outbox)}/ ({plural(len(files), '.eml file')}).")
    if files:
        import shlex

        first = esc(shlex.quote(str(files[0])))  # pastes as one argument, spaces and all
        out.print(
            f"Open one in a mail program (e.g. `xdg-open {first}`), or read it with\n"
            '  python3 -c "import sys,email,email.policy as p; '
            "m=email.message_from_binary_file(open(sys.argv[1],'rb'),policy=p.default); "
            "print(m['Subject']); print(m.get_body(('plain',)).get_content())\" "
            f"{first}"
        )
    out.print(
        f"Next: cd {esc(folder)} && newsletter deliveries status {result.month}; "
        f"newsletter issue preview {result.month} --serve"
    )
