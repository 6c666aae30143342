"""``newsletter init``: a new project folder."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from newsletter.cli.base import AppContext, console, esc

# What init asks, in order: (setting, flag, question). Each has a flag for scripts; in a
# terminal the ones not given are asked, each checked at once (asked again if refused).
QUESTIONS = (
    ("newsletter_name", "--newsletter-name", "Name of the newsletter (From, header, footer)"),
    ("sender_name", "--sender-name", "Who sends it, a person or organisation (footer)"),
    ("sender_address", "--sender-address", "Address it is sent from"),
    ("postal_address", "--postal-address", "Postal address (in every email's footer)"),
    ("base_url", "--base-url", "Public address of the web pages (https://...)"),
    ("timezone", "--timezone", "Time zone of schedules and times shown (IANA name)"),
)
#: Settings a send (and a preview) cannot do without: asked until given in a terminal.
REQUIRED = ("sender_address", "postal_address")


def _options(command: Any) -> Any:
    for name, flag, question in reversed(QUESTIONS):
        command = click.option(flag, name, default=None, help=f"{question}.")(command)
    return command


@click.command()
@click.option("--force", is_flag=True, help="Replace an existing newsletter.toml.")
@_options
@click.option(
    "--prompt/--no-prompt",
    "prompt",
    default=None,
    help="Ask for the settings not given as flags (default: only when standard input is "
    "a terminal).",
)
@click.pass_obj
def init(app: AppContext, force: bool, prompt: bool | None, **given: str | None) -> None:
    """Write a commented newsletter.toml with a fresh secret key.

    In a terminal it asks for the newsletter's name, the sender's name and address, the
    postal address, the web pages' address and the time zone (Enter keeps the value in
    brackets); scripts pass them as flags (with --no-prompt nothing is asked). Every
    value is checked before anything is written. Never replaces an existing file unless
    --force is given. Also creates the issues/ and subscribers/ folders and the store.

    \b
    Example:
        newsletter init
        newsletter init --newsletter-name "Research Digest" --sender-address news@example.org \\
            --postal-address "1 Example Street, Exampletown" --timezone Europe/London
    """
    from newsletter.config import check_value, config_file_path
    from newsletter.errors import ConfigError
    from newsletter.services.setup import init_project

    path: Path = config_file_path(app.config)
    if path.exists() and not force:
        raise ConfigError(
            f"{path} already exists", hint="keep it, or pass --force to write a new one"
        )
    if prompt is None:
        prompt = sys.stdin.isatty()
    values = {name: value for name, value in given.items() if value is not None}
    if prompt:
        values.update(_ask(values, check_value))
    for line in init_project(path, values, force=force):
        click.echo(line)
    _next_steps(path, values)


def _ask(values: dict[str, str], check_value: Any) -> dict[str, str]:
    """Ask for each setting not given; a refused answer is explained and asked again."""
    from newsletter.config import SETTINGS
    from newsletter.errors import ConfigError

    defaults = {s.name: s.default for s in SETTINGS}
    answers: dict[str, str] = {}
    for name, _flag, question in QUESTIONS:
        if name in values:
            continue
        default = answers.get("newsletter_name") if name == "sender_name" else defaults[name]

        def checked(text: str, name: str = name) -> str:
            text = text.strip()
            if not text and name in REQUIRED:
                raise click.BadParameter("needed to preview and send; please give one")
            try:
                check_value(name, text, "your answer")
            except ConfigError as exc:
                hint = f" ({exc.hint})" if exc.hint else ""
                raise click.BadParameter(exc.message + hint) from None
            return text

        answers[name] = click.prompt(
            question,
            default=default or None,
            value_proc=checked,
            show_default=bool(default),
        )
    return answers


def _next_steps(path: Path, values: dict[str, str]) -> None:
    """What to do next: three commands, printed so that they can be copied whole."""
    import datetime as dt

    from newsletter.rules.months import add_months

    month = add_months(dt.date.today().replace(day=1), 1).strftime("%Y-%m")
    out = console()
    missing = [name for name in REQUIRED if not values.get(name)]
    if missing:
        out.print(
            f"[yellow]still to set in {esc(path.name)}:[/yellow] {', '.join(missing)} "
            "(needed to preview and send)",
            soft_wrap=True,
        )
    to = values.get("sender_address") or "you@example.org"
    out.print("Next:")
    for command in (
        f"newsletter issue new {month}",
        f"newsletter issue preview {month}",
        f"newsletter send-test {month} --to {to}",
    ):
        out.print(f"  {esc(command)}", soft_wrap=True)
