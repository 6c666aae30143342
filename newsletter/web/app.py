"""The Flask application: factory, shared helpers, security headers and error pages.

Pages live in two blueprints: :mod:`newsletter.web.subscriber_pages` (preferences,
unsubscribe, topics, sign-up, confirmation) and :mod:`newsletter.web.archive_pages`.
Templates come from ``templates_dir/web`` first, then the defaults shipped with the
program, like the email templates.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from newsletter.web.archive import IssueLibrary
from newsletter.web.jobs import BackgroundJobs
from newsletter.web.security import (
    CSRF_COOKIE,
    CSRF_FIELD,
    SECURITY_HEADERS,
    RateLimiter,
    check_csrf,
    make_csrf,
    new_nonce,
)

if TYPE_CHECKING:
    from flask import Flask, Response

    from newsletter.config import Settings
    from newsletter.store.db import Store

log = logging.getLogger("newsletter.web")

MAX_REQUEST_BYTES = 64 * 1024  # the largest form (sign-up with 36 topics) is ~3 KB
CONFIRM_MAX_AGE = 7 * 24 * 3600  # a sign-up confirmation link is valid for 7 days


@dataclass
class WebContext:
    """What every request needs: settings, the store, issues, limits, background jobs."""

    settings: Settings
    store: Store
    library: IssueLibrary
    limiter: RateLimiter = field(default_factory=RateLimiter)
    jobs: BackgroundJobs = field(default_factory=BackgroundJobs)

    @property
    def keys(self) -> list[str]:
        """The signing keys, newest first."""
        return self.settings.secret_keys


def web_templates_dirs(settings: Settings) -> list[Path]:
    """Where page templates are looked up: the project's folder, then the defaults."""
    from newsletter.render.templates import default_templates_dir

    folders = [settings.templates_dir / "web", default_templates_dir() / "web"]
    return [f for f in dict.fromkeys(folders) if f.is_dir()]


def create_app(settings: Settings, store: Store | None = None) -> Flask:
    """The web application for ``settings`` (opens the store unless one is given)."""
    import jinja2
    from flask import Flask

    settings.require("secret_key", "to sign and check the links in emails")
    if store is None:
        from newsletter.store import open_store

        store = open_store(settings)
    app = Flask("newsletter.web", static_folder=None, template_folder=None)
    app.config.update(
        MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES,
        MAX_FORM_MEMORY_SIZE=MAX_REQUEST_BYTES,
        MAX_FORM_PARTS=200,
        TRAP_BAD_REQUEST_ERRORS=False,
        TEMPLATES_AUTO_RELOAD=True,
    )
    app.jinja_loader = jinja2.FileSystemLoader([str(p) for p in web_templates_dirs(settings)])
    ctx = WebContext(settings, store, IssueLibrary(settings.issues_dir))
    app.extensions["newsletter"] = ctx
    if settings.trusted_proxies:
        from werkzeug.middleware.proxy_fix import ProxyFix

        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]

    from newsletter.web.archive_pages import archive_pages
    from newsletter.web.subscriber_pages import subscriber_pages

    app.register_blueprint(subscriber_pages)
    app.register_blueprint(archive_pages)
    app.add_url_rule("/static/<path:name>", "static_file", _static_file)
    app.add_url_rule("/healthz", "healthz", lambda: ("ok\n", 200, {"Content-Type": "text/plain"}))
    app.jinja_env.globals.update(_template_globals(settings))
    app.before_request(_check_origin)
    app.after_request(_finish_response)
    _register_errors(app)
    return app


def web() -> WebContext:
    """The :class:`WebContext` of the current app."""
    from flask import current_app

    return current_app.extensions["newsletter"]


def client_ip() -> str | None:
    """The client's address (behind ``trusted_proxies`` proxies, from X-Forwarded-For)."""
    from flask import request

    return request.remote_addr


# --- CSRF --------------------------------------------------------------------------------


def _cookie_nonce() -> str:
    from flask import g, request

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
    from flask import request

    given = request.form.get(CSRF_FIELD)
    if scope:
        return check_csrf(web().keys, scope, "", given)
    return check_csrf(web().keys, "", request.cookies.get(CSRF_COOKIE, ""), given)


def _check_origin() -> Any:
    """Refuse cross-site form posts outright (defence in depth on top of CSRF tokens)."""
    from flask import abort, request

    if request.method != "POST" or request.path.startswith("/unsubscribe/"):
        return None  # one-click unsubscribe comes from mail providers' servers
    origin = request.headers.get("Origin")
    # "null" is what privacy settings send (e.g. a no-referrer policy); the CSRF token
    # still has to match, so only a named foreign origin is refused here.
    if origin not in (None, "null") and origin.rstrip("/") != request.host_url.rstrip("/"):
        abort(400, "this form was sent from another site")
    return None


# --- responses ---------------------------------------------------------------------------


def _template_globals(settings: Settings) -> dict[str, Any]:
    from newsletter.tokens import make_token

    return {
        "newsletter_name": settings.newsletter_name,
        "postal_address": settings.postal_address,
        "csrf_token": csrf_token,
        "csrf_field_name": CSRF_FIELD,
        "preferences_token_for": lambda sub: make_token(settings, "preferences", sub.id),
        "unsubscribe_token_for": lambda sub: make_token(settings, "unsubscribe", sub.id),
    }


def _finish_response(response: Response) -> Response:
    from flask import g, request

    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.endpoint in ("static_file",) or (request.endpoint or "").startswith(
        "archive_pages."
    ):
        response.headers.setdefault("Cache-Control", "public, max-age=300")
    else:
        # Personal pages (they carry tokens and addresses) are never cached.
        response.headers["Cache-Control"] = "no-store"
    if g.get("set_csrf_cookie"):
        response.set_cookie(
            CSRF_COOKIE,
            g.csrf_nonce,
            httponly=True,
            samesite="Lax",
            secure=request.is_secure or web().settings.base_url.startswith("https://"),
            path="/",
        )
    return response


def _static_file(name: str) -> Response:
    from flask import abort, send_from_directory

    for folder in web_templates_dirs(web().settings):
        static = folder / "static"
        if (static / name).is_file():
            return send_from_directory(static, name, max_age=300)
    abort(404)


def page(template: str, status: int = 200, **context: Any) -> tuple[str, int]:
    """Render a page template with ``context``."""
    from flask import render_template

    return render_template(template, **context), status


def _register_errors(app: Flask) -> None:
    from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

    titles = {
        400: "That request could not be understood",
        404: "Page not found",
        405: "That is not possible here",
        429: "Too many requests",
    }

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_exc: Exception):
        return page(
            "error.html",
            400,
            title="That request was too large",
            message="Please go back and try again with less text.",
        )

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        code = exc.code or 500
        if code >= 500:
            code = 500
        description = exc.description if code == 400 and exc.description else None
        return page(
            "error.html",
            code,
            title=titles.get(code, "Something went wrong"),
            message=description
            if description and not description.startswith("The browser")
            else None,
        )

    @app.errorhandler(Exception)
    def server_error(exc: Exception):
        from newsletter.errors import NewsletterError

        # Logged for the administrator (without secrets); the visitor sees a plain page.
        if isinstance(exc, NewsletterError):
            log.error("web request failed: %s", exc)
        else:
            log.exception("web request failed")
        return page(
            "error.html",
            500,
            title="Something went wrong on our side",
            message="Please try again in a few minutes.",
        )
