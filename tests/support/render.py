"""Test helpers for rendered variants: fill one in for a recipient, as delivery does."""

from __future__ import annotations

from newsletter.config import Settings
from newsletter.delivery.personalise import Recipient, recipient_values
from newsletter.render import Variant
from newsletter.services.issues import PersonalMessage

RecipientFields = Recipient  # the name these tests grew up with


def personalise(variant: Variant, recipient: Recipient, settings: Settings) -> PersonalMessage:
    """``variant`` filled in for ``recipient`` (what the preview and the worker show)."""
    values = recipient_values(settings, recipient, variant.web_view_url, variant.summary_topics)
    return PersonalMessage(variant.subject, variant.html.fill(values), variant.text.fill(values))


def html_size(variant: Variant, settings: Settings) -> int:
    """Bytes of the variant's HTML as a typical recipient receives it."""
    from newsletter.services.issues import SAMPLE_RECIPIENT

    return len(personalise(variant, SAMPLE_RECIPIENT, settings).html.encode("utf-8"))
