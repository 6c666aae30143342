"""Small, specific exceptions of the library.

Every exception a user can cause derives from :class:`NewsletterError` and carries a
``hint`` saying how to fix it; the CLI turns them into a one-line error plus the hint,
never a traceback.
"""

from __future__ import annotations

from typing import Any


class NewsletterError(Exception):
    """Base class for errors caused by input or configuration, not by a bug."""

    hint: str | None = None

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint

    @property
    def message(self) -> str:
        """The message without the hint."""
        return str(self.args[0]) if self.args else ""


class ConfigError(NewsletterError):
    """A setting is missing or has an invalid value."""


class MissingSettingError(ConfigError):
    """A setting required by the command at hand is not set."""

    def __init__(self, name: str, purpose: str | None = None) -> None:
        env = "NEWSLETTER_" + name.upper()
        why = f" (needed {purpose})" if purpose else ""
        super().__init__(
            f"setting '{name}' is not set{why}",
            hint=f"set {name} = ... in newsletter.toml, or the environment variable {env}",
        )
        self.name = name


class UnknownTopicError(NewsletterError):
    """A topic name, slug or alias is not in the taxonomy."""

    def __init__(self, value: str, suggestions: list[str]) -> None:
        hint = (
            "did you mean " + " or ".join(repr(s) for s in suggestions) + "?"
            if suggestions
            else "run `newsletter topics list` to see the 36 topics"
        )
        super().__init__(f"unknown topic {value!r}", hint=hint)
        self.value = value
        self.suggestions = suggestions


class UnknownResearchTypeError(NewsletterError):
    """A research type is not in the vocabulary."""


class IssueNotFoundError(NewsletterError):
    """No issue file for the month asked for."""


class IssueFormatError(NewsletterError):
    """An issue file has one or more errors; ``problems`` lists them all."""

    def __init__(self, problems: list[Any]) -> None:  # list[Problem]; avoids an import cycle
        errors = [p for p in problems if p.severity == "error"]
        first = errors[0] if errors else problems[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        # The first problem's own hint (a YAML mistake: how to quote) comes first, so
        # that every command reading the file says the same as `issue check`.
        see_all = "run `newsletter issue check` to see every problem"
        super().__init__(
            f"{first.format()}{more}",
            hint=f"{first.hint}; {see_all}" if first.hint else see_all,
        )
        self.problems = problems
