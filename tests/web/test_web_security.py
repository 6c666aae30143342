"""Bad links, security headers, open redirects, oversized and malformed requests."""

from __future__ import annotations

import re

import pytest

from newsletter.config import load_settings
from newsletter.tokens import make_token
from tests.web.conftest import assert_security_headers, subscriber

PAGES = ["/", "/subscribe", "/preferences", "/archive", "/archive/2026-10"]


def _tamper(token: str) -> str:
    # Change a character in the middle of the signature (the last one may carry no bits).
    i = len(token) - 5
    return token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]


@pytest.mark.parametrize(
    "purpose,path",
    [
        ("preferences", "/preferences/{}"),
        ("unsubscribe", "/unsubscribe/{}"),
        ("topic", "/topic/{}/empathy"),
        ("confirm", "/confirm/{}"),
    ],
)
def test_tampered_and_cross_purpose_tokens_get_the_helpful_page(client, token, purpose, path):
    good = token(purpose, "ann@example.org")
    other = "preferences" if purpose != "preferences" else "unsubscribe"
    for bad in (_tamper(good), token(other, "ann@example.org"), "garbage", "x" * 2000):
        for method in ("get", "post"):
            r = getattr(client, method)(path.format(bad), data={"List-Unsubscribe": "One-Click"})
            html = r.get_data(as_text=True)
            assert r.status_code == 400, (bad, method)
            assert "This link does not work" in html
            assert "Email me a link" in html
            assert "Traceback" not in html


def test_bad_token_posts_change_nothing(client, token, web_settings):
    t = _tamper(token("unsubscribe", "ann@example.org"))
    client.post(f"/unsubscribe/{t}", data={"List-Unsubscribe": "One-Click"})
    assert subscriber(web_settings, "ann@example.org").status == "active"


def test_key_rotation_old_key_verifies_unknown_key_does_not(client, web_project, web_settings):
    sub = subscriber(web_settings, "ann@example.org")
    old_only = load_settings(
        web_project / "newsletter.toml", overrides={"secret_key": "old-web-key"}, environ={}
    )
    assert (
        client.get(f"/preferences/{make_token(old_only, 'preferences', sub.id)}").status_code == 200
    )
    stranger = load_settings(
        web_project / "newsletter.toml", overrides={"secret_key": "someone-else"}, environ={}
    )
    assert (
        client.get(f"/preferences/{make_token(stranger, 'preferences', sub.id)}").status_code == 400
    )


def test_token_of_a_person_no_longer_in_the_store_is_404(client, web_settings):
    r = client.get(f"/preferences/{make_token(web_settings, 'preferences', 999999)}")
    assert r.status_code == 404
    assert "This link does not work" in r.get_data(as_text=True)


@pytest.mark.parametrize("payload", [-1, 2**63, 2**70, -(2**80)])
def test_token_with_an_id_out_of_range_is_a_bad_link(client, web_settings, payload):
    """A genuine signature over an id no database column can hold: a bad link, not a 500.
    (Id 0 is the links of a test message: tests/web/test_web_test_links.py.)"""
    for purpose, path in (
        ("preferences", "/preferences/{}"),
        ("unsubscribe", "/unsubscribe/{}"),
        ("topic", "/topic/{}/empathy"),
    ):
        t = make_token(web_settings, purpose, payload)
        for method in ("get", "post"):
            r = getattr(client, method)(path.format(t), data={"List-Unsubscribe": "One-Click"})
            assert r.status_code == 400, (purpose, method)
            assert "This link does not work" in r.get_data(as_text=True)
            assert_security_headers(r)


@pytest.mark.parametrize(
    "path", ["//archive", "/archive/2026-10/", "//archive//2026-10", "/archive//", "///archive"]
)
def test_redirects_never_follow_the_host_header(client, path):
    r = client.get(path, headers={"Host": "evil.example"})
    assert r.status_code < 500
    location = r.headers.get("Location", "")
    assert "evil.example" not in location
    assert not location or (location.startswith("/") and not location.startswith("//"))
    assert_security_headers(r)


def test_a_response_keeps_a_security_header_it_sets_itself(app):
    """Each security header is added once, unless the response already has it (in any
    case of its name): then its own value stays, alone."""
    from flask import Response

    from newsletter.web.app import _finish_response
    from newsletter.web.security import SECURITY_HEADERS

    with app.test_request_context("/healthz"):
        r = _finish_response(Response("x", headers={"referrer-policy": "no-referrer"}))
    assert r.headers.getlist("Referrer-Policy") == ["no-referrer"]
    for name, value in SECURITY_HEADERS.items():
        if name != "Referrer-Policy":
            assert r.headers.getlist(name) == [value]


@pytest.mark.parametrize("path", PAGES)
def test_security_headers_on_every_page(client, path):
    r = client.get(path)
    assert r.status_code == 200
    csp = r.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert r.headers["Referrer-Policy"] == "same-origin"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["X-Frame-Options"] == "DENY"
    html = r.get_data(as_text=True)
    assert "style=" not in html
    # No inline script: at most the topic picker's file, from this site.
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, re.DOTALL)
    assert all(re.search(r'src="/static/[a-z]+\.js"', a) and not body for a, body in scripts)
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp


def test_token_pages_are_not_cached(client, token):
    r = client.get(f"/preferences/{token('preferences', 'ann@example.org')}")
    assert r.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    "path",
    [
        "//evil.example/",
        "/\\evil.example",
        "/archive/?next=https://evil.example",
        "/subscribe?next=//evil.example",
        "/preferences?next=https://evil.example",
        "/archive/2026-10/?x=1",
        "/static/../newsletter.toml",
        "/https://evil.example",
    ],
)
def test_no_open_redirects(client, path):
    r = client.get(path)
    location = r.headers.get("Location", "")
    assert not location or (location.startswith("/") and not location.startswith("//"))
    assert "evil.example" not in location
    assert r.status_code < 500


def test_oversized_request_is_400(client):
    r = client.post("/subscribe", data={"email": "a@example.org", "name": "x" * 200_000})
    assert r.status_code == 400
    assert "too large" in r.get_data(as_text=True)


def test_malformed_requests_are_400(client, token):
    r = client.post(
        "/subscribe", data=b"--broken", content_type="multipart/form-data; boundary=zzz"
    )
    assert r.status_code == 400
    r = client.post(
        "/preferences", data=b"\xff\xfe=\x00", content_type="application/x-www-form-urlencoded"
    )
    assert r.status_code == 400
    assert client.get("/archive/2026-13").status_code == 404
    assert client.get("/archive/2026-10/%00").status_code == 404


def test_unknown_page_and_method(client):
    r = client.get("/no/such/page")
    assert r.status_code == 404 and "Page not found" in r.get_data(as_text=True)
    assert client.delete("/subscribe").status_code == 405


def test_stylesheet_is_same_origin(client):
    r = client.get("/static/site.css")
    assert r.status_code == 200 and r.mimetype == "text/css"
    assert client.get("/static/nope.css").status_code == 404


# --- rate limits -------------------------------------------------------------------------


def test_a_full_limit_table_never_forgets_a_live_key():
    """Flooding the table from other keys must not reset anyone's limit."""
    from newsletter.web.security import RateLimiter

    rl = RateLimiter(window=100.0, max_keys=4)
    assert rl.hit("addr:victim@example.org", 2, now=0.0)
    assert rl.hit("addr:victim@example.org", 2, now=1.0)
    assert not rl.hit("addr:victim@example.org", 2, now=2.0)
    for i in range(3):
        assert rl.hit(f"ip:{i}", 2, now=3.0 + i)
    # Full of live keys: a new key is refused, and nothing live is dropped for it.
    for i in range(100):
        assert not rl.hit(f"flood{i}", 2, now=10.0 + i * 0.1)
    assert len(rl) == 4
    assert not rl.hit("addr:victim@example.org", 2, now=50.0)
    # Once a window has passed, expired keys make room (the victim's own limit is over).
    assert rl.hit("newcomer", 2, now=101.5)
    assert not rl.hit("addr:victim@example.org", 2, now=102.0)  # full again: ip:0..2
    assert rl.hit("addr:victim@example.org", 2, now=103.5)  # ip:0 expired at 103


def test_the_limit_table_stays_bounded():
    from newsletter.web.security import RateLimiter

    rl = RateLimiter(window=10.0, max_keys=50)
    for i in range(1000):
        rl.hit(f"k{i}", 1, now=float(i) / 10)
        assert len(rl) <= 50


@pytest.mark.parametrize(
    "address,key",
    [
        ("203.0.113.7", "ip:203.0.113.7"),
        ("2001:db8:1:2:3:4:5:6", "ip:2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::1", "ip:2001:db8:1:2::/64"),
        ("::ffff:203.0.113.7", "ip:203.0.113.7"),
        (None, "ip:unknown"),
    ],
)
def test_ip_keys(address, key):
    from newsletter.web.security import ip_key

    assert ip_key(address) == key


def test_tagged_addresses_share_one_limit(client, web_settings):
    page = client.get("/subscribe").get_data(as_text=True)
    from tests.web.conftest import csrf_of

    def signup(address):
        return client.post(
            "/subscribe",
            data={
                "csrf_token": csrf_of(page),
                "email": address,
                "all_topics": "1",
                "consent": "1",
            },
        )

    variants = ["flood@example.org", "flood+a@example.org", "Flood+b@EXAMPLE.org"]
    assert web_settings.signup_limit_per_address == len(variants)
    for address in variants:
        assert signup(address).status_code == 200
    r = signup("flood+c@Example.Org")
    assert r.status_code == 429
    assert_security_headers(r)
    assert signup("other@example.org").status_code == 200


def test_pages_use_system_fonts_and_load_nothing_from_other_hosts(client):
    css = client.get("/static/site.css").get_data(as_text=True)
    for word in ("@import", "@font-face", "url("):
        assert word not in css
    assert re.search(r"font(?:-family)?:[^;]*system-ui", css)
    for path in PAGES:
        html = client.get(path).get_data(as_text=True)
        # A canonical link names the page's public address; the browser loads nothing.
        html = re.sub(r'<link rel="canonical" href="[^"]*">', "", html)
        for attr in re.findall(r'<(?:link|script|img)\b[^>]*\b(?:href|src)="([^"]*)"', html):
            assert attr.startswith("/"), f"{path} loads {attr}"
