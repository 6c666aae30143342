"""Cost per message of assembling MIME bytes for a built variant (target: <= 50 µs).

Run from the project folder:

    .venv/bin/python bench/bench_message.py [ISSUE_FILE] [--n 20000] [--stdlib-n 300]

Times are the fastest chunk of 1,000 messages over three passes, so other work on a
shared machine does not inflate them. Builds the 2026-10 sample issue, takes the variant
with all summaries, and prints the time per message of
:func:`newsletter.delivery.message.assemble` (three signed tokens, the personal values,
the To/Date/Message-ID/List-Unsubscribe headers and both quoted-printable parts) over
``--n`` recipients; then the same message made the usual way,
``email.message.EmailMessage`` + ``policy.SMTP`` + ``as_bytes()`` per recipient, and the
ratio.
"""

from __future__ import annotations

import argparse
import time
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from pathlib import Path

from newsletter.config import load_settings
from newsletter.content.parser import load_issue
from newsletter.delivery.message import assemble, build_message_template
from newsletter.delivery.personalise import Recipient, recipient_values
from newsletter.render import build_issue
from newsletter.rules.links import page_url

TARGET_US = 50.0
REPO = Path(__file__).resolve().parent.parent


def per_item_us(fn, items, chunk: int = 1000) -> float:
    """``fn``'s cost per item in microseconds: the fastest chunk of ``chunk`` items over
    three passes (other processes on a shared machine only ever add time)."""
    best = float("inf")
    for _ in range(3):
        for at in range(0, len(items), chunk):
            part = items[at : at + chunk]
            start = time.perf_counter()
            for item in part:
                fn(item)
            best = min(best, (time.perf_counter() - start) / len(part))
    return best * 1e6


def stdlib_message(variant, settings, recipient: Recipient) -> bytes:
    """The same message through the standard library's EmailMessage path."""
    from datetime import UTC, datetime

    values = recipient_values(settings, recipient, variant.web_view_url, variant.summary_topics)
    msg = EmailMessage(policy=SMTP)
    msg["From"] = f"{settings.newsletter_name} <{settings.sender_address}>"
    msg["To"] = f"{recipient.name} <{recipient.email}>"
    msg["Subject"] = variant.subject
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = make_msgid(domain="news.example.org")
    msg["List-Id"] = "<digest.news.example.org>"
    unsubscribe = page_url(settings.base_url, "unsubscribe", values["unsubscribe_token"])
    msg["List-Unsubscribe"] = f"<{unsubscribe}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(variant.text.fill(values), cte="quoted-printable")
    msg.add_alternative(variant.html.fill(values), subtype="html", cte="quoted-printable")
    return msg.as_bytes()


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("issue", nargs="?", default=str(REPO / "issues" / "2026-10.md"))
    parser.add_argument("--n", type=int, default=20_000, help="recipients per run")
    parser.add_argument("--stdlib-n", type=int, default=300, help="recipients, stdlib path")
    args = parser.parse_args()

    settings = load_settings(
        overrides={
            "secret_key": "bench-key-1, bench-key-0",
            "base_url": "https://news.example.org",
            "postal_address": "1 Example Street, Exampletown",
            "sender_address": "digest@news.example.org",
            "reply_to": "editor@news.example.org",
        },
        environ={},
    )
    issue = load_issue(Path(args.issue))
    built = build_issue(issue, settings)
    variant = built.variant_for([], all_topics=True)
    start = time.perf_counter()
    template = build_message_template(variant, settings, issue_month=issue.month)
    template_ms = (time.perf_counter() - start) * 1e3
    topic_sets = [("empathy",), ("training", "empathy"), ("cbt-and-related",), ()]
    recipients = [
        Recipient(
            email=f"reader{i}@example.org",
            subscriber_id=i,
            name=(
                f"Zoë Ñúñez {i}"
                if i % 5 == 0
                else f'Reader "{i}" & Co'
                if i % 7 == 0
                else f"Reader{i} Example"
            ),
            topics=topic_sets[i % len(topic_sets)],
            all_topics=i % 4 == 3,
        )
        for i in range(args.n)
    ]
    size = len(assemble(template, recipients[1]).data)

    ours = per_item_us(lambda r: assemble(template, r), recipients)
    values_only = per_item_us(
        lambda r: recipient_values(settings, r, variant.web_view_url, variant.summary_topics),
        recipients,
    )
    stdlib = per_item_us(
        lambda r: stdlib_message(variant, settings, r), recipients[: args.stdlib_n], chunk=50
    )

    print(f"issue {issue.month}, variant {variant.name!r}: message {size / 1024:.1f} KB")
    print(f"template (once per variant):     {template_ms:8.1f} ms")
    print(f"recipients per run:              {args.n:8d}")
    print(f"assemble(), per message:         {ours:8.1f} µs  (target <= {TARGET_US:.0f} µs)")
    print(f"  of which personal values:      {values_only:8.1f} µs  (3 signed tokens)")
    print(f"  of which MIME assembly:        {ours - values_only:8.1f} µs")
    print(f"stdlib EmailMessage + as_bytes:  {stdlib:8.1f} µs  ({args.stdlib_n} messages)")
    print(f"ratio stdlib / ours:             {stdlib / ours:8.1f} x")
    print("PASS" if ours <= TARGET_US else "FAIL")


if __name__ == "__main__":
    main()
