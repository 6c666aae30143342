"""The bounce corpus of ``tests/fixtures/bounces/``: filling a fixture, and one word for
what the parser made of it.

Each fixture is a report written from a server's documented format, with placeholders:
``{BOUNCE_TO}`` (the address it came back to: our bounce address, VERP-tagged or not),
``{RCPT}`` (the address we mailed), ``{MESSAGE_ID}`` (the Message-ID of our message) and
``{N}`` (a number that keeps the reports' own Message-IDs apart).
"""

from __future__ import annotations

from pathlib import Path

from newsletter.importers.bounce_mail import ParsedBounce

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bounces"


def corpus_names() -> list[str]:
    """Every fixture's file name, sorted."""
    return sorted(p.name for p in FIXTURES.glob("*.eml"))


def fill(name: str, *, bounce_to: str, rcpt: str, message_id: str, n: int = 1) -> bytes:
    """The fixture ``name`` with its placeholders filled, CRLF line ends (as it arrives
    by SMTP). Fixtures are read as Latin-1 so 8-bit bytes come back unchanged."""
    text = (FIXTURES / name).read_bytes().decode("latin-1")
    for key, value in {
        "{BOUNCE_TO}": bounce_to,
        "{RCPT}": rcpt,
        "{MESSAGE_ID}": message_id,
        "{N}": str(n),
    }.items():
        text = text.replace(key, value)
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("latin-1")


def kind_of(parsed: ParsedBounce) -> str:
    """One word for a parsed message: hard, soft, block, complaint (its recipients' kind),
    warning (a delay), autoreply, or unknown (set aside: unknown, too-big, nobody)."""
    if parsed.what == "autoreply":
        return "autoreply"
    kinds = {r.kind for r in parsed.recipients}
    if parsed.what in ("unknown", "too-big") or not kinds:
        return "unknown"
    assert len(kinds) == 1, parsed
    [kind] = kinds
    return kind or "warning"
