"""The JSON API under ``/api/v1/`` (on only with the setting ``api_enabled``).

- :mod:`~newsletter.web.api.registry`: the blueprint, :func:`endpoint` and what runs
  around every view (token, rate, body cap, parsing, the log of writes);
- :mod:`~newsletter.web.api.schemas`: the pydantic models of bodies and answers;
- :mod:`~newsletter.web.api.routes`: the views, each calling one service;
- :mod:`~newsletter.web.api.openapi`: the OpenAPI description, written from the routes;
- :mod:`~newsletter.web.api.problems`: errors as RFC 9457 problem details.
"""

from __future__ import annotations

from newsletter.web.api import routes as _routes  # noqa: F401 - declares the views
from newsletter.web.api.problems import ApiProblem, from_http
from newsletter.web.api.registry import API_PREFIX, ROUTES, api

__all__ = ["API_PREFIX", "ROUTES", "ApiProblem", "api", "from_http"]
