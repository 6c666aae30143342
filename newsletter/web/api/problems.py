"""Errors of the JSON API as RFC 9457 problem details (``application/problem+json``).

Every error answer under ``/api/v1/`` is one :class:`ApiProblem` turned into JSON: a
``type`` naming the kind of problem (listed in the README), a ``title`` that is the same
for every problem of that type, the HTTP ``status``, a ``detail`` about this occurrence,
the library's ``hint`` when it has one, and for wrong values an ``errors`` list, each
with a JSON Pointer to the body member (``#/email``) or the name of the parameter.

Status codes as meant: 400 a request that cannot be read or does not fit the schema,
401 no valid token, 403 a read-only token writing, 404 nothing there, 405 a method the
path does not take, 409 the current state refuses it, 413 a body over the cap, 415 a
body that is not JSON, 422 a value that fits the schema but that the rules refuse,
429 over the token's rate, 500/503 the server's side.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from flask import Response, request
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from newsletter.errors import MissingSettingError, NewsletterError
from newsletter.services.error_kinds import CONFLICT, INVALID, NOT_FOUND, UNAVAILABLE, classify

log = logging.getLogger("newsletter.web.api")

PROBLEM_TYPE = "application/problem+json"
TYPE_BASE = "/api/v1/problems/"

#: Each problem type: (slug, title). The README lists them.
TITLES = {
    "bad-request": "The request could not be read",
    "validation": "A value of the request does not fit the schema",
    "unauthorized": "A valid API token is needed",
    "read-only": "This token may only read",
    "not-found": "Not found",
    "method-not-allowed": "That method is not allowed here",
    "conflict": "The current state does not allow this",
    "too-large": "The request body is too large",
    "unsupported-media-type": "The request body must be JSON",
    "unprocessable": "A value of the request cannot be used",
    "rate-limited": "Too many requests",
    "unavailable": "The store is not available now",
    "server-error": "Something went wrong on the server",
}

_BY_STATUS = {
    400: "bad-request",
    401: "unauthorized",
    403: "read-only",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    413: "too-large",
    415: "unsupported-media-type",
    422: "unprocessable",
    429: "rate-limited",
    503: "unavailable",
}


class ApiProblem(Exception):
    """An error answer of the API; raise it anywhere in a view."""

    def __init__(
        self,
        status: int,
        slug: str,
        detail: str,
        *,
        hint: str | None = None,
        errors: Sequence[dict[str, str]] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.detail = detail
        self.hint = hint
        self.errors = list(errors)
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The problem details object."""
        out: dict[str, Any] = {
            "type": TYPE_BASE + self.slug,
            "title": TITLES[self.slug],
            "status": self.status,
            "detail": self.detail,
            "instance": request.path,
        }
        if self.hint:
            out["hint"] = self.hint
        if self.errors:
            out["errors"] = self.errors
        return out

    def response(self) -> Response:
        """The answer: the problem as ``application/problem+json``."""
        return Response(
            json.dumps(self.body(), ensure_ascii=False),
            status=self.status,
            mimetype=PROBLEM_TYPE,
            headers=self.headers,
        )


def pointer(loc: Sequence[int | str]) -> str:
    """A JSON Pointer fragment (RFC 6901) for a location in the body: ``#/topics/2``."""
    parts = [str(p).replace("~", "~0").replace("/", "~1") for p in loc]
    return "#/" + "/".join(parts) if parts else "#"


def from_validation(exc: ValidationError, where: str) -> ApiProblem:
    """400 for a body (``where`` "body") or query string ("query") that does not fit its
    model, with one entry per wrong value."""
    errors = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        entry = {"detail": err["msg"]}
        if where == "body":
            entry["pointer"] = pointer(loc)
        else:
            entry["parameter"] = str(loc[0]) if loc else ""
        errors.append(entry)
    first = errors[0]
    at = first.get("pointer") or first.get("parameter")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return ApiProblem(400, "validation", f"{at}: {first['detail']}{more}", errors=errors)


def from_error(exc: NewsletterError, body: dict[str, Any] | None = None) -> ApiProblem:
    """The problem of an error a service raised: 404, 409, 422 or 503 by its kind.

    For invalid input the field it concerns is pointed at when the body has it.
    Server-side errors (settings, templates) are logged and answered 500 without their
    text, which could name the server's set-up.
    """
    kind = classify(exc)
    if kind.kind == NOT_FOUND:
        return ApiProblem(404, "not-found", exc.message, hint=exc.hint)
    if kind.kind == CONFLICT:
        return ApiProblem(409, "conflict", exc.message, hint=exc.hint)
    if kind.kind == INVALID and kind.field == "month":  # a path parameter
        return ApiProblem(
            400,
            "validation",
            exc.message,
            hint=exc.hint,
            errors=[{"detail": exc.message, "parameter": "month"}],
        )
    if kind.kind == INVALID:
        errors = []
        if kind.field and body is not None and kind.field in body:
            errors = [{"detail": exc.message, "pointer": pointer([kind.field])}]
        return ApiProblem(422, "unprocessable", exc.message, hint=exc.hint, errors=errors)
    if kind.kind == UNAVAILABLE:
        log.error("API request failed: %s", exc)
        return ApiProblem(
            503, "unavailable", "the store cannot be reached now", headers={"Retry-After": "5"}
        )
    log.error("API request failed: %s", exc)
    if isinstance(exc, MissingSettingError):  # names a setting, never a value
        return ApiProblem(500, "server-error", exc.message, hint=exc.hint)
    return ApiProblem(500, "server-error", "the server is not set up for this; see its log")


def from_http(exc: HTTPException) -> ApiProblem:
    """The problem of a werkzeug HTTP error (unknown path, wrong method, too large)."""
    status = exc.code or 500
    if status >= 500:
        return ApiProblem(500, "server-error", "the request failed; see the server's log")
    slug = _BY_STATUS.get(status, "bad-request")
    detail = {
        404: f"nothing at {request.path}",
        405: f"{request.method} is not allowed on {request.path}",
        413: "the request body is larger than the API takes",
    }.get(status) or HTTPStatus(status).description
    headers = dict(exc.get_headers()) if status == 405 else {}
    headers.pop("Content-Type", None)
    return ApiProblem(status if slug != "bad-request" else 400, slug, detail, headers=headers)
