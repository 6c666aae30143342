"""Which summaries a reader gets: one identity for a variant of an issue.

A *variant* is a set of an issue's summaries, sent as one digest. :class:`VariantKey` is
its only representation: a bit mask over the summaries' positions (bit 0 is the first
summary), the number of summaries, and a display name:

- ``all`` every summary, ``teaser`` none (the short note of ``no_match_policy = teaser``),
- otherwise the positions, ``s1+s3``.

The ledger stores the mask; planning computes it in SQL (the store's
``variant_mask_expression``), everything else here, and a property test checks that the two
agree for every choice of topics.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import TypeVar

from newsletter.errors import NewsletterError

T = TypeVar("T")
TEASER_NAME = "teaser"
ALL_NAME = "all"


class UnknownVariantError(NewsletterError):
    """A variant name that does not exist in the issue."""


@dataclass(frozen=True)
class VariantKey:
    """The summaries of one variant: bit ``i`` of ``mask`` is the issue's summary ``i + 1``."""

    mask: int
    count: int

    def __post_init__(self) -> None:
        if not 0 <= self.mask < (1 << self.count):
            raise ValueError(f"mask {self.mask} does not fit {self.count} summaries")

    @classmethod
    def everything(cls, count: int) -> VariantKey:
        """Every summary of an issue of ``count`` summaries."""
        return cls((1 << count) - 1, count)

    @classmethod
    def teaser(cls, count: int) -> VariantKey:
        """No summary: the teaser."""
        return cls(0, count)

    @classmethod
    def from_positions(cls, positions: Iterable[int], count: int) -> VariantKey:
        """The variant of the summaries at ``positions`` (1 is the first summary)."""
        mask = 0
        for p in positions:
            if not 1 <= p <= count:
                raise ValueError(f"position {p} is not a summary of {count}")
            mask |= 1 << (p - 1)
        return cls(mask, count)

    @classmethod
    def from_name(cls, name: str, count: int) -> VariantKey:
        """The variant called ``name`` ("all", "teaser", "s1+s3")."""
        if name == ALL_NAME:
            return cls.everything(count)
        if name == TEASER_NAME:
            return cls.teaser(count)
        parts = name.split("+")
        if all(p[:1] == "s" and p[1:].isdigit() for p in parts):
            positions = [int(p[1:]) for p in parts]
            if all(1 <= p <= count for p in positions):
                return cls.from_positions(positions, count)
        raise UnknownVariantError(
            f"no variant {name!r} in an issue of {count} summaries",
            hint='name it "all", "teaser" or by positions such as "s1+s3"',
        )

    @classmethod
    def from_keys(cls, chosen: Iterable[str], keys: Sequence[str]) -> VariantKey:
        """The variant holding the summaries whose keys are in ``chosen``."""
        wanted = set(chosen)
        return cls(sum(1 << i for i, k in enumerate(keys) if k in wanted), len(keys))

    @property
    def positions(self) -> tuple[int, ...]:
        """The positions of its summaries, 1 for the first summary of the issue."""
        return tuple(i + 1 for i in range(self.count) if self.mask & (1 << i))

    @property
    def is_teaser(self) -> bool:
        """True for the teaser (no summaries)."""
        return self.mask == 0

    @property
    def is_everything(self) -> bool:
        """True for the variant with every summary."""
        return self.mask == (1 << self.count) - 1 and self.count > 0

    @property
    def name(self) -> str:
        """``all``, ``teaser`` or the positions joined by ``+`` (``s1+s3``)."""
        if self.is_teaser:
            return TEASER_NAME
        if self.is_everything:
            return ALL_NAME
        return "+".join(f"s{p}" for p in self.positions)

    def pick(self, items: Sequence[T]) -> tuple[T, ...]:
        """The items (one per summary, in issue order) this variant holds."""
        return tuple(item for i, item in enumerate(items) if self.mask & (1 << i))

    def __str__(self) -> str:
        return self.name


def matching_mask(
    summary_topics: Sequence[frozenset[str]], topics: Iterable[str], all_topics: bool = False
) -> int:
    """The mask of the summaries whose topics meet ``topics`` (every one if ``all_topics``)."""
    if all_topics:
        return (1 << len(summary_topics)) - 1
    wanted = frozenset(topics)
    return sum(1 << i for i, slugs in enumerate(summary_topics) if slugs & wanted)


def choose_variant(
    summary_topics: Sequence[frozenset[str]],
    topics: Iterable[str],
    all_topics: bool = False,
    policy: str = "skip",
) -> VariantKey | None:
    """The variant a reader of ``topics`` (or of every topic) gets; None: nothing.

    When no summary matches, ``policy`` decides: ``skip`` sends nothing, ``full`` every
    summary, ``teaser`` the teaser.
    """
    count = len(summary_topics)
    mask = matching_mask(summary_topics, topics, all_topics)
    if mask:
        return VariantKey(mask, count)
    if policy == "full":
        return VariantKey.everything(count)
    if policy == "teaser":
        return VariantKey.teaser(count)
    if policy == "skip":
        return None
    raise ValueError(f"unknown no_match_policy {policy!r}")


def possible_variants(summary_topics: Sequence[frozenset[str]]) -> list[VariantKey]:
    """Every variant some choice of topics produces, largest first.

    A set S of summaries is possible when each of its summaries has a topic that no summary
    outside S has (pick exactly those topics). So there are at most 2^k - 1, fewer when
    summaries share all their topics.
    """
    count = len(summary_topics)
    out: list[VariantKey] = []
    for size in range(count, 0, -1):
        for chosen in combinations(range(count), size):
            others = [summary_topics[i] for i in range(count) if i not in chosen]
            outside = frozenset().union(*others)
            if all(summary_topics[i] - outside for i in chosen):
                out.append(VariantKey(sum(1 << i for i in chosen), count))
    return out
