"""The parser, fed arbitrary text, only ever reports problems or raises its own error."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.content.parser import decode_issue_bytes, parse_issue
from newsletter.errors import IssueFormatError
from tests.plugin import FIXTURES

VALID = (FIXTURES / "issues" / "valid_two_summaries.md").read_text()
PIECES = [
    "---\n",
    "month: 2026-12\n",
    "status: ready\n",
    "## Title\n",
    "Topics: Empathy\n",
    "Topics: ;;\n",
    "Citation: X (2020).\n",
    "Link: http://\n",
    "### Practice Implications\n",
    "\n",
    "text\n",
    "# h1\n",
    "```\n",
    "<!--\n",
    "-->\n",
    "subject: [a, b]\n",
    "intro: {a: 1}\n",
    "month: 2026-12-01\n",
    "Research: rct\n",
    "- item\n",
    "[x](y)\n",
]


def _parse_only_raises_own_error(text: str) -> None:
    from newsletter.content.parser import load_issue  # noqa: F401  (same code path)

    result = parse_issue(text, "issues/2026-12.md")
    if result.errors:
        assert result.issue is None
        try:
            raise IssueFormatError(result.problems)
        except IssueFormatError as exc:
            assert str(exc)
    for p in result.problems:
        assert p.line >= 0
        assert p.severity in ("error", "warning")


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_arbitrary_text(text: str) -> None:
    _parse_only_raises_own_error(text)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=40))
def test_arbitrary_arrangements_of_format_pieces(pieces: list[str]) -> None:
    _parse_only_raises_own_error("".join(pieces))


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=len(VALID)), st.text(max_size=20))
def test_valid_file_with_text_spliced_in(at: int, insert: str) -> None:
    _parse_only_raises_own_error(VALID[:at] + insert + VALID[at:])


@settings(max_examples=200, deadline=None)
@given(st.binary())
def test_arbitrary_bytes(data: bytes) -> None:
    text, problems = decode_issue_bytes(data, "x.md")
    if text is None:
        assert problems and problems[0].severity == "error"
    else:
        _parse_only_raises_own_error(text)
