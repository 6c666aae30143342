"""Render stage: templates to MJML to HTML, plus the plain-text part. Only this package
knows MJML (and the email templates' Jinja set-up).

- :func:`build_issue` renders every distinct digest of an issue once;
  ``BuiltIssue.variants`` maps each :class:`~newsletter.rules.variants.VariantKey` to a
  :class:`Variant` whose parts (:class:`PreparedPart`) have holes for the personal fields,
  filled per recipient by delivery.
- :func:`render_mail` renders a one-off email (one of :data:`MAILS`: sign-up
  confirmation, preferences link, welcome, note to the author) in the same branded
  layout, as a :class:`RenderedMail` with HTML and text.
"""

from newsletter.render.build import BuiltIssue, Variant, build_issue, render_variant, variant_keys
from newsletter.render.errors import NoMatchingVariantError, TemplateError
from newsletter.render.mail import MAILS, RenderedMail, render_mail
from newsletter.render.prepared import PreparedPart, prepare

__all__ = [
    "MAILS",
    "BuiltIssue",
    "NoMatchingVariantError",
    "PreparedPart",
    "RenderedMail",
    "TemplateError",
    "Variant",
    "build_issue",
    "prepare",
    "render_mail",
    "render_variant",
    "variant_keys",
]
