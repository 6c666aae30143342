#!/usr/bin/env python3
"""Project runner: sets up its own virtual environment, then runs one job.

    python3 dev.py demo      # the main job on the embedded defaults (SQLite + file outbox)
    python3 dev.py test      # checks, then the whole test suite on 2 workers (args go to pytest)
    python3 dev.py test -m "not slow"   # the same without the tests that start processes
    python3 dev.py golden    # regenerate the golden files of rendered output
    python3 dev.py shell     # print how to activate the environment

Needs only Python 3.11+. The environment lives in .venv/ and is reinstalled whenever
pyproject.toml changes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".installed-from"


def _say(msg: str) -> None:
    print(f"dev.py: {msg}", file=sys.stderr, flush=True)


def ensure_env() -> None:
    """Create .venv and install the project with its dev extra when needed."""
    if sys.version_info < (3, 11):  # noqa: UP036 - this script may be run by an older python3
        major, minor = sys.version_info[:2]
        sys.exit(f"dev.py: Python 3.11 or newer is needed (this is {major}.{minor})")
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if PY.exists() and STAMP.exists() and STAMP.read_text().strip() == digest:
        return
    if not PY.exists():
        _say("creating the virtual environment in .venv/")
        try:
            venv.EnvBuilder(with_pip=True).create(VENV)
        except Exception as exc:  # e.g. Debian without python3-venv
            sys.exit(f"dev.py: cannot create .venv ({exc}); install python3-venv and retry")
    _say("installing the project and its dev tools (first run only)")
    subprocess.run(
        [
            str(PY),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-e",
            f"{ROOT}[dev]",
        ],
        check=True,
    )
    STAMP.write_text(digest)


def run(*cmd: str) -> int:
    return subprocess.run(list(cmd), cwd=ROOT).returncode


def main(argv: list[str]) -> int:
    job = argv[0] if argv else "help"
    rest = argv[1:]
    if job not in ("demo", "test", "golden", "shell"):
        print(__doc__)
        return 0 if job == "help" else 2
    ensure_env()
    if job == "demo":
        return run(str(BIN / "newsletter"), "demo", *(rest or ["demo"]))
    if job == "golden":
        env = {**os.environ, "NEWSLETTER_REGENERATE_GOLDEN": "1"}
        return subprocess.run(
            [str(PY), "-m", "pytest", "-q", "tests/render", *rest], cwd=ROOT, env=env
        ).returncode
    if job == "shell":
        print(f"source {BIN / 'activate'}")
        return 0
    checks = [
        ("ruff check", [str(BIN / "ruff"), "check", "."], "see the lines above"),
        ("ruff format", [str(BIN / "ruff"), "format", "--check", "."], "ruff format . fixes it"),
        ("lint-imports", [str(BIN / "lint-imports")], "the layer map: docs/ARCHITECTURE.md"),
        ("mypy", [str(PY), "-m", "mypy"], "strict in newsletter/services and newsletter/rules"),
    ]
    for name, cmd, hint in checks:
        if run(*cmd) != 0:
            _say(f"{name} failed ({hint})")
            return 1
    # Two pytest-xdist workers unless told otherwise (-n 0 runs in one process): the
    # tests that start processes spend most of their time waiting.
    if not any(a == "-n" or a.startswith(("-n", "--numprocesses")) for a in rest):
        rest = ["-n", "2", *rest]
    return run(str(PY), "-m", "pytest", *rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
