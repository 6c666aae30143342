"""The one name rule: what a person's name may hold."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from newsletter.errors import NewsletterError
from newsletter.rules.names import MAX_NAME, InvalidNameError, check_name


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("", ""),
        ("  Ann Lee  ", "Ann Lee"),
        ("Ann \t  Lee", "Ann Lee"),
        ("Zoë Ünal-O'Brien", "Zoë Ünal-O'Brien"),
        ("[red]Ann[/red]", "[red]Ann[/red]"),
        ("A" * MAX_NAME, "A" * MAX_NAME),
    ],
)
def test_good_names_are_cleaned(text: str, name: str) -> None:
    assert check_name(text) == name


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Ann\x00", "a NUL character (U+0000) at character 4"),
        ("Ann\rLee", "a carriage return (U+000D)"),
        ("Ann\nLee", "a line break (U+000A)"),
        ("\x1b[2J", "an escape character (ESC) (U+001B)"),
        ("Ann\x7f", "a control character (U+007F)"),
        ("Ann\x9b", "a control character (U+009B)"),
        ("Ann\u2029", "a paragraph separator (U+2029)"),
        (" " + "A" * (MAX_NAME + 1), f"{MAX_NAME + 1} characters long; at most {MAX_NAME}"),
    ],
)
def test_bad_names_are_refused_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(InvalidNameError) as info:
        check_name(text)
    assert reason in info.value.message
    assert info.value.hint
    assert isinstance(info.value, NewsletterError) and isinstance(info.value, ValueError)


@given(st.text(max_size=60))
def test_a_checked_name_is_clean_and_checks_to_itself(text: str) -> None:
    try:
        name = check_name(text)
    except InvalidNameError:
        return
    assert name == name.strip() and "  " not in name and len(name) <= MAX_NAME
    assert not any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F for c in name)
    assert check_name(name) == name
