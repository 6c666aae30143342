"""``newsletter init``: a new project folder."""

from __future__ import annotations

from pathlib import Path

import click

from newsletter.cli.base import AppContext


@click.command()
@click.option("--force", is_flag=True, help="Replace an existing newsletter.toml.")
@click.option("--sender-name", default="", help="Name in the From header.")
@click.option("--sender-address", default="", help="Address in the From header.")
@click.option("--postal-address", default="", help="Postal address shown in every footer.")
@click.option("--base-url", default=None, help="Public address of the web pages.")
@click.option("--timezone", default=None, help="IANA time zone, e.g. Europe/London.")
@click.pass_obj
def init(
    app: AppContext,
    force: bool,
    sender_name: str,
    sender_address: str,
    postal_address: str,
    base_url: str | None,
    timezone: str | None,
) -> None:
    """Write a commented newsletter.toml with a fresh secret key.

    Never replaces an existing file unless --force is given. Also creates the issues/
    and subscribers/ folders.

    \b
    Example:
        newsletter init --sender-name "Research Digest" --sender-address news@example.org
    """
    from newsletter.config import config_file_path
    from newsletter.services.setup import init_project

    values = {
        "sender_name": sender_name,
        "sender_address": sender_address,
        "postal_address": postal_address,
    }
    if base_url:
        values["base_url"] = base_url
    if timezone:
        values["timezone"] = timezone
    path: Path = config_file_path(app.config)
    for line in init_project(path, values, force=force):
        click.echo(line)
