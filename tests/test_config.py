"""Settings: defaults < newsletter.toml < NEWSLETTER_* env < flags."""

from __future__ import annotations

import dataclasses
import json
import stat
import tomllib
from pathlib import Path

import pytest

from newsletter.config import (
    SETTINGS,
    Settings,
    load_settings,
    path_setting,
    render_config_file,
    setting,
    setting_infos,
    write_config_file,
)
from newsletter.errors import ConfigError, MissingSettingError


def test_defaults_without_a_config_file(isolated_env: Path) -> None:
    s = load_settings(environ={})
    assert s.database_url == f"sqlite:///{isolated_env}/subscribers/newsletter.db"
    assert s.smtp_url == f"outbox://{isolated_env}/outbox"
    assert s.base_url == "http://127.0.0.1:8000"
    assert s.issues_dir == isolated_env / "issues"
    assert s.no_match_policy == "skip"
    assert s.also_in_issue is True
    assert s.config_path is None


def test_precedence_file_then_env_then_flags(isolated_env: Path) -> None:
    (isolated_env / "newsletter.toml").write_text(
        'base_url = "https://file.example/"\ntimezone = "Europe/Paris"\n'
        'sender_name = "File"\nalso_in_issue = false\n'
    )
    env = {"NEWSLETTER_BASE_URL": "https://env.example", "NEWSLETTER_TIMEZONE": "Asia/Tokyo"}
    s = load_settings(environ=env, overrides={"timezone": "America/Chicago"})
    assert s.sender_name == "File"
    assert s.base_url == "https://env.example"
    assert s.timezone == "America/Chicago"
    assert s.also_in_issue is False
    assert s.sources["sender_name"].endswith("newsletter.toml")
    assert s.sources["base_url"] == "NEWSLETTER_BASE_URL"
    assert s.sources["timezone"] == "command line"


def test_env_names_from_design_are_honoured(isolated_env: Path) -> None:
    env = {
        "NEWSLETTER_DATABASE_URL": "postgresql+psycopg://u@h/db",
        "NEWSLETTER_SMTP_URL": "smtp://mail.example:587?starttls=true",
        "NEWSLETTER_BASE_URL": "https://news.example",
        "NEWSLETTER_SECRET_KEY": "new,old",
    }
    s = load_settings(environ=env)
    assert s.database_url == "postgresql+psycopg://u@h/db"
    assert s.smtp_url == "smtp://mail.example:587?starttls=true"
    assert s.secret_keys == ["new", "old"]


def test_newsletter_config_env_points_at_another_file(tmp_path: Path) -> None:
    other = tmp_path / "elsewhere" / "conf.toml"
    other.parent.mkdir()
    other.write_text('issues_dir = "my-issues"\n')
    s = load_settings(environ={"NEWSLETTER_CONFIG": str(other)})
    assert s.issues_dir == other.parent / "my-issues"  # relative to the config file
    assert s.database_url == f"sqlite:///{other.parent}/subscribers/newsletter.db"


def test_explicit_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml", environ={})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('base_url = "x', "not valid TOML"),
        ('sender_adress = "a@b.c"', "unknown setting 'sender_adress'"),
        ('no_match_policy = "maybe"', "no_match_policy"),
        ('also_in_issue = "perhaps"', "is not true or false"),
    ],
)
def test_bad_config_files_give_clear_errors(isolated_env: Path, text: str, message: str) -> None:
    (isolated_env / "newsletter.toml").write_text(text + "\n")
    with pytest.raises(ConfigError, match=message) as info:
        load_settings(environ={})
    assert info.value.hint


def test_unknown_setting_suggests_the_right_name(isolated_env: Path) -> None:
    (isolated_env / "newsletter.toml").write_text('sender_adress = "a@b.c"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(environ={})
    assert info.value.hint == "did you mean 'sender_address'?"


def test_require_names_the_setting_and_the_env_var(isolated_env: Path) -> None:
    s = load_settings(environ={})
    with pytest.raises(MissingSettingError) as info:
        s.require("sender_address", "to send")
    assert "sender_address" in str(info.value) and "to send" in str(info.value)
    assert "NEWSLETTER_SENDER_ADDRESS" in info.value.hint


def test_secret_never_in_repr(isolated_env: Path) -> None:
    s = load_settings(environ={"NEWSLETTER_SECRET_KEY": "supersecretvalue"})
    assert "supersecretvalue" not in repr(s)


def test_written_config_is_valid_commented_and_private(isolated_env: Path) -> None:
    path = write_config_file(isolated_env / "newsletter.toml", {"sender_name": 'A "quoted" name'})
    text = path.read_text()
    data = tomllib.loads(text)
    assert data["sender_name"] == 'A "quoted" name'
    assert len(data["secret_key"]) >= 32
    assert "database_url" not in data  # documented but commented out
    assert "# database_url = " in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for info in SETTINGS:
        assert info.help in text
    s = load_settings(path, environ={})
    assert s.sender_name == 'A "quoted" name'


def test_each_new_config_gets_a_fresh_secret() -> None:
    a = tomllib.loads(render_config_file())["secret_key"]
    b = tomllib.loads(render_config_file())["secret_key"]
    assert a != b


def test_write_refuses_to_overwrite_without_force(isolated_env: Path) -> None:
    path = isolated_env / "newsletter.toml"
    path.write_text("# mine\n")
    with pytest.raises(ConfigError, match="already exists"):
        write_config_file(path)
    assert path.read_text() == "# mine\n"
    write_config_file(path, force=True)
    assert "secret_key" in path.read_text()


def test_every_settings_field_is_one_documented_setting() -> None:
    """A setting is declared once, as a Settings field; SETTINGS is derived from it."""
    not_settings = {"root", "config_path", "sources"}
    names = [f.name for f in dataclasses.fields(Settings) if f.name not in not_settings]
    assert [info.name for info in SETTINGS] == names
    assert len(set(names)) == len(names)
    defaults = Settings()
    for info in SETTINGS:
        assert info.help.strip(), info.name
        value = getattr(defaults, info.name)
        if isinstance(value, Path):
            assert info.kind is str and value == Path(info.default), info.name
        else:
            assert type(value) is info.kind and value == info.default, info.name


def test_a_setting_cannot_be_half_declared() -> None:
    @dataclasses.dataclass(frozen=True)
    class Undocumented:
        documented: int = setting(1, "A count.")
        plain: str = ""

    @dataclasses.dataclass(frozen=True)
    class NoHelp:
        blank: str = setting("", " ")

    @dataclasses.dataclass(frozen=True)
    class WrongKind:
        count: int = setting(1.5, "A count.")  # type: ignore[assignment]

    @dataclasses.dataclass(frozen=True)
    class PathAsText:
        folder: str = path_setting("issues", "A folder.")  # type: ignore[assignment]

    for cls, message in [
        (Undocumented, "Undocumented.plain is not declared with setting"),
        (NoHelp, "NoHelp.blank is not declared with setting"),
        (WrongKind, "WrongKind.count: the default 1.5 is not of type int"),
        (PathAsText, "PathAsText.folder: a Path setting, and only one, is made with path_setting"),
    ]:
        with pytest.raises(TypeError, match=message):
            setting_infos(cls)

    @dataclasses.dataclass(frozen=True)
    class Fine:
        folder: Path = path_setting("issues", "A folder.")  # noqa: RUF009
        rate: float = setting(0.5, "A rate.", minimum=0)
        root: Path = Path()

    (folder, rate) = setting_infos(Fine)
    assert (folder.name, folder.default, folder.kind) == ("folder", "issues", str)
    assert (rate.name, rate.default, rate.kind, rate.minimum) == ("rate", 0.5, float, 0)


# --- types and addresses of every setting ------------------------------------------------


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "base_url = 5",
            "base_url (NEWSLETTER_BASE_URL) = 5 (from {path}:2) is not text (it is a whole number)",
        ),
        (
            'smtp_pool_size = "4"',
            "smtp_pool_size (NEWSLETTER_SMTP_POOL_SIZE) = '4' (from {path}:2) "
            "is not a whole number",
        ),
        (
            "smtp_timeout = true",
            "smtp_timeout (NEWSLETTER_SMTP_TIMEOUT) = True (from {path}:2) is not a number",
        ),
        (
            "also_in_issue = 1",
            "also_in_issue (NEWSLETTER_ALSO_IN_ISSUE) = 1 (from {path}:2) is not true or false",
        ),
        (
            'timezone = ["UTC"]',
            "timezone (NEWSLETTER_TIMEZONE) = [...] (from {path}:2) is not text (it is a list)",
        ),
        (
            "sender_name = {a = 1}",
            "sender_name (NEWSLETTER_SENDER_NAME) = {{...}} (from {path}:2) is not text",
        ),
        (
            "consent_version = 2026-01-01",
            "consent_version (NEWSLETTER_CONSENT_VERSION) = 2026-01-01 (from {path}:2) is not",
        ),
        (
            "rate_per_hour = 1.5",
            "rate_per_hour (NEWSLETTER_RATE_PER_HOUR) = 1.5 (from {path}:2) is not a whole number",
        ),
    ],
)
def test_every_setting_from_the_file_must_have_its_type(
    isolated_env: Path, line: str, message: str
) -> None:
    path = isolated_env / "newsletter.toml"
    path.write_text(f"# settings\n{line}\n")
    with pytest.raises(ConfigError) as info:
        load_settings(environ={})
    assert message.format(path=path) in info.value.message
    assert info.value.hint and "write it as" in info.value.hint


def test_numbers_may_be_written_as_whole_numbers(isolated_env: Path) -> None:
    (isolated_env / "newsletter.toml").write_text("rate_per_second = 2\nsmtp_pool_size = 3\n")
    s = load_settings(environ={})
    assert (s.rate_per_second, s.smtp_pool_size) == (2.0, 3)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("javascript:alert(1)//", "must be an absolute https://"),
        ("data:text/html,<b>x</b>", "must be an absolute https://"),
        ("news.example.org", "must be an absolute https://"),
        ("/news", "must be an absolute https://"),
        ("https://", "has no host name"),
        ("https:///path", "has no host name"),
        ("https://user:pw@news.example.org", "must not hold a user name or password"),
        ("https://evil.example@news.example.org", "must not hold a user name or password"),
        ("https://news.example.org/?a=1", "must not have a ?query or #fragment"),
        ("https://news.example.org/#x", "must not have a ?query or #fragment"),
        ("https://news.example.org:99999", "is not a valid address"),
        ("https://news.example.org/a b", "holds a space, a quote or a control character"),
        ('https://news.example.org/"><script>', "holds a space, a quote"),
    ],
)
def test_base_url_must_be_an_absolute_http_address(
    isolated_env: Path, value: str, problem: str
) -> None:
    path = isolated_env / "newsletter.toml"
    path.write_text(f"base_url = {json.dumps(value)}\n")
    with pytest.raises(ConfigError) as info:
        load_settings(environ={})
    message = f"base_url (NEWSLETTER_BASE_URL) = {value!r} (from {path}:1) {problem}"
    assert message in info.value.message
    assert info.value.hint
    with pytest.raises(ConfigError, match=r"\(NEWSLETTER_BASE_URL\) = .* \(from the environment\)"):
        load_settings(environ={"NEWSLETTER_BASE_URL": value})


@pytest.mark.parametrize(
    "value", ["http://127.0.0.1:8000", "https://news.example.org/", "https://x.org/digest"]
)
def test_good_base_urls(isolated_env: Path, value: str) -> None:
    assert load_settings(environ={"NEWSLETTER_BASE_URL": value}).base_url == value.rstrip("/")


@pytest.mark.parametrize(
    ("name", "value", "hint"),
    [
        ("sender_address", "Digest <digest@example.org>", "one plain address"),
        ("sender_address", "digest@example.org\nBcc: x@example.org", "one plain address"),
        ("reply_to", "editor", "one plain address"),
        ("author_address", "a@example.org, b@example.org", "one plain address"),
        ("dev_redirect", "stage @example.org", "one plain address"),
        ("unsubscribe_mailto", "mailto:leave@example.org", "without 'mailto:'"),
    ],
)
def test_address_settings_must_be_one_plain_address(
    isolated_env: Path, name: str, value: str, hint: str
) -> None:
    path = isolated_env / "newsletter.toml"
    path.write_text(f"# x\n\n{name} = {json.dumps(value)}\n")
    with pytest.raises(ConfigError) as info:
        load_settings(environ={})
    env = "NEWSLETTER_" + name.upper()
    expected = f"{name} ({env}) = {value!r} (from {path}:3) is not an email address"
    assert expected in info.value.message
    assert hint in (info.value.hint or "")


def test_good_address_settings_load(isolated_env: Path) -> None:
    env = {
        "NEWSLETTER_SENDER_ADDRESS": "digest@news.example.org",
        "NEWSLETTER_REPLY_TO": "Editor.Desk+news@example.org",
        "NEWSLETTER_UNSUBSCRIBE_MAILTO": "leave@example.org",
    }
    s = load_settings(environ=env)
    assert (s.sender_address, s.reply_to) == (
        env["NEWSLETTER_SENDER_ADDRESS"],
        env["NEWSLETTER_REPLY_TO"],
    )
