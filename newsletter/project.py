"""Setting up a project folder (``newsletter init``)."""

from __future__ import annotations

from pathlib import Path

from newsletter.config import write_config_file
from newsletter.errors import ConfigError


def init_project(config_path: Path, values: dict[str, str], force: bool = False) -> list[str]:
    """Write ``newsletter.toml`` and create the data folders; returns what was done."""
    tz = values.get("timezone")
    if tz:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(
                f"unknown time zone {tz!r}", hint="use an IANA name such as Europe/London"
            ) from None
    done = [f"wrote {write_config_file(config_path, values, force=force)}"]
    root = config_path.parent
    for folder in ("issues", "subscribers"):
        p = root / folder
        if not p.exists():
            p.mkdir(parents=True)
            done.append(f"created {p}/")
    done.append(_upgrade_store(config_path))
    return done


def _upgrade_store(config_path: Path) -> str:
    """Create or update the subscriber store's tables (``newsletter db upgrade``)."""
    from newsletter.config import load_settings
    from newsletter.errors import NewsletterError
    from newsletter.store import upgrade_database

    try:
        status = upgrade_database(load_settings(config_path).database_url)
    except NewsletterError as exc:
        raise NewsletterError(
            f"{config_path} was written, but the subscriber store was not set up: {exc.message}",
            hint=(exc.hint or "") + "; then run `newsletter db upgrade`",
        ) from None
    return f"subscriber store {status.url} at revision {status.current}"
