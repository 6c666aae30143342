"""The issue file parser: one sample file per edge case, named for the case."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.content.parser import load_issue, parse_issue, read_issue_file
from newsletter.errors import IssueFormatError, IssueNotFoundError
from tests.plugin import FIXTURES, SAMPLE_ISSUES

CASES = FIXTURES / "issues"


def problems(name: str) -> list[tuple[int, str, str]]:
    """(line, severity, message) of a fixture, ignoring the file-name warning."""
    result = read_issue_file(CASES / name)
    return [
        (p.line, p.severity, p.message)
        for p in result.problems
        if "is not YYYY-MM.md" not in p.message
    ]


def errors(name: str) -> list[tuple[int, str]]:
    return [(line, msg) for line, sev, msg in problems(name) if sev == "error"]


def test_valid_issue_parses_into_dataclasses() -> None:
    issue = read_issue_file(CASES / "valid_two_summaries.md").issue
    assert issue is not None
    assert issue.month == "2026-12"
    assert issue.status == "ready"
    assert issue.subject == "Two studies"
    assert issue.intro == "A short *intro*."
    first, second = issue.summaries
    assert first.title == "First study"
    assert first.key == "first-study"
    assert first.citation == "Doe, J. (2024). A study. Journal, 1(2), 3-4."
    assert [t.slug for t in first.topics] == ["empathy", "therapist-factors"]
    assert first.research is not None and first.research.slug == "randomized-controlled-trial"
    assert first.link == "https://doi.org/10.1000/1"
    assert first.body == "First body with a [link](https://example.org/a)."
    assert first.implications == "First implications."
    assert first.line == 8
    assert second.citation is None and second.link is None
    assert second.research is not None and second.research.slug == "meta-analysis"
    assert issue.month_name == "December 2026"


@pytest.mark.parametrize("name", ["bom.md", "crlf_line_endings.md"])
def test_bom_and_crlf_parse_like_the_plain_file(name: str) -> None:
    plain = read_issue_file(CASES / "valid_two_summaries.md").issue
    other = read_issue_file(CASES / name).issue
    assert other is not None
    assert other.summaries == plain.summaries
    assert other.subject == plain.subject


def test_non_utf8_file_is_one_clear_error_on_the_right_line() -> None:
    result = read_issue_file(CASES / "latin1_encoding.md")
    assert result.issue is None
    [p] = result.problems
    assert (p.line, p.severity) == (5, "error")
    assert "not UTF-8" in p.message and "0xe9" in p.message
    assert "UTF-8" in p.hint


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("missing_front_matter.md", [(1, "missing front matter")]),
        ("unclosed_front_matter.md", [(1, "front matter is not closed")]),
        ("bad_yaml.md", [(3, "front matter is not valid YAML")]),
        ("unknown_front_key.md", [(3, "unknown front matter key 'stauts'")]),
        ("unknown_topic.md", [(6, "unknown topic 'Therapeutic Aliance'")]),
        ("comma_instead_of_semicolon.md", [(6, "unknown topic 'Empathy, Training'")]),
        ("missing_topics.md", [(5, "has no 'Topics:' line")]),
        ("missing_practice_implications.md", [(5, "no '### Practice Implications' section")]),
        (
            "empty_sections.md",
            [
                (3, "intro is empty"),
                (6, "summary 'A study' has no text"),
                (9, "'Practice Implications' section is empty"),
            ],
        ),
        ("unknown_metadata_key.md", [(7, "unknown metadata key 'Citaton'")]),
        ("citation_without_year.md", [(6, "citation has no year in parentheses")]),
        (
            "bad_links.md",
            [
                (7, "link 'ftp://example.org/paper.pdf' is not an http(s) address"),
                (9, "link 'paper.html' is not an http(s) address"),
            ],
        ),
        ("too_many_summaries.md", [(45, "5 summaries; an issue holds at most 4")]),
        (
            "text_before_first_summary.md",
            [(5, "text before the first summary"), (7, "a '# ' heading is not part")],
        ),
    ],
)
def test_each_mistake_is_reported_on_its_line(name: str, expected: list[tuple[int, str]]) -> None:
    found = errors(name)
    assert len(found) == len(expected), found
    for (line, message), (want_line, want_text) in zip(found, expected, strict=True):
        assert line == want_line, (message, found)
        assert want_text in message


def test_several_planted_mistakes_are_all_reported_in_one_run() -> None:
    found = errors("several_mistakes.md")
    assert [line for line, _ in found] == [2, 8, 17, 19, 23]
    messages = [m for _, m in found]
    assert "month '2026-13' is not a valid month" in messages[0]
    assert "unknown topic 'Therapist Factorz'" in messages[1]
    assert "no '### Practice Implications' section" in messages[2]
    assert "'www.example.org/paper' is not an http(s) address" in messages[3]
    assert "duplicate title 'Alliance and Outcome' (first at line 6)" in messages[4]


def test_unknown_topic_suggests_the_closest_name() -> None:
    result = read_issue_file(CASES / "several_mistakes.md")
    [p] = [p for p in result.problems if "Factorz" in p.message]
    assert p.hint.startswith("did you mean 'Therapist Factors'")


def test_published_spelling_aliases_and_commas_in_names() -> None:
    result = read_issue_file(CASES / "adherance_published_spelling.md")
    assert result.issue is not None
    [summary] = result.issue.summaries
    assert [t.slug for t in summary.topics] == [
        "adherence",
        "attendance-attrition-and-drop-out",
        "cognitive-therapy-ct-and-cognitive-behavioural-therapy-cbt",
    ]
    assert summary.topics[0].name == "Adherence"
    assert (6, "warning", "topic 'Adherence' is listed twice") in problems(
        "adherance_published_spelling.md"
    )


def test_comments_are_dropped_and_raw_html_is_kept_as_text() -> None:
    issue = read_issue_file(CASES / "comments_and_raw_html.md").issue
    assert issue is not None
    [summary] = issue.summaries  # the '## Not a summary' inside the comment is ignored
    assert summary.line == 10
    assert summary.title == "A study <b>bold</b>"
    assert "<script>alert(1)</script> and {{ 7*7 }}" in summary.body


def test_one_summary_is_only_a_warning() -> None:
    assert (5, "warning", "1 summary; issues usually have 2 or 3") in problems("unknown_topic.md")


def test_month_must_match_the_file_name(tmp_path: Path) -> None:
    text = (CASES / "valid_two_summaries.md").read_text()
    path = tmp_path / "2026-11.md"
    path.write_text(text)
    result = read_issue_file(path)
    assert [(p.line, p.message) for p in result.errors] == [
        (2, "month 2026-12 does not match the file name 2026-11.md")
    ]


def test_load_issue_raises_format_error_listing_every_problem() -> None:
    with pytest.raises(IssueFormatError) as info:
        load_issue(CASES / "several_mistakes.md")
    assert len([p for p in info.value.problems if p.severity == "error"]) == 5
    assert "several_mistakes.md:2: error:" in str(info.value)


def test_load_issue_of_a_missing_file_says_how_to_create_it(tmp_path: Path) -> None:
    with pytest.raises(IssueNotFoundError) as info:
        load_issue(tmp_path / "2027-01.md")
    assert "newsletter issue new 2027-01" in info.value.hint


@pytest.mark.parametrize("path", sorted(SAMPLE_ISSUES.glob("*.md")), ids=lambda p: p.name)
def test_sample_issues_are_valid_without_warnings(path: Path) -> None:
    result = read_issue_file(path)
    assert result.problems == []
    assert result.issue is not None and 2 <= len(result.issue.summaries) <= 3


def test_default_subject_is_built_from_titles_within_78_characters() -> None:
    text = (CASES / "valid_two_summaries.md").read_text().replace("subject: Two studies\n", "")
    issue = parse_issue(text).issue
    assert issue is not None
    assert issue.subject is None
    assert issue.effective_subject == "First study; Second study"
    long = text.replace("## First study", "## " + "Very long title words " * 6)
    issue = parse_issue(long).issue
    assert issue is not None
    assert len(issue.effective_subject) <= 78
    assert issue.effective_subject.endswith("…") or "more" in issue.effective_subject


def test_a_published_back_issue_may_hold_more_than_four_summaries() -> None:
    text = (CASES / "too_many_summaries.md").read_text()
    result = parse_issue(text.replace("month: 2026-12\n", "month: 2026-12\nstatus: published\n"))
    assert result.issue is not None and len(result.issue.summaries) == 5
    assert [p.severity for p in result.problems] == ["warning"]


# --- hostile content: control characters, deep nesting, huge files ---------------------

VALID_TEXT = (CASES / "valid_two_summaries.md").read_text()


def _errors_of(text: str) -> list[tuple[int, str]]:
    result = parse_issue(text, "issues/2026-12.md")
    assert all(p.hint for p in result.errors)
    return [(p.line, p.message) for p in result.errors]


@pytest.mark.parametrize(
    ("old", "new", "line", "message"),
    [
        ("First body", "First\x00 body", 14, "control character U+0000 at column 6"),
        ("Implications text.", "Implications\x1b[31m text.", 28, "U+001B at column 13"),
        ("## Second study", "## Second\x07 study", 20, "U+0007"),
        ("First implications.", "First\x0cimplications.", 18, "U+000C"),
    ],
)
def test_control_characters_are_errors_on_their_line(
    old: str, new: str, line: int, message: str
) -> None:
    found = _errors_of(VALID_TEXT.replace(old, new))
    assert len(found) == 1 and found[0][0] == line and message in found[0][1], found


def test_tabs_and_crlf_are_not_control_character_errors() -> None:
    text = VALID_TEXT.replace("Body text.", "Body\ttext.").replace("\n", "\r\n")
    assert _errors_of(text) == []


def test_many_control_characters_are_summed_up() -> None:
    text = VALID_TEXT.replace("Body text.", "\n".join(["a\x01"] * 30))
    found = [(n, m) for n, m in _errors_of(text) if "control character" in m]
    assert len(found) == 11
    assert "20 more lines hold control characters" in found[-1][1]


@pytest.mark.parametrize(
    ("deep", "line"),
    [
        ("> " * 25 + "deep", 26),  # "Body text." is line 24
        ("\n".join("  " * i + "- item" for i in range(12)), 26 + 9),  # the 10th list
    ],
)
def test_markdown_nested_too_deep_is_an_error_not_silently_dropped(deep: str, line: int) -> None:
    text = VALID_TEXT.replace("Body text.", "Body text.\n\n" + deep + "\n\nThe rest.")
    found = [(n, m) for n, m in _errors_of(text) if "nested too deep" in m]
    assert found and found[0][0] == line, _errors_of(text)


def test_markdown_nested_within_the_limit_is_fine() -> None:
    text = VALID_TEXT.replace("Body text.", "Body text.\n\n" + "> " * 15 + "deep enough")
    assert _errors_of(text) == []
    text = VALID_TEXT.replace("intro: A short *intro*.", 'intro: "' + "> " * 30 + 'x"')
    assert any(n == 4 and "nested too deep" in m for n, m in _errors_of(text))


def test_a_file_over_the_size_limit_is_refused_before_parsing(tmp_path: Path) -> None:
    from newsletter.content.parser import MAX_FILE_BYTES

    path = tmp_path / "2026-12.md"
    path.write_text(VALID_TEXT + "x" * MAX_FILE_BYTES)
    [problem] = read_issue_file(path).problems
    assert problem.line == 1 and "larger than 1 MB" in problem.message and problem.hint
    with pytest.raises(IssueFormatError, match="larger than 1 MB"):
        load_issue(path)
    path.write_text(VALID_TEXT + "\n" + "x" * (MAX_FILE_BYTES - len(VALID_TEXT) - 10) + "\n")
    assert "larger than" not in str(read_issue_file(path).problems)


def test_front_matter_lists_are_errors_and_never_built() -> None:
    """YAML aliases can make a list exponentially large: it is refused, not expanded."""
    levels = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for i in range(1, 6):
        previous, name = chr(ord("a") + i - 1), chr(ord("a") + i)
        levels.append(f"{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]")
    text = VALID_TEXT.replace("month: 2026-12", "\n".join(levels) + "\nmonth: *f")
    found = _errors_of(text)
    month_line = 2 + len(levels)
    assert (month_line, "'month' must be a single value, not a list or mapping") in found
    assert not any("front matter has no 'month'" in m for _, m in found)


# --- suggestions of the archive import ------------------------------------------------


def test_suggested_topics_count_but_are_reported_until_confirmed() -> None:
    result = read_issue_file(CASES / "suggested_topics.md")
    assert result.errors == []
    first, second = result.issue.summaries
    assert [t.slug for t in first.topics] == [
        "alliance-and-therapeutic-relationship",
        "client-preferences",
        "attendance-attrition-and-drop-out",
    ]
    assert [t.slug for t in first.suggested_topics] == [
        "client-preferences",
        "attendance-attrition-and-drop-out",
    ]
    assert first.research is not None and first.research.slug == "meta-analysis"
    assert first.research_suggested
    assert not second.suggested_topics and not second.research_suggested
    warnings = [
        (p.line, p.message, p.hint) for p in result.warnings if "YYYY-MM.md" not in p.message
    ]
    assert [(line, message) for line, message, _ in warnings] == [
        (
            9,
            "topics suggested by the archive import, not confirmed: Client Preferences; "
            "Attendance, Attrition, and Drop-Out",
        ),
        (10, "research type suggested by the archive import, not confirmed: Meta-analysis"),
    ]
    assert "rename 'Topics-Suggested:' to 'Topics:'" in warnings[0][2]
    assert "rename 'Research-Suggested:' to 'Research:'" in warnings[1][2]
    assert "newsletter issue accept-suggestions" in warnings[0][2]


def test_a_ready_issue_may_not_be_sent_with_guessed_topics() -> None:
    text = (CASES / "suggested_topics.md").read_text("utf-8")
    result = parse_issue(text.replace("status: published", "status: ready"), "2019-02.md")
    assert result.issue is None
    assert [(p.line, p.message.split(":")[0]) for p in result.errors] == [
        (9, "suggested topics not confirmed in a ready issue"),
        (10, "suggested research type not confirmed in a ready issue"),
    ]


@pytest.mark.parametrize(
    ("old", "new", "line", "message"),
    [
        (
            "Topics: Empathy\n",
            "Topics-Suggested: Empathy\nResearch-Suggested: survey\n",
            20,
            "both 'Research:' (line 21) and 'Research-Suggested:'",
        ),
        ("Topics: Alliance\n", "", 7, None),
        (
            "Topics-Suggested: Client Preferences; Drop-out",
            "Topics-Suggested: Client Preferences; Astrology",
            9,
            "unknown topic 'Astrology'",
        ),
        (
            "Topics-Suggested: Client Preferences; Drop-out",
            "Topics-Suggested: ",
            9,
            "'Topics-Suggested:' is empty",
        ),
    ],
)
def test_suggestion_lines_are_checked_like_the_others(
    old: str, new: str, line: int, message: str | None
) -> None:
    text = (CASES / "suggested_topics.md").read_text("utf-8").replace(old, new)
    result = parse_issue(text, "2019-02.md")
    if message is None:  # suggestions alone are enough for a published back issue
        assert result.errors == []
        return
    assert [(p.line, p.message) for p in result.errors][:1] == [(line, message)]


def _issue_of(*titles: str):
    parts = ["---\nmonth: 2026-12\nstatus: published\n---\n"]
    for title in titles:
        parts.append(
            f"## {title}\nTopics: Empathy\n\nText of {title}.\n\n### Practice Implications\n\nDo.\n"
        )
    result = parse_issue("\n".join(parts))
    assert result.issue is not None, result.problems
    return result.issue


def test_summary_keys_do_not_depend_on_order_or_on_other_summaries() -> None:
    from newsletter.content.parser import positional_keys

    # "Sleep?" and "Sleep!" make the same slug; "Mood" does not collide.
    one = _issue_of("Sleep?", "Mood", "Sleep!")
    keys = {s.title: s.key for s in one.summaries}
    assert keys["Mood"] == "mood"
    assert keys["Sleep?"] != keys["Sleep!"]
    assert keys["Sleep?"].startswith("sleep-") and keys["Sleep!"].startswith("sleep-")
    reordered = _issue_of("Sleep!", "Sleep?", "Mood")
    assert {s.title: s.key for s in reordered.summaries} == keys
    # Editing an earlier summary (its text, or another title) leaves later keys alone.
    edited = _issue_of("Sleep?", "Mood and sleep", "Sleep!")
    assert {s.title: s.key for s in edited.summaries}["Sleep?"] == keys["Sleep?"]
    # The keys older versions gave (numbered in file order) are known, for redirects.
    assert positional_keys(one.summaries) == ["sleep", "mood", "sleep-2"]
    assert positional_keys(_issue_of("Mood").summaries) == ["mood"]
