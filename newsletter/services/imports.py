"""Moving data in and out: subscribers from and to CSV, the blog archive into issue files."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TextIO

from newsletter.importers import archive, subscribers_csv
from newsletter.importers.archive import report_to_dict as archive_report_to_dict
from newsletter.importers.subscribers_csv import ImportOptions, ImportReport, ProgressFn
from newsletter.services.app import App
from newsletter.store.errors import StoreError

__all__ = [
    "ImportOptions",
    "ImportReport",
    "archive_report_to_dict",
    "export_subscribers",
    "import_archive",
    "import_subscribers",
]


def import_subscribers(
    app: App,
    path: Path,
    options: ImportOptions | None = None,
    progress: ProgressFn | None = None,
) -> ImportReport:
    """Import subscribers from a CSV file (see :mod:`newsletter.importers.subscribers_csv`).

    Without ``options``, the defaults of :class:`ImportOptions` (people already in the
    store are left alone, the good rows are imported even when others are bad).
    """
    return subscribers_csv.import_csv(app.store, path, options or ImportOptions(), progress)


def export_subscribers(app: App, target: Path | None = None, out: TextIO | None = None) -> int:
    """Write every subscriber as CSV to ``target`` (atomically), or to ``out`` (stdout).

    A file is written beside the target and renamed, so a failure never leaves half of
    it; it is readable by its owner only (mode 0600), as it holds personal data. Returns
    how many subscribers were written.
    """
    if target is None:
        return subscribers_csv.export_csv(app.store, out or sys.stdout)
    tmp = target.with_name(target.name + ".part")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # a .part left over from an older version may be 0644
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            n = subscribers_csv.export_csv(app.store, fh)
        tmp.replace(target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"cannot write {target}: {exc.strerror}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return n


def import_archive(
    app: App,
    pages: list[tuple[Path, str | None]],
    into: Path | None = None,
    *,
    dry_run: bool = False,
    force: bool = False,
) -> archive.ImportReport:
    """Turn plain-text copies of the blog's archive pages into issue files (default: the
    issues folder); see :mod:`newsletter.importers.archive`."""
    target = into if into is not None else app.settings.issues_dir
    return archive.import_archive(pages, target, dry_run=dry_run, force=force)
