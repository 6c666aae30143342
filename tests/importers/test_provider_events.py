"""The pure half of the provider webhooks: what each check accepts and refuses, and how
each provider's event types map onto hard / soft / block / complaint (no network, no
database; the journeys are in tests/web/test_web_hooks.py and tests/cli/test_hooks_serve.py).
"""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest

from newsletter.importers import provider_events as pe
from tests.support import hooks as h

NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)


def test_sns_string_to_sign_follows_the_documented_fields() -> None:
    note = {
        "Type": "Notification",
        "MessageId": "m1",
        "TopicArn": "arn:t",
        "Message": "hi\nthere",
        "Timestamp": "2026-11-20T12:00:00.000Z",
        "UnsubscribeURL": "ignored",
        "Signature": "x",
    }
    assert pe.sns_string_to_sign(note) == (
        b"Message\nhi\nthere\nMessageId\nm1\nTimestamp\n2026-11-20T12:00:00.000Z\n"
        b"TopicArn\narn:t\nType\nNotification\n"
    )
    assert b"Subject\nS\n" in pe.sns_string_to_sign({**note, "Subject": "S"})
    confirm = {
        "Type": "SubscriptionConfirmation",
        "MessageId": "m2",
        "Token": "tok",
        "TopicArn": "arn:t",
        "Message": "m",
        "SubscribeURL": "https://u",
        "Timestamp": "t",
    }
    assert pe.sns_string_to_sign(confirm) == (
        b"Message\nm\nMessageId\nm2\nSubscribeURL\nhttps://u\nTimestamp\nt\nToken\ntok\n"
        b"TopicArn\narn:t\nType\nSubscriptionConfirmation\n"
    )
    with pytest.raises(pe.WebhookMalformed):
        pe.sns_string_to_sign({k: v for k, v in confirm.items() if k != "Token"})


@pytest.mark.parametrize(
    "url",
    [
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.ap-southeast-2.amazonaws.com/x.pem",
        "https://sns.eu-west-1.amazonaws.com:443/x.pem",
    ],
)
def test_sns_certificate_urls_accepted(url: str) -> None:
    assert pe.check_sns_url(url) == url


@pytest.mark.parametrize(
    "url",
    [
        None,
        "http://sns.us-east-1.amazonaws.com/x.pem",
        "https://sns.us-east-1.amazonaws.com.evil.example/x.pem",
        "https://evilsns.us-east-1.amazonaws.com/x.pem",
        "https://sns.amazonaws.com/x.pem",
        "https://attacker@sns.us-east-1.amazonaws.com/x.pem",
        "https://sns.us-east-1.amazonaws.com:8443/x.pem",
        "https://sns.us-east-1.amazonaws.com/x.txt",
        "https://[::1]/x.pem",
        "file:///etc/passwd",
    ],
)
def test_sns_certificate_urls_refused(url: object) -> None:
    with pytest.raises(pe.WebhookRefused) as refused:
        pe.check_sns_url(url)
    assert refused.value.status == 403


def test_certificates_are_fetched_once_and_a_failed_fetch_is_a_retry() -> None:
    fetched: list[str] = []

    def fetch(url: str) -> bytes:
        fetched.append(url)
        if "down" in url:
            raise OSError("timed out")
        return b"PEM"

    cache = pe.CertificateCache(fetch, size=2)
    good = "https://sns.eu-west-1.amazonaws.com/a.pem"
    assert cache.get(good) == cache.get(good) == b"PEM"
    with pytest.raises(pe.WebhookUnavailable) as failed:
        cache.get("https://sns.eu-west-1.amazonaws.com/down.pem")
    assert failed.value.status == 503
    with pytest.raises(pe.WebhookRefused):
        cache.get("https://example.org/a.pem")
    assert fetched == [good, "https://sns.eu-west-1.amazonaws.com/down.pem"]


def test_sns_signature_versions_and_certificate_validity() -> None:
    signer = h.SnsSigner(NOW)
    message = h.sns_notification({"notificationType": "Delivery"}, subject="S")
    pe.verify_sns(signer.sign(message, version="1"), signer.pem, NOW)
    pe.verify_sns(signer.sign(message, version="2"), signer.pem, NOW)
    with pytest.raises(pe.WebhookRefused):  # the certificate has expired
        pe.verify_sns(signer.sign(message), signer.pem, NOW + dt.timedelta(days=60))
    with pytest.raises(pe.WebhookRefused):
        pe.verify_sns({**signer.sign(message), "Signature": "not base64!"}, signer.pem, NOW)
    with pytest.raises(pe.WebhookRefused):
        pe.verify_sns(signer.sign(message), b"not a certificate", NOW)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer abc",
        "Basic !!!",
        "Basic " + base64.b64encode(b"user:nope").decode(),
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Basic " + "é" * 8,
    ],
)
def test_basic_auth_refusals(header: str | None) -> None:
    with pytest.raises(pe.WebhookUnauthorized):
        pe.check_basic_auth(header, "right")


def test_basic_auth_takes_any_user_name() -> None:
    for user in ("postmark", "", "x"):
        pe.check_basic_auth(
            h.basic_auth("right:with:colons", user)["Authorization"], "right:with:colons"
        )


@pytest.mark.parametrize(
    ("bounce_type", "subtype", "status", "kind"),
    [
        ("Permanent", "General", "5.1.1", "hard"),
        ("Permanent", "NoEmail", "5.1.1", "hard"),
        ("Permanent", "Suppressed", "5.1.1", "hard"),
        ("Permanent", "General", "5.7.1", "block"),
        ("Permanent", "General", "5.2.2", "soft"),
        ("Transient", "MailboxFull", "5.2.2", "soft"),
        ("Transient", "General", "4.4.7", "soft"),
        ("Transient", "ContentRejected", "5.3.4", "block"),
        ("Undetermined", "Undetermined", "", "soft"),
    ],
)
def test_ses_bounce_kinds(bounce_type: str, subtype: str, status: str, kind: str) -> None:
    ses = h.ses_bounce(
        "A@Example.org",
        bounce_type=bounce_type,
        subtype=subtype,
        status=status,
        message_id="<2026-11.7.abc@example.org>",
        source="b+202611-7-0123456789@x.org",
    )
    [event] = pe.ses_events(h.sns_notification(ses))
    assert (event.kind, event.address, event.message_id) == (
        kind,
        "a@example.org",
        "<2026-11.7.abc@example.org>",
    )
    assert event.report_id == "ses:" + ses["bounce"]["feedbackId"]
    assert event.verp_tag == "202611-7-0123456789"  # from the envelope sender


def test_ses_other_notifications_are_ignored_and_bad_json_refused() -> None:
    [event] = pe.ses_events(h.sns_notification({"notificationType": "Delivery"}))
    assert event.kind is None and event.what == "delivery"
    with pytest.raises(pe.WebhookMalformed):
        pe.ses_events({"Type": "Notification", "Message": "{not json"})


@pytest.mark.parametrize(
    ("type_", "kind"),
    [
        ("HardBounce", "hard"),
        ("BadEmailAddress", "hard"),
        ("SoftBounce", "soft"),
        ("Transient", "soft"),
        ("DnsError", "soft"),
        ("Blocked", "block"),
        ("DMARCPolicy", "block"),
        ("AutoResponder", None),
        ("Subscribe", None),
        ("ManuallyDeactivated", None),
        ("Unknown", None),
    ],
)
def test_postmark_bounce_kinds(type_: str, kind: str | None) -> None:
    [event] = pe.postmark_events(h.postmark_bounce("a@example.org", 12, type_=type_))
    assert (event.kind, event.report_id) == (kind, "postmark:12")


def test_postmark_complaint_and_other_records() -> None:
    [event] = pe.postmark_events(h.postmark_complaint("a@example.org", 13))
    assert event.kind == "complaint"
    [event] = pe.postmark_events({"RecordType": "Delivery", "ID": 14})
    assert event.kind is None
    with pytest.raises(pe.WebhookMalformed):
        pe.postmark_events([])


@pytest.mark.parametrize(
    ("severity", "reason", "enhanced", "kind"),
    [
        ("permanent", "bounce", "5.1.1", "hard"),
        ("permanent", "suppress-bounce", "", "hard"),
        ("permanent", "generic", "5.7.1", "block"),
        ("permanent", "espblock", "5.7.1", "block"),
        ("permanent", "old", "4.4.7", "soft"),
        ("permanent", "suppress-complaint", "", "complaint"),
        ("permanent", "suppress-unsubscribe", "", None),
        ("temporary", "generic", "4.2.2", "soft"),
        ("temporary", "generic", "4.4.2", None),
    ],
)
def test_mailgun_failure_kinds(severity: str, reason: str, enhanced: str, kind: str | None) -> None:
    data = h.mailgun_failed(
        "a@example.org",
        "e1",
        severity=severity,
        reason=reason,
        enhanced=enhanced,
        message="refused",
        message_id="<2026-11.7.abc@example.org>",
    )
    [event] = pe.mailgun_events({"event-data": data})
    assert (event.kind, event.report_id, event.message_id) == (
        kind,
        "mailgun:e1",
        "<2026-11.7.abc@example.org>",
    )


def test_mailgun_signature_and_clock() -> None:
    ts = int(NOW.timestamp())
    body = json.loads(h.mailgun_body("k", {}, ts, token="t1"))
    assert pe.verify_mailgun(body, "k", NOW) == "t1"
    assert pe.verify_mailgun(body, "k", NOW + dt.timedelta(minutes=5)) == "t1"
    for now, key in ((NOW + dt.timedelta(minutes=5, seconds=1), "k"), (NOW, "other")):
        with pytest.raises(pe.WebhookRefused):
            pe.verify_mailgun(body, key, now)
    body["signature"]["signature"] = "é" * 64  # not hex: refused, not a crash
    with pytest.raises(pe.WebhookRefused):
        pe.verify_mailgun(body, "k", NOW)
    with pytest.raises(pe.WebhookMalformed):
        pe.verify_mailgun({"event-data": {}}, "k", NOW)


def test_seen_tokens_are_refused_until_they_could_no_longer_pass() -> None:
    seen = pe.SeenTokens()
    assert seen.claim("t", NOW)
    assert not seen.claim("t", NOW + dt.timedelta(minutes=9))
    seen.release("t")
    assert seen.claim("t", NOW)
    assert seen.claim("t", NOW + dt.timedelta(minutes=11))  # forgotten: too old to pass anyway


@pytest.mark.parametrize(
    ("event", "kind"),
    [
        (h.sendgrid_bounce("a@example.org", "s1"), "hard"),
        (h.sendgrid_bounce("a@example.org", "s1", status="5.0.0"), "hard"),
        (h.sendgrid_bounce("a@example.org", "s1", type_="blocked", status="5.0.0"), "block"),
        (
            h.sendgrid_bounce("a@example.org", "s1", status="5.2.2", reason="552 mailbox full"),
            "soft",
        ),
        (h.sendgrid_spamreport("a@example.org", "s1"), "complaint"),
        (
            {
                "event": "dropped",
                "email": "a@example.org",
                "sg_event_id": "s1",
                "reason": "Bounced Address",
            },
            "hard",
        ),
        (
            {
                "event": "dropped",
                "email": "a@example.org",
                "sg_event_id": "s1",
                "reason": "Unsubscribed Address",
            },
            None,
        ),
        (
            {
                "event": "deferred",
                "email": "a@example.org",
                "sg_event_id": "s1",
                "response": "450 4.2.2 mailbox full",
            },
            "soft",
        ),
        (
            {
                "event": "deferred",
                "email": "a@example.org",
                "sg_event_id": "s1",
                "response": "421 try later",
            },
            None,
        ),
        ({"event": "open", "email": "a@example.org", "sg_event_id": "s1"}, None),
    ],
)
def test_sendgrid_event_kinds(event: dict[str, object], kind: str | None) -> None:
    [got] = pe.sendgrid_events([event, "not an event", 5])
    assert (got.kind, got.report_id) == (kind, "sendgrid:s1")


def test_sendgrid_signature() -> None:
    signer = h.SendGridSigner()
    body = b'[{"event":"open"}]'
    ts = int(NOW.timestamp())
    headers = signer.headers(body, ts)
    sig = headers["X-Twilio-Email-Event-Webhook-Signature"]
    pe.verify_sendgrid(body, sig, str(ts), signer.public_b64, NOW)
    refusals = [
        (body + b" ", sig, str(ts), signer.public_b64, NOW),
        (body, sig, str(ts), signer.public_b64, NOW + dt.timedelta(minutes=6)),
        (body, sig, str(ts), h.SendGridSigner().public_b64, NOW),
        (body, None, str(ts), signer.public_b64, NOW),
        (body, sig, str(ts), "not a key", NOW),
        (
            body,
            sig,
            str(ts),
            base64.b64encode(
                h.SnsSigner(NOW)
                .cert.public_key()
                .public_bytes(
                    pe.serialization.Encoding.DER,
                    pe.serialization.PublicFormat.SubjectPublicKeyInfo,
                )
            ).decode(),
            NOW,
        ),  # an RSA key where the EC key belongs
    ]
    for args in refusals:
        with pytest.raises(pe.WebhookRefused):
            pe.verify_sendgrid(*args)  # type: ignore[arg-type]


def test_bodies_that_are_not_json_are_malformed() -> None:
    for body in (b"\xff\xfe", b"{", b"x" * (pe.MAX_HOOK_BYTES + 1)):
        with pytest.raises(pe.WebhookMalformed):
            pe.parse_json(body)
