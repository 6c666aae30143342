"""The preview and variants commands, and the preview server."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from newsletter.cli import cli


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.mark.parametrize("command", ["preview", "variants"])
def test_help_has_an_example(command):
    result = run("issue", command, "--help")
    assert result.exit_code == 0 and "Example:" in result.output


def test_preview_writes_html_and_text(project):
    result = run("issue", "preview", "2026-10", "--topics", "Empathy; Training", "--text")
    assert result.exit_code == 0, result.output
    html = (project / "preview" / "2026-10-s1+s2.html").read_text()
    text = (project / "preview" / "2026-10-s1+s2.txt").read_text()
    assert "Therapist Empathy and Client Outcome</h2>" in html
    assert "CBT Across Many Conditions" in html  # only under "Also in this issue"
    assert "Your topics: Empathy; Training." in html
    assert "Dear Alex," in text and text in result.output


def test_preview_default_is_the_full_issue_in_a_chosen_folder(project, tmp_path):
    result = run("issue", "preview", "2026-09", "--out", str(tmp_path / "p"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "p" / "2026-09-all.html").exists()


def test_preview_as_a_subscriber_from_the_store(project, tmp_path):
    result = run("issue", "preview", "2026-10", "--subscriber", "a@example.org")
    assert result.exit_code == 1
    assert "a@example.org" in result.output and "Traceback" not in result.output
    added = run("subscribers", "add", "a@example.org", "--name", "Kim Lee", "--topics", "Empathy")
    assert added.exit_code == 0, added.output
    result = run(
        "issue", "preview", "2026-10", "--subscriber", "a@example.org", "--out", str(tmp_path)
    )
    assert result.exit_code == 0, result.output
    [html] = tmp_path.glob("*.html")
    text = html.read_text()
    assert "Dear Kim," in text and "Your topics: Empathy." in text
    assert "Therapist Empathy and Client Outcome</h2>" in text
    assert "Repairing Ruptures in the Alliance Pays Off</h2>" not in text


def test_variants_count_the_subscribers_of_each(project):
    for addr, topics in [("a@x.org", "Empathy"), ("b@x.org", "Empathy"), ("c@x.org", "Training")]:
        assert run("subscribers", "add", addr, "--topics", topics).exit_code == 0
    result = run("issue", "variants", "2026-10", "--json")
    assert result.exit_code == 0, result.output
    counts = {v["name"]: v["subscribers"] for v in json.loads(result.output)}
    assert counts["s1"] == 2 and counts["s2"] == 1 and counts["all"] == 0


def test_preview_unknown_topic_suggests(project):
    result = run("issue", "preview", "2026-10", "--topics", "Empathie")
    assert result.exit_code == 1 and "unknown topic" in result.output and "Empathy" in result.output


def test_preview_of_invalid_issue_gives_path_and_line(project):
    path = project / "issues" / "2026-10.md"
    path.write_text(path.read_text().replace("Topics: Empathy;", "Topics: Nonsense Topic;"))
    line = (
        path.read_text()
        .splitlines()
        .index("Topics: Nonsense Topic; Therapist Factors; Common Factors")
        + 1
    )
    result = run("issue", "preview", "2026-10")
    assert result.exit_code == 1
    assert f"{path}:{line}: error: unknown topic 'Nonsense Topic'" in result.output
    assert "Traceback" not in result.output


def test_variants_json(project):
    result = run("issue", "variants", "2026-10", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["name"] for r in rows] == ["all", "s1+s2", "s1+s3", "s2+s3", "s1", "s2", "s3"]
    assert all(0 < r["html_kb"] < 102 and not r["clipped_by_gmail"] for r in rows)


def test_variants_table(project):
    result = run("issue", "variants", "2026-11")
    assert result.exit_code == 0 and "HTML KB" in result.output and "s1+s3" in result.output


def test_png_without_chromium_is_a_clear_error(project, monkeypatch):
    import newsletter.browser as browser

    monkeypatch.setattr(browser, "CHROMIUM", str(project / "no-chromium-here"))
    result = run("issue", "preview", "2026-10", "--png")
    assert result.exit_code == 1
    assert "headless Chromium is not installed" in result.output
    assert "apt-get install -y chromium" in result.output
