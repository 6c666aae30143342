"""The CLI: exit codes, messages without tracebacks, --json, and help on every command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from newsletter.cli import cli
from tests.plugin import FIXTURES


def run(*args: str, **kw) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False, **kw)
    return result.exit_code, result.output


def all_commands(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, cmd in sorted(group.commands.items()):
        yield (*prefix, name), cmd
        if isinstance(cmd, click.Group):
            yield from all_commands(cmd, (*prefix, name))


def test_every_command_has_help_with_an_example() -> None:
    commands = list(all_commands(cli))
    assert len(commands) >= 8
    for path, cmd in commands:
        code, out = run(*path, "--help")
        assert code == 0, path
        assert cmd.help and len(cmd.help.strip()) > 20, f"{' '.join(path)} has no help"
        assert "Example:" in out and f"newsletter {' '.join(path)}" in out, (
            f"`newsletter {' '.join(path)} --help` shows no example of itself"
        )


def test_issue_check_reports_every_planted_mistake_and_exits_1() -> None:
    code, out = run("issue", "check", str(FIXTURES / "issues" / "several_mistakes.md"))
    assert code == 1
    lines = [line for line in out.splitlines() if ": error: " in line]
    assert [line.split(":")[1] for line in lines] == ["2", "8", "17", "19", "23"]
    assert "hint: did you mean 'Therapist Factors'" in out
    assert "5 errors" in out
    assert "Traceback" not in out


def test_issue_check_of_the_samples_passes(project: Path) -> None:
    code, out = run("issue", "check", "--strict")
    assert code == 0, out
    assert "3 files checked: 0 errors, 0 warnings" in out


def test_warnings_fail_only_with_strict(project: Path) -> None:
    one = project / "issues" / "2027-01.md"
    text = (FIXTURES / "issues" / "unknown_topic.md").read_text()
    one.write_text(text.replace("2026-12", "2027-01").replace("; Therapeutic Aliance", ""))
    assert run("issue", "check", "2027-01")[0] == 0
    assert run("issue", "check", "--strict", "2027-01")[0] == 1


def test_missing_issues_folder_is_a_one_line_error(isolated_env: Path) -> None:
    code, out = run("issue", "check")
    assert code == 1
    assert out.startswith("Error: no issues folder at ")
    assert "hint:" in out and "Traceback" not in out


def test_unreadable_path_is_reported_not_raised(project: Path) -> None:
    code, out = run("issue", "check", str(project / "nothing.md"))
    assert code == 1
    assert "nothing.md:0: error: no such file" in out


def test_issue_new_scaffolds_a_file_that_fails_until_filled_in(project: Path) -> None:
    from newsletter.content.parser import PLACEHOLDERS

    code, out = run("issue", "new", "2027-02")
    assert code == 0, out
    path = project / "issues" / "2027-02.md"
    assert "Topics:" in path.read_text() and "<!--" in path.read_text()
    # Untouched, the skeleton is an error on every line of example text, even when
    # marked ready, so it can never be sent as it is.
    path.write_text(path.read_text().replace("status: draft", "status: ready"))
    code, out = run("issue", "check", "2027-02")
    assert code == 1 and out.count("example text of the skeleton") == len(PLACEHOLDERS)
    assert run("send", "2027-02", "--dry-run")[0] == 1
    filled = path.read_text()
    for n, placeholder in enumerate(PLACEHOLDERS):
        filled = filled.replace(placeholder, f"Own text {n} (2026).")
    path.write_text(filled.replace("Link: Own text 2 (2026).\n", ""))
    code, out = run("issue", "check", "2027-02")
    assert code == 0, out
    path.write_text(path.read_text() + "\nmy edits\n")
    code, out = run("issue", "new", "2027-02")
    assert code == 1 and "already exists" in out
    assert path.read_text().endswith("my edits\n")
    code, out = run("issue", "new", "2027-13")
    assert code == 1 and "is not a month" in out


def test_issue_list_json(project: Path) -> None:
    code, out = run("issue", "list", "--json")
    assert code == 0
    rows = json.loads(out)
    assert [r["month"] for r in rows] == ["2026-11", "2026-10", "2026-09"]
    assert rows[0]["status"] == "ready"
    assert rows[0]["summaries"] == 3
    assert "psychodynamic-therapy-pdt" in rows[0]["topics"]
    assert rows[1]["subject"] == rows[1]["subject"][:78]


def test_issue_list_shows_invalid_files_too(project: Path) -> None:
    bad = (FIXTURES / "issues" / "several_mistakes.md").read_text()
    (project / "issues" / "2027-03.md").write_text(bad.replace("2026-13", "2027-03"))
    code, out = run("issue", "list")
    assert code == 0
    assert "2027-03" in out and "invalid" in out


def test_issue_show_prints_the_parsed_issue(project: Path) -> None:
    code, out = run("issue", "show", "2026-11")
    assert code == 0, out
    assert "November 2026" in out
    assert "Do Therapists Improve With Experience?" in out
    assert "Practice Implications" in out
    code, out = run("issue", "show", "2026-11", "--json")
    data = json.loads(out)
    assert data["summaries"][1]["research"] == "naturalistic-study"


def test_issue_show_shows_raw_html_literally_as_the_email_does(project: Path) -> None:
    path = project / "issues" / "2026-11.md"
    text = path.read_text()
    marker = "### Practice Implications"
    path.write_text(
        text.replace(marker, "A <b>bold</b> claim.\n\n<div>a block</div>\n\n" + marker, 1)
    )
    code, out = run("issue", "show", "2026-11")
    assert code == 0, out
    assert "A <b>bold</b> claim." in out and "<div>a block</div>" in out


def test_a_published_back_issue_of_one_summary_is_not_warned_about(project: Path) -> None:
    path = project / "issues" / "2026-10.md"
    text = path.read_text()
    assert "status: published" in text
    second = text.index("\n## ", text.index("\n## ") + 1)
    path.write_text(text[:second] + "\n")
    code, out = run("issue", "check", "--strict", "2026-10")
    assert code == 0 and "0 warnings" in out, out
    path.write_text(text[:second].replace("status: published", "status: draft") + "\n")
    code, out = run("issue", "check", "2026-10")
    assert "1 summary; issues usually have 2 or 3" in out


@pytest.mark.parametrize(
    "command",
    [("issue", "check"), ("issue", "show"), ("issue", "preview"), ("send", "--dry-run")],
)
def test_a_yaml_mistake_gives_the_quoting_hint_in_every_command(
    project: Path, command: tuple[str, ...]
) -> None:
    path = project / "issues" / "2026-11.md"
    text = path.read_text()
    path.write_text(text.replace("---\n", "---\nsubject: Ruptures: what now\n", 1))
    code, out = run(command[0], command[1], "2026-11", *command[2:])
    assert code == 1
    assert "not valid YAML" in out
    assert "values containing ': ' or starting with a quote must be quoted as a whole" in out


def test_issue_show_of_a_missing_month_says_how_to_create_it(project: Path) -> None:
    code, out = run("issue", "show", "2030-01")
    assert code == 1
    assert "no issue file" in out and "newsletter issue new 2030-01" in out


def test_topics_list_json_has_36_topics() -> None:
    code, out = run("topics", "list", "--json")
    assert code == 0
    rows = json.loads(out)
    assert len(rows) == 36
    assert {k: rows[0][k] for k in ("slug", "name", "published")} == {
        "slug": "adherence",
        "name": "Adherence",
        "published": "Adherance",
    }


def test_init_writes_config_and_never_overwrites(isolated_env: Path) -> None:
    code, out = run("init", "--sender-address", "news@example.org", "--timezone", "Europe/Oslo")
    assert code == 0, out
    text = (isolated_env / "newsletter.toml").read_text()
    assert 'sender_address = "news@example.org"' in text
    assert 'timezone = "Europe/Oslo"' in text
    assert (isolated_env / "issues").is_dir() and (isolated_env / "subscribers").is_dir()
    code, out = run("init")
    assert code == 1 and "already exists" in out and "--force" in out
    assert (isolated_env / "newsletter.toml").read_text() == text
    assert run("init", "--force")[0] == 0
    assert (isolated_env / "newsletter.toml").read_text() != text


def test_init_asks_in_a_terminal_and_checks_each_answer(isolated_env: Path) -> None:
    answers = [
        "Clinic Research Digest",  # the newsletter's name
        "",  # sender name: the name, kept
        "not an address",  # refused, asked again
        "editor@clinic-research-digest.example.org",
        "",  # postal address: needed, asked again
        "2 Clinic Road, Toronto",
        "",  # base URL: the default
        "Mars/Olympus",  # refused, asked again
        "America/Toronto",
    ]
    code, out = run("init", "--prompt", input="\n".join(answers) + "\n", env={"COLUMNS": "80"})
    assert code == 0, out
    assert out.count("Address it is sent from") == 2 and out.count("Time zone") == 2
    assert "is not a known time zone" in out
    text = (isolated_env / "newsletter.toml").read_text()
    for line in (
        'newsletter_name = "Clinic Research Digest"',
        'sender_name = "Clinic Research Digest"',
        'sender_address = "editor@clinic-research-digest.example.org"',
        'postal_address = "2 Clinic Road, Toronto"',
        'base_url = "http://127.0.0.1:8000"',
        'timezone = "America/Toronto"',
    ):
        assert line in text
    # The next three commands, each whole on one line (never hard-wrapped) to copy.
    tail = out[out.index("Next:") :].splitlines()[1:]
    assert [line.split()[:3] for line in tail] == [
        ["newsletter", "issue", "new"],
        ["newsletter", "issue", "preview"],
        ["newsletter", "send-test", tail[0].split()[3]],
    ]
    assert tail[2].endswith("--to editor@clinic-research-digest.example.org")


def test_init_asks_nothing_when_not_in_a_terminal(isolated_env: Path) -> None:
    code, out = run("init", "--sender-address", "news@example.org")
    assert code == 0, out
    assert "Name of the newsletter" not in out
    assert "still to set in newsletter.toml: postal_address" in out
    assert "newsletter issue new " in out


def test_the_newsletter_name_is_one_setting_everywhere(isolated_env: Path) -> None:
    import email
    import shutil

    from tests.plugin import SAMPLE_ISSUES

    code, out = run(
        "init",
        "--newsletter-name",
        "Clinic Research Digest",
        "--sender-name",
        "Clinic Research Network",
        "--sender-address",
        "digest@example.org",
        "--postal-address",
        "2 Clinic Road, Toronto",
    )
    assert code == 0, out
    shutil.rmtree(isolated_env / "issues")
    shutil.copytree(SAMPLE_ISSUES, isolated_env / "issues")
    code, out = run("send-test", "2026-11", "--to", "me@example.org")
    assert code == 0, out
    [eml] = (isolated_env / "outbox").glob("*.eml")
    msg = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert msg["From"].addresses[0].display_name == "Clinic Research Digest"
    assert msg["List-Id"] == '"Clinic Research Digest" <clinic-research-digest.example.org>'
    html = msg.get_body(("html",)).get_content()
    text = msg.get_body(("plain",)).get_content()
    assert ">Clinic Research Digest</div>" in html  # the header
    assert "subscribed to Clinic Research Digest" in html  # the footer
    assert "CLINIC RESEARCH DIGEST" in text and "subscribed to Clinic Research Digest" in text
    assert "Psychotherapy Research Digest" not in html + text + str(msg["From"])


def test_init_rejects_an_unknown_timezone(isolated_env: Path) -> None:
    code, out = run("init", "--timezone", "Mars/Olympus")
    assert code == 1 and "timezone (NEWSLETTER_TIMEZONE) = 'Mars/Olympus'" in out
    assert "is not a known time zone" in out
    assert not (isolated_env / "newsletter.toml").exists()


def test_bad_config_is_a_clear_error_not_a_traceback(project: Path) -> None:
    (project / "newsletter.toml").write_text("issues_dir = [\n")
    code, out = run("issue", "list")
    assert code == 1 and "not valid TOML" in out and "Traceback" not in out


def test_set_flag_overrides_settings(project: Path, tmp_path: Path) -> None:
    other = tmp_path / "other-issues"
    other.mkdir()
    code, out = run("--set", f"issues_dir={other}", "issue", "list", "--json")
    assert code == 0 and json.loads(out) == []
    code, out = run("--set", "nonsense", "issue", "list")
    assert code == 2 and "NAME=VALUE" in out


def test_demo_sets_up_and_checks_the_samples(isolated_env: Path) -> None:
    code, out = run("demo", "trial")
    assert code == 0, out
    assert (isolated_env / "trial" / "newsletter.toml").exists()
    assert "checked 3 issue files: 0 errors" in out
    assert run("demo", "trial")[0] == 0  # safe to run again


def test_python_dash_m_and_fast_help_import_no_heavy_libraries() -> None:
    code = (
        "import sys, runpy; sys.argv=['newsletter','--help'];\n"
        "try: runpy.run_module('newsletter', run_name='__main__')\n"
        "except SystemExit: pass\n"
        "heavy = [m for m in ('sqlalchemy','jinja2','mjml','yaml','markdown_it','rich',"
        "'apscheduler','flask') if m in sys.modules]\n"
        "print('HEAVY', heavy)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout
    assert "Usage: newsletter" in out
    assert "HEAVY []" in out


@pytest.mark.parametrize("args", [["issue", "show"], ["issue", "nope"], ["--bogus"]])
def test_usage_errors_exit_2(args: list[str]) -> None:
    assert run(*args)[0] == 2


def test_readme_documents_every_setting() -> None:
    from newsletter.config import ENV_NAMES
    from tests.plugin import REPO

    readme = (REPO / "README.md").read_text()
    for name, env in ENV_NAMES.items():
        assert f"`{name}`" in readme and f"`{env}`" in readme, name
