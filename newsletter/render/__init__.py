"""Render stage: an Issue to its variants (HTML through MJML, and plain text), once each.

Public entry points:

- :func:`build_issue` renders every distinct digest of an issue; ``BuiltIssue.variants``
  maps the frozenset of summary keys to a :class:`Variant`.
- :func:`choose_variant_key` picks a subscriber's variant from their topics.
- :class:`RecipientFields` + :func:`personalise` (or :func:`recipient_values` and
  ``PreparedPart.fill``) fill one recipient's values into a variant without re-rendering.
- :func:`render_mail` renders a one-off email (one of :data:`MAILS`: sign-up
  confirmation, preferences link, welcome, note to the author) in the same layout, as a
  :class:`RenderedMail` with HTML and text.

Only this package knows MJML.
"""

from newsletter.render.build import BuiltIssue, Variant, build_issue, html_size, render_variant
from newsletter.render.errors import NoMatchingVariantError, TemplateError
from newsletter.render.mail import MAILS, RenderedMail, render_mail
from newsletter.render.personalise import (
    FIELDS,
    PersonalMessage,
    RecipientFields,
    personalise,
    recipient_values,
)
from newsletter.render.prepared import PreparedPart, prepare
from newsletter.render.variants import TEASER, choose_variant_key, possible_variant_keys

__all__ = [
    "FIELDS",
    "MAILS",
    "TEASER",
    "BuiltIssue",
    "NoMatchingVariantError",
    "PersonalMessage",
    "PreparedPart",
    "RecipientFields",
    "RenderedMail",
    "TemplateError",
    "Variant",
    "build_issue",
    "choose_variant_key",
    "html_size",
    "personalise",
    "possible_variant_keys",
    "prepare",
    "recipient_values",
    "render_mail",
    "render_variant",
]
