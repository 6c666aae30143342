"""The public archive: sent and published issues only, filters, issue and summary pages."""

from __future__ import annotations

from newsletter.content.files import new_issue_file
from newsletter.web.topic_groups import TOPIC_GROUPS, topic_groups


def test_topic_groups_cover_the_taxonomy_once():
    from newsletter.content.taxonomy import load_taxonomy

    slugs = [s for _, group in TOPIC_GROUPS for s in group]
    assert sorted(slugs) == sorted(t.slug for t in load_taxonomy())
    assert len(slugs) == len(set(slugs)) == 36
    assert sum(len(g.topics) for g in topic_groups()) == 36


def test_index_lists_published_issues_only(client, web_project):
    new_issue_file(web_project / "issues", "2026-12")  # a draft
    html = client.get("/archive").get_data(as_text=True)
    assert "October 2026" in html and "September 2026" in html
    assert "November 2026" not in html  # ready but never sent
    assert "December 2026" not in html  # draft
    assert html.index("October 2026") < html.index("September 2026")
    assert client.get("/archive/2026-11").status_code == 404
    assert client.get("/archive/2026-12").status_code == 404
    assert (
        client.get("/archive/2026-11/the-efficacy-of-psychodynamic-psychotherapy").status_code
        == 404
    )


def test_an_issue_appears_once_its_send_has_started(client, web_settings):
    from newsletter.store import ledger, open_store
    from tests.support.services import plan_issue_send

    plan_issue_send(web_settings, "2026-11")
    assert client.get("/archive/2026-11").status_code == 404  # planned, not sending yet
    with open_store(web_settings) as store:
        ledger.claim_batch(store, 1, months=["2026-11"])  # the send is now "sending"
    r = client.get("/archive/2026-11")
    assert r.status_code == 200
    assert "The Efficacy of Psychodynamic Psychotherapy" in r.get_data(as_text=True)


def test_filter_by_topic_and_research_type(client):
    html = client.get("/archive?topic=empathy").get_data(as_text=True)
    assert "Therapist Empathy and Client Outcome" in html
    assert "Repairing Ruptures" not in html
    assert "1 summary on Empathy in 1 issue" in html
    html = client.get("/archive?type=systematic-review").get_data(as_text=True)
    assert "CBT Across Many Conditions" in html
    assert "Therapist Empathy" not in html
    html = client.get("/archive?topic=empathy&type=systematic-review").get_data(as_text=True)
    assert "No issues match" in html


def test_unknown_filter_value_is_400_with_everything_shown(client):
    r = client.get("/archive?topic=astrology")
    assert r.status_code == 400
    html = r.get_data(as_text=True)
    assert "There is no such topic" in html and "October 2026" in html


def test_issue_and_summary_pages(client):
    from newsletter.content.files import get_issue
    from tests.plugin import SAMPLE_ISSUES

    issue = get_issue(SAMPLE_ISSUES, "2026-10")
    html = client.get("/archive/2026-10").get_data(as_text=True)
    for s in issue.summaries:
        assert s.title in html
        assert f'/archive/2026-10/{s.key}"' in html
    first, *others = issue.summaries
    r = client.get(f"/archive/2026-10/{first.key}")
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert f'<h1 class="summary-title">{first.title}</h1>' in html
    assert "Also in this issue" in html
    for s in others:
        assert s.title in html
    assert client.get("/archive/2026-10/no-such-summary").status_code == 404


def test_raw_html_in_an_issue_is_escaped(client, web_project):
    path = web_project / "issues" / "2026-10.md"
    text = path.read_text()
    path.write_text(
        text.replace(
            "### Practice Implications", "<script>alert(1)</script>\n\n### Practice Implications", 1
        )
    )
    html = client.get("/archive/2026-10").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;" in html


class _Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_archive_pages_are_kept_until_an_issue_is_sent_or_a_file_changes(
    app, client, web_settings, web_project
):
    """Pages come from memory; the version (issue files, sent months) is looked at again
    once `recheck` seconds have passed, and a change renders them anew."""
    from newsletter.store import ledger, open_store
    from newsletter.web.context import WebContext
    from tests.support.services import plan_issue_send

    ctx: WebContext = app.extensions["newsletter"]
    clock = _Clock()
    ctx.archive_cache.clock = clock
    ctx.archive_cache.clear()
    first = client.get("/archive").get_data(as_text=True)
    assert "November 2026" not in first
    october = web_project / "issues" / "2026-10.md"
    october.write_text(october.read_text().replace("Therapist Empathy", "Therapist Warmth"))
    plan_issue_send(web_settings, "2026-11")
    with open_store(web_settings) as store:
        ledger.claim_batch(store, 1, months=["2026-11"])  # 2026-11 is now being sent
    assert client.get("/archive").get_data(as_text=True) == first  # from memory
    clock.now += ctx.archive_cache.recheck
    fresh = client.get("/archive").get_data(as_text=True)
    assert "November 2026" in fresh and "Therapist Warmth" in fresh
    assert "Therapist Empathy" not in fresh


def test_query_strings_do_not_fill_the_archive_cache(app, client):
    ctx = app.extensions["newsletter"]
    ctx.archive_cache.clear()
    for i in range(50):
        assert client.get(f"/archive?utm_source=x{i}&topic=empathy").status_code == 200
        assert client.get(f"/archive?topic=nonsense{i}").status_code == 400
    assert len(ctx.archive_cache._pages) == 2


def test_back_issue_with_only_suggested_topics_is_found_by_them(client, web_project):
    """Guessed topics of an imported back issue count in the archive and its filters
    until the author confirms them."""
    (web_project / "issues" / "2019-02.md").write_text(
        "---\nmonth: 2019-02\nstatus: published\n---\n\n"
        "## Clients Who Get the Therapy They Prefer Stay Longer\n"
        "Topics-Suggested: Client Preferences; Attendance, Attrition, and Drop-Out\n"
        "Research-Suggested: meta-analysis\n\n"
        "Clients whose preferences were met stayed longer.\n\n"
        "### Practice Implications\n\nAsk about preferences.\n",
        "utf-8",
    )
    html = client.get("/archive?topic=client-preferences").get_data(as_text=True)
    assert "Clients Who Get the Therapy They Prefer Stay Longer" in html
    assert "February 2019" in html
    html = client.get("/archive?type=meta-analysis").get_data(as_text=True)
    assert "Clients Who Get the Therapy They Prefer Stay Longer" in html
    html = client.get("/archive?topic=empathy").get_data(as_text=True)
    assert "Clients Who Get the Therapy They Prefer Stay Longer" not in html
