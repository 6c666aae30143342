"""The web side: preference centre, one-click unsubscribe, sign-up, public archive.

from newsletter.web import create_app, serve
serve(settings, host="127.0.0.1", port=8000)   # waitress, until interrupted
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

    from newsletter.config import Settings


def create_app(settings: Settings, store=None) -> Flask:
    """The Flask application (see :func:`newsletter.web.app.create_app`)."""
    from newsletter.web.app import create_app as _create

    return _create(settings, store)


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8000, threads: int = 8) -> None:
    """Serve the web pages with waitress until interrupted.

    Opens the store first, so a missing or unmigrated database is a clear error before
    anything listens.
    """
    import waitress

    app = create_app(settings)
    try:
        waitress.serve(app, host=host, port=port, threads=threads, ident="newsletter")
    finally:
        app.extensions["newsletter"].jobs.close()
        app.extensions["newsletter"].store.close()
