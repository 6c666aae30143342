"""The web side: preference centre, one-click unsubscribe, sign-up, public archive.

    from newsletter.web import create_app, serve
    serve(settings, host="127.0.0.1", port=8000)   # waitress, until interrupted

Views parse the request, call one service (:mod:`newsletter.services`) and render a page.
"""

from __future__ import annotations

import logging

from newsletter.config import Settings
from newsletter.services import App
from newsletter.web.app import create_app
from newsletter.web.serving import make_server

__all__ = ["create_app", "serve"]


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8000, threads: int = 8) -> None:
    """Serve the web pages with waitress until interrupted.

    Opens the store first, so a missing or unmigrated database is a clear error before
    anything listens. Request bodies over the app's limit are refused by waitress from
    their ``Content-Length``, never read (see :mod:`newsletter.web.serving`).
    """
    app = create_app(App(settings))
    logging.basicConfig()  # waitress reports its own errors through logging
    if settings.api_enabled:
        # Every write through the API is logged with the name of its token.
        logging.getLogger("newsletter.web.api").setLevel(logging.INFO)
    try:
        make_server(app, host=host, port=port, threads=threads).run()
    finally:
        app.extensions["newsletter"].close()
