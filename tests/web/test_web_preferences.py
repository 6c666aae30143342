"""Preference centre, one-click unsubscribe and per-topic links (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt

from newsletter.store import ledger, open_store
from tests.web.conftest import csrf_of, subscriber


def test_preferences_page_shows_grouped_topics_and_current_choice(client, token):
    r = client.get(f"/preferences/{token('preferences', 'ann@example.org')}")
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert "ann@example.org" in html
    assert "<legend>Treatments and approaches</legend>" in html
    assert 'value="empathy" checked' in html
    assert 'value="training" checked' in html
    assert 'value="attachment">' in html  # not chosen
    assert html.count('name="topics"') == 36


def test_save_topics_changes_store_and_logs_consent_event(client, token, web_settings):
    t = token("preferences", "ann@example.org")
    page = client.get(f"/preferences/{t}").get_data(as_text=True)
    r = client.post(
        f"/preferences/{t}",
        data={"csrf_token": csrf_of(page), "action": "save", "topics": ["attachment", "empathy"]},
        environ_base={"REMOTE_ADDR": "203.0.113.7"},
    )
    assert r.status_code == 200
    assert "Saved" in r.get_data(as_text=True)
    sub = subscriber(web_settings, "ann@example.org", history=True)
    assert sub.topics == ("attachment", "empathy")
    event = sub.events[-1]
    assert (event.event, event.source, event.ip) == ("topics_changed", "web", "203.0.113.7")


def test_all_topics_checkbox(client, token, web_settings):
    t = token("preferences", "ann@example.org")
    csrf = csrf_of(client.get(f"/preferences/{t}").get_data(as_text=True))
    r = client.post(
        f"/preferences/{t}", data={"csrf_token": csrf, "action": "save", "all_topics": "1"}
    )
    assert r.status_code == 200
    assert subscriber(web_settings, "ann@example.org").all_topics


def test_saving_no_topic_redisplays_with_error_and_changes_nothing(client, token, web_settings):
    t = token("preferences", "ann@example.org")
    csrf = csrf_of(client.get(f"/preferences/{t}").get_data(as_text=True))
    r = client.post(f"/preferences/{t}", data={"csrf_token": csrf, "action": "save"})
    assert r.status_code == 400
    assert "Choose at least one topic" in r.get_data(as_text=True)
    assert subscriber(web_settings, "ann@example.org").topics == ("empathy", "training")


def test_form_without_csrf_token_is_refused(client, token, web_settings):
    t = token("preferences", "ann@example.org")
    for data in (
        {"action": "unsubscribe"},
        {"action": "unsubscribe", "csrf_token": "0" * 64},
        {"action": "save", "topics": "attachment", "csrf_token": "x"},
    ):
        r = client.post(f"/preferences/{t}", data=data)
        assert r.status_code == 400
        assert "Traceback" not in r.get_data(as_text=True)
    assert subscriber(web_settings, "ann@example.org").status == "active"


def test_csrf_token_of_another_link_is_refused(client, token, web_settings):
    other = token("preferences", "solo@example.org")
    csrf = csrf_of(client.get(f"/preferences/{other}").get_data(as_text=True))
    t = token("preferences", "ann@example.org")
    r = client.post(f"/preferences/{t}", data={"csrf_token": csrf, "action": "unsubscribe"})
    assert r.status_code == 400
    assert subscriber(web_settings, "ann@example.org").status == "active"


def test_cross_site_post_is_refused(client, token, web_settings):
    t = token("preferences", "ann@example.org")
    csrf = csrf_of(client.get(f"/preferences/{t}").get_data(as_text=True))
    r = client.post(
        f"/preferences/{t}",
        data={"csrf_token": csrf, "action": "unsubscribe"},
        headers={"Origin": "https://evil.example"},
    )
    assert r.status_code == 400
    assert subscriber(web_settings, "ann@example.org").status == "active"


def test_unknown_topic_in_form_is_400(client, token):
    t = token("preferences", "ann@example.org")
    csrf = csrf_of(client.get(f"/preferences/{t}").get_data(as_text=True))
    r = client.post(
        f"/preferences/{t}", data={"csrf_token": csrf, "action": "save", "topics": "astrology"}
    )
    assert r.status_code == 400


def test_pause_resume_and_unsubscribe(client, token, web_settings):
    t = token("preferences", "ann@example.org")
    csrf = csrf_of(client.get(f"/preferences/{t}").get_data(as_text=True))
    r = client.post(
        f"/preferences/{t}", data={"csrf_token": csrf, "action": "pause", "months": "3"}
    )
    assert r.status_code == 200
    sub = subscriber(web_settings, "ann@example.org")
    assert sub.status == "paused"
    today = dt.date.today()
    assert 89 <= (sub.paused_until - today).days <= 92
    assert "Resume now" in r.get_data(as_text=True)

    r = client.post(
        f"/preferences/{t}", data={"csrf_token": csrf, "action": "pause", "months": "2"}
    )
    assert r.status_code == 400
    assert "Choose 1, 3 or 6 months" in r.get_data(as_text=True)

    client.post(f"/preferences/{t}", data={"csrf_token": csrf, "action": "resume"})
    assert subscriber(web_settings, "ann@example.org").status == "active"

    r = client.post(f"/preferences/{t}", data={"csrf_token": csrf, "action": "unsubscribe"})
    assert r.status_code == 200
    assert "You are unsubscribed" in r.get_data(as_text=True)
    sub = subscriber(web_settings, "ann@example.org", history=True)
    assert sub.status == "unsubscribed"
    assert {e.event for e in sub.events if e.source == "web"} == {
        "paused",
        "resumed",
        "unsubscribed",
    }

    # Back again from the same page.
    r = client.post(f"/preferences/{t}", data={"csrf_token": csrf, "action": "resubscribe"})
    assert r.status_code == 200
    sub = subscriber(web_settings, "ann@example.org")
    assert sub.status == "active" and sub.topics == ("empathy", "training")


def test_one_click_unsubscribe_rfc8058(app, token, web_settings):
    client = app.test_client(use_cookies=False)
    t = token("unsubscribe", "ann@example.org")
    r = client.post(
        f"/unsubscribe/{t}",
        data="List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )
    assert r.status_code == 200
    assert "Location" not in r.headers
    assert subscriber(web_settings, "ann@example.org").status == "unsubscribed"
    # Idempotent: a second POST is fine and logs nothing more.
    r = client.post(f"/unsubscribe/{t}", data={"List-Unsubscribe": "One-Click"})
    assert r.status_code == 200
    events = subscriber(web_settings, "ann@example.org", history=True).events
    assert [e.event for e in events].count("unsubscribed") == 1
    assert events[-1].source == "web"


def test_unsubscribe_get_and_head_change_nothing(client, token, web_settings):
    t = token("unsubscribe", "ann@example.org")
    r = client.get(f"/unsubscribe/{t}")
    assert r.status_code == 200
    assert 'name="List-Unsubscribe" value="One-Click"' in r.get_data(as_text=True)
    assert client.head(f"/unsubscribe/{t}").status_code == 200
    assert subscriber(web_settings, "ann@example.org").status == "active"


def test_unsubscribe_post_without_one_click_body_is_400(client, token, web_settings):
    t = token("unsubscribe", "ann@example.org")
    assert client.post(f"/unsubscribe/{t}").status_code == 400
    assert subscriber(web_settings, "ann@example.org").status == "active"


def test_one_click_skips_queued_rows_of_a_planned_send(app, token, web_settings):
    from tests.support.services import plan_issue_send

    plan_issue_send(web_settings, "2026-11")
    app.test_client().post(
        f"/unsubscribe/{token('unsubscribe', 'all@example.org')}",
        data={"List-Unsubscribe": "One-Click"},
    )
    with open_store(web_settings) as store:
        rows = ledger.list_deliveries(store, "2026-11", limit=100)
    row = next(r for r in rows if r.email == "all@example.org")
    assert row.status == "skipped"


def test_topic_link_get_confirms_then_post_removes(client, token, web_settings):
    t = token("topic", "ann@example.org")
    r = client.get(f"/topic/{t}/empathy")
    assert r.status_code == 200
    assert "Remove Empathy" in r.get_data(as_text=True)
    assert subscriber(web_settings, "ann@example.org").topics == ("empathy", "training")
    r = client.post(f"/topic/{t}/empathy", data={"csrf_token": csrf_of(r.get_data(as_text=True))})
    assert r.status_code == 200
    sub = subscriber(web_settings, "ann@example.org", history=True)
    assert sub.topics == ("training",)
    assert sub.events[-1].event == "topics_changed" and sub.events[-1].source == "web"


def test_topic_removal_needs_csrf(client, token, web_settings):
    t = token("topic", "ann@example.org")
    assert client.post(f"/topic/{t}/empathy").status_code == 400
    assert subscriber(web_settings, "ann@example.org").topics == ("empathy", "training")


def test_topic_removal_for_all_topics_subscriber_keeps_every_other_topic(
    client, token, web_settings
):
    t = token("topic", "all@example.org")
    page = client.get(f"/topic/{t}/empathy").get_data(as_text=True)
    assert "every other topic" in page
    client.post(f"/topic/{t}/empathy", data={"csrf_token": csrf_of(page)})
    sub = subscriber(web_settings, "all@example.org")
    assert not sub.all_topics
    assert len(sub.topics) == 35 and "empathy" not in sub.topics


def test_removing_a_topic_not_chosen_is_a_friendly_no_op(client, token, web_settings):
    t = token("topic", "ann@example.org")
    r = client.get(f"/topic/{t}/attachment")
    assert r.status_code == 200
    assert "nothing to change" in r.get_data(as_text=True)
    r = client.post(
        f"/topic/{t}/attachment",
        data={
            "csrf_token": csrf_of(
                client.get(f"/topic/{token('topic', 'ann@example.org')}/empathy").get_data(
                    as_text=True
                )
            )
        },
    )
    assert subscriber(web_settings, "ann@example.org").topics == ("empathy", "training")


def test_removing_the_last_topic_offers_unsubscribe(client, token, web_settings):
    t = token("topic", "solo@example.org")
    r = client.get(f"/topic/{t}/empathy")
    html = r.get_data(as_text=True)
    assert "would you rather unsubscribe" in html
    assert 'value="One-Click"' in html
    assert subscriber(web_settings, "solo@example.org").topics == ("empathy",)


def test_unknown_topic_slug_is_404(client, token):
    assert client.get(f"/topic/{token('topic', 'ann@example.org')}/astrology").status_code == 404
