"""The OpenAPI description of the JSON API: valid, and complete for every Flask route."""

from __future__ import annotations

import re

import pytest
from openapi_spec_validator import validate

from newsletter.config import load_settings
from newsletter.web import create_app
from newsletter.web.api import ROUTES

pytestmark = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)


@pytest.fixture
def api_app(store_url):
    """The web app with the API on, over an empty store (the description needs no data)."""
    settings = load_settings(
        overrides={
            "database_url": store_url,
            "secret_key": "k",
            "base_url": "https://news.example.org",
            "api_enabled": True,
        },
        environ={},
    )
    application = create_app(settings)
    yield application
    application.extensions["newsletter"].close()


@pytest.fixture
def document(api_app) -> dict:
    response = api_app.test_client().get("/api/v1/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    return response.get_json()


def test_the_description_is_valid_openapi(document):
    validate(document)  # raises on any error
    assert document["openapi"] == "3.1.0"
    assert document["servers"] == [{"url": "https://news.example.org"}]


def test_every_api_route_is_described_with_its_methods(api_app, document):
    served: dict[str, set[str]] = {}
    for rule in api_app.url_map.iter_rules():
        if rule.rule.startswith("/api/v1"):
            path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
            served.setdefault(path, set()).update(rule.methods - {"HEAD", "OPTIONS"})
    described = {
        path: {method.upper() for method in item} for path, item in document["paths"].items()
    }
    assert served == described
    assert len(served) >= 10


def test_every_operation_has_a_summary_answers_and_problem_answers(document):
    for path, item in document["paths"].items():
        for method, op in item.items():
            assert op["summary"] and op["operationId"], (method, path)
            codes = set(op["responses"])
            if path.endswith("openapi.json"):
                continue
            assert {"401", "429"} <= codes, (method, path)
            if method != "get":
                assert "403" in codes, (method, path)
            for code, answer in op["responses"].items():
                if code.startswith(("4", "5")):
                    assert "application/problem+json" in answer["content"]


def test_request_bodies_are_described_by_the_models_that_validate_them(document):
    schemas = document["components"]["schemas"]
    for route in ROUTES:
        if route.body is None:
            continue
        op = document["paths"]["/api/v1" + route.path][route.method.lower()]
        ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        schema = schemas[ref.rsplit("/", 1)[1]]
        assert schema == route.body.model_json_schema(
            ref_template="#/components/schemas/{model}"
        ) | ({"$defs": schema["$defs"]} if "$defs" in schema else {})
        assert schema["additionalProperties"] is False  # unknown members are refused
    create = schemas["SubscriberCreate"]
    assert create["required"] == ["email"]
    assert create["properties"]["email"]["maxLength"] == 320
