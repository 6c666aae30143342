"""``newsletter subscribers``, ``newsletter db`` and ``topics list`` through click's runner."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from newsletter.cli import cli

REPO = Path(__file__).resolve().parents[2]


def run(*args: str, input: str | None = None, code: int = 0):
    result = CliRunner().invoke(cli, list(args), input=input)
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result


def test_every_command_has_help_with_an_example() -> None:
    from newsletter.cli import db, subscribers

    for group in (subscribers.subscribers, db.db):
        assert "Example:" in (group.help or "")
        for name, command in group.commands.items():
            assert isinstance(command, click.Command)
            assert "Example:" in (command.help or ""), name
            run(group.name or "", name, "--help")


def test_add_list_show_and_change(store_url) -> None:
    run("subscribers", "add", "Ann@Example.org", "--name", "Ann", "--topics", "CBT; Alliance")
    run("subscribers", "add", "bo@example.org", "--all-topics", "--pending")
    out = run("subscribers", "add", "ann@example.org", code=1).output
    assert "already in the store" in out and "hint:" in out

    data = json.loads(run("subscribers", "list", "--json", "--topic", "cbt").output)
    assert data["total"] == 2 and [i["email"] for i in data["items"]] == [
        "ann@example.org",
        "bo@example.org",
    ]
    listed = run("subscribers", "list", "--status", "pending").output
    assert "bo@example.org" in listed and "ann@" not in listed

    run("subscribers", "set-topics", "ann@example.org", "Attachment")
    run("subscribers", "add-topics", "ann@example.org", "Empathy")
    run("subscribers", "remove-topics", "ann@example.org", "attachment")
    run("subscribers", "pause", "ann@example.org", "--until", "2099-01-31")
    shown = json.loads(run("subscribers", "show", "ann@example.org", "--json").output)
    assert shown["topics"] == ["empathy"] and shown["paused_until"] == "2099-01-31"
    assert [e["event"] for e in shown["consent_log"]] == [
        "subscribed",
        "topics_changed",
        "topics_changed",
        "topics_changed",
        "paused",
    ]
    assert "Consent history" in run("subscribers", "show", "ann@example.org").output
    run("subscribers", "resume", "ann@example.org")
    assert "unsubscribed" in run("subscribers", "unsubscribe", "ann@example.org").output
    assert "already" in run("subscribers", "unsubscribe", "ann@example.org").output


def test_user_mistakes_exit_1_with_a_hint(store_url) -> None:
    for args in (
        ("subscribers", "show", "nobody@example.org"),
        ("subscribers", "pause", "nobody@example.org"),
        ("subscribers", "add", "not-an-address"),
        ("subscribers", "add", "a@example.org", "--topics", "Nonsense"),
        ("subscribers", "list", "--topic", "Nonsense"),
    ):
        out = run(*args, code=1).output
        assert out.startswith("Error: ") and "hint:" in out, args
    assert (
        "not both"
        in run(
            "subscribers", "add", "a@example.org", "--topics", "CBT", "--all-topics", code=2
        ).output
    )
    data = json.loads(run("subscribers", "list", "--json").output)
    assert data["total"] == 0


def test_rename_and_change_email_are_logged(store_url) -> None:
    run("subscribers", "add", "ann@example.org", "--name", "Ann", "--topics", "CBT")
    assert (
        "Ann Lee" in run("subscribers", "rename", "ann@example.org", "--name", " Ann  Lee ").output
    )
    run("subscribers", "rename", "ann@example.org", "--name", "Ann\x1bLee", code=1)
    out = run("subscribers", "change-email", "ANN@example.org", "Ann.Lee@Example.NET").output
    assert "ANN@example.org: address changed to ann.lee@example.net" in out
    run("subscribers", "show", "ann@example.org", code=1)
    shown = json.loads(run("subscribers", "show", "ann.lee@example.net", "--json").output)
    assert shown["name"] == "Ann Lee" and len(shown["topics"]) == 1
    log = [(e["event"], e["detail"]) for e in shown["consent_log"]]
    assert log[1:] == [
        ("renamed", "'Ann' -> 'Ann Lee'"),
        ("email_changed", "ann@example.org -> ann.lee@example.net"),
    ]


def test_change_email_refuses_an_address_in_use_or_suppressed(store_url) -> None:
    run("subscribers", "add", "ann@example.org")
    run("subscribers", "add", "bo@example.org")
    out = run("subscribers", "change-email", "ann@example.org", "BO@example.org", code=1).output
    assert "bo@example.org is already in the store (active)" in out and "hint:" in out
    run("subscribers", "add", "gone@example.org")
    run("subscribers", "erase", "gone@example.org", "--yes")
    out = run("subscribers", "change-email", "ann@example.org", "gone@example.org", code=1).output
    assert "suppression list" in out and "hint:" in out
    out = run("subscribers", "change-email", "ann@example.org", "not an address", code=1).output
    assert "hint:" in out
    shown = json.loads(run("subscribers", "show", "ann@example.org", "--json").output)
    assert [e["event"] for e in shown["consent_log"]] == ["subscribed"]


def test_removing_a_topic_the_person_does_not_have_says_so(store_url) -> None:
    run("subscribers", "add", "ann@example.org", "--topics", "CBT; Empathy")
    out = run("subscribers", "remove-topics", "ann@example.org", "Training; Empathy", code=1)
    assert "does not have the topic Training; nothing changed" in out.output
    assert "hint: their topics: " in out.output
    shown = json.loads(run("subscribers", "show", "ann@example.org", "--json").output)
    assert len(shown["topics"]) == 2


def test_erase_asks_unless_yes(store_url) -> None:
    run("subscribers", "add", "ann@example.org")
    run("subscribers", "erase", "ann@example.org", input="n\n", code=1)
    run("subscribers", "show", "ann@example.org")
    run("subscribers", "erase", "ann@example.org", "--yes")
    run("subscribers", "show", "ann@example.org", code=1)
    out = run("subscribers", "add", "ann@example.org", code=1).output
    assert "suppression list" in out and "--resubscribe" in out


def test_import_export_stats(store_url, tmp_path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("email,name,topics\na@example.org,=cmd,CBT\nb@example.org,B,Alliens\n", "utf-8")
    out = run("subscribers", "import", str(src), "--atomic", code=1).output
    assert "nothing imported" in out and "Alliens" in out
    out = run("subscribers", "import", str(src), "--dry-run", code=1).output
    assert "dry run" in out and "1 added" in out
    report = json.loads(run("subscribers", "import", str(src), "--json", code=1).output)
    assert report["added"] == 1 and report["errors"][0]["line"] == 3
    again = json.loads(run("subscribers", "import", str(src), "--json", code=1).output)
    assert again["added"] == 0 and again["unchanged"] == 1

    exported = run("subscribers", "export").output
    assert exported.splitlines()[1].startswith("a@example.org,'=cmd,active,cognitive-therapy")
    target = tmp_path / "out.csv"
    run("subscribers", "export", str(target))
    assert target.read_text("utf-8") == exported

    stats = json.loads(run("subscribers", "stats", "--json").output)
    assert stats["by_status"]["active"] == 1 and stats["all_topics"] == 0
    issue = json.loads(
        run(
            "--set",
            f"issues_dir={REPO / 'issues'}",
            "subscribers",
            "stats",
            "--issue",
            "2026-11",
            "--json",
        ).output
    )
    assert sum(issue["histogram"].values()) == 1
    assert (
        "Summaries received"
        in run(
            "--set", f"issues_dir={REPO / 'issues'}", "subscribers", "stats", "--issue", "2026-11"
        ).output
    )
    run("subscribers", "import", str(tmp_path / "missing.csv"), code=1)


def test_topics_list_counts_subscribers(store_url) -> None:
    run("subscribers", "add", "a@example.org", "--topics", "CBT")
    run("subscribers", "add", "b@example.org")
    rows = json.loads(run("topics", "list", "--json").output)
    counts = {r["slug"]: r["subscribers"] for r in rows}
    assert counts["cognitive-therapy-ct-and-cognitive-behavioural-therapy-cbt"] == 1
    assert counts["attachment"] == 0
    assert "1 more active subscriber takes every topic" in run("topics", "list").output


def test_no_store_yet(isolated_env, monkeypatch) -> None:
    rows = json.loads(run("topics", "list", "--json").output)
    assert len(rows) == 36 and "subscribers" not in rows[0]
    out = run("subscribers", "list", code=1).output
    assert "newsletter db upgrade" in out
    run("db", "current", code=1)
    assert "revision" in run("db", "upgrade").output
    assert "(newest)" in run("db", "current").output
    run("subscribers", "list")
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", "postgresql://u:pw@127.0.0.1:1/x")
    out = run("subscribers", "list", code=1).output
    assert "cannot open the database" in out and "pw" not in out


def test_init_migrates_the_store(isolated_env) -> None:
    out = run("init").output
    assert "subscriber store" in out
    assert (isolated_env / "subscribers" / "newsletter.db").exists()
    run("subscribers", "add", "a@example.org")


@pytest.mark.parametrize("flag", ["--help"])
def test_group_help(flag) -> None:
    assert "Example:" in run("subscribers", flag).output
