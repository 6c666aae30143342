"""Shared pieces of the CLI: the app context, error translation, output helpers."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import click

from newsletter.errors import NewsletterError

if TYPE_CHECKING:
    from rich.console import Console

    from newsletter.config import Settings
    from newsletter.services import App


class NewsletterGroup(click.Group):
    """A click group that turns library errors into ``ClickException`` with a hint."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NewsletterError as exc:
            message = exc.message
            if exc.hint:
                message += f"\n  hint: {exc.hint}"
            raise click.ClickException(message) from None


@dataclass
class AppContext:
    """What every command gets through ``click.pass_obj``: the settings and the
    :class:`~newsletter.services.App`, both made on first use (``--help`` needs neither)."""

    config: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    _settings: Settings | None = None
    _app: App | None = None

    def settings(self) -> Settings:
        """The settings: defaults < newsletter.toml < environment < ``--set`` flags."""
        from newsletter.config import load_settings

        if self._settings is None:
            self._settings = load_settings(self.config, self.overrides)
        return self._settings

    def app(self) -> App:
        """The application the command calls services with (closed when the command ends)."""
        if self._app is None:
            from newsletter.services import App

            self._app = App(self.settings())
            click.get_current_context().find_root().call_on_close(self._app.close)
        return self._app


def console(stderr: bool = False) -> Console:
    """A rich console (imported on first use to keep start-up fast)."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def esc(text: object) -> str:
    """``text`` made safe to print through rich: square brackets are not read as markup.

    Everything that comes from outside the program's own strings goes through it before
    rich prints it: names, addresses, titles, subjects, paths, settings, SMTP replies and
    skip reasons (an SMTP reply holding ``[/bold]`` would otherwise stop the command).
    Control characters but line feed and tab are shown as ``\\xNN``.
    """
    from rich.markup import escape

    return escape(_CONTROL.sub(_visible, str(text)))


# Control characters other than line feed and tab, shown as \xNN rather than sent to the
# terminal (an ESC from a stored name could otherwise drive it).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _visible(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group()):02x}"


def print_json(data: Any) -> None:
    """Machine-readable output for ``--json``: plain JSON on stdout, nothing else."""
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))
