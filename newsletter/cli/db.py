"""``newsletter db``: create and update the subscriber store's tables."""

from __future__ import annotations

import click

from newsletter.cli.base import AppContext


@click.group()
def db() -> None:
    """Create and update the subscriber store's tables (Alembic migrations).

    \b
    Example:
        newsletter db upgrade
        newsletter db current
    """


@db.command()
@click.pass_obj
def upgrade(app: AppContext) -> None:
    """Bring the database to the newest revision; safe to run again.

    Creates the SQLite file (default subscribers/newsletter.db) if it does not exist.
    `newsletter init` runs this for you.

    \b
    Example:
        newsletter db upgrade
        NEWSLETTER_DATABASE_URL=postgresql://news@db/news newsletter db upgrade
    """
    from newsletter.services.setup import upgrade_store

    status = upgrade_store(app.settings().database_url)
    click.echo(f"{status.url}: at revision {status.current} (newest)")


@db.command()
@click.pass_obj
def current(app: AppContext) -> None:
    """Show the database's revision and whether it is up to date.

    Exits 1 if the database needs `newsletter db upgrade`.

    \b
    Example:
        newsletter db current
    """
    from newsletter.services.setup import store_status

    status = store_status(app.settings().database_url)
    if status.up_to_date:
        click.echo(f"{status.url}: at revision {status.current} (newest)")
        return
    where = f"at revision {status.current}" if status.current else "not created yet"
    raise click.ClickException(
        f"{status.url}: {where}; the newest is {status.head}\n  hint: run `newsletter db upgrade`"
    )
