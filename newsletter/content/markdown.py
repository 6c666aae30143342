"""Markdown for issue content, through markdown-it-py.

Raw HTML in content is escaped (``html=False``), never passed through: an issue file is
data written by a person, not markup trusted to reach a subscriber's mail client.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache

from markdown_it import MarkdownIt

#: Block quotes and lists a block container may be nested in. markdown-it stops at its
#: ``maxNesting`` (20 levels of tokens; a list item counts two: the list and the item)
#: and silently leaves out everything inside the deepest level, so such text is refused.
MAX_NESTING = 20
_CONTAINERS = ("blockquote_open", "bullet_list_open", "ordered_list_open", "list_item_open")


@cache
def markdown_parser() -> MarkdownIt:
    """The one Markdown parser of issue content (CommonMark, raw HTML off, strikethrough)."""
    md = MarkdownIt("commonmark", {"html": False, "typographer": False, "maxNesting": MAX_NESTING})
    md.enable(["strikethrough"])
    return md


def render_markdown(text: str) -> str:
    """Markdown to an HTML fragment; raw HTML in ``text`` is shown as text."""
    return markdown_parser().render(text or "")


def too_deep(text: str) -> int | None:
    """The line offset (0 = first line) where ``text`` nests block quotes or lists so deep
    that the parser would leave the rest out; None when it does not."""
    for token in markdown_parser().parse(text or ""):
        if token.nesting == 1 and token.type in _CONTAINERS and token.level >= MAX_NESTING - 1:
            return token.map[0] if token.map else 0
    return None


@cache
def _link_finder() -> MarkdownIt:
    """The parser of :func:`markdown_parser` that also makes links of addresses it would
    refuse (``javascript:``, ``data:``), so that the check can name them: rendering
    silently shows such a link as plain text."""
    md = MarkdownIt("commonmark", {"html": False, "typographer": False, "maxNesting": MAX_NESTING})
    md.enable(["strikethrough"])
    md.validateLink = lambda url: True  # type: ignore[method-assign]
    return md


def iter_links(text: str) -> Iterator[tuple[int, str]]:
    """Yield ``(line offset, href)`` for every link in ``text`` (offset 0 = first line),
    including those the renderer refuses to make links of."""
    for block in _link_finder().parse(text or ""):
        offset = block.map[0] if block.map else 0
        for child in block.children or ():
            if child.type == "link_open":
                yield offset, str(child.attrs.get("href", ""))


def plain_text(text: str) -> str:
    """The words of Markdown ``text`` without its markup: what a search looks through."""
    parts: list[str] = []
    for block in markdown_parser().parse(text or ""):
        if block.type == "inline":
            parts.extend(
                c.content for c in block.children or () if c.type in ("text", "code_inline")
            )
        elif block.type in ("code_block", "fence"):
            parts.append(block.content)
    return " ".join(" ".join(parts).split())
