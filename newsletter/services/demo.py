"""``newsletter demo``: the whole job on the embedded defaults, with no servers.

In a fresh folder: writes newsletter.toml, creates the SQLite store, copies the sample
issues, imports a few hundred deterministic sample subscribers with varied topics (some
paused, some unsubscribed), and sends the latest ready sample issue to the file outbox.
Safe to run again: nobody gets a second copy.
"""

from __future__ import annotations

import csv
import random
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from newsletter.config import Settings, load_settings
from newsletter.content.files import CheckedFile, check_issues
from newsletter.content.taxonomy import load_taxonomy
from newsletter.importers.subscribers_csv import import_csv
from newsletter.services.setup import init_project
from newsletter.store.db import open_store, upgrade_database

DEMO_SETTINGS = {
    # One name for the newsletter everywhere (From, header, footer, List-Id, web pages);
    # the sender is who sends it, named in the footer beside the postal address.
    "newsletter_name": "Psychotherapy Research Digest",
    "sender_name": "Research-Practice Network (demo)",
    "sender_address": "digest@example.org",
    "postal_address": "Research-Practice Network, 1 Example Street, Exampletown",
}
DEMO_SUBSCRIBERS = 300
FIRST = [
    "Ana",
    "Ben",
    "Chloé",
    "Dev",
    "Eli",
    "Fatima",
    "Gus",
    "Hana",
    "Ivan",
    "Jo",
    "Kofi",
    "Lena",
    "Mateo",
    "Noor",
    "Owen",
    "Priya",
    "Quinn",
    "Rosa",
    "Sam",
    "Tomás",
]
LAST = [
    "Alvarez",
    "Brown",
    "Chen",
    "Dubois",
    "Eriksen",
    "Fischer",
    "García",
    "Hughes",
    "Ito",
    "Jensen",
    "Kim",
    "Lopez",
    "Müller",
    "Nguyen",
    "O'Brien",
    "Patel",
]


@dataclass
class DemoResult:
    """What the demo did, for the CLI to print."""

    folder: Path
    steps: list[str]
    checked: list[CheckedFile]
    month: str | None = None
    settings: Settings | None = None  # of the demo folder, once it is set up


def sample_issues_dir() -> Path:
    """The sample issues: packaged in a wheel, or the repository's issues/ folder."""
    packaged = resources.files("newsletter").joinpath("samples")
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / "issues"


def write_demo_subscribers(path: Path, n: int = DEMO_SUBSCRIBERS, seed: int = 2026) -> Path:
    """A CSV of ``n`` made-up subscribers, the same every time (``seed``)."""
    rng = random.Random(seed)
    slugs = [t.slug for t in load_taxonomy()]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["email", "name", "topics", "status"])
        for i in range(n):
            first, last = rng.choice(FIRST), rng.choice(LAST)
            roll = rng.random()
            topics = "all" if roll < 0.15 else "; ".join(rng.sample(slugs, rng.randint(1, 5)))
            status = rng.choices(["active", "paused", "unsubscribed"], [90, 6, 4])[0]
            name = "" if rng.random() < 0.1 else f"{first} {last}"
            out.writerow([f"reader{i:04d}@example.org", name, topics, status])
    return path


def run_demo(folder: Path, send: bool = True) -> DemoResult:
    """Set up (or reuse) a demo project in ``folder``; check the issues; send the latest."""
    folder = folder.absolute()
    config = folder / "newsletter.toml"
    steps: list[str] = []
    if not config.exists():
        steps += init_project(config, DEMO_SETTINGS)
    else:
        # An older demo folder: bring its store up to this version's tables.
        upgrade_database(load_settings(config, environ={}).database_url)
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
    checked = check_issues(None, issues)
    result = DemoResult(folder, steps, checked)
    if not send or any(c.result.errors for c in checked):
        return result

    settings = load_settings(config, environ={})
    result.settings = settings
    csv_path = write_demo_subscribers(folder / "subscribers" / "demo-subscribers.csv")
    with open_store(settings) as store:
        report = import_csv(store, csv_path)
    if report.added:
        steps.append(f"imported {report.added} sample subscribers from {csv_path.name}")
    ready = [c.result.issue for c in checked if c.result.issue and c.result.issue.status == "ready"]
    if ready:
        result.month = max(i.month for i in ready)
    return result


__all__ = ["DemoResult", "run_demo", "sample_issues_dir", "write_demo_subscribers"]
