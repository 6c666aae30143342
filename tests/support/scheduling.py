"""What the scheduler tests share: the project's people, its settings, scheduler processes.

The fixtures that use these (``scheduler_project``, ``scheduler_process``) are in
``tests/plugin.py``.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from newsletter.config import Settings, load_settings

MONTH = "2026-11"  # the ready sample issue
AUTHOR = "author@example.org"
PEOPLE = {
    "all@example.org": None,
    "training@example.org": "Training",
    "pdt@example.org": "psychodynamic-therapy-pdt",
}
SCHEDULER_TABLES = ("schedule_runs", "schedules", "scheduler_lease")


def settings_of(project: Path) -> Settings:
    """The project's settings."""
    return load_settings(project / "newsletter.toml", environ={})


def soon(seconds: float) -> str:
    """A local (UTC) time ``seconds`` ahead, to the second, as --at takes it."""
    moment = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


class SchedulerProcess:
    """A real ``newsletter scheduler run`` subprocess whose output is collected."""

    def __init__(self, project: Path, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
        env["NEWSLETTER_CONFIG"] = str(project / "newsletter.toml")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "newsletter", "scheduler", "run", *args],
            cwd=project,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output:
                return
            if self.proc.poll() is not None:
                self._reader.join(2)
                if text in self.output:
                    return
                raise AssertionError(f"scheduler exited ({self.proc.returncode}):\n{self.output}")
            time.sleep(0.05)
        raise AssertionError(f"no {text!r} within {timeout} s:\n{self.output}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(30)
        self._reader.join(5)
        return code

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
