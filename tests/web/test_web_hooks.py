"""Provider webhooks through the Flask test client, on SQLite and PostgreSQL.

A real send (aiosmtpd) to the sample people first, so each event has a delivery to be
about. Then, per provider, what a genuine event does (a permanent bounce marks the person
``bounced`` with its evidence, a complaint unsubscribes, a redelivery changes nothing) and
the verification matrix: every forged, tampered, stale or replayed request is refused and
changes nothing. Payloads are built in ``tests/support/hooks.py`` from the providers'
documented formats.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from newsletter.config import Settings
from newsletter.services import App, bounces, subscribers
from newsletter.web import create_app
from tests.support import hooks as h
from tests.support.delivery_runs import ledger_rows, settings_of
from tests.support.services import (
    SAMPLE_MONTH,
    SAMPLE_PEOPLE,
    WorkerOptions,
    add_people,
    plan_issue_send,
    run_worker,
)

SES_SECRET = "ses-hook-password-1"
POSTMARK_SECRET = "postmark-hook-password-2"
MAILGUN_KEY = "key-mailgun-signing-3"
SENDGRID = h.SendGridSigner()
NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)
SECRETS = (SES_SECRET, POSTMARK_SECRET, MAILGUN_KEY, SENDGRID.public_b64)


class Hooked:
    """The app of a project that sent the sample issue, with every hook on."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.now = NOW
        self.app = App(settings, clock=lambda: self.now)
        self.flask = create_app(self.app)
        self.flask.config["TESTING"] = True
        self.client = self.flask.test_client()
        self.fetched: list[str] = []
        self.signer = h.SnsSigner(NOW)
        state = bounces.hook_state(self.app)
        state.fetch = self._fetch

    def _fetch(self, url: str) -> bytes:
        self.fetched.append(url)
        if url == self.signer.cert_url:
            return self.signer.pem
        if "Action=ConfirmSubscription" in url:
            return b"<ConfirmSubscriptionResponse/>"
        raise OSError("no network in tests")

    def post(self, provider: str, body: bytes | dict[str, Any] | list[Any], **headers: str):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self.client.post(f"/hooks/{provider}", data=data, headers=headers)

    def status(self) -> dict[str, str]:
        return {e: subscribers.get_subscriber(self.app, e).status for e in SAMPLE_PEOPLE}

    def bounce_rows(self) -> list[Any]:
        return bounces.list_bounces(self.app)

    def message_id(self, email: str) -> str:
        return ledger_rows(self.settings, SAMPLE_MONTH)[email].message_id


@pytest.fixture
def hooked(send_project: Path) -> Iterator[Hooked]:
    with open(send_project / "newsletter.toml", "a") as f:
        f.write(
            f'ses_webhook_secret = "{SES_SECRET}"\n'
            f'postmark_webhook_secret = "{POSTMARK_SECRET}"\n'
            f'mailgun_signing_key = "{MAILGUN_KEY}"\n'
            f'sendgrid_verification_key = "{SENDGRID.public_b64}"\n'
        )
    settings = settings_of(send_project)
    add_people(settings, {a: topics for a, (topics, _) in SAMPLE_PEOPLE.items()})
    plan_issue_send(settings, SAMPLE_MONTH)
    run_worker(settings, WorkerOptions(months=[SAMPLE_MONTH]))
    hooked = Hooked(settings)
    yield hooked
    hooked.flask.extensions["newsletter"].close()


ALL_ACTIVE = dict.fromkeys(SAMPLE_PEOPLE, "active")


def _ses(hooked: Hooked, message: dict[str, Any], password: str = SES_SECRET, **kw: Any):
    return hooked.post("ses", message, **h.basic_auth(password), **kw)


def test_unconfigured_hooks_answer_404(web_project: Path) -> None:
    from newsletter.config import load_settings

    flask = create_app(load_settings(web_project / "newsletter.toml", environ={}))
    client = flask.test_client()
    try:
        for provider in ("ses", "postmark", "mailgun", "sendgrid", "nope"):
            got = client.post(f"/hooks/{provider}", data=b"{}", headers=h.basic_auth("x"))
            assert got.status_code == 404, provider
    finally:
        flask.extensions["newsletter"].close()


def test_ses_bounce_complaint_and_subscription(hooked: Hooked) -> None:
    confirm = h.sns_subscription(
        "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&Token=2336"
    )
    assert _ses(hooked, hooked.signer.sign(confirm)).status_code == 200
    assert hooked.fetched == [hooked.signer.cert_url, confirm["SubscribeURL"]]

    bounce = hooked.signer.sign(
        h.sns_notification(
            h.ses_bounce("pdt@example.org", message_id=hooked.message_id("pdt@example.org"))
        )
    )
    assert _ses(hooked, bounce).status_code == 200
    assert hooked.status() == {**ALL_ACTIVE, "pdt@example.org": "bounced"}
    [row] = hooked.bounce_rows()
    assert (row.kind, row.status, row.source, row.month) == (
        "hard",
        "5.1.1",
        "webhook:ses",
        SAMPLE_MONTH,
    )
    assert "user unknown" in row.diagnostic
    # SNS redelivers the same message: nothing changes the second time.
    assert _ses(hooked, bounce).status_code == 200
    assert len(hooked.bounce_rows()) == 1
    assert hooked.fetched.count(hooked.signer.cert_url) == 1  # the certificate is cached

    complaint = hooked.signer.sign(h.sns_notification(h.ses_complaint("mixed@example.org")))
    assert _ses(hooked, complaint).status_code == 200
    # A transient bounce (SES gave up, mailbox full) is soft: recorded, still active.
    soft = h.ses_bounce(
        "efficacy@example.org", bounce_type="Transient", subtype="MailboxFull", status="5.2.2"
    )
    assert _ses(hooked, hooked.signer.sign(h.sns_notification(soft))).status_code == 200
    # A delivery notification and a bounce about someone we never mailed: 200, ignored.
    delivery = {"notificationType": "Delivery", "mail": {}, "delivery": {}}
    assert _ses(hooked, hooked.signer.sign(h.sns_notification(delivery))).status_code == 200
    stranger = h.sns_notification(h.ses_bounce("stranger@example.net"))
    assert _ses(hooked, hooked.signer.sign(stranger, version="1")).status_code == 200
    assert hooked.status() == {
        **ALL_ACTIVE,
        "pdt@example.org": "bounced",
        "mixed@example.org": "unsubscribed",
    }
    kinds = sorted((r.email, r.kind) for r in hooked.bounce_rows())
    assert kinds == [
        ("efficacy@example.org", "soft"),
        ("mixed@example.org", "complaint"),
        ("pdt@example.org", "hard"),
    ]


def test_ses_refuses_what_sns_did_not_sign(
    hooked: Hooked, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    signer = hooked.signer
    genuine = h.sns_notification(h.ses_bounce("pdt@example.org"))
    other_key = h.SnsSigner(NOW)  # the right URL, a certificate we did not fetch

    def tampered() -> dict[str, Any]:
        signed = signer.sign(genuine)
        return {**signed, "Message": signed["Message"].replace("pdt@", "all@")}

    bad_hosts = [
        "https://sns.eu-west-1.amazonaws.com.evil.example/cert.pem",
        "https://evil.example/sns.eu-west-1.amazonaws.com/cert.pem",
        "http://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0000test.pem",
        "https://sns.eu-west-1.amazonaws.com:8443/SimpleNotificationService-0000test.pem",
        "https://user@sns.eu-west-1.amazonaws.com/SimpleNotificationService-0000test.pem",
        "https://s3.eu-west-1.amazonaws.com/SimpleNotificationService-0000test.pem",
    ]
    cases: list[tuple[str, int, dict[str, Any], str]] = [
        ("no password", 401, signer.sign(genuine), ""),
        ("wrong password", 401, signer.sign(genuine), "wrong"),
        ("tampered message", 403, tampered(), SES_SECRET),
        ("other key", 403, other_key.sign(genuine), SES_SECRET),
        ("version 3", 403, {**signer.sign(genuine), "SignatureVersion": "3"}, SES_SECRET),
        (
            "version 1 claimed for a v2 signature",
            403,
            {**signer.sign(genuine), "SignatureVersion": "1"},
            SES_SECRET,
        ),
        (
            "no signature",
            403,
            {**genuine, "SignatureVersion": "2", "SigningCertURL": signer.cert_url},
            SES_SECRET,
        ),
    ]
    cases += [(f"host {u}", 403, signer.sign(genuine, cert_url=u), SES_SECRET) for u in bad_hosts]
    foreign_confirm = h.sns_subscription("https://evil.example/?Action=ConfirmSubscription")
    cases.append(("subscribe url elsewhere", 403, signer.sign(foreign_confirm), SES_SECRET))
    for name, status, message, password in cases:
        headers = h.basic_auth(password) if password else {}
        got = hooked.post("ses", message, **headers)
        assert got.status_code == status, name
        assert got.get_data(as_text=True).strip() in ("unauthorized", "refused"), name
    assert hooked.status() == ALL_ACTIVE and hooked.bounce_rows() == []
    # Nothing was fetched from a host that is not SNS, nor any SubscribeURL elsewhere.
    assert set(hooked.fetched) <= {signer.cert_url}
    assert not any(s in caplog.text for s in SECRETS)
    assert _ses(hooked, {"Type": "Notification"}).status_code == 403  # no certificate URL
    assert _ses(hooked, {"Type": "Weird"}).status_code == 400
    assert _ses(hooked, b"not json").status_code == 400


def test_postmark_bounce_complaint_and_refusals(
    hooked: Hooked, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    auth = h.basic_auth(POSTMARK_SECRET)
    bounce = h.postmark_bounce("pdt@example.org", 4_242_001)
    # Refused: no credentials, wrong ones (401 with a challenge); nothing changes.
    assert hooked.post("postmark", bounce).status_code == 401
    wrong = hooked.post("postmark", bounce, **h.basic_auth("guess"))
    assert wrong.status_code == 401 and "Basic" in wrong.headers["WWW-Authenticate"]
    assert hooked.status() == ALL_ACTIVE
    # A provider's server is no browser: a foreign Origin is not a CSRF refusal here.
    got = hooked.post("postmark", bounce, Origin="https://api.postmarkapp.com", **auth)
    assert got.status_code == 200
    assert hooked.post("postmark", bounce, **auth).status_code == 200  # redelivered
    complaint = h.postmark_complaint("mixed@example.org", 4_242_002)
    assert hooked.post("postmark", complaint, **auth).status_code == 200
    auto = h.postmark_bounce("all@example.org", 4_242_003, type_="AutoResponder", type_code=64)
    assert hooked.post("postmark", auto, **auth).status_code == 200
    assert hooked.status() == {
        **ALL_ACTIVE,
        "pdt@example.org": "bounced",
        "mixed@example.org": "unsubscribed",
    }
    rows = {r.email: r for r in hooked.bounce_rows()}
    assert set(rows) == {"pdt@example.org", "mixed@example.org"}
    assert (rows["pdt@example.org"].kind, rows["pdt@example.org"].source) == (
        "hard",
        "webhook:postmark",
    )
    assert "does not exist" in rows["pdt@example.org"].diagnostic
    assert not any(s in caplog.text for s in SECRETS)


def test_mailgun_signature_clock_and_replay(
    hooked: Hooked, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    ts = int(NOW.timestamp())
    event = h.mailgun_failed(
        "pdt@example.org", "mg-evt-1", message_id=hooked.message_id("pdt@example.org")
    )
    refused = [
        ("wrong key", h.mailgun_body("not-the-key", event, ts)),
        ("6 minutes old", h.mailgun_body(MAILGUN_KEY, event, ts - 360)),
        ("6 minutes ahead", h.mailgun_body(MAILGUN_KEY, event, ts + 360)),
        ("not a time", h.mailgun_body(MAILGUN_KEY, event, "soon")),
    ]
    forged_sig = json.loads(h.mailgun_body(MAILGUN_KEY, event, ts))
    forged_sig["signature"]["signature"] = "0" * 64
    refused.append(("bad signature", json.dumps(forged_sig).encode()))
    for name, body in refused:
        assert hooked.post("mailgun", body).status_code == 403, name
    assert hooked.status() == ALL_ACTIVE and hooked.bounce_rows() == []

    body = h.mailgun_body(MAILGUN_KEY, event, ts - 240)  # 4 minutes old: still fresh
    assert hooked.post("mailgun", body).status_code == 200
    assert hooked.status()["pdt@example.org"] == "bounced"
    [row] = hooked.bounce_rows()
    assert (row.kind, row.code, row.status, row.month) == ("hard", 550, "5.1.1", SAMPLE_MONTH)
    # The same request again: its token was spent.
    assert hooked.post("mailgun", body).status_code == 403
    # Mailgun's own retry of the event, signed anew: accepted, and changes nothing.
    assert hooked.post("mailgun", h.mailgun_body(MAILGUN_KEY, event, ts)).status_code == 200
    assert len(hooked.bounce_rows()) == 1

    # A temporary failure is Mailgun still retrying: not a bounce. A complaint unsubscribes.
    deferred = h.mailgun_failed(
        "all@example.org",
        "mg-evt-2",
        severity="temporary",
        reason="generic",
        code=421,
        enhanced="4.4.2",
        message="try again later",
    )
    assert hooked.post("mailgun", h.mailgun_body(MAILGUN_KEY, deferred, ts)).status_code == 200
    policy = h.mailgun_failed(
        "training@example.org",
        "mg-evt-3",
        code=550,
        enhanced="5.7.1",
        message="5.7.1 rejected by policy",
    )
    assert hooked.post("mailgun", h.mailgun_body(MAILGUN_KEY, policy, ts)).status_code == 200
    complained = h.mailgun_complained("mixed@example.org", "mg-evt-4")
    assert hooked.post("mailgun", h.mailgun_body(MAILGUN_KEY, complained, ts)).status_code == 200
    assert hooked.status() == {
        **ALL_ACTIVE,
        "pdt@example.org": "bounced",
        "mixed@example.org": "unsubscribed",
    }
    kinds = sorted((r.email, r.kind) for r in hooked.bounce_rows())
    assert kinds == [
        ("mixed@example.org", "complaint"),
        ("pdt@example.org", "hard"),
        ("training@example.org", "block"),
    ]
    assert not any(s in caplog.text for s in SECRETS)


def test_sendgrid_batches_signature_and_size(
    hooked: Hooked, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    ts = int(NOW.timestamp())
    batch = [
        h.sendgrid_bounce("pdt@example.org", "sg-1"),
        h.sendgrid_spamreport("mixed@example.org", "sg-2"),
        h.sendgrid_bounce(
            "training@example.org",
            "sg-3",
            type_="blocked",
            status="5.7.1",
            reason="550 5.7.1 blocked for policy reasons",
        ),
        {
            "email": "all@example.org",
            "event": "deferred",
            "sg_event_id": "sg-4",
            "response": "421 try again later",
            "attempt": "1",
        },
        {"email": "efficacy@example.org", "event": "delivered", "sg_event_id": "sg-5"},
    ]
    body = json.dumps(batch).encode()
    good = SENDGRID.headers(body, ts)
    refused = [
        ("no headers", body, {}),
        ("tampered body", body.replace(b"pdt@", b"all@"), good),
        ("stale", body, SENDGRID.headers(body, ts - 301)),
        ("other key", body, h.SendGridSigner().headers(body, ts)),
        (
            "timestamp changed",
            body,
            {**good, "X-Twilio-Email-Event-Webhook-Timestamp": str(ts + 1)},
        ),
        ("signature not base64", body, {**good, "X-Twilio-Email-Event-Webhook-Signature": "%%%"}),
    ]
    for name, data, headers in refused:
        assert hooked.post("sendgrid", data, **headers).status_code == 403, name
    assert hooked.status() == ALL_ACTIVE and hooked.bounce_rows() == []

    assert hooked.post("sendgrid", body, **good).status_code == 200
    after = {**ALL_ACTIVE, "pdt@example.org": "bounced", "mixed@example.org": "unsubscribed"}
    assert hooked.status() == after
    kinds = sorted((r.email, r.kind, r.source) for r in hooked.bounce_rows())
    assert kinds == [
        ("mixed@example.org", "complaint", "webhook:sendgrid"),
        ("pdt@example.org", "hard", "webhook:sendgrid"),
        ("training@example.org", "block", "webhook:sendgrid"),
    ]
    # SendGrid posts the batch again (signed anew): nothing changes.
    assert hooked.post("sendgrid", body, **SENDGRID.headers(body, ts + 60)).status_code == 200
    assert len(hooked.bounce_rows()) == 3 and hooked.status() == after

    # A batch far over the pages' 64 KB limit is taken; one over 1 MB is not.
    filler = [
        {"email": f"p{i}@example.org", "event": "processed", "sg_event_id": f"f{i}"}
        for i in range(4000)
    ]
    big = json.dumps(filler).encode()
    assert 200_000 < len(big) < 1024 * 1024
    assert hooked.post("sendgrid", big, **SENDGRID.headers(big, ts)).status_code == 200
    huge = json.dumps(filler * 6).encode()
    assert hooked.post("sendgrid", huge, **SENDGRID.headers(huge, ts)).status_code == 413
    # Forms elsewhere keep their small limit.
    assert hooked.client.post("/subscribe", data=b"a" * 70_000).status_code in (400, 413)
    assert not any(s in caplog.text for s in SECRETS)


def test_a_store_failure_answers_500_and_the_retry_is_recorded(hooked: Hooked) -> None:
    """The provider retries on 5xx: nothing was half-written, the retry records it once."""
    from sqlalchemy import create_engine, text

    url = hooked.settings.database_url
    engine = create_engine(url)
    sqlite = url.startswith("sqlite")
    with engine.begin() as conn:
        if sqlite:
            conn.execute(
                text(
                    "CREATE TRIGGER no_bounces BEFORE INSERT ON bounces "
                    "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
                )
            )
        else:
            conn.execute(
                text(
                    "CREATE FUNCTION no_bounces() RETURNS trigger LANGUAGE plpgsql AS "
                    "$$ BEGIN RAISE EXCEPTION 'disk on fire'; END $$"
                )
            )
            conn.execute(
                text(
                    "CREATE TRIGGER no_bounces BEFORE INSERT ON bounces "
                    "FOR EACH ROW EXECUTE FUNCTION no_bounces()"
                )
            )
    auth = h.basic_auth(POSTMARK_SECRET)
    bounce = h.postmark_bounce("pdt@example.org", 77)
    try:
        got = hooked.post("postmark", bounce, **auth)
        assert got.status_code == 500
        assert hooked.status() == ALL_ACTIVE and hooked.bounce_rows() == []
    finally:
        with engine.begin() as conn:
            conn.execute(text("DROP TRIGGER no_bounces" + ("" if sqlite else " ON bounces")))
            if not sqlite:
                conn.execute(text("DROP FUNCTION no_bounces()"))
        engine.dispose()
    assert hooked.post("postmark", bounce, **auth).status_code == 200
    assert hooked.status()["pdt@example.org"] == "bounced"
    assert len(hooked.bounce_rows()) == 1
