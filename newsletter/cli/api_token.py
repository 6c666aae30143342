"""``newsletter api-token``: the tokens of the JSON API (create, list, revoke)."""

from __future__ import annotations

import click

from newsletter.cli.base import AppContext, console, esc, plural, print_json, when


@click.group(name="api-token")
def api_token() -> None:
    """Make, list and revoke the tokens that open the JSON API (/api/v1/).

    The API is served by `newsletter serve` when api_enabled = true. A client sends its
    token as 'Authorization: Bearer nl_...'. Only a hash of each token is stored.

    \b
    Example:
        newsletter api-token create crm-sync
        newsletter api-token create dashboard --read-only
        newsletter api-token revoke crm-sync
    """


@api_token.command()
@click.argument("name")
@click.option("--read-only", is_flag=True, help="The token may read but change nothing.")
@click.pass_obj
def create(app: AppContext, name: str, read_only: bool) -> None:
    """Make a token called NAME and print it (the only time it is shown).

    NAME says whose it is: the server's log names it for every change made with it.
    Keep the token like a password; if it leaks, revoke it and make another.

    \b
    Example:
        newsletter api-token create crm-sync
        newsletter api-token create dashboard --read-only
    """
    from newsletter.services import api_tokens

    new = api_tokens.create_token(app.app(), name, read_only=read_only)
    kind = "read-only token" if read_only else "token"
    console(stderr=True).print(
        f"Made the {kind} [bold]{esc(new.view.name)}[/bold]. It is shown only now; "
        "store it where the client can read it:"
    )
    click.echo(new.token)


@api_token.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
def list_(app: AppContext, as_json: bool) -> None:
    """List the tokens (names and dates; never the tokens themselves).

    \b
    Example:
        newsletter api-token list
        newsletter api-token list --json
    """
    from newsletter.services import api_tokens

    ctx = app.app()
    tokens = api_tokens.list_tokens(ctx)
    if as_json:
        print_json(
            [
                {
                    "name": t.name,
                    "read_only": t.read_only,
                    "created_at": t.created_at,
                    "last_used_at": t.last_used_at,
                    "revoked_at": t.revoked_at,
                }
                for t in tokens
            ]
        )
        return
    from rich.table import Table

    settings = ctx.settings
    table = Table(title=plural(len(tokens), "API token"), title_justify="left")
    for column in ("Name", "Access", "Made", "Last used", "Revoked"):
        table.add_column(column)
    for t in tokens:
        table.add_row(
            esc(t.name),
            "read" if t.read_only else "read, write",
            when(t.created_at, settings),
            when(t.last_used_at, settings) or "never",
            when(t.revoked_at, settings),
        )
    console().print(table)


@api_token.command()
@click.argument("name")
@click.pass_obj
def revoke(app: AppContext, name: str) -> None:
    """Revoke the token NAME: from now on the API refuses it.

    \b
    Example:
        newsletter api-token revoke crm-sync
    """
    from newsletter.services import api_tokens

    view = api_tokens.revoke_token(app.app(), name)
    click.echo(f"revoked the API token {view.name}")
