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
    return done
