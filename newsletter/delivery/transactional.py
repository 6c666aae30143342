"""One-off messages to one person: sign-up confirmation, welcome, a fresh preferences link.

The web pages render the words (their templates live in ``templates/web/mail/``); this
module only assembles the message and hands it to the configured transport, so that the
rule "only ``newsletter/delivery/`` talks SMTP" holds. These mails are not newsletter
issues and are not recorded in the delivery ledger.
"""

from __future__ import annotations

import email.policy
import email.utils
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from newsletter.config import Settings
    from newsletter.delivery.transports import SendOutcome


@dataclass(frozen=True)
class TransactionalMail:
    """The content of one message: who gets it, its subject and its text (and HTML)."""

    to: str
    subject: str
    text: str
    html: str | None = None
    headers: dict[str, str] = field(default_factory=dict)  # e.g. List-Unsubscribe


def build_transactional(settings: Settings, mail: TransactionalMail) -> tuple[str, bytes]:
    """The Message-ID and the CRLF bytes of ``mail`` as it will be sent."""
    sender = settings.require("sender_address", "to send confirmation and welcome emails")
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = email.utils.formataddr((settings.sender_name or settings.newsletter_name, sender))
    msg["To"] = mail.to
    if settings.reply_to:
        msg["Reply-To"] = settings.reply_to
    msg["Subject"] = mail.subject
    msg["Date"] = email.utils.formatdate(localtime=False)
    domain = sender.rpartition("@")[2] or "localhost"
    message_id = email.utils.make_msgid(domain=domain)
    msg["Message-ID"] = message_id
    # Transactional: auto-responders should not answer, and it is not bulk mail.
    msg["Auto-Submitted"] = "auto-generated"
    for name, value in mail.headers.items():
        msg[name] = value
    msg.set_content(mail.text)
    if mail.html is not None:
        msg.add_alternative(mail.html, subtype="html")
    return message_id, msg.as_bytes()


def send_transactional(settings: Settings, mail: TransactionalMail) -> SendOutcome:
    """Send ``mail`` now through the configured transport (SMTP or the outbox).

    With ``dev_redirect`` set, the message goes to that address instead, like every send.
    """
    from newsletter.delivery.transports import OutgoingMessage, open_transport

    message_id, data = build_transactional(settings, mail)
    recipient = settings.dev_redirect or mail.to
    message = OutgoingMessage(message_id, (recipient,), data, settings.sender_address)
    transport = open_transport(settings)
    try:
        return transport.send(message)
    finally:
        transport.close()
