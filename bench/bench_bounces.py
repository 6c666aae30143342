"""Messages per second through the bounce parser, over the fixture corpus.

    .venv/bin/python bench/bench_bounces.py [--seconds 3]

Parses every report of ``tests/fixtures/bounces/`` (filled with a recipient, a VERP
address and a Message-ID) in a loop on one core for ``--seconds`` and prints messages per
second (the goal: at least 500/s) and the share each kind took. Parsing only: matching
and recording a bounce are one small transaction each, like any other write.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def corpus() -> list[bytes]:
    fills = {
        "{BOUNCE_TO}": "bounces+202611-17-3fa9c2d1e0@news.example.org",
        "{RCPT}": "reader@example.org",
        "{MESSAGE_ID}": "<2026-11.17.abcdef0123456789@example.org>",
        "{N}": "1",
    }
    out = []
    for path in sorted((REPO / "tests" / "fixtures" / "bounces").glob("*.eml")):
        text = path.read_bytes().decode("latin-1")
        for key, value in fills.items():
            text = text.replace(key, value)
        out.append(text.replace("\n", "\r\n").encode("latin-1"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    from newsletter.importers.bounce_mail import parse_bounce

    messages = corpus()
    kinds: Counter[str] = Counter()
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < args.seconds:
        for raw in messages:
            kinds[parse_bounce(raw).what] += 1
            n += 1
    elapsed = time.perf_counter() - start
    print(f"{n} messages in {elapsed:.1f} s = {n / elapsed:.0f} msg/s (goal >= 500) on one core")
    print("kinds: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))


if __name__ == "__main__":
    main()
