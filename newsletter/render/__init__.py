"""Render stage: templates to MJML to HTML, plus the plain-text part. Only this package
knows MJML (and the email templates' Jinja set-up).

- :func:`build_issue` renders every distinct digest of an issue once;
  ``BuiltIssue.variants`` maps each :class:`~newsletter.rules.variants.VariantKey` to a
  :class:`Variant` whose parts (:class:`PreparedPart`) have holes for the personal fields,
  filled per recipient by delivery.
- :func:`render_mail` renders the other emails (sign-up confirmation, welcome, a
  preferences link, the author's reports) in the same branded layout.
"""

from newsletter.render.build import BuiltIssue, Variant, build_issue, render_variant, variant_keys
from newsletter.render.errors import NoMatchingVariantError, TemplateError
from newsletter.render.prepared import PreparedPart, prepare

__all__ = [
    "BuiltIssue",
    "NoMatchingVariantError",
    "PreparedPart",
    "TemplateError",
    "Variant",
    "build_issue",
    "prepare",
    "render_variant",
    "variant_keys",
]
