"""The author's live preview server (``newsletter issue preview --serve``).

Every variant of an issue at 600 px, 375 px and as text, side by side. The issue file and
the templates are read again on every request (through
:func:`newsletter.services.issues.live_preview`), so saving the file and reloading the page
shows the change; an invalid file shows its problems instead.
"""

from __future__ import annotations

import html
import http.server
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, urlparse

from newsletter.content.files import format_problem
from newsletter.errors import NewsletterError
from newsletter.services import issues
from newsletter.services.app import App
from newsletter.services.issues import LivePreview


def serve_preview(app: App, month: str, host: str = "127.0.0.1", port: int = 8025) -> None:
    """Serve previews of every variant on http://host:port/ until interrupted.

    The issue file and templates are read again on every request, so saving the file and
    reloading the page shows the change; an invalid file shows its problems instead.
    """
    server = preview_server(app, month, host, port)
    try:
        server.serve_forever()
    finally:
        server.server_close()


def preview_server(
    app: App, month: str, host: str = "127.0.0.1", port: int = 8025
) -> http.server.ThreadingHTTPServer:
    """The (not yet running) preview server of :func:`serve_preview`; port 0 picks one."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlparse(self.path)
            query = parse_qs(url.query)
            name = query.get("variant", ["all"])[0]
            try:
                shown = issues.live_preview(app, month, name)
            except NewsletterError as exc:
                self._send(200, "text/html", _error_page(exc))
                return
            if url.path == "/email.html":
                self._send(200, "text/html", shown.message.html)
            elif url.path == "/email.txt":
                self._send(200, "text/plain", shown.message.text)
            elif url.path == "/":
                self._send(200, "text/html", _switcher_page(shown))
            else:
                self._send(404, "text/plain", "not found")

        def _send(self, status: int, kind: str, body: str) -> None:
            data = body.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", f"{kind}; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

    return ThreadingHTTPServer((host, port), Handler)


def _switcher_page(shown: LivePreview) -> str:
    built, current = shown.built, shown.variant
    links = " ".join(
        f'<a href="/?variant={quote(v.name)}"'
        + (' class="on"' if v.name == current.name else "")
        + f' title="{html.escape("; ".join(s.title for s in v.summaries) or "teaser")}">'
        + f"{html.escape(v.name)}</a>"
        for v in built.variants.values()
    )
    q = f"variant={quote(current.name)}"
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Preview {html.escape(built.issue.month)} - {html.escape(current.name)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 0; background: #f3f4f6; color: #111; }}
nav {{ padding: 10px 16px; background: #fff; border-bottom: 1px solid #ddd; }}
nav a {{ margin-right: 8px; padding: 3px 9px; border-radius: 6px; text-decoration: none;
        color: #134a63; border: 1px solid #cbd5e1; }}
nav a.on {{ background: #134a63; color: #fff; }}
main {{ display: flex; gap: 20px; padding: 16px; align-items: flex-start; flex-wrap: wrap; }}
iframe {{ border: 1px solid #ccc; background: #fff; height: 85vh; }}
h2 {{ font-size: 13px; margin: 0 0 6px; color: #555; }}
</style></head><body>
<nav><strong>{html.escape(built.issue.month)}</strong> &nbsp; {links}
&nbsp; <span style="color:#555">Subject: {html.escape(current.subject)}</span></nav>
<main>
<div><h2>600 px</h2><iframe src="/email.html?{q}" width="600"></iframe></div>
<div><h2>375 px</h2><iframe src="/email.html?{q}" width="375"></iframe></div>
<div><h2>Plain text</h2><iframe src="/email.txt?{q}" width="600"></iframe></div>
</main></body></html>"""


def _error_page(exc: NewsletterError) -> str:
    problems = getattr(exc, "problems", None)
    lines = [format_problem(p) for p in problems] if problems else [exc.message]
    items = "".join(f"<li><code>{html.escape(line)}</code></li>" for line in lines)
    hint = f"<p>{html.escape(exc.hint)}</p>" if exc.hint else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Preview error</title>'
        '</head><body style="font-family:system-ui,sans-serif;padding:20px">'
        f"<h1>Cannot render the preview</h1><ul>{items}</ul>{hint}"
        "<p>Fix the file and reload this page.</p></body></html>"
    )
