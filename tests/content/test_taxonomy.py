"""The taxonomy: 36 topics, stable slugs, forgiving lookup, helpful suggestions."""

from __future__ import annotations

import re

import pytest

from newsletter.content.taxonomy import load_taxonomy, resolve_research_type, slugify
from newsletter.errors import UnknownResearchTypeError, UnknownTopicError
from tests.plugin import REPO

SHARED = REPO.parent / "shared" / "taxonomy.txt"


def test_36_topics_with_unique_well_formed_slugs() -> None:
    tax = load_taxonomy()
    assert len(tax) == 36
    slugs = [t.slug for t in tax]
    assert len(set(slugs)) == 36
    assert all(re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", s) for s in slugs)


@pytest.mark.skipif(not SHARED.exists(), reason="shared/taxonomy.txt not beside the repo")
def test_packaged_taxonomy_matches_the_published_list() -> None:
    published = [line.strip() for line in SHARED.read_text().splitlines() if line.strip()]
    tax = load_taxonomy()
    assert [t.published or t.name for t in tax] == published


@pytest.mark.parametrize(
    "value",
    ["Adherance", "adherence", "ADHERENCE", "  Adherence ", "adherence"],
)
def test_adherence_accepts_both_spellings_and_displays_the_correct_one(value: str) -> None:
    topic = load_taxonomy().resolve(value)
    assert (topic.slug, topic.name, topic.published) == ("adherence", "Adherence", "Adherance")


@pytest.mark.parametrize(
    ("value", "slug"),
    [
        ("trauma-and-or-ptsd", "trauma-and-or-ptsd"),
        ("Trauma and/or PTSD", "trauma-and-or-ptsd"),
        ("trauma and/or ptsd", "trauma-and-or-ptsd"),
        ("Medications/Pharmacotherapy", "medications-pharmacotherapy"),
        ("attendance, attrition, and drop-out", "attendance-attrition-and-drop-out"),
        ("CBT", "cognitive-therapy-ct-and-cognitive-behavioural-therapy-cbt"),
        ("Psychodynamic Therapy (PDT)", "psychodynamic-therapy-pdt"),
    ],
)
def test_lookup_by_slug_name_or_alias(value: str, slug: str) -> None:
    assert load_taxonomy().resolve(value).slug == slug


def test_unknown_topic_suggests_close_names() -> None:
    with pytest.raises(UnknownTopicError) as info:
        load_taxonomy().resolve("Empaty")
    assert info.value.suggestions == ["Empathy"]
    assert "Empathy" in info.value.hint


def test_nothing_close_points_to_the_list() -> None:
    with pytest.raises(UnknownTopicError) as info:
        load_taxonomy().resolve("zzzzqqq")
    assert info.value.suggestions == []
    assert "newsletter topics list" in info.value.hint


def test_resolve_list_splits_on_semicolons_and_drops_repeats() -> None:
    topics = load_taxonomy().resolve_list("Empathy; empathy ; Attendance, Attrition, and Drop-Out;")
    assert [t.slug for t in topics] == ["empathy", "attendance-attrition-and-drop-out"]


@pytest.mark.parametrize(
    ("value", "slug"),
    [
        ("meta-analysis", "meta-analysis"),
        ("Meta-Analysis", "meta-analysis"),
        ("RCT", "randomized-controlled-trial"),
        ("randomised controlled trial", "randomized-controlled-trial"),
        ("book chapter", "narrative-review"),
        ("Qualitative study", "qualitative-study"),
        ("other", "other"),
    ],
)
def test_research_types(value: str, slug: str) -> None:
    assert resolve_research_type(value).slug == slug


def test_unknown_research_type_lists_the_vocabulary() -> None:
    with pytest.raises(UnknownResearchTypeError) as info:
        resolve_research_type("meta analysys")
    assert "meta-analysis" in info.value.hint


def test_slugify() -> None:
    assert slugify("Café — Ünïcode & Co.") == "cafe-unicode-co"
