"""One way to build and send a single email: every one-off mail goes through the digest's
message builder and the app's transport, in the branded layout, honouring dev_redirect."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.config import load_settings
from newsletter.services import App, mail, signup, subscribers
from tests.support.smtpserver import received


@pytest.fixture
def settings(isolated_env: Path, store_url: str, smtp_server):
    (isolated_env / "newsletter.toml").write_text(
        'newsletter_name = "Research Digest"\n'
        'sender_name = "Research Digest"\n'
        'sender_address = "digest@example.org"\n'
        'reply_to = "editor@example.org"\n'
        'postal_address = "1 Example Street, Exampletown"\n'
        'secret_key = "mail-test-key"\n'
        'base_url = "https://news.example.org"\n'
        'author_address = "author@example.org"\n'
        f'database_url = "{store_url}"\n'
        f'smtp_url = "{smtp_server.url}"\n'
    )
    (isolated_env / "issues").mkdir(exist_ok=True)
    return load_settings(isolated_env / "newsletter.toml", environ={})


def test_a_confirmation_is_built_like_a_digest(settings, smtp_server) -> None:
    with App(settings) as app:
        sub = subscribers.add_subscriber(app, "new@example.org", name="Nina", pending=True)
        signup.send_confirmation(app, sub)
    [msg] = received(smtp_server)["new@example.org"]
    assert msg["From"] == "Research Digest <digest@example.org>"
    assert msg["To"] == "new@example.org"
    assert msg["Reply-To"] == "editor@example.org"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["Message-ID"].startswith("<confirm.") and msg["Message-ID"].endswith("@example.org>")
    assert msg["List-Id"] is None  # one person, not the list
    assert msg["List-Unsubscribe"] is None  # not subscribed yet
    assert msg.get_content_type() == "multipart/alternative"
    html = msg.get_body(("html",)).get_content()
    text = msg.get_body(("plain",)).get_content()
    assert "Research Digest" in html and "https://news.example.org/confirm/" in html
    assert "https://news.example.org/confirm/" in text


def test_mails_to_subscribers_carry_one_click_unsubscribe(settings, smtp_server) -> None:
    with App(settings) as app:
        sub = subscribers.add_subscriber(app, "ann@example.org", topics="Empathy")
        signup.send_preferences_link(app, sub)
    [msg] = received(smtp_server)["ann@example.org"]
    assert msg["List-Unsubscribe"].startswith("<https://news.example.org/unsubscribe/")
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_dev_redirect_catches_every_one_off_mail(settings, smtp_server) -> None:
    from dataclasses import replace

    staging = replace(settings, dev_redirect="stage@example.org")
    with App(staging) as app:
        sub = subscribers.add_subscriber(app, "real@example.org", pending=True)
        signup.send_confirmation(app, sub)
        assert mail.notify_author(
            app, mail.AuthorNote(subject="Report", title="A report", paragraphs=["Done."])
        )
    got = received(smtp_server)
    assert set(got) == {"stage@example.org"}
    originals = sorted(m["X-Original-To"] for m in got["stage@example.org"])
    assert originals == ["author@example.org", "real@example.org"]


def test_the_author_note_is_in_the_layout_and_never_raises(settings, smtp_server) -> None:
    note = mail.AuthorNote(
        subject="[Research Digest] 2026-11 sent: 3 messages",
        title="2026-11 sent: 3 messages",
        paragraphs=["The send has run."],
        facts=[("sent", "3")],
        commands=["newsletter deliveries status 2026-11"],
    )
    with App(settings) as app:
        assert mail.notify_author(app, note)
    [msg] = received(smtp_server)["author@example.org"]
    assert msg["Subject"] == note.subject
    text = msg.get_body(("plain",)).get_content()
    assert "The send has run." in text and "newsletter deliveries status 2026-11" in text
    smtp_server.stop()  # the server is down: the note is lost, the caller carries on
    with App(settings) as app:
        assert mail.notify_author(app, note) is False
