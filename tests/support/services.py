"""One-line service calls for tests that hold settings (each opens and closes an App)."""

from __future__ import annotations

from typing import Any

from newsletter.config import Settings
from newsletter.services import App, sends, subscribers
from newsletter.services.sends import SendPreview, SendResult, WorkerOptions
from newsletter.store.views import SubscriberView

__all__ = [
    "SAMPLE_MONTH",
    "SAMPLE_PEOPLE",
    "SAMPLE_TITLES",
    "WorkerOptions",
    "add_people",
    "add_subscriber",
    "plan_issue_send",
    "run_worker",
    "store_contents",
]

SAMPLE_MONTH = "2026-11"  # the ready sample issue: three summaries on overlapping topics
SAMPLE_TITLES = {
    "s1": "The Efficacy of Psychodynamic Psychotherapy",
    "s2": "Do Therapists Improve With Experience?",
    "s3": "Comparing Psychotherapies for Adult Depression",
}
#: People whose topics pick each variant of the sample issue:
#: email -> (topics, None for every topic; the summaries they get, None for nothing).
SAMPLE_PEOPLE: dict[str, tuple[str | None, set[str] | None]] = {
    "pdt@example.org": ("psychodynamic-therapy-pdt", {"s1"}),
    "efficacy@example.org": ("efficacy-of-treatments", {"s1", "s3"}),
    "training@example.org": ("Training", {"s2"}),
    "mixed@example.org": ("IPT; Training", {"s2", "s3"}),
    "all@example.org": (None, {"s1", "s2", "s3"}),
    "nomatch@example.org": ("Attachment", None),
}


def plan_issue_send(settings: Settings, month: str) -> SendPreview:
    """Plan the send of ``month``."""
    with App(settings) as app:
        return sends.plan(app, month)


def run_worker(settings: Settings, options: WorkerOptions) -> SendResult:
    """Run a worker until nothing is due."""
    with App(settings) as app:
        return sends.run_worker(app, options)


def add_subscriber(settings: Settings, email: str, **options: Any) -> SubscriberView:
    """Add one subscriber."""
    with App(settings) as app:
        return subscribers.add_subscriber(app, email, **options)


def add_people(settings: Settings, people: dict[str, str | None]) -> None:
    """Add each address with its topics (None: every topic), all named Ann Example."""
    with App(settings) as app:
        for addr, topics in people.items():
            if topics is None:
                subscribers.add_subscriber(app, addr, name="Ann Example", all_topics=True)
            else:
                subscribers.add_subscriber(app, addr, name="Ann Example", topics=topics)


def store_contents(settings: Settings) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of the store, in a stable order: compare two calls to
    show that a command changed nothing."""
    import sqlalchemy as sa

    engine = sa.create_engine(settings.database_url)
    try:
        meta = sa.MetaData()
        meta.reflect(engine)
        with engine.connect() as conn:
            return {
                name: sorted((tuple(row) for row in conn.execute(sa.select(table))), key=repr)
                for name, table in sorted(meta.tables.items())
            }
    finally:
        engine.dispose()
