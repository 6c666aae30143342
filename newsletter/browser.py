"""Headless Chromium (Debian's ``chromium``, driven by Playwright): screenshots of pages.

Used for ``issue preview --png``; the tests drive the same browser with the same
arguments. Playwright never downloads a browser here: it launches ``/usr/bin/chromium``.
"""

from __future__ import annotations

import os
from pathlib import Path

from newsletter.errors import NewsletterError

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags, Chromium's connections are refused by a
# closed network, many at a time.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT_WIDTHS = (375, 600)


class BrowserUnavailableError(NewsletterError):
    """Headless Chromium (or Playwright) is not installed."""


def screenshot(
    html_path: Path, prefix: Path, widths: tuple[int, ...] = SCREENSHOT_WIDTHS
) -> list[Path]:
    """Full-page PNGs of ``html_path`` at each width: ``<prefix>-<width>px.png``."""
    if not Path(CHROMIUM).exists():
        raise BrowserUnavailableError(
            f"headless Chromium is not installed ({CHROMIUM} is missing)",
            hint="install it with: apt-get install -y chromium",
        )
    try:
        # Optional (the dev extra): imported only when a screenshot is asked for.
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise BrowserUnavailableError(
            "Playwright for Python is not installed",
            hint="install the dev extra: pip install -e '.[dev]'",
        ) from None
    out: list[Path] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for width in widths:
                page = browser.new_page(viewport={"width": width, "height": 800})
                page.goto(html_path.resolve().as_uri())
                path = prefix.with_name(f"{prefix.name}-{width}px.png")
                png = page.screenshot(full_page=True)
                # Owner only (0600): the page may show a subscriber's name.
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                os.fchmod(fd, 0o600)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(png)
                page.close()
                out.append(path)
        finally:
            browser.close()
    return out
