"""Per-recipient audit of what an SMTP test server received against what it should have.

After a send, :func:`audit` answers, for every person: did their digest arrive (missing),
is it theirs (wrong: another envelope, another To, another person's signed links, the
summaries of other topics), and how many extra copies came (duplicates, with the same
Message-ID or not). Messages are given as ``(envelope recipients, raw bytes)`` pairs, so
both ``SmtpTestServer.messages`` and a ``FaultSmtpServer`` log can be audited.
"""

from __future__ import annotations

import email
import email.message
import email.policy
from collections.abc import Iterable
from dataclasses import dataclass, field

from newsletter.config import Settings
from newsletter.tokens import read_token
from tests.support.services import SAMPLE_TITLES


@dataclass
class Audit:
    """What :func:`audit` found; every list or dict is empty after a perfect send."""

    missing: list[str] = field(default_factory=list)  # expected, never received
    unexpected: list[str] = field(default_factory=list)  # received, expected nothing
    wrong: dict[str, str] = field(default_factory=dict)  # address -> what is wrong
    duplicates: dict[str, int] = field(default_factory=dict)  # address -> extra copies
    #: address -> the positions (in the audited order) of each copy, for every duplicate
    positions: dict[str, list[int]] = field(default_factory=dict)

    @property
    def extra_copies(self) -> int:
        """Messages received beyond one per recipient."""
        return sum(self.duplicates.values())

    def summary(self) -> str:
        """One line for assertion messages."""
        return (
            f"missing {len(self.missing)} {self.missing[:5]}, unexpected "
            f"{len(self.unexpected)} {self.unexpected[:5]}, wrong {len(self.wrong)} "
            f"{list(self.wrong.items())[:3]}, duplicates {self.extra_copies} "
            f"{list(self.duplicates.items())[:5]}"
        )


def parse(data: bytes) -> email.message.EmailMessage:
    """Raw message bytes parsed with the modern policy."""
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, email.message.EmailMessage)
    return msg


def summaries_in(msg: email.message.EmailMessage) -> set[str]:
    """The sample issue's summaries (s1, s2, s3) that are in the digest as headings.

    A summary only listed under "Also in this issue" does not count: the text part shows
    headings in capitals, and the HTML part must have the title too.
    """
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    return {k for k, title in SAMPLE_TITLES.items() if title.upper() in text and title in html}


def _problem(
    addr: str,
    rcpts: list[str],
    msg: email.message.EmailMessage,
    expected: set[str],
    settings: Settings | None,
    ids: dict[int, str] | None,
) -> str | None:
    if rcpts != [addr]:
        return f"envelope recipients {rcpts}"
    to = str(msg["To"] or "")
    if f"<{addr}>" not in to and to != addr:
        return f"To: {to}"
    got = summaries_in(msg)
    if got != expected:
        return f"summaries {sorted(got)}, expected {sorted(expected)}"
    if settings is not None and ids is not None:
        link = str(msg["List-Unsubscribe"] or "").strip("<>").split(",")[0].strip("<> ")
        token = link.rsplit("/", 1)[-1]
        payload = read_token(settings, "unsubscribe", token)
        owner = ids.get(payload) if isinstance(payload, int) else payload
        if owner != addr:
            return f"the unsubscribe link is {owner!r}'s"
    return None


def audit(
    messages: Iterable[tuple[list[str], bytes]],
    expected: dict[str, set[str] | None],
    *,
    settings: Settings | None = None,
    ids: dict[int, str] | None = None,
) -> Audit:
    """Check every received message against ``expected`` (address -> the summaries
    their digest must hold; None: nothing may arrive). With ``settings`` and ``ids``
    (subscriber id -> address) the unsubscribe link must be the recipient's own."""
    result = Audit()
    seen: dict[str, list[int]] = {}
    message_ids: dict[str, set[str]] = {}
    for pos, (rcpts, data) in enumerate(messages):
        addr = rcpts[0].lower() if rcpts else "<none>"
        seen.setdefault(addr, []).append(pos)
        if addr not in expected or expected[addr] is None:
            if addr not in result.unexpected:
                result.unexpected.append(addr)
            continue
        msg = parse(data)
        message_ids.setdefault(addr, set()).add(str(msg["Message-ID"]))
        if addr not in result.wrong:
            problem = _problem(addr, rcpts, msg, expected[addr] or set(), settings, ids)
            if problem:
                result.wrong[addr] = problem
    for addr, want in expected.items():
        if want is not None and addr.lower() not in seen:
            result.missing.append(addr)
    for addr, positions in seen.items():
        if len(positions) > 1 and addr not in result.unexpected:
            result.duplicates[addr] = len(positions) - 1
            result.positions[addr] = positions
            if len(message_ids.get(addr, ())) > 1 and addr not in result.wrong:
                result.wrong[addr] = f"copies with different Message-IDs {message_ids[addr]}"
    return result
