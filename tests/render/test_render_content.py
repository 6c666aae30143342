"""Content is data: escaping, text wrapping, email quality rules."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from newsletter.content.model import MAX_SUBJECT
from newsletter.render import build_issue
from newsletter.rules.variants import VariantKey
from newsletter.services.issues import HTML_SIZE_LIMIT
from tests.support.render import RecipientFields, html_size, personalise

HOSTILE = "{{ 7*7 }} {% if true %}yes{% endif %} <script>alert(1)</script> & <b>bold</b>"


@pytest.fixture
def hostile_issue(kit):
    return kit.make_issue(
        kit.issue_text(
            kit.summary_block(
                "Title {{ 7*7 }} <script>x</script>",
                "Empathy",
                body=HOSTILE,
                implications=HOSTILE,
                citation="Author, A. (2020). {{ config }} <i>t</i>. J, 1, 2-3.",
            ),
            intro=HOSTILE,
        )
    )


def test_content_is_never_evaluated_or_trusted(hostile_issue, settings):
    variant = build_issue(hostile_issue, settings).variant_for([], all_topics=True)
    msg = personalise(variant, RecipientFields("a@example.org", name="Ann"), settings)
    assert "{{ 7*7 }}" in msg.html and "{{ 7*7 }}" in msg.text
    assert "{% if true %}yes{% endif %}" in msg.html and "{% if true %}" in msg.text
    assert "{{ config }}" in msg.html
    assert "<script" not in msg.html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in msg.html
    assert "<b>bold</b>" not in msg.html and "&lt;b&gt;bold&lt;/b&gt;" in msg.html
    assert "<i>t</i>" not in msg.html
    # The text part shows content as written (nothing to escape in plain text).
    assert "<script>alert(1)</script>" in msg.text


@pytest.mark.parametrize("name", ["<Ann>", "Tom & Jerry", 'Jo "<img src=x>"'])
def test_names_are_escaped_in_html_and_kept_in_text(overlapping_issue, settings, name):
    variant = build_issue(overlapping_issue, settings).variant_for([], all_topics=True)
    msg = personalise(variant, RecipientFields("a@example.org", name=name), settings)
    first = name.split()[0]
    assert f"Dear {first}," in msg.text
    escaped = first.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    escaped = escaped.replace('"', "&quot;")
    assert f"Dear {escaped}," in msg.html
    assert "<img" not in msg.html and "<Ann>" not in msg.html


@pytest.mark.parametrize(
    ("name", "greeting"),
    [
        (None, "colleague"),
        ("", "colleague"),
        ("  ", "colleague"),
        ("Maria Lopez", "Maria"),
        ("Dr. Maria Lopez", "Dr. Lopez"),
        ("Dr.", "colleague"),
    ],
)
def test_first_name_fallback(overlapping_issue, settings, name, greeting):
    variant = build_issue(overlapping_issue, settings).variant_for([], all_topics=True)
    msg = personalise(variant, RecipientFields("a@example.org", name=name), settings)
    assert f"Dear {greeting}," in msg.text


def _is_reference_line(line: str) -> bool:
    """A numbered reference, or an address alone on its line (never wrapped)."""
    return bool(re.match(r"^(\[\d+\] |  )(https?://)\S+$", line))


@pytest.mark.parametrize("month", ["2026-09", "2026-10", "2026-11"])
def test_text_is_wrapped_at_72_with_references(kit, settings, month):
    built = build_issue(kit.sample_issue(month), settings)
    for variant in built.variants.values():
        msg = personalise(
            variant,
            RecipientFields("someone@example.org", 1, "Sam", ("empathy", "training")),
            settings,
        )
        for line in msg.text.splitlines():
            assert len(line) <= 72 or _is_reference_line(line), line
        # Every [n] in a section is listed at the end of that section.
        for section in re.split(r"\n[-=]{72}\n", msg.text):
            used = set(re.findall(r"(?<!^)\[(\d+)\]", section, re.M))
            listed = set(re.findall(r"^\[(\d+)\] ", section, re.M))
            assert used <= listed, section


def test_markdown_links_become_numbered_references(kit, settings):
    issue = kit.make_issue(
        kit.issue_text(
            kit.summary_block(
                "Linked",
                "Empathy",
                body="See [the trial](https://example.org/trial) and [data](https://example.org/d).",
                link="https://doi.org/10.1/x",
            )
        )
    )
    v = build_issue(issue, settings).variant_for([], all_topics=True)
    text = v.text.fill({f: "x" for f in v.text.fields})
    assert "See the trial [1] and data [2]." in text
    assert "[1] https://example.org/trial\n[2] https://example.org/d" in text
    assert "Read the article [3]" in text and "[3] https://doi.org/10.1/x" in text


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.metas: dict[str, str] = {}
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "a" and "href" in a:
            self.hrefs.append(a["href"])
        if tag == "meta" and "name" in a:
            self.metas[a["name"]] = a.get("content", "")
        self._in_title = tag == "title"

    def handle_data(self, data):
        if self._in_title:
            self.title += data

    def handle_endtag(self, tag):
        self._in_title = False


@pytest.mark.parametrize("month", ["2026-09", "2026-10", "2026-11"])
def test_email_quality(kit, make_settings, month):
    settings = make_settings(no_match_policy="teaser")
    built = build_issue(kit.sample_issue(month), settings)
    for variant in built.variants.values():
        assert html_size(variant, settings) < HTML_SIZE_LIMIT
        assert 0 < len(variant.subject) <= MAX_SUBJECT
        msg = personalise(
            variant, RecipientFields("a@example.org", 3, "Ann", ("empathy",)), settings
        )
        assert msg.html.startswith('<!doctype html><html lang="en"')
        page = _Collector()
        page.feed(msg.html)
        assert page.title == variant.subject
        assert page.metas.get("color-scheme") == "light dark"
        assert "prefers-color-scheme: dark" in msg.html
        assert 'style="display:none;' in msg.html  # hidden preheader
        assert page.hrefs
        for href in page.hrefs:
            assert href.startswith(("https://", "http://")), href
        for path in ("/preferences/", "/unsubscribe/"):
            assert any(path in h for h in page.hrefs)
        if not variant.is_teaser:
            # Under each summary: links for the reader's own topics only (Ann follows
            # Empathy), or, for a summary they got without one, a link to the preferences.
            assert msg.html.count("Fewer emails") == len(variant.summaries)
            topic_links = [h for h in page.hrefs if "/topic/" in h]
            assert all(h.endswith("/empathy") for h in topic_links)
            assert bool(topic_links) == any("empathy" in t for t in variant.summary_topics.values())
        assert "Exampletown EX1 2AB" in msg.html and "Exampletown EX1 2AB" in msg.text


def test_default_subject_and_variant_subjects(kit, settings):
    issue = kit.sample_issue("2026-10")  # no subject in the front matter
    built = build_issue(issue, settings)
    everything = VariantKey.everything(len(issue.summaries))
    assert built.variants[everything].subject == issue.effective_subject
    only_third = built.variant_for(["anxiety-disorders"])
    assert only_third.subject == issue.summaries[2].title


def test_footer_lists_the_readers_topics(overlapping_issue, settings):
    variant = build_issue(overlapping_issue, settings).variant_for(["empathy", "training"])
    msg = personalise(
        variant, RecipientFields("a@example.org", 9, None, ("empathy", "training")), settings
    )
    assert "Your topics: Empathy; Training." in msg.html
    assert "Empathy; Training" in msg.text
    everything = personalise(
        variant, RecipientFields("a@example.org", 9, None, (), all_topics=True), settings
    )
    assert "Your topics: all topics." in everything.html
