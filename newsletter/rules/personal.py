"""The personal fields of a message: what is filled in per recipient, and how.

A variant is rendered once with a hole for each field in :data:`FIELDS`; delivery fills
the holes for each recipient (``newsletter.delivery.personalise``).
"""

from __future__ import annotations

#: The most summaries an issue has: one "fewer emails" field pair per position.
MAX_SUMMARIES = 4


def fewer_field(kind: str, position: int) -> str:
    """The field of the "fewer emails on" line under the summary at ``position`` (1-based,
    in the issue) for ``kind`` "html" or "text"."""
    return f"fewer_{kind}_{position}"


#: The "fewer emails on" lines: only the reader's own topics among the summary's, so they
#: differ per reader inside one variant. The HTML ones are markup (links), made and
#: escaped by delivery.personalise and inserted as they are.
FEWER_FIELDS = tuple(
    fewer_field(kind, n) for n in range(1, MAX_SUMMARIES + 1) for kind in ("html", "text")
)
MARKUP_FIELDS = frozenset(fewer_field("html", n) for n in range(1, MAX_SUMMARIES + 1))

FIELDS = (
    "first_name",  # greeting name, or a friendly fallback
    "email",
    "your_topics",  # the subscriber's topics, one line ("; "-separated)
    "your_topics_text",  # the same, wrapped for the text part
    "preferences_token",
    "unsubscribe_token",
    "topic_token",  # used with a topic slug after it: {base_url}/topic/{token}/{slug}
    "web_view_url",
    *FEWER_FIELDS,
)

#: The id the links of a test message carry when it is not sent as a subscriber
#: (``send-test`` without ``--subscriber``). No subscriber has it: the web pages answer
#: such a link with a page saying it came from a test, not with an error.
TEST_SUBSCRIBER_ID = 0

NAME_FALLBACK = "colleague"
ALL_TOPICS = "all topics"
_TITLES = frozenset({"dr", "prof", "mr", "mrs", "ms", "mx", "miss"})


def first_name(name: str | None) -> str:
    """The name to greet someone by: the first name, "Dr. Lopez", or "colleague"."""
    words = "".join(ch if ch.isprintable() else " " for ch in (name or "")).split()
    if not words:
        return NAME_FALLBACK
    if words[0].rstrip(".").lower() in _TITLES:
        return f"{words[0]} {words[-1]}"[:60] if len(words) > 1 else NAME_FALLBACK
    return words[0][:60]
