"""One way to build and send any single email: sign-up confirmation, welcome, a fresh
preferences link, the author's reports and test sends.

Every one is rendered by :mod:`newsletter.render` in the digest's branded layout with a
text part, built by the same message builder as the digests
(:mod:`newsletter.delivery.message`: same headers, same encoding, ``dev_redirect``
honoured) and handed to the app's one transport.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from newsletter.delivery.message import build_single, headers_from_settings
from newsletter.delivery.transports import SendOutcome
from newsletter.render import RenderedMail, render_mail
from newsletter.services.app import App

log = logging.getLogger("newsletter.mail")


def send_mail(
    app: App,
    to: str,
    mail: RenderedMail,
    *,
    to_name: str | None = None,
    unsubscribe_url: str | None = None,
) -> SendOutcome:
    """Send one rendered mail to ``to`` now (to ``dev_redirect`` instead, when set).

    ``unsubscribe_url`` adds List-Unsubscribe (with RFC 8058 one-click) for mails to
    subscribers.
    """
    message = build_single(
        headers_from_settings(app.settings),
        app.settings,
        to=to,
        to_name=to_name,
        subject=mail.subject,
        html=mail.html,
        text=mail.text,
        kind=mail.name,
        unsubscribe_url=unsubscribe_url,
    )
    outcome = app.transport.send(message)
    if outcome.status != "sent":
        log.warning("%s email to %s not sent: %s", mail.name, to, outcome.reply)
    return outcome


@dataclass(frozen=True)
class AuthorNote:
    """A short report to the newsletter's author (``author_address``)."""

    subject: str
    title: str
    paragraphs: list[str]
    facts: list[tuple[str, str]] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)


def notify_author(app: App, note: AuthorNote) -> bool:
    """Mail ``author_address`` (if set) the note; never raises (a report must never break
    the scheduler). True when the server took it."""
    settings = app.settings
    if not settings.author_address or not settings.sender_address:
        return False
    try:
        mail = render_mail(
            settings,
            "author_note",
            note.subject,
            {
                "title": note.title,
                "paragraphs": note.paragraphs,
                "facts": note.facts,
                "commands": note.commands,
            },
        )
        outcome = send_mail(app, settings.author_address, mail)
    except Exception as exc:
        log.error("could not mail the author (%s): %s", settings.author_address, exc)
        return False
    return outcome.sent
