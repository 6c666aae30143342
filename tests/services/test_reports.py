"""The reports and audience planning, on a year of history made by the real services.

The history (``tests/support/history.py``) is made once per database for the module.
Each figure is checked against a direct SQL count of the store, or, for what SQL alone
cannot count (statuses and topics at a past moment, topic removals), against the
simulation's own account of what it did.
"""

from __future__ import annotations

import atexit
import datetime as dt
import itertools
import json
import os
import re
import shutil
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.rules.variants import VariantKey
from newsletter.services import App, reports
from tests.plugin import PG_SERVER, require_or_skip
from tests.support.history import END, MONTHS, NEVER_COVERED, START, History, make_history

SINCE = dt.date(2025, 11, 15)
# Read at import: the autouse isolated_env fixture clears the environment of each test.
SHOTS_DIR = os.environ.get("SHOTS_DIR")


def _fast_folder(factory: pytest.TempPathFactory, name: str) -> Path:
    """A folder in memory when the system has one: the outbox syncs every message to
    disk twice, and a year of messages would spend most of its time there."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        folder = Path(tempfile.mkdtemp(prefix=f"newsletter-{name}-", dir=shm))
        atexit.register(shutil.rmtree, folder, True)
        return folder
    return factory.mktemp(name)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def history(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[History]:
    """A year of history in a store of its own, made once per database (and per worker)."""
    from newsletter.store import upgrade_database

    folder = _fast_folder(tmp_path_factory, f"history-{request.param}")
    if request.param == "sqlite":
        url = f"sqlite:///{folder / 'store.db'}"
        upgrade_database(url)
        yield make_history(folder / "project", url)
        return
    scratch = request.getfixturevalue("pg_scratch")
    if scratch is None:
        require_or_skip(
            "NEWSLETTER_REQUIRE_POSTGRES", f"PostgreSQL is not reachable at {PG_SERVER}"
        )
    # A schema of its own in the session's scratch database: the tests that empty that
    # database's tables between them leave it alone, and dropping it is quick. Commits
    # need not wait for the disk there.
    schema = f"report_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(scratch, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    options = f"-csearch_path={schema} -csynchronous_commit=off"
    url = (
        sa.engine.make_url(scratch)
        .update_query_dict({"options": options})
        .render_as_string(hide_password=False)
    )
    try:
        upgrade_database(url)
        yield make_history(folder / "project", url)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(scope="module")
def report(history: History) -> reports.Report:
    with App(history.settings, clock=lambda: history.now) as app:  # type: ignore[arg-type]
        return reports.build(app, SINCE)


def sql(history: History, query: str, **params: Any) -> list[Any]:
    engine = sa.create_engine(history.url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(query), params))
    finally:
        engine.dispose()


def naive(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC).replace(tzinfo=None)


# --- the report ------------------------------------------------------------------------


def check_statuses_now_are_the_stores_and_before_are_what_happened(
    history: History, report: reports.Report
) -> None:
    now = report.statuses[-1]
    assert now.at == END
    counted = dict(sql(history, "SELECT status, COUNT(*) FROM subscribers GROUP BY status"))
    assert {k: v for k, v in now.counts.items() if v} == counted
    assert report.statuses[0].at == dt.datetime(2025, 11, 15, tzinfo=dt.UTC)
    # One point a month between, each as the simulation lived it.
    assert [p.at.date() for p in report.statuses[1:-1]] == [
        dt.date.fromisoformat(f"{m}-01") for m in MONTHS
    ]
    for point in report.statuses[:-1]:
        expected = Counter(
            s for email in history.statuses if (s := history.status_at(email, point.at)) is not None
        )
        assert {k: v for k, v in point.counts.items() if v} == dict(expected), point.at
    # The year saw every kind of change.
    assert all(now.counts[s] for s in ("active", "paused", "unsubscribed", "bounced"))


def check_topics_now_are_the_stores_and_at_the_last_issue_what_people_held(
    history: History, report: reports.Report
) -> None:
    by_slug = {t.slug: t for t in report.topics}
    assert len(by_slug) == 37  # the taxonomy's 36 and all topics
    counted = dict(
        sql(
            history,
            "SELECT t.topic_slug, COUNT(*) FROM subscriber_topics t JOIN subscribers s "
            "ON s.id = t.subscriber_id WHERE s.status = 'active' AND NOT s.all_topics "
            "GROUP BY t.topic_slug",
        )
    )
    assert {s: t.now for s, t in by_slug.items() if t.now and s != "all-topics"} == counted
    [(every,)] = sql(
        history, "SELECT COUNT(*) FROM subscribers WHERE status = 'active' AND all_topics"
    )
    assert by_slug["all-topics"].now == every
    assert report.last_issue == MONTHS[-1]
    last = history.send_starts[MONTHS[-1]]
    then: Counter[str] = Counter()
    for email in history.statuses:
        if history.status_at(email, last) == "active":
            all_topics, slugs = history.topics_at(email, last)
            then.update(["all-topics"] if all_topics else slugs)
    assert {s: t.at_last_issue for s, t in by_slug.items() if t.at_last_issue} == dict(then)
    assert any(t.change for t in report.topics)
    assert all(t.change == t.now - (t.at_last_issue or 0) for t in report.topics)


def check_each_issue_counts_as_the_ledger_and_the_log_say(
    history: History, report: reports.Report
) -> None:
    assert [i.month for i in report.issues] == MONTHS
    for n, issue in enumerate(report.issues):
        [(send_id,)] = sql(history, "SELECT id FROM sends WHERE issue_month = :m", m=issue.month)
        sent = dict(
            sql(
                history,
                "SELECT variant_mask, COUNT(*) FROM deliveries WHERE send_id = :s "
                "AND status = 'sent' GROUP BY variant_mask",
                s=send_id,
            )
        )
        assert issue.variants == {VariantKey(m, 2).name: c for m, c in sorted(sent.items())}
        assert issue.readers == sum(sent.values())
        for bit, reach in enumerate(issue.reach):
            assert reach.received == sum(c for m, c in sent.items() if m & (1 << bit))
            assert reach.title == f"Study {bit + 1} of {issue.month}"
        skipped = dict(
            sql(
                history,
                "SELECT skip_reason, COUNT(*) FROM deliveries WHERE send_id = :s "
                "AND status = 'skipped' GROUP BY skip_reason",
                s=send_id,
            )
        )
        assert issue.skipped == skipped
        bounced = dict(
            sql(
                history,
                "SELECT b.kind, COUNT(*) FROM bounces b JOIN deliveries d "
                "ON d.id = b.delivery_id WHERE d.send_id = :s GROUP BY b.kind",
                s=send_id,
            )
        )
        assert issue.bounces == bounced
        start = history.send_starts[issue.month]
        end = history.send_starts[MONTHS[n + 1]] if n + 1 < len(MONTHS) else END
        end = min(end, start + dt.timedelta(days=reports.AFTER_SEND_DAYS))
        assert (issue.started_at, issue.window_end) == (start, end)
        [(left,)] = sql(
            history,
            "SELECT COUNT(*) FROM consent_events WHERE event = 'unsubscribed' "
            "AND at >= :a AND at < :b",
            a=naive(start),
            b=naive(end),
        )
        assert issue.unsubscribes == left == 2
        dropped = Counter(slug for at, slug in history.removals if start <= at < end)
        assert issue.topic_removals == dict(dropped)
    assert sum(sum(i.topic_removals.values()) for i in report.issues) == len(history.removals)
    assert sum(i.bounces.get("hard", 0) for i in report.issues) == len(MONTHS) - 1


def check_signups_per_week_are_the_people_added_each_week(
    history: History, report: reports.Report
) -> None:
    rows = sql(history, "SELECT created_at, source FROM subscribers")
    expected: Counter[tuple[dt.date, str]] = Counter()
    for created, source in rows:
        day = (
            created if isinstance(created, dt.datetime) else dt.datetime.fromisoformat(created)
        ).date()
        expected[(day - dt.timedelta(days=day.weekday()), source)] += 1
    got = Counter({(w.week, s): n for w in report.signups for s, n in w.by_source.items()})
    assert got == expected
    weeks = [w.week for w in report.signups]
    assert weeks == sorted(weeks) and all(w.weekday() == 0 for w in weeks)
    assert all(b - a == dt.timedelta(days=7) for a, b in itertools.pairwise(weeks))
    assert weeks[0] <= START.date() and weeks[-1] >= END.date() - dt.timedelta(days=6)
    assert {"import", "web", "cli"} == {s for w in report.signups for s in w.by_source}


def check_to_dict_is_json_with_iso_dates(report: reports.Report) -> None:
    data = json.loads(json.dumps(report.to_dict()))
    assert data["since"] == "2025-11-15"
    assert data["statuses"][-1]["at"] == END.isoformat()
    assert data["issues"][1]["started_at"] == "2026-01-02T08:00:00+00:00"
    assert data["issues"][1]["reach"][0]["key"] == "s1"
    assert data["signups"][0]["week"] == "2025-11-10"
    assert data["notes"] == list(reports.NOTES)


# --- the command ------------------------------------------------------------------------


def run(history: History, *args: str) -> Any:
    env = {"NEWSLETTER_CONFIG": str(history.folder / "newsletter.toml")}
    return CliRunner().invoke(cli, list(args), env=env)


def check_report_command_writes_the_page_and_prints_json(
    history: History, report: reports.Report, tmp_path: Path
) -> None:
    out = tmp_path / "report.html"
    result = run(history, "report", "--since", "2025-11-15", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "12 issues" in result.output and str(out) in result.output
    page = out.read_text()
    assert page.count("<svg") == 7 and page.count("<table") == 7
    # Nothing that would fetch: no src or href, no url(), no @import or @font-face, no
    # script; the only address is the SVG namespace's name.
    assert not re.search(r"\b(src|href)\s*=|url\(|@import|@font-face|<script", page)
    assert set(re.findall(r"https?://[^\s\"']+", page)) == {"http://www.w3.org/2000/svg"}
    result = run(history, "report", "--since", "2025-11-15", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    # Read by the wall clock, later than END: the same figures, but for the last
    # issue's days after (still counting at END).
    assert data["issues"][:-1] == report.to_dict()["issues"][:-1]
    assert data["topics"] == report.to_dict()["topics"]


BAD_INPUT = [
    (("--since", "2999-01-01"), "in the future"),
    (("--since", "last year"), "'last year' does not match the format"),
    (("--out", "/nonexistent/folder/report.html"), "cannot write the report"),
]


def check_report_command_refuses_bad_input_with_a_hint(history: History) -> None:
    for args, message in BAD_INPUT:
        result = run(history, "report", *args)
        assert result.exit_code != 0, args
        assert message in result.output, result.output
        assert "Traceback" not in result.output


# --- audience planning ------------------------------------------------------------------


def check_audience_counts_readers_gaps_and_quiet_readers(history: History) -> None:
    month = MONTHS[-1]
    with App(history.settings, clock=lambda: history.now) as app:  # type: ignore[arg-type]
        plan = reports.audience(app, month, months=3)
    [(receiving,)] = sql(history, "SELECT COUNT(*) FROM subscribers WHERE status = 'active'")
    assert plan.receiving == sum(plan.histogram.values()) == receiving
    assert list(plan.histogram) == [0, 1, 2]
    # The issue's summaries: (POOL[11 % 6], POOL[0]) and (POOL[2],).
    covered = {"therapist-factors", "anxiety-disorders", "training"}
    held = dict(
        sql(
            history,
            "SELECT t.topic_slug, COUNT(*) FROM subscriber_topics t JOIN subscribers s "
            "ON s.id = t.subscriber_id WHERE s.status = 'active' AND NOT s.all_topics "
            "GROUP BY t.topic_slug",
        )
    )
    assert plan.uncovered == {s: n for s, n in held.items() if s not in covered}
    assert NEVER_COVERED in plan.uncovered
    assert list(plan.uncovered.values()) == sorted(plan.uncovered.values(), reverse=True)
    assert plan.since == dt.date(2026, 8, 28)
    quiet = [
        email
        for (email,) in sql(
            history,
            "SELECT email FROM subscribers s WHERE s.status = 'active' AND s.created_at <= :c "
            "AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.subscriber_id = s.id "
            "AND d.status = 'sent' AND d.variant_mask > 0 AND d.sent_at >= :c) ORDER BY email",
            c=dt.datetime(2026, 8, 28),
        )
    ]
    assert list(plan.without_summaries) == quiet and quiet


def check_audience_command_prints_tables_json_and_the_list(history: History) -> None:
    month = MONTHS[-1]
    result = run(history, "issue", "audience", month, "--months", "12", "--json", "--list")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["months"] == 12
    assert data["without_summaries"] == len(data["without_summaries_addresses"])
    assert [t["slug"] for t in data["uncovered_topics"]].count(NEVER_COVERED) == 1
    result = run(history, "issue", "audience", month, "--list")
    assert result.exit_code == 0, result.output
    assert "Summaries they get" in result.output
    assert "no summary covers" in result.output and "Placebo" in result.output
    result = run(history, "issue", "audience", month, "--months", "0")
    assert result.exit_code != 0 and "give 1 or more" in result.output
    result = run(history, "issue", "audience", "2031-02")
    assert result.exit_code != 0 and "Traceback" not in result.output


# --- one test per database --------------------------------------------------------------


def test_a_year_of_history_gives_the_figures_the_store_holds(
    history: History, report: reports.Report, tmp_path: Path
) -> None:
    """Every check of the report and of audience planning on one history.

    One test per database rather than one per check: pytest-xdist hands tests to its
    workers one by one, and each worker would make the year of history again.
    """
    check_statuses_now_are_the_stores_and_before_are_what_happened(history, report)
    check_topics_now_are_the_stores_and_at_the_last_issue_what_people_held(history, report)
    check_each_issue_counts_as_the_ledger_and_the_log_say(history, report)
    check_signups_per_week_are_the_people_added_each_week(history, report)
    check_to_dict_is_json_with_iso_dates(report)
    check_report_command_writes_the_page_and_prints_json(history, report, tmp_path)
    check_report_command_refuses_bad_input_with_a_hint(history)
    check_audience_counts_readers_gaps_and_quiet_readers(history)
    check_audience_command_prints_tables_json_and_the_list(history)


# --- the page in a browser --------------------------------------------------------------


# The page does not depend on the database: drawn once, from SQLite.
@pytest.mark.parametrize("history", ["sqlite"], indirect=True)
def test_the_page_in_chromium_fits_draws_every_chart_and_asks_for_nothing(
    history: History, report: reports.Report, browser: Any, tmp_path: Path
) -> None:
    page_file = tmp_path / "report.html"
    with App(history.settings, clock=lambda: history.now) as app:  # type: ignore[arg-type]
        reports.write_html(app, page_file, SINCE)
    url = page_file.as_uri()
    shots = Path(SHOTS_DIR or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    refused: list[str] = []
    # A wide window in light colours and a phone in dark ones (SHOTS_DIR=folder: every
    # combination, with a screenshot of the whole page each, to look at).
    views = [(1280, "light"), (375, "dark")]
    if SHOTS_DIR:
        views += [(1280, "dark"), (375, "light")]
    for width, scheme in views:
        context = browser.new_context(
            viewport={"width": width, "height": 900}, color_scheme=scheme, offline=True
        )
        page = context.new_page()

        def only_the_file(route: Any) -> None:
            if route.request.url == url:
                route.continue_()
            else:
                refused.append(route.request.url)
                route.abort()

        page.route("**/*", only_the_file)
        page.goto(url)
        assert page.evaluate("document.querySelectorAll('svg.chart').length") == 7
        assert page.evaluate("document.querySelectorAll('figure + div table').length") == 7
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{overflow}px wider than the {width}px window"
        # Every chart's box is inside the window (on a phone it scrolls within it).
        boxes = page.evaluate(
            "[...document.querySelectorAll('figure')].map(f => f.getBoundingClientRect().right)"
        )
        assert len(boxes) == 7 and all(0 < right <= width for right in boxes)
        # The table under the readers chart says what the ledger says.
        cells = page.evaluate(
            "[...document.querySelectorAll('#readers tbody tr')].map("
            "r => [r.cells[0].textContent, Number(r.cells[2].textContent)])"
        )
        per_issue: Counter[str] = Counter()
        for month, n in cells:
            per_issue[month] += n
        counted = dict(
            sql(
                history,
                "SELECT s.issue_month, COUNT(*) FROM deliveries d JOIN sends s "
                "ON s.id = d.send_id WHERE d.status = 'sent' GROUP BY s.issue_month",
            )
        )
        assert dict(per_issue) == counted
        if SHOTS_DIR:
            page.screenshot(path=str(shots / f"report-{width}-{scheme}.png"), full_page=True)
        context.close()
    assert refused == []


def test_an_empty_store_gives_a_report_of_zeros_and_says_what_it_cannot_draw(
    store_app: App, tmp_path: Path
) -> None:
    report = reports.build(store_app)
    assert report.issues == () and report.last_issue is None
    assert all(not any(p.counts.values()) for p in report.statuses)
    assert all(t.now == 0 and t.at_last_issue is None for t in report.topics)
    assert report.signups and all(w.total == 0 for w in report.signups)
    out = tmp_path / "report.html"
    reports.write_html(store_app, out)
    page = out.read_text()
    assert page.count('<svg class="chart"') == 2  # statuses and topics
    assert page.count("Nothing to draw yet.") == 5
    assert page.count("<table") == 7
