"""What a person reads in an 80-column terminal: commands that paste whole, tables that
keep addresses and topic names whole, plurals, no library chatter, a send that says it
waits."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.config import load_settings
from newsletter.services import App, subscribers
from tests.support.delivery_runs import write_send_project
from tests.support.services import SAMPLE_MONTH, add_people
from tests.support.smtpserver import free_port

COLUMNS = {"COLUMNS": "80"}
LONG_ADDRESS = "marie-claire.tremblay@universite-exemple.ca"  # 43 characters


def run(*args: str, code: int = 0, **kw) -> str:
    result = CliRunner().invoke(cli, list(args), env=COLUMNS, **kw)
    assert result.exit_code == code, result.output
    return result.output


def test_the_demo_command_to_read_a_message_pastes_whole(isolated_env: Path) -> None:
    out = run("demo", "trial")
    [line] = [line for line in out.splitlines() if line.strip().startswith("python3 -c")]
    # Run it as a person would after copying the line: it must be one whole command.
    argv = shlex.split(line)
    argv[0] = sys.executable
    read = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert read.returncode == 0, read.stderr
    assert "Dear " in read.stdout
    [line] = [line for line in out.splitlines() if line.startswith("Next: ")]
    assert line.endswith("--serve")


def test_tables_keep_addresses_and_topic_names_whole_at_80_columns(store_url: str) -> None:
    from newsletter.content.taxonomy import load_taxonomy

    run("subscribers", "add", LONG_ADDRESS, "--name", "Marie-Claire Tremblay-Lefebvre")
    run("subscribers", "add", "bo@example.org", "--topics", "CBT; Alliance")
    run("subscribers", "pause", "bo@example.org", "--until", "2099-01-31")
    listed = run("subscribers", "list")
    assert LONG_ADDRESS in listed and "Marie-Claire Tremblay-Lefebvre" in listed
    assert "paused" in listed and "to 2099-01-31" in listed
    assert all(len(line) <= 80 for line in listed.splitlines())
    topics = run("topics", "list")
    for topic in load_taxonomy():
        assert topic.name in topics and topic.slug in topics, topic.name
    assert all(len(line) <= 80 for line in topics.splitlines())
    shown = run("subscribers", "show", "bo@example.org")
    assert "Alliance and Therapeutic Relationship" in shown


def test_plurals_are_right(store_url: str, tmp_path: Path) -> None:
    source = tmp_path / "one.csv"
    source.write_text("email\nann@example.org\n")
    assert "1 row: 1 added" in run("subscribers", "import", str(source))
    assert "1 subscriber (page 1 of 1)" in run("subscribers", "list")
    assert "36 topics; 1 more active subscriber takes every topic" in run("topics", "list")


def test_worker_once_prints_no_alembic_lines(store_url: str, isolated_env: Path) -> None:
    project = write_send_project(isolated_env / "p", store_url, f"outbox:///{isolated_env}/out")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env["NEWSLETTER_CONFIG"] = str(project / "newsletter.toml")
    done = subprocess.run(
        [sys.executable, "-m", "newsletter", "worker", "--once"],
        capture_output=True,
        text=True,
        env=env,
        cwd=project,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "sent 0, retrying 0, failed 0" in done.stdout
    assert "alembic" not in done.stderr.lower() and "Context impl" not in done.stderr


def test_send_says_it_waits_for_a_server_that_is_down(store_url: str, isolated_env: Path) -> None:
    project = write_send_project(
        isolated_env / "p",
        store_url,
        f"smtp://127.0.0.1:{free_port()}",
        "smtp_timeout = 1\nsmtp_outage_wait = 0.5\n",
    )
    settings = load_settings(project / "newsletter.toml", environ={})
    add_people(settings, {"ann@example.org": None, "bo@example.org": None})
    with App(settings) as app:
        assert subscribers.get_subscriber(app, "ann@example.org").status == "active"
    out = run("-c", str(project / "newsletter.toml"), "send", SAMPLE_MONTH, "--yes", code=75)
    assert "waiting for the server; Ctrl-C leaves the rest queued" in out
    assert re.search(r"waiting .* 0/2", out), out
    assert "the send is paused" in out
