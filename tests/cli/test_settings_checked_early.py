"""Bad settings are refused early, by the real CLI, naming the setting and its variable.

``newsletter init`` checks every value it was given before it writes anything; every
command that loads settings names the setting, its ``NEWSLETTER_*`` variable and where the
value came from (``file:line`` for newsletter.toml).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli import cli


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


BAD_FLAGS = [
    (
        ["--base-url", "foo"],
        "base_url (NEWSLETTER_BASE_URL) = 'foo' (from the command line) "
        "must be an absolute https:// or http:// URL",
    ),
    (["--base-url", "https://"], "base_url (NEWSLETTER_BASE_URL) = 'https://'"),
    (
        ["--sender-address", "Digest <d@example.org>"],
        "sender_address (NEWSLETTER_SENDER_ADDRESS) = 'Digest <d@example.org>' "
        "(from the command line) is not an email address",
    ),
    (
        ["--timezone", "Europe/Atlantis"],
        "timezone (NEWSLETTER_TIMEZONE) = 'Europe/Atlantis' (from the command line) "
        "is not a known time zone",
    ),
]


@pytest.mark.parametrize(("flags", "message"), BAD_FLAGS)
def test_init_checks_its_flags_before_writing_anything(
    isolated_env: Path, flags: list[str], message: str
) -> None:
    code, out = run("init", *flags)
    assert code == 1
    assert message in out and "hint:" in out and "Traceback" not in out
    assert list(isolated_env.iterdir()) == []  # no newsletter.toml, no folders, no store


def test_init_refuses_a_bad_environment_variable_before_writing(isolated_env: Path) -> None:
    code, out = run("init", env={"NEWSLETTER_BOUNCE_ADDRESS": "bounces at example.org"})
    assert code == 1
    assert (
        "bounce_address (NEWSLETTER_BOUNCE_ADDRESS) = 'bounces at example.org' "
        "(from the environment) is not an email address"
    ) in out
    assert list(isolated_env.iterdir()) == []


def test_init_with_good_flags_still_writes(isolated_env: Path) -> None:
    code, out = run(
        "init",
        "--base-url",
        "https://news.example.org",
        "--sender-address",
        "news@example.org",
        "--timezone",
        "Europe/London",
    )
    assert code == 0, out
    text = (isolated_env / "newsletter.toml").read_text()
    assert 'base_url = "https://news.example.org"' in text


# Commands that load settings: a bad value from each source names the setting.
BAD_VALUES = [
    ("base_url", "ftp://news.example.org", "must be an absolute https:// or http:// URL"),
    ("base_url", "https://", "has no host name"),
    ("sender_address", "news", "is not an email address"),
    ("bounce_address", "a@b@c", "is not an email address"),
    ("timezone", "Moon/Base", "is not a known time zone"),
    ("no_match_policy", "sometimes", "is not a policy"),
    ("smtp_pool_size", "0", "is too small"),
    ("smtp_timeout", "soon", "is not a number"),
    ("also_in_issue", "maybe", "is not true or false"),
]


@pytest.mark.parametrize(("name", "value", "problem"), BAD_VALUES)
def test_a_bad_value_in_newsletter_toml_names_setting_variable_and_line(
    isolated_env: Path, name: str, value: str, problem: str
) -> None:
    path = isolated_env / "newsletter.toml"
    path.write_text(f'# my settings\n\n{name} = "{value}"\n'.replace('"0"', "0"))
    code, out = run("issue", "list")
    env = "NEWSLETTER_" + name.upper()
    assert code == 1 and "Traceback" not in out
    assert f"{name} ({env}) = " in out and f"(from {path}:3)" in out
    assert problem in out


@pytest.mark.parametrize(("name", "value", "problem"), BAD_VALUES)
def test_a_bad_environment_variable_is_named(
    isolated_env: Path, name: str, value: str, problem: str
) -> None:
    env = "NEWSLETTER_" + name.upper()
    code, out = run("issue", "list", env={env: value})
    assert code == 1 and "Traceback" not in out
    assert f"{name} ({env}) = {value!r} (from the environment) {problem}" in out


@pytest.mark.parametrize(("name", "value", "problem"), BAD_VALUES)
def test_a_bad_set_flag_is_named(isolated_env: Path, name: str, value: str, problem: str) -> None:
    code, out = run("--set", f"{name}={value}", "issue", "list")
    env = "NEWSLETTER_" + name.upper()
    assert code == 1 and "Traceback" not in out
    assert f"{name} ({env}) = {value!r} (from the command line) {problem}" in out


def test_a_value_replaced_by_a_later_source_is_not_an_error(isolated_env: Path) -> None:
    (isolated_env / "issues").mkdir()
    (isolated_env / "newsletter.toml").write_text('timezone = "Moon/Base"\n')
    code, out = run("issue", "list", env={"NEWSLETTER_TIMEZONE": "Europe/Paris"})
    assert code == 0, out


def test_empty_optional_addresses_are_fine(isolated_env: Path) -> None:
    (isolated_env / "issues").mkdir()
    env = {"NEWSLETTER_BOUNCE_ADDRESS": "", "NEWSLETTER_REPLY_TO": ""}
    assert run("issue", "list", env=env)[0] == 0


def test_secrets_are_never_shown_in_a_settings_error(isolated_env: Path) -> None:
    path = isolated_env / "newsletter.toml"
    path.write_text(
        "secret_key = 982734598273\n"  # a number where text belongs: refused, not shown
    )
    code, out = run("issue", "list")
    assert code == 1 and "secret_key (NEWSLETTER_SECRET_KEY) = '***'" in out
    assert "982734598273" not in out
    path.write_text('smtp_url = ["smtp://u:hunter2@mail.example.org"]\n')
    code, out = run("issue", "list")
    assert code == 1 and "hunter2" not in out
