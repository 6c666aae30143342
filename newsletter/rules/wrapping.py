"""How plain text is wrapped: at :data:`WIDTH` columns, words never broken.

Used by the text part of every email (render) and, per recipient, for the topic list
(delivery), so both wrap the same way.
"""

from __future__ import annotations

from collections.abc import Iterable

WIDTH = 72


def _fill(words: list[str], width: int, first: str, rest: str) -> str:
    """Greedy fill, as ``textwrap.fill`` with no broken words or hyphens, but several times
    faster (it runs per recipient for the topic list)."""
    lines: list[str] = []
    line = first
    empty = True
    for word in words:
        if empty:
            line += word
            empty = False
        elif len(line) + 1 + len(word) <= width:
            line += " " + word
        else:
            lines.append(line)
            line = rest + word
    lines.append(line)
    return "\n".join(lines)


#: A space that :func:`wrap` never breaks a line at (it comes out as a plain space): it keeps
#: a link's "[3]" with the word before it and a topic name on one line. The content of an
#: issue cannot hold it (control characters are refused there).
GLUE = "\x02"


def wrap(text: str, width: int = WIDTH, indent: str = "", subsequent: str | None = None) -> str:
    """Wrap ``text`` to ``width`` columns, keeping its hard line breaks.

    Long words (URLs, placeholders) are never broken: they stand on a line of their own.
    Words joined by :data:`GLUE` stay on one line.
    """
    out = []
    for line in text.split("\n"):
        if not line.strip():
            out.append("")
            continue
        out.append(_fill(line.split(), width, indent, indent if subsequent is None else subsequent))
    joined = "\n".join(out)
    return joined.replace(GLUE, " ") if GLUE in joined else joined


def glued(text: str) -> str:
    """``text`` with its spaces made :data:`GLUE`: :func:`wrap` keeps it on one line."""
    return GLUE.join(text.split())


def wrap_items(
    items: Iterable[str],
    sep: str = "; ",
    width: int = WIDTH,
    indent: str = "",
    subsequent: str | None = None,
) -> str:
    """``items`` joined by ``sep`` and wrapped, breaking lines only between items (an item
    longer than a line stands on its own)."""
    return wrap(sep.join(glued(i) for i in items), width, indent, subsequent)
