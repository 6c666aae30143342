"""Firings called directly (double firing, refused issues, author mail) and the CLI."""

from __future__ import annotations

import datetime as dt
import json
import threading
from pathlib import Path

from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.services import App, schedules
from newsletter.store import open_store
from newsletter.store import schedules as db
from tests.support.scheduling import AUTHOR, MONTH, PEOPLE, settings_of, soon


def fire(settings, job_id: str, month: str, when: dt.datetime) -> schedules.FireResult:
    with App(settings) as app:
        return schedules.fire(app, job_id, month, when)


def cli_run(project: Path, *args: str):
    result = CliRunner().invoke(cli, ["-c", str(project / "newsletter.toml"), *args])
    return result.exit_code, result.output


def to_subscribers(server) -> list[str]:
    return [r for m in server.messages for r in m.rcpt_tos if r != AUTHOR]


def to_author(server) -> list:
    return [m.parsed() for m in server.messages if m.rcpt_tos == [AUTHOR]]


def test_a_double_firing_sends_once(scheduler_project, smtp_server) -> None:
    settings = settings_of(scheduler_project)
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


def test_a_draft_is_never_sent_and_the_author_is_told(scheduler_project, smtp_server) -> None:
    settings = settings_of(scheduler_project)
    path = scheduler_project / "issues" / f"{MONTH}.md"
    path.write_text(path.read_text().replace("status: ready", "status: draft"))
    result = fire(settings, "monthly", MONTH, dt.datetime.now(dt.UTC))
    assert result.outcome == "refused" and "draft" in result.detail
    assert to_subscribers(smtp_server) == []
    [note] = to_author(smtp_server)
    assert "NOT sent" in note["Subject"]
    body = note.get_body(("plain",)).get_content()
    assert "is a draft" in body and "status: ready" in body


def test_a_missing_issue_is_reported(scheduler_project, smtp_server) -> None:
    settings = settings_of(scheduler_project)
    result = fire(settings, "monthly", "2027-02", dt.datetime.now(dt.UTC))
    assert result.outcome == "refused"
    [note] = to_author(smtp_server)
    assert "2027-02" in note["Subject"] and "2027-02" in note.get_body(("plain",)).get_content()
    code, out = cli_run(scheduler_project, "scheduler", "list", "--json")
    assert code == 0
    assert json.loads(out)["jobs"] == []  # no monthly rule configured, no one-off


def test_scheduler_list_shows_times_in_the_configured_timezone(scheduler_project) -> None:
    import re

    config = scheduler_project / "newsletter.toml"
    config.write_text(
        config.read_text()
        + 'timezone = "America/Toronto"\nmonthly_schedule = "first Tuesday 09:00"\n'
    )
    code, out = cli_run(scheduler_project, "scheduler", "list")
    assert code == 0, out
    assert "UTC" not in out  # the rule is 09:00 in Toronto, not 09:00 UTC
    assert re.search(r"\d{4}-\d\d-\d\d 09:00 -0[45]:00", out), out
    assert "1 scheduled send " in out
    code, out = cli_run(scheduler_project, "scheduler", "list", "--json")
    [job] = json.loads(out)["jobs"]
    next_run = dt.datetime.fromisoformat(job["next_run"])
    assert "T09:00:00-0" in job["next_run"] and next_run.utcoffset() is not None


def test_schedule_and_cancel_from_the_cli(scheduler_project, smtp_server) -> None:
    code, out = cli_run(
        scheduler_project, "schedule", MONTH, "--at", "2030-12-01 09:00", "--tz", "Europe/Paris"
    )
    assert code == 0, out
    assert "sends at 2030-12-01 09:00 +01:00 (Europe/Paris), 2030-12-01 08:00 +00:00 (UTC)" in out
    assert "no scheduler is running" in out
    code, out = cli_run(scheduler_project, "schedule", "add", MONTH, "--at", "2030-12-02 10:00")
    assert code == 0 and "moved" in out
    code, out = cli_run(scheduler_project, "scheduler", "list", "--json")
    [job] = json.loads(out)["jobs"]
    assert (job["job_id"], job["state"], job["when"]) == (
        f"once:{MONTH}",
        "scheduled",
        "2030-12-02 10:00 UTC",
    )
    code, out = cli_run(scheduler_project, "issue", "list", "--json")
    row = next(r for r in json.loads(out) if r["month"] == MONTH)
    assert row["scheduled"] == "2030-12-02T10:00:00+00:00" and row["send_status"] is None
    code, out = cli_run(scheduler_project, "schedule", "cancel", MONTH)
    assert code == 0 and "cancelled" in out
    code, out = cli_run(scheduler_project, "schedule", "cancel", MONTH)
    assert code == 1 and "no send of 2026-11 is scheduled (it is cancelled)" in out


def test_schedule_mistakes_are_clear_errors(scheduler_project) -> None:
    cases = [
        (["schedule", MONTH, "--at", "2020-01-01 09:00"], "is in the past"),
        (["schedule", MONTH, "--at", "next week"], "is not a date and time"),
        (["schedule", MONTH, "--at", soon(60), "--tz", "Nowhere/Town"], "unknown time zone"),
        (["schedule", "2026-13", "--at", soon(60)], "is not a month"),
        (["schedule", "cancel", "2027-01"], "no send of 2027-01 is scheduled"),
    ]
    for args, message in cases:
        code, out = cli_run(scheduler_project, *args)
        assert code == 1, args
        assert message in out and "hint:" in out and "Traceback" not in out, out
    code, out = cli_run(scheduler_project, "schedule", "2027-03", "--at", soon(3600))
    assert (code == 0 and "no issue" in out.lower()) or "not" in out  # warned, still scheduled


def test_schedule_of_a_sent_issue_is_refused_and_issue_list_shows_it(
    scheduler_project, smtp_server
):
    settings = settings_of(scheduler_project)
    fire(settings, "monthly", MONTH, dt.datetime.now(dt.UTC))
    code, out = cli_run(scheduler_project, "schedule", MONTH, "--at", soon(3600))
    assert code == 1 and "was sent already" in out
    code, out = cli_run(scheduler_project, "issue", "list", "--json")
    row = next(r for r in json.loads(out) if r["month"] == MONTH)
    assert (row["send_status"], row["sent"]) == ("done", len(PEOPLE))
    code, out = cli_run(scheduler_project, "issue", "list")
    assert code == 0 and "done, 3 sent" in out


def test_issue_list_works_without_a_database(isolated_env: Path) -> None:
    import shutil

    from tests.plugin import REPO

    shutil.copytree(REPO / "issues", isolated_env / "issues")
    result = CliRunner().invoke(cli, ["issue", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert {r["month"] for r in rows} >= {"2026-11"}
    assert all(r["scheduled"] is None and r["send_status"] is None for r in rows)
    result = CliRunner().invoke(cli, ["issue", "list"])
    assert result.exit_code == 0 and "Scheduled" not in result.output


def test_a_monthly_firing_missed_while_no_scheduler_ran_is_caught_up_once(
    scheduler_project,
) -> None:
    """The store is the schedule's truth: an occurrence of the monthly rule with no firing
    recorded is due at the next start (within the grace time), missed after it, and never
    made up for when the rule came into force after it. Time is the app's clock."""
    from dataclasses import replace

    settings = replace(
        settings_of(scheduler_project), monthly_schedule="day 1 08:00", timezone="UTC"
    )
    due = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)

    def due_at(moment: dt.datetime, rule_settings=settings) -> list[schedules.DueFiring]:
        with App(rule_settings, clock=lambda: moment) as app:
            return schedules.due_firings(app)

    # A scheduler first saw the rule on November 20: November 1 is not made up for.
    assert due_at(dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC)) == []
    # No scheduler ran across December 1 08:00; at 09:00 that firing is due.
    [firing] = due_at(due + dt.timedelta(hours=1))
    assert (firing.job_id, firing.month, firing.scheduled_for, firing.missed) == (
        "monthly",
        "2026-12",
        due,
        False,
    )
    # Later than the grace time allows: reported as missed, not sent.
    [late] = due_at(due + dt.timedelta(seconds=settings.misfire_grace_time + 60))
    assert late.missed
    # Once its firing is recorded, it is never due again.
    with open_store(settings) as store:
        db.start_run(store, "monthly", "2026-12", due)
    assert due_at(due + dt.timedelta(hours=1)) == []
    # A rule changed after its time starts afresh: nothing of the new rule is sent late.
    changed = replace(settings, monthly_schedule="day 1 07:00")
    assert due_at(due + dt.timedelta(hours=2), changed) == []
