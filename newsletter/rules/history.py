"""A person's past, read back from their consent log: status and topics at any time.

The store keeps no table of statuses over time; it keeps the append-only consent log,
whose events say what changed (see :data:`newsletter.rules.statuses.EVENTS`). These rules
replay it. Most events name the status they lead to (:data:`EVENT_STATUS`). Two do not:
``subscribed`` and ``resubscribed`` lead to ``pending`` or ``active`` (and an import may
add someone with any status). For those the next event decides: followed by
``confirmed``, the person was pending; followed by nothing that changes the status, they
had the status they have now; otherwise active.

Topic changes are logged as ``before -> after`` (``store.subscribers.describe_topics``
on both sides), so topics at any time are read backwards from the current choice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

#: Events that name the status they lead to.
EVENT_STATUS = {
    "confirmed": "active",
    "paused": "paused",
    "resumed": "active",
    "unsubscribed": "unsubscribed",
    "bounced": "bounced",
    "reactivated": "active",
}
#: Events that start (or restart) a subscription: pending or active, decided by what
#: follows (see the module docstring).
OPENING = ("subscribed", "resubscribed")
#: How ``describe_topics`` writes an all-topics choice and an empty one.
ALL_TOPICS_TEXT = "all topics"
NO_TOPICS_TEXT = "no topics"
TOPICS_CHANGED = "topics_changed"


@dataclass(frozen=True)
class LoggedEvent:
    """One line of a person's consent log, as the history needs it."""

    at: dt.datetime
    event: str
    detail: str | None = None


@dataclass(frozen=True)
class TopicChoice:
    """A topic choice at some time: every topic, or the slugs chosen."""

    all_topics: bool
    slugs: frozenset[str]


def parse_topics(text: str) -> TopicChoice | None:
    """A choice as ``describe_topics`` wrote it; None if the text is not one."""
    text = text.strip()
    if text == ALL_TOPICS_TEXT:
        return TopicChoice(True, frozenset())
    if text == NO_TOPICS_TEXT:
        return TopicChoice(False, frozenset())
    slugs = [s.strip() for s in text.split(";")]
    if not all(s and " " not in s for s in slugs):
        return None
    return TopicChoice(False, frozenset(slugs))


def topic_change(detail: str | None) -> tuple[TopicChoice, TopicChoice] | None:
    """(before, after) of a ``topics_changed`` event's detail; None if unreadable."""
    if not detail or " -> " not in detail:
        return None
    before_text, _, after_text = detail.partition(" -> ")
    before, after = parse_topics(before_text), parse_topics(after_text)
    if before is None or after is None:
        return None
    return before, after


def removed_topics(before: TopicChoice, after: TopicChoice) -> frozenset[str]:
    """The slugs a change dropped (a move away from every topic is not counted here)."""
    if before.all_topics:
        return frozenset()
    if after.all_topics:
        return frozenset()
    return before.slugs - after.slugs


def status_steps(
    events: Sequence[LoggedEvent], current: str, created_at: dt.datetime
) -> list[tuple[dt.datetime, str]]:
    """Each time the person's status changed, and to what, oldest first.

    ``events`` are the person's, oldest first; ``current`` their status now. A person
    with no status event has had ``current`` since ``created_at``.
    """
    relevant = [e for e in events if e.event in EVENT_STATUS or e.event in OPENING]
    if not relevant:
        return [(created_at, current)]
    steps: list[tuple[dt.datetime, str]] = []
    for i, e in enumerate(relevant):
        if e.event in EVENT_STATUS:
            status = EVENT_STATUS[e.event]
        else:
            following = relevant[i + 1 :]
            if not following:
                status = current
            elif following[0].event == "confirmed":
                status = "pending"
            else:
                status = "active"
        steps.append((e.at, status))
    if steps[0][0] > created_at:
        steps.insert(0, (created_at, steps[0][1]))
    return steps


def status_at(steps: Sequence[tuple[dt.datetime, str]], when: dt.datetime) -> str | None:
    """The status at ``when`` (None: the person did not exist yet)."""
    found = None
    for at, status in steps:
        if at > when:
            break
        found = status
    return found


def topic_steps(
    events: Sequence[LoggedEvent], current: TopicChoice
) -> tuple[TopicChoice, list[tuple[dt.datetime, TopicChoice]]]:
    """The first known choice and each later change (time, new choice), oldest first.

    Read backwards from ``current``: each ``topics_changed`` event says what it replaced.
    """
    changes = [
        (e.at, c) for e in events if e.event == TOPICS_CHANGED if (c := topic_change(e.detail))
    ]
    if not changes:
        return current, []
    first = changes[0][1][0]
    return first, [(at, after) for at, (_, after) in changes]


def topics_at(
    first: TopicChoice, changes: Sequence[tuple[dt.datetime, TopicChoice]], when: dt.datetime
) -> TopicChoice:
    """The choice at ``when``."""
    choice = first
    for at, after in changes:
        if at > when:
            break
        choice = after
    return choice
