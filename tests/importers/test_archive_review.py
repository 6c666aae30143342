"""Reviewing what the import guessed: ``Topics-Suggested:`` lines, ``issue check``,
``issue accept-suggestions`` and the evidence in the import report."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

from newsletter.content.parser import read_issue_file


def newsletter(*args: str | Path) -> Result:
    from newsletter.cli import cli

    return CliRunner().invoke(cli, list(map(str, args)))


def imported(run_import, pages: Path) -> Path:
    """The realistic pages imported into ./issues (the alliance page filtered by topic)."""
    result = run_import(
        pages / "realistic_all_topics.txt",
        pages / "realistic_alliance.txt",
        "--topic",
        "all",
        "--topic",
        "alliance",
        "--into",
        "issues",
    )
    assert result.exit_code == 0, result.output
    return Path("issues")


def test_guesses_are_written_as_suggestions_and_checked(run_import, pages: Path) -> None:
    folder = imported(run_import, pages)
    text = (folder / "2018-11.md").read_text("utf-8")
    # The page's topic filter is certain; the keyword guesses are suggestions.
    assert (
        "## Repairing Ruptures in the Alliance\n"
        "Citation: Safran, J. D., Muran, J. C., & Eubanks-Carter, C. (2011)."
    ) in text
    assert (
        "Topics: Alliance and Therapeutic Relationship\nResearch-Suggested: narrative-review\n"
        in text
    )
    assert ("## Dialectical Behavior Therapy (DBT)\nCitation: Linehan") in text
    assert "Topics-Suggested: Personality Disorders; Suicide and Crisis Intervention\n" in text
    assert "Research-Suggested: randomized-controlled-trial\n" in text

    checked = newsletter("issue", "check", folder / "2018-11.md")
    assert checked.exit_code == 0, checked.output
    lines = checked.output.splitlines()
    line = (
        text.splitlines().index(
            "Topics-Suggested: Personality Disorders; Suicide and Crisis Intervention"
        )
        + 1
    )
    assert (
        f"issues/2018-11.md:{line}: warning: topics suggested by the archive import, not "
        "confirmed: Personality Disorders; Suicide and Crisis Intervention"
    ) in lines
    hint = lines[
        lines.index(next(x for x in lines if x.startswith(f"issues/2018-11.md:{line}:"))) + 1
    ]
    assert "rename 'Topics-Suggested:' to 'Topics:'" in hint
    assert "1 file checked: 0 errors, 3 warnings" in checked.output
    assert newsletter("issue", "check", "--strict", folder / "2018-11.md").exit_code == 1


def test_issue_show_tells_guesses_from_confirmed_topics(run_import, pages: Path) -> None:
    folder = imported(run_import, pages)
    shown = newsletter("issue", "show", folder / "2018-06.md")
    assert shown.exit_code == 0, shown.output
    flat = " ".join(shown.output.replace("│", " ").split())
    assert "Topics: Alliance and Therapeutic Relationship" in flat
    assert "Topics-Suggested: Transference and Countertransference; Self-Reflection and" in flat
    assert "Research-Suggested: Narrative review (not confirmed)" in flat
    data = json.loads(newsletter("issue", "show", folder / "2018-06.md", "--json").output)
    (summary,) = data["summaries"]
    assert summary["suggested_topics"] == [
        "transference-and-countertransference",
        "self-reflection-and-awareness",
    ]
    assert summary["research_suggested"] is True


def test_accept_suggestions_renames_and_merges_the_lines(run_import, pages: Path) -> None:
    folder = imported(run_import, pages)
    path = folder / "2018-11.md"
    before = read_issue_file(path).issue
    result = newsletter("issue", "accept-suggestions", path)
    assert result.exit_code == 0, result.output
    assert "issues/2018-11.md: accepted 3 suggestions in 2 summaries" in result.output
    text = path.read_text("utf-8")
    assert "Suggested" not in text
    assert "Topics: Personality Disorders; Suicide and Crisis Intervention\n" in text
    assert "Research: randomized-controlled-trial\n" in text
    after = read_issue_file(path)
    assert after.problems == []
    assert [s.topics for s in after.issue.summaries] == [s.topics for s in before.summaries]
    assert [s.research for s in after.issue.summaries] == [s.research for s in before.summaries]
    again = newsletter("issue", "accept-suggestions", path)
    assert again.exit_code == 0 and "nothing to accept" in again.output


def test_accept_merges_into_the_authors_lines(tmp_path: Path) -> None:
    from newsletter.content.files import accept_suggestions

    path = tmp_path / "2019-02.md"
    path.write_bytes(
        b"---\r\nmonth: 2019-02\r\nstatus: published\r\n---\r\n\r\n## A Study\r\n"
        b"Topics: Alliance; Empathy\r\nTopics-Suggested: empathy; Training\r\n"
        b"Research: survey\r\nResearch-Suggested: meta-analysis\r\n\r\nText.\r\n\r\n"
        b"### Practice Implications\r\n\r\nDo.\r\n"
    )
    done = accept_suggestions(path)
    assert (done.summaries, done.lines) == (1, 2)
    assert path.read_bytes() == (
        b"---\r\nmonth: 2019-02\r\nstatus: published\r\n---\r\n\r\n## A Study\r\n"
        b"Topics: Alliance; Empathy; Training\r\n"
        b"Research: survey\r\n\r\nText.\r\n\r\n"
        b"### Practice Implications\r\n\r\nDo.\r\n"
    )


def test_accept_all_and_a_broken_file_is_left_alone(run_import, pages: Path) -> None:
    folder = imported(run_import, pages)
    broken = folder / "2018-10.md"
    text = broken.read_text("utf-8")
    broken.write_text(
        text.replace("Topics-Suggested: Trauma", "Topics-Suggested: Traumaa"), "utf-8"
    )
    result = newsletter("issue", "accept-suggestions", "--all")
    assert result.exit_code == 1
    assert "2018-10.md:8: error: unknown topic 'Traumaa and/or PTSD'" in result.output
    assert "Traceback" not in result.output
    assert "Traumaa" in broken.read_text("utf-8")
    assert "Topics-Suggested" in (folder / "2018-09.md").read_text("utf-8")  # none written
    broken.write_text(text, "utf-8")
    result = newsletter("issue", "accept-suggestions", "--all")
    assert result.exit_code == 0, result.output
    assert "9 files changed" in result.output
    checked = newsletter("issue", "check", *sorted(folder.glob("*.md")))
    assert checked.exit_code == 0
    assert "9 files checked: 0 errors, 0 warnings" in checked.output
    assert newsletter("issue", "accept-suggestions").exit_code == 2


def test_the_report_shows_the_evidence_of_each_suggestion(run_import, pages: Path) -> None:
    result = run_import(pages / "topic_evidence.txt", "--into", "out", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    by_title = {t["title"]: t for t in report["topics"]}
    helpers = by_title["Helping the Helpers: Vicarious Trauma Among Community Therapists"]
    (guess,) = helpers["suggested"]
    assert guess["topic"] == "therapist-factors"
    assert guess["score"] >= 3
    assert {"phrase": "vicarious trauma", "field": "title", "count": 1, "points": 6.0} in guess[
        "evidence"
    ]
    chapter = by_title["Control Groups in Psychotherapy Trials: What Do They Tell Us?"]
    assert chapter["research"] == "narrative-review"
    assert chapter["research_evidence"]["evidence"][0]["phrase"] == "book chapter"

    text = run_import(pages / "topic_evidence.txt", "--into", "out", "--dry-run")
    assert text.exit_code == 0, text.output
    flat = " ".join(text.output.split())
    assert 'Therapist Factors ← "vicarious trauma" (title)' in flat
    assert 'research type: Narrative review ← "book chapter" (citation)' in flat
