"""Fixtures of the render tests: fixed settings, sample issues, small issues written inline."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from newsletter.config import Settings, load_settings
from newsletter.content.model import Issue
from newsletter.content.parser import load_issue, parse_issue

REPO = Path(__file__).resolve().parents[2]
SAMPLE_ISSUES = REPO / "issues"
GOLDEN = Path(__file__).resolve().parent / "golden"
# Tokens in golden files are stamped with this time (2026-09-01 00:00 UTC).
FIXED_TIME = 1_788_220_800

FIXED = {
    "secret_key": "golden-test-key-not-secret",
    "base_url": "https://news.example.org",
    "postal_address": "Research Practice Network; 1 Example Street; Exampletown EX1 2AB",
    "sender_name": "Research Practice Network",
    "newsletter_name": "Psychotherapy Research Digest",
}


@pytest.fixture
def make_settings() -> Callable[..., Settings]:
    """Settings with fixed key, base URL and address; keyword arguments override them."""

    def make(**overrides: object) -> Settings:
        return load_settings(overrides={**FIXED, **overrides})

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    """The fixed settings of the render tests (default templates, no config file)."""
    return make_settings()


def sample_issue(month: str) -> Issue:
    """One of the sample issues of issues/."""
    return load_issue(SAMPLE_ISSUES / f"{month}.md")


def summary_block(
    title: str,
    topics: str,
    body: str = "Body.",
    implications: str = "Do this.",
    citation: str | None = None,
    link: str | None = None,
) -> str:
    """The text of one summary of an issue file."""
    head = [f"## {title}"]
    if citation:
        head.append(f"Citation: {citation}")
    head.append(f"Topics: {topics}")
    if link:
        head.append(f"Link: {link}")
    return "\n".join(head) + f"\n\n{body}\n\n### Practice Implications\n\n{implications}\n"


def issue_text(
    *summaries: str, month: str = "2026-12", intro: str | None = None, subject: str | None = None
) -> str:
    """The text of an issue file with the given summary blocks."""
    front = [f"month: {month}", "status: draft"]
    if subject:
        front.append(f"subject: {subject}")
    if intro:
        front.append("intro: |")
        front.extend("  " + line for line in intro.splitlines())
    return "---\n" + "\n".join(front) + "\n---\n\n" + "\n".join(summaries)


def make_issue(text: str) -> Issue:
    """Parse issue text; fails the test with the problems if it is invalid."""
    result = parse_issue(text, "test.md")
    assert result.issue is not None, [p.format() for p in result.problems]
    return result.issue


@pytest.fixture
def kit() -> SimpleNamespace:
    """Helpers for writing issues inline (test modules cannot import conftest)."""
    return SimpleNamespace(
        summary_block=summary_block,
        issue_text=issue_text,
        make_issue=make_issue,
        sample_issue=sample_issue,
        GOLDEN=GOLDEN,
        FIXED_TIME=FIXED_TIME,
        SAMPLE_ISSUES=SAMPLE_ISSUES,
    )


@pytest.fixture
def overlapping_issue() -> Issue:
    """Three summaries on overlapping topics: S1 {empathy, training}, S2 {training,
    attachment}, S3 {attachment}."""
    return make_issue(
        issue_text(
            summary_block("First Study", "Empathy; Training"),
            summary_block("Second Study", "Training; Attachment"),
            summary_block("Third Study", "Attachment"),
        )
    )
