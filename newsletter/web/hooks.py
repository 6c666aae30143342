"""Provider webhooks: ``POST /hooks/<provider>`` for bounce and complaint events.

The view only reads the request and calls
:func:`newsletter.services.bounces.process_provider_event`, which checks it and records
its events. A provider's server, not a person, posts here: no CSRF token, no origin
check and no rate limit apply (see ``web/app.py``); the provider's own credentials or
signature take their place. Answers are short plain text and say nothing of which check
failed:

- 200 once the events are recorded or deliberately ignored (including events about an
  address we never mailed: the provider would otherwise retry for days);
- 404 for a provider whose hook is not configured (like any unknown page);
- 401 (basic auth) or 403 (signature, timestamp, replay) for a request that does not
  prove where it comes from, 400 for a body that is not the provider's format;
- 413 for a body over :data:`MAX_HOOK_BYTES`;
- 500 when the store fails, 503 when an SNS certificate cannot be fetched now: the
  provider retries, and an event recorded before is not recorded twice.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from newsletter.errors import NewsletterError
from newsletter.services import bounces
from newsletter.web.context import web

log = logging.getLogger("newsletter.web.hooks")

hooks = Blueprint("hooks", __name__, url_prefix="/hooks")

#: The path every webhook lives under (``serving`` and ``app`` give it its own limits).
HOOKS_PREFIX = "/hooks/"
MAX_HOOK_BYTES = bounces.MAX_HOOK_BYTES

_ANSWERS = {
    200: "ok",
    400: "not understood",
    401: "unauthorized",
    403: "refused",
    404: "not found",
    413: "too large",
    500: "not recorded, try again",
    503: "not available now, try again",
}


def _plain(status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(
        _ANSWERS.get(status, "refused") + "\n",
        status=status,
        mimetype="text/plain",
        headers=headers,
    )


@hooks.post("/<provider>")
def receive(provider: str) -> Response:
    """Record the bounce and complaint events one provider posted."""
    if provider not in bounces.PROVIDERS:
        return _plain(404)
    # A SendGrid batch is larger than any form of the site (app.MAX_REQUEST_BYTES).
    request.max_content_length = MAX_HOOK_BYTES
    try:
        body = request.get_data(cache=False)
    except HTTPException as exc:  # over the limit, or the client went away
        return _plain(413 if isinstance(exc, RequestEntityTooLarge) else 400)
    app = web().app
    try:
        outcome = bounces.process_provider_event(app, provider, dict(request.headers), body)
    except bounces.WebhookRefused as exc:
        if exc.status == 404:
            return _plain(404)
        # The log says which check failed (never with the secret); the answer does not.
        log.warning("webhook %s refused (%d): %s", provider, exc.status, exc.message)
        auth = {"WWW-Authenticate": 'Basic realm="newsletter webhooks"'}
        return _plain(exc.status, auth if exc.status == 401 else None)
    except NewsletterError as exc:  # the store, e.g. a lost connection: the provider retries
        log.error("webhook %s not recorded: %s", provider, exc)
        return _plain(500)
    except Exception:
        log.exception("webhook %s not recorded", provider)
        return _plain(500)
    log.info(
        "webhook %s: %d recorded, %d already, %d ignored%s",
        provider,
        outcome.recorded,
        outcome.already,
        sum(outcome.ignored.values()),
        f" ({outcome.note})" if outcome.note else "",
    )
    return _plain(200)
