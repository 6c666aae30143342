"""What the pages share: the app of the request, its client, CSRF tokens, rendering.

Kept apart from :mod:`newsletter.web.app` (which builds the Flask app and registers the
pages) so that the pages can import it without an import loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import current_app, g, has_request_context, render_template, request

from newsletter.config import Settings
from newsletter.services import App
from newsletter.web.jobs import BackgroundJobs
from newsletter.web.page_cache import PageCache
from newsletter.web.security import (
    CSRF_COOKIE,
    CSRF_FIELD,
    RateLimiter,
    check_csrf,
    make_csrf,
    new_nonce,
)


@dataclass
class WebContext:
    """What every request needs: the app (settings, store, issues), limits, background jobs."""

    app: App
    limiter: RateLimiter = field(default_factory=RateLimiter)
    # The JSON API's requests per token, per minute (settings.api_rate_limit).
    api_limiter: RateLimiter = field(default_factory=lambda: RateLimiter(window=60.0))
    jobs: BackgroundJobs = field(default_factory=BackgroundJobs)
    archive_cache: PageCache = field(default_factory=PageCache)

    @property
    def settings(self) -> Settings:
        """The app's settings."""
        return self.app.settings

    @property
    def keys(self) -> list[str]:
        """The signing keys, newest first."""
        return self.settings.secret_keys

    def submit(self, job: Callable[[], None]) -> None:
        """Run ``job`` after the response, on the background thread.

        During a request the job is only queued once the response is complete (see
        :func:`submit_deferred`), so none of its work (lookup, rendering, SMTP) runs
        beside the request that asked for it: the answer takes the same time whatever the
        job has to do.
        """
        if has_request_context():
            g.setdefault("deferred_jobs", []).append(job)
        else:
            self.jobs.submit(job)

    def submit_deferred(self) -> None:
        """Queue the jobs the current request deferred (called with its finished response)."""
        for job in g.pop("deferred_jobs", []):
            self.jobs.submit(job)

    def close(self) -> None:
        """Finish the background jobs, then close the app (store, transport)."""
        self.jobs.close()
        self.app.close()


def web() -> WebContext:
    """The :class:`WebContext` of the current app."""
    ctx: WebContext = current_app.extensions["newsletter"]
    return ctx


def client_ip() -> str | None:
    """The client's address (behind ``trusted_proxies`` proxies, from X-Forwarded-For)."""
    return request.remote_addr


# --- CSRF --------------------------------------------------------------------------------


def _cookie_nonce() -> str:
    if "csrf_nonce" not in g:
        nonce = request.cookies.get(CSRF_COOKIE, "")
        if not (16 <= len(nonce) <= 64 and nonce.replace("-", "").replace("_", "").isalnum()):
            nonce = new_nonce()
            g.set_csrf_cookie = True
        g.csrf_nonce = nonce
    return g.csrf_nonce


def csrf_token(scope: str = "") -> str:
    """The CSRF token for a form: bound to the page's link token, or to the cookie."""
    if scope:
        return make_csrf(web().keys, scope)
    return make_csrf(web().keys, "", _cookie_nonce())


def csrf_ok(scope: str = "") -> bool:
    """True if the submitted form carries the right CSRF token."""
    given = request.form.get(CSRF_FIELD)
    if scope:
        return check_csrf(web().keys, scope, "", given)
    return check_csrf(web().keys, "", request.cookies.get(CSRF_COOKIE, ""), given)


def page(template: str, status: int = 200, **context: Any) -> tuple[str, int]:
    """Render a page template with ``context``."""
    return render_template(template, **context), status
