"""The full send against Postfix's smtp-sink, compared with smtp-source in the same run.

    .venv/bin/python bench/bench_send.py [--subscribers 20000] [--connections 2]
                                         [--memory 100000]

1. Starts ``smtp-sink`` (Debian package ``postfix``) on a free loopback port.
2. In a child process: a fresh SQLite project with N subscribers (every one active, with
   varied topics) and the sample issue 2026-11, planned. Then, in a second child, the
   delivery worker over ``--connections`` SMTP connections, which prints messages/second
   and its peak memory (ru_maxrss): the send's memory, not the import's.
3. ``smtp-source -d`` sends the same number of messages of the same average size over the
   same number of connections; its messages/second and the ratio are printed.
4. With ``--memory M``, the child runs again with M subscribers and the two peak memory
   figures are compared (the goal: within 20%).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child(n: int, port: int, connections: int, folder: Path) -> None:
    """Set up a project of ``n`` subscribers and plan 2026-11; then send it in a process of
    its own (so its peak memory is the send's alone); print JSON."""
    sys.path.insert(0, str(REPO))
    from newsletter.config import load_settings
    from newsletter.services import App, imports, sends
    from newsletter.services.demo import write_demo_subscribers
    from newsletter.services.setup import init_project

    init_project(
        folder / "newsletter.toml",
        {
            "sender_name": "Bench",
            "sender_address": "bench@example.org",
            "postal_address": "1 Example Street",
        },
    )
    shutil.rmtree(folder / "issues")
    shutil.copytree(REPO / "issues", folder / "issues")
    overrides = {"smtp_url": f"smtp://127.0.0.1:{port}", "smtp_pool_size": str(connections)}
    settings = load_settings(folder / "newsletter.toml", overrides=overrides, environ={})
    csv_path = write_demo_subscribers(folder / "subscribers" / "bench.csv", n=n, seed=7)
    # Every subscriber active, so the whole list is sent to.
    text = (
        csv_path.read_text()
        .replace(",paused\n", ",active\n")
        .replace(",unsubscribed\n", ",active\n")
    )
    csv_path.write_text(text)
    with App(settings) as app:
        imports.import_subscribers(app, csv_path)
        preview = sends.plan(app, "2026-11")
    print(json.dumps({"subscribers": n, "planned": preview.outstanding}))


def send_only(port: int, connections: int, folder: Path) -> None:
    """Send the planned 2026-11 of ``folder``; print messages, seconds, rate, peak memory."""
    sys.path.insert(0, str(REPO))
    from newsletter.config import load_settings
    from newsletter.services import App, sends

    overrides = {"smtp_url": f"smtp://127.0.0.1:{port}", "smtp_pool_size": str(connections)}
    settings = load_settings(folder / "newsletter.toml", overrides=overrides, environ={})
    start = time.perf_counter()
    with App(settings) as app:
        options = sends.WorkerOptions(threads=connections, months=["2026-11"])
        result = sends.run_worker(app, options)
    elapsed = time.perf_counter() - start
    print(
        json.dumps(
            {
                "messages": result.report.sent,
                "seconds": elapsed,
                "rate": result.report.sent / elapsed,
                "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            }
        )
    )


def average_size(folder: Path) -> int:
    """Average message size of the issue's variants, assembled for one recipient."""
    sys.path.insert(0, str(REPO))
    from newsletter.config import load_settings
    from newsletter.content.files import get_issue
    from newsletter.delivery.message import assemble, build_message_template
    from newsletter.delivery.personalise import Recipient
    from newsletter.render.build import build_issue

    settings = load_settings(folder / "newsletter.toml", environ={})
    built = build_issue(get_issue(settings.issues_dir, "2026-11"), settings)
    sizes = []
    for v in built.variants.values():
        tpl = build_message_template(v, settings, issue_month="2026-11")
        msg = assemble(tpl, Recipient("reader@example.org", 1, "Ann Lee", ("training",)))
        sizes.append(len(msg.data))
    return sum(sizes) // len(sizes)


def run_child(n: int, port: int, connections: int) -> tuple[dict, Path]:
    """Set up and plan in one process, then send in another started from this (small)
    process: Linux keeps a process's peak memory across exec, so the send must not be
    started by the process that did the import."""
    folder = Path(tempfile.mkdtemp(prefix="bench-send-"))
    setup = subprocess.run(
        [sys.executable, __file__, "--child", str(n), str(port), str(connections), str(folder)],
        check=True,
        capture_output=True,
        text=True,
    )
    sent = subprocess.run(
        [sys.executable, __file__, "--send", str(port), str(connections), str(folder)],
        check=True,
        capture_output=True,
        text=True,
    )
    result = json.loads(setup.stdout.strip().splitlines()[-1])
    result.update(json.loads(sent.stdout.strip().splitlines()[-1]))
    return result, folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=20000)
    parser.add_argument("--connections", type=int, default=2)
    parser.add_argument("--memory", type=int, default=0, help="also run with this many")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--send", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.send:
        port, conns, folder = args.send
        send_only(int(port), int(conns), Path(folder))
        return
    if args.child:
        n, port, conns, folder = args.child
        child(int(n), int(port), int(conns), Path(folder))
        return
    sink = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    source = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
    if not os.path.exists(sink):
        sys.exit("smtp-sink not found: apt-get install postfix (it need not run)")
    port = free_port()
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    proc = subprocess.Popen([sink, *user, f"127.0.0.1:{port}", "256"])
    time.sleep(0.5)
    try:
        ours, folder = run_child(args.subscribers, port, args.connections)
        size = average_size(folder)
        count = ours["messages"]
        start = time.perf_counter()
        subprocess.run(
            [
                source,
                "-d",
                "-s",
                str(args.connections),
                "-l",
                str(size),
                "-m",
                str(count),
                "-f",
                "bench@example.org",
                "-t",
                "reader@example.org",
                f"127.0.0.1:{port}",
            ],
            check=True,
        )
        theirs = count / (time.perf_counter() - start)
        print(
            f"newsletter send: {count} messages (avg {size / 1024:.1f} KB) to "
            f"{args.subscribers} subscribers over {args.connections} connections in "
            f"{ours['seconds']:.1f} s = {ours['rate']:.0f} msg/s; "
            f"peak memory {ours['maxrss_kb'] / 1024:.0f} MB"
        )
        print(f"smtp-source -d: {count} messages of {size} bytes = {theirs:.0f} msg/s")
        print(f"ratio: {ours['rate'] / theirs:.2f} (goal >= 0.5)")
        if args.memory:
            big, _ = run_child(args.memory, port, args.connections)
            growth = big["maxrss_kb"] / ours["maxrss_kb"] - 1
            print(
                f"peak memory: {args.subscribers} subscribers {ours['maxrss_kb'] / 1024:.0f} MB,"
                f" {args.memory} subscribers {big['maxrss_kb'] / 1024:.0f} MB "
                f"({growth:+.0%}; goal within 20%); {big['rate']:.0f} msg/s"
            )
    finally:
        proc.terminate()
        proc.wait(5)


if __name__ == "__main__":
    main()
