"""The plain-text wrapper fills exactly as textwrap would, only faster."""

from __future__ import annotations

import textwrap

from hypothesis import given
from hypothesis import strategies as st

from newsletter.rules.wrapping import wrap

WORDS = st.sampled_from(["a", "bb", "Therapist", "Factors;", "(CBT)", "x-y", "z" * 90, "\n"])


def reference(text: str, width: int, indent: str, subsequent: str) -> str:
    return "\n".join(
        textwrap.fill(
            " ".join(line.split()),
            width=width,
            initial_indent=indent,
            subsequent_indent=subsequent,
            break_long_words=False,
            break_on_hyphens=False,
        )
        if line.strip()
        else ""
        for line in text.split("\n")
    )


@given(
    st.lists(WORDS, max_size=60).map(" ".join),
    st.integers(min_value=20, max_value=100),
    st.sampled_from([("", ""), ("  | ", "  | "), ("- ", "  ")]),
)
def test_wrap_matches_textwrap(text: str, width: int, indents: tuple[str, str]) -> None:
    first, rest = indents
    assert wrap(text, width, first, rest) == reference(text, width, first, rest)
