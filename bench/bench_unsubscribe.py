"""One-click unsubscribes during a live send: how long each answer takes, and whether any
message to a person started after their unsubscribe had been answered.

    .venv/bin/python bench/bench_unsubscribe.py [--subscribers 600] [--leavers 40]
                                                [--delay 0.02]

1. A fresh SQLite project with N subscribers (CSV import), a counting SMTP server in this
   process (aiosmtpd) that answers each DATA after ``--delay`` seconds and notes when each
   message began (its MAIL FROM), and a real ``newsletter serve`` process.
2. ``newsletter send 2026-11 --yes`` runs; meanwhile the script POSTs the RFC 8058
   one-click unsubscribe (``List-Unsubscribe=One-Click``) over HTTP for ``--leavers``
   people just ahead of the send, one after another, timing each answer.
3. Prints the answers' median and maximum time; how many messages started after the
   answer to their person's unsubscribe (the promise: 0); and how many started after the
   person had clicked, while the answer was pending (a message already on the wire may;
   one the worker had merely claimed should not).

It uses the CLI, HTTP and ``newsletter.tokens.make_token`` only, so the same script
measures any version of the program.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

from aiosmtpd.controller import Controller

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


class Recorder:
    """Notes when each message began (MAIL FROM) and to whom; answers DATA slowly."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.started: list[tuple[str, float]] = []
        self.lock = threading.Lock()

    async def handle_MAIL(self, server, session, envelope, address, options) -> str:
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        envelope.began = time.monotonic()
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        await asyncio.sleep(self.delay)
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                self.started.append((rcpt, envelope.began))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def newsletter(folder: Path, *args: str, quiet: bool = True) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env["NEWSLETTER_CONFIG"] = str(folder / "newsletter.toml")
    out = subprocess.DEVNULL if quiet else None
    return subprocess.Popen(
        [sys.executable, "-m", "newsletter", *args], cwd=folder, env=env, stdout=out, stderr=out
    )


def subscriber_ids(folder: Path) -> dict[str, int]:
    import sqlite3

    with sqlite3.connect(folder / "subscribers" / "newsletter.db") as db:
        return dict(db.execute("SELECT email, id FROM subscribers"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=600)
    parser.add_argument("--leavers", type=int, default=40)
    parser.add_argument("--delay", type=float, default=0.02, help="seconds per DATA reply")
    args = parser.parse_args()

    from newsletter.config import load_settings
    from newsletter.tokens import make_token

    recorder = Recorder(args.delay)
    smtp_port, web_port = free_port(), free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    folder = Path(tempfile.mkdtemp(prefix="bench-unsub-"))
    serve = None
    try:
        (folder / "newsletter.toml").write_text(
            'sender_address = "bench@example.org"\n'
            'postal_address = "1 Example Street"\n'
            'secret_key = "bench-key"\n'
            f'base_url = "http://127.0.0.1:{web_port}"\n'
            f'smtp_url = "smtp://127.0.0.1:{smtp_port}"\n'
        )
        shutil.copytree(REPO / "issues", folder / "issues")
        with (folder / "people.csv").open("w", newline="") as fh:
            out = csv.writer(fh)
            out.writerow(["email", "topics"])
            for i in range(args.subscribers):
                out.writerow([f"reader{i:05d}@example.org", "all"])
        for setup in (("db", "upgrade"), ("subscribers", "import", "people.csv")):
            if newsletter(folder, *setup).wait(300) != 0:
                sys.exit(f"setting up failed: newsletter {' '.join(setup)}")
        settings = load_settings(folder / "newsletter.toml", environ={})
        ids = subscriber_ids(folder)
        serve = newsletter(folder, "serve", "--port", str(web_port))
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{web_port}/", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    sys.exit("newsletter serve did not start")
                time.sleep(0.1)
        send = newsletter(folder, "send", "2026-11", "--yes")
        step = max(1, (args.subscribers - 60) // args.leavers)
        leavers = [f"reader{i:05d}@example.org" for i in range(40, args.subscribers, step)]
        leavers = leavers[: args.leavers]
        answered: dict[str, float] = {}
        asked: dict[str, float] = {}
        took: list[float] = []
        for n, email in enumerate(leavers):
            target = 40 + n * step - 15  # stay just ahead of the send
            while len(recorder.started) < target and send.poll() is None:
                time.sleep(0.002)
            token = make_token(settings, "unsubscribe", ids[email])
            body = urllib.parse.urlencode({"List-Unsubscribe": "One-Click"}).encode()
            t0 = asked[email] = time.monotonic()
            with urllib.request.urlopen(
                f"http://127.0.0.1:{web_port}/unsubscribe/{token}", data=body, timeout=60
            ) as answer:
                assert answer.status == 200
            answered[email] = time.monotonic()
            took.append(answered[email] - t0)
        send.wait(600)
        late = [
            (rcpt, began - answered[rcpt])
            for rcpt, began in recorder.started
            if rcpt in answered and began > answered[rcpt]
        ]
        print(
            f"{len(took)} one-click unsubscribes during a send to {args.subscribers}: answer "
            f"median {statistics.median(took) * 1000:.0f} ms, max {max(took) * 1000:.0f} ms"
        )
        clicked = [r for r, began in recorder.started if r in asked and began > asked[r]]
        print(f"messages started after their person's unsubscribe was answered: {len(late)}")
        print(f"messages started after their person had clicked: {len(clicked)}")
        if late:
            print("  e.g. " + ", ".join(f"{r} +{d:.2f} s" for r, d in late[:5]))
    finally:
        if serve is not None:
            serve.terminate()
            serve.wait(10)
        controller.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
