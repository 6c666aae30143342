"""Per-recipient values filled into an already rendered variant.

:class:`RecipientFields` is what the delivery stage passes per recipient; the values are
computed here (three signed tokens and a few strings) and filled into the variant's
prepared parts with :meth:`PreparedPart.fill` -- no Jinja, no MJML per person.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from newsletter.render.text import WIDTH
from newsletter.tokens import make_token

if TYPE_CHECKING:
    from newsletter.config import Settings
    from newsletter.render.build import Variant

# Every field a template may use; the values of one recipient come from recipient_values().
FIELDS = (
    "first_name",  # greeting name, or a friendly fallback
    "email",
    "your_topics",  # the subscriber's topics, one line ("; "-separated)
    "your_topics_text",  # the same, wrapped for the text part
    "preferences_token",
    "unsubscribe_token",
    "topic_token",  # used with a topic slug after it: {base_url}/topic/{token}/{slug}
    "web_view_url",
)

NAME_FALLBACK = "colleague"
ALL_TOPICS = "all topics"
_TITLES = frozenset({"dr", "prof", "mr", "mrs", "ms", "mx", "miss"})


@dataclass(frozen=True)
class RecipientFields:
    """One recipient as the render stage needs them.

    ``subscriber_id`` is the store's id; while there is none, links carry the ``email``.
    ``topics`` are topic slugs; ``all_topics`` means the subscriber takes every topic.
    """

    email: str
    subscriber_id: int | None = None
    name: str | None = None
    topics: tuple[str, ...] = ()
    all_topics: bool = False

    @property
    def token_payload(self) -> int | str:
        """What the signed links identify the subscriber by."""
        return self.subscriber_id if self.subscriber_id is not None else self.email


@dataclass(frozen=True)
class PersonalMessage:
    """One recipient's subject, HTML and text."""

    subject: str
    html: str
    text: str


def first_name(name: str | None) -> str:
    """The name to greet someone by: the first name, "Dr. Lopez", or "colleague"."""
    words = "".join(ch if ch.isprintable() else " " for ch in (name or "")).split()
    if not words:
        return NAME_FALLBACK
    if words[0].rstrip(".").lower() in _TITLES:
        return f"{words[0]} {words[-1]}"[:60] if len(words) > 1 else NAME_FALLBACK
    return words[0][:60]


@lru_cache(maxsize=4096)
def topics_display(topics: tuple[str, ...], all_topics: bool) -> tuple[str, str]:
    """The subscriber's topic names: one line for HTML, and wrapped for the text part."""
    if all_topics:
        return ALL_TOPICS, ALL_TOPICS
    from newsletter.content.taxonomy import load_taxonomy

    by_slug = load_taxonomy().by_slug
    names = [by_slug[s].name if s in by_slug else s for s in topics] or ["none"]
    from newsletter.render.text import wrap

    return "; ".join(names), wrap("; ".join(names), WIDTH)


def recipient_values(settings: Settings, recipient: RecipientFields, web_view_url: str) -> dict:
    """The value of every field in :data:`FIELDS` for ``recipient`` (unescaped)."""
    payload = recipient.token_payload
    line, wrapped = topics_display(tuple(recipient.topics), recipient.all_topics)
    return {
        "first_name": first_name(recipient.name),
        "email": recipient.email,
        "your_topics": line,
        "your_topics_text": wrapped,
        "preferences_token": make_token(settings, "preferences", payload),
        "unsubscribe_token": make_token(settings, "unsubscribe", payload),
        "topic_token": make_token(settings, "topic", payload),
        "web_view_url": web_view_url,
    }


def personalise(
    variant: Variant, recipient: RecipientFields, settings: Settings
) -> PersonalMessage:
    """``variant`` filled in for ``recipient``."""
    values = recipient_values(settings, recipient, variant.web_view_url)
    return PersonalMessage(variant.subject, variant.html.fill(values), variant.text.fill(values))
