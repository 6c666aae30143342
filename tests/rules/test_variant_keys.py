"""Variant keys (newsletter/rules/variants.py): names, conversions, and which variants exist.

Pure functions. ``possible_variants`` must list exactly what ``choose_variant`` can give a
reader of some set of topics: a variant it leaves out is never rendered (the send stops
on a reader who needs it), one it adds is rendered for nobody.
"""

from __future__ import annotations

from itertools import chain, combinations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from newsletter.config import NO_MATCH_POLICIES
from newsletter.rules.variants import (
    UnknownVariantError,
    VariantKey,
    choose_variant,
    matching_mask,
    possible_variants,
)

# --- names -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mask", "count", "name"),
    [
        (0b111, 3, "all"),
        (0b1, 1, "all"),
        (0b1111, 4, "all"),
        (0, 3, "teaser"),
        (0, 1, "teaser"),
        (0b101, 3, "s1+s3"),
        (0b001, 3, "s1"),
        (0b100, 3, "s3"),
        (0b110, 3, "s2+s3"),
        (0b1011, 4, "s1+s2+s4"),
        (0b0111, 4, "s1+s2+s3"),
    ],
)
def test_names(mask: int, count: int, name: str) -> None:
    key = VariantKey(mask, count)
    assert key.name == name
    assert str(key) == name


@pytest.mark.parametrize("count", [1, 2, 3, 4])
def test_from_name_round_trips_every_mask(count: int) -> None:
    names = set()
    for mask in range(1 << count):
        key = VariantKey(mask, count)
        assert VariantKey.from_name(key.name, count) == key
        names.add(key.name)
    assert len(names) == 1 << count  # one name per variant, none shared


def test_the_named_constructors() -> None:
    assert VariantKey.from_name("all", 3) == VariantKey.everything(3) == VariantKey(7, 3)
    assert VariantKey.from_name("teaser", 3) == VariantKey.teaser(3) == VariantKey(0, 3)
    assert VariantKey.from_name("s1+s3", 3) == VariantKey(0b101, 3)


@pytest.mark.parametrize(
    ("name", "count"),
    [
        ("s4", 3),
        ("s0", 3),
        ("s1+s3", 2),
        ("s1+", 3),
        ("+s1", 3),
        ("s", 3),
        ("1", 3),
        ("S1", 3),
        ("s1 + s2", 3),
        ("everything", 3),
        ("All", 3),
        ("", 3),
        ("s-1", 3),
    ],
)
def test_from_name_refuses_unknown_names_with_a_hint(name: str, count: int) -> None:
    with pytest.raises(UnknownVariantError) as info:
        VariantKey.from_name(name, count)
    assert repr(name) in info.value.message
    assert f"{count} summaries" in info.value.message
    hint = info.value.hint or ""
    assert "all" in hint and "teaser" in hint and "s1+s3" in hint


# --- other constructors ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("positions", "count", "mask"),
    [([1, 3], 3, 0b101), ([2], 2, 0b10), ([], 3, 0), ([1, 2, 3, 4], 4, 0b1111), ([3, 1], 3, 5)],
)
def test_from_positions(positions: list[int], count: int, mask: int) -> None:
    key = VariantKey.from_positions(positions, count)
    assert key == VariantKey(mask, count)
    assert key.positions == tuple(sorted(set(positions)))


@pytest.mark.parametrize(("positions", "count"), [([0], 3), ([4], 3), ([1, 5], 4), ([-1], 2)])
def test_from_positions_refuses_positions_outside_the_issue(
    positions: list[int], count: int
) -> None:
    with pytest.raises(ValueError, match="is not a summary of"):
        VariantKey.from_positions(positions, count)


def test_from_keys_and_pick() -> None:
    keys = ("alliance", "feedback", "training")
    key = VariantKey.from_keys(["training", "alliance"], keys)
    assert key == VariantKey(0b101, 3)
    assert key.pick(keys) == ("alliance", "training")
    assert key.pick(["A", "B", "C"]) == ("A", "C")
    assert VariantKey.from_keys([], keys).is_teaser
    assert VariantKey.from_keys(["nope"], keys) == VariantKey.teaser(3)
    assert VariantKey.from_keys(keys, keys).is_everything
    assert VariantKey.teaser(3).pick(keys) == ()
    assert VariantKey.everything(3).pick(keys) == keys


@pytest.mark.parametrize(("mask", "count"), [(8, 3), (-1, 3), (1, 0), (16, 4), (2, 1)])
def test_a_mask_that_does_not_fit_the_issue_is_refused(mask: int, count: int) -> None:
    with pytest.raises(ValueError, match="does not fit"):
        VariantKey(mask, count)


def test_teaser_and_everything() -> None:
    assert VariantKey(0, 2).is_teaser and not VariantKey(0, 2).is_everything
    assert VariantKey(3, 2).is_everything and not VariantKey(3, 2).is_teaser
    assert not VariantKey(1, 2).is_teaser and not VariantKey(1, 2).is_everything
    assert VariantKey(0b1010, 4).positions == (2, 4)


# --- which variants exist ----------------------------------------------------------------

POOL = ("alliance", "empathy", "feedback", "training", "attachment")


@st.composite
def issues(draw: st.DrawFn) -> tuple[frozenset[str], ...]:
    """1 to 4 summaries, each with 1 to 3 topics from a small pool (so they overlap)."""
    k = draw(st.integers(1, 4))
    return tuple(
        frozenset(draw(st.lists(st.sampled_from(POOL), min_size=1, max_size=3, unique=True)))
        for _ in range(k)
    )


def every_choice(summary_topics: tuple[frozenset[str], ...], policy: str) -> set[VariantKey]:
    """What choose_variant gives over every subset of topics (and an all-topics reader)."""
    universe = sorted(frozenset().union(*summary_topics) | {"unrelated-topic"})
    subsets = chain.from_iterable(combinations(universe, n) for n in range(len(universe) + 1))
    got = {choose_variant(summary_topics, s, False, policy) for s in subsets}
    got.add(choose_variant(summary_topics, (), True, policy))
    got.discard(None)
    return got


@given(issues())
def test_possible_variants_are_exactly_what_readers_can_get(summary_topics) -> None:
    possible = possible_variants(summary_topics)
    assert len(possible) == len(set(possible)), "no variant listed twice"
    assert set(possible) == every_choice(summary_topics, "skip")
    assert all(k.count == len(summary_topics) for k in possible)
    sizes = [len(k.positions) for k in possible]
    assert sizes == sorted(sizes, reverse=True), "largest first"
    assert possible[0] == VariantKey.everything(len(summary_topics))


@given(issues())
def test_the_no_match_policy_adds_only_the_teaser(summary_topics) -> None:
    possible = set(possible_variants(summary_topics))
    k = len(summary_topics)
    assert every_choice(summary_topics, "full") == possible
    assert every_choice(summary_topics, "teaser") == possible | {VariantKey.teaser(k)}


@given(issues(), st.lists(st.sampled_from(POOL), unique=True))
def test_choose_variant_follows_the_matching_summaries(summary_topics, topics) -> None:
    k = len(summary_topics)
    wanted = set(topics)
    expected = [i for i, slugs in enumerate(summary_topics) if slugs & wanted]
    mask = matching_mask(summary_topics, topics)
    assert mask == sum(1 << i for i in expected)
    for policy in NO_MATCH_POLICIES:
        key = choose_variant(summary_topics, topics, False, policy)
        if expected:
            assert key == VariantKey(mask, k)
            assert key.positions == tuple(i + 1 for i in expected)
        else:
            assert (
                key
                == {
                    "skip": None,
                    "full": VariantKey.everything(k),
                    "teaser": VariantKey.teaser(k),
                }[policy]
            )
        # Every topic chosen: every summary, whatever the policy.
        assert choose_variant(summary_topics, topics, True, policy) == VariantKey.everything(k)


def test_summaries_sharing_all_their_topics_have_fewer_variants() -> None:
    # s2's topics are a subset of s1's: no reader gets s2 without s1.
    same = (frozenset({"alliance", "empathy"}), frozenset({"empathy"}))
    names = [k.name for k in possible_variants(same)]
    assert names == ["all", "s1"]


def test_an_unknown_policy_is_an_error_for_a_reader_with_no_match() -> None:
    topics = (frozenset({"alliance"}),)
    with pytest.raises(ValueError, match="no_match_policy"):
        choose_variant(topics, ["training"], policy="sometimes")
