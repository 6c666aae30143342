"""Previews for the author: files, screenshots, variant listings and a local server."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from newsletter.errors import NewsletterError
from newsletter.render.build import HTML_SIZE_LIMIT, BuiltIssue, Variant, build_issue
from newsletter.render.errors import NoMatchingVariantError
from newsletter.render.personalise import PersonalMessage, RecipientFields, personalise

if TYPE_CHECKING:
    import http.server

    from newsletter.config import Settings

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT_WIDTHS = (375, 600)
PREVIEW_NAME = "Alex Example"
PREVIEW_EMAIL = "preview@example.org"


class BrowserUnavailableError(NewsletterError):
    """Headless Chromium (or Playwright) is not installed."""


@dataclass(frozen=True)
class PreviewFiles:
    """What ``write_preview`` wrote."""

    variant: Variant
    message: PersonalMessage
    html_path: Path
    text_path: Path
    screenshots: list[Path] = field(default_factory=list)


@dataclass(frozen=True)
class VariantInfo:
    """One line of ``issue variants``."""

    name: str
    keys: list[str]
    titles: list[str]
    subject: str
    html_bytes: int
    text_bytes: int
    subscribers: int | None = None  # who would get it now (None: no subscriber store)

    @property
    def html_kb(self) -> float:
        """HTML size in KB (1024 bytes)."""
        return self.html_bytes / 1024

    @property
    def too_big(self) -> bool:
        """True when Gmail would clip the message."""
        return self.html_bytes >= HTML_SIZE_LIMIT


def load_and_build(settings: Settings, month: str) -> BuiltIssue:
    """Read the issue file of ``month`` (YYYY-MM or a path) and build its variants."""
    from newsletter.content.files import get_issue

    return build_issue(get_issue(settings.issues_dir, month), settings)


def lookup_subscriber(settings: Settings, email: str) -> RecipientFields:
    """The subscriber ``email`` from the store, as the render stage needs them."""
    from newsletter.store import get_subscriber, open_store

    with open_store(settings) as store:
        view = get_subscriber(store, email)
    return RecipientFields(
        email=view.email,
        subscriber_id=view.id,
        name=view.name,
        topics=view.topics,
        all_topics=view.all_topics,
    )


def preview_recipient(
    settings: Settings, topics: str | None = None, subscriber: str | None = None
) -> RecipientFields:
    """The recipient to preview as: a subscriber from the store, or topics ("a; b", "all")."""
    if subscriber:
        return lookup_subscriber(settings, subscriber)
    if topics is None or topics.strip().lower() in ("", "all"):
        return RecipientFields(PREVIEW_EMAIL, name=PREVIEW_NAME, all_topics=True)
    from newsletter.content.taxonomy import load_taxonomy

    slugs = tuple(t.slug for t in load_taxonomy().resolve_list(topics))
    return RecipientFields(PREVIEW_EMAIL, name=PREVIEW_NAME, topics=slugs)


def variant_for(built: BuiltIssue, recipient: RecipientFields) -> Variant:
    """The variant ``recipient`` gets; a clear error when the policy sends them nothing."""
    variant = built.variant_for(recipient.topics, recipient.all_topics)
    if variant is None:
        raise NoMatchingVariantError(
            f"no summary of {built.issue.month} is on these topics; with no_match_policy = "
            f"{built.policy} such a subscriber gets no email",
            hint="preview another set of topics, or try --set no_match_policy=teaser",
        )
    return variant


def write_preview(
    settings: Settings,
    month: str,
    topics: str | None = None,
    subscriber: str | None = None,
    out_dir: Path = Path("preview"),
    png: bool = False,
) -> PreviewFiles:
    """Write the HTML and text one recipient would get to ``out_dir`` (and screenshots)."""
    built = load_and_build(settings, month)
    recipient = preview_recipient(settings, topics, subscriber)
    variant = variant_for(built, recipient)
    message = personalise(variant, recipient, settings)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{built.issue.month}-{variant.name}"
    html_path = out_dir / f"{stem}.html"
    text_path = out_dir / f"{stem}.txt"
    html_path.write_text(message.html, "utf-8")
    text_path.write_text(message.text, "utf-8")
    shots = screenshot(html_path, out_dir / stem) if png else []
    return PreviewFiles(variant, message, html_path, text_path, shots)


def screenshot(
    html_path: Path, prefix: Path, widths: tuple[int, ...] = SCREENSHOT_WIDTHS
) -> list[Path]:
    """Full-page PNGs of ``html_path`` at each width, via headless Chromium."""
    if not Path(CHROMIUM).exists():
        raise BrowserUnavailableError(
            f"headless Chromium is not installed ({CHROMIUM} is missing)",
            hint="install it with: apt-get install -y chromium",
        )
    try:
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
                page.screenshot(path=str(path), full_page=True)
                page.close()
                out.append(path)
        finally:
            browser.close()
    return out


def list_variants(settings: Settings, month: str) -> list[VariantInfo]:
    """Every variant of the issue of ``month`` with its summaries and sizes."""
    from newsletter.render.build import sample_values

    built = load_and_build(settings, month)
    counts = _subscriber_counts(settings, built)
    out = []
    for v in built.variants.values():
        values = sample_values(v, settings)
        out.append(
            VariantInfo(
                name=v.name,
                keys=[s.key for s in v.summaries],
                titles=[s.title for s in v.summaries],
                subject=v.subject,
                html_bytes=len(v.html.fill_bytes(values)),
                text_bytes=len(v.text.fill_bytes(values)),
                subscribers=None if counts is None else counts.get(v.name, 0),
            )
        )
    return out


def _subscriber_counts(settings: Settings, built: BuiltIssue) -> dict[str, int] | None:
    """Receiving subscribers per variant name, or None when there is no store yet."""
    from newsletter.delivery.service import variant_name
    from newsletter.store import StoreError, ledger, open_store

    try:
        store = open_store(settings)
    except StoreError:
        return None
    with store:
        by_mask, _ = ledger.preview_plan(store, built.issue, settings.no_match_policy)
    k = len(built.issue.summaries)
    return {variant_name(mask, k): n for mask, n in by_mask.items()}


def serve_preview(
    settings: Settings, month: str, host: str = "127.0.0.1", port: int = 8025
) -> None:
    """Serve previews of every variant on http://host:port/ until interrupted.

    The issue file and templates are read again on every request, so saving the file and
    reloading the page shows the change; an invalid file shows its problems instead.
    """
    server = preview_server(settings, month, host, port)
    try:
        server.serve_forever()
    finally:
        server.server_close()


def preview_server(
    settings: Settings, month: str, host: str = "127.0.0.1", port: int = 8025
) -> http.server.ThreadingHTTPServer:
    """The (not yet running) preview server of :func:`serve_preview`; port 0 picks one."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qs, urlparse

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlparse(self.path)
            query = parse_qs(url.query)
            name = query.get("variant", ["all"])[0]
            try:
                built = load_and_build(settings, month)
                recipient = preview_recipient(settings, None)
                variant = built.by_name(name)
                message = personalise(variant, recipient, settings)
            except NewsletterError as exc:
                self._send(200, "text/html", _error_page(exc))
                return
            if url.path == "/email.html":
                self._send(200, "text/html", message.html)
            elif url.path == "/email.txt":
                self._send(200, "text/plain", message.text)
            elif url.path == "/":
                self._send(200, "text/html", _switcher_page(built, variant))
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


def _switcher_page(built: BuiltIssue, current: Variant) -> str:
    from urllib.parse import quote

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
    lines = [p.format() for p in problems] if problems else [exc.message]
    items = "".join(f"<li><code>{html.escape(line)}</code></li>" for line in lines)
    hint = f"<p>{html.escape(exc.hint)}</p>" if exc.hint else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Preview error</title>'
        '</head><body style="font-family:system-ui,sans-serif;padding:20px">'
        f"<h1>Cannot render the preview</h1><ul>{items}</ul>{hint}"
        "<p>Fix the file and reload this page.</p></body></html>"
    )
