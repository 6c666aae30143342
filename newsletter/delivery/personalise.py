"""Per-recipient values filled into an already rendered variant.

:class:`Recipient` is what a worker knows of one recipient; :func:`recipient_values`
computes the value of every personal field (:data:`newsletter.rules.personal.FIELDS`):
three signed tokens and a few strings. The message builder fills them into the variant's
parts without re-rendering anything: no Jinja, no MJML per person.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from html import escape

from newsletter.config import Settings
from newsletter.content.taxonomy import load_taxonomy, topic_names
from newsletter.rules.links import page_url
from newsletter.rules.personal import ALL_TOPICS, fewer_field, first_name
from newsletter.rules.wrapping import WIDTH, wrap_items
from newsletter.tokens import make_token

#: Summary topics by the summary's position in the issue (1-based): what the "fewer
#: emails on" lines are made from.
SummaryTopics = Mapping[int, frozenset[str]]

# Where the tokens go in a cached line (neither can occur in a URL or a topic name).
_TOPIC_SLOT = "\x00"
_PREFERENCES_SLOT = "\x01"
_LINK_STYLE = "color:#6b7885;"  # the muted grey of the line, as in the HTML template


class SlottedValue(str):
    """A personal value made of fixed pieces with the same token between each: the
    pieces repeat across readers, so their encodings are cached and only the token is
    encoded per message (see :func:`newsletter.delivery.message.encode_slotted`)."""

    pieces: tuple[str, ...]
    token: str

    def __new__(cls, pieces: tuple[str, ...], token: str) -> SlottedValue:
        value = super().__new__(cls, token.join(pieces))
        value.pieces = pieces
        value.token = token
        return value


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
    return "; ".join(names), wrap_items(names, "; ", WIDTH)


@lru_cache(maxsize=8192)
def _fewer_lines(base_url: str, shared: tuple[str, ...]) -> tuple[str, str]:
    """The HTML and text "fewer emails" lines for ``shared`` topic slugs, with the tokens
    left as slots; with none (a reader who got the summary by the ``full`` policy), a link
    to the preferences instead."""
    if not shared:
        url = page_url(base_url, "preferences", _PREFERENCES_SLOT)
        label = "Fewer emails like this? Choose your topics"
        html = f'<a href="{escape(url)}" style="{_LINK_STYLE}">{label}</a>'
        return html, f"Fewer emails like this? Choose your topics:\n  {url}"
    names = dict(zip(shared, topic_names(shared), strict=True))
    links = [(names[s], page_url(base_url, "topic", _TOPIC_SLOT, slug=s)) for s in shared]
    html = "Fewer emails on: " + " &middot; ".join(
        f'<a href="{escape(url)}" style="{_LINK_STYLE}">{escape(name)}</a>' for name, url in links
    )
    # Each address alone on its line, never wrapped (and not numbered: the numbers of the
    # other links are the same for every reader of the variant).
    text = "Fewer emails on:\n" + "\n".join(f"- {name}\n  {url}" for name, url in links)
    return html, text


@lru_cache(maxsize=1)
def _taxonomy_order() -> dict[str, int]:
    return {t.slug: i for i, t in enumerate(load_taxonomy())}


@lru_cache(maxsize=16384)
def _lines_for(
    base_url: str, summary: frozenset[str], topics: tuple[str, ...], all_topics: bool
) -> tuple[tuple[str, ...], tuple[str, ...], str]:
    """The "fewer emails" lines (HTML, text) of one summary for one kind of reader, and
    the slot their token goes into. The reader's own topics among the summary's are the
    ones that brought them the summary (all of them for a reader of every topic), shown
    in taxonomy order."""
    order = _taxonomy_order()
    mine = summary if all_topics else summary.intersection(topics)
    shared = tuple(sorted(mine, key=lambda s: order.get(s, len(order))))
    html, text = _fewer_lines(base_url, shared)
    slot = _TOPIC_SLOT if shared else _PREFERENCES_SLOT
    return tuple(html.split(slot)), tuple(text.split(slot)), slot


def fewer_values(
    settings: Settings,
    recipient: Recipient,
    summary_topics: SummaryTopics,
    topic_token: str,
    preferences_token: str,
) -> dict[str, str]:
    """The "fewer emails on" field values of each summary position in ``summary_topics``:
    links for the reader's own topics of that summary only (a link for a topic they do
    not follow could change nothing)."""
    values: dict[str, str] = {}
    topics, base_url = tuple(recipient.topics), settings.base_url
    for position, summary in summary_topics.items():
        html, text, slot = _lines_for(base_url, summary, topics, recipient.all_topics)
        token = topic_token if slot == _TOPIC_SLOT else preferences_token
        values[fewer_field("html", position)] = SlottedValue(html, token)
        values[fewer_field("text", position)] = SlottedValue(text, token)
    return values


def recipient_values(
    settings: Settings,
    recipient: Recipient,
    web_view_url: str,
    summary_topics: SummaryTopics | None = None,
) -> dict[str, str]:
    """The value of every personal field for ``recipient`` (unescaped, but for the markup
    of :data:`~newsletter.rules.personal.MARKUP_FIELDS`). ``summary_topics``: the topics of
    the summaries the message holds, by position in the issue."""
    payload = recipient.token_payload
    line, wrapped = topics_display(tuple(recipient.topics), recipient.all_topics)
    topic_token = make_token(settings, "topic", payload)
    preferences_token = make_token(settings, "preferences", payload)
    values = {
        "first_name": first_name(recipient.name),
        "email": recipient.email,
        "your_topics": line,
        "your_topics_text": wrapped,
        "preferences_token": preferences_token,
        "unsubscribe_token": make_token(settings, "unsubscribe", payload),
        "topic_token": topic_token,
        "web_view_url": web_view_url,
    }
    if summary_topics:
        values.update(
            fewer_values(settings, recipient, summary_topics, topic_token, preferences_token)
        )
    return values
