"""Per-recipient values filled into an already rendered variant.

:class:`Recipient` is what a worker knows of one recipient; :func:`recipient_values`
computes the value of every personal field (:data:`newsletter.rules.personal.FIELDS`):
three signed tokens and a few strings. The message builder fills them into the variant's
parts without re-rendering anything: no Jinja, no MJML per person.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from newsletter.config import Settings
from newsletter.content.taxonomy import topic_names
from newsletter.rules.personal import ALL_TOPICS, first_name
from newsletter.rules.wrapping import WIDTH, wrap
from newsletter.tokens import make_token


@dataclass(frozen=True)
class Recipient:
    """One recipient as the message builder needs them.

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


@lru_cache(maxsize=4096)
def topics_display(topics: tuple[str, ...], all_topics: bool) -> tuple[str, str]:
    """The subscriber's topic names: one line for HTML, and wrapped for the text part."""
    if all_topics:
        return ALL_TOPICS, ALL_TOPICS
    names = topic_names(topics) or ["none"]
    return "; ".join(names), wrap("; ".join(names), WIDTH)


def recipient_values(settings: Settings, recipient: Recipient, web_view_url: str) -> dict[str, str]:
    """The value of every personal field for ``recipient`` (unescaped)."""
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
