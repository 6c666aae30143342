"""``newsletter demo``: the whole job on the embedded defaults, with no servers.

For now the demo sets up a project folder with the sample issues and checks and lists
them; the delivery stage extends it to a full send into the file outbox.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from newsletter.content.files import CheckedFile, check_issues, list_issues
from newsletter.project import init_project

DEMO_SETTINGS = {
    "sender_name": "Psychotherapy Research Digest (demo)",
    "sender_address": "digest@example.org",
    "postal_address": "Research-Practice Network, 1 Example Street, Exampletown",
}


@dataclass
class DemoResult:
    """What the demo did, for the CLI to print."""

    folder: Path
    steps: list[str]
    checked: list[CheckedFile]


def sample_issues_dir() -> Path:
    """The sample issues: packaged in a wheel, or the repository's issues/ folder."""
    packaged = resources.files("newsletter").joinpath("samples")
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / "issues"


def run_demo(folder: Path) -> DemoResult:
    """Create (or reuse) a demo project in ``folder`` and check its sample issues."""
    folder = folder.absolute()
    config = folder / "newsletter.toml"
    steps: list[str] = []
    if not config.exists():
        steps += init_project(config, DEMO_SETTINGS)
    issues = folder / "issues"
    issues.mkdir(parents=True, exist_ok=True)
    copied = 0
    for src in sorted(sample_issues_dir().glob("*.md")):
        dest = issues / src.name
        if not dest.exists():
            shutil.copyfile(src, dest)
            copied += 1
    if copied:
        steps.append(f"copied {copied} sample issues into {issues}/")
    return DemoResult(folder, steps, check_issues(None, issues))


__all__ = ["DemoResult", "list_issues", "run_demo", "sample_issues_dir"]
