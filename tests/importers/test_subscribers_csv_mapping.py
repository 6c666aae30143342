"""The CSV import reads the export files of the tools people move from.

``exports/`` holds one file per tool, with the header row of that tool's documented
export and a few rows of our own making. Each is imported through the real command; the
people come out with their names, topics (from tags that are topics) and statuses, and a
row its tool marks as gone is never an active subscriber. The mapping is decided before
any row reaches the store, so these run on SQLite (the store's import path is tested on
both databases in test_subscribers_csv.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.content.taxonomy import resolve_topics
from newsletter.services import App
from newsletter.services.subscribers import get_subscriber, list_subscribers

pytestmark = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)

EXPORTS = Path(__file__).resolve().parent / "exports"
ALL = None  # every topic

# file -> {address: (name, status, topic names or ALL)}
EXPECTED: dict[str, dict[str, tuple[str, str, list[str] | None]]] = {
    "mailchimp_subscribed.csv": {
        "ann.lee@example.org": ("Ann Lee", "active", ["CBT"]),
        "bo@example.org": ("Bo", "active", ["Attendance, Attrition, and Drop-Out"]),
        "cy@example.org": ("", "active", ALL),
    },
    "mailchimp_unsubscribed.csv": {"gone@example.org": ("Gone Away", "unsubscribed", ALL)},
    "mailchimp_cleaned.csv": {"dead@example.org": ("Dee Ad", "bounced", ALL)},
    "listmonk.csv": {
        "lena@example.org": ("Lena Mohr", "active", ALL),
        "blocked@example.org": ("Blocked One", "unsubscribed", ALL),
    },
    "substack.csv": {
        "sub.one@example.org": ("", "active", ALL),
        "sub.two@example.org": ("", "unsubscribed", ALL),
    },
    "buttondown.csv": {
        "reader@example.org": ("", "active", ["Training"]),
        "unsub@example.org": ("", "unsubscribed", ALL),
        "nobox@example.org": ("", "bounced", ALL),
    },
    "mailman3.csv": {"mm.one@example.org": ("Mia Member", "active", ALL)},
    # Tools without a table of their own: the common names carry them.
    "ghost.csv": {
        "ghost.one@example.org": ("Gail Host", "active", ["CBT"]),
        "ghost.two@example.org": ("Gus Tee", "unsubscribed", ALL),
    },
    "kit.csv": {
        "kim@example.org": ("Kim", "active", ["Training"]),
        "kai@example.org": ("Kai", "unsubscribed", ALL),
        "ken@example.org": ("Ken", "bounced", ALL),
    },
}
IGNORED = {
    "mailchimp_subscribed.csv": "MEMBER_RATING, OPTIN_IP",
    "listmonk.csv": "uuid, attributes, updated_at",
    "substack.csv": "active_subscription, expiry, plan",
    "buttondown.csv": "id, notes, metadata, secondary_id, referrer_url",
    "mailman3.csv": "role, delivery_mode",
}


def run(*args: str | Path) -> object:
    return CliRunner().invoke(cli, ["subscribers", "import", *map(str, args)])


def _topics(view: object) -> list[str] | None:
    return None if view.all_topics else sorted(view.topics)  # type: ignore[attr-defined]


@pytest.fixture
def app(store_app: App) -> App:
    return store_app


@pytest.mark.parametrize("export", sorted(EXPECTED))
def test_each_tools_export_is_imported(app: App, export: str) -> None:
    result = run(EXPORTS / export, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["errors"] == [] and report["added"] == len(EXPECTED[export])
    for address, (name, status, topics) in EXPECTED[export].items():
        view = get_subscriber(app, address)
        slugs = None if topics is None else sorted(resolve_topics(topics))
        assert (view.name, view.status, _topics(view)) == (name, status, slugs), address
    assert {m["field"] for m in report["mapping"]} >= {"email"}
    if export in IGNORED:
        for column in IGNORED[export].split(", "):
            assert column in report["ignored_columns"]


def test_the_mapping_and_the_ignored_columns_are_printed_once(app: App) -> None:
    result = run(EXPORTS / "mailchimp_subscribed.csv")
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "Email Address → email" in out and "First Name → first_name" in out
    assert "TAGS → tags" in out and "OPTIN_TIME → created_at" in out
    assert out.count("ignored columns: ") == 1
    assert "MEMBER_RATING" in out and "LEID" in out and "EUID" in out
    assert "tags that are not topics, left out: VIP (1)" in out


def test_dates_come_from_the_tools_time_columns(app: App) -> None:
    assert run(EXPORTS / "mailchimp_subscribed.csv").exit_code == 0
    assert run(EXPORTS / "mailchimp_unsubscribed.csv").exit_code == 0
    ann = get_subscriber(app, "ann.lee@example.org")
    assert ann.created_at.isoformat() == "2021-03-04T10:11:12+00:00"
    assert ann.confirmed_at.isoformat() == "2021-03-04T10:15:00+00:00"
    gone = get_subscriber(app, "gone@example.org")
    assert gone.unsubscribed_at.isoformat() == "2023-02-03T04:05:06+00:00"


def test_a_tool_that_says_gone_never_brings_someone_back(app: App, tmp_path: Path) -> None:
    # Someone active here who unsubscribed in the old tool is not made active by a later
    # import of their "subscribed" row, and a cleaned row stays bounced with --on-duplicate
    # update and --resubscribe.
    assert run(EXPORTS / "mailchimp_cleaned.csv").exit_code == 0
    again = tmp_path / "again.csv"
    again.write_text("Email Address,First Name\ndead@example.org,Dee\n")
    result = run(again, "--on-duplicate", "update", "--resubscribe")
    assert result.exit_code == 0, result.output
    assert get_subscriber(app, "dead@example.org").status == "bounced"


def test_map_decides_a_column(app: App, tmp_path: Path) -> None:
    path = tmp_path / "own.csv"
    path.write_text(
        "Adresse électronique,Vorname,Interests,Score\neve@example.org,Eve,CBT;Training,7\n"
    )
    result = run(
        path,
        "--map",
        "Adresse électronique=email",
        "--map",
        "vorname=name",
        "--map",
        "Interests=topics",
        "--json",
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["ignored_columns"] == ["Score"]
    assert report["mapping"][:2] == [
        {"column": "Adresse électronique", "field": "email"},
        {"column": "Vorname", "field": "name"},
    ]
    eve = get_subscriber(app, "eve@example.org")
    assert (eve.name, sorted(eve.topics)) == ("Eve", sorted(resolve_topics("CBT;Training")))


def test_map_ignore_drops_a_known_column(app: App) -> None:
    result = run(EXPORTS / "buttondown.csv", "--map", "subscriber_type=ignore")
    assert result.exit_code == 0, result.output
    assert get_subscriber(app, "unsub@example.org").status == "active"


@pytest.mark.parametrize(
    "flag, said",
    [
        ("Email Address=mail", "unknown field 'mail'"),
        ("Nickname=name", "a column the file does not have ('nickname')"),
        ("no equals sign", "write it as COLUMN=FIELD"),
    ],
)
def test_a_bad_map_is_refused_before_anything_is_written(app: App, flag: str, said: str) -> None:
    result = run(EXPORTS / "mailchimp_subscribed.csv", "--map", flag)
    assert result.exit_code == 1
    assert said in result.output and "hint:" in result.output
    assert "Traceback" not in result.output
    assert list_subscribers(app).total == 0


def test_header_problems_of_other_tools_files(app: App, tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    # A typing slip of one of our names is refused: ignoring it would lose the field.
    path.write_text("email,topcis\na@example.org,CBT\n")
    result = run(path)
    assert (
        result.exit_code == 1
        and "unknown column 'topcis' (did you mean 'topics'?)" in result.output
    )
    # Two columns for one field: the hint says how to keep one.
    path.write_text("Email,Email Address\na@example.org,b@example.org\n")
    result = run(path)
    assert result.exit_code == 1 and "all fill 'email'" in result.output
    assert '--map "Email Address=ignore"' in result.output
    # ... and following it works.
    assert run(path, "--map", "Email Address=ignore").exit_code == 0
    assert list_subscribers(app).total == 1


def test_an_unknown_status_word_rejects_only_its_row(app: App, tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("email,subscriber_type\na@example.org,regular\nb@example.org,zombie\n")
    result = run(path, "--json")
    assert result.exit_code == 1
    report = json.loads(result.output)
    [bad] = report["errors"]
    assert bad["line"] == 3 and "unknown subscriber_type 'zombie'" in bad["reason"]
    assert get_subscriber(app, "a@example.org").status == "active"
