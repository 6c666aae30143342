"""Real scheduler processes around a trigger a few seconds ahead, on SQLite and PostgreSQL.

Messages are counted at a real SMTP server: each subscriber gets the issue exactly once,
whatever restarts, kills and second schedulers happen around the trigger time.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.store import open_store
from newsletter.store import schedule as db
from tests.scheduler.conftest import AUTHOR, MONTH, PEOPLE, settings_of, soon


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


def wait_for_messages(server, n: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while len(server.messages) < n and time.monotonic() < deadline:
        time.sleep(0.05)


def assert_each_subscriber_once(server) -> None:
    got = per_recipient(server)
    for addr in PEOPLE:
        assert got.get(addr) == 1, f"{addr} got {got.get(addr, 0)}: {got}"


def author_subjects(server) -> list[str]:
    return [m.parsed()["Subject"] for m in server.messages if m.rcpt_tos == [AUTHOR]]


def schedule_soon(project: Path, seconds: float) -> None:
    code, out = cli_run(project, "schedule", MONTH, "--at", soon(seconds))
    assert code == 0, out


def test_three_restarts_leave_one_job_and_one_send(project, scheduler_process, smtp_server):
    with open(project / "newsletter.toml", "a") as f:
        f.write('monthly_schedule = "first Tuesday 09:00"\n')
    schedule_soon(project, 6)
    for _ in range(3):
        scheduler_process().stop()
    with open_store(settings_of(project)) as store:
        jobs = db.job_next_run_times(store)
    assert sorted(jobs) == ["monthly", f"once:{MONTH}"]
    last = scheduler_process()
    wait_for_messages(smtp_server, len(PEOPLE) + 1)
    time.sleep(0.5)
    assert last.stop() == 0
    assert_each_subscriber_once(smtp_server)
    assert len(author_subjects(smtp_server)) == 1
    assert "sent: 3 messages" in author_subjects(smtp_server)[0]
    with open_store(settings_of(project)) as store:
        assert f"once:{MONTH}" not in db.job_next_run_times(store)  # fired and gone
        [run] = db.list_runs(store, job_id=f"once:{MONTH}")
    assert run.outcome == "sent"


def test_killed_across_the_trigger_runs_once_within_the_grace(
    project, scheduler_process, smtp_server
):
    schedule_soon(project, 2)
    first = scheduler_process()
    first.kill()  # SIGKILL: its lease stays behind
    time.sleep(3)  # the trigger passes while no scheduler runs
    assert smtp_server.messages == []
    code, out = cli_run(project, "scheduler", "list", "--json")
    assert code == 0, out
    [job] = json.loads(out)["jobs"]
    assert job["state"] == "due"
    second = scheduler_process()  # takes over the dead process's lease at once
    wait_for_messages(smtp_server, len(PEOPLE) + 1)
    time.sleep(0.5)
    # restarting again after the send does not send again
    second.stop()
    scheduler_process().stop()
    assert_each_subscriber_once(smtp_server)
    assert len(author_subjects(smtp_server)) == 1


def test_stopped_past_the_grace_is_reported_not_sent(project, scheduler_process, smtp_server):
    with open(project / "newsletter.toml", "a") as f:
        f.write("misfire_grace_time = 2\n")
    start = time.monotonic()
    schedule_soon(project, 4)
    scheduler_process().stop()  # the job is in the job store, then nobody runs
    assert time.monotonic() - start < 3.5, "the scheduler must stop before the trigger"
    time.sleep(max(0.0, start + 4 + 2 + 1.5 - time.monotonic()))  # trigger + grace pass
    code, out = cli_run(project, "scheduler", "list", "--json")
    view = json.loads(out)
    assert view["running"] is False
    assert view["jobs"][0]["state"] == "missed"
    proc = scheduler_process()
    proc.wait_for("missed by")
    wait_for_messages(smtp_server, 1)
    proc.stop()
    assert all(m.rcpt_tos == [AUTHOR] for m in smtp_server.messages)  # no subscriber mail
    assert ["NOT sent (missed its time)" in s for s in author_subjects(smtp_server)] == [True]
    code, out = cli_run(project, "scheduler", "list", "--json")
    [job] = json.loads(out)["jobs"]
    assert (job["state"], job["last_outcome"], job["misfires"]) == ("missed", "missed", 1)
    code, out = cli_run(project, "scheduler", "list")
    assert code == 0 and "missed" in out


def test_a_second_scheduler_refuses_and_a_dead_ones_lease_is_taken_over(
    project, scheduler_process, smtp_server
):
    first = scheduler_process()
    second = scheduler_process(started=False)
    assert second.proc.wait(20) == 1
    second._reader.join(5)
    assert "a scheduler is already running for this store" in second.output
    assert "Traceback" not in second.output
    first.kill()
    scheduler_process().stop()  # same host, dead pid: taken over at once

    # A lease held elsewhere (another host) is taken over only once it expires.
    with open_store(settings_of(project)) as store:
        assert db.acquire_lease(store, "elsewhere.example:1:abc", ttl=2)
    refused = scheduler_process(started=False)
    assert refused.proc.wait(20) == 1
    waiting = scheduler_process("--wait", "10")
    waiting.stop()
    assert smtp_server.messages == []


def test_restart_during_a_send_finishes_it_once(project, scheduler_process, smtp_server):
    from newsletter.store import add_subscriber

    with open_store(settings_of(project)) as store:
        for i in range(40):
            add_subscriber(store, f"bulk{i:02d}@example.org", topics="Training")
    smtp_server.delay_all = 0.05
    schedule_soon(project, 1)
    proc = scheduler_process()
    wait_for_messages(smtp_server, 10)
    proc.stop()  # SIGTERM mid-send: in-flight messages finish, the rest stays queued
    before = len(smtp_server.messages)
    assert before < 43
    smtp_server.delay_all = 0
    again = scheduler_process()
    wait_for_messages(smtp_server, 44)
    time.sleep(0.5)
    again.stop()
    got = per_recipient(smtp_server)
    assert all(n == 1 for n in got.values()), got
    assert len(got) == 44  # 43 subscribers and the author's report
    assert "resuming the send" in again.output
