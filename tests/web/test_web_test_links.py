"""The links of a test message (``send-test``): sent to someone who is not a subscriber,
they open a page saying so; sent as a subscriber, they are that subscriber's own links."""

from __future__ import annotations

import re

from newsletter.services import App, sends
from tests.web.conftest import csrf_of, subscriber

LINK = re.compile(r"https://news\.example\.org(/(?:preferences|unsubscribe|topic)/[^\s\"<>]+)")


def _test_message(web_settings, smtp_server, **who):
    with App(web_settings) as app:
        result = sends.send_test(app, "2026-11", "author@example.org", **who)
    assert result.status == "sent"
    (msg,) = [m.parsed() for m in smtp_server.messages if "author@example.org" in m.rcpt_tos]
    return msg


def _links(msg) -> list[str]:
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    return sorted(set(LINK.findall(text)) | set(LINK.findall(html)))


def test_links_of_a_test_to_a_non_subscriber_explain_themselves(client, web_settings, smtp_server):
    before = [subscriber(web_settings, a) for a in ("ann@example.org", "all@example.org")]
    links = _links(_test_message(web_settings, smtp_server, topics="Training"))
    kinds = {path.split("/")[1] for path in links}
    assert kinds == {"preferences", "unsubscribe", "topic"}
    for path in links:
        r = client.get(path)
        page = r.get_data(as_text=True)
        assert r.status_code == 200, path
        assert "This link is from a test message" in page
        assert "does not work" not in page
        assert "--subscriber" in page  # how to try the links as a subscriber
    # The one-click address answers the same way, and changes nobody.
    unsubscribe = next(p for p in links if p.startswith("/unsubscribe/"))
    r = client.post(unsubscribe, data={"List-Unsubscribe": "One-Click"})
    assert r.status_code == 200 and "from a test message" in r.get_data(as_text=True)
    assert [subscriber(web_settings, a) for a in ("ann@example.org", "all@example.org")] == before


def test_a_test_sent_as_a_subscriber_has_their_name_topics_and_links(
    client, web_settings, smtp_server
):
    msg = _test_message(web_settings, smtp_server, subscriber="ann@example.org")
    assert msg["Subject"].startswith("[TEST] ")
    assert msg["To"] == "author@example.org"  # not the subscriber's name or address
    text = msg.get_body(("plain",)).get_content()
    assert "Dear Ann," in text and "Sent to ann@example.org" in text
    assert "Empathy" in text.split("Your topics:")[1]
    prefs = next(p for p in _links(msg) if p.startswith("/preferences/"))
    page = client.get(prefs).get_data(as_text=True)
    assert "ann@example.org" in page and "Your preferences" in page
    # The links act for that subscriber: saving the page changes their topics.
    client.post(
        prefs, data={"csrf_token": csrf_of(page), "action": "save", "topics": ["attachment"]}
    )
    assert subscriber(web_settings, "ann@example.org").topics == ("attachment",)
