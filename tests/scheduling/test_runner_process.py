"""Real scheduler processes, on SQLite and PostgreSQL.

Messages are counted at a real SMTP server: each subscriber gets the issue exactly once,
whatever restarts, kills and second schedulers happen. No test races the clock: a send
that should have happened while no scheduler ran is made so by writing its time into the
store (the schedule's only truth), and every wait is for a condition.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.store import open_store
from newsletter.store import schedules as db
from tests.support.scheduling import AUTHOR, MONTH, PEOPLE, settings_of, soon

pytestmark = pytest.mark.slow

FAR_AHEAD = "2099-12-01 09:00"


def cli_run(project: Path, *args: str):
    result = CliRunner().invoke(
        cli, ["-c", str(project / "newsletter.toml"), *args], catch_exceptions=False
    )
    return result.exit_code, result.output


def per_recipient(server) -> dict[str, int]:
    counts: dict[str, int] = {}
    for m in server.messages:
        for rcpt in m.rcpt_tos:
            counts[rcpt] = counts.get(rcpt, 0) + 1
    return counts


def wait_for_messages(server, n: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while len(server.messages) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(server.messages) >= n, f"{len(server.messages)} of {n} messages arrived"


def wait_for_run(project: Path, job_id: str, outcomes: tuple[str, ...], timeout: float = 60):
    """Wait until the firing of ``job_id`` is recorded with one of ``outcomes``."""
    deadline = time.monotonic() + timeout
    with open_store(settings_of(project)) as store:
        while time.monotonic() < deadline:
            runs = db.list_runs(store, job_id=job_id)
            if runs and runs[0].outcome in outcomes:
                return runs[0]
            time.sleep(0.05)
    raise AssertionError(f"no firing of {job_id} ended in {outcomes}")


def assert_each_subscriber_once(server) -> None:
    got = per_recipient(server)
    for addr in PEOPLE:
        assert got.get(addr) == 1, f"{addr} got {got.get(addr, 0)}: {got}"


def author_subjects(server) -> list[str]:
    return [m.parsed()["Subject"] for m in server.messages if m.rcpt_tos == [AUTHOR]]


def schedule(project: Path, at: str) -> None:
    code, out = cli_run(project, "schedule", MONTH, "--at", at)
    assert code == 0, out


def move_into_the_past(project: Path, seconds: float) -> None:
    """As if the send's time passed ``seconds`` ago while no scheduler ran."""
    with open_store(settings_of(project)) as store:
        run_at = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(seconds=seconds)
        db.save_schedule(store, MONTH, run_at, "UTC")


def started_jobs(process) -> list[str]:
    """The jobs a scheduler process listed when it started."""
    return sorted(line.split()[1].rstrip(":") for line in process.lines if line.startswith("job "))


def test_three_restarts_leave_one_job_and_one_send(
    scheduler_project, scheduler_process, smtp_server
):
    with open(scheduler_project / "newsletter.toml", "a") as f:
        f.write('monthly_schedule = "first Tuesday 09:00"\n')
    schedule(scheduler_project, FAR_AHEAD)
    for _ in range(3):
        process = scheduler_process()
        assert started_jobs(process) == ["monthly", f"once:{MONTH}"]
        process.stop()
    last = scheduler_process()
    assert started_jobs(last) == ["monthly", f"once:{MONTH}"]
    # The author moves the send to now: the running scheduler picks it up and sends.
    schedule(scheduler_project, soon(0))
    run = wait_for_run(scheduler_project, f"once:{MONTH}", ("sent",))
    wait_for_messages(smtp_server, len(PEOPLE) + 1)
    assert last.stop() == 0
    assert_each_subscriber_once(smtp_server)
    assert len(author_subjects(smtp_server)) == 1
    assert "sent: 3 messages" in author_subjects(smtp_server)[0]
    code, out = cli_run(scheduler_project, "scheduler", "list", "--json")
    assert code == 0, out
    [job] = [j for j in json.loads(out)["jobs"] if j["job_id"] == f"once:{MONTH}"]
    assert (job["state"], job["last_outcome"], job["next_run"]) == ("fired", "sent", None)
    with open_store(settings_of(scheduler_project)) as store:
        assert db.list_runs(store, job_id=f"once:{MONTH}") == [run]  # fired once


def test_killed_across_the_trigger_runs_once_within_the_grace(
    scheduler_project, scheduler_process, smtp_server
):
    schedule(scheduler_project, FAR_AHEAD)
    first = scheduler_process()
    first.kill()  # SIGKILL: its lease stays behind
    move_into_the_past(scheduler_project, 5)  # the time passes while no scheduler runs
    assert smtp_server.messages == []
    code, out = cli_run(scheduler_project, "scheduler", "list", "--json")
    assert code == 0, out
    [job] = json.loads(out)["jobs"]
    assert job["state"] == "due"
    second = scheduler_process()  # takes over the dead process's lease at once
    wait_for_run(scheduler_project, f"once:{MONTH}", ("sent",))
    wait_for_messages(smtp_server, len(PEOPLE) + 1)
    # restarting again after the send does not send again
    second.stop()
    scheduler_process().stop()
    assert_each_subscriber_once(smtp_server)
    assert len(author_subjects(smtp_server)) == 1


def test_stopped_past_the_grace_is_reported_not_sent(
    scheduler_project, scheduler_process, smtp_server
):
    with open(scheduler_project / "newsletter.toml", "a") as f:
        f.write("misfire_grace_time = 2\n")
    schedule(scheduler_project, FAR_AHEAD)
    scheduler_process().stop()
    move_into_the_past(scheduler_project, 600)  # long past the grace time of 2 s
    code, out = cli_run(scheduler_project, "scheduler", "list", "--json")
    view = json.loads(out)
    assert view["running"] is False
    assert view["jobs"][0]["state"] == "missed"
    proc = scheduler_process()
    proc.wait_for("missed by")
    wait_for_messages(smtp_server, 1)
    proc.stop()
    assert all(m.rcpt_tos == [AUTHOR] for m in smtp_server.messages)  # no subscriber mail
    assert ["NOT sent (missed its time)" in s for s in author_subjects(smtp_server)] == [True]
    code, out = cli_run(scheduler_project, "scheduler", "list", "--json")
    [job] = json.loads(out)["jobs"]
    assert (job["state"], job["last_outcome"], job["misfires"]) == ("missed", "missed", 1)
    code, out = cli_run(scheduler_project, "scheduler", "list")
    assert code == 0 and "missed" in out


def test_a_second_scheduler_refuses_and_a_dead_ones_lease_is_taken_over(
    scheduler_project, scheduler_process, smtp_server
):
    first = scheduler_process()
    second = scheduler_process(started=False)
    assert second.proc.wait(60) == 1
    second._reader.join(5)
    assert "a scheduler is already running for this store" in second.output
    assert "Traceback" not in second.output
    first.kill()
    scheduler_process().stop()  # same host, dead pid: taken over at once

    # A lease held elsewhere (another host) is taken over only once it expires.
    # (A long lease first, so that a slow start cannot outlast it; then a short one.)
    with open_store(settings_of(scheduler_project)) as store:
        assert db.acquire_lease(store, "elsewhere.example:1:abc", ttl=3600)
    refused = scheduler_process(started=False)
    assert refused.proc.wait(60) == 1
    with open_store(settings_of(scheduler_project)) as store:
        assert db.renew_lease(store, "elsewhere.example:1:abc", ttl=1)
    waiting = scheduler_process("--wait", "120")  # waits for the lease to expire
    waiting.stop()
    assert smtp_server.messages == []


def test_restart_during_a_send_finishes_it_once(scheduler_project, scheduler_process, smtp_server):
    from newsletter.services import App, subscribers

    with App(settings_of(scheduler_project)) as app:
        for i in range(40):
            subscribers.add_subscriber(app, f"bulk{i:02d}@example.org", topics="Training")
    smtp_server.delay_all = 0.05
    schedule(scheduler_project, soon(0))
    proc = scheduler_process()
    wait_for_messages(smtp_server, 10)
    proc.stop()  # SIGTERM mid-send: in-flight messages finish, the rest stays queued
    before = len(smtp_server.messages)
    assert before < 43
    smtp_server.delay_all = 0
    again = scheduler_process()
    wait_for_run(scheduler_project, f"once:{MONTH}", ("sent",))
    wait_for_messages(smtp_server, 44)
    again.stop()
    got = per_recipient(smtp_server)
    assert all(n == 1 for n in got.values()), got
    assert len(got) == 44  # 43 subscribers and the author's report
    assert "resuming the send" in again.output


def test_the_scheduler_alone_delivers_retries(scheduler_project, scheduler_process, smtp_server):
    """With only `newsletter scheduler run` running, a message refused for now (451) is
    sent when its retry is due: no separate worker is needed for a small list."""
    from newsletter.services import App, sends

    with open(scheduler_project / "newsletter.toml", "a") as f:
        f.write("retry_initial_delay = 0\n")
    smtp_server.rcpt_replies["training"] = "451 4.7.1 greylisted, try again later"
    with App(settings_of(scheduler_project)) as app:
        sends.plan(app, MONTH)
        first = sends.run_worker(app, sends.WorkerOptions(months=[MONTH]))
        assert first.report.retry == 1
    assert "training@example.org" not in per_recipient(smtp_server)
    del smtp_server.rcpt_replies["training"]
    process = scheduler_process()
    wait_for_messages(smtp_server, len(PEOPLE))
    process.wait_for("delivered what was due: sent 1", timeout=60)
    process.stop()
    assert_each_subscriber_once(smtp_server)
