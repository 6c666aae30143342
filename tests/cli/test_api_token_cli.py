"""``newsletter api-token``: tokens made, listed and revoked; only their hashes stored."""

from __future__ import annotations

import hashlib
import json

import click
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.cli.api_token import api_token


def run(*args: str, code: int = 0):
    result = CliRunner().invoke(cli, ["api-token", *args])
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result


def test_every_api_token_command_has_help_with_an_example() -> None:
    assert "Example:" in (api_token.help or "")
    for command in api_token.commands.values():
        assert isinstance(command, click.Command)
        assert "Example:" in (command.help or ""), command.name


def test_create_list_and_revoke_tokens(store_url) -> None:
    made = run("create", "crm-sync")
    token = made.stdout.strip()
    assert token.startswith("nl_") and len(token) == 46
    assert "shown only now" in made.stderr and token not in made.stderr
    other = run("create", "dashboard", "--read-only").stdout.strip()
    assert other != token

    listed = json.loads(run("list", "--json").stdout)
    assert [(t["name"], t["read_only"], t["revoked_at"]) for t in listed] == [
        ("crm-sync", False, None),
        ("dashboard", True, None),
    ]
    table = run("list").stdout
    assert "crm-sync" in table and token not in table

    # Only the SHA-256 is stored: the token itself is nowhere in the store.
    from newsletter.config import load_settings
    from newsletter.services import App, api_tokens

    with App(load_settings(overrides={"database_url": store_url}, environ={})) as app:
        assert api_tokens.authenticate(app, f"Bearer {token}").name == "crm-sync"
        assert api_tokens.hash_token(token) == hashlib.sha256(token.encode()).hexdigest()

    taken = run("create", "crm-sync", code=1)
    assert "exists already" in taken.output and "hint:" in taken.output
    bad = run("create", "no spaces please", code=1)
    assert "cannot name an API token" in bad.output and "hint:" in bad.output

    assert "revoked the API token crm-sync" in run("revoke", "crm-sync").stdout
    revoked = {t["name"]: t for t in json.loads(run("list", "--json").stdout)}
    assert revoked["crm-sync"]["revoked_at"] is not None
    assert revoked["dashboard"]["revoked_at"] is None
    missing = run("revoke", "nobody", code=1)
    assert "no API token named 'nobody'" in missing.output
