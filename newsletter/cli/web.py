"""``newsletter serve``: the web pages (preferences, unsubscribe, sign-up, archive)."""

from __future__ import annotations

import click

from newsletter.cli.base import AppContext, console, esc


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="TCP port."
)
@click.option(
    "--threads",
    default=8,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Requests handled at once.",
)
@click.pass_obj
def serve(app: AppContext, host: str, port: int, threads: int) -> None:
    """Serve the subscriber pages and the public archive (waitress).

    Links in emails point at base_url; put a TLS-terminating proxy in front and set
    trusted_proxies = 1 so the consent log records the visitor's IP.

    \b
    Example:
        newsletter serve
        newsletter serve --host 0.0.0.0 --port 8080
    """
    from newsletter.web import serve as run

    settings = app.settings()
    console(stderr=True).print(
        f"Serving on http://{esc(host)}:{port}/ (links in emails use "
        f"{esc(settings.base_url)}); Ctrl+C stops."
    )
    if settings.api_enabled:
        console(stderr=True).print(
            f"JSON API on http://{esc(host)}:{port}/api/v1/ (description: /api/v1/openapi.json)"
        )
    run(settings, host=host, port=port, threads=threads)
