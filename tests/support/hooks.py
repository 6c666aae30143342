"""Webhook requests as the providers send them, written by us from their documented formats.

- Amazon SES through SNS: :class:`SnsSigner` makes an RSA key and a certificate for a
  URL on an allowed host (``sns.<region>.amazonaws.com``) and signs messages as SNS
  documents it (the ``Key\\nValue\\n`` text of each type's fields; SignatureVersion 1 =
  SHA1withRSA, 2 = SHA256withRSA). :func:`ses_bounce` and :func:`ses_complaint` are SES
  notifications, :func:`sns_notification` wraps one.
- Postmark: :func:`postmark_bounce`, :func:`postmark_complaint` (Bounce and SpamComplaint
  webhooks), sent with basic auth (:func:`basic_auth`).
- Mailgun: :func:`mailgun_body` signs ``event-data`` with HMAC-SHA256(key, timestamp +
  token); :func:`mailgun_failed`, :func:`mailgun_complained`.
- SendGrid: :class:`SendGridSigner` makes a P-256 key and signs timestamp + body;
  :func:`sendgrid_bounce`, :func:`sendgrid_spamreport`.

The string SNS signs is built here on its own (not with the program's function), so a
mistake in one does not hide in the other.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import uuid
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

CERT_URL = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0000test.pem"
TOPIC = "arn:aws:sns:eu-west-1:123456789012:newsletter-bounces"
SES_SOURCE = "digest@example.org"


def basic_auth(password: str, user: str = "newsletter") -> dict[str, str]:
    """The Authorization header of HTTP basic auth."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def _iso(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


# --- SNS / SES ---------------------------------------------------------------------------


class SnsSigner:
    """An RSA key and a certificate valid around ``now`` (default: the real time)."""

    def __init__(self, now: dt.datetime | None = None, cert_url: str = CERT_URL) -> None:
        now = now or dt.datetime.now(dt.UTC)
        self.cert_url = cert_url
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .sign(self.key, hashes.SHA256())
        )
        self.pem = self.cert.public_bytes(serialization.Encoding.PEM)

    def sign(
        self, message: dict[str, Any], version: str = "2", cert_url: str | None = None
    ) -> dict[str, Any]:
        """``message`` with SignatureVersion, SigningCertURL and Signature added."""
        fields = ["Message", "MessageId"]
        if message["Type"] == "Notification":
            fields += ["Subject", "Timestamp", "TopicArn", "Type"]
        else:
            fields += ["SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
        text = "".join(f"{k}\n{message[k]}\n" for k in fields if k in message)
        algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
        signature = self.key.sign(text.encode(), padding.PKCS1v15(), algorithm)
        return {
            **message,
            "SignatureVersion": version,
            "SigningCertURL": cert_url or self.cert_url,
            "Signature": base64.b64encode(signature).decode(),
        }


def sns_notification(
    ses: dict[str, Any], message_id: str | None = None, subject: str | None = None
) -> dict[str, Any]:
    """An (unsigned) SNS Notification carrying the SES notification ``ses``."""
    message: dict[str, Any] = {
        "Type": "Notification",
        "MessageId": message_id or str(uuid.uuid4()),
        "TopicArn": TOPIC,
        "Message": json.dumps(ses),
        "Timestamp": _iso(dt.datetime.now(dt.UTC)),
        "UnsubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe",
    }
    if subject is not None:
        message["Subject"] = subject
    return message


def sns_subscription(subscribe_url: str) -> dict[str, Any]:
    """An (unsigned) SNS SubscriptionConfirmation."""
    return {
        "Type": "SubscriptionConfirmation",
        "MessageId": str(uuid.uuid4()),
        "Token": "2336412f37fb687f5d51e6e2425f004aed",
        "TopicArn": TOPIC,
        "Message": f"You have chosen to subscribe to the topic {TOPIC}.\n"
        "To confirm the subscription, visit the SubscribeURL included in this message.",
        "SubscribeURL": subscribe_url,
        "Timestamp": _iso(dt.datetime.now(dt.UTC)),
    }


def _ses_mail(message_id: str | None, source: str) -> dict[str, Any]:
    mail: dict[str, Any] = {
        "timestamp": _iso(dt.datetime.now(dt.UTC)),
        "source": source,
        "sourceArn": "arn:aws:ses:eu-west-1:123456789012:identity/example.org",
        "messageId": "0102018f-ses-own-id-" + uuid.uuid4().hex[:12],
        "destination": [],
        "headersTruncated": False,
        "headers": [],
    }
    if message_id:
        mail["headers"] = [{"name": "Message-ID", "value": message_id}]
        mail["commonHeaders"] = {"messageId": message_id, "subject": "Research Digest"}
    return mail


def ses_bounce(
    address: str,
    *,
    message_id: str | None = None,
    bounce_type: str = "Permanent",
    subtype: str = "General",
    status: str = "5.1.1",
    diagnostic: str = "smtp; 550 5.1.1 user unknown",
    feedback_id: str | None = None,
    source: str = SES_SOURCE,
) -> dict[str, Any]:
    """An SES Bounce notification about one recipient."""
    return {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": bounce_type,
            "bounceSubType": subtype,
            "bouncedRecipients": [
                {
                    "emailAddress": address,
                    "action": "failed",
                    "status": status,
                    "diagnosticCode": diagnostic,
                }
            ],
            "timestamp": _iso(dt.datetime.now(dt.UTC)),
            "feedbackId": feedback_id or f"0102-bounce-{uuid.uuid4().hex}",
            "reportingMTA": "dsn; a8-70.smtp-out.amazonses.com",
        },
        "mail": _ses_mail(message_id, source),
    }


def ses_complaint(
    address: str, *, message_id: str | None = None, feedback_id: str | None = None
) -> dict[str, Any]:
    """An SES Complaint notification about one recipient."""
    return {
        "notificationType": "Complaint",
        "complaint": {
            "complainedRecipients": [{"emailAddress": address}],
            "timestamp": _iso(dt.datetime.now(dt.UTC)),
            "feedbackId": feedback_id or f"0102-complaint-{uuid.uuid4().hex}",
            "complaintFeedbackType": "abuse",
            "userAgent": "Yahoo!-Mail-Feedback/2.0",
        },
        "mail": _ses_mail(message_id, SES_SOURCE),
    }


# --- Postmark ----------------------------------------------------------------------------


def postmark_bounce(
    email: str,
    bounce_id: int,
    *,
    type_: str = "HardBounce",
    type_code: int = 1,
    details: str = "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
) -> dict[str, Any]:
    """A Postmark Bounce webhook body."""
    return {
        "RecordType": "Bounce",
        "MessageStream": "broadcast",
        "ID": bounce_id,
        "Type": type_,
        "TypeCode": type_code,
        "Name": "Hard bounce",
        "Tag": "",
        "MessageID": str(uuid.uuid4()),  # Postmark's own id of the message
        "ServerID": 23,
        "Description": "The server was unable to deliver your message (ex: unknown user, "
        "mailbox not found).",
        "Details": details,
        "Email": email,
        "From": "digest@example.org",
        "BouncedAt": _iso(dt.datetime.now(dt.UTC)),
        "DumpAvailable": True,
        "Inactive": True,
        "CanActivate": True,
        "Subject": "Research Digest",
        "Content": "",
    }


def postmark_complaint(email: str, bounce_id: int) -> dict[str, Any]:
    """A Postmark SpamComplaint webhook body."""
    return {
        **postmark_bounce(email, bounce_id, type_="SpamComplaint", type_code=512, details=""),
        "RecordType": "SpamComplaint",
        "Name": "Spam complaint",
        "Description": "The subscriber explicitly marked this message as spam.",
    }


# --- Mailgun -----------------------------------------------------------------------------


def mailgun_body(
    key: str, event_data: dict[str, Any], timestamp: int | str, token: str | None = None
) -> bytes:
    """A Mailgun webhook body: ``event-data`` with its ``signature`` block."""
    token = token or uuid.uuid4().hex + uuid.uuid4().hex[:18]
    digest = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    return json.dumps(
        {
            "signature": {"timestamp": str(timestamp), "token": token, "signature": digest},
            "event-data": event_data,
        }
    ).encode()


def mailgun_failed(
    recipient: str,
    event_id: str,
    *,
    severity: str = "permanent",
    reason: str = "bounce",
    code: int = 550,
    enhanced: str = "5.1.1",
    message: str = "5.1.1 The email account that you tried to reach does not exist.",
    message_id: str | None = None,
) -> dict[str, Any]:
    """Mailgun ``failed`` event-data."""
    return {
        "event": "failed",
        "id": event_id,
        "timestamp": 1_700_000_000.0,
        "severity": severity,
        "reason": reason,
        "recipient": recipient,
        "log-level": "error",
        "envelope": {"sender": "digest@example.org", "transport": "smtp", "targets": recipient},
        "delivery-status": {
            "code": code,
            "enhanced-code": enhanced,
            "message": message,
            "description": "",
            "attempt-no": 1,
        },
        "message": {
            "headers": {
                "to": recipient,
                "message-id": (message_id or "mailgun-own@example.org").strip("<>"),
                "from": "digest@example.org",
                "subject": "Research Digest",
            }
        },
    }


def mailgun_complained(recipient: str, event_id: str) -> dict[str, Any]:
    """Mailgun ``complained`` event-data."""
    return {
        "event": "complained",
        "id": event_id,
        "timestamp": 1_700_000_000.0,
        "recipient": recipient,
        "log-level": "warn",
        "message": {"headers": {"to": recipient, "message-id": "x@example.org"}},
    }


# --- SendGrid ----------------------------------------------------------------------------


class SendGridSigner:
    """A P-256 key: ``public_b64`` is what SendGrid shows as the verification key."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.public_b64 = base64.b64encode(der).decode()

    def headers(self, body: bytes, timestamp: int | str) -> dict[str, str]:
        """The signature headers SendGrid adds to ``body``."""
        signature = self.key.sign(str(timestamp).encode() + body, ec.ECDSA(hashes.SHA256()))
        return {
            "Content-Type": "application/json",
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": str(timestamp),
        }


def sendgrid_bounce(
    email: str,
    event_id: str,
    *,
    type_: str = "bounce",
    status: str = "5.1.1",
    reason: str = "550 5.1.1 The email account that you tried to reach does not exist.",
    smtp_id: str = "<14c5d75ce93.dfd.64b469@ismtpd-555>",
) -> dict[str, Any]:
    """A SendGrid ``bounce`` event (``type_`` bounce or blocked)."""
    return {
        "email": email,
        "timestamp": 1_700_000_000,
        "smtp-id": smtp_id,
        "event": "bounce",
        "category": ["newsletter"],
        "sg_event_id": event_id,
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
        "reason": reason,
        "status": status,
        "type": type_,
        "bounce_classification": "Invalid Address",
    }


def sendgrid_spamreport(email: str, event_id: str) -> dict[str, Any]:
    """A SendGrid ``spamreport`` event."""
    return {
        "email": email,
        "timestamp": 1_700_000_000,
        "event": "spamreport",
        "sg_event_id": event_id,
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
    }
