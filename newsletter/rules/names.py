"""The one rule for a person's name: what may be stored, and therefore put in a greeting.

A name is one line of plain text. :func:`check_name` is used wherever a name comes in (the
CLI, the CSV import, the sign-up form's service), so that nothing is stored that would
later break every message sent to the person: control characters (NUL, line breaks,
ESC, ... ; a NUL is also refused by PostgreSQL) are refused with a reason, surrounding
whitespace is removed and runs of whitespace inside (tabs included) become one space.
"""

from __future__ import annotations

import unicodedata

from newsletter.errors import NewsletterError

MAX_NAME = 200  # characters, after cleaning

# Tabs are whitespace here (a common leftover of copying from a spreadsheet); every
# other control character is refused. Line and paragraph separators are line breaks.
_REFUSED_CATEGORIES = ("Cc", "Zl", "Zp")
_CHAR_NAMES = {
    "\x00": "a NUL character",
    "\n": "a line break",
    "\r": "a carriage return",
    "\x1b": "an escape character (ESC)",
    "\u2028": "a line separator",
    "\u2029": "a paragraph separator",
}


class InvalidNameError(NewsletterError, ValueError):
    """A text cannot be stored as a person's name."""


def check_name(text: str) -> str:
    """The stored form of a name typed or imported by a person (may be empty).

    Surrounding whitespace is removed and each run of whitespace inside becomes one
    space. Raises :class:`InvalidNameError` with the reason for a control character
    (anything but a tab) or a name longer than :data:`MAX_NAME` characters.
    """
    # A printable text (nearly every name) has no character of the refused categories;
    # only the others are looked at character by character.
    for position, char in enumerate("" if text.isprintable() else text, 1):
        if char != "\t" and unicodedata.category(char) in _REFUSED_CATEGORIES:
            what = _CHAR_NAMES.get(char, "a control character")
            raise InvalidNameError(
                f"the name contains {what} (U+{ord(char):04X}) at character {position}",
                hint="a name is one line of plain text: remove the character",
            )
    name = " ".join(text.split())
    if len(name) > MAX_NAME:
        raise InvalidNameError(
            f"the name is {len(name)} characters long; at most {MAX_NAME} are allowed",
            hint="shorten it",
        )
    return name
