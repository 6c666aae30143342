"""Setting up: a new project folder (``newsletter init``) and the store's tables."""

from __future__ import annotations

from pathlib import Path

from newsletter.config import check_new_config, load_settings, write_config_file
from newsletter.errors import NewsletterError
from newsletter.store.db import MigrationStatus, database_status, upgrade_database


def init_project(config_path: Path, values: dict[str, str], force: bool = False) -> list[str]:
    """Write ``newsletter.toml``, create the data folders and the store; what was done.

    Every value is checked first (:func:`~newsletter.config.check_new_config`): a bad one
    is a :class:`ConfigError` naming the setting, and nothing is written.
    """
    check_new_config(config_path, values)
    done = [f"wrote {write_config_file(config_path, values, force=force)}"]
    root = config_path.parent
    # The issues are public; the subscribers folder (the store, exports) is private.
    for folder, mode in (("issues", 0o777), ("subscribers", 0o700)):
        p = root / folder
        if not p.exists():
            p.mkdir(parents=True, mode=mode)
            done.append(f"created {p}/")
    done.append(_upgrade_store(config_path))
    return done


def _upgrade_store(config_path: Path) -> str:
    """Create or update the subscriber store's tables (``newsletter db upgrade``)."""
    try:
        status = upgrade_database(load_settings(config_path).database_url)
    except NewsletterError as exc:
        raise NewsletterError(
            f"{config_path} was written, but the subscriber store was not set up: {exc.message}",
            hint=(exc.hint or "") + "; then run `newsletter db upgrade`",
        ) from None
    return f"subscriber store {status.url} at revision {status.current}"


def upgrade_store(database_url: str) -> MigrationStatus:
    """Bring the store's tables to the newest revision (creates a SQLite file if needed)."""
    return upgrade_database(database_url)


def store_status(database_url: str) -> MigrationStatus:
    """The store's revision, changing nothing."""
    return database_status(database_url)
