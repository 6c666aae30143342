"""The waitress server of ``newsletter serve``, with the app's limits and headers.

Two things waitress does on its own, before the app sees a request, are set here:

- the largest request body: waitress' default (1 GB) would accept and spool to disk a
  body the app then refuses; :data:`~newsletter.web.app.MAX_REQUEST_BYTES` applies
  already to the ``Content-Length`` (a larger one is answered 413 at once, its body never
  read);
- the webhooks under ``/hooks/`` take bodies up to
  :data:`~newsletter.web.hooks.MAX_HOOK_BYTES` (a SendGrid batch); :class:`LimitedParser`
  raises the limit for those paths only, once their request line is read, so every other
  page keeps the small one;
- waitress answers malformed requests itself (400, 413, 431, ...), with a plain-text page
  the app never sees. Waitress has no setting or hook for those headers, but its channel
  class names the class of the task that writes such an answer (``error_task_class``):
  :class:`SecureErrorTask` adds the app's security headers there.
"""

from __future__ import annotations

from typing import Any

from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import BaseWSGIServer, create_server
from waitress.task import ErrorTask

from newsletter.web.app import MAX_REQUEST_BYTES
from newsletter.web.hooks import HOOKS_PREFIX, MAX_HOOK_BYTES
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


class _HookLimits:
    """waitress' adjustments with the larger body limit of the webhooks."""

    max_request_body_size = MAX_HOOK_BYTES

    def __init__(self, adj: Any) -> None:
        self._adj = adj

    def __getattr__(self, name: str) -> Any:
        return getattr(self._adj, name)


class LimitedParser(HTTPRequestParser):
    """waitress' request parser, with the webhooks' body limit for ``/hooks/`` paths.

    waitress compares the Content-Length (and a chunked body as it arrives) with
    ``adj.max_request_body_size`` right after parsing the header, so the limit is chosen
    there, from the path, before any of the body is read.
    """

    def parse_header(self, header_plus: bytes) -> None:
        super().parse_header(header_plus)
        if self.path.startswith(HOOKS_PREFIX):
            self.adj = _HookLimits(self.adj)  # type: ignore[has-type]  # waitress is untyped


class SecureChannel(HTTPChannel):
    """A waitress connection whose error answers carry the security headers, and whose
    requests get the body limit of their path (:class:`LimitedParser`)."""

    error_task_class = SecureErrorTask
    parser_class = LimitedParser


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
