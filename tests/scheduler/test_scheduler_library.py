"""Firings called directly (double firing, refused issues, author mail) and the CLI."""

from __future__ import annotations

import datetime as dt
import json
import threading
from pathlib import Path

from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.scheduling.firing import fire
from newsletter.store import open_store
from newsletter.store import schedule as db
from tests.scheduler.conftest import AUTHOR, MONTH, PEOPLE, settings_of, soon


def cli_run(project: Path, *args: str):
    result = CliRunner().invoke(cli, ["-c", str(project / "newsletter.toml"), *args])
    return result.exit_code, result.output


def to_subscribers(server) -> list[str]:
    return [r for m in server.messages for r in m.rcpt_tos if r != AUTHOR]


def to_author(server) -> list:
    return [m.parsed() for m in server.messages if m.rcpt_tos == [AUTHOR]]


def test_a_double_firing_sends_once(project, smtp_server) -> None:
    settings = settings_of(project)
    when = dt.datetime.now(dt.UTC).replace(microsecond=0)
    with open_store(settings) as store:
        db.save_schedule(store, MONTH, when, "UTC")
    results = []
    barrier = threading.Barrier(2)

    def go(job_id: str) -> None:
        barrier.wait()
        results.append(fire(settings, job_id, MONTH, when))

    threads = [threading.Thread(target=go, args=(j,)) for j in ("monthly", f"once:{MONTH}")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(to_subscribers(smtp_server)) == sorted(PEOPLE)
    assert len(to_author(smtp_server)) == 1  # one report per send
    outcomes = {r.outcome for r in results}
    assert "sent" in outcomes and outcomes <= {"sent", "queued", "already_sent"}
    # The same occurrence firing again finds its record and does nothing.
    again = fire(settings, "monthly", MONTH, when)
    assert again.outcome == "skipped"
    assert sorted(to_subscribers(smtp_server)) == sorted(PEOPLE)


def test_a_draft_is_never_sent_and_the_author_is_told(project, smtp_server) -> None:
    settings = settings_of(project)
    path = project / "issues" / f"{MONTH}.md"
    path.write_text(path.read_text().replace("status: ready", "status: draft"))
    result = fire(settings, "monthly", MONTH, dt.datetime.now(dt.UTC))
    assert result.outcome == "refused" and "draft" in result.detail
    assert to_subscribers(smtp_server) == []
    [note] = to_author(smtp_server)
    assert "NOT sent" in note["Subject"]
    body = note.get_content()
    assert "is a draft" in body and "status: ready" in body


def test_a_missing_issue_is_reported(project, smtp_server) -> None:
    settings = settings_of(project)
    result = fire(settings, "monthly", "2027-02", dt.datetime.now(dt.UTC))
    assert result.outcome == "refused"
    [note] = to_author(smtp_server)
    assert "2027-02" in note["Subject"] and "2027-02" in note.get_content()
    code, out = cli_run(project, "scheduler", "list", "--json")
    assert code == 0
    assert json.loads(out)["jobs"] == []  # no monthly rule configured, no one-off


def test_schedule_and_cancel_from_the_cli(project, smtp_server) -> None:
    code, out = cli_run(
        project, "schedule", MONTH, "--at", "2030-12-01 09:00", "--tz", "Europe/Paris"
    )
    assert code == 0, out
    assert "sends at 2030-12-01 09:00:00 Europe/Paris (2030-12-01 08:00:00 UTC)" in out
    assert "no scheduler is running" in out
    code, out = cli_run(project, "schedule", "add", MONTH, "--at", "2030-12-02 10:00")
    assert code == 0 and "moved" in out
    code, out = cli_run(project, "scheduler", "list", "--json")
    [job] = json.loads(out)["jobs"]
    assert (job["job_id"], job["state"], job["when"]) == (
        f"once:{MONTH}",
        "scheduled",
        "2030-12-02 10:00 UTC",
    )
    code, out = cli_run(project, "issue", "list", "--json")
    row = next(r for r in json.loads(out) if r["month"] == MONTH)
    assert row["scheduled"] == "2030-12-02 10:00 UTC" and row["send_status"] is None
    code, out = cli_run(project, "schedule", "cancel", MONTH)
    assert code == 0 and "cancelled" in out
    code, out = cli_run(project, "schedule", "cancel", MONTH)
    assert code == 1 and "no send of 2026-11 is scheduled (it is cancelled)" in out


def test_schedule_mistakes_are_clear_errors(project) -> None:
    cases = [
        (["schedule", MONTH, "--at", "2020-01-01 09:00"], "is in the past"),
        (["schedule", MONTH, "--at", "next week"], "is not a date and time"),
        (["schedule", MONTH, "--at", soon(60), "--tz", "Nowhere/Town"], "unknown time zone"),
        (["schedule", "2026-13", "--at", soon(60)], "is not a month"),
        (["schedule", "cancel", "2027-01"], "no send of 2027-01 is scheduled"),
    ]
    for args, message in cases:
        code, out = cli_run(project, *args)
        assert code == 1, args
        assert message in out and "hint:" in out and "Traceback" not in out, out
    code, out = cli_run(project, "schedule", "2027-03", "--at", soon(3600))
    assert (code == 0 and "no issue" in out.lower()) or "not" in out  # warned, still scheduled


def test_schedule_of_a_sent_issue_is_refused_and_issue_list_shows_it(project, smtp_server):
    settings = settings_of(project)
    fire(settings, "monthly", MONTH, dt.datetime.now(dt.UTC))
    code, out = cli_run(project, "schedule", MONTH, "--at", soon(3600))
    assert code == 1 and "was sent already" in out
    code, out = cli_run(project, "issue", "list", "--json")
    row = next(r for r in json.loads(out) if r["month"] == MONTH)
    assert (row["send_status"], row["sent"]) == ("done", len(PEOPLE))
    code, out = cli_run(project, "issue", "list")
    assert code == 0 and "Sent" in out and "done (3)" in out


def test_issue_list_works_without_a_database(isolated_env: Path) -> None:
    import shutil

    from tests.scheduler.conftest import REPO

    shutil.copytree(REPO / "issues", isolated_env / "issues")
    result = CliRunner().invoke(cli, ["issue", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert {r["month"] for r in rows} >= {"2026-11"}
    assert all(r["scheduled"] is None and r["send_status"] is None for r in rows)
    result = CliRunner().invoke(cli, ["issue", "list"])
    assert result.exit_code == 0 and "Scheduled" not in result.output


def test_a_monthly_firing_lost_in_a_crash_is_caught_up_once(project) -> None:
    """APScheduler moved the stored job on, then the process died before the firing was
    recorded: the next start finds the occurrence and fires it; once recorded, never again."""
    from dataclasses import replace

    from newsletter.schedule import missed_monthly_occurrence

    settings = replace(settings_of(project), monthly_schedule="day 1 08:00", timezone="UTC")
    now = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)  # an hour after the occurrence
    due = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)
    next_month = dt.datetime(2027, 1, 1, 8, 0, tzinfo=dt.UTC)
    with open_store(settings) as store:
        # Stored job already points at next month, no record of December: caught up.
        assert missed_monthly_occurrence(settings, store, next_month, now) == due
        # APScheduler still has December to run (or report as missed) itself.
        assert missed_monthly_occurrence(settings, store, due, now) is None
        # No stored job yet (rule just configured): a past occurrence is not sent late.
        assert missed_monthly_occurrence(settings, store, None, now) is None
        # Past the grace time: nothing to catch up (the miss is reported instead).
        late = now + dt.timedelta(seconds=settings.misfire_grace_time)
        assert missed_monthly_occurrence(settings, store, next_month, late) is None
        # Once the firing is recorded, it is not caught up again.
        db.start_run(store, "monthly", "2026-12", due)
        assert missed_monthly_occurrence(settings, store, next_month, now) is None
