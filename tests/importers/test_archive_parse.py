"""The page parser: heuristics, the state machine, merging, topics and rendering."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.content.markdown import render_markdown
from newsletter.content.parser import parse_issue
from newsletter.content.taxonomy import RESEARCH_TYPES, load_taxonomy
from newsletter.importers.archive import (
    ArchiveReadError,
    escape_paragraph,
    find_next_title,
    is_citation,
    is_contact_line,
    is_month_heading,
    load_keyword_rules,
    looks_like_citation_without_year,
    looks_like_title,
    merge_pages,
    month_of,
    normalise_title,
    parse_archive_page,
    read_archive_page,
    render_issue_text,
    suggest_topics,
)


def titles(page) -> list[tuple[str, str]]:
    return [(e.month, e.title) for e in page.entries]


# --- heuristics -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "month"),
    [
        ("March 2024", "2024-03"),
        ("  december 2013 ", "2013-12"),
        ("Sept. 2019", "2019-09"),
        ("March 2024 issue", None),
        ("Marching 2024", None),
        ("This month...", None),
    ],
)
def test_month_headings(line: str, month: str | None) -> None:
    assert month_of(line) == month
    assert is_month_heading(line) is (month is not None)


@pytest.mark.parametrize(
    "line",
    [
        "Lee, K., & Ortiz, M. (2023). Session feedback. J. Counseling Research, 41(2), 101-115.",
        "Müller, J., Åström, K., & Núñez, P. (2023, March). Felt safety. Revue, 15(2), 88–104.",
        "Smith, A. B., et al. (in press). A title. A Journal.",
        "American Psychological Association. (2019). Clinical practice guideline.",
    ],
)
def test_citations_are_recognised(line: str) -> None:
    assert is_citation(line)
    assert not looks_like_title(line)


@pytest.mark.parametrize(
    "line",
    [
        "Lee and colleagues (2019) found that feedback helped trainees.",
        "Feedback Helps Trainees Repair Ruptures",
        "Reyes, M., & Toth, A. Insomnia and treatment response. Sleep and Mind, 3(2), 77-90.",
    ],
)
def test_prose_and_titles_are_not_citations(line: str) -> None:
    assert not is_citation(line)


def test_citation_without_year_is_recognised_as_such() -> None:
    assert looks_like_citation_without_year(
        "Reyes, M., & Toth, A. Insomnia and treatment response. Sleep and Mind, 3(2), 77-90."
    )
    assert not looks_like_citation_without_year("Clients who slept badly improved slowly.")


@pytest.mark.parametrize(
    "line",
    [
        "Author email: someone@example.org",
        "Email: someone@example.org",
        "Contact: Dr. Lee",
        "Authors’ e-mail: a@example.org",
        "Correspondence: b@example.org",
        "someone@example.org",
    ],
)
def test_contact_lines(line: str) -> None:
    assert is_contact_line(line)


def test_paragraphs_are_not_contact_lines() -> None:
    assert not is_contact_line("Contacting clients between sessions: a review.")
    assert not is_contact_line("Write to the author at the address below.")


def test_title_shape() -> None:
    assert looks_like_title("Do Therapists Know When Their Clients Get Worse?")
    assert looks_like_title("Dialectical Behavior Therapy (DBT)")
    assert not looks_like_title("Plan homework together with the client.")
    assert not looks_like_title("x " * 80)
    assert not looks_like_title("Practice Implications")


def test_next_title_is_the_best_candidate_before_the_next_implications() -> None:
    lines = list(
        enumerate(
            [
                "Practice Implications",
                "Ask about goals early.",
                "Treat a single session as a possible complete treatment.",
                "Group Therapy for Late-Life Depression",
                "Older adults in group treatment improved.",
                "Practice Implications",
                "Run groups.",
            ],
            1,
        )
    )
    index, score = find_next_title(lines, 1)
    assert index == 3
    assert score >= 3


# --- pages ------------------------------------------------------------------------------


def test_header_with_type_of_research_and_topic_lists_is_skipped(pages: Path) -> None:
    page = read_archive_page(pages / "basic.txt")
    assert page.header_lines == 13  # paragraph, teaser, both lists
    assert page.problems == []
    assert titles(page) == [
        ("2024-03", "Feedback Helps Trainees Repair Ruptures"),
        ("2024-03", "Group Therapy for Late-Life Depression"),
        ("2024-02", "Homework Completion and Anxiety Outcomes"),
    ]
    first = page.entries[0]
    assert first.citation and first.citation.startswith("Lee, K., & Ortiz, M. (2023).")
    assert len(first.body) == 2
    assert first.implications == [
        "Supervisors could build brief alliance checks into routine supervision, so that "
        "trainees learn to raise a rupture with the client instead of waiting for it to pass."
    ]
    assert len(page.entries[2].implications) == 2


def test_blank_lines_do_not_matter(pages: Path) -> None:
    text = (pages / "basic.txt").read_text("utf-8")
    squeezed = "\n".join(line for line in text.splitlines() if line.strip())
    a = parse_archive_page(text, "a")
    b = parse_archive_page(squeezed, "b")
    strip = [(e.month, e.title, e.citation, e.body, e.implications) for e in a.entries]
    assert strip == [(e.month, e.title, e.citation, e.body, e.implications) for e in b.entries]


def test_missing_blank_lines_and_summary_without_citation(pages: Path) -> None:
    page = read_archive_page(pages / "no_blank_lines.txt")
    assert page.problems == []
    assert [e.title for e in page.entries] == [
        "Why Clients Leave After One Session",
        "Matching Therapy to What Clients Prefer",
        "Reminders Reduce Missed First Appointments",
    ]
    first, no_citation = page.entries[0], page.entries[1]
    assert len(first.implications) == 2  # both paragraphs stay with the first summary
    assert no_citation.citation is None
    assert no_citation.body[0].startswith("Clients who received the type of therapy")
    assert no_citation.line == 17


def test_contact_lines_belong_to_no_text(pages: Path) -> None:
    page = read_archive_page(pages / "contact_line.txt")
    assert page.problems == []
    assert [e.title for e in page.entries] == [
        "Empathy Predicts Outcome in Brief Therapy",
        "Therapists Differ More Than Treatments Do",
    ]
    assert page.contacts == [
        (22, "Author email: evarga@example.org"),
        (34, "Contact: n.brook@example.org"),
    ]
    for e in page.entries:
        assert not any("@" in p for p in e.body + e.implications)
    assert page.entries[0].contact == "Author email: evarga@example.org"


def test_non_ascii_text_is_kept(pages: Path) -> None:
    page = read_archive_page(pages / "overlap_all.txt")
    first = page.entries[0]
    assert first.title == "Clients’ “Felt Safety” and the Alliance — A Diary Study"
    assert first.citation and "Åström" in first.citation and "88–104" in first.citation
    assert "“safe enough to say difficult things”" in first.body[0]


def test_citation_without_year_is_kept_as_text_and_reported(pages: Path) -> None:
    page = read_archive_page(pages / "citation_no_year.txt")
    (entry,) = page.entries
    assert entry.citation is None
    assert entry.body[0].startswith("Reyes, M., & Toth, A. Insomnia")
    (problem,) = page.problems
    assert (problem.line, problem.severity) == (9, "warning")
    assert "no year in parentheses" in problem.message


def test_unplaceable_lines_are_reported_with_line_numbers(pages: Path) -> None:
    page = read_archive_page(pages / "unplaceable.txt")
    assert [e.title for e in page.entries] == [
        "Mindfulness Training for Therapists",
        "Booster Sessions After CBT for Anxiety",
    ]
    found = [(p.line, p.severity) for p in page.problems]
    assert found == [(8, "error"), (9, "error"), (16, "error")]
    assert "These implications lost" in page.problems[1].message
    assert "A Summary That Lost Its Implications" in page.problems[2].message
    assert "lines 16-18" in page.problems[2].message


def test_weak_title_guess_is_flagged_for_review() -> None:
    text = "\n".join(
        [
            "May 2020",
            "Ending Therapy Well",
            "Planned endings were rated as more helpful.",
            "Practice Implications",
            "Plan the ending together.",
            "what clients say about endings",
            "Clients valued a last session that looked back.",
            "Practice Implications",
            "Leave room to look back.",
        ]
    )
    page = parse_archive_page(text, "p.txt")
    assert [e.title for e in page.entries] == [
        "Ending Therapy Well",
        "what clients say about endings",
    ]
    (problem,) = page.problems
    assert problem.line == 6 and "weak evidence" in problem.message


def test_realistic_pages_split_as_published(pages: Path) -> None:
    page = read_archive_page(pages / "realistic_all_topics.txt")
    assert page.problems == []
    assert len(page.months) == 6
    assert len(page.entries) == 11
    assert "Comparing Psychotherapies for Depression" in [e.title for e in page.entries]
    assert "Dialectical Behavior Therapy (DBT)" in [e.title for e in page.entries]
    question = page.entries[0]
    assert question.title == "Do Therapists Know When Their Clients Get Worse?"
    assert len(question.implications) == 2
    alliance = read_archive_page(pages / "realistic_alliance.txt")
    assert alliance.problems == []
    assert len(alliance.entries) == 6
    assert alliance.entries[-1].implications[-1].endswith("change)?")


def test_page_without_month_is_an_error() -> None:
    with pytest.raises(ArchiveReadError, match="no month heading"):
        parse_archive_page("Just a paragraph.\nAnd another.", "x.txt")


def test_unreadable_pages_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ArchiveReadError, match="no such file"):
        read_archive_page(tmp_path / "missing.txt")
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("March 2024\nCaf\u00e9 Study\n".encode("latin-1"))
    with pytest.raises(ArchiveReadError, match=r"latin1.txt:2: file is not UTF-8") as info:
        read_archive_page(bad)
    assert info.value.hint and "UTF-8" in info.value.hint


def test_bom_is_tolerated(tmp_path: Path, pages: Path) -> None:
    bom = tmp_path / "bom.txt"
    bom.write_bytes(b"\xef\xbb\xbf" + (pages / "basic.txt").read_bytes())
    assert len(read_archive_page(bom).entries) == 3


# --- merging ----------------------------------------------------------------------------


def test_titles_are_normalised_for_duplicates() -> None:
    assert normalise_title("Clients’ “Felt Safety” and the Alliance — A Diary Study") == (
        normalise_title('CLIENTS\' "FELT SAFETY"  AND THE ALLIANCE - A DIARY STUDY')
    )
    assert normalise_title("A Study") != normalise_title("A Studies")


def test_overlapping_pages_merge_in_page_order(pages: Path) -> None:
    alliance_topic = load_taxonomy().resolve("Alliance")
    first = read_archive_page(pages / "overlap_all.txt")
    second = read_archive_page(pages / "overlap_alliance.txt")
    second.topic = alliance_topic
    months, duplicates, problems = merge_pages([first, second])
    assert duplicates == 1
    assert problems == []
    assert list(months) == ["2024-04", "2024-03"]
    april = months["2024-04"]
    assert [s.entry.title for s in april] == [
        "Clients’ “Felt Safety” and the Alliance — A Diary Study",
        "What Clients Remember Ten Years Later",
    ]
    assert april[0].sources == [
        f"{pages / 'overlap_all.txt'}:17",
        f"{pages / 'overlap_alliance.txt'}:9",
    ]
    assert april[0].topics.page_topics == (alliance_topic,)
    assert [s.entry.title for s in months["2024-03"]] == [
        "Brief Relaxation Training Before Surgery",
        "Naming the Rupture Out Loud",
    ]


def test_duplicate_with_different_text_is_reported() -> None:
    a = parse_archive_page("May 2020\nA Title\nText one.\nPractice Implications\nDo it.", "a")
    b = parse_archive_page("May 2020\nA title\nText two.\nPractice Implications\nDo it.", "b")
    months, duplicates, problems = merge_pages([a, b])
    assert duplicates == 1
    assert months["2020-05"][0].entry.body == ["Text one."]
    (problem,) = problems
    assert problem.path == "b" and "different text" in problem.message


# --- topics -----------------------------------------------------------------------------


def test_keyword_rules_cover_every_topic_but_miscellaneous() -> None:
    rules = load_keyword_rules()
    covered = {t.slug for t in rules.topics.targets}
    every = {t.slug for t in load_taxonomy()}
    assert covered == every - {"miscellaneous"}
    assert len(covered) == 35
    # "other" collects case studies.
    assert {r.slug for r in rules.research.targets} == {r.slug for r in RESEARCH_TYPES}


def entry(title: str, body: str = "Some text.", implications: str = "Do this."):
    page = parse_archive_page(
        f"May 2020\n{title}\n{body}\nPractice Implications\n{implications}", "t"
    )
    return page.entries[0]


def test_alliance_words_suggest_the_alliance_topic() -> None:
    s = suggest_topics(entry("Mending Ruptures", "Therapists repaired strains quickly."))
    assert s.suggested[0].slug == "alliance-and-therapeutic-relationship"
    assert not s.fallback


def test_research_type_from_keywords() -> None:
    s = suggest_topics(entry("A Pooled Look", "This meta-analysis of randomized trials..."))
    assert s.research is not None and s.research.slug == "meta-analysis"
    s = suggest_topics(entry("A Trial", "Clients were randomly assigned to two groups."))
    assert s.research is not None and s.research.slug == "randomized-controlled-trial"


def test_keywords_match_whole_words_only() -> None:
    # "Hispanic" contains "panic", "reliance" contains "liance", "cbt" is not "CBT".
    s = suggest_topics(entry("Hispanic Families and Self-reliance", "Parents spoke of cbt."))
    slugs = {t.slug for t in s.suggested}
    assert "anxiety-disorders" not in slugs
    assert "cognitive-therapy-ct-and-cognitive-behavioural-therapy-cbt" not in slugs
    s = suggest_topics(entry("Depressive Symptoms in Students", "Depressed clients."))
    assert s.suggested[0].slug == "depression-and-depressive-symptoms"


def test_miscellaneous_is_the_last_resort() -> None:
    s = suggest_topics(entry("Sleep and Progress", "Poor sleepers improved slowly."))
    assert s.fallback
    assert [t.slug for t in s.topics] == ["miscellaneous"]
    topic = load_taxonomy().resolve("Training")
    s = suggest_topics(entry("Sleep and Progress", "Poor sleepers improved slowly."), topic)
    assert not s.fallback and s.topics == (topic,)


# --- rendering --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("# of clients", "\\# of clients"),
        ("- In the plan group", "\\- In the plan group"),
        ("+ Write the plan", "\\+ Write the plan"),
        ("* Starred", "\\* Starred"),
        ("1. Warning signs", "1\\. Warning signs"),
        ("12) Twelve", "12\\) Twelve"),
        ("> Quoted", "\\> Quoted"),
        ("```code", "\\`\\`\\`code"),
        ("===", "\\==="),
        ("<b>bold</b>", "\\<b>bold\\</b>"),
        ("Keep <!-- this --> visible", "Keep \\<\\!-- this --> visible"),
        ("2019 was a year.", "2019 was a year."),
        ("-5 degrees", "-5 degrees"),
    ],
)
def test_escape_paragraph(text: str, escaped: str) -> None:
    assert escape_paragraph(text) == escaped


def test_markdown_characters_stay_literal(pages: Path) -> None:
    page = read_archive_page(pages / "markdown_chars.txt")
    months, _, _ = merge_pages([page])
    text = render_issue_text("2020-11", months["2020-11"])
    result = parse_issue(text, "2020-11.md")
    assert result.errors == []
    (summary,) = result.issue.summaries
    html = render_markdown(summary.body) + render_markdown(summary.implications)
    for tag in ("<h1", "<ul", "<ol", "<blockquote", "<pre"):
        assert tag not in html
    assert "# of clients" in html
    assert "&lt;!-- comments must stay visible --&gt;" in html


@pytest.mark.parametrize(
    "name",
    sorted(p.name for p in (Path(__file__).parent / "archive_pages").glob("*.txt")),
)
def test_every_generated_file_passes_the_checker(name: str, pages: Path) -> None:
    page = read_archive_page(pages / name)
    months, _, _ = merge_pages([page])
    for month, items in months.items():
        text = render_issue_text(month, items[:4])
        result = parse_issue(text, f"{month}.md")
        assert result.errors == [], (name, month, [p.format() for p in result.errors])
        assert result.issue.status == "published"
        assert [s.title for s in result.issue.summaries] == [s.entry.title for s in items[:4]]


def test_keyword_spaces_hyphens_and_plurals() -> None:
    # "meta-analyses" alone is what reviews read as often as what a study did: no evidence.
    s = suggest_topics(entry("Why Clients Drop Out", "A meta analysis of attrition rates."))
    assert s.suggested[0].slug == "attendance-attrition-and-drop-out"
    assert s.research is not None and s.research.slug == "meta-analysis"
