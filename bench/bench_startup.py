"""How fast does `newsletter --help` start? Target: under 0.3 s.

Runs the installed console script N times and prints the median and best wall time.

    .venv/bin/python bench/bench_startup.py [N]
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    exe = Path(sys.executable).with_name("newsletter")
    cmd = [str(exe)] if exe.exists() else [shutil.which("newsletter") or "newsletter"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    times = []
    for _ in range(n):
        start = time.perf_counter()
        subprocess.run([*cmd, "--help"], check=True, capture_output=True, env=env)
        times.append(time.perf_counter() - start)
    print(
        f"newsletter --help: median {statistics.median(times) * 1000:.0f} ms, "
        f"best {min(times) * 1000:.0f} ms over {n} runs (target < 300 ms)"
    )


if __name__ == "__main__":
    main()
