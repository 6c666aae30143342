"""``newsletter issue preview`` and ``newsletter issue variants``: see what subscribers get."""

from __future__ import annotations

from pathlib import Path

import click

from newsletter.cli.base import AppContext, console, esc, plural, print_json


@click.command()
@click.argument("month")
@click.option("--topics", help='Preview as a subscriber of these topics ("a; b"), or "all".')
@click.option("--subscriber", metavar="EMAIL", help="Preview as this subscriber (needs the store).")
@click.option("--text", "show_text", is_flag=True, help="Also print the plain-text part.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("preview"),
    show_default=True,
    help="Folder for the preview files.",
)
@click.option("--open", "open_browser", is_flag=True, help="Open the HTML in your browser.")
@click.option("--png", is_flag=True, help="Save screenshots 375 px and 600 px wide (Chromium).")
@click.option("--serve", is_flag=True, help="Run a local preview server with a variant switcher.")
@click.option("--port", type=int, default=8025, show_default=True, help="Port for --serve.")
@click.pass_obj
def preview(
    app: AppContext,
    month: str,
    topics: str | None,
    subscriber: str | None,
    show_text: bool,
    out_dir: Path,
    open_browser: bool,
    png: bool,
    serve: bool,
    port: int,
) -> None:
    """Render an issue as one subscriber would get it and write the HTML and text.

    MONTH is YYYY-MM (the file issues/YYYY-MM.md) or a path. Without --topics or
    --subscriber, previews the full issue (a subscriber of all topics). Files go to
    preview/YYYY-MM-VARIANT.html and .txt. With --serve, a local server shows every
    variant at 600 px, 375 px and as text, re-reading the issue file on each reload.

    \b
    Example:
        newsletter issue preview 2026-11
        newsletter issue preview 2026-11 --topics "Empathy; Training" --text
        newsletter issue preview 2026-11 --png --out /tmp/preview
        newsletter issue preview 2026-11 --serve
    """
    if topics and subscriber:
        raise click.UsageError("give --topics or --subscriber, not both")
    if serve:
        from newsletter.web.preview_server import serve_preview

        click.echo(f"previewing {month} on http://127.0.0.1:{port}/ (Ctrl+C to stop)")
        try:
            serve_preview(app.app(), month, port=port)
        except KeyboardInterrupt:
            click.echo("stopped")
        return
    from newsletter.services import issues

    result = issues.write_preview(app.app(), month, topics, subscriber, out_dir, png=png)
    v = result.variant
    out = console()
    n = len(v.summaries)
    out.print(f"[bold]{esc(v.name)}[/bold] variant: {n} summar{'y' if n == 1 else 'ies'}")
    out.print(f"Subject: {esc(result.message.subject)}")
    size = len(result.message.html.encode("utf-8")) / 1024
    out.print(f"wrote {esc(result.html_path)} ({size:.1f} KB)")
    out.print(f"wrote {esc(result.text_path)}")
    for shot in result.screenshots:
        out.print(f"wrote {esc(shot)}")
    if show_text:
        click.echo()
        click.echo(result.message.text)
    if open_browser:
        import webbrowser

        webbrowser.open(result.html_path.resolve().as_uri())


@click.command()
@click.argument("month")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
def variants(app: AppContext, month: str, as_json: bool) -> None:
    """List the distinct digests of an issue: their summaries and HTML size.

    Each variant is rendered once and sent to every subscriber whose topics select
    exactly those summaries. Sizes are for a typical recipient; Gmail clips HTML over
    102 KB.

    \b
    Example:
        newsletter issue variants 2026-11
        newsletter issue variants 2026-11 --json | jq '.[].html_kb'
    """
    from newsletter.services import issues

    infos = issues.list_variants(app.app(), month)
    if as_json:
        print_json(
            [
                {
                    "name": i.name,
                    "summaries": i.keys,
                    "titles": i.titles,
                    "subject": i.subject,
                    "html_kb": round(i.html_kb, 1),
                    "text_kb": round(i.text_bytes / 1024, 1),
                    "clipped_by_gmail": i.too_big,
                    "subscribers": i.subscribers,
                }
                for i in infos
            ]
        )
        return
    from rich.table import Table

    table = Table(title=f"{month}: {plural(len(infos), 'variant')}", title_justify="left")
    for col in ("Variant", "Summaries", "HTML KB", "Text KB", "Subscribers"):
        table.add_column(col, overflow="fold")
    for i in infos:
        size = f"{i.html_kb:.1f}" + (" [red](over 102 KB)[/red]" if i.too_big else "")
        titles = esc("\n".join(i.titles)) or "[dim](teaser: titles only)[/dim]"
        who = "" if i.subscribers is None else str(i.subscribers)
        table.add_row(esc(i.name), titles, size, f"{i.text_bytes / 1024:.1f}", who)
    console().print(table)
