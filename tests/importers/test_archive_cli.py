"""``newsletter issue import-archive`` through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

from newsletter.content.parser import read_issue_file


def check_all(folder: Path) -> list[Path]:
    """Every file of the folder parses with no errors and is marked published."""
    files = sorted(folder.glob("*.md"))
    for f in files:
        result = read_issue_file(f)
        assert result.errors == [], [p.format() for p in result.errors]
        assert result.issue.status == "published"
    return files


def test_help_has_an_example(run_import) -> None:
    result = run_import("--help")
    assert result.exit_code == 0
    assert "Example:" in result.output


def test_import_writes_one_valid_file_per_month(run_import, pages: Path) -> None:
    result = run_import(pages / "basic.txt", pages / "no_blank_lines.txt", "--into", "out")
    assert result.exit_code == 0, result.output
    files = check_all(Path("out"))
    assert [f.name for f in files] == ["2023-05.md", "2023-06.md", "2024-02.md", "2024-03.md"]
    text = Path("out/2024-03.md").read_text("utf-8")
    assert (
        "## Feedback Helps Trainees Repair Ruptures\nCitation: Lee, K., & Ortiz, M. (2023)" in text
    )
    # Guessed topics and research type are written for the author to confirm.
    assert not any(line.startswith("Topics: ") for line in text.splitlines())
    topics_line = next(line for line in text.splitlines() if line.startswith("Topics-Suggested: "))
    assert "Alliance and Therapeutic Relationship" in topics_line
    # Paragraphs are separated by blank lines.
    assert (
        "noticed strains in the relationship sooner than trainees who did not see the "
        "scores.\n\nClients of the feedback group" in text
    )
    assert "summaries: 6" in result.output
    assert "files written: 4" in result.output


def test_default_folder_is_the_projects_issues_folder(run_import, project: Path, pages) -> None:
    result = run_import(pages / "contact_line.txt")
    assert result.exit_code == 0, result.output
    text = (project / "issues" / "2022-10.md").read_text("utf-8")
    assert "example.org" not in text
    assert "contact lines left out: 2" in result.output
    assert "2026-09.md" in {p.name for p in (project / "issues").iterdir()}


def test_dry_run_writes_nothing_and_shows_the_files(run_import, pages: Path) -> None:
    result = run_import("--dry-run", pages / "basic.txt", "--into", "out")
    assert result.exit_code == 0, result.output
    assert not Path("out").exists()
    assert "would write" in result.output
    assert "## Group Therapy for Late-Life Depression" in result.output
    assert "status: published" in result.output


def test_existing_files_are_kept_without_force(run_import, pages: Path) -> None:
    out = Path("out")
    out.mkdir()
    mine = out / "2024-03.md"
    mine.write_text("my own edits\n", "utf-8")
    result = run_import(pages / "basic.txt", "--into", out)
    assert result.exit_code == 0, result.output
    assert mine.read_text("utf-8") == "my own edits\n"
    assert "skipped: exists" in result.output
    assert "files skipped: 1" in result.output
    assert (out / "2024-02.md").exists()

    result = run_import(pages / "basic.txt", "--into", out, "--force")
    assert result.exit_code == 0, result.output
    assert "## Feedback Helps Trainees Repair Ruptures" in mine.read_text("utf-8")
    assert "overwritten" in result.output
    assert not list(out.glob(".*.tmp")), "temporary files are cleaned up"


def test_overlapping_pages_are_merged_with_page_topics(run_import, pages: Path) -> None:
    result = run_import(
        pages / "overlap_all.txt",
        pages / "overlap_alliance.txt",
        "--topic",
        "all",
        "--topic",
        "alliance",
        "--into",
        "out",
        "--json",
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["duplicates_merged"] == 1
    assert report["summaries"] == 4
    assert report["months"] == 2
    assert [p["topic"] for p in report["pages"]] == [None, "alliance-and-therapeutic-relationship"]
    by_title = {t["title"]: t for t in report["topics"]}
    felt = by_title["Clients’ “Felt Safety” and the Alliance — A Diary Study"]
    assert felt["page_topics"] == ["alliance-and-therapeutic-relationship"]
    assert by_title["Brief Relaxation Training Before Surgery"]["page_topics"] == []
    check_all(Path("out"))
    april = Path("out/2024-04.md").read_text("utf-8")
    assert april.count("\n## ") == 2
    assert "## Clients’ “Felt Safety” and the Alliance — A Diary Study" in april


def test_json_report_fields(run_import, pages: Path) -> None:
    result = run_import(
        pages / "no_blank_lines.txt", pages / "citation_no_year.txt", "--into", "o", "--json"
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert set(report) >= {
        "pages",
        "months",
        "summaries",
        "duplicates_merged",
        "without_citation",
        "topics",
        "files",
        "problems",
    }
    assert [p["summaries"] for p in report["pages"]] == [3, 1]
    assert sorted(w["title"] for w in report["without_citation"]) == [
        "Matching Therapy to What Clients Prefer",
        "Sleep Problems Predict Slower Progress",
    ]
    assert {f["action"] for f in report["files"]} == {"write"}
    (problem,) = report["problems"]
    assert problem["severity"] == "warning" and problem["line"] == 9
    for t in report["topics"]:
        assert t["topics"], "every summary has at least one topic"
    sleep = next(t for t in report["topics"] if t["title"].startswith("Sleep"))
    assert sleep["topics"] == ["miscellaneous"] and sleep["fallback"]
    text = Path("o/2021-01.md").read_text("utf-8")
    assert "Citation:" not in text
    assert "\n\nReyes, M., & Toth, A. Insomnia" in text


def test_unplaced_lines_are_reported_and_exit_1(run_import, pages: Path) -> None:
    result = run_import(pages / "unplaceable.txt", "--into", "out")
    assert result.exit_code == 1
    page = str(pages / "unplaceable.txt")
    assert f"{page}:8: error" in result.output.replace("\n", "")
    assert f"{page}:9: error" in result.output.replace("\n", "")
    assert f"{page}:16: error" in result.output.replace("\n", "")
    check_all(Path("out"))  # what could be placed is still written


def test_more_than_four_summaries_are_all_kept_with_a_warning(run_import, pages) -> None:
    result = run_import(pages / "five_in_month.txt", "--into", "out", "--json")
    assert result.exit_code == 0
    report = json.loads(result.output)
    (f,) = report["files"]
    assert len(f["summaries"]) == 5
    assert "Fifth Study on Sessions per Week" in f["summaries"]
    (problem,) = report["problems"]
    assert problem["severity"] == "warning"
    assert "5 summaries" in problem["message"]
    assert problem["line"] == 28
    check_all(Path("out"))


def test_topic_count_must_match_files(run_import, pages: Path) -> None:
    result = run_import(pages / "basic.txt", pages / "contact_line.txt", "--topic", "CBT")
    assert result.exit_code == 2
    assert "once per FILE" in result.output


def test_unknown_topic_is_an_error_before_anything_is_written(run_import, pages) -> None:
    result = run_import(pages / "basic.txt", "--topic", "alliances", "--into", "out")
    assert result.exit_code == 1
    assert "unknown topic 'alliances'" in result.output
    assert "hint: did you mean" in result.output
    assert not Path("out").exists()


def test_unreadable_pages_are_clear_errors(run_import, pages: Path) -> None:
    result = run_import(pages / "basic.txt", "nope.txt", "--into", "out")
    assert result.exit_code == 1
    assert "nope.txt: no such file" in result.output
    assert "Traceback" not in result.output
    assert not Path("out").exists()  # nothing written when one page cannot be read
    Path("latin.txt").write_bytes("March 2024\nCaf\xe9\n".encode("latin-1"))
    result = run_import("latin.txt", "--into", "out")
    assert result.exit_code == 1
    assert "latin.txt:2: file is not UTF-8" in result.output


def test_realistic_pages(run_import, pages: Path) -> None:
    result = run_import(
        pages / "realistic_all_topics.txt",
        pages / "realistic_alliance.txt",
        "--topic",
        "all",
        "--topic",
        "Alliance and Therapeutic Relationship",
        "--into",
        "out",
        "--json",
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["months"], report["summaries"], report["duplicates_merged"]) == (9, 14, 3)
    assert report["problems"] == []
    assert len(check_all(Path("out"))) == 9
    by_title = {t["title"]: t for t in report["topics"]}
    assert by_title["Repairing Ruptures in the Alliance"]["page_topics"] == [
        "alliance-and-therapeutic-relationship"
    ]
    assert "trauma-and-or-ptsd" in by_title["Prolonged Exposure for PTSD"]["topics"]
    assert by_title["Prolonged Exposure for PTSD"]["research"] == "meta-analysis"
    assert "personality-disorders" in by_title["Dialectical Behavior Therapy (DBT)"]["topics"]


def test_written_files_pass_issue_check(run_import, pages: Path) -> None:
    from click.testing import CliRunner

    from newsletter.cli import cli

    result = run_import(pages / "realistic_all_topics.txt", "--into", "issues")
    assert result.exit_code == 0, result.output
    checked = CliRunner().invoke(cli, ["issue", "check", *map(str, Path("issues").glob("*.md"))])
    assert checked.exit_code == 0, checked.output
    assert "6 files checked: 0 errors" in checked.output
