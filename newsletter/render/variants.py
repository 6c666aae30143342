"""Which summaries a subscriber gets, and which distinct digests an issue can produce."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import combinations

from newsletter.content.model import Issue

# The key of the teaser variant (the short note sent when nothing matches and
# no_match_policy is "teaser"): no summaries.
TEASER: frozenset[str] = frozenset()


def possible_variant_keys(issue: Issue) -> list[frozenset[str]]:
    """Every set of summary keys some choice of topics produces, largest first.

    A set S is possible when each of its summaries has a topic that no summary outside S
    has (pick exactly those topics). So there are at most 2^k - 1 sets, fewer when
    summaries share all their topics.
    """
    summaries = issue.summaries
    out: list[frozenset[str]] = []
    for size in range(len(summaries), 0, -1):
        for chosen in combinations(summaries, size):
            others = [s for s in summaries if s not in chosen]
            outside = frozenset().union(*(s.topic_slugs for s in others))
            if all(s.topic_slugs - outside for s in chosen):
                out.append(frozenset(s.key for s in chosen))
    return out


def matching_keys(issue: Issue, topics: Iterable[str], all_topics: bool = False) -> frozenset[str]:
    """The keys of the summaries whose topics meet ``topics`` (slugs); all if ``all_topics``."""
    if all_topics:
        return frozenset(s.key for s in issue.summaries)
    wanted = frozenset(topics)
    return frozenset(s.key for s in issue.summaries if s.topic_slugs & wanted)


def choose_variant_key(
    issue: Issue, topics: Iterable[str], all_topics: bool = False, policy: str = "skip"
) -> frozenset[str] | None:
    """The variant key for a subscriber with ``topics`` (slugs) or ``all_topics``.

    When nothing matches, ``policy`` decides: ``skip`` gives None (send nothing), ``full``
    the key of every summary, ``teaser`` :data:`TEASER`.
    """
    keys = matching_keys(issue, topics, all_topics)
    if keys:
        return keys
    if policy == "full":
        return frozenset(s.key for s in issue.summaries)
    if policy == "teaser":
        return TEASER
    if policy == "skip":
        return None
    raise ValueError(f"unknown no_match_policy {policy!r}")
