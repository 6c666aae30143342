"""One-off emails in the digest's layout: sign-up confirmation, preferences link, welcome,
and the notes to the author.

Each mail is a pair of templates in ``templates/email/`` (``<name>.mjml.j2`` and
``<name>.txt.j2``) extending the digest's layouts and replacing their digest-only blocks
(``web_view``, ``masthead_subtitle``, ``greeting``, ``footer``). They go through the same
Jinja environments and MJML conversion as the digest, and a project's own copies in
``templates_dir/email/`` win the same way.

Unlike a digest variant these are rendered per person, so there are no holes to fill:
every value arrives final in the context, and a finished mail never holds a marker.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from newsletter.config import Settings
from newsletter.render.build import common_context, tidy_text
from newsletter.render.errors import TemplateError
from newsletter.render.prepared import find_markers
from newsletter.render.templates import mjml_to_html, render_template

# The context each mail needs besides the common one (names, address, base_url, helpers).
MAIL_CONTEXT: dict[str, tuple[str, ...]] = {
    # name may be empty; valid_days: how long confirm_url works
    "confirm": ("name", "email", "confirm_url", "valid_days"),
    "preferences_link": ("name", "email", "preferences_url", "unsubscribe_url"),
    # recent: dicts with title, month_name, url, topics (names), implications (Markdown)
    "welcome": (
        "name",
        "all_topics",
        "topic_names",
        "recent",
        "archive_url",
        "preferences_url",
        "unsubscribe_url",
    ),
    # facts: (label, value) pairs; commands: shell commands shown whole, never wrapped
    "author_note": ("title", "paragraphs", "facts", "commands"),
}
MAILS = tuple(MAIL_CONTEXT)

# The author's notes must render even when a missing postal address is what they report.
_SUBSCRIBER_MAILS = frozenset({"confirm", "preferences_link", "welcome"})

# Values only a digest has; a layout that uses them outside the blocks the mails replace
# (a project's copy made before the blocks existed) cannot render a one-off mail.
_DIGEST_ONLY = ("field", "web_view_url", "month_name", "preheader")


@dataclass(frozen=True)
class RenderedMail:
    """One finished one-off email: its subject, HTML and plain-text parts."""

    name: str
    subject: str
    html: str
    text: str


def render_mail(
    settings: Settings, name: str, subject: str, context: Mapping[str, Any]
) -> RenderedMail:
    """Render the one-off mail ``name`` (one of :data:`MAILS`) for one person.

    ``context`` holds the mail's own values (:data:`MAIL_CONTEXT` lists them), on top of
    what every email template gets. A broken template raises :class:`TemplateError` with
    ``file:line``; a missing context value or unknown name is the caller's bug
    (``ValueError``).
    """
    if name not in MAIL_CONTEXT:
        raise ValueError(f"no mail {name!r}; one of: {', '.join(MAILS)}")
    missing = [key for key in MAIL_CONTEXT[name] if key not in context]
    if missing:
        raise ValueError(f"mail {name!r} needs a value for: {', '.join(missing)}")
    if name in _SUBSCRIBER_MAILS:
        settings.require("postal_address", "in the footer of every email")
    values = {**common_context(settings), "subject": subject, **context}
    html_name, text_name = f"{name}.mjml.j2", f"{name}.txt.j2"
    try:
        mjml = render_template(settings.templates_dir, "html", html_name, values)
        html = mjml_to_html(mjml, html_name)
        text = tidy_text(render_template(settings.templates_dir, "text", text_name, values))
    except TemplateError as exc:
        raise _explained(exc) from None
    for part, template in ((html, html_name), (text, text_name)):
        left = find_markers(part)
        if left:
            raise TemplateError(
                f"{template}: a personal field of the digest ({left[0]}) is left in the email",
                hint="one-off emails get their values in the context: do not use field.* "
                "or the digest's links in their templates",
            )
    return RenderedMail(name=name, subject=subject, html=html, text=text)


def _explained(exc: TemplateError) -> TemplateError:
    """``exc`` with a hint when a template reaches for a value only the digest has."""
    if not any(f"'{v}' is undefined" in exc.message for v in _DIGEST_ONLY):
        return exc
    where = exc.message.split(": ", 1)[0]
    if "layout." in Path(where.rsplit(":", 1)[0]).name:
        # A project's copy of a layout made before it had the blocks the mails replace.
        hint = (
            "one-off emails replace the blocks preheader, web_view, masthead_subtitle, "
            "greeting and footer of layout.mjml.j2 and layout.txt.j2; your copy of the "
            "layout needs those blocks too (see the default layout)"
        )
    else:
        hint = (
            "one-off emails are rendered per person with their values in the context: "
            "field.*, web_view_url and month_name exist only in the digest"
        )
    return TemplateError(exc.message, hint=hint)
