"""Bounce and complaint events that mail providers post to our webhooks: checks and mapping.

Pure code: no network, no database, no clock of its own (the caller passes ``now``). For
each provider this module checks that a request really comes from it and turns its JSON
into :class:`ProviderEvent` values, which the service records exactly like a bounce read
from a mailbox (:func:`newsletter.services.bounces.process_provider_event`).

========  =============================================================================
provider  how a request is proved
========  =============================================================================
ses       Amazon SNS signature (SignatureVersion 1: SHA1withRSA, 2: SHA256withRSA) with
          the certificate at ``SigningCertURL`` (https on ``sns.<region>.amazonaws.com``
          only), plus HTTP basic auth with our password
postmark  HTTP basic auth with our password (Postmark puts it in the webhook URL)
mailgun   HMAC-SHA256(signing key, timestamp + token); timestamp within 5 minutes; a
          token is accepted once
sendgrid  ECDSA P-256 / SHA-256 over timestamp + raw body with the verification key;
          timestamp within 5 minutes
========  =============================================================================

How an event is classified follows :mod:`newsletter.rules.bounces`: a permanent failure
is ``hard`` (``block`` when its status is a 5.7.x policy refusal, ``soft`` for a full
mailbox), a final failure for a temporary reason is ``soft``, a refusal about the message
or the sender is ``block``, a spam report is ``complaint``. A delivery the provider is
still retrying (Mailgun ``temporary``, SendGrid ``deferred``) is not a bounce yet, like a
4xx reply at send time, unless it says the mailbox is full.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from newsletter.errors import NewsletterError
from newsletter.rules.bounces import BLOCK, COMPLAINT, HARD, SOFT, enhanced_status

PROVIDERS = ("ses", "postmark", "mailgun", "sendgrid")

#: How far a signed timestamp may be from our clock (Mailgun, SendGrid).
MAX_CLOCK_SKEW = dt.timedelta(minutes=5)

#: The largest webhook body read. SendGrid posts its events in batches of up to 768 KB
#: (its Event Webhook documentation); the other providers post one event of a few KB.
MAX_HOOK_BYTES = 1024 * 1024

_SNS_HOST = re.compile(r"sns\.[a-z0-9-]+\.amazonaws\.com")
_VERP = re.compile(r"\+([0-9a-z]{6}-\d{1,19}-[0-9a-f]{10})@", re.IGNORECASE)
_CODE = re.compile(r"\b([245]\d\d)\b")


# --- refusals ----------------------------------------------------------------------------


class WebhookRefused(NewsletterError):
    """A webhook request that is not accepted; ``status`` is the HTTP answer.

    The message is for the log; the answer to the client says nothing of which check
    failed. No message ever holds a secret.
    """

    status = 403
    hint = "check the webhook's secret or key in the provider's settings and ours"


class WebhookUnauthorized(WebhookRefused):
    """Basic-auth credentials are missing or wrong (answered 401)."""

    status = 401


class WebhookMalformed(WebhookRefused):
    """The body is not what the provider sends (answered 400)."""

    status = 400
    hint = "the provider's documented JSON format is expected"


class WebhookOff(WebhookRefused):
    """The provider's hook is not configured (answered 404, like any unknown page)."""

    status = 404
    hint = "set the provider's secret or key setting to turn its hook on (docs/webhooks.md)"


class WebhookUnavailable(WebhookRefused):
    """Something the check needs could not be fetched now (answered 503: retry later)."""

    status = 503
    hint = "the provider retries; check that this server can reach it over https"


# --- what an event says ------------------------------------------------------------------


@dataclass(frozen=True)
class ProviderEvent:
    """One recipient's bounce or complaint as a provider reported it.

    ``kind`` is hard / soft / block / complaint, or None for an event that is deliberately
    not recorded (a delivery, a deferral, an auto-reply); ``what`` names the event for the
    log either way.
    """

    provider: str
    event_id: str  # the provider's id of the event: a redelivery has the same one
    what: str
    kind: str | None
    address: str = ""
    code: int | None = None
    diagnostic: str = ""
    message_id: str | None = None  # our Message-ID (<...>), when the provider passes it on
    verp_tag: str | None = None  # from the envelope sender, when the provider passes it on

    @property
    def report_id(self) -> str:
        """The id the store keeps, so one event is recorded once."""
        return f"{self.provider}:{self.event_id}"[:255]


def _text(value: Any, limit: int = 2000) -> str:
    return " ".join(str(value).split())[:limit] if value not in (None, "") else ""


def _address(value: Any) -> str:
    text = _text(value, 320)
    m = re.search(r"<([^<>\s]+@[^<>\s]+)>", text)
    return (m.group(1) if m else text).strip().lower()


def _message_id(value: Any) -> str | None:
    text = _text(value, 250).strip()
    if not text or "@" not in text or " " in text:
        return None
    return text if text.startswith("<") else f"<{text.strip('<>')}>"


def _verp_tag(value: Any) -> str | None:
    m = _VERP.search(_text(value, 320))
    return m.group(1).lower() if m else None


def _code(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 200 <= value < 600:
        return value
    m = _CODE.search(_text(value, 200))
    return int(m.group(1)) if m else None


def permanent_kind(status: str | None, text: str) -> str:
    """The kind of a failure the provider calls permanent: ``hard``, unless its enhanced
    status says the mailbox is full (``soft``) or the refusal is about policy (5.7.x,
    ``block``: about the message or the sender, not the address)."""
    found = status or enhanced_status(text)
    if found:
        _, subject, detail = found.split(".")
        if (subject, detail) == ("2", "2"):
            return SOFT
        if subject == "7":
            return BLOCK
    return HARD


def _mailbox_full(status: str | None, text: str) -> bool:
    found = status or enhanced_status(text)
    return bool(found and found.split(".")[1:] == ["2", "2"])


def _digest(obj: Any) -> str:
    raw = json.dumps(obj, sort_keys=True, default=str).encode()
    return "sha256-" + hashlib.sha256(raw).hexdigest()[:40]


def parse_json(body: bytes) -> Any:
    """The JSON of a webhook body; :class:`WebhookMalformed` if it is not JSON."""
    if len(body) > MAX_HOOK_BYTES:
        raise WebhookMalformed(f"body of {len(body)} bytes is over the limit")
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise WebhookMalformed("body is not UTF-8 JSON") from None


# --- basic auth (SES, Postmark) ----------------------------------------------------------


def check_basic_auth(authorization: str | None, secret: str) -> None:
    """Accept an ``Authorization: Basic`` header whose password is ``secret`` (any user
    name); :class:`WebhookUnauthorized` otherwise."""
    scheme, _, encoded = (authorization or "").partition(" ")
    password = b""
    if scheme.lower() == "basic":
        try:
            _, _, password = base64.b64decode(encoded.strip(), validate=True).partition(b":")
        except (binascii.Error, ValueError):
            password = b""
    if not hmac.compare_digest(password, secret.encode("utf-8")):
        raise WebhookUnauthorized("missing or wrong basic-auth password")


# --- Amazon SES through SNS --------------------------------------------------------------

_SNS_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}
_SNS_FIELDS["UnsubscribeConfirmation"] = _SNS_FIELDS["SubscriptionConfirmation"]
_SNS_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "1": hashes.SHA1,
    "2": hashes.SHA256,
}


def check_sns_url(url: Any, what: str = "SigningCertURL") -> str:
    """``url`` if it is https on an Amazon SNS host (``sns.<region>.amazonaws.com``, the
    default port, no user name); :class:`WebhookRefused` before anything is fetched."""
    if not isinstance(url, str):
        raise WebhookRefused(f"SNS {what} is missing")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise WebhookRefused(f"SNS {what} is not a valid address") from None
    host = parts.hostname or ""
    if (
        parts.scheme != "https"
        or not _SNS_HOST.fullmatch(host)
        or port not in (None, 443)
        or "@" in parts.netloc
        or parts.netloc.lower() not in (host, f"{host}:443")
    ):
        raise WebhookRefused(f"SNS {what} is not https on an sns.<region>.amazonaws.com host")
    if what == "SigningCertURL" and not parts.path.endswith(".pem"):
        raise WebhookRefused("SNS SigningCertURL does not name a .pem certificate")
    return url


def sns_string_to_sign(message: Mapping[str, Any]) -> bytes:
    """The canonical text SNS signs: ``Key\\nValue\\n`` for each documented field of the
    message's ``Type``, in that order (``Subject`` only when present)."""
    fields = _SNS_FIELDS.get(str(message.get("Type")))
    if fields is None:
        raise WebhookMalformed(f"unknown SNS message type {str(message.get('Type'))[:40]!r}")
    out = []
    for name in fields:
        value = message.get(name)
        if value is None and name == "Subject":
            continue
        if not isinstance(value, str):
            raise WebhookMalformed(f"SNS message without {name}")
        out.append(f"{name}\n{value}\n")
    return "".join(out).encode("utf-8")


def sns_message(body: bytes) -> dict[str, Any]:
    """The SNS message of a webhook body (JSON object with a known ``Type``)."""
    message = parse_json(body)
    if not isinstance(message, dict) or message.get("Type") not in _SNS_FIELDS:
        raise WebhookMalformed("not an SNS message")
    return message


def verify_sns(message: Mapping[str, Any], certificate_pem: bytes, now: dt.datetime) -> None:
    """Check the signature of an SNS message with the PEM certificate its
    ``SigningCertURL`` named (valid at ``now``); :class:`WebhookRefused` if it fails."""
    version = str(message.get("SignatureVersion", ""))
    algorithm = _SNS_HASHES.get(version)
    if algorithm is None:
        raise WebhookRefused(f"SNS SignatureVersion {version[:10]!r} is not 1 or 2")
    try:
        signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
        cert = x509.load_pem_x509_certificate(certificate_pem)
    except (binascii.Error, ValueError):
        raise WebhookRefused("SNS signature or certificate cannot be read") from None
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise WebhookRefused("SNS signing certificate is not valid now")
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise WebhookRefused("SNS signing certificate has no RSA key")
    try:
        key.verify(signature, sns_string_to_sign(message), padding.PKCS1v15(), algorithm())
    except InvalidSignature:
        raise WebhookRefused("SNS signature does not match") from None


class CertificateCache:
    """SNS signing certificates by URL, fetched once each (``fetch(url) -> bytes``).

    Bounded: the least recently used certificate is forgotten past ``size``. Only URLs
    that passed :func:`check_sns_url` are ever fetched.
    """

    def __init__(self, fetch: Callable[[str], bytes], size: int = 32) -> None:
        self.fetch = fetch
        self.size = size
        self._certs: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, url: str) -> bytes:
        """The certificate at ``url`` (checked, then fetched once)."""
        check_sns_url(url)
        with self._lock:
            if url in self._certs:
                self._certs.move_to_end(url)
                return self._certs[url]
        try:
            pem = self.fetch(url)
        except Exception as exc:  # the network: never let it become a traceback
            raise WebhookUnavailable(
                f"cannot fetch the SNS certificate ({type(exc).__name__})"
            ) from None
        with self._lock:
            self._certs[url] = pem
            while len(self._certs) > self.size:
                self._certs.popitem(last=False)
        return pem

    def seed(self, url: str, pem: bytes) -> None:
        """Keep ``pem`` as the certificate of ``url`` (tests; a certificate fetched before)."""
        with self._lock:
            self._certs[url] = pem


def ses_events(message: Mapping[str, Any]) -> list[ProviderEvent]:
    """The events of an SNS ``Notification`` whose ``Message`` is an SES notification
    (``notificationType``) or event (``eventType``)."""
    try:
        ses = json.loads(str(message.get("Message", "")))
    except ValueError:
        raise WebhookMalformed("SNS Message is not SES JSON") from None
    if not isinstance(ses, dict):
        raise WebhookMalformed("SNS Message is not SES JSON")
    sns_id = _text(message.get("MessageId"), 100) or _digest(ses)
    kind_of = str(ses.get("notificationType") or ses.get("eventType") or "")
    mail = _obj(ses, "mail")
    message_id = _ses_message_id(mail)
    verp = _verp_tag(mail.get("source"))
    if kind_of == "Bounce":
        bounce = _obj(ses, "bounce")
        event_id = _text(bounce.get("feedbackId"), 200) or sns_id
        btype = str(bounce.get("bounceType", ""))
        subtype = str(bounce.get("bounceSubType", ""))
        found = []
        for r in _dicts(bounce.get("bouncedRecipients")):
            status = _text(r.get("status"), 20)
            said = _text(r.get("diagnosticCode")) or f"{btype} {subtype}".strip()
            if btype == "Permanent":
                kind = permanent_kind(enhanced_status(status), said)
            elif btype == "Transient" and subtype in ("ContentRejected", "AttachmentRejected"):
                kind = BLOCK
            else:  # Transient (SES gave up for a temporary reason), Undetermined
                kind = SOFT
            found.append(
                ProviderEvent(
                    "ses",
                    event_id,
                    f"bounce {btype}/{subtype}",
                    kind,
                    _address(r.get("emailAddress")),
                    _code(said),
                    f"{status} {said}".strip(),
                    message_id,
                    verp,
                )
            )
        return found
    if kind_of == "Complaint":
        complaint = _obj(ses, "complaint")
        event_id = _text(complaint.get("feedbackId"), 200) or sns_id
        feedback = _text(complaint.get("complaintFeedbackType"), 60) or "abuse"
        return [
            ProviderEvent(
                "ses",
                event_id,
                "complaint",
                COMPLAINT,
                _address(r.get("emailAddress")),
                None,
                f"feedback-type: {feedback}",
                message_id,
                verp,
            )
            for r in _dicts(complaint.get("complainedRecipients"))
        ]
    return [ProviderEvent("ses", sns_id, (kind_of or "unknown").lower()[:40], None)]


def _obj(parent: Mapping[str, Any], key: str) -> dict[str, Any]:
    """``parent[key]`` if it is a JSON object, else an empty one (hostile input is normal)."""
    value = parent.get(key)
    return value if isinstance(value, dict) else {}


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _ses_message_id(mail: Mapping[str, Any]) -> str | None:
    common = mail.get("commonHeaders")
    if isinstance(common, dict) and common.get("messageId"):
        return _message_id(common["messageId"])
    for h in _dicts(mail.get("headers")):
        if str(h.get("name", "")).lower() == "message-id":
            return _message_id(h.get("value"))
    return None


# --- Postmark ----------------------------------------------------------------------------

# Postmark's bounce types (its Bounce webhook's ``Type``) and what they are here; a type
# not named is not about the address (auto-replies, subscription requests, ...).
_POSTMARK_KINDS = {
    "HardBounce": HARD,
    "BadEmailAddress": HARD,
    "SoftBounce": SOFT,
    "Transient": SOFT,
    "DnsError": SOFT,
    "Blocked": BLOCK,
    "DMARCPolicy": BLOCK,
    "SpamNotification": BLOCK,
    "SpamComplaint": COMPLAINT,
}


def postmark_events(payload: Any) -> list[ProviderEvent]:
    """The event of a Postmark Bounce or SpamComplaint webhook (one JSON object)."""
    if not isinstance(payload, dict):
        raise WebhookMalformed("a Postmark webhook body is one JSON object")
    record = str(payload.get("RecordType", ""))
    event_id = _text(payload.get("ID"), 100) or _digest(payload)
    btype = str(payload.get("Type", ""))
    if record not in ("Bounce", "SpamComplaint"):
        return [ProviderEvent("postmark", event_id, (record or "unknown").lower()[:40], None)]
    kind = COMPLAINT if record == "SpamComplaint" else _POSTMARK_KINDS.get(btype)
    said = " ".join(
        t for t in (_text(payload.get("Description")), _text(payload.get("Details"))) if t
    )
    if kind == HARD:
        kind = permanent_kind(None, said)
    return [
        ProviderEvent(
            "postmark",
            event_id,
            f"{record} {btype}".strip(),
            kind,
            _address(payload.get("Email")),
            _code(payload.get("Details")),
            f"{btype}: {said}" if said else btype,
            None,  # Postmark's MessageID is its own id, not our Message-ID
        )
    ]


# --- Mailgun -----------------------------------------------------------------------------


def verify_mailgun(payload: Any, signing_key: str, now: dt.datetime) -> str:
    """Check a Mailgun webhook's ``signature`` block; the token (to refuse it again).

    HMAC-SHA256 of timestamp + token under the signing key, compared in constant time;
    a timestamp more than :data:`MAX_CLOCK_SKEW` from ``now`` is refused.
    """
    if not isinstance(payload, dict) or not isinstance(payload.get("signature"), dict):
        raise WebhookMalformed("a Mailgun webhook body has a signature object")
    sig = payload["signature"]
    timestamp, token, given = (str(sig.get(k, "")) for k in ("timestamp", "token", "signature"))
    expected = hmac.new(
        signing_key.encode("utf-8"), (timestamp + token).encode("utf-8"), hashlib.sha256
    ).hexdigest()
    if not token or not hmac.compare_digest(expected.encode(), given.lower().encode()):
        raise WebhookRefused("Mailgun signature does not match")
    _check_fresh(timestamp, now, "Mailgun")
    return token


def _check_fresh(timestamp: str, now: dt.datetime, who: str) -> None:
    try:
        at = dt.datetime.fromtimestamp(float(timestamp), dt.UTC)
    except (ValueError, OverflowError, OSError):
        raise WebhookRefused(f"{who} timestamp is not a time") from None
    if abs(now - at) > MAX_CLOCK_SKEW:
        raise WebhookRefused(f"{who} timestamp is more than 5 minutes from our clock")


def mailgun_events(payload: Mapping[str, Any]) -> list[ProviderEvent]:
    """The event of a (verified) Mailgun webhook's ``event-data``."""
    data = payload.get("event-data")
    if not isinstance(data, dict):
        raise WebhookMalformed("a Mailgun webhook body has an event-data object")
    event = str(data.get("event", ""))
    event_id = _text(data.get("id"), 100) or _digest(data)
    message = _obj(data, "message")
    headers = _obj(message, "headers")
    envelope = _obj(data, "envelope")
    kind: str | None = None
    what, code, said = event or "unknown", None, ""
    if event == "complained":
        kind, said = COMPLAINT, "complaint"
    elif event == "failed":
        status = _obj(data, "delivery-status")
        severity = str(data.get("severity", ""))
        reason = str(data.get("reason", ""))
        what = f"failed {severity}/{reason}".strip("/")
        enhanced = _text(status.get("enhanced-code"), 20)
        text = _text(status.get("message")) or _text(status.get("description")) or reason
        code = _code(status.get("code"))
        said = " ".join(t for t in (str(code or ""), enhanced, text) if t)
        if severity == "permanent":
            if reason == "espblock":
                kind = BLOCK
            elif reason == "old":  # Mailgun gave up after retrying for a temporary reason
                kind = SOFT
            elif reason == "suppress-complaint":
                kind = COMPLAINT
            elif reason != "suppress-unsubscribe":  # bounce, suppress-bounce, generic
                kind = permanent_kind(enhanced_status(enhanced), text)
            # suppress-unsubscribe: Mailgun's own unsubscribe list, not a bounce
        elif _mailbox_full(enhanced_status(enhanced), text):
            kind = SOFT  # temporary: Mailgun retries; only a full mailbox counts now
    return [
        ProviderEvent(
            "mailgun",
            event_id,
            what[:40],
            kind,
            address=_address(data.get("recipient")),
            code=code,
            diagnostic=said,
            message_id=_message_id(headers.get("message-id")),
            verp_tag=_verp_tag(envelope.get("sender")),
        )
    ]


class SeenTokens:
    """Mailgun tokens accepted recently, to refuse a replayed request.

    A token is kept as long as its timestamp could still pass the 5-minute check, so
    memory stays bounded by the traffic of ten minutes. Kept in this process's memory:
    a replay to another process is still harmless, because the store records an event
    id once.
    """

    def __init__(self) -> None:
        self._seen: dict[str, dt.datetime] = {}
        self._lock = threading.Lock()

    def claim(self, token: str, now: dt.datetime) -> bool:
        """Remember ``token``; False if it was seen already."""
        with self._lock:
            cutoff = now - 2 * MAX_CLOCK_SKEW
            for old in [t for t, at in self._seen.items() if at < cutoff]:
                del self._seen[old]
            if token in self._seen:
                return False
            self._seen[token] = now
            return True

    def release(self, token: str) -> None:
        """Forget ``token`` (its request failed: the provider's retry must be accepted)."""
        with self._lock:
            self._seen.pop(token, None)


# --- SendGrid ----------------------------------------------------------------------------


def verify_sendgrid(
    body: bytes, signature: str | None, timestamp: str | None, key_b64: str, now: dt.datetime
) -> None:
    """Check SendGrid's Signed Event Webhook: ECDSA P-256 / SHA-256 over timestamp + raw
    body, with the verification key (base64 DER public key); a timestamp more than
    :data:`MAX_CLOCK_SKEW` from ``now`` is refused."""
    if not signature or not timestamp:
        raise WebhookRefused("SendGrid signature headers are missing")
    try:
        key = serialization.load_der_public_key(base64.b64decode(key_b64.strip()))
    except (binascii.Error, ValueError):
        raise WebhookRefused("sendgrid_verification_key is not a base64 public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise WebhookRefused("sendgrid_verification_key is not an elliptic-curve key")
    try:
        der = base64.b64decode(signature.strip(), validate=True)
        key.verify(der, timestamp.encode("utf-8") + body, ec.ECDSA(hashes.SHA256()))
    except (binascii.Error, ValueError, InvalidSignature):
        raise WebhookRefused("SendGrid signature does not match") from None
    _check_fresh(timestamp, now, "SendGrid")


_SENDGRID_DROPPED = {"bounced address": HARD, "spam reporting address": COMPLAINT}


def sendgrid_events(payload: Any) -> list[ProviderEvent]:
    """The events of a (verified) SendGrid Event Webhook batch (a JSON array)."""
    if not isinstance(payload, list):
        raise WebhookMalformed("a SendGrid webhook body is a JSON array of events")
    found = []
    for e in _dicts(payload):
        event = str(e.get("event", ""))
        event_id = _text(e.get("sg_event_id"), 100) or _digest(e)
        status = _text(e.get("status"), 20)
        said = _text(e.get("reason")) or _text(e.get("response"))
        kind: str | None = None
        what = event
        if event == "bounce":
            btype = str(e.get("type", "bounce"))
            what = f"bounce/{btype}"
            kind = BLOCK if btype == "blocked" else permanent_kind(enhanced_status(status), said)
        elif event == "dropped":
            kind = _SENDGRID_DROPPED.get(said.lower())
        elif event == "deferred":  # SendGrid retries; only a full mailbox counts now
            kind = SOFT if _mailbox_full(enhanced_status(status), said) else None
        elif event == "spamreport":
            kind = COMPLAINT
            said = said or "spam report"
        found.append(
            ProviderEvent(
                "sendgrid",
                event_id,
                (what or "unknown")[:40],
                kind,
                _address(e.get("email")),
                _code(said),
                f"{status} {said}".strip(),
                _message_id(e.get("smtp-id")),
            )
        )
    return found


__all__ = [
    "MAX_HOOK_BYTES",
    "PROVIDERS",
    "CertificateCache",
    "ProviderEvent",
    "SeenTokens",
    "WebhookMalformed",
    "WebhookOff",
    "WebhookRefused",
    "WebhookUnauthorized",
    "WebhookUnavailable",
    "check_basic_auth",
    "check_sns_url",
    "mailgun_events",
    "parse_json",
    "permanent_kind",
    "postmark_events",
    "sendgrid_events",
    "ses_events",
    "sns_message",
    "sns_string_to_sign",
    "verify_mailgun",
    "verify_sendgrid",
    "verify_sns",
]
