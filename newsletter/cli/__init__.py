"""The ``newsletter`` command: a thin click layer over the library.

Each command parses its flags, calls one library function and prints the result. Library
exceptions (:class:`newsletter.errors.NewsletterError`) become a one-line error with a hint
and exit code 1; user mistakes never show a traceback. Heavy libraries are imported inside
the commands so that ``newsletter --help`` starts fast.
"""

from __future__ import annotations

import sys

import click

from newsletter import __version__
from newsletter.cli.base import AppContext, NewsletterGroup


@click.group(cls=NewsletterGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="newsletter")
@click.option(
    "-c",
    "--config",
    type=click.Path(dir_okay=False),
    default=None,
    help="Path of newsletter.toml (default: $NEWSLETTER_CONFIG or ./newsletter.toml).",
)
@click.option(
    "--set",
    "set_values",
    multiple=True,
    metavar="NAME=VALUE",
    help="Override one setting for this run (repeatable), e.g. --set timezone=Europe/Paris.",
)
@click.pass_context
def cli(ctx: click.Context, config: str | None, set_values: tuple[str, ...]) -> None:
    """The monthly research newsletter: topic-filtered digests of psychotherapy research.

    Authors write issues/YYYY-MM.md, check and preview it; administrators manage
    subscribers and sends.

    \b
    Example:
        newsletter issue check
        newsletter issue list
    """
    overrides: dict[str, str] = {}
    for item in set_values:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"{item!r} is not NAME=VALUE", param_hint="--set")
        overrides[name.strip().replace("-", "_")] = value
    ctx.obj = AppContext(config=config, overrides=overrides)


# Each line registers one command or group: (module, attribute, parent group or None).
# Modules are imported here, but each imports only click at module level.
COMMANDS: list[tuple[str, str, str | None]] = [
    ("demo", "demo", None),
    ("init", "init", None),
    ("issue", "issue", None),
    ("archive", "import_archive_cmd", "issue"),
    ("preview", "preview", "issue"),
    ("preview", "variants", "issue"),
    ("topics", "topics", None),
    ("subscribers", "subscribers", None),
    ("db", "db", None),
    ("doctor", "doctor", None),
    ("send", "send", None),
    ("send", "send_test", None),
    ("send", "worker", None),
    ("send", "deliveries", None),
    ("bounces", "bounces", None),
    ("web", "serve", None),
    ("api_token", "api_token", None),
    ("schedule", "schedule", None),
    ("schedule", "scheduler", None),
    ("report", "report", None),
]


def _register() -> None:
    import importlib

    groups: dict[str, click.Group] = {}
    for module, attr, parent in COMMANDS:
        cmd = getattr(importlib.import_module(f"newsletter.cli.{module}"), attr)
        (groups[parent] if parent else cli).add_command(cmd)
        if isinstance(cmd, click.Group) and cmd.name:
            groups[cmd.name] = cmd


_register()


def main() -> None:
    """Entry point of the console script."""
    try:
        cli.main(prog_name="newsletter")
    except KeyboardInterrupt:  # pragma: no cover - interactive only
        sys.stderr.write("interrupted\n")
        sys.exit(130)
