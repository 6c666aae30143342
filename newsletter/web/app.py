"""The Flask application: factory, shared helpers, security headers and error pages.

Pages live in two blueprints: :mod:`newsletter.web.subscriber_pages` (preferences,
unsubscribe, topics, sign-up, confirmation) and :mod:`newsletter.web.archive_pages`.
Templates come from ``templates_dir/web`` first, then the defaults shipped with the
program, like the email templates.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
from flask import (
    Flask,
    Response,
    abort,
    g,
    request,
    send_from_directory,
)
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.middleware.proxy_fix import ProxyFix

from newsletter.config import Settings, template_dirs
from newsletter.errors import NewsletterError
from newsletter.rules.links import is_secure
from newsletter.services import App, signup
from newsletter.web.api import API_PREFIX, api, from_http
from newsletter.web.archive_pages import archive_pages
from newsletter.web.context import WebContext, csrf_token, page, web
from newsletter.web.hooks import HOOKS_PREFIX, hooks
from newsletter.web.security import CSRF_COOKIE, CSRF_FIELD, SECURITY_HEADERS
from newsletter.web.subscriber_pages import subscriber_pages

log = logging.getLogger("newsletter.web")

MAX_REQUEST_BYTES = 64 * 1024  # the largest form (sign-up with 36 topics) is ~3 KB


def web_templates_dirs(settings: Settings) -> list[Path]:
    """Where page templates are looked up: the project's folder, then the defaults."""
    return template_dirs(settings, "web")


def create_app(app: App | Settings) -> Flask:
    """The web application of ``app`` (or of a new App for these settings).

    Opens the store at once, so a missing or unmigrated database is a clear error here.
    """
    if isinstance(app, Settings):
        app = App(app)
    settings = app.settings
    settings.require("secret_key", "to sign and check the links in emails")
    app.store  # noqa: B018 - open it now: fail before anything listens
    flask_app = Flask("newsletter.web", static_folder=None, template_folder=None)
    flask_app.config.update(
        MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES,
        MAX_FORM_MEMORY_SIZE=MAX_REQUEST_BYTES,
        MAX_FORM_PARTS=200,
        TRAP_BAD_REQUEST_ERRORS=False,
        TEMPLATES_AUTO_RELOAD=True,
    )
    flask_app.jinja_loader = jinja2.FileSystemLoader([str(p) for p in web_templates_dirs(settings)])
    ctx = WebContext(app)
    flask_app.extensions["newsletter"] = ctx
    if settings.trusted_proxies:
        n = settings.trusted_proxies
        flask_app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            flask_app.wsgi_app, x_for=n, x_proto=n, x_host=n
        )

    flask_app.register_blueprint(subscriber_pages)
    flask_app.register_blueprint(archive_pages)
    flask_app.register_blueprint(hooks)
    if settings.api_enabled:
        flask_app.register_blueprint(api)
    flask_app.add_url_rule("/static/<path:name>", "static_file", _static_file)
    flask_app.add_url_rule(
        "/healthz", "healthz", lambda: ("ok\n", 200, {"Content-Type": "text/plain"})
    )
    flask_app.jinja_env.globals.update(_template_globals(app))
    flask_app.before_request(_check_query)
    flask_app.before_request(_check_origin)
    flask_app.after_request(_finish_response)
    _register_errors(flask_app)
    return flask_app


def _check_query() -> Any:
    """A query string that is not UTF-8 (raw bytes from the client) is a bad request: the
    pages would otherwise fail reading their arguments."""
    try:
        request.query_string.decode("utf-8")
    except UnicodeDecodeError:
        abort(400, "The address of this page could not be read.")
    return None


def _check_origin() -> Any:
    """Refuse cross-site form posts outright (defence in depth on top of CSRF tokens)."""
    if request.method != "POST" or request.path.startswith(("/unsubscribe/", HOOKS_PREFIX)):
        return None  # one-click unsubscribe and webhooks come from mail providers' servers
    if _is_api_request():
        return None  # the API takes no cookies, only bearer tokens: nothing to forge
    origin = request.headers.get("Origin")
    # "null" is what privacy settings send (e.g. a no-referrer policy); the CSRF token
    # still has to match, so only a named foreign origin is refused here.
    if origin not in (None, "null") and origin.rstrip("/") != request.host_url.rstrip("/"):
        abort(400, "this form was sent from another site")
    return None


def _is_api_request() -> bool:
    """True for a request to the JSON API while it is on (its errors are JSON)."""
    return web().settings.api_enabled and (
        request.path == API_PREFIX or request.path.startswith(API_PREFIX + "/")
    )


# --- responses ---------------------------------------------------------------------------


def _template_globals(app: App) -> dict[str, Any]:
    settings = app.settings
    return {
        "newsletter_name": settings.newsletter_name,
        "postal_address": settings.postal_address,
        "csrf_token": csrf_token,
        "csrf_field_name": CSRF_FIELD,
        "preferences_token_for": lambda sub: signup.link_token(app, "preferences", sub),
        "unsubscribe_token_for": lambda sub: signup.link_token(app, "unsubscribe", sub),
    }


# The security headers by lower-case name, to add those a response does not set itself.
_SECURITY_HEADERS = tuple((name.lower(), name, value) for name, value in SECURITY_HEADERS.items())


def _finish_response(response: Response) -> Response:
    # One pass over the response's headers, not one per security header (setdefault).
    present = {name.lower() for name, _value in response.headers}
    response.headers.extend(
        [(name, value) for key, name, value in _SECURITY_HEADERS if key not in present]
    )
    if "Location" in response.headers:
        response.headers["Location"] = local_location(response.headers["Location"])
    if request.endpoint in ("static_file",) or (request.endpoint or "").startswith(
        "archive_pages."
    ):
        response.headers.setdefault("Cache-Control", "public, max-age=300")
    else:
        # Personal pages (they carry tokens and addresses) are never cached.
        response.headers["Cache-Control"] = "no-store"
    web().submit_deferred()  # the answer is complete: its background work may start
    if g.get("set_csrf_cookie"):
        response.set_cookie(
            CSRF_COOKIE,
            g.csrf_nonce,
            httponly=True,
            samesite="Lax",
            secure=request.is_secure or is_secure(web().settings.base_url),
            path="/",
        )
    return response


def local_location(location: str) -> str:
    """A redirect target reduced to a path on this site: never another host.

    Werkzeug builds the targets of its own redirects (a missing trailing slash, doubled
    slashes) from the request's Host header, which the visitor controls; the browser
    resolves a relative target against the address it asked for instead.
    """
    parts = urlsplit(location)
    path = "/" + parts.path.lstrip("/\\")
    return path + (f"?{parts.query}" if parts.query else "")


def _static_file(name: str) -> Response:
    for folder in web_templates_dirs(web().settings):
        static = folder / "static"
        if (static / name).is_file():
            return send_from_directory(static, name, max_age=300)
    abort(404)


def _register_errors(app: Flask) -> None:
    titles = {
        400: "That request could not be understood",
        404: "Page not found",
        405: "That is not possible here",
        429: "Too many requests",
    }

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(exc: RequestEntityTooLarge):
        if _is_api_request():
            return from_http(exc).response()
        return page(
            "error.html",
            400,
            title="That request was too large",
            message="Please go back and try again with less text.",
        )

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if _is_api_request():  # an unknown path or method under /api/v1/
            return from_http(exc).response()
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
