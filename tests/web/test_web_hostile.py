"""A corpus of hostile HTTP requests, and random ones: never a 500, never a change.

Every request here is bad (oversized, wrongly encoded, forged, for the wrong purpose, or
without a CSRF token). Each must get a 4xx with the site's own error page (or a clean
answer, e.g. the sign-up form again), always with the security headers, and must leave
the store exactly as it was: nobody added, changed or sent anything.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter.tokens import make_token
from tests.web.conftest import assert_security_headers, subscriber, wait_jobs

TABLES = ("subscribers", "subscriber_topics", "consent_events", "signup_requests", "deliveries")
FORM = "application/x-www-form-urlencoded"


def store_snapshot(url: str) -> dict[str, list[tuple]]:
    """Every row of the tables a web request could change."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            return {
                t: sorted(map(tuple, conn.execute(text(f"SELECT * FROM {t}"))), key=repr)
                for t in TABLES
            }
    finally:
        engine.dispose()


def assert_clean(r, method: str = "get") -> None:
    assert r.status_code < 500, (r.status_code, r.get_data(as_text=True)[:300])
    assert_security_headers(r)
    html = r.get_data(as_text=True)
    assert "Traceback" not in html
    if r.status_code >= 400 and method != "head":
        assert r.mimetype == "text/html"
        assert "Research Digest" in html  # the site's own page, in its layout
    location = r.headers.get("Location", "")
    assert not location or (location.startswith("/") and not location.startswith("//"))


# (name, build(settings, ann_id) -> (method, path, client keyword arguments))
Case = Callable[[Any, int], tuple[str, str, dict[str, Any]]]


CORPUS: dict[str, Case] = {
    # huge bodies
    "huge form body": lambda s, a: (
        "post",
        "/subscribe",
        {"data": b"email=a%40example.org&name=" + b"x" * 300_000, "content_type": FORM},
    ),
    "huge body, preferences": lambda s, a: (
        "post",
        f"/preferences/{make_token(s, 'preferences', a)}",
        {"data": b"action=save&topics=" + b"y" * 300_000, "content_type": FORM},
    ),
    "huge one-click body": lambda s, a: (
        "post",
        f"/unsubscribe/{make_token(s, 'unsubscribe', a)}",
        {"data": b"List-Unsubscribe=" + b"z" * 300_000, "content_type": FORM},
    ),
    "thousands of form fields": lambda s, a: (
        "post",
        "/subscribe",
        {"data": b"&".join(b"topics=t%d" % i for i in range(5000)), "content_type": FORM},
    ),
    # bad content types and encodings
    "json body": lambda s, a: (
        "post",
        "/subscribe",
        {"data": b'{"email": "a@example.org", "consent": "1"}', "content_type": "application/json"},
    ),
    "text body": lambda s, a: (
        "post",
        "/preferences",
        {"data": b"email=a@example.org", "content_type": "text/plain"},
    ),
    "multipart without boundary": lambda s, a: (
        "post",
        "/subscribe",
        {"data": b"--x\r\n", "content_type": "multipart/form-data"},
    ),
    "broken multipart": lambda s, a: (
        "post",
        "/subscribe",
        {"data": b"--broken", "content_type": "multipart/form-data; boundary=zzz"},
    ),
    "broken percent-encoding": lambda s, a: (
        "post",
        "/subscribe",
        {"data": b"email=%ZZ%&name=%e2%28%a1&consent=%", "content_type": FORM},
    ),
    "non-UTF-8 form": lambda s, a: (
        "post",
        "/preferences",
        {"data": b"\xff\xfe=\x00&email=\xc3\x28", "content_type": FORM},
    ),
    "charset nonsense": lambda s, a: (
        "post",
        "/subscribe",
        {"data": b"email=a%40example.org", "content_type": FORM + "; charset=x-unknown"},
    ),
    # CR/LF where headers are made
    "CR/LF in form fields": lambda s, a: (
        "post",
        "/subscribe",
        {
            "data": {
                "email": "a@example.org\r\nBcc: victim@example.org",
                "name": "x\r\nSubject: spam",
                "all_topics": "1",
                "consent": "1",
            }
        },
    ),
    "CR/LF in the query": lambda s, a: ("get", "/subscribe?next=%0d%0aSet-Cookie:%20x=1", {}),
    "CR/LF in the path": lambda s, a: ("get", "/archive/%0d%0aSet-Cookie:x=1", {}),
    "CR/LF in Origin and Host": lambda s, a: (
        "post",
        "/subscribe",
        {
            "data": {"email": "a@example.org"},
            "environ_overrides": {
                "HTTP_ORIGIN": "https://evil.example\r\nX: y",
                "HTTP_HOST": "evil.example\r\nX-Injected: 1",
            },
        },
    ),
    "foreign Origin": lambda s, a: (
        "post",
        "/preferences",
        {"data": {"email": "ann@example.org"}, "headers": {"Origin": "https://evil.example"}},
    ),
    # overlong and malformed tokens
    "overlong preferences token": lambda s, a: ("get", "/preferences/" + "A" * 5000, {}),
    "overlong one-click token": lambda s, a: (
        "post",
        "/unsubscribe/" + "B." * 3000,
        {"data": {"List-Unsubscribe": "One-Click"}},
    ),
    "overlong confirm token": lambda s, a: ("post", "/confirm/" + "C" * 10_000, {}),
    "token of dots": lambda s, a: ("get", "/topic/..../empathy", {}),
    # genuine signatures over ids no column can hold
    "huge id, preferences": lambda s, a: (
        "get",
        f"/preferences/{make_token(s, 'preferences', 2**64)}",
        {},
    ),
    "huge id, one-click": lambda s, a: (
        "post",
        f"/unsubscribe/{make_token(s, 'unsubscribe', 10**30)}",
        {"data": {"List-Unsubscribe": "One-Click"}},
    ),
    "huge id, confirm": lambda s, a: ("post", f"/confirm/{make_token(s, 'signup', 2**63)}", {}),
    "negative id, legacy confirm": lambda s, a: (
        "get",
        f"/confirm/{make_token(s, 'confirm', -(2**70))}",
        {},
    ),
    "string payload, sign-up confirm": lambda s, a: (
        "get",
        f"/confirm/{make_token(s, 'signup', 'ann@example.org')}",
        {},
    ),
    # genuine tokens of the wrong purpose
    "unsubscribe token on preferences": lambda s, a: (
        "post",
        f"/preferences/{make_token(s, 'unsubscribe', a)}",
        {"data": {"action": "unsubscribe"}},
    ),
    "preferences token for one-click": lambda s, a: (
        "post",
        f"/unsubscribe/{make_token(s, 'preferences', a)}",
        {"data": {"List-Unsubscribe": "One-Click"}},
    ),
    "sign-up token on preferences": lambda s, a: (
        "get",
        f"/preferences/{make_token(s, 'signup', a)}",
        {},
    ),
    "topic token on confirm": lambda s, a: ("post", f"/confirm/{make_token(s, 'topic', a)}", {}),
    "confirm token on topic": lambda s, a: (
        "post",
        f"/topic/{make_token(s, 'confirm', a)}/empathy",
        {},
    ),
    # a genuine token, but no CSRF token or a wrong one
    "preferences without CSRF": lambda s, a: (
        "post",
        f"/preferences/{make_token(s, 'preferences', a)}",
        {"data": {"action": "unsubscribe"}},
    ),
    "topic with a forged CSRF": lambda s, a: (
        "post",
        f"/topic/{make_token(s, 'topic', a)}/empathy",
        {"data": {"csrf_token": "0" * 64}},
    ),
    "unknown topic slug": lambda s, a: (
        "post",
        f"/preferences/{make_token(s, 'preferences', a)}",
        {"data": {"action": "save", "topics": ["no-such-topic"]}},
    ),
    # non-UTF-8 and odd query strings and paths
    "non-UTF-8 query": lambda s, a: ("get", "/archive?topic=%ff%fe&type=%c3%28", {}),
    "raw non-UTF-8 query": lambda s, a: (
        "get",
        "/archive",
        {"environ_overrides": {"QUERY_STRING": "topic=\xff\xfe"}},
    ),
    "non-UTF-8 path": lambda s, a: ("get", "/archive/%ff%fe", {}),
    "raw non-UTF-8 path": lambda s, a: (
        "get",
        "/",
        {"environ_overrides": {"PATH_INFO": "/preferences/\xff\xc3("}},
    ),
    "NUL in path": lambda s, a: ("get", "/preferences/%00", {}),
    "dot segments": lambda s, a: ("get", "/static/..%2f..%2fnewsletter.toml", {}),
    "doubled slashes": lambda s, a: ("get", "//preferences//", {}),
    # methods
    "PUT": lambda s, a: ("put", "/subscribe", {"data": {"email": "a@example.org"}}),
    "DELETE on a token page": lambda s, a: (
        "delete",
        f"/preferences/{make_token(s, 'preferences', a)}",
        {},
    ),
    "HEAD of a token page": lambda s, a: (
        "head",
        f"/unsubscribe/{make_token(s, 'unsubscribe', a)}",
        {},
    ),
}


@pytest.fixture
def ann_id(web_settings) -> int:
    return subscriber(web_settings, "ann@example.org").id


@pytest.mark.parametrize("name", list(CORPUS))
def test_hostile_request(app, client, web_settings, store_url, ann_id, smtp_server, name):
    method, path, kwargs = CORPUS[name](web_settings, ann_id)
    before = store_snapshot(store_url)
    r = getattr(client, method)(path, **kwargs)
    assert_clean(r, method)
    if method != "head":
        assert 400 <= r.status_code < 500 or r.status_code in (200, 308), r.status_code
    wait_jobs(app)
    assert store_snapshot(store_url) == before
    assert not smtp_server.messages


PREFIXES = ["/", "/preferences/", "/unsubscribe/", "/topic/", "/confirm/", "/archive/", ""]
_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=0, max_size=60)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    method=st.sampled_from(["get", "post", "head"]),
    prefix=st.sampled_from(PREFIXES),
    tail=_text,
    fields=st.dictionaries(
        st.sampled_from(
            [
                *("email", "name", "topics", "all_topics", "consent", "action", "months"),
                *("csrf_token", "List-Unsubscribe", "website"),
            ]
        ),
        _text,
        max_size=6,
    ),
    raw=st.binary(max_size=200),
    use_raw=st.booleans(),
    query=st.binary(max_size=40),
)
def test_random_requests_never_fail_or_change_anything(
    app, client, store_url, smtp_server, method, prefix, tail, fields, raw, use_raw, query
):
    from urllib.parse import quote

    path = "/" + (prefix + quote(tail, safe="/.")).lstrip("/")
    before = store_snapshot(store_url)
    # The query string as a server passes it on: the raw bytes, read as Latin-1.
    kwargs: dict[str, Any] = {"environ_overrides": {"QUERY_STRING": query.decode("latin-1")}}
    if method == "post":
        kwargs |= {"data": raw, "content_type": FORM} if use_raw else {"data": fields}
    r = getattr(client, method)(path, **kwargs)
    assert_clean(r, method)
    wait_jobs(app)
    assert store_snapshot(store_url) == before
    assert not smtp_server.messages
