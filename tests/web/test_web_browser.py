"""Real browser (Debian chromium via Playwright) against a real waitress server.

The server runs in a thread on a free port; emails go through the real aiosmtpd server.
"""

from __future__ import annotations

import re

import pytest

from newsletter.tokens import make_token
from tests.web.conftest import serve_in_thread, subscriber, wait_jobs

pytestmark = pytest.mark.browser
# Read at import: the autouse isolated_env fixture clears the environment of each test.
LINK = re.compile(r"https://news\.example\.org(/[^\s\"<>]+)")


@pytest.fixture
def server(app):
    """``app`` served by waitress in a thread; yields its base URL."""
    yield from serve_in_thread(app)


def _id(settings, email: str) -> int:
    return subscriber(settings, email).id


def test_change_topics_in_the_preference_centre(browser, server, web_settings):
    t = make_token(web_settings, "preferences", _id(web_settings, "ann@example.org"))
    page = browser.new_page()
    page.goto(f"{server}/preferences/{t}")
    assert page.get_by_label("Empathy").is_checked()
    page.get_by_label("Empathy").uncheck()
    page.get_by_label("Attachment").check()
    page.get_by_role("button", name="Save topics").click()
    page.get_by_text("Saved.").wait_for()
    assert subscriber(web_settings, "ann@example.org").topics == ("attachment", "training")
    # Keyboard: the skip link is the first stop and leads to the content.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.close()


def test_sign_up_confirm_and_welcome(browser, server, app, smtp_server, web_settings):
    page = browser.new_page()
    page.goto(f"{server}/subscribe")
    page.get_by_label("Email address").fill("browser.reader@example.org")
    page.get_by_label("Name").fill("Bea")
    page.get_by_label("All topics").uncheck()
    page.get_by_label("Empathy").check()
    page.get_by_label("I agree").check()
    page.get_by_role("button", name="Subscribe").click()
    page.get_by_role("heading", name="Check your email").wait_for()
    wait_jobs(app)
    (msg,) = [m.parsed() for m in smtp_server.messages]
    path = LINK.search(msg.get_body(("plain",)).get_content()).group(1)
    from newsletter.store import SubscriberNotFoundError

    with pytest.raises(SubscriberNotFoundError):  # nobody is stored before confirming
        subscriber(web_settings, "browser.reader@example.org")
    page.goto(server + path)
    page.get_by_role("button", name="Confirm my subscription").click()
    page.get_by_role("heading", name="You are subscribed").wait_for()
    sub = subscriber(web_settings, "browser.reader@example.org")
    assert (sub.status, sub.name, sub.topics) == ("active", "Bea", ("empathy",))
    wait_jobs(app)
    welcome = smtp_server.messages[-1].parsed()
    assert welcome["To"] == "browser.reader@example.org"
    assert "Therapist Empathy and Client Outcome" in welcome.get_body(("plain",)).get_content()
    page.close()


@pytest.mark.parametrize("width", [375, 1280])
def test_ticking_a_topic_unticks_all_topics(
    browser, server, app, smtp_server, web_settings, shots, width
):
    page = browser.new_page(viewport={"width": width, "height": 900})
    errors: list[str] = []  # script errors and refusals by the Content-Security-Policy
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "console",
        lambda m: (
            errors.append(m.text)
            if m.type == "error" and "favicon" not in m.location.get("url", "")
            else None
        ),
    )
    page.goto(f"{server}/subscribe")
    all_box = page.get_by_label("All topics")
    assert all_box.is_checked()  # the default
    page.get_by_label("Empathy").check()
    assert not all_box.is_checked()
    page.get_by_label("Training").check()
    all_box.check()  # back to everything: the ticks go
    assert not page.get_by_label("Empathy").is_checked()
    assert not page.get_by_label("Training").is_checked()
    page.get_by_label("Empathy").check()
    page.get_by_label("Training").check()
    page.get_by_label("Email address").fill(f"picker{width}@example.org")
    page.get_by_label("I agree").check()
    page.screenshot(path=str(shots / f"signup-picker-{width}.png"), full_page=True)
    page.get_by_role("button", name="Subscribe").click()
    page.get_by_role("heading", name="Check your email").wait_for()
    page.screenshot(path=str(shots / f"check-email-{width}.png"), full_page=True)
    assert errors == []  # the script ran under the page's Content-Security-Policy
    wait_jobs(app)
    (msg,) = [m.parsed() for m in smtp_server.messages]
    path = LINK.search(msg.get_body(("plain",)).get_content()).group(1)
    page.goto(server + path)
    page.get_by_text("Your topics: Empathy; Training").wait_for()
    page.screenshot(path=str(shots / f"confirm-{width}.png"), full_page=True)
    page.get_by_role("button", name="Confirm my subscription").click()
    page.get_by_role("heading", name="You are subscribed").wait_for()
    page.screenshot(path=str(shots / f"confirmed-{width}.png"), full_page=True)
    sub = subscriber(web_settings, f"picker{width}@example.org")
    assert (sub.all_topics, sub.topics) == (False, ("empathy", "training"))
    page.close()


def test_one_click_then_the_send_skips_the_address(browser, server, smtp_server, web_settings):
    from tests.support.services import WorkerOptions, plan_issue_send, run_worker

    # Planned before the POST: the queued row must not go out.
    plan_issue_send(web_settings, "2026-11")
    t = make_token(web_settings, "unsubscribe", _id(web_settings, "all@example.org"))
    context = browser.new_context()
    r = context.request.post(
        f"{server}/unsubscribe/{t}",
        data="List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        max_redirects=0,
    )
    assert r.status == 200
    run_worker(web_settings, WorkerOptions(months=["2026-11"]))
    got = {rcpt for m in smtp_server.messages for rcpt in m.rcpt_tos}
    assert "all@example.org" not in got
    assert "ann@example.org" in got  # the send itself went out
    context.close()


def _pages(web_settings) -> list[str]:
    from tests.support.services import add_subscriber

    pending = add_subscriber(web_settings, "pending@example.org", pending=True, source="web")
    ann = _id(web_settings, "ann@example.org")
    solo = _id(web_settings, "solo@example.org")
    tok = lambda p, i: make_token(web_settings, p, i)  # noqa: E731
    return [
        "/",
        "/preferences",
        f"/preferences/{tok('preferences', ann)}",
        f"/preferences/{tok('preferences', _id(web_settings, 'left@example.org'))}",
        f"/unsubscribe/{tok('unsubscribe', ann)}",
        f"/topic/{tok('topic', ann)}/empathy",
        f"/topic/{tok('topic', solo)}/empathy",
        f"/topic/{tok('topic', ann)}/attachment",
        f"/confirm/{tok('confirm', pending.id)}",
        f"/preferences/{tok('preferences', 0)}",  # from a test message (send-test)
        "/preferences/not-a-token",
        "/archive",
        "/archive?topic=empathy",
        "/archive/2026-10",
        "/archive/2026-09/the-alliance-still-predicts-outcome-across-hundreds-of-studies",
        "/no-such-page",
    ]


def test_every_page_fits_a_phone(browser, server, web_settings, tmp_path):
    page = browser.new_page(viewport={"width": 375, "height": 740})
    shots = tmp_path / "shots"
    shots.mkdir()
    for n, path in enumerate(_pages(web_settings)):
        page.goto(server + path)
        width = page.evaluate("document.scrollingElement.scrollWidth")
        assert width <= 375, f"{path} is {width}px wide"
        assert page.locator("h1").count() >= 1, path
        page.screenshot(path=str(shots / f"{n:02d}.png"), full_page=True)
    # Forms too: a sign-up with errors still fits.
    page.goto(server + "/subscribe")
    page.get_by_role("button", name="Subscribe").click()
    page.get_by_text("Enter your email address.").first.wait_for()
    assert page.evaluate("document.scrollingElement.scrollWidth") <= 375
    page.close()


def _gap_under_header(page) -> float:
    """Pixels between the header bar and the first thing of the page's content."""
    return page.evaluate(
        """() => document.querySelector('main > :first-child').getBoundingClientRect().top
                 - document.querySelector('header.site').getBoundingClientRect().bottom"""
    )


@pytest.mark.parametrize("width", [375, 1280])
def test_headings_keep_clear_of_the_header_bar(browser, server, web_settings, shots, width):
    page = browser.new_page(viewport={"width": width, "height": 800})
    for n, path in enumerate(_pages(web_settings)):
        page.goto(server + path)
        assert _gap_under_header(page) >= 16, path
        page.screenshot(path=str(shots / f"page{n:02d}-{width}.png"))
    # The page after unsubscribing, reached with the unsubscribe page's button.
    t = make_token(web_settings, "unsubscribe", _id(web_settings, "solo@example.org"))
    page.goto(f"{server}/unsubscribe/{t}")
    page.get_by_role("button", name="Unsubscribe").click()
    page.get_by_role("heading", name="You are unsubscribed").wait_for()
    assert _gap_under_header(page) >= 16
    page.screenshot(path=str(shots / f"unsubscribed-{width}.png"))
    page.close()


def test_the_unsubscribe_page_links_to_the_preferences(browser, server, web_settings, shots):
    t = make_token(web_settings, "unsubscribe", _id(web_settings, "ann@example.org"))
    page = browser.new_page(viewport={"width": 375, "height": 740})
    page.goto(f"{server}/unsubscribe/{t}")
    page.screenshot(path=str(shots / "unsubscribe-375.png"))
    page.get_by_role("link", name="choose your topics or pause").click()
    page.get_by_role("heading", name="Your preferences").wait_for()
    assert page.get_by_label("Empathy").is_checked()  # Ann's own page
    assert subscriber(web_settings, "ann@example.org").status == "active"  # nothing changed
    page.close()


@pytest.mark.parametrize("width", [375, 1280])
def test_pause_and_unsubscribe_come_before_the_topic_boxes(
    browser, server, web_settings, shots, width
):
    t = make_token(web_settings, "preferences", _id(web_settings, "ann@example.org"))
    page = browser.new_page(viewport={"width": width, "height": 800})
    page.goto(f"{server}/preferences/{t}")
    top = lambda locator: locator.bounding_box()["y"]  # noqa: E731
    first_topic = top(page.locator('input[name="topics"]').first)
    assert top(page.get_by_role("button", name="Pause")) < first_topic
    assert top(page.get_by_role("button", name="Unsubscribe")) < first_topic
    if width == 375:  # both within the first screen and a half of a phone
        assert top(page.get_by_role("button", name="Unsubscribe")) < 1.5 * 740
    page.screenshot(path=str(shots / f"preferences-{width}.png"), full_page=True)
    page.close()
