"""How an API view is declared, and what runs around every one of them.

A view is declared once with :func:`endpoint`: its method and path, the pydantic models
of its body, query string and answer, whether it writes. That one declaration

- registers the Flask rule on the :data:`api` blueprint;
- wraps the view: the bearer token is checked (401), a read-only token may not write
  (403), the token's rate is counted (429), the query string and the JSON body are
  parsed with their models (400, 413, 415), the answer is serialised with its model,
  and every write is logged with the token's name (never the token);
- and is kept in :data:`ROUTES`, from which :mod:`newsletter.web.api.openapi` writes the
  OpenAPI description. So a route cannot exist without being described, nor be
  described otherwise than it validates.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, g, request
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import HTTPException

from newsletter.errors import NewsletterError
from newsletter.services import api_tokens
from newsletter.services.api_tokens import ApiTokenView
from newsletter.web.api.problems import ApiProblem, from_error, from_http, from_validation
from newsletter.web.context import client_ip, web

log = logging.getLogger("newsletter.web.api")

API_PREFIX = "/api/v1"
#: The largest request body the API reads (the largest real one, a subscriber with 36
#: topics by name, is under 3 KB).
MAX_API_BODY = 16 * 1024

#: Path parameters: the Flask converter and the JSON Schema of each.
PATH_PARAMETERS: dict[str, tuple[str, dict[str, Any]]] = {
    "subscriber_id": ("int", {"type": "integer", "minimum": 1}),
    "month": ("string", {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}$"}),
}

api = Blueprint("api", __name__, url_prefix=API_PREFIX)


@dataclass(frozen=True)
class Route:
    """One operation of the API, as declared by :func:`endpoint`."""

    method: str
    path: str  # OpenAPI form, under API_PREFIX: "/subscribers/{subscriber_id}"
    name: str  # the view's name: the Flask endpoint and the operationId
    summary: str
    description: str
    tag: str
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    response: type[BaseModel] | None
    status: int
    write: bool
    auth: bool
    errors: tuple[int, ...]


ROUTES: list[Route] = []


def flask_rule(path: str) -> str:
    """The Flask rule of an OpenAPI path: ``{subscriber_id}`` -> ``<int:subscriber_id>``."""

    def convert(m: re.Match[str]) -> str:
        converter = PATH_PARAMETERS[m.group(1)][0]
        return f"<{converter}:{m.group(1)}>"

    return re.sub(r"\{(\w+)\}", convert, path)


def endpoint(
    method: str,
    path: str,
    *,
    tag: str,
    body: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    response: type[BaseModel] | None = None,
    status: int = 200,
    write: bool = False,
    auth: bool = True,
    errors: tuple[int, ...] = (),
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare an API view (see the module docstring).

    The view gets the path parameters, ``token`` (the caller's
    :class:`~newsletter.services.api_tokens.ApiTokenView`), and ``body`` and ``query``
    (model instances) when declared. It returns an instance of ``response``, or
    ``(instance, headers)``.
    """

    def declare(view: Callable[..., Any]) -> Callable[..., Any]:
        doc = (view.__doc__ or "").strip()
        summary, _, description = doc.partition("\n\n")
        route = Route(
            method=method,
            path=path,
            name=view.__name__,
            summary=" ".join(summary.split()),
            description=" ".join(description.split()),
            tag=tag,
            body=body,
            query=query,
            response=response,
            status=status,
            write=write,
            auth=auth,
            errors=errors,
        )
        ROUTES.append(route)

        @functools.wraps(view)
        def handle(**params: Any) -> Response:
            kwargs: dict[str, Any] = dict(params)
            token = _authenticate(route) if auth else None
            if auth:
                kwargs["token"] = token
            if query is not None:
                kwargs["query"] = _parse_query(query)
            if body is not None:
                kwargs["body"] = _parse_body(body)
            try:
                result = view(**kwargs)
            except Exception as exc:
                if write and token is not None:
                    log.info(
                        "API %s %s by token %r refused: %s",
                        method,
                        request.path,
                        token.name,
                        type(exc).__name__,
                    )
                raise
            if isinstance(result, Response):
                return result
            headers: dict[str, str] = {}
            if isinstance(result, tuple):
                result, headers = result
            if write and token is not None:
                log.info(
                    "API %s %s by token %r: %d", method, request.path, token.name, route.status
                )
            if result is None:
                return Response(status=route.status, headers=headers)
            return Response(
                result.model_dump_json(),
                status=route.status,
                headers=headers,
                mimetype="application/json",
            )

        api.add_url_rule(flask_rule(path), view.__name__, handle, methods=[method])
        return view

    return declare


# --- around every view -------------------------------------------------------------------


def _authenticate(route: Route) -> ApiTokenView:
    app = web().app
    try:
        token = api_tokens.authenticate(app, request.headers.get("Authorization"))
    except api_tokens.TokenRefusedError as exc:
        # The log says why (never with the token); the answer does not.
        log.warning(
            "API %s %s refused from %s: %s", request.method, request.path, client_ip(), exc.reason
        )
        sent = "Authorization" in request.headers
        challenge = 'Bearer realm="newsletter API"' + (', error="invalid_token"' if sent else "")
        raise ApiProblem(
            401,
            "unauthorized",
            exc.message,
            hint=exc.hint,
            headers={"WWW-Authenticate": challenge},
        ) from None
    if route.write and token.read_only:
        log.warning(
            "API %s %s refused: token %r is read-only", request.method, request.path, token.name
        )
        raise ApiProblem(
            403,
            "read-only",
            f"the token {token.name!r} may only read",
            hint="make a token without --read-only for clients that change things",
        )
    limit = app.settings.api_rate_limit
    now = app.now().timestamp()
    limiter = web().api_limiter
    key = f"token:{token.id}"
    if not limiter.hit(key, limit, now):
        wait = max(1, math.ceil(limiter.retry_after(key, limit, now)))
        raise ApiProblem(
            429,
            "rate-limited",
            f"more than {limit} requests in a minute with the token {token.name!r}",
            hint=f"wait {wait} s (Retry-After), or raise api_rate_limit",
            headers={"Retry-After": str(wait)},
        )
    return token


def _parse_query(model: type[BaseModel]) -> BaseModel:
    args = request.args
    repeated = [k for k in args if len(args.getlist(k)) > 1]
    if repeated:
        raise ApiProblem(
            400,
            "validation",
            f"{repeated[0]} is given more than once",
            errors=[{"detail": "given more than once", "parameter": k} for k in repeated],
        )
    try:
        return model.model_validate(args.to_dict())
    except ValidationError as exc:
        raise from_validation(exc, "query") from None


def _parse_body(model: type[BaseModel]) -> BaseModel:
    if not request.is_json:
        raise ApiProblem(
            415,
            "unsupported-media-type",
            "the request body must be JSON",
            hint="send it with 'Content-Type: application/json'",
        )
    raw = request.get_data(cache=True)
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiProblem(400, "bad-request", f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ApiProblem(
            400,
            "validation",
            "the body must be a JSON object",
            errors=[{"detail": "must be a JSON object", "pointer": "#"}],
        )
    g.api_body = data
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise from_validation(exc, "body") from None


@api.before_request
def _cap_body() -> None:
    request.max_content_length = MAX_API_BODY


@api.errorhandler(ApiProblem)
def _problem(exc: ApiProblem) -> Response:
    return exc.response()


@api.errorhandler(NewsletterError)
def _library_error(exc: NewsletterError) -> Response:
    return from_error(exc, g.get("api_body")).response()


@api.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Response:
    return from_http(exc).response()


@api.errorhandler(Exception)
def _unexpected(exc: Exception) -> Response:
    log.exception("API request failed")
    return ApiProblem(500, "server-error", "the request failed; see the server's log").response()
