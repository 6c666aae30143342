"""The web side: preference centre, one-click unsubscribe, sign-up, public archive.

    from newsletter.web import create_app, serve
    serve(settings, host="127.0.0.1", port=8000)   # waitress, until interrupted

Views parse the request, call one service (:mod:`newsletter.services`) and render a page.
"""

from __future__ import annotations

import waitress

from newsletter.config import Settings
from newsletter.services import App
from newsletter.web.app import create_app

__all__ = ["create_app", "serve"]


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8000, threads: int = 8) -> None:
    """Serve the web pages with waitress until interrupted.

    Opens the store first, so a missing or unmigrated database is a clear error before
    anything listens.
    """
    app = create_app(App(settings))
    try:
        waitress.serve(app, host=host, port=port, threads=threads, ident="newsletter")
    finally:
        app.extensions["newsletter"].close()
