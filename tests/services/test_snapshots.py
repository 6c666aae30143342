"""A send is planned once into a snapshot, and delivered from it alone.

On SQLite and PostgreSQL, against the real SMTP test server: planning parses the issue
file once and renders each variant once; a worker needs nothing but the configuration
(the database and the transport); an issue file edited after planning changes nothing
until ``newsletter send MONTH --replan``, which re-plans only the rows not sent yet; people
who join a planned send are planned with the send's own no-match policy.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from email.message import EmailMessage
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.config import load_settings
from newsletter.content import parser
from newsletter.errors import NewsletterError
from newsletter.render import build as render_build
from newsletter.render import variant_keys
from newsletter.rules.statuses import SKIP_NO_MATCH
from newsletter.services import App, sends, subscribers
from newsletter.services.sends import WorkerOptions
from tests.support.services import SAMPLE_MONTH, SAMPLE_PEOPLE, SAMPLE_TITLES, add_people
from tests.support.smtpserver import received

REPO = Path(__file__).resolve().parents[2]
MONTH = SAMPLE_MONTH
TITLES = SAMPLE_TITLES
NEW_S2 = "Do Therapists Get Better Over Time"
NEW_TITLES = {**TITLES, "s2": NEW_S2}
PEOPLE = SAMPLE_PEOPLE
RECIPIENTS = {a: e for a, (_, e) in PEOPLE.items() if e is not None}


@pytest.fixture
def project(send_project: Path) -> Path:
    """The sending project with the people of :data:`PEOPLE`."""
    settings = settings_of(send_project)
    add_people(settings, {addr: topics for addr, (topics, _) in PEOPLE.items()})
    return send_project


def settings_of(project: Path):
    return load_settings(project / "newsletter.toml", environ={})


def cli_run(project: Path, *args: str, **kw):
    runner = CliRunner(env={"COLUMNS": "200"})
    return runner.invoke(cli, ["-c", str(project / "newsletter.toml"), *args], **kw)


def flat(text: str) -> str:
    """Whitespace normalised (wrapped lines joined)."""
    return " ".join(text.split())


def text_of(msg: EmailMessage) -> str:
    return flat(msg.get_body(("plain",)).get_content())


def html_of(msg: EmailMessage) -> str:
    return flat(msg.get_body(("html",)).get_content())


def summaries_in(msg: EmailMessage, titles: dict[str, str] = TITLES) -> set[str]:
    """The summaries shown in full: the text part shows their titles as capital headings
    (the "Also in this issue" list shows the others' titles as they are)."""
    text, html = text_of(msg), html_of(msg)
    got = set()
    for key, title in titles.items():
        if title.upper() in text:
            got.add(key)
            assert title in html, (key, title)
    return got


def mentions(msg: EmailMessage, title: str) -> bool:
    return title in html_of(msg) or title.upper() in text_of(msg) or title in text_of(msg)


def edit_title(project: Path, old: str, new: str) -> None:
    path = project / "issues" / f"{MONTH}.md"
    text = path.read_text("utf-8")
    assert f"## {old}\n" in text
    path.write_text(text.replace(f"## {old}\n", f"## {new}\n"), "utf-8")


def status_of(settings) -> sends.SendStatus:
    with App(settings) as app:
        return sends.delivery_status(app, MONTH)


def rows_of(settings) -> dict[str, sends.DeliveryRow]:
    with App(settings) as app:
        return {r.email: r for r in sends.list_deliveries(app, MONTH)}


def run_worker(settings, **options) -> sends.SendResult:
    with App(settings) as app:
        return sends.run_worker(app, WorkerOptions(months=[MONTH], **options))


class Counted:
    """Wraps a function, counts its calls and delegates."""

    def __init__(self, fn) -> None:
        self.fn = fn
        self.calls = 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.fn(*args, **kwargs)


# --- a. parsed once, rendered once -------------------------------------------------------


def test_send_parses_the_issue_once_and_renders_each_variant_once(
    project, smtp_server, monkeypatch
) -> None:
    settings = settings_of(project)
    issue = parser.load_issue(project / "issues" / f"{MONTH}.md")
    expected_variants = variant_keys(issue, settings.no_match_policy)

    parse = Counted(parser.parse_issue)
    render = Counted(render_build.render_variant)
    monkeypatch.setattr(parser, "parse_issue", parse)
    monkeypatch.setattr(render_build, "render_variant", render)

    out = cli_run(project, "send", MONTH, "--yes")
    assert out.exit_code == 0, out.output
    assert parse.calls == 1
    assert render.calls == len(expected_variants)
    assert len(smtp_server.messages) == len(RECIPIENTS)
    assert status_of(settings).status == "done"

    # The finished issue: nothing is rendered (and nothing sent) again.
    parse.calls = render.calls = 0
    again = cli_run(project, "send", MONTH, "--yes")
    assert again.exit_code == 0, again.output
    assert "sent already" in again.output
    assert render.calls == 0
    assert parse.calls <= 1
    assert len(smtp_server.messages) == len(RECIPIENTS)


# --- b. a worker needs the configuration only --------------------------------------------

MARKER = "Snapshot marker 7Q2X"


@pytest.mark.slow
def test_a_worker_with_only_the_config_delivers_a_planned_send(
    project, smtp_server, tmp_path
) -> None:
    # The project's own copy of the templates, with a line the shipped ones lack: messages
    # carrying it can only come from what was rendered at planning.
    shutil.copytree(REPO / "templates" / "email", project / "templates" / "email")
    text_template = project / "templates" / "email" / "issue.txt.j2"
    source = text_template.read_text("utf-8")
    assert "{% block content %}\n" in source
    text_template.write_text(
        source.replace("{% block content %}\n", "{% block content %}\n" + MARKER + "\n", 1),
        "utf-8",
    )
    settings = settings_of(project)
    with App(settings) as app:
        preview = sends.plan(app, MONTH)
    assert preview.outstanding == len(RECIPIENTS)

    host = tmp_path / "worker-host"
    host.mkdir()
    config = host / "newsletter.toml"
    config.write_text(
        (project / "newsletter.toml").read_text("utf-8")
        + f'issues_dir = "{project / "issues"}"\n'
        + f'templates_dir = "{project / "templates"}"\n'
    )
    # Nothing the worker could read besides the store: the folders are gone.
    (project / "issues").rename(project / "issues.away")
    (project / "templates").rename(project / "templates.away")
    assert sorted(p.name for p in host.iterdir()) == ["newsletter.toml"]

    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env["NEWSLETTER_CONFIG"] = str(config)
    proc = subprocess.run(
        [sys.executable, "-m", "newsletter", "worker", "--once"],
        cwd=host,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr

    got = received(smtp_server)
    assert set(got) == set(RECIPIENTS)
    for addr, expected in RECIPIENTS.items():
        assert len(got[addr]) == 1, addr
        [msg] = got[addr]
        assert summaries_in(msg) == expected, addr
        assert MARKER in text_of(msg), addr
    assert status_of(settings).status == "done"


# --- c. an edited file changes nothing in a planned send ---------------------------------


def test_editing_the_issue_after_planning_changes_nothing_until_replanned(
    project, smtp_server
) -> None:
    settings = settings_of(project)
    with App(settings) as app:
        sends.plan(app, MONTH)
    assert run_worker(settings, limit=2).report.sent == 2
    edit_title(project, TITLES["s2"], NEW_S2)

    assert run_worker(settings, limit=2).report.sent == 2
    # One recipient is still to send: the dry run says the file changed and what to do.
    dry = cli_run(project, "send", MONTH, "--dry-run")
    assert dry.exit_code == 0, dry.output
    said = flat(dry.output)
    assert "issue file changed" in said
    assert f"newsletter send {MONTH} --replan" in said
    assert len(smtp_server.messages) == 4  # a dry run sends nothing

    assert run_worker(settings).report.sent == 1
    got = received(smtp_server)
    assert set(got) == set(RECIPIENTS)
    for addr, expected in RECIPIENTS.items():
        assert len(got[addr]) == 1, addr
        [msg] = got[addr]
        assert summaries_in(msg) == expected, addr
        assert mentions(msg, TITLES["s2"]), addr  # as a heading or in "Also in this issue"
        assert not mentions(msg, NEW_S2), addr
    assert status_of(settings).status == "done"


# --- d. --replan re-plans only the rows not sent yet -------------------------------------


def test_replan_sends_the_edited_file_to_everyone_not_sent_to_yet(project, smtp_server) -> None:
    settings = settings_of(project)
    with App(settings) as app:
        sends.plan(app, MONTH)
    assert run_worker(settings, limit=2).report.sent == 2
    early = set(received(smtp_server))
    assert len(early) == 2
    edit_title(project, TITLES["s2"], NEW_S2)

    out = cli_run(project, "send", MONTH, "--replan", "--yes")
    assert out.exit_code == 0, out.output
    got = received(smtp_server)
    assert set(got) == set(RECIPIENTS)
    for addr, expected in RECIPIENTS.items():
        assert len(got[addr]) == 1, f"{addr} got {len(got[addr])} messages"
        [msg] = got[addr]
        if addr in early:
            assert summaries_in(msg, TITLES) == expected, addr
            assert not mentions(msg, NEW_S2), addr
        else:
            assert summaries_in(msg, NEW_TITLES) == expected, addr
            assert mentions(msg, NEW_S2), addr
            assert not mentions(msg, TITLES["s2"]), addr
    status = status_of(settings)
    assert status.status == "done"
    assert status.counts == {"sent": 5, "skipped": 1}
    assert rows_of(settings)["nomatch@example.org"].skip_reason == SKIP_NO_MATCH

    # A finished send has nothing left to re-plan: a clear error, not a traceback.
    with App(settings) as app, pytest.raises(NewsletterError) as info:
        sends.plan(app, MONTH, replan=True)
    assert MONTH in info.value.message and "done" in info.value.message
    refused = cli_run(project, "send", MONTH, "--replan", "--yes")
    assert refused.exit_code == 1, refused.output
    assert isinstance(refused.exception, SystemExit)
    assert "Traceback" not in refused.output
    assert MONTH in refused.output
    assert len(smtp_server.messages) == len(RECIPIENTS)
    assert status_of(settings).status == "done"


# --- e. people who join later get the send's own policy ----------------------------------


def test_people_who_join_a_planned_send_get_its_policy_not_the_current_setting(
    project, smtp_server
) -> None:
    settings = settings_of(project)
    assert settings.no_match_policy == "skip"
    with App(settings) as app:
        sends.plan(app, MONTH)

    teaser = dataclasses.replace(settings, no_match_policy="teaser")
    with App(teaser) as app:
        subscribers.add_subscriber(app, "late-nomatch@example.org", topics="Attachment")
        subscribers.add_subscriber(app, "late-training@example.org", topics="Training")
        preview = sends.plan(app, MONTH)
    assert preview.skipped == {SKIP_NO_MATCH: 2}
    rows = rows_of(settings)
    late = rows["late-nomatch@example.org"]
    assert (late.status, late.skip_reason) == ("skipped", SKIP_NO_MATCH)
    assert rows["late-training@example.org"].status == "pending"

    # The same through the command line with the setting changed for the run: the send
    # goes out as planned, and nobody gets a teaser.
    out = cli_run(project, "--set", "no_match_policy=teaser", "send", MONTH, "--yes")
    assert out.exit_code == 0, out.output
    got = received(smtp_server)
    assert set(got) == set(RECIPIENTS) | {"late-training@example.org"}
    assert summaries_in(got["late-training@example.org"][0]) == {"s2"}
    late = rows_of(settings)["late-nomatch@example.org"]
    assert (late.status, late.skip_reason) == ("skipped", SKIP_NO_MATCH)
    assert status_of(settings).status == "done"
