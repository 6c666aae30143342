"""Refusals at send time: a hard bounce marks the address bounced at once, with the
evidence; a temporary refusal changes nothing; soft bounces add up; a block is kept only.

A real send through the scripted fault SMTP server, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.services import App, bounces, subscribers
from tests.support.delivery_runs import ledger_rows, settings_of
from tests.support.fault_smtp import FaultSmtpServer
from tests.support.services import (
    SAMPLE_MONTH,
    SAMPLE_PEOPLE,
    WorkerOptions,
    add_people,
    plan_issue_send,
    run_worker,
)

MONTH = SAMPLE_MONTH
DEAD = "pdt@example.org"  # 550 5.1.1 at RCPT
FULL = "efficacy@example.org"  # 452 4.2.2 mailbox full, then accepted
GREY = "training@example.org"  # 451 greylisted once
BLOCKED = "mixed@example.org"  # 554 5.7.1 spam block


@pytest.fixture
def project(send_project: Path, smtp_server, fault_smtp: FaultSmtpServer) -> Path:
    toml = send_project / "newsletter.toml"
    toml.write_text(toml.read_text().replace(smtp_server.url, fault_smtp.url))
    add_people(
        settings_of(send_project), {addr: topics for addr, (topics, _) in SAMPLE_PEOPLE.items()}
    )
    return send_project


def _worker(project: Path):
    return run_worker(settings_of(project), WorkerOptions(months=[MONTH], threads=1))


def test_a_hard_bounce_marks_the_address_bounced_with_its_evidence(
    project: Path, fault_smtp: FaultSmtpServer
) -> None:
    settings = settings_of(project)
    assert {DEAD, FULL, GREY, BLOCKED} <= set(SAMPLE_PEOPLE)
    plan_issue_send(settings, MONTH)
    fault_smtp.refuse("rcpt", "550 5.1.1 <pdt@example.org>: User unknown", recipient=DEAD)
    fault_smtp.refuse("rcpt", "452 4.2.2 Mailbox full", recipient=FULL)
    fault_smtp.refuse("rcpt", 451, recipient=GREY)
    fault_smtp.refuse("data", "554 5.7.1 Message rejected as spam", recipient=BLOCKED)
    _worker(project)
    _worker(project)  # the temporary refusals go through on the retry
    with App(settings) as app:
        status = {e: subscribers.get_subscriber(app, e).status for e in SAMPLE_PEOPLE}
        assert status[DEAD] == "bounced"
        # Temporary refusals and a block are not about the address.
        assert status[FULL] == status[GREY] == status[BLOCKED] == "active"
        _view, rows = bounces.show_bounces(app, DEAD)
        [hard] = rows
        assert (hard.kind, hard.code, hard.status, hard.month) == ("hard", 550, "5.1.1", MONTH)
        assert "User unknown" in hard.diagnostic and hard.message_id
        history = subscribers.get_subscriber(app, DEAD, history=True).events
        [event] = [h for h in history if h.event == "bounced"]
        assert event.source == "delivery"
        assert "5.1.1" in event.detail and MONTH in event.detail
        [block] = bounces.show_bounces(app, BLOCKED)[1]
        assert block.kind == "block"
        assert bounces.show_bounces(app, FULL)[1] == []  # retried and delivered
    rows = ledger_rows(settings, MONTH)
    assert rows[DEAD].status == rows[BLOCKED].status == "failed"
    assert rows[FULL].status == rows[GREY].status == "sent"


def test_retry_leaves_hard_bounces_and_the_next_plan_excludes_them(
    project: Path, fault_smtp: FaultSmtpServer
) -> None:
    settings = settings_of(project)
    plan_issue_send(settings, MONTH)
    fault_smtp.refuse("rcpt", "550 5.1.1 User unknown", recipient=DEAD)
    fault_smtp.refuse("data", "554 5.7.1 spam", recipient=BLOCKED)
    _worker(project)
    runner = CliRunner()
    env = {"NEWSLETTER_CONFIG": str(project / "newsletter.toml")}
    got = runner.invoke(cli, ["deliveries", "retry", MONTH], env=env)
    assert got.exit_code == 0, got.output
    assert got.output.startswith("1 failed delivery queued again")  # the block only
    assert ledger_rows(settings, MONTH)[DEAD].status == "failed"
    listed = runner.invoke(cli, ["subscribers", "list", "--status", "bounced", "--json"], env=env)
    assert DEAD in listed.output and BLOCKED not in listed.output
    # Reactivated (logged), the person is planned and sent to again.
    got = runner.invoke(cli, ["subscribers", "reactivate", DEAD], env=env)
    assert got.exit_code == 0, got.output
    with App(settings) as app:
        view = subscribers.get_subscriber(app, DEAD, history=True)
        assert view.status == "active"
        assert "reactivated" in [e.event for e in view.events]
    again = runner.invoke(cli, ["deliveries", "retry", MONTH, "--include-hard"], env=env)
    assert again.output.startswith("1 failed delivery queued again"), again.output
    _worker(project)
    assert ledger_rows(settings, MONTH)[DEAD].status == "sent"
    # Reactivating someone who is not bounced is a clear error.
    got = runner.invoke(cli, ["subscribers", "reactivate", GREY], env=env)
    assert got.exit_code == 1 and "not bounced" in got.output


def test_bounces_list_and_show_commands(project: Path, fault_smtp: FaultSmtpServer) -> None:
    settings = settings_of(project)
    plan_issue_send(settings, MONTH)
    fault_smtp.refuse("rcpt", "550 5.1.1 [/bold] User unknown", recipient=DEAD)
    _worker(project)
    runner = CliRunner()
    env = {"NEWSLETTER_CONFIG": str(project / "newsletter.toml"), "COLUMNS": "200"}
    got = runner.invoke(cli, ["bounces", "list"], env=env)
    assert got.exit_code == 0, got.output
    assert DEAD in got.output and "[/bold] User unknown" in got.output
    got = runner.invoke(cli, ["bounces", "list", "--json", "--since", "2000-01-01"], env=env)
    [row] = json.loads(got.output)
    assert (row["email"], row["kind"], row["code"], row["month"]) == (DEAD, "hard", 550, MONTH)
    got = runner.invoke(cli, ["bounces", "show", DEAD], env=env)
    assert "bounced" in got.output and "subscribers reactivate" in got.output
    got = runner.invoke(cli, ["bounces", "show", "nobody@example.org"], env=env)
    assert got.exit_code == 1 and "Traceback" not in got.output
    # One hard bounce among five messages: 20 %, far above what providers tolerate.
    got = runner.invoke(cli, ["deliveries", "status", MONTH], env=env)
    assert "bounces: hard 1 (20.00%)" in got.output
    assert "warning: hard rate 20.00%" in got.output
    got = runner.invoke(cli, ["deliveries", "status", MONTH, "--json"], env=env)
    report = json.loads(got.output)["bounces"]
    assert report["counts"] == {"hard": 1} and report["attempted"] == 5


def test_soft_bounces_mark_the_address_at_the_threshold(
    project: Path, fault_smtp: FaultSmtpServer
) -> None:
    """Each delivery given up after retries (or refused as mailbox full) is one soft
    bounce; at bounce_soft_threshold within the window the address is bounced."""
    with open(project / "newsletter.toml", "a") as f:
        f.write("bounce_soft_threshold = 2\nretry_give_up_after = 0\n")
    settings = settings_of(project)
    plan_issue_send(settings, MONTH)
    fault_smtp.refuse("rcpt", "552 5.2.2 Mailbox full", recipient=FULL, times=None)
    _worker(project)
    with App(settings) as app:
        assert subscribers.get_subscriber(app, FULL).status == "active"  # one soft bounce
        assert [b.kind for b in bounces.show_bounces(app, FULL)[1]] == ["soft"]
    assert ledger_rows(settings, MONTH)[FULL].status == "failed"
    # The same again (a retry on request): the second soft bounce reaches the threshold.
    runner = CliRunner()
    env = {"NEWSLETTER_CONFIG": str(project / "newsletter.toml")}
    assert runner.invoke(cli, ["deliveries", "retry", MONTH], env=env).exit_code == 0
    _worker(project)
    with App(settings) as app:
        assert [b.kind for b in bounces.show_bounces(app, FULL)[1]] == ["soft", "soft"]
        view = subscribers.get_subscriber(app, FULL, history=True)
        assert view.status == "bounced"
        [event] = [e for e in view.events if e.event == "bounced"]
        assert "2 soft bounces within 30 days" in (event.detail or "")


def test_each_message_goes_out_from_its_own_verp_address(
    project: Path, fault_smtp: FaultSmtpServer
) -> None:
    from newsletter.tokens import read_verp_tag

    with open(project / "newsletter.toml", "a") as f:
        f.write('bounce_address = "bounces@news.example.org"\n')
    settings = settings_of(project)
    plan_issue_send(settings, MONTH)
    _worker(project)
    with App(settings) as app:
        ids = {e: subscribers.get_subscriber(app, e).id for e in SAMPLE_PEOPLE}
    seen = {}
    for m in fault_smtp.messages:
        local, domain = m.mail_from.split("@")
        assert domain == "news.example.org"
        seen[m.rcpt_tos[0]] = read_verp_tag(settings, local.split("+", 1)[1])
    assert seen and all(seen[e] == (MONTH, ids[e]) for e in seen)
