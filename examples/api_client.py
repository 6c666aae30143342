"""A small client of the newsletter's JSON API that knows only its OpenAPI description.

It reads /api/v1/openapi.json, finds each operation by its operationId, fills the path
from the path's parameters, checks every body against the schema of the operation
before sending it (required members, no member the schema does not list), and then:
adds a subscriber, changes their name and topics, unsubscribes and erases them, and
reads the status of one send. Only the standard library is used.

    NEWSLETTER_API_TOKEN=nl_... python3 examples/api_client.py \\
        --url http://127.0.0.1:8000 --email someone@example.org --month 2026-11

Exits 1 with the server's problem details when a call fails.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any


class ApiError(Exception):
    """A call answered with an RFC 9457 problem."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        super().__init__(f"{status} {problem.get('title')}: {problem.get('detail')}")
        self.status = status
        self.problem = problem


class Client:
    """Calls operations of an OpenAPI description by operationId."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.spec = self._request("GET", "/api/v1/openapi.json", None, auth=False)
        self.operations: dict[str, tuple[str, str, dict[str, Any]]] = {}
        for path, item in self.spec["paths"].items():
            for method, op in item.items():
                self.operations[op["operationId"]] = (method.upper(), path, op)

    def _schema(self, ref_or_schema: dict[str, Any]) -> dict[str, Any]:
        ref = ref_or_schema.get("$ref")
        if ref is None:
            return ref_or_schema
        node: Any = self.spec
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        return node

    def _check_body(self, op: dict[str, Any], body: dict[str, Any]) -> None:
        schema = self._schema(op["requestBody"]["content"]["application/json"]["schema"])
        unknown = set(body) - set(schema.get("properties", {}))
        missing = set(schema.get("required", ())) - set(body)
        if unknown or missing:
            raise ValueError(f"body does not fit the schema: unknown {unknown}, missing {missing}")

    def call(self, operation_id: str, body: dict[str, Any] | None = None, **params: Any) -> Any:
        """Run one operation; path and query parameters by name."""
        method, path, op = self.operations[operation_id]
        query = {}
        for param in op.get("parameters", ()):
            name = param["name"]
            if name not in params:
                if param.get("required"):
                    raise ValueError(f"{operation_id} needs the parameter {name}")
                continue
            if param["in"] == "path":
                path = path.replace("{" + name + "}", urllib.request.quote(str(params[name])))
            else:
                query[name] = params[name]
        if "requestBody" in op:
            self._check_body(op, body or {})
        if query:
            path += "?" + urllib.parse.urlencode(query)
        return self._request(method, path, body, auth=True)

    def _request(self, method: str, path: str, body: Any, auth: bool) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if auth:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=30) as answer:
                raw = answer.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                problem = json.loads(raw)
            except ValueError:
                problem = {"title": exc.reason, "detail": raw.decode(errors="replace")}
            raise ApiError(exc.code, problem) from None
        return json.loads(raw) if raw else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the server")
    parser.add_argument("--email", required=True, help="an address to add and remove again")
    parser.add_argument("--month", required=True, help="the send to read, YYYY-MM")
    args = parser.parse_args(argv)
    token = os.environ.get("NEWSLETTER_API_TOKEN", "")
    if not token:
        parser.error("set NEWSLETTER_API_TOKEN to a token from `newsletter api-token create`")
    try:
        api = Client(args.url, token)
        person = api.call(
            "create_subscriber",
            {"email": args.email, "name": "Example Client", "topics": ["Empathy"]},
        )
        print(f"added {person['email']} (id {person['id']}, {person['status']})")
        person = api.call(
            "update_subscriber",
            {"name": "Changed By Client", "topics": ["Empathy", "Training"]},
            subscriber_id=person["id"],
        )
        print(f"changed: name {person['name']!r}, topics {', '.join(person['topics'])}")
        person = api.call("unsubscribe_subscriber", subscriber_id=person["id"])
        print(f"unsubscribed: {person['status']}")
        erased = api.call("erase_subscriber", subscriber_id=person["id"])
        print(f"erased: {erased['erased']}")
        send = api.call("get_send", month=args.month)
        print(
            f"send {send['month']}: {send['status']}, {send['sent']} sent, "
            f"{send['outstanding']} outstanding of {send['total']}"
        )
    except ApiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if exc.problem.get("hint"):
            print(f"  hint: {exc.problem['hint']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
