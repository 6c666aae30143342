"""How many messages does a SIGKILL make go twice? Two kills of a send, then a worker.

    .venv/bin/python bench/bench_crash.py [--subscribers 3000] [--runs 5] [--workers 2]

Each run: a fresh SQLite project with N active subscribers and the sample issue 2026-11; a
counting SMTP server (aiosmtpd, in this process) that answers every DATA after a small
delay; ``newsletter send 2026-11 --yes`` killed with SIGKILL twice (at about 30 % and 60 %
of the list), then ``newsletter worker --once`` to finish. Prints, per run, the messages
the server received, the recipients that got a message twice, and whether every
recipient got one; then the worst and the mean over the runs. Uses the CLI only, so the
same script measures any version of the program.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from aiosmtpd.controller import Controller

REPO = Path(__file__).resolve().parent.parent


class CountingHandler:
    """Counts messages per recipient; answers each DATA after ``delay`` seconds."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.counts: Counter[str] = Counter()
        self.total = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope) -> str:  # aiosmtpd calls it so
        await asyncio.sleep(self.delay)
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                self.counts[rcpt] += 1
            self.total += 1
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def newsletter(folder: Path, *args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env["NEWSLETTER_CONFIG"] = str(folder / "newsletter.toml")
    return subprocess.Popen(
        [sys.executable, "-m", "newsletter", *args],
        cwd=folder,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def make_project(folder: Path, n: int, port: int) -> None:
    (folder / "newsletter.toml").write_text(
        'sender_address = "bench@example.org"\n'
        'postal_address = "1 Example Street"\n'
        'secret_key = "bench-key"\n'
        f'smtp_url = "smtp://127.0.0.1:{port}"\n'
        "retry_initial_delay = 0\n"
    )
    shutil.copytree(REPO / "issues", folder / "issues")
    rng = random.Random(11)
    topics = ["all", "Training", "Empathy; Training", "psychodynamic-therapy-pdt", "IPT"]
    with (folder / "people.csv").open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["email", "topics"])
        for i in range(n):
            out.writerow([f"reader{i:05d}@example.org", rng.choice(topics)])
    for args in (("db", "upgrade"), ("subscribers", "import", "people.csv")):
        if newsletter(folder, *args).wait(300) != 0:
            sys.exit(f"setting up the project failed: newsletter {' '.join(args)}")


def one_run(n: int, workers: int, delay: float, seed: int) -> dict:
    handler = CountingHandler(delay)
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    folder = Path(tempfile.mkdtemp(prefix="bench-crash-"))
    try:
        make_project(folder, n, port)
        rng = random.Random(seed)
        expected = None
        for fraction in (0.3, 0.6):
            target = int(n * (fraction + rng.uniform(-0.05, 0.05)))
            proc = newsletter(folder, "send", "2026-11", "--yes", "--workers", str(workers))
            deadline = time.monotonic() + 600
            while handler.total < target and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.005)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        if newsletter(folder, "worker", "--once").wait(600) != 0:
            sys.exit("newsletter worker --once failed")
        expected = n  # every sample subscriber gets the ready issue (no "no match" topics)
        twice = sum(1 for c in handler.counts.values() if c > 1)
        return {
            "received": handler.total,
            "recipients": len(handler.counts),
            "twice": twice,
            "complete": len(handler.counts) == expected,
        }
    finally:
        controller.stop()
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--delay", type=float, default=0.002, help="seconds per DATA reply")
    args = parser.parse_args()
    results = []
    for run in range(args.runs):
        r = one_run(args.subscribers, args.workers, args.delay, seed=run)
        results.append(r)
        print(
            f"run {run + 1}: {r['received']} messages to {r['recipients']} recipients, "
            f"{r['twice']} got one twice, {'complete' if r['complete'] else 'INCOMPLETE'}",
            flush=True,
        )
    twice = [r["twice"] for r in results]
    print(
        f"two SIGKILLs of a {args.subscribers}-person send, {args.runs} runs: duplicates "
        f"worst {max(twice)}, mean {statistics.mean(twice):.1f}; "
        f"complete in {sum(r['complete'] for r in results)}/{len(results)} runs"
    )


if __name__ == "__main__":
    main()
