"""``newsletter db``: the subscriber store's tables, and whole-store backups and copies."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from newsletter.cli.base import AppContext, console, esc, print_json


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


def _counts_table(title: str, manifest: Any) -> Any:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column("Table")
    table.add_column("Rows", justify="right")
    for name, n in manifest.counts.items():
        table.add_row(name, str(n))
    table.add_row("[b]all[/b]", f"[b]{manifest.rows}[/b]")
    return table


@contextlib.contextmanager
def _bar() -> Iterator[Any]:
    """A rich progress bar on stderr; yields the callback the backup services take."""
    from rich.progress import Progress

    with Progress(console=console(stderr=True, soft_wrap=False), transient=True) as bar:
        tasks: dict[str, Any] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=max(total, 1))
            bar.update(tasks[stage], completed=done, total=max(total, 1))

        yield update


def _manifest_json(manifest: Any, **extra: Any) -> dict[str, Any]:
    return {**manifest.to_dict(), "rows": manifest.rows, **extra}


@db.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace FILE if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
@click.pass_obj
def dump(app: AppContext, file: Path, force: bool, as_json: bool) -> None:
    """Back up the whole store (every table, ids kept) to FILE.

    FILE is gzip'd JSON lines with a manifest (format version, store revision, rows per
    table, time). It is written whole or not at all, readable by its owner only. Restore
    it with `newsletter db restore`.

    \b
    Example:
        newsletter db dump subscribers/backup-2026-12.jsonl.gz
    """
    from newsletter.services import backups

    with _bar() as progress:
        manifest = backups.dump_store(app.app(), file, force=force, progress=progress)
    if as_json:
        print_json(_manifest_json(manifest, file=str(file)))
        return
    console().print(_counts_table(f"Dumped to {esc(file)}", manifest))


@db.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
@click.pass_obj
def restore(app: AppContext, file: Path, as_json: bool) -> None:
    """Restore a `newsletter db dump` FILE into the configured store, which must be empty.

    The store is created or migrated first. The dump must be of the same store revision
    as this program's. All in one transaction: a damaged file, or a store that holds
    data, changes nothing.

    \b
    Example:
        NEWSLETTER_DATABASE_URL=sqlite:///subscribers/new.db newsletter db restore backup.jsonl.gz
    """
    from newsletter.services import backups

    with _bar() as progress:
        manifest = backups.restore_store(app.app(), file, progress=progress)
    if as_json:
        print_json(_manifest_json(manifest, file=str(file)))
        return
    console().print(_counts_table(f"Restored from {esc(file)}", manifest))


@db.command()
@click.option("--to", "to_url", required=True, help="SQLAlchemy URL of the empty target.")
@click.option("--json", "as_json", is_flag=True, help="Print what was copied as JSON.")
@click.pass_obj
def copy(app: AppContext, to_url: str, as_json: bool) -> None:
    """Copy the whole store into another, empty database (e.g. SQLite to PostgreSQL).

    The target is migrated first; the copy is one transaction there, so a failure leaves
    it empty. The configured store is only read. Then point database_url at the target.

    \b
    Example:
        newsletter db copy --to postgresql://news@db.example.org/news
    """
    from newsletter.services import backups

    with _bar() as progress:
        result = backups.copy_store(app.app(), to_url, progress=progress)
    if as_json:
        print_json(_manifest_json(result.manifest, target=result.target))
        return
    console().print(_counts_table(f"Copied to {esc(result.target)}", result.manifest))
    with_password = " (with its password)" if "***" in result.target else ""
    console().print(f"now set database_url to {esc(result.target)}{with_password}")
