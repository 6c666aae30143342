"""The JSON API through Flask's test client, on SQLite and PostgreSQL: subscribers, issues,
sends, topics, stats; tokens and their misuse; paging; problem details; limits."""

from __future__ import annotations

import logging
import re

import pytest

from newsletter.config import load_settings
from newsletter.services import App, api_tokens, subscribers
from newsletter.web import create_app
from tests.web.conftest import csrf_of, wait_jobs

PROBLEM = "application/problem+json"
# For tests of the HTTP layer alone: the store's part is the same on both databases (and
# tested on both in tests/services and tests/store).
sqlite_only = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_problem(response, status: int, slug: str) -> dict:
    """The answer is a problem details object of this status and type."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    body = response.get_json(force=True)
    assert body["status"] == status
    assert body["type"] == f"/api/v1/problems/{slug}"
    assert body["title"] and body["detail"]
    assert body["instance"] == response.request.path
    return body


def ids(page: dict) -> list[int]:
    return [item["id"] for item in page["items"]]


# --- on or off ---------------------------------------------------------------------------


@sqlite_only
def test_the_api_is_off_unless_enabled(web_project):
    settings = load_settings(web_project / "newsletter.toml", environ={})
    application = create_app(settings)
    try:
        client = application.test_client()
        for path in ("/api/v1/openapi.json", "/api/v1/subscribers"):
            response = client.get(path)
            assert response.status_code == 404
            assert response.mimetype == "text/html"  # the site's page, not the API's
    finally:
        application.extensions["newsletter"].close()


# --- subscribers -------------------------------------------------------------------------


def test_add_change_unsubscribe_and_erase_a_subscriber(api_client, api_token, caplog):
    token = api_token("crm-sync")
    caplog.set_level(logging.INFO, logger="newsletter.web.api")

    created = api_client.post(
        "/api/v1/subscribers",
        json={"email": " New.Person@Example.org ", "name": "New Person", "topics": ["Empathy"]},
        headers=bearer(token),
    )
    assert created.status_code == 201, created.get_data(as_text=True)
    person = created.get_json()
    assert person["email"] == "new.person@example.org"
    assert person["status"] == "active" and person["topics"] == ["empathy"]
    assert created.headers["Location"] == f"/api/v1/subscribers/{person['id']}"
    url = created.headers["Location"]

    got = api_client.get(url, headers=bearer(token)).get_json()
    assert got == person

    changed = api_client.patch(
        url,
        json={"name": "Renamed", "topics": ["Training", "alliance-and-therapeutic-relationship"]},
        headers=bearer(token),
    )
    assert changed.status_code == 200, changed.get_data(as_text=True)
    assert changed.get_json()["name"] == "Renamed"
    assert changed.get_json()["topics"] == ["alliance-and-therapeutic-relationship", "training"]

    paused = api_client.patch(
        url, json={"status": "paused", "paused_until": "2027-01-15"}, headers=bearer(token)
    ).get_json()
    assert paused["status"] == "paused" and paused["paused_until"] == "2027-01-15"
    resumed = api_client.patch(url, json={"status": "active"}, headers=bearer(token)).get_json()
    assert resumed["status"] == "active" and resumed["paused_until"] is None

    left = api_client.post(url + "/unsubscribe", headers=bearer(token))
    assert left.status_code == 200 and left.get_json()["status"] == "unsubscribed"
    again = api_client.post(url + "/unsubscribe", headers=bearer(token))
    assert again.status_code == 200  # harmless twice

    erased = api_client.delete(url, headers=bearer(token))
    assert erased.status_code == 200
    assert erased.get_json()["erased"] is True
    assert_problem(api_client.get(url, headers=bearer(token)), 404, "not-found")
    # Erased: on the suppression list, so adding them again is a conflict.
    back = api_client.post(
        "/api/v1/subscribers", json={"email": "new.person@example.org"}, headers=bearer(token)
    )
    assert "suppression" in assert_problem(back, 409, "conflict")["detail"]

    writes = [r.getMessage() for r in caplog.records if r.name == "newsletter.web.api"]
    done = [w for w in writes if "by token 'crm-sync':" in w]
    assert len(done) == 7  # add, three changes, unsubscribe twice, erase
    assert f"API DELETE {url} by token 'crm-sync': 200" in done
    refused = [w for w in writes if "by token 'crm-sync' refused" in w]
    assert refused == ["API POST /api/v1/subscribers by token 'crm-sync' refused: SuppressedError"]
    assert not any(token in r.getMessage() for r in caplog.records)


@sqlite_only
def test_a_refused_change_changes_nothing(api_client, api_token, api_app):
    token = api_token()
    app = api_app.extensions["newsletter"].app
    sub = subscribers.get_subscriber(app, "ann@example.org")
    url = f"/api/v1/subscribers/{sub.id}"
    # The name is fine, but a pause date in the past is refused: the name stays too.
    response = api_client.patch(
        url,
        json={"name": "Changed", "status": "paused", "paused_until": "2020-01-01"},
        headers=bearer(token),
    )
    body = assert_problem(response, 422, "unprocessable")
    assert body["errors"][0]["pointer"] == "#/paused_until"
    response = api_client.patch(
        url, json={"name": "Changed", "topics": ["No Such Topic"]}, headers=bearer(token)
    )
    assert assert_problem(response, 422, "unprocessable")["errors"][0]["pointer"] == "#/topics"
    assert subscribers.get_subscriber(app, "ann@example.org") == sub


@sqlite_only
def test_double_opt_in_adds_a_pending_subscriber_and_mails_the_link(
    api_app, api_client, api_token, smtp_server
):
    response = api_client.post(
        "/api/v1/subscribers",
        json={"email": "later@example.org", "double_opt_in": True},
        headers=bearer(api_token()),
    )
    assert response.status_code == 201
    assert response.get_json()["status"] == "pending"
    assert response.get_json()["all_topics"] is True
    wait_jobs(api_app)
    mails = [m for m in smtp_server.messages if m.rcpt_tos == ["later@example.org"]]
    assert len(mails) == 1
    text = mails[0].parsed().get_body(("plain",)).get_content()
    path = re.search(r"https://news\.example\.org(/confirm/\S+)", text).group(1)
    # The owner confirms from the mail, on the site's page: then they are active.
    page = api_client.get(path)
    api_client.post(path, data={"csrf_token": csrf_of(page.get_data(as_text=True))})
    url = response.headers["Location"]
    confirmed = api_client.get(url, headers=bearer(api_token("reader"))).get_json()
    assert confirmed["status"] == "active" and confirmed["confirmed_at"]


def test_listing_filters_by_status_topic_and_creation(api_client, api_token, api_clock):
    token = api_token()
    everyone = api_client.get("/api/v1/subscribers", headers=bearer(token)).get_json()
    assert len(everyone["items"]) == 4 and everyone["next_cursor"] is None
    assert ids(everyone) == sorted(ids(everyone))

    left = api_client.get("/api/v1/subscribers?status=unsubscribed", headers=bearer(token))
    assert [p["email"] for p in left.get_json()["items"]] == ["left@example.org"]

    # "training": those who chose it, and the all-topics subscriber.
    training = api_client.get("/api/v1/subscribers?topic=Training", headers=bearer(token))
    emails = {p["email"] for p in training.get_json()["items"]}
    assert emails == {"ann@example.org", "all@example.org", "left@example.org"}

    newest = everyone["items"][-1]["created_at"]
    since = api_client.get(
        "/api/v1/subscribers", query_string={"created_since": newest}, headers=bearer(token)
    ).get_json()
    assert everyone["items"][-1]["id"] in ids(since)
    later = api_client.get(
        "/api/v1/subscribers?created_since=2999-01-01T00:00:00Z", headers=bearer(token)
    )
    assert later.get_json()["items"] == []


def test_paging_is_stable_while_subscribers_are_added(api_client, api_token, api_app):
    token = api_token()
    app = api_app.extensions["newsletter"].app
    first = api_client.get("/api/v1/subscribers?limit=3", headers=bearer(token)).get_json()
    before = ids(api_client.get("/api/v1/subscribers", headers=bearer(token)).get_json())
    assert len(first["items"]) == 3 and first["next_cursor"]
    # Others add people between two pages (one of them sorts first by address).
    for email in ("aaa@example.org", "zzz@example.org", "mid@example.org"):
        subscribers.add_subscriber(app, email)
    seen = ids(first)
    cursor = first["next_cursor"]
    while cursor:
        page = api_client.get(
            "/api/v1/subscribers",
            query_string={"limit": 3, "cursor": cursor},
            headers=bearer(token),
        ).get_json()
        seen += ids(page)
        cursor = page["next_cursor"]
    assert len(seen) == len(set(seen)) == 7  # no row twice
    assert set(before) <= set(seen)  # none that existed was skipped
    assert seen == sorted(seen)


# --- tokens ------------------------------------------------------------------------------


def test_missing_wrong_and_revoked_tokens_are_refused(api_client, api_token, api_app):
    token = api_token("partner")
    app = api_app.extensions["newsletter"].app
    path = "/api/v1/subscribers"

    body = assert_problem(api_client.get(path), 401, "unauthorized")
    assert "Bearer" in body["hint"]
    assert api_client.get(path).headers["WWW-Authenticate"] == 'Bearer realm="newsletter API"'
    for header in (
        f"Basic {token}",  # not a bearer token
        f"Bearer {token}x",  # not shaped like ours
        "Bearer nl_" + "A" * 43,  # shaped like ours, unknown
        token,  # no scheme
    ):
        response = api_client.get(path, headers={"Authorization": header})
        assert_problem(response, 401, "unauthorized")
        assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]

    assert api_client.get(path, headers=bearer(token)).status_code == 200
    api_tokens.revoke_token(app, "partner")
    assert_problem(api_client.get(path, headers=bearer(token)), 401, "unauthorized")
    listed = {t.name: t for t in api_tokens.list_tokens(app)}
    assert listed["partner"].revoked and listed["partner"].last_used_at is not None


@sqlite_only
def test_a_read_only_token_reads_and_cannot_write(api_client, api_token, api_app):
    token = api_token("dashboard", read_only=True)
    app = api_app.extensions["newsletter"].app
    sub = subscribers.get_subscriber(app, "ann@example.org")
    assert api_client.get("/api/v1/subscribers", headers=bearer(token)).status_code == 200
    attempts = [
        api_client.post(
            "/api/v1/subscribers", json={"email": "x@example.org"}, headers=bearer(token)
        ),
        api_client.patch(
            f"/api/v1/subscribers/{sub.id}", json={"name": "X"}, headers=bearer(token)
        ),
        api_client.post(f"/api/v1/subscribers/{sub.id}/unsubscribe", headers=bearer(token)),
        api_client.delete(f"/api/v1/subscribers/{sub.id}", headers=bearer(token)),
        api_client.post("/api/v1/sends/2026-11/start", headers=bearer(token)),
    ]
    for response in attempts:
        assert "dashboard" in assert_problem(response, 403, "read-only")["detail"]
    assert subscribers.get_subscriber(app, "ann@example.org") == sub
    assert subscribers.list_after(app).items.__len__() == 4


@sqlite_only
def test_the_rate_limit_is_per_token_and_says_when_to_retry(web_project, api_clock):
    settings = load_settings(
        web_project / "newsletter.toml",
        overrides={"api_enabled": True, "api_rate_limit": 3},
        environ={},
    )
    application = create_app(App(settings, clock=api_clock))
    try:
        app = application.extensions["newsletter"].app
        one = api_tokens.create_token(app, "one").token
        two = api_tokens.create_token(app, "two").token
        client = application.test_client()
        for _ in range(3):
            assert client.get("/api/v1/topics", headers=bearer(one)).status_code == 200
        api_clock.advance(20)
        refused = client.get("/api/v1/topics", headers=bearer(one))
        assert_problem(refused, 429, "rate-limited")
        assert refused.headers["Retry-After"] == "40"
        assert client.get("/api/v1/topics", headers=bearer(two)).status_code == 200
        api_clock.advance(40)
        assert client.get("/api/v1/topics", headers=bearer(one)).status_code == 200
    finally:
        application.extensions["newsletter"].close()


# --- problems ----------------------------------------------------------------------------


@sqlite_only
def test_wrong_bodies_and_parameters_are_problems_that_point_at_the_field(
    api_client, api_token, api_app
):
    token = api_token()
    auth = bearer(token)
    add = "/api/v1/subscribers"

    body = assert_problem(
        api_client.post(add, json={"name": "No Address"}, headers=auth), 400, "validation"
    )
    assert body["errors"] == [{"detail": "Field required", "pointer": "#/email"}]
    body = assert_problem(
        api_client.post(add, json={"email": "a@example.org", "topics": ["ok", 7]}, headers=auth),
        400,
        "validation",
    )
    assert body["errors"][0]["pointer"] == "#/topics/1"
    body = assert_problem(
        api_client.post(add, json={"email": "a@example.org", "colour": "red"}, headers=auth),
        400,
        "validation",
    )
    assert body["errors"][0]["pointer"] == "#/colour"
    assert_problem(
        api_client.post(add, data="{not json", content_type="application/json", headers=auth),
        400,
        "bad-request",
    )
    assert_problem(api_client.post(add, json=["a@example.org"], headers=auth), 400, "validation")
    assert_problem(
        api_client.post(
            add,
            data="email=a@example.org",
            headers=auth,
            content_type="application/x-www-form-urlencoded",
        ),
        415,
        "unsupported-media-type",
    )
    huge = {"email": "a@example.org", "name": "x" * 20_000}
    assert_problem(api_client.post(add, json=huge, headers=auth), 413, "too-large")

    body = assert_problem(
        api_client.post(add, json={"email": "not an address"}, headers=auth), 422, "unprocessable"
    )
    assert body["errors"][0]["pointer"] == "#/email" and body["hint"]
    body = assert_problem(
        api_client.post(add, json={"email": "b@example.org", "topics": ["Empthy"]}, headers=auth),
        422,
        "unprocessable",
    )
    assert "Empathy" in body["hint"]
    assert_problem(
        api_client.post(add, json={"email": "ann@example.org"}, headers=auth), 409, "conflict"
    )

    body = assert_problem(api_client.get(add + "?limit=0", headers=auth), 400, "validation")
    assert body["errors"][0]["parameter"] == "limit"
    body = assert_problem(api_client.get(add + "?topic=Empthy", headers=auth), 422, "unprocessable")
    assert body["errors"][0]["parameter"] == "topic" and "Empathy" in body["hint"]
    body = assert_problem(api_client.get(add + "?status=gone", headers=auth), 400, "validation")
    assert body["errors"][0]["parameter"] == "status"
    body = assert_problem(api_client.get(add + "?cursor=bogus", headers=auth), 400, "validation")
    assert body["errors"][0]["parameter"] == "cursor"
    body = assert_problem(api_client.get(add + "?sort=email", headers=auth), 400, "validation")
    assert body["errors"][0]["parameter"] == "sort"
    body = assert_problem(api_client.get("/api/v1/issues/2026-13", headers=auth), 400, "validation")
    assert body["errors"][0]["parameter"] == "month"
    assert_problem(api_client.get(add + "/999999", headers=auth), 404, "not-found")
    assert_problem(api_client.get("/api/v1/nothing", headers=auth), 404, "not-found")
    wrong = api_client.put(add, json={}, headers=auth)
    assert_problem(wrong, 405, "method-not-allowed")
    assert "POST" in wrong.headers["Allow"]
    app = api_app.extensions["newsletter"].app
    assert subscribers.list_after(app).items.__len__() == 4  # nothing was added


@sqlite_only
def test_answers_carry_no_cookie_and_no_cors_header(api_client, api_token):
    token = api_token()
    foreign = {"Origin": "https://elsewhere.example"}
    responses = [
        api_client.get("/api/v1/topics", headers={**bearer(token), **foreign}),
        api_client.post(
            "/api/v1/subscribers",
            json={"email": "c@example.org"},
            headers={**bearer(token), **foreign},
        ),
        api_client.options(
            "/api/v1/subscribers", headers={**foreign, "Access-Control-Request-Method": "POST"}
        ),
        api_client.get("/api/v1/subscribers"),
    ]
    assert responses[1].status_code == 201  # a bearer token, not a cookie: no CSRF check
    for response in responses:
        assert "Set-Cookie" not in response.headers
        assert not [
            h for h, _value in response.headers.items() if h.lower().startswith("access-control")
        ]
        assert response.headers["Cache-Control"] == "no-store"


# --- topics, stats, issues, sends --------------------------------------------------------


def test_topics_stats_and_issues_are_read(api_client, api_token):
    token = api_token()
    topics = api_client.get("/api/v1/topics", headers=bearer(token)).get_json()
    assert len(topics["items"]) == 36
    by_slug = {t["slug"]: t for t in topics["items"]}
    assert by_slug["empathy"]["subscribers"] == 2  # ann, solo (left@ has left)
    assert topics["all_topics"] == 1
    stats = api_client.get("/api/v1/stats", headers=bearer(token)).get_json()
    assert stats["subscribers"]["total"] == 4
    assert stats["subscribers"]["by_status"] == {
        "pending": 0,
        "active": 3,
        "paused": 0,
        "unsubscribed": 1,
        "bounced": 0,
    }
    assert stats["subscribers"]["receiving"] == 3
    assert stats["topics"]["empathy"] == 2
    assert stats["sends"] == []
    listed = api_client.get("/api/v1/issues", headers=bearer(token)).get_json()["items"]
    assert [i["month"] for i in listed] == ["2026-11", "2026-10", "2026-09"]
    assert listed[0]["status"] == "ready" and listed[0]["valid"] is True
    issue = api_client.get("/api/v1/issues/2026-11", headers=bearer(token)).get_json()
    assert issue["month"] == "2026-11" and issue["summaries"]
    assert all(s["title"] and s["topics"] for s in issue["summaries"])
    variants = api_client.get("/api/v1/issues/2026-11/variants", headers=bearer(token))
    assert variants.status_code == 200, variants.get_data(as_text=True)
    items = variants.get_json()["items"]
    assert items and all(v["html_bytes"] > 0 for v in items)
    # all@ gets every summary, ann@ (Training) the second; solo@ (Empathy) none of them.
    counts = {v["name"]: v["subscribers"] for v in items}
    assert counts["all"] == 1 and counts["s2"] == 1 and sum(counts.values()) == 2
    assert_problem(
        api_client.get("/api/v1/issues/2030-01", headers=bearer(token)), 404, "not-found"
    )


def test_a_send_is_started_followed_paged_and_cancelled(api_client, api_token, api_app):
    token = api_token()
    auth = bearer(token)
    assert_problem(api_client.get("/api/v1/sends/2026-11", headers=auth), 404, "not-found")
    assert_problem(api_client.post("/api/v1/sends/2026-10/start", headers=auth), 409, "conflict")

    started = api_client.post("/api/v1/sends/2026-11/start", headers=auth)
    assert started.status_code == 202, started.get_data(as_text=True)
    state = started.get_json()
    assert state["status"] == "planned" and state["total"] == 3  # the receiving ones
    queued = state["outstanding"]
    assert queued == 3 - sum(state["skipped"].values()) > 0
    assert api_client.get("/api/v1/sends/2026-11", headers=auth).get_json() == state
    assert [
        s["month"] for s in api_client.get("/api/v1/sends", headers=auth).get_json()["items"]
    ] == ["2026-11"]

    seen, cursor = [], None
    while True:
        page = api_client.get(
            "/api/v1/sends/2026-11/deliveries",
            query_string={"limit": 2, **({"cursor": cursor} if cursor else {})},
            headers=auth,
        ).get_json()
        seen += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(d["email"] for d in seen) == [
        "all@example.org",
        "ann@example.org",
        "solo@example.org",
    ]
    assert len({d["id"] for d in seen}) == 3
    assert len([d for d in seen if d["status"] == "pending"]) == queued

    cancelled = api_client.post("/api/v1/sends/2026-11/cancel", headers=auth)
    assert cancelled.status_code == 200
    assert cancelled.get_json()["status"] == "cancelled"
    assert cancelled.get_json()["outstanding"] == 0
    assert cancelled.get_json()["skipped"]["send cancelled"] == queued
    skipped = api_client.get("/api/v1/sends/2026-11/deliveries?status=skipped", headers=auth)
    assert len(skipped.get_json()["items"]) == 3
    assert not api_client.get(
        "/api/v1/sends/2026-11/deliveries?status=pending", headers=auth
    ).get_json()["items"]
    assert_problem(api_client.post("/api/v1/sends/2026-11/cancel", headers=auth), 409, "conflict")
    assert_problem(api_client.post("/api/v1/sends/2026-11/start", headers=auth), 409, "conflict")
    stats = api_client.get("/api/v1/stats", headers=auth).get_json()
    assert stats["sends"] == [
        {"month": "2026-11", "status": "cancelled", "sent": 0, "outstanding": 0, "total": 3}
    ]


@sqlite_only
def test_the_openapi_description_needs_no_token(api_client):
    response = api_client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.get_json()["openapi"].startswith("3.")


def test_the_report_gives_the_numbers_of_newsletter_report(api_client, api_token, api_app):
    import datetime as dt

    from newsletter.services import reports

    auth = bearer(api_token())
    got = api_client.get("/api/v1/report?since=2026-01-01", headers=auth)
    assert got.status_code == 200, got.get_data(as_text=True)
    app = api_app.extensions["newsletter"].app
    expected = reports.build(app, dt.date(2026, 1, 1)).to_dict()
    body = got.get_json()
    assert body["since"] == "2026-01-01" and body["notes"]
    for key in ("statuses", "topics", "last_issue", "issues", "signups", "notes"):
        assert body[key] == expected[key], key
    bad = api_client.get("/api/v1/report?since=last-year", headers=auth)
    assert assert_problem(bad, 400, "validation")["errors"][0]["parameter"] == "since"
