"""Imported text shows every character as written on the page, through the real parser
and the real Markdown renderers (HTML for the email and web archive, text for the text
part)."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest

from newsletter.content.markdown import render_markdown
from newsletter.content.parser import parse_issue
from newsletter.importers.archive import (
    escape_paragraph,
    import_archive,
    merge_pages,
    parse_archive_page,
    read_archive_page,
    render_issue_text,
)
from newsletter.render.text import References, markdown_to_text


class _Visible(HTMLParser):
    """The text a reader sees in an HTML fragment, one string per block element."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[str] = []
        self.tags: list[str] = []
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs) -> None:
        self.tags.append(tag)
        if tag == "p":
            self._text = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "p":
            self.blocks.append("".join(self._text))
            self._text = []

    def handle_data(self, data: str) -> None:
        self._text.append(data)


def visible(fragment: str) -> tuple[list[str], list[str]]:
    parser = _Visible()
    parser.feed(fragment)
    parser.close()
    return parser.blocks, parser.tags


def imported(pages: Path, name: str):
    page = read_archive_page(pages / name)
    assert page.problems == []
    months, _, _ = merge_pages([page])
    ((month, items),) = months.items()
    result = parse_issue(render_issue_text(month, items), f"{month}.md")
    assert result.errors == [], [p.format() for p in result.errors]
    return items[0].entry, result.issue.summaries[0]


def test_page_punctuation_is_shown_as_written(pages: Path) -> None:
    entry, summary = imported(pages, "punctuation.txt")
    # Title and citation are plain text in the issue format: no escaping, read back as is.
    assert summary.title == "The Client`s View of *Significant* Change [sic]"
    assert summary.citation == entry.citation
    assert "p < .05 isn`t" in summary.citation
    for source, paragraphs in (
        (summary.body, entry.body),
        (summary.implications, entry.implications),
    ):
        blocks, tags = visible(render_markdown(source))
        assert blocks == paragraphs
        assert set(tags) == {"p"}, "no code, emphasis, links, lists, quotes or rules"
        text = markdown_to_text(source, References(), width=10_000)
        assert [" ".join(p.split()) for p in text.split("\n\n")] == paragraphs
    body = " ".join(entry.body)
    for written in ("client`s", "p < .05", "*significant*", '"[sic]"', "snake_case_score"):
        assert written in body
    assert entry.implications[0].startswith("Ask for the client`s own words [sic]")


@pytest.mark.parametrize(
    "text",
    [
        "client`s",
        "``double`` and ```triple",
        "*significant* and **very**",
        "_one_ and __two__ and snake_case and (__init__)",
        "[sic] and [a](https://example.org) and ![b](x.png)",
        "p < .05 and <b>tag</b> and <https://example.org> and <a@example.org>",
        "C:\\path\\to and \\*escaped\\* and a trailing \\",
        "~~struck~~ and ~tilde",
        "&amp; &#169; &copy; R&D",
        "# heading",
        "## heading",
        "> quote",
        "- dash",
        "+ plus",
        "* star",
        "1. first",
        "2019) a year",
        "---",
        "***",
        "___",
        "===",
        "```",
        "~~~",
        "<!-- hidden -->",
        "[1]: https://example.org",
        "a line\\",
    ],
)
def test_escaped_paragraph_renders_to_itself(text: str) -> None:
    """Every paragraph, once escaped, is one HTML paragraph showing exactly the text."""
    source = "---\nmonth: 2021-03\nstatus: published\n---\n\n## T\nTopics: Empathy\n\n"
    source += escape_paragraph(text) + "\n\n### Practice Implications\n\nDo.\n"
    result = parse_issue(source, "2021-03.md")
    assert result.errors == []
    blocks, tags = visible(render_markdown(result.issue.summaries[0].body))
    assert blocks == [text]
    assert set(tags) == {"p"}


def test_escaping_leaves_ordinary_text_alone() -> None:
    plain = "Clients in 2019 improved by 5-10 points; therapists' notes (n = 42) agreed."
    assert escape_paragraph(plain) == plain
    assert escape_paragraph("snake_case stays readable") == "snake_case stays readable"


def test_a_hash_at_the_end_of_a_title_is_kept() -> None:
    page = parse_archive_page(
        "May 2020\nWhy C# Programmers Worry #\nText.\nPractice Implications\nDo.", "p"
    )
    months, _, _ = merge_pages([page])
    result = parse_issue(render_issue_text("2020-05", months["2020-05"]), "2020-05.md")
    assert result.errors == []
    assert result.issue.summaries[0].title == "Why C# Programmers Worry #"


def test_a_title_the_issue_file_would_change_is_reported(tmp_path: Path) -> None:
    page = tmp_path / "p.txt"
    page.write_text("May 2020\nNotes <!-- draft --> on Change\nText.\nPractice Implications\nDo.")
    report = import_archive([(page, None)], tmp_path / "out", dry_run=True)
    (problem,) = report.problems
    assert (problem.path, problem.line, problem.severity) == (str(page), 2, "warning")
    assert "'Notes <!-- draft --> on Change' as on the page" in problem.message
