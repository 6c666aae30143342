"""Whole-store backups: dump to a file, restore from one, copy to another database.

Everything the store holds goes (every table of the models, see
:mod:`newsletter.store.backup`): subscribers and their topics, the consent history, the
suppression list and its salt, bounces, sends with their snapshots and deliveries,
schedules and their runs, sign-up requests. Ids are kept, so history stays linked and
signed links keep working.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from newsletter.services.app import App
from newsletter.store import backup
from newsletter.store.backup import BackupError, DumpManifest, ProgressFn
from newsletter.store.db import normalise_url, open_store, shown_url, upgrade_database

__all__ = ["BackupError", "CopyResult", "DumpManifest", "copy_store", "dump_store", "restore_store"]


@dataclass(frozen=True)
class CopyResult:
    """What :func:`copy_store` did: the target (password hidden) and what was copied."""

    target: str
    manifest: DumpManifest


def dump_store(
    app: App, target: Path, *, force: bool = False, progress: ProgressFn | None = None
) -> DumpManifest:
    """Write every table of the store to the dump file ``target`` (gzip'd JSON lines).

    Written beside the target and renamed, so a failure never leaves half a file; mode
    0600, as it holds personal data. An existing ``target`` is refused unless ``force``.
    """
    if target.exists() and not force:
        raise BackupError(
            f"{target} already exists", hint="choose another name, or pass --force to replace it"
        )
    if target.is_dir():
        raise BackupError(f"{target} is a folder", hint="give the name of the file to write")
    tmp = target.with_name(target.name + ".part")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as fh:
            manifest = backup.write_dump(backup.read_store(app.store, app.now()), fh, progress)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise BackupError(
            f"cannot write {target}: {exc.strerror}", hint="check the folder and free space"
        ) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return manifest


def restore_store(app: App, source: Path, *, progress: ProgressFn | None = None) -> DumpManifest:
    """Restore the dump file ``source`` into the configured store, which must be empty.

    The dump's manifest is checked first (format version; it must be of this program's
    store revision). The store is created or migrated if needed, then filled in one
    transaction: a damaged file, or a store that already holds data, leaves it unchanged.
    """
    manifest = backup.read_manifest(source)
    backup.check_manifest(manifest, source.name)
    upgrade_database(app.settings.database_url)
    with backup.read_dump(source) as items:
        return backup.load_store(app.store, items, source.name, progress)


def copy_store(app: App, to_url: str, *, progress: ProgressFn | None = None) -> CopyResult:
    """Copy every table of the configured store into the empty database at ``to_url``.

    The target is migrated to the newest revision first (a SQLite file is created). The
    copy is one transaction on the target: if anything fails it is left empty.
    """
    url = normalise_url(to_url)
    shown = shown_url(url)
    if url == app.store.url:
        raise BackupError(
            f"{shown} is the configured store itself", hint="give --to a different, empty database"
        )
    upgrade_database(to_url)
    with open_store(to_url) as target:
        manifest = backup.load_store(
            target, backup.read_store(app.store, app.now()), shown, progress
        )
    return CopyResult(shown, manifest)
