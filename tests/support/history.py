"""A year of a list's life, made through the real services, for the reports' tests.

:func:`make_history` writes a project (12 monthly issues of two summaries each, the file
outbox) and lives through a year on a simulated clock: people join (added, imported, or
signed up on the web), change topics, pause, unsubscribe and bounce, and each month's
issue is planned and sent to the outbox by the real worker. The services take the time
from the App's clock; the store's own writes stamp it with ``store.models.utcnow`` (by
the names ``store.subscribers`` and ``store.ledger`` imported), which the simulation
points at the same clock for its duration. The worker stamps sends with the wall clock,
so each month's send is moved to its simulated time afterwards (one UPDATE per table).

Alongside, it keeps its own account of every status and topic choice over time
(:class:`History`), so tests can check figures the store cannot count by SQL alone.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from newsletter.config import load_settings
from newsletter.rules.months import add_months
from newsletter.services import App, bounces, imports, sends, subscribers
from newsletter.services.sends import WorkerOptions

START = dt.datetime(2025, 12, 1, 8, 0, tzinfo=dt.UTC)
MONTHS = [add_months(START.date(), i).strftime("%Y-%m") for i in range(12)]
END = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)  # "now" when the history is read
POOL = (
    "anxiety-disorders",
    "attachment",
    "training",
    "empathy",
    "termination",
    "therapist-factors",
)
#: Topics subscribers may hold that no summary of the year ever covers.
NEVER_COVERED = "placebo-effect"
BOUNCE_TEMPLATE = Path(__file__).resolve().parents[1] / "fixtures" / "bounces"


class SimClock:
    """The simulated time, moved by hand."""

    def __init__(self, start: dt.datetime) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now

    def seconds(self) -> dt.datetime:
        return self.now.replace(microsecond=0)


@dataclass
class History:
    """What happened, as the simulation itself recorded it."""

    folder: Path
    url: str
    settings: object
    now: dt.datetime = END
    #: email -> [(time, status)]
    statuses: dict[str, list[tuple[dt.datetime, str]]] = field(default_factory=dict)
    #: email -> [(time, all topics?, slugs)]
    topics: dict[str, list[tuple[dt.datetime, bool, frozenset[str]]]] = field(default_factory=dict)
    #: (time, slug) of each topic someone dropped
    removals: list[tuple[dt.datetime, str]] = field(default_factory=list)
    send_starts: dict[str, dt.datetime] = field(default_factory=dict)

    def status_at(self, email: str, when: dt.datetime) -> str | None:
        found = None
        for at, status in self.statuses[email]:
            if at <= when:
                found = status
        return found

    def topics_at(self, email: str, when: dt.datetime) -> tuple[bool, frozenset[str]]:
        found = (False, frozenset[str]())
        for at, all_topics, slugs in self.topics[email]:
            if at <= when:
                found = (all_topics, slugs)
        return found


def _issue_text(month: str, n: int) -> str:
    first = (POOL[n % len(POOL)], POOL[(n + 1) % len(POOL)])
    second = (POOL[(n + 3) % len(POOL)],)
    blocks = []
    for i, topics in enumerate((first, second), 1):
        blocks.append(
            f"## Study {i} of {month}\n"
            f"Citation: Example, A. ({month[:4]}). Study {i}. Journal of Examples, 1(1), 1-9.\n"
            f"Topics: {'; '.join(topics)}\n\n"
            f"What study {i} of {month} found, in a few plain words.\n\n"
            "### Practice Implications\n\n"
            "What it means for the work with clients.\n"
        )
    return f"---\nmonth: {month}\nsubject: Digest {month}\nstatus: ready\n---\n\n" + "\n".join(
        blocks
    )


def write_project(folder: Path, url: str) -> Path:
    """A project folder of the 12 issues, writing to the outbox; returns its config."""
    (folder / "issues").mkdir(parents=True)
    for n, month in enumerate(MONTHS):
        (folder / "issues" / f"{month}.md").write_text(_issue_text(month, n))
    config = folder / "newsletter.toml"
    config.write_text(
        'sender_name = "Research Digest"\n'
        'sender_address = "digest@example.org"\n'
        'postal_address = "1 Example Street, Exampletown"\n'
        'secret_key = "history-secret"\n'
        'base_url = "https://news.example.org"\n'
        f'database_url = "{url}"\n'
        f'smtp_url = "outbox://{folder / "outbox"}"\n'
        f'issues_dir = "{folder / "issues"}"\n'
        "retry_initial_delay = 0\n"
    )
    return config


def _move_send(app: App, month: str, at: dt.datetime) -> None:
    """Give the send of ``month`` (stamped by the worker's wall clock) its simulated time."""
    import sqlalchemy as sa

    naive = at.astimezone(dt.UTC).replace(tzinfo=None)
    engine = sa.create_engine(app.settings.database_url)
    try:
        with engine.begin() as conn:
            send_id = conn.execute(
                sa.text("SELECT id FROM sends WHERE issue_month = :m"), {"m": month}
            ).scalar_one()
            conn.execute(
                sa.text(
                    "UPDATE sends SET created_at = :t, started_at = :t, finished_at = :t "
                    "WHERE id = :s"
                ),
                {"t": naive, "s": send_id},
            )
            conn.execute(
                sa.text(
                    "UPDATE deliveries SET sent_at = :t, first_attempt_at = :t "
                    "WHERE send_id = :s AND sent_at IS NOT NULL"
                ),
                {"t": naive, "s": send_id},
            )
    finally:
        engine.dispose()


def make_history(folder: Path, url: str, people: int = 90, seed: int = 7) -> History:
    """Live through a year (see the module docstring) and return what happened."""
    rng = random.Random(seed)
    config = write_project(folder, url)
    settings = load_settings(config, environ={})
    clock = SimClock(START)
    history = History(folder, url, settings)
    patch = pytest.MonkeyPatch()
    patch.setattr("newsletter.store.subscribers.utcnow", clock.seconds)
    patch.setattr("newsletter.store.ledger.utcnow", clock.seconds)
    patch.setattr("newsletter.store.subscriber_import.utcnow", clock.seconds)
    try:
        with App(settings, clock=clock) as app:
            _live(app, clock, rng, history, people)
    finally:
        patch.undo()
    return history


def _live(app: App, clock: SimClock, rng: random.Random, history: History, people: int) -> None:
    addresses: list[str] = []
    serial = 0
    history.folder.mkdir(parents=True, exist_ok=True)

    def join(source: str) -> None:
        nonlocal serial
        serial += 1
        email = f"reader{serial:03d}@example.org"
        roll = rng.random()
        if roll < 0.2:
            view = subscribers.add_subscriber(app, email, all_topics=True, source=source)
        else:
            chosen = rng.sample(POOL, rng.randint(1, 3))
            if roll > 0.9:
                chosen.append(NEVER_COVERED)
            view = subscribers.add_subscriber(app, email, topics=chosen, source=source)
        history.statuses[email] = [(clock.seconds(), "active")]
        history.topics[email] = [(clock.seconds(), view.all_topics, frozenset(view.topics))]
        addresses.append(email)

    def set_status(email: str, status: str) -> None:
        history.statuses[email].append((clock.seconds(), status))

    founders = people * 2 // 5
    # The founders come in one CSV import (one transaction); the rest join one by one.
    rows = ["email,topics,all_topics"]
    for _ in range(founders):
        serial += 1
        email = f"reader{serial:03d}@example.org"
        if rng.random() < 0.2:
            choice = (True, frozenset[str]())
        else:
            choice = (False, frozenset(rng.sample(POOL, rng.randint(1, 3))))
        rows.append(f"{email},{';'.join(sorted(choice[1]))},{'yes' if choice[0] else 'no'}")
        history.statuses[email] = [(clock.seconds(), "active")]
        history.topics[email] = [(clock.seconds(), *choice)]
        addresses.append(email)
    csv_file = history.folder / "founders.csv"
    csv_file.write_text("\n".join(rows) + "\n")
    report = imports.import_subscribers(app, csv_file)
    assert report.added == founders, report
    later = people - founders
    per_month = later // 12
    bounce_n = 0
    for n, month in enumerate(MONTHS):
        month_start = dt.datetime.fromisoformat(f"{month}-01T08:00:00+00:00")
        # The send, on the 2nd of the month.
        clock.now = month_start + dt.timedelta(days=1)
        sends.plan(app, month)
        sends.run_worker(app, WorkerOptions(months=[month]))
        _move_send(app, month, clock.now)
        history.send_starts[month] = clock.seconds()
        # Then the month's life, one event every few days.
        for step in range(per_month + (later - per_month * 12 if n == 11 else 0)):
            clock.now = month_start + dt.timedelta(days=3 + step * 2, hours=step % 5)
            join(rng.choice(("web", "web", "cli")))
        active = [a for a in addresses if history.statuses[a][-1][1] == "active"]
        rng.shuffle(active)
        clock.now = month_start + dt.timedelta(days=5, hours=3)
        # Two unsubscribe, one pauses, two drop a topic, one bounces.
        for email in active[:2]:
            subscribers.unsubscribe(app, email)
            set_status(email, "unsubscribed")
            clock.now += dt.timedelta(hours=7)
        pauser = active[2]
        subscribers.pause(app, pauser)
        set_status(pauser, "paused")
        clock.now += dt.timedelta(hours=7)
        for email in active[3:8]:
            all_topics, slugs = history.topics_at(email, clock.now)
            if all_topics or len(slugs) < 2:
                continue
            slug = sorted(slugs)[0]
            view = subscribers.remove_topics(app, email, slug)
            history.topics[email].append((clock.seconds(), False, frozenset(view.topics)))
            history.removals.append((clock.seconds(), slug))
            clock.now += dt.timedelta(hours=5)
        if n >= 1:  # someone sent this month's issue bounces for good
            sent_at = history.send_starts[month]
            email = next(a for a in active[9:] if history.statuses[a][0][0] < sent_at)
            bounce_n += 1
            raw = (BOUNCE_TEMPLATE / "exim_failed_recipients.eml").read_bytes().decode("latin-1")
            for key, value in {
                "{BOUNCE_TO}": "bounces@news.example.org",
                "{RCPT}": email,
                "{N}": str(bounce_n),
            }.items():
                raw = raw.replace(key, value)
            outcome, marked = bounces.process_bounce(app, raw.encode("latin-1"))
            assert outcome == "recorded" and marked == [email], (outcome, marked)
            set_status(email, "bounced")
        if n % 3 == 2:  # a paused reader comes back
            paused = [a for a in addresses if history.statuses[a][-1][1] == "paused"]
            if paused:
                clock.now += dt.timedelta(days=1)
                subscribers.resume(app, paused[0])
                set_status(paused[0], "active")
