"""The plain-text part reads well: one link numbering for the whole message, no line
broken inside a topic name or before a "[n]", summaries numbered as this reader gets
them, and never two blank lines in a row."""

from __future__ import annotations

import re

import pytest

from newsletter.render import MAILS, build_issue, render_mail
from newsletter.render.text import References, markdown_to_text
from tests.render.test_render_mail import SAMPLES
from tests.support.render import RecipientFields, personalise

READER = RecipientFields("sam@example.org", 7, "Sam", ("training", "therapist-factors"))
MONTHS = ["2026-09", "2026-10", "2026-11"]


def _texts(kit, make_settings):
    settings = make_settings(no_match_policy="teaser")
    for month in MONTHS:
        built = build_issue(kit.sample_issue(month), settings)
        for variant in built.variants.values():
            yield built.issue, variant, personalise(variant, READER, settings).text


def test_one_link_numbering_for_the_whole_message(kit, make_settings):
    for _, variant, text in _texts(kit, make_settings):
        listed = re.findall(r"^\[(\d+)\] (\S+)$", text, re.M)
        by_number: dict[str, str] = {}
        for number, url in listed:
            assert by_number.setdefault(number, url) == url, (variant.name, number)
        numbers = [int(n) for n in dict.fromkeys(n for n, _ in listed)]
        assert numbers == list(range(1, len(numbers) + 1)), variant.name  # 1, 2, 3, ...
        assert len(set(by_number.values())) == len(by_number)  # one number per address
        for used in re.findall(r"(?<!^)\[(\d+)\]", text, re.M):
            assert used in by_number


def test_no_line_breaks_inside_topic_names_or_before_a_number(kit, make_settings):
    for issue, variant, text in _texts(kit, make_settings):
        lines = text.splitlines()
        for line in lines:
            assert not re.match(r"^\s*\[\d+\](?! https?://)", line), line
        blocks, block = [], None
        for line in lines:  # a "Topics:" line and the indented lines that continue it
            if line.startswith("Topics: "):
                block = [line]
                blocks.append(block)
            elif block is not None and line.startswith("  "):
                block.append(line)
            else:
                block = None
        for summary, block in zip(variant.summaries, blocks, strict=True):
            for topic in summary.topics:  # each name whole on one line
                assert any(topic.name in line for line in block), (issue.month, topic.name)


def test_a_summary_is_numbered_as_the_reader_gets_it(kit, make_settings):
    settings = make_settings()
    built = build_issue(kit.sample_issue("2026-11"), settings)
    only_third = personalise(built.by_name("s3"), READER, settings).text
    assert "COMPARING PSYCHOTHERAPIES FOR ADULT DEPRESSION" in only_third
    assert not re.search(r"^\d\. ", only_third, re.M)  # one summary: no number at all
    first_and_third = personalise(built.by_name("s1+s3"), READER, settings).text
    assert "\n1. THE EFFICACY OF PSYCHODYNAMIC" in first_and_third
    assert "\n2. COMPARING PSYCHOTHERAPIES" in first_and_third
    assert "\n3. " not in first_and_third


def test_digests_have_no_runs_of_blank_lines(kit, make_settings):
    for _, variant, text in _texts(kit, make_settings):
        assert "\n\n\n" not in text, variant.name


@pytest.mark.parametrize("name", MAILS)
@pytest.mark.parametrize("recent", [True, False])
def test_one_off_mails_have_no_runs_of_blank_lines(settings, name, recent):
    subject, context = SAMPLES[name]
    if "recent" in context and not recent:
        context = {**context, "recent": []}
    text = render_mail(settings, name, subject, context).text
    assert "\n\n\n" not in text
    assert "\x02" not in text  # no glue left over
    listed = re.findall(r"^\[(\d+)\] ", text, re.M)
    assert len(listed) == len(set(listed))  # one numbering here too


def test_a_tight_list_stays_together_and_the_quote_bar_runs_through():
    text = markdown_to_text(
        "First paragraph.\n\n- Monitor the alliance\n- Repair ruptures early\n\nLast.",
        References(),
        indent="  | ",
    )
    assert text == (
        "  | First paragraph.\n"
        "  |\n"
        "  | - Monitor the alliance\n"
        "  | - Repair ruptures early\n"
        "  |\n"
        "  | Last."
    )


def test_a_link_number_stays_with_its_word():
    words = "word " * 13 + "a [link](https://example.org/x)"
    text = markdown_to_text(words, References(), width=72)
    assert "\n[1]" not in text and "link [1]" in text
