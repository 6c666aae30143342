"""Plain text from issue content: Markdown to wrapped text with numbered link references.

The text part of an email is rendered from the same content as the HTML part, not by
converting HTML: paragraphs wrapped at :data:`WIDTH` columns, each link shown as
``text [1]`` and listed at the end of its section. The numbers run through the whole
message (:class:`Footnotes`): ``[4]`` means one address wherever it appears.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from newsletter.content.markdown import markdown_parser
from newsletter.rules.wrapping import GLUE, WIDTH, glued, wrap, wrap_items

__all__ = [
    "GLUE",
    "WIDTH",
    "Footnotes",
    "References",
    "aligned",
    "glued",
    "markdown_to_text",
    "wrap",
    "wrap_items",
]


@dataclass
class Footnotes:
    """The link numbers of one whole message: the same address keeps its number."""

    numbers: dict[str, int] = field(default_factory=dict)

    def number(self, url: str) -> int:
        """The number of ``url`` in this message."""
        n = self.numbers.get(url)
        if n is None:
            n = self.numbers[url] = len(self.numbers) + 1
        return n

    def section(self) -> References:
        """The references of a new section, numbered on from the sections before it."""
        return References(footnotes=self)


@dataclass
class References:
    """The numbered links of one section of the text part. Sections of one message share
    their :class:`Footnotes`; a section made alone numbers from 1."""

    urls: list[str] = field(default_factory=list)
    footnotes: Footnotes = field(default_factory=Footnotes)

    def add(self, url: str) -> int:
        """The number of ``url`` (the same URL keeps its number)."""
        if url not in self.urls:
            self.urls.append(url)
        return self.footnotes.number(url)

    def ref(self, url: str) -> str:
        """``[n]`` for ``url``. (Put :data:`GLUE` before it in text that is wrapped, so it
        stays with the word before it.)"""
        return f"[{self.add(url)}]"

    def listing(self) -> str:
        """``[n] url`` lines, one per link of this section (URLs are never wrapped)."""
        return "\n".join(f"[{self.footnotes.number(url)}] {url}" for url in self.urls)


# A label longer than this pushes its own value right instead of the whole column.
ALIGN_MAX = 24


def aligned(pairs: Iterable[tuple[str, object]], width: int = WIDTH, indent: str = "  ") -> str:
    """``label: value`` lines with the values in one column; a long value wraps under it.

    For the small tables of the text part (counts of a send, facts of a report).
    """
    rows = [(str(label), " ".join(str(value).split())) for label, value in pairs]
    if not rows:
        return ""
    column = min(max(len(label) for label, _ in rows) + 1, ALIGN_MAX) + 1
    out = []
    for label, value in rows:
        head = indent + f"{label}:".ljust(column - 1) + " "
        out.append(wrap(value, width, head, " " * len(head)) if value else head.rstrip())
    return "\n".join(out)


def markdown_to_text(source: str, refs: References, width: int = WIDTH, indent: str = "") -> str:
    """Markdown ``source`` as plain text wrapped at ``width``; links go into ``refs``."""
    tokens = markdown_parser().parse(source or "")
    blocks: list[str] = []
    tight: list[bool] = []  # per block: an item of a tight list (no blank line before it)
    hidden = False  # the paragraph being read is hidden: it is in a tight list
    prefix_stack: list[str] = []  # indentation of nested lists and quotes
    list_stack: list[list[int | None]] = []  # per list: [next number] or [None] if bullets
    pending_bullet: list[str] = []
    for tok in tokens:
        t = tok.type
        if t in ("bullet_list_open", "ordered_list_open"):
            start = tok.attrs.get("start", 1) if t == "ordered_list_open" else None
            list_stack.append([int(start) if start is not None else None])
        elif t in ("bullet_list_close", "ordered_list_close"):
            list_stack.pop()
        elif t == "list_item_open":
            counter = list_stack[-1]
            if counter[0] is None:
                bullet = "- "
            else:
                bullet = f"{counter[0]}. "
                counter[0] += 1
            pending_bullet.append(bullet)
            prefix_stack.append(" " * len(bullet))
        elif t == "list_item_close":
            prefix_stack.pop()
            if pending_bullet:
                pending_bullet.pop()
        elif t == "blockquote_open":
            prefix_stack.append("> ")
        elif t == "blockquote_close":
            prefix_stack.pop()
        elif t == "paragraph_open":
            hidden = tok.hidden
        elif t == "inline":
            text = _inline_text(tok.children or [], refs)
            base = indent + "".join(prefix_stack)
            first = base
            in_tight_item = bool(pending_bullet) and hidden
            if pending_bullet:
                # The bullet replaces the indentation of the item's first line.
                first = base[: -len(pending_bullet[-1])] + pending_bullet.pop()
            heading = blocks and blocks[-1] == "\x00heading"
            if heading:
                blocks.pop()
                tight.pop()
                text = text.upper()
            blocks.append(wrap(text, width, first, base))
            tight.append(in_tight_item)
        elif t == "heading_open":
            blocks.append("\x00heading")
            tight.append(False)
        elif t in ("fence", "code_block"):
            base = indent + "".join(prefix_stack) + "    "
            blocks.append("\n".join(base + line for line in tok.content.rstrip("\n").split("\n")))
            tight.append(False)
        elif t == "hr":
            blocks.append(indent + "-" * min(20, width))
            tight.append(False)
    # Items of a tight list stay together; everything else is separated by a blank line,
    # which keeps the indentation's mark (the "|" of the practice implications).
    blank = "\n" + indent.rstrip() + "\n"
    out: list[str] = []
    for i, block in enumerate(blocks):
        if block == "\x00heading":
            continue
        if out:
            out.append("\n" if tight[i] and i > 0 and tight[i - 1] else blank)
        out.append(block)
    return "".join(out)


def _inline_text(children: list, refs: References) -> str:
    parts: list[str] = []
    link_stack: list[str] = []
    for c in children:
        t = c.type
        if t in ("text", "code_inline", "html_inline"):
            parts.append(c.content)
        elif t == "softbreak":
            parts.append(" ")
        elif t == "hardbreak":
            parts.append("\n")
        elif t in ("em_open", "em_close"):
            parts.append("_")
        elif t in ("strong_open", "strong_close"):
            parts.append("*")
        elif t == "link_open":
            link_stack.append(str(c.attrs.get("href", "")))
        elif t == "link_close":
            href = link_stack.pop() if link_stack else ""
            if href:  # "[n]" never starts a line on its own
                parts.append(GLUE + refs.ref(href))
        elif t == "image":
            alt = c.content or "image"
            parts.append(f"[{alt}] {refs.ref(str(c.attrs.get('src', '')))}")
    return "".join(parts)
