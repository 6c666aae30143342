"""Cost per recipient of personalising an already built variant (target: <= 50 µs).

Run from the project folder:

    .venv/bin/python bench/bench_personalise.py [ISSUE_FILE] [--n 20000]

Prints the time per recipient for the whole step (three signed tokens + filling the HTML
and text parts), and separately for token signing, for substitution alone, and for a
stock itsdangerous token for comparison.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from newsletter.config import load_settings
from newsletter.content.parser import load_issue
from newsletter.delivery.personalise import Recipient, recipient_values
from newsletter.render import build_issue
from newsletter.tokens import make_token

TARGET_US = 50.0
REPO = Path(__file__).resolve().parent.parent


def per_item_us(fn, items) -> float:
    """Best of three runs of ``fn`` over ``items``, in microseconds per item."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for item in items:
            fn(item)
        best = min(best, time.perf_counter() - start)
    return best / len(items) * 1e6


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("issue", nargs="?", default=str(REPO / "issues" / "2026-10.md"))
    parser.add_argument("--n", type=int, default=20_000, help="recipients per run")
    args = parser.parse_args()

    settings = load_settings(
        overrides={
            "secret_key": "bench-key-1, bench-key-0",
            "base_url": "https://news.example.org",
            "postal_address": "1 Example Street, Exampletown",
        }
    )
    issue = load_issue(Path(args.issue))
    start = time.perf_counter()
    built = build_issue(issue, settings)
    build_ms = (time.perf_counter() - start) * 1e3
    variant = built.variant_for([], all_topics=True)
    topic_sets = [("empathy",), ("training", "empathy"), ("cbt-and-related",), ()]
    recipients = [
        Recipient(
            email=f"reader{i}@example.org",
            subscriber_id=i,
            name=f"Reader <{i}> & Co" if i % 7 == 0 else f"Reader{i} Example",
            topics=topic_sets[i % len(topic_sets)],
            all_topics=i % 4 == 3,
        )
        for i in range(args.n)
    ]
    values = [
        recipient_values(settings, r, variant.web_view_url, variant.summary_topics)
        for r in recipients
    ]

    def personalise(r: Recipient) -> tuple[str, str]:
        v = recipient_values(settings, r, variant.web_view_url, variant.summary_topics)
        return variant.html.fill(v), variant.text.fill(v)

    total = per_item_us(personalise, recipients)
    signing = per_item_us(
        lambda r: [
            make_token(settings, p, r.token_payload)
            for p in ("preferences", "unsubscribe", "topic")
        ],
        recipients,
    )
    fill = per_item_us(lambda v: (variant.html.fill(v), variant.text.fill(v)), values)

    from itsdangerous import URLSafeTimedSerializer

    stock = URLSafeTimedSerializer(settings.secret_keys[::-1], salt="newsletter.topic")
    stock_us = per_item_us(lambda r: stock.dumps(r.token_payload), recipients)

    print(f"issue {issue.month}: {len(built.variants)} variants built in {build_ms:.0f} ms")
    print(
        f"variant '{variant.name}': HTML {len(variant.html.fill(values[1])) / 1024:.1f} KB, "
        f"{len(variant.html.names)} HTML holes, {len(variant.text.names)} text holes"
    )
    print(f"recipients per run: {args.n}")
    print(f"personalise, per recipient:        {total:6.1f} µs  (target <= {TARGET_US:.0f} µs)")
    print(f"  of which token signing (3):      {signing:6.1f} µs")
    print(f"  of which substitution (HTML+text):{fill:6.1f} µs")
    print(f"stock itsdangerous, one token:     {stock_us:6.1f} µs  (ours: {signing / 3:.1f} µs)")
    print("PASS" if total <= TARGET_US else "OVER TARGET")


if __name__ == "__main__":
    main()
