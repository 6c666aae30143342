"""The waitress server of ``newsletter serve``, with the app's limits and headers.

Two things waitress does on its own, before the app sees a request, are set here:

- the largest request body: waitress' default (1 GB) would accept and spool to disk a
  body the app then refuses; :data:`~newsletter.web.app.MAX_REQUEST_BYTES` applies
  already to the ``Content-Length`` (a larger one is answered 413 at once, its body never
  read);
- waitress answers malformed requests itself (400, 413, 431, ...), with a plain-text page
  the app never sees. Waitress has no setting or hook for those headers, but its channel
  class names the class of the task that writes such an answer (``error_task_class``):
  :class:`SecureErrorTask` adds the app's security headers there.
"""

from __future__ import annotations

from typing import Any

from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer, create_server
from waitress.task import ErrorTask

from newsletter.web.app import MAX_REQUEST_BYTES
from newsletter.web.security import SECURITY_HEADERS

#: waitress adjustments of ``newsletter serve`` (besides host, port and threads).
WAITRESS_OPTIONS: dict[str, Any] = {
    "ident": "newsletter",
    "max_request_body_size": MAX_REQUEST_BYTES,
}


class SecureErrorTask(ErrorTask):
    """waitress' own error answer, with the security headers of every page."""

    def execute(self) -> None:
        self.response_headers.extend(SECURITY_HEADERS.items())
        self.response_headers.append(("Cache-Control", "no-store"))
        super().execute()


class SecureChannel(HTTPChannel):
    """A waitress connection whose error answers carry the security headers."""

    error_task_class = SecureErrorTask


def make_server(wsgi_app: Any, host: str, port: int, threads: int) -> Any:
    """A waitress server for ``wsgi_app`` on ``host:port`` (call ``run()`` on it)."""
    sockets: dict[int, Any] = {}
    server = create_server(
        wsgi_app, map=sockets, host=host, port=port, threads=threads, **WAITRESS_OPTIONS
    )
    # One listening server per address ("localhost" may be two); each accepts into
    # channels of its channel_class.
    for listener in list(sockets.values()):
        if isinstance(listener, BaseWSGIServer):
            listener.channel_class = SecureChannel
    return server
