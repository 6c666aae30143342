"""How plain text is wrapped: at :data:`WIDTH` columns, words never broken.

Used by the text part of every email (render) and, per recipient, for the topic list
(delivery), so both wrap the same way.
"""

from __future__ import annotations

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


def wrap(text: str, width: int = WIDTH, indent: str = "", subsequent: str | None = None) -> str:
    """Wrap ``text`` to ``width`` columns, keeping its hard line breaks.

    Long words (URLs, placeholders) are never broken: they stand on a line of their own.
    """
    out = []
    for line in text.split("\n"):
        if not line.strip():
            out.append("")
            continue
        out.append(_fill(line.split(), width, indent, indent if subsequent is None else subsequent))
    return "\n".join(out)
