"""Markdown for issue content, through markdown-it-py.

Raw HTML in content is escaped (``html=False``), never passed through: an issue file is
data written by a person, not markup trusted to reach a subscriber's mail client.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache

from markdown_it import MarkdownIt


@cache
def markdown_parser() -> MarkdownIt:
    """The one Markdown parser of issue content (CommonMark, raw HTML off, strikethrough)."""
    md = MarkdownIt("commonmark", {"html": False, "typographer": False})
    md.enable(["strikethrough"])
    return md


def render_markdown(text: str) -> str:
    """Markdown to an HTML fragment; raw HTML in ``text`` is shown as text."""
    return markdown_parser().render(text or "")


def iter_links(text: str) -> Iterator[tuple[int, str]]:
    """Yield ``(line offset, href)`` for every link in ``text`` (offset 0 = first line)."""
    for block in markdown_parser().parse(text or ""):
        offset = block.map[0] if block.map else 0
        for child in block.children or ():
            if child.type == "link_open":
                yield offset, str(child.attrs.get("href", ""))
