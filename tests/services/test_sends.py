"""Whole sends against a real SMTP server, on SQLite and PostgreSQL.

Every active subscriber gets exactly the summaries their topics call for, once; nobody
else gets anything; the server's refusals, outages and a killed process lose nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.config import load_settings
from newsletter.services import App, subscribers
from newsletter.store import ledger, open_store
from tests.support.services import (
    SAMPLE_MONTH,
    SAMPLE_PEOPLE,
    SAMPLE_TITLES,
    WorkerOptions,
    add_people,
    plan_issue_send,
    run_worker,
    store_contents,
)
from tests.support.smtpserver import received

REPO = Path(__file__).resolve().parents[2]
MONTH = SAMPLE_MONTH
TITLES = SAMPLE_TITLES
# email -> (topics, expected summaries); None means nothing may arrive.
PEOPLE: dict[str, tuple[str | None, set[str] | None]] = {
    **SAMPLE_PEOPLE,
    "paused@example.org": ("Training", None),
    "left@example.org": ("Training", None),
}


@pytest.fixture
def project(send_project: Path) -> Path:
    """The sending project with the people of :data:`PEOPLE`."""
    settings = settings_of(send_project)
    add_people(settings, {addr: topics for addr, (topics, _) in PEOPLE.items()})
    with App(settings) as app:
        subscribers.pause(app, "paused@example.org")
        subscribers.unsubscribe(app, "left@example.org")
    return send_project


def settings_of(project: Path):
    return load_settings(project / "newsletter.toml", environ={})


def summaries_in(msg) -> set[str]:
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    got = set()
    for key, title in TITLES.items():
        # A summary is in the digest when its title is a heading, not just listed under
        # "Also in this issue"; the text part shows headings in capitals.
        if title.upper() in text:
            got.add(key)
            assert title in html
    return got


def check_everyone_got_their_digest(server) -> None:
    got = received(server)
    for addr, (_, expected) in PEOPLE.items():
        if expected is None:
            assert addr not in got, f"{addr} must get nothing"
        else:
            assert len(got.get(addr, [])) == 1, f"{addr} got {len(got.get(addr, []))}"
            assert summaries_in(got[addr][0]) == expected, addr


def test_send_delivers_each_digest_once_with_every_header(project, smtp_server) -> None:
    settings = settings_of(project)
    preview = plan_issue_send(settings, MONTH)
    assert {k.name: n for k, n in preview.variants.items()} == {
        "s1": 1,
        "s2": 1,
        "s1+s3": 1,
        "s2+s3": 1,
        "all": 1,
    }
    assert preview.skipped == {"no matching topic": 1, "paused": 1}
    result = run_worker(settings, WorkerOptions(months=[MONTH]))
    assert result.report.sent == 5
    check_everyone_got_their_digest(smtp_server)
    [status] = result.statuses
    assert status.status == "done" and status.counts == {"sent": 5, "skipped": 2}

    msg = received(smtp_server)["mixed@example.org"][0]
    assert msg["From"] == "Psychotherapy Research Digest <digest@example.org>"
    assert msg["To"] == "Ann Example <mixed@example.org>"
    assert msg["Subject"] == "Psychodynamic therapy, experience, and depression treatments compared"
    assert msg["Date"].datetime is not None
    assert msg["Message-ID"].startswith(f"<{MONTH}.") and msg["Message-ID"].endswith(
        "@example.org>"
    )
    assert msg["List-Id"] and "example.org" in msg["List-Id"]
    unsub = msg["List-Unsubscribe"]
    assert unsub.startswith("<https://news.example.org/unsubscribe/")
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert unsub.strip("<>") in msg.get_body(("html",)).get_content()
    assert msg.get_content_type() == "multipart/alternative"
    assert "Dear Ann," in msg.get_body(("plain",)).get_content()
    for raw in smtp_server.messages:
        assert all(len(line) <= 998 for line in raw.data.split(b"\r\n"))

    ids = {r.email: r.message_id for r in ledger_rows(settings)}
    assert ids["mixed@example.org"] == msg["Message-ID"]

    # A second send of a finished issue sends nothing and says so.
    out = CliRunner().invoke(cli, ["-c", str(project / "newsletter.toml"), "send", MONTH, "--yes"])
    assert out.exit_code == 0, out.output
    assert "sent already" in out.output
    assert len(smtp_server.messages) == 5


def test_send_yes_plans_without_counting_twice(project, smtp_server, monkeypatch) -> None:
    """With --yes a new send is planned at once: no separate counting pass over every
    subscriber first (at a million people it took as long as planning). The table shows
    the plan's own counts; without --yes (or with --dry-run) the preview still counts."""
    calls = []
    real = ledger.preview_plan
    monkeypatch.setattr(ledger, "preview_plan", lambda *a, **k: calls.append(1) or real(*a, **k))
    config = ["-c", str(project / "newsletter.toml")]
    dry = CliRunner().invoke(cli, [*config, "send", MONTH, "--dry-run", "--yes"])
    assert dry.exit_code == 0, dry.output
    assert calls == [1] and f"Send of {MONTH} (new)" in dry.output
    out = CliRunner().invoke(cli, [*config, "send", MONTH, "--yes"])
    assert out.exit_code == 0, out.output
    assert calls == [1]  # not counted again
    assert f"Send of {MONTH} (planned)" in out.output
    assert len(smtp_server.messages) == 5


def test_send_yes_sends_the_first_messages_while_the_rest_is_planned(
    project, smtp_server, monkeypatch
) -> None:
    """A large send's first messages do not wait for the whole plan: `send --yes` plans
    the first subscribers, then the rest a step at a time while they are sent."""
    from newsletter.services import sends

    monkeypatch.setattr(sends, "FIRST_STEP", 2)
    monkeypatch.setattr(ledger, "PLAN_STEP", {"postgresql": 2, "sqlite": 2})
    seen_at_step: list[int] = []
    real_step = ledger.plan_step

    def step(*args, **kwargs):
        # The last steps wait until a message has arrived: planning everything before
        # sending anything would never get here (and the test would fail).
        if len(seen_at_step) == 1:
            deadline = time.monotonic() + 60
            while not smtp_server.messages and time.monotonic() < deadline:
                time.sleep(0.01)
        seen_at_step.append(len(smtp_server.messages))
        return real_step(*args, **kwargs)

    monkeypatch.setattr(ledger, "plan_step", step)
    config = ["-c", str(project / "newsletter.toml")]
    out = CliRunner().invoke(cli, [*config, "send", MONTH, "--yes"])
    assert out.exit_code == 0, out.output
    assert "planning the rest of the list while the first messages go" in out.output
    assert len(seen_at_step) > 2 and seen_at_step[0] == 0 and seen_at_step[-1] >= 1
    check_everyone_got_their_digest(smtp_server)
    assert len(smtp_server.messages) == 5
    status = ledger_status(settings_of(project))
    assert status.status == "done" and not status.planning
    assert status.counts == {"sent": 5, "skipped": 2}
    assert f"Send of {MONTH}" in out.output and "s1+s3" in out.output  # the whole plan


def test_a_send_paused_by_an_outage_is_still_planned_to_the_end(
    project, smtp_server, monkeypatch
) -> None:
    """The server is down while the rest is being planned: the worker gives up waiting,
    but planning goes on to the end, so a later worker finds everyone queued."""
    from newsletter.services import sends

    monkeypatch.setattr(sends, "FIRST_STEP", 2)
    monkeypatch.setattr(ledger, "PLAN_STEP", {"postgresql": 2, "sqlite": 2})
    smtp_server.stop()
    with App(settings_of(project)) as app:
        planning = sends.plan_while_sending(app, MONTH)
        assert planning.more_coming() or planning.total is not None
        options = WorkerOptions(months=[MONTH], max_unavailable_wait=0.2)
        result = sends.run_worker(app, options, planning=planning)
    assert result.report.paused and result.report.sent == 0
    [status] = result.statuses
    assert not status.planning and status.counts == {"pending": 5, "skipped": 2}
    smtp_server.start()
    assert run_worker(settings_of(project), WorkerOptions(months=[MONTH])).report.sent == 5
    check_everyone_got_their_digest(smtp_server)


def ledger_status(settings):
    with open_store(settings) as store:
        return ledger.send_status(store, MONTH)


def ledger_rows(settings):
    with open_store(settings) as store:
        return ledger.list_deliveries(store, MONTH)


def test_temporary_and_permanent_refusals(project, smtp_server) -> None:
    settings = settings_of(project)
    add_people(settings, {"temp-fail@example.org": "Training", "perm-fail@example.org": "Training"})
    plan_issue_send(settings, MONTH)
    first = run_worker(settings, WorkerOptions(months=[MONTH]))
    assert (first.report.sent, first.report.retry, first.report.failed) == (5, 1, 1)
    rows = {r.email: r for r in ledger_rows(settings)}
    assert rows["perm-fail@example.org"].status == "failed"
    assert rows["perm-fail@example.org"].last_reply.startswith("550")
    assert rows["temp-fail@example.org"].status == "pending"
    assert rows["temp-fail@example.org"].last_reply.startswith("451")
    # The retry keeps its Message-ID; once the server accepts, it is sent.
    mid = rows["temp-fail@example.org"].message_id
    del smtp_server.rcpt_replies["temp-fail"]
    again = run_worker(settings, WorkerOptions(months=[MONTH]))
    assert again.report.sent == 1
    rows = {r.email: r for r in ledger_rows(settings)}
    assert rows["temp-fail@example.org"].status == "sent"
    assert rows["temp-fail@example.org"].message_id == mid
    assert rows["temp-fail@example.org"].attempts == 2
    # Failed rows go back only on request, and a hard bounce (550) only when asked for.
    retry = ["-c", str(project / "newsletter.toml"), "deliveries", "retry", MONTH]
    assert CliRunner().invoke(cli, retry).output.startswith("0 failed deliveries queued again")
    again = CliRunner().invoke(cli, [*retry, "--include-hard"])
    assert again.output.startswith("1 failed delivery queued again")


def test_dropped_connection_after_data_is_retried_with_the_same_message_id(
    project, smtp_server
) -> None:
    settings = settings_of(project)
    plan_issue_send(settings, MONTH)
    smtp_server.drop_next_data(1)
    first = run_worker(settings, WorkerOptions(months=[MONTH], threads=1))
    assert first.report.retry == 1 and first.report.sent == 4
    [dropped] = smtp_server.dropped
    run_worker(settings, WorkerOptions(months=[MONTH], threads=1))
    resent = [m for m in smtp_server.messages if m.rcpt_tos == dropped.rcpt_tos]
    assert len(resent) == 1
    assert resent[0].parsed()["Message-ID"] == dropped.parsed()["Message-ID"]


def test_server_down_pauses_and_resumes_by_itself(project, smtp_server, caplog) -> None:
    settings = settings_of(project)
    plan_issue_send(settings, MONTH)
    smtp_server.stop()
    done: dict = {}

    def work() -> None:
        done["result"] = run_worker(settings, WorkerOptions(months=[MONTH]))

    t = threading.Thread(target=work)
    with caplog.at_level("WARNING", logger="newsletter.delivery.worker"):
        t.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with open_store(settings) as store:
                if ledger.send_status(store, MONTH).status == "paused":
                    break
            time.sleep(0.1)
        with open_store(settings) as store:
            assert ledger.send_status(store, MONTH).status == "paused"
        time.sleep(1.0)
        smtp_server.start()
        t.join(30)
    assert not t.is_alive()
    assert done["result"].report.sent == 5
    check_everyone_got_their_digest(smtp_server)
    outage_logs = [r for r in caplog.records if "cannot be reached" in r.getMessage()]
    assert len(outage_logs) == 1  # logged once, not once per message
    assert any("is back" in r.getMessage() for r in caplog.records)


def _newsletter(project: Path, *args: str, **kw) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env["NEWSLETTER_CONFIG"] = str(project / "newsletter.toml")
    return subprocess.Popen(
        [sys.executable, "-m", "newsletter", *args],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        **kw,
    )


def _add_many(settings, n: int) -> None:
    add_people(settings, {f"bulk{i:03d}@example.org": "Training" for i in range(n)})


@pytest.mark.slow
def test_sigkill_mid_send_loses_nothing(project, smtp_server) -> None:
    settings = settings_of(project)
    _add_many(settings, 60)
    smtp_server.delay_all = 0.03  # slow enough to kill the process mid-way
    proc = _newsletter(project, "send", MONTH, "--yes", "--workers", "1")
    deadline = time.monotonic() + 30
    while len(smtp_server.messages) < 20 and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    before = len(smtp_server.messages)
    assert 20 <= before < 65
    smtp_server.delay_all = 0
    worker = _newsletter(project, "worker", "--once")
    out = worker.communicate(timeout=60)[0].decode()
    assert worker.returncode == 0, out
    got = received(smtp_server)
    expected = {f"bulk{i:03d}@example.org" for i in range(60)} | {
        a for a, (_, e) in PEOPLE.items() if e
    }
    assert set(got) == expected
    twice = [a for a, msgs in got.items() if len(msgs) > 1]
    # At most the messages on the wire or waiting for their record go twice (one thread).
    assert len(twice) <= 2 * WorkerOptions().pipeline_depth
    for a in twice:
        assert len({m["Message-ID"] for m in got[a]}) == 1
    with open_store(settings) as store:
        assert ledger.send_status(store, MONTH).status == "done"


@pytest.mark.slow
def test_sigterm_finishes_in_flight_and_leaves_the_rest_queued(project, smtp_server) -> None:
    settings = settings_of(project)
    _add_many(settings, 60)
    smtp_server.delay_all = 0.03
    proc = _newsletter(project, "send", MONTH, "--yes", "--workers", "1")
    deadline = time.monotonic() + 30
    while len(smtp_server.messages) < 10 and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=30)[0].decode()
    assert proc.returncode == 0, out
    assert "stopped" in out
    with open_store(settings) as store:
        status = ledger.send_status(store, MONTH)
    sent = status.counts.get("sent", 0)
    assert status.counts.get("sending", 0) == 0  # nothing left claimed
    assert sent == len(smtp_server.messages) < 65
    assert status.counts.get("pending", 0) == 65 - sent


def cli_run(project: Path, *args: str):
    return CliRunner().invoke(cli, ["-c", str(project / "newsletter.toml"), *args])


def test_dry_run_changes_nothing_and_shows_the_variants(project, smtp_server) -> None:
    out = cli_run(project, "send", MONTH, "--dry-run")
    assert out.exit_code == 0, out.output
    assert "dry run" in out.output and "s1+s3" in out.output and "no matching topic" in out.output
    assert smtp_server.messages == []
    status = cli_run(project, "deliveries", "status", MONTH)
    assert status.exit_code == 1 and "has not been sent or planned" in status.output


def test_drafts_and_back_issues_are_refused(project) -> None:
    issue = project / "issues" / f"{MONTH}.md"
    issue.write_text(issue.read_text().replace("status: ready", "status: draft"))
    out = cli_run(project, "send", MONTH, "--yes")
    assert out.exit_code == 1 and "is a draft" in out.output and "status: ready" in out.output
    out = cli_run(project, "send", "2026-10", "--yes")
    assert out.exit_code == 1 and "published back issue" in out.output


def test_a_dry_run_of_a_draft_shows_the_variants_and_changes_nothing(project, smtp_server) -> None:
    issue = project / "issues" / f"{MONTH}.md"
    issue.write_text(issue.read_text().replace("status: ready", "status: draft"))
    before = store_contents(settings_of(project))
    out = cli_run(project, "send", MONTH, "--dry-run")
    assert out.exit_code == 0, out.output
    assert "s1+s3" in out.output and "dry run" in out.output
    assert "is a draft" in out.output and "status: ready" in out.output
    assert store_contents(settings_of(project)) == before
    assert smtp_server.messages == []
    # A published back issue is still refused: it is never sent, so nothing to preview.
    out = cli_run(project, "send", "2026-10", "--dry-run")
    assert out.exit_code == 1 and "published back issue" in out.output


def test_deliveries_list_shows_variant_names_and_local_short_times(project, smtp_server) -> None:
    import re

    config = project / "newsletter.toml"
    config.write_text(config.read_text() + 'timezone = "Europe/Paris"\n')
    assert cli_run(project, "send", MONTH, "--yes").exit_code == 0
    out = cli_run(project, "deliveries", "list", MONTH).output
    assert "s1+s3" in out and "variant_mask" not in out and "+00:00" not in out
    assert re.search(r"\d\d-\d\d \d\d:\d\d$", out, re.MULTILINE), out  # short: no year, no seconds
    assert "times in Europe/Paris +01:00" in out
    rows = json.loads(cli_run(project, "deliveries", "list", MONTH, "--json").output)
    row = next(r for r in rows if r["email"] == "efficacy@example.org")
    assert row["variant"] == "s1+s3"
    assert (
        "T" in row["sent_at"] and dt.datetime.fromisoformat(row["sent_at"]).utcoffset() is not None
    )


def test_never_tried_rows_are_queued_not_retrying(project, smtp_server) -> None:
    out = cli_run(project, "send", MONTH, "--yes", "--limit", "1")
    assert out.exit_code == 0, out.output
    # Issue, Status, Sent, Skipped, Queued, Retrying, Failed
    row = next(line for line in out.output.splitlines() if line.startswith(f"│ {MONTH}"))
    cells = [c.strip() for c in row.strip("│").split("│")]
    assert cells[2:7] == ["1", "2", "4", "0", "0"], row
    assert "wait for a retry" not in out.output
    status = json.loads(cli_run(project, "deliveries", "status", MONTH, "--json").output)
    assert (status["queued"], status["retrying"]) == (4, 0)
    text = cli_run(project, "deliveries", "list", MONTH, "--status", "pending").output
    assert text.count("queued") == 4 and "retrying" not in text


def test_send_test_is_marked_and_not_recorded(project, smtp_server) -> None:
    out = cli_run(project, "send-test", MONTH, "--to", "author@example.org", "--topics", "Training")
    assert out.exit_code == 0, out.output
    [msg] = received(smtp_server)["author@example.org"]
    assert msg["Subject"].startswith("[TEST] ")
    assert summaries_in(msg) == {"s2"}
    assert "has not been sent or planned" in cli_run(project, "deliveries", "status", MONTH).output


def test_send_test_as_a_subscriber(project, smtp_server) -> None:
    from newsletter.tokens import read_token

    out = cli_run(
        project, "send-test", MONTH, "--to", "author@example.org", "--subscriber", "pdt@example.org"
    )
    assert out.exit_code == 0, out.output
    assert "as pdt@example.org" in out.output and "act for them" in out.output
    [msg] = received(smtp_server)["author@example.org"]
    assert msg["Subject"].startswith("[TEST] ")
    assert summaries_in(msg) == SAMPLE_PEOPLE["pdt@example.org"][1]  # their variant
    text = msg.get_body(("plain",)).get_content()
    token = text.split("/preferences/")[1].split()[0]
    with App(settings_of(project)) as app:
        pdt = subscribers.get_subscriber(app, "pdt@example.org")
        assert read_token(app.settings, "preferences", token) == pdt.id
    assert "has not been sent or planned" in cli_run(project, "deliveries", "status", MONTH).output
    both = cli_run(
        project,
        "send-test",
        MONTH,
        "--to",
        "a@example.org",
        "--topics",
        "CBT",
        "--subscriber",
        "pdt@example.org",
    )
    assert both.exit_code == 2 and "not both" in both.output


def _fewer_links(msg) -> tuple[list[str], list[str]]:
    """The topic slugs of the "fewer emails on" links, in the HTML and the text part."""
    import re

    html = msg.get_body(("html",)).get_content()
    text = msg.get_body(("plain",)).get_content()
    pattern = r"https://[^\s\"<>]+/topic/[^/\s\"<>]+/([a-z0-9-]+)"
    return re.findall(pattern, html), re.findall(pattern, text)


def test_fewer_emails_links_name_only_the_readers_own_topics(project, smtp_server) -> None:
    """Through a real send (snapshot, worker, SMTP): a reader of Therapist Factors and
    Training gets the summary on Therapist Factors, Training and Practice-Based Research
    with links for their two topics only; a reader of every topic gets all three."""
    add_people(
        settings_of(project),
        {"tf-training@example.org": "Therapist Factors; Training", "every@example.org": None},
    )
    out = cli_run(project, "send", MONTH, "--yes")
    assert out.exit_code == 0, out.output
    got = received(smtp_server)
    [mine] = got["tf-training@example.org"]
    assert summaries_in(mine) == {"s2"}
    html, text = _fewer_links(mine)
    assert html == text == ["therapist-factors", "training"]
    [every] = got["every@example.org"]
    html, text = _fewer_links(every)
    s2 = ["therapist-factors", "training", "practice-based-research-and-practice-research-networks"]
    assert set(s2) <= set(html) and html == text
    assert "alliance-and-therapeutic-relationship" not in html  # on no summary of the issue
    # Each link works for its reader: it names a topic they have, so it can remove it.
    with App(settings_of(project)) as app:
        person = subscribers.get_subscriber(app, "tf-training@example.org")
        for slug in _fewer_links(mine)[0]:
            assert subscribers.topic_state(person, slug).has_topic


def test_deliveries_status_and_list_json(project, smtp_server) -> None:
    import json

    add_people(settings_of(project), {"perm-fail@example.org": "Training"})
    out = cli_run(project, "send", MONTH, "--yes")
    assert out.exit_code == 0, out.output
    assert "Result" in out.output and "done" in out.output
    status = json.loads(cli_run(project, "deliveries", "status", MONTH, "--json").output)
    assert status["status"] == "done"
    assert status["counts"] == {"sent": 5, "failed": 1, "skipped": 2}
    assert status["skipped"] == {"no matching topic": 1, "paused": 1}
    failed = json.loads(
        cli_run(project, "deliveries", "list", MONTH, "--status", "failed", "--json").output
    )
    assert [(r["email"], r["last_reply"][:3]) for r in failed] == [("perm-fail@example.org", "550")]
    shown = cli_run(project, "subscribers", "show", "perm-fail@example.org", "--json")
    assert json.loads(shown.output)["deliveries"][0]["status"] == "failed"


def test_a_send_paused_by_an_outage_is_resumed_by_a_later_worker(project, smtp_server) -> None:
    settings = settings_of(project)
    plan_issue_send(settings, MONTH)
    smtp_server.stop()
    first = run_worker(settings, WorkerOptions(months=[MONTH], max_unavailable_wait=0.5))
    assert first.report.paused and first.report.sent == 0
    with open_store(settings) as store:
        assert ledger.send_status(store, MONTH).status == "paused"
    smtp_server.start()
    later = run_worker(settings, WorkerOptions())  # a fresh `newsletter worker --once`
    assert later.report.sent == 5
    check_everyone_got_their_digest(smtp_server)
    with open_store(settings) as store:
        assert ledger.send_status(store, MONTH).status == "done"
