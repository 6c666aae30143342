"""Rendered parts with holes: render once per variant, fill per recipient.

A variant is rendered with a unique marker wherever a personal value goes (see
:func:`marker`). :func:`prepare` splits the output once into static segments and field
names; :meth:`PreparedPart.fill` then joins them with one recipient's values, which costs
a few microseconds instead of a Jinja + MJML run.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from html import escape

from newsletter.rules.personal import MARKUP_FIELDS

# A per-process nonce makes markers impossible to guess, so issue content that happens to
# look like a marker stays text instead of becoming a hole.
_NONCE = secrets.token_hex(6)
_MARKER_RE = re.compile(r"@@nl" + _NONCE + r":([a-z][a-z0-9_]*)@@")


def marker(name: str) -> str:
    """The placeholder for field ``name`` to put into a template's output."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ValueError(f"bad field name {name!r}")
    return f"@@nl{_NONCE}:{name}@@"


def find_markers(rendered: str) -> list[str]:
    """The field names of the markers left in ``rendered`` (none in a finished email)."""
    return _MARKER_RE.findall(rendered)


class MissingFieldError(KeyError):
    """``fill`` was given no value for a field the part needs (a bug in the caller)."""


@dataclass(frozen=True)
class PreparedPart:
    """One rendered part (``kind`` "html" or "text") split around its personal fields.

    ``segments`` has one more item than ``names``: the output is
    ``segments[0] + value(names[0]) + segments[1] + ... + segments[-1]``. HTML parts
    escape every value but the markup of ``MARKUP_FIELDS`` (made escaped by
    delivery.personalise); text parts insert values as they are.
    """

    kind: str
    segments: tuple[str, ...]
    names: tuple[str, ...]
    _interleaved: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _unique: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.segments) != len(self.names) + 1:
            raise ValueError("segments must have one more item than names")
        interleaved = [self.segments[0]]
        for name, seg in zip(self.names, self.segments[1:], strict=True):
            interleaved += [name, seg]
        object.__setattr__(self, "_interleaved", tuple(interleaved))
        object.__setattr__(self, "_unique", tuple(dict.fromkeys(self.names)))

    @property
    def fields(self) -> frozenset[str]:
        """The names of the fields this part needs."""
        return frozenset(self._unique)

    def fill(self, values: Mapping[str, str]) -> str:
        """The part with ``values`` put in (HTML-escaped for HTML parts)."""
        try:
            if self.kind == "html":
                escaped = {
                    k: values[k] if k in MARKUP_FIELDS else escape(values[k]) for k in self._unique
                }
                filled = [escaped[n] for n in self.names]
            else:
                filled = [values[n] for n in self.names]
        except KeyError as exc:
            raise MissingFieldError(f"no value for field {exc.args[0]!r}") from None
        # One join over the interleaved list: a single copy of the static text.
        out = list(self._interleaved)
        out[1::2] = filled
        return "".join(out)

    def fill_bytes(self, values: Mapping[str, str], encoding: str = "utf-8") -> bytes:
        """:meth:`fill`, encoded."""
        return self.fill(values).encode(encoding)

    def static_size(self) -> int:
        """Bytes (UTF-8) of the static text, without any field values."""
        return sum(len(s.encode("utf-8")) for s in self.segments)


def prepare(kind: str, rendered: str) -> PreparedPart:
    """Split ``rendered`` (output containing :func:`marker` placeholders) into a part."""
    if kind not in ("html", "text"):
        raise ValueError(f"kind must be 'html' or 'text', not {kind!r}")
    pieces = _MARKER_RE.split(rendered)
    return PreparedPart(kind, tuple(pieces[0::2]), tuple(pieces[1::2]))
