"""Errors of the render stage."""

from __future__ import annotations

from newsletter.errors import NewsletterError


class TemplateError(NewsletterError):
    """An email template cannot be read, compiled or rendered; the message gives name:line."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(
            message,
            hint=hint or "fix the template (see the line above), then run the command again",
        )


class NoMatchingVariantError(NewsletterError):
    """No summary matches the topics and the no-match policy says to send nothing."""
