"""The OpenAPI 3.1 description of the API, written from the declared routes.

Each :class:`~newsletter.web.api.registry.Route` gives one operation; its body, query and
answer models give the schemas (pydantic's JSON Schema, which OpenAPI 3.1 takes as it
is). Nothing here is written by hand per route, so the description says what the server
validates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from newsletter import __version__
from newsletter.web.api.problems import PROBLEM_TYPE
from newsletter.web.api.registry import API_PREFIX, PATH_PARAMETERS, Route
from newsletter.web.api.schemas import Problem

REF = "#/components/schemas/{model}"

_ERROR_TEXT = {
    400: "The request does not fit the schema (errors point at each wrong value).",
    401: "No valid API token.",
    403: "A read-only token tried to write.",
    404: "Not found.",
    409: "The current state does not allow it.",
    413: "The body is larger than the API takes.",
    415: "The body is not JSON.",
    422: "A value the rules refuse (unknown topic, undeliverable address, ...).",
    429: "Over the token's rate limit; see Retry-After.",
}


def _schemas(routes: Sequence[Route]) -> tuple[dict[Any, Any], dict[str, Any]]:
    """Every model's schema: (model, mode) -> reference, and the components."""
    wanted: list[tuple[type[BaseModel], Any]] = [(Problem, "serialization")]
    for r in routes:
        if r.body is not None:
            wanted.append((r.body, "validation"))
        if r.response is not None:
            wanted.append((r.response, "serialization"))
    unique = list(dict.fromkeys(wanted))
    refs, top = models_json_schema(unique, ref_template=REF)
    return refs, top.get("$defs", {})


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=REF)
    required = set(schema.get("required", ()))
    out = []
    for name, prop in schema["properties"].items():
        prop = dict(prop)
        description = prop.pop("description", None)
        prop.pop("title", None)
        param: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": prop,
        }
        if description:
            param["description"] = description
        out.append(param)
    return out


def _path_parameters(path: str) -> list[dict[str, Any]]:
    out = []
    for name, (_converter, schema) in PATH_PARAMETERS.items():
        if "{" + name + "}" in path:
            out.append({"name": name, "in": "path", "required": True, "schema": schema})
    return out


def _problem(status: int) -> dict[str, Any]:
    return {
        "description": _ERROR_TEXT[status],
        "content": {PROBLEM_TYPE: {"schema": {"$ref": REF.format(model="Problem")}}},
    }


def _operation(route: Route, refs: dict[Any, Any]) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": route.name,
        "summary": route.summary,
        "tags": [route.tag],
    }
    if route.description:
        op["description"] = route.description
    params = _path_parameters(route.path)
    if route.query is not None:
        params += _query_parameters(route.query)
    if params:
        op["parameters"] = params
    if route.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": refs[(route.body, "validation")]}},
        }
    ok: dict[str, Any] = {"description": "OK" if route.status == 200 else "Done"}
    if route.response is not None:
        ok["content"] = {"application/json": {"schema": refs[(route.response, "serialization")]}}
    responses: dict[str, Any] = {str(route.status): ok}
    codes = set(route.errors)
    if route.auth:
        codes |= {401, 429}
        op["security"] = [{"bearer": []}]
    else:
        op["security"] = []
    if route.write:
        codes.add(403)
    if route.body is not None:
        codes |= {400, 413, 415, 422}
    if route.query is not None or "{" in route.path:
        codes.add(400)
    if "{" in route.path:
        codes.add(404)
    for code in sorted(codes):
        responses[str(code)] = _problem(code)
    op["responses"] = responses
    return op


def build_openapi(routes: Sequence[Route], server_url: str = "") -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``routes``."""
    refs, components = _schemas(routes)
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(API_PREFIX + route.path, {})[route.method.lower()] = _operation(
            route, refs
        )
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "newsletter API",
            "version": __version__,
            "description": "Subscribers, issues, sends, topics and counts of the "
            "newsletter. Every call but this description needs an API token "
            "(`newsletter api-token create NAME`), sent as 'Authorization: Bearer nl_...'. "
            "Errors are RFC 9457 problem details. Lists are paged with an opaque "
            "cursor: pass next_cursor back until it is null.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "nl_..."}
            },
        },
        "security": [{"bearer": []}],
    }
    if server_url:
        doc["servers"] = [{"url": server_url.rstrip("/")}]
    return doc
