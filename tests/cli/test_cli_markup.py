"""Text from outside the program (names, SMTP replies, titles) is printed as it is.

The CLI prints through rich, which reads ``[...]`` as markup: a server reply or a name
holding ``[/bold]`` used to stop ``deliveries list`` with a markup error.
"""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.config import load_settings
from newsletter.services import App, subscribers
from tests.support.services import SAMPLE_MONTH

REPLY = "550 5.1.1 [/bold] no [red]such[/red] user [bold"
NAME = "[red]Ann[/bold] [/] Lee"
SUBJECT = "Digest [/bold] of [red]May"


def run(project: Path, *args: str):
    result = CliRunner().invoke(
        cli, ["-c", str(project / "newsletter.toml"), *args], env={"COLUMNS": "300"}
    )
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def test_replies_and_names_holding_markup_are_printed_as_they_are(
    send_project: Path, smtp_server
) -> None:
    settings = load_settings(send_project / "newsletter.toml", environ={})
    with App(settings) as app:
        subscribers.add_subscriber(app, "markup@example.org", name=NAME, topics="Training")
        subscribers.add_subscriber(app, "ok@example.org", name="Bo", topics="Training")
    smtp_server.rcpt_replies["markup"] = REPLY
    issue = send_project / "issues" / f"{SAMPLE_MONTH}.md"
    text = issue.read_text()
    old = next(line for line in text.splitlines() if line.startswith("subject:"))
    issue.write_text(text.replace(old, f'subject: "{SUBJECT}"'))
    for args in (("issue", "list"), ("issue", "show", SAMPLE_MONTH)):
        out = run(send_project, *args)
        assert out.exit_code == 0 and SUBJECT in out.output, out.output
    sent = run(send_project, "send", SAMPLE_MONTH, "--yes")
    assert sent.exit_code == 0 and SUBJECT in sent.output, sent.output

    listed = run(send_project, "deliveries", "list", SAMPLE_MONTH)
    assert listed.exit_code == 0, listed.output
    assert REPLY in listed.output
    failed = run(send_project, "deliveries", "list", SAMPLE_MONTH, "--status", "failed")
    assert REPLY in failed.output
    status = run(send_project, "deliveries", "status", SAMPLE_MONTH)
    assert status.exit_code == 0, status.output

    people = run(send_project, "subscribers", "list")
    assert people.exit_code == 0 and NAME in people.output
    shown = run(send_project, "subscribers", "show", "markup@example.org")
    assert shown.exit_code == 0 and NAME in shown.output and REPLY in shown.output
