"""Sign-up with double opt-in, welcome email, lost links: through the real SMTP server."""

from __future__ import annotations

import re

import pytest

from newsletter.tokens import fixed_clock, make_token
from tests.web.conftest import assert_security_headers, csrf_of, subscriber, wait_jobs

LINK = re.compile(r"https://news\.example\.org(/[^\s\"<>]+)")


def mails_to(smtp_server, address: str):
    return [m.parsed() for m in smtp_server.messages if address in m.rcpt_tos]


def text_of(msg) -> str:
    return msg.get_body(("plain",)).get_content()


def signup(client, **fields):
    page = client.get("/subscribe").get_data(as_text=True)
    data = {"csrf_token": csrf_of(page), "consent": "1", **fields}
    return client.post("/subscribe", data=data, environ_base={"REMOTE_ADDR": "198.51.100.9"})


def not_in_store(settings, address: str) -> bool:
    from newsletter.store import SubscriberNotFoundError

    try:
        subscriber(settings, address)
    except SubscriberNotFoundError:
        return True
    return False


def test_signup_confirm_welcome(app, client, smtp_server, web_settings):
    r = signup(client, email="New.Reader@Example.org", name="Nina", topics=["empathy"])
    assert r.status_code == 200
    sent = " ".join(r.get_data(as_text=True).split())
    assert "Check your email" in sent
    # Plain words: where the message went, what to do with it, and what if nothing came.
    assert "can be subscribed" not in sent
    assert "Open it and press the link inside to confirm your subscription" in sent
    assert "No newsletter comes until you confirm" in sent
    assert "spam or junk folder" in sent
    assert_security_headers(r)
    wait_jobs(app)
    # Nobody is added before the address's owner confirms.
    assert not_in_store(web_settings, "new.reader@example.org")

    (mail,) = mails_to(smtp_server, "new.reader@example.org")
    assert "confirm" in mail["Subject"].lower()
    assert "Nina" not in text_of(mail)  # what a stranger typed never reaches the address
    assert "Nina" not in mail.get_body(("html",)).get_content()
    path = LINK.search(text_of(mail)).group(1)
    assert path.startswith("/confirm/")

    # Following the link shows a button; nothing changes until it is pressed.
    page = client.get(path)
    assert page.status_code == 200
    assert "new.reader@example.org" in page.get_data(as_text=True)
    assert_security_headers(page)
    assert not_in_store(web_settings, "new.reader@example.org")
    r = client.post(
        path,
        data={"csrf_token": csrf_of(page.get_data(as_text=True))},
        environ_base={"REMOTE_ADDR": "203.0.113.5"},
    )
    assert r.status_code == 200
    assert "You are subscribed" in r.get_data(as_text=True)
    assert_security_headers(r)
    sub = subscriber(web_settings, "new.reader@example.org", history=True)
    assert sub.status == "active" and sub.topics == ("empathy",) and sub.name == "Nina"
    assert sub.source == "web" and sub.confirmed_at is not None
    # The consent log: the sign-up (its time, IP and consent text), then the confirmation.
    first, last = sub.events[0], sub.events[-1]
    assert (first.event, first.source, first.ip, first.consent_version) == (
        "subscribed",
        "web",
        "198.51.100.9",
        "test-consent-1",
    )
    assert (last.event, last.ip, last.consent_version) == (
        "confirmed",
        "203.0.113.5",
        "test-consent-1",
    )
    assert "198.51.100.9" in last.detail and "empathy" in last.detail

    wait_jobs(app)
    mails = mails_to(smtp_server, "new.reader@example.org")
    assert len(mails) == 2
    welcome = mails[1]
    assert "Welcome" in welcome["Subject"]
    body = text_of(welcome)
    # The newest published summary on Empathy (2026-10), with its archive link.
    assert "Therapist Empathy and Client Outcome" in body
    assert "https://news.example.org/archive/2026-10/" in body
    assert "The Alliance Still Predicts" not in body  # not on Empathy
    assert welcome["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert welcome.get_body(("html",)) is not None

    # The request is used up: confirming twice changes nothing and sends nothing more.
    r = client.post(path, data={"csrf_token": csrf_of(page.get_data(as_text=True))})
    assert r.status_code == 404
    assert "This link does not work" in r.get_data(as_text=True)
    assert_security_headers(r)
    assert len(subscriber(web_settings, "new.reader@example.org", history=True).events) == 2
    wait_jobs(app)
    assert len(mails_to(smtp_server, "new.reader@example.org")) == 2


def test_ticked_topics_win_over_the_all_topics_box(app, client, smtp_server, web_settings):
    """Without the page's script, ticking topics leaves "All topics" ticked: both arrive,
    and the person meant the topics. Every page and the welcome mail show them."""
    r = signup(
        client, email="two.topics@example.org", all_topics="1", topics=["empathy", "training"]
    )
    assert r.status_code == 200
    wait_jobs(app)
    (mail,) = mails_to(smtp_server, "two.topics@example.org")
    path = LINK.search(text_of(mail)).group(1)
    page = client.get(path).get_data(as_text=True)
    assert "Your topics: <strong>Empathy; Training</strong>" in page
    assert "every topic" not in page
    r = client.post(path, data={"csrf_token": csrf_of(page)})
    done = r.get_data(as_text=True)
    assert "You are subscribed" in done
    assert "Your topics: <strong>Empathy; Training</strong>" in done
    sub = subscriber(web_settings, "two.topics@example.org")
    assert (sub.all_topics, sub.topics) == (False, ("empathy", "training"))
    wait_jobs(app)
    welcome = mails_to(smtp_server, "two.topics@example.org")[-1]
    body = " ".join(text_of(welcome).split())
    assert "your topics: Empathy; Training." in body
    assert "every topic" not in body
    assert "your topics: Empathy; Training." in " ".join(
        welcome.get_body(("html",)).get_content().split()
    )


def test_the_all_topics_box_alone_means_every_topic(app, client, smtp_server, web_settings):
    signup(client, email="everything@example.org", all_topics="1")
    wait_jobs(app)
    (mail,) = mails_to(smtp_server, "everything@example.org")
    path = LINK.search(text_of(mail)).group(1)
    page = client.get(path).get_data(as_text=True)
    assert "Your topics: <strong>every topic</strong>" in page
    client.post(path, data={"csrf_token": csrf_of(page)})
    assert subscriber(web_settings, "everything@example.org").all_topics


def test_preferences_keep_ticked_topics_over_the_all_topics_box(client, token, web_settings):
    t = token("preferences", "all@example.org")
    page = client.get(f"/preferences/{t}").get_data(as_text=True)
    r = client.post(
        f"/preferences/{t}",
        data={
            "csrf_token": csrf_of(page),
            "action": "save",
            "all_topics": "1",
            "topics": ["attachment"],
        },
    )
    assert r.status_code == 200
    sub = subscriber(web_settings, "all@example.org")
    assert (sub.all_topics, sub.topics) == (False, ("attachment",))


def test_signup_for_existing_address_answers_the_same(app, client, smtp_server, web_settings):
    new = signup(client, email="fresh@example.org", all_topics="1")
    known = signup(client, email="ann@example.org", all_topics="1", name="Mallory")
    assert new.status_code == known.status_code == 200
    norm = lambda r, a: r.get_data(as_text=True).replace(a, "X")  # noqa: E731
    assert norm(new, "fresh@example.org") == norm(known, "ann@example.org")
    wait_jobs(app)
    # The known active subscriber is not changed; they get a link to their preferences.
    sub = subscriber(web_settings, "ann@example.org", history=True)
    assert sub.topics == ("empathy", "training") and sub.name == "Ann Example"
    assert [e.event for e in sub.events] == ["subscribed"]
    (mail,) = mails_to(smtp_server, "ann@example.org")
    assert "/preferences/" in text_of(mail)
    assert "Mallory" not in text_of(mail)


def test_a_strangers_signup_changes_nobody_until_the_owner_confirms(
    app, client, smtp_server, web_settings
):
    before = subscriber(web_settings, "left@example.org", history=True)
    signup(client, email="left@example.org", name="Mallory", topics=["attachment"])
    wait_jobs(app)
    # The unsubscribed person's record is exactly as it was: status, name, topics, log.
    assert subscriber(web_settings, "left@example.org", history=True) == before
    (mail,) = mails_to(smtp_server, "left@example.org")
    assert "Mallory" not in text_of(mail)
    path = LINK.search(text_of(mail)).group(1)
    assert path.startswith("/confirm/")

    # The owner confirms: back on the list with what the request asked for.
    page = client.get(path)
    assert page.status_code == 200
    assert subscriber(web_settings, "left@example.org", history=True) == before
    r = client.post(path, data={"csrf_token": csrf_of(page.get_data(as_text=True))})
    assert "You are subscribed" in r.get_data(as_text=True)
    sub = subscriber(web_settings, "left@example.org", history=True)
    assert sub.status == "active" and sub.topics == ("attachment",) and sub.name == "Mallory"
    assert sub.unsubscribed_at is None
    back = sub.events[-1]
    assert (back.event, back.source, back.consent_version) == (
        "resubscribed",
        "web",
        "test-consent-1",
    )
    assert "web sign-up" in back.detail and "198.51.100.9" in back.detail
    assert len(sub.events) == len(before.events) + 1


def test_a_pending_person_is_unchanged_until_they_confirm(app, client, smtp_server, web_settings):
    from tests.support.services import add_subscriber

    add_subscriber(web_settings, "waiting@example.org", pending=True, topics="Training")
    before = subscriber(web_settings, "waiting@example.org", history=True)
    signup(client, email="waiting@example.org", name="Eve", topics=["empathy"])
    wait_jobs(app)
    assert subscriber(web_settings, "waiting@example.org", history=True) == before
    (mail,) = mails_to(smtp_server, "waiting@example.org")
    path = LINK.search(text_of(mail)).group(1)
    page = client.get(path)
    client.post(path, data={"csrf_token": csrf_of(page.get_data(as_text=True))})
    sub = subscriber(web_settings, "waiting@example.org", history=True)
    assert sub.status == "active" and sub.topics == ("empathy",) and sub.name == "Eve"
    assert sub.events[-1].event == "confirmed"


def test_confirming_an_older_request_after_joining_changes_nothing(
    app, client, smtp_server, web_settings
):
    """Two requests for one address: confirming one uses up both."""
    signup(client, email="twice@example.org", topics=["empathy"])
    signup(client, email="twice@example.org", topics=["training"])
    wait_jobs(app)
    first, second = (
        LINK.search(text_of(m)).group(1) for m in mails_to(smtp_server, "twice@example.org")
    )
    page = client.get(second)
    client.post(second, data={"csrf_token": csrf_of(page.get_data(as_text=True))})
    assert subscriber(web_settings, "twice@example.org").topics == ("training",)
    assert client.get(first).status_code == 404
    assert subscriber(web_settings, "twice@example.org").topics == ("training",)


def test_signup_errors_keep_what_was_typed(client, web_settings):
    r = signup(client, email="not-an-address", name="Nina Q", topics=["empathy"], consent="")
    assert r.status_code == 400
    html = r.get_data(as_text=True)
    assert "Enter an email address like" in html
    assert "Please tick the box" in html
    assert 'value="not-an-address"' in html
    assert 'value="Nina Q"' in html
    assert 'value="empathy" checked' in html
    assert 'aria-invalid="true"' in html


@pytest.mark.parametrize("name", ["Ann\x00Lee", "Ann\nLee", "Ann\x1b[31mLee", "A" * 201])
def test_signup_refuses_a_name_that_cannot_be_stored(app, client, smtp_server, name):
    """The form says what is wrong with the name at once (not "check your email" and then
    nothing), and nothing is stored or sent."""
    r = signup(client, email="named@example.org", name=name, topics=["empathy"])
    assert r.status_code == 400
    html = r.get_data(as_text=True)
    assert "one line, as plain text" in html or "shorten your name" in html
    app.extensions["newsletter"].jobs.wait_idle()
    assert smtp_server.messages == []


def test_signup_needs_a_topic(client):
    r = signup(client, email="x@example.org")
    assert r.status_code == 400
    assert "Choose at least one topic" in r.get_data(as_text=True)


def test_signup_without_csrf_keeps_the_form(app, client, smtp_server):
    r = client.post(
        "/subscribe", data={"email": "x@example.org", "all_topics": "1", "consent": "1"}
    )
    assert r.status_code == 400
    assert 'value="x@example.org"' in r.get_data(as_text=True)
    wait_jobs(app)
    assert not smtp_server.messages


def test_honeypot_pretends_success_and_does_nothing(app, client, smtp_server, web_settings):
    r = signup(client, email="bot@example.org", all_topics="1", website="http://spam")
    assert r.status_code == 200
    wait_jobs(app)
    assert not smtp_server.messages
    from newsletter.store import SubscriberNotFoundError

    with pytest.raises(SubscriberNotFoundError):
        subscriber(web_settings, "bot@example.org")


def test_rate_limit_per_address_and_per_ip(app, client, web_settings):
    for _ in range(web_settings.signup_limit_per_address):
        assert signup(client, email="flood@example.org", all_topics="1").status_code == 200
    assert signup(client, email="flood@example.org", all_topics="1").status_code == 429
    # Another address from the same IP still works until the per-IP limit.
    assert signup(client, email="other@example.org", all_topics="1").status_code == 200
    for i in range(web_settings.signup_limit_per_ip):
        signup(client, email=f"p{i}@example.org", all_topics="1")
    assert signup(client, email="last@example.org", all_topics="1").status_code == 429


def test_expired_confirmation_link(client, web_settings):
    from tests.support.services import add_subscriber

    sub = add_subscriber(web_settings, "late@example.org", pending=True, source="web")
    with fixed_clock(1_000_000_000):
        old = make_token(web_settings, "confirm", sub.id)
    r = client.get(f"/confirm/{old}")
    assert r.status_code == 400
    assert "This link has expired" in r.get_data(as_text=True)
    fresh = make_token(web_settings, "confirm", sub.id)
    assert client.get(f"/confirm/{fresh}").status_code == 200


def test_lost_link_same_answer_and_email_only_when_known(app, client, smtp_server):
    def ask(address):
        page = client.get("/preferences").get_data(as_text=True)
        return client.post("/preferences", data={"csrf_token": csrf_of(page), "email": address})

    known, unknown = ask("ann@example.org"), ask("nobody@example.org")
    assert known.status_code == unknown.status_code == 200
    a = known.get_data(as_text=True).replace("ann@example.org", "X")
    b = unknown.get_data(as_text=True).replace("nobody@example.org", "X")
    assert a == b
    wait_jobs(app)
    assert [m.rcpt_tos for m in smtp_server.messages] == [["ann@example.org"]]
    path = LINK.search(text_of(smtp_server.messages[0].parsed())).group(1)
    assert client.get(path).status_code == 200


def test_lost_link_bad_address_redisplays(client):
    page = client.get("/preferences").get_data(as_text=True)
    r = client.post("/preferences", data={"csrf_token": csrf_of(page), "email": "nope"})
    assert r.status_code == 400
    assert 'value="nope"' in r.get_data(as_text=True)


def test_lost_link_answers_before_any_work_and_the_same_for_known_and_unknown(
    app, client, smtp_server
):
    """The request only queues one job, whatever the address; the lookup and the mail
    come after the answer (here: only once the background thread is let go)."""
    import threading

    jobs = app.extensions["newsletter"].jobs
    gate = threading.Event()
    jobs.submit(gate.wait)  # hold the background thread
    try:
        page = client.get("/preferences").get_data(as_text=True)
        answers = []
        for n, address in enumerate(["ann@example.org", "nobody@example.org"], start=2):
            r = client.post("/preferences", data={"csrf_token": csrf_of(page), "email": address})
            assert r.status_code == 200
            assert_security_headers(r)
            answers.append(r.get_data(as_text=True).replace(address, "X"))
            assert jobs.pending == n  # one job queued for each, known or not
        assert answers[0] == answers[1]
        assert not smtp_server.messages  # nothing was sent while answering
    finally:
        gate.set()
    wait_jobs(app)
    assert [m.rcpt_tos for m in smtp_server.messages] == [["ann@example.org"]]


def test_jobs_of_a_request_are_queued_only_with_its_finished_response(app):
    from flask import Response

    ctx = app.extensions["newsletter"]
    ran = []
    with app.test_request_context("/preferences", method="POST"):
        ctx.submit(lambda: ran.append("job"))
        assert ctx.jobs.pending == 0  # still answering: not queued yet
        app.process_response(Response("ok"))
        assert ctx.jobs.pending in (0, 1)
    wait_jobs(app)
    assert ran == ["job"]
