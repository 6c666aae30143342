"""Which summaries a subscriber gets; which variants are built; the no-match policies."""

from __future__ import annotations

from itertools import chain, combinations

import pytest

from newsletter.render import build_issue
from newsletter.rules.variants import VariantKey, choose_variant, possible_variants
from newsletter.services import App
from newsletter.services.issues import preview_recipient, variant_for

KEYS = ("first-study", "second-study", "third-study")
TEASER = VariantKey.teaser(3)


def keyset(*numbers: int) -> VariantKey:
    return VariantKey.from_positions(numbers, 3)


def possible_variant_keys(issue) -> list[VariantKey]:
    return possible_variants(issue.summary_topics)


def choose_variant_key(issue, topics, all_topics=False, policy="skip") -> VariantKey | None:
    return choose_variant(issue.summary_topics, topics, all_topics, policy)


def test_possible_sets_of_overlapping_summaries(overlapping_issue):
    # S1 {empathy, training}, S2 {training, attachment}, S3 {attachment}: no choice of
    # topics gives S2 alone, S3 alone, or S1+S3 (S3's only topic drags S2 in).
    assert set(possible_variant_keys(overlapping_issue)) == {
        keyset(1, 2, 3),
        keyset(1, 2),
        keyset(2, 3),
        keyset(1),
    }


def test_possible_sets_are_exactly_what_subscribers_can_get(overlapping_issue):
    topics = ["empathy", "training", "attachment", "adherence"]
    got = {
        choose_variant_key(overlapping_issue, chosen)
        for chosen in chain.from_iterable(combinations(topics, n) for n in range(5))
    }
    got.discard(None)
    assert got == set(possible_variant_keys(overlapping_issue))


@pytest.mark.parametrize(
    ("topics", "expected"),
    [
        (["empathy"], (1,)),
        (["training"], (1, 2)),
        (["attachment"], (2, 3)),
        (["empathy", "attachment"], (1, 2, 3)),
    ],
)
def test_choose_variant_key(overlapping_issue, topics, expected):
    assert choose_variant_key(overlapping_issue, topics) == keyset(*expected)


def test_all_topics_gets_everything(overlapping_issue):
    assert choose_variant_key(overlapping_issue, [], all_topics=True) == keyset(1, 2, 3)


def test_no_match_policies(overlapping_issue):
    assert choose_variant_key(overlapping_issue, ["adherence"], policy="skip") is None
    assert choose_variant_key(overlapping_issue, ["adherence"], policy="full") == keyset(1, 2, 3)
    assert choose_variant_key(overlapping_issue, ["adherence"], policy="teaser") == TEASER


def test_build_renders_each_possible_variant_once(overlapping_issue, settings):
    built = build_issue(overlapping_issue, settings)
    assert set(built.variants) == set(possible_variant_keys(overlapping_issue))
    for key, variant in built.variants.items():
        assert tuple(s.key for s in variant.summaries) == key.pick(KEYS)
        html = variant.html.fill({f: "x" for f in variant.html.fields})
        for n, title in enumerate(("First Study", "Second Study", "Third Study"), 1):
            assert (f">{title}</h2>" in html) == (n in key.positions)


def test_skip_policy_sends_nothing(overlapping_issue, make_settings):
    built = build_issue(overlapping_issue, make_settings(no_match_policy="skip"))
    assert built.variant_for(["adherence"]) is None
    assert TEASER not in built.variants


def test_full_policy_sends_everything(overlapping_issue, make_settings):
    built = build_issue(overlapping_issue, make_settings(no_match_policy="full"))
    assert built.variant_for(["adherence"]).key == keyset(1, 2, 3)


def test_teaser_policy_has_its_own_variant(overlapping_issue, make_settings):
    settings = make_settings(no_match_policy="teaser")
    built = build_issue(overlapping_issue, settings)
    teaser = built.variant_for(["adherence"])
    assert teaser is built.variants[TEASER] and teaser.is_teaser and teaser.name == "teaser"
    html = teaser.html.fill({f: "x" for f in teaser.html.fields})
    text = teaser.text.fill({f: "x" for f in teaser.text.fields})
    for title in ("First Study", "Second Study", "Third Study"):
        assert title in html and title in text
    # Titles only: no summary bodies, no practice implications.
    assert "Practice Implications".upper() not in text and "Do this." not in html


def test_also_in_issue_lists_the_others_and_can_be_switched_off(overlapping_issue, make_settings):
    built = build_issue(overlapping_issue, make_settings())
    v = built.variants[keyset(1)]
    text = v.text.fill({f: "x" for f in v.text.fields})
    assert "ALSO IN THIS ISSUE" in text
    assert "https://news.example.org/archive/2026-12/second-study" in text
    assert "https://news.example.org/archive/2026-12/third-study" in text
    html = v.html.fill({f: "x" for f in v.html.fields})
    assert 'href="https://news.example.org/archive/2026-12/third-study"' in html
    off = build_issue(overlapping_issue, make_settings(also_in_issue=False)).variants[keyset(1)]
    assert "ALSO IN THIS ISSUE" not in off.text.fill({f: "x" for f in off.text.fields})
    assert "third-study" not in off.html.fill({f: "x" for f in off.html.fields})


def test_preview_skip_policy_error_is_clear(overlapping_issue, settings):
    built = build_issue(overlapping_issue, settings)
    with pytest.raises(Exception, match="no_match_policy = skip"):
        variant_for(built, preview_recipient(App(settings), "Adherence"))
