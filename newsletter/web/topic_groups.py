"""The 36 topics grouped for scanning on the preference and sign-up pages.

Every topic of the taxonomy is in exactly one group (a test checks it); a topic added to
``taxonomy.toml`` but not here lands in the last group, so nothing is ever hidden.
"""

from __future__ import annotations

from dataclasses import dataclass

from newsletter.content.model import Topic
from newsletter.content.taxonomy import load_taxonomy

# (group name, slugs in display order)
TOPIC_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "Conditions and populations",
        (
            "anxiety-disorders",
            "depression-and-depressive-symptoms",
            "personality-disorders",
            "trauma-and-or-ptsd",
            "suicide-and-crisis-intervention",
            "illness-and-medical-comorbidities",
        ),
    ),
    (
        "Treatments and approaches",
        (
            "cognitive-therapy-ct-and-cognitive-behavioural-therapy-cbt",
            "psychodynamic-therapy-pdt",
            "interpersonal-psychotherapy-ipt",
            "group-psychotherapy",
            "combination-therapy",
            "medications-pharmacotherapy",
            "efficacy-of-treatments",
            "placebo-effect",
        ),
    ),
    (
        "Relationship and process",
        (
            "alliance-and-therapeutic-relationship",
            "empathy",
            "common-factors",
            "resistance-and-reactance",
            "transference-and-countertransference",
            "termination",
            "treatment-length-and-frequency",
        ),
    ),
    (
        "Clients and therapists",
        (
            "client-factors",
            "client-preferences",
            "attachment",
            "adherence",
            "attendance-attrition-and-drop-out",
            "therapist-factors",
            "training",
            "self-reflection-and-awareness",
        ),
    ),
    (
        "Outcomes and research",
        (
            "outcomes-and-deterioration",
            "long-term-outcomes",
            "cost-effectiveness",
            "feedback-and-progress-monitoring",
            "practice-based-research-and-practice-research-networks",
            "neuroscience-and-brain",
            "miscellaneous",
        ),
    ),
)


@dataclass(frozen=True)
class TopicGroup:
    """One labelled group of topics, for a fieldset of checkboxes or an optgroup."""

    name: str
    topics: tuple[Topic, ...]


def topic_groups() -> list[TopicGroup]:
    """The groups with their Topic objects; topics missing from every group go last."""
    taxonomy = load_taxonomy()
    placed: set[str] = set()
    groups = []
    for name, slugs in TOPIC_GROUPS:
        topics = tuple(taxonomy.by_slug[s] for s in slugs if s in taxonomy.by_slug)
        placed.update(t.slug for t in topics)
        groups.append(TopicGroup(name, topics))
    rest = tuple(t for t in taxonomy if t.slug not in placed)
    if rest:
        last = groups[-1]
        groups[-1] = TopicGroup(last.name, last.topics + rest)
    return groups
