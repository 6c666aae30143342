"""smtp_url parsing and the transport settings: clear errors, and no password leaks."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from newsletter.config import load_settings, render_config_file
from newsletter.delivery.transports import (
    OutboxTransport,
    SmtpTransport,
    TransportConfig,
    open_transport,
    parse_smtp_url,
    redact_url,
)
from newsletter.errors import ConfigError

SECRET = "s3cr%2Ft:p@ss"  # percent-encoded in URLs below; decoded it is "s3cr/t:p@ss"
DECODED = "s3cr/t:p@ss"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.example:2525", ("smtp", "mail.example", 2525, False)),
        ("smtp://mail.example", ("smtp", "mail.example", 25, False)),
        ("smtp://mail.example?starttls=true", ("smtp", "mail.example", 587, True)),
        ("smtp://MAIL.example:587?starttls=yes", ("smtp", "mail.example", 587, True)),
        ("smtps://mail.example", ("smtps", "mail.example", 465, False)),
        ("smtps://mail.example:4650", ("smtps", "mail.example", 4650, False)),
    ],
)
def test_smtp_urls_and_default_ports(url: str, expected: tuple) -> None:
    cfg = parse_smtp_url(url)
    assert (cfg.scheme, cfg.host, cfg.port, cfg.starttls) == expected
    assert cfg.verify is True and cfg.ca_file is None
    assert cfg.username == "" and cfg.password == ""


def test_user_and_password_are_percent_decoded() -> None:
    cfg = parse_smtp_url(f"smtps://news%40example.org:{SECRET}@mail.example")
    assert cfg.username == "news@example.org"
    assert cfg.password == DECODED


def test_password_never_in_repr_or_str() -> None:
    cfg = parse_smtp_url(f"smtps://user:{SECRET}@mail.example")
    for text in (repr(cfg), str(cfg), repr(SmtpTransport(cfg))):
        assert DECODED not in text and SECRET not in text
    assert redact_url(f"smtps://user:{SECRET}@mail.example") == "smtps://user:***@mail.example"
    assert redact_url("smtp://mail.example:25") == "smtp://mail.example:25"
    assert redact_url("smtp://a:b/c?d@host:25") == "smtp://a:***@host:25"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mail.example:25", "is not an smtp://"),
        ("http://mail.example", "is not an smtp://"),
        ("smtp://", "names no host"),
        ("smtp://mail.example:abc", "port is not a number"),
        ("smtp://mail.example:99999", "port is not a number"),
        ("smtp://mail.example/path", "unexpected text"),
        ("smtp://mail.example?tls=1", "unknown option 'tls'"),
        ("smtp://mail.example?starttls=maybe", "is not true or false"),
        ("smtps://mail.example?starttls=true", "already encrypted"),
        ("smtp://mail.example?verify=false", "only apply to encrypted"),
        ("smtps://mail.example?ca_file=/nonexistent/ca.pem", "does not exist"),
        ("smtp://user@mail.example?starttls=true", "no password"),
        ("smtp://:pw@mail.example?starttls=true", "no user name"),
        ("smtp://user:pw@mail.example:25", "unencrypted"),
        ("outbox://", "names no outbox folder"),
    ],
)
def test_bad_urls_give_clear_errors_with_hints(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_smtp_url(url)
    assert info.value.hint


@pytest.mark.parametrize(
    "url",
    [
        f"smtp://user:{SECRET}@mail.example:abc",
        f"smtp://user:{SECRET}@mail.example:25",  # unencrypted refusal
        f"smtp://user:{SECRET}@mail.example/x",
        f"smtps://user:{SECRET}@mail.example?bogus=1",
        f"smtps://user:{DECODED}@mail.example:notaport",  # not even encoded
    ],
)
def test_password_never_in_error_messages(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_smtp_url(url)
    text = f"{info.value} {info.value.hint}"
    assert "s3cr" not in text


def test_plain_login_is_allowed_to_loopback_only() -> None:
    assert parse_smtp_url("smtp://u:p@127.0.0.1:2525").username == "u"
    assert parse_smtp_url("smtp://u:p@localhost:2525").password == "p"
    with pytest.raises(ConfigError):
        parse_smtp_url("smtp://u:p@10.0.0.1:2525")


def test_ca_file_and_verify(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    cfg = parse_smtp_url("smtp://h?starttls=true&ca_file=ca.pem", root=tmp_path)
    assert cfg.ca_file == ca and cfg.verify
    assert parse_smtp_url("smtps://h?verify=false").verify is False


def test_outbox_url_from_settings_is_absolute(isolated_env: Path) -> None:
    s = load_settings(environ={})
    cfg = parse_smtp_url(s.smtp_url)
    assert cfg == TransportConfig(scheme="outbox", outbox=isolated_env / "outbox")
    with open_transport(s) as transport:
        assert isinstance(transport, OutboxTransport)
        assert transport.directory == isolated_env / "outbox"
        assert transport.directory.is_dir()


def test_open_transport_applies_the_settings(isolated_env: Path) -> None:
    s = load_settings(
        environ={
            "NEWSLETTER_SMTP_URL": "smtp://127.0.0.1:2525",
            "NEWSLETTER_SMTP_POOL_SIZE": "5",
            "NEWSLETTER_SMTP_TIMEOUT": "2.5",
            "NEWSLETTER_RATE_PER_SECOND": "0.5",
            "NEWSLETTER_RATE_PER_HOUR": "100",
        }
    )
    transport = open_transport(s)
    assert isinstance(transport, SmtpTransport)
    assert transport.pool_size == 5 and transport.timeout == 2.5
    assert transport.rate_limiter.rate_per_second == 0.5
    assert transport.rate_limiter.rate_per_hour == 100
    assert transport.signer is None
    assert transport.connections_opened == 0  # lazy: nothing opened yet
    transport.close()


def test_transport_settings_defaults(isolated_env: Path) -> None:
    s = load_settings(environ={})
    assert (s.smtp_pool_size, s.smtp_timeout, s.rate_per_second, s.rate_per_hour) == (
        2,
        30.0,
        0.0,
        0,
    )
    assert (s.dkim_domain, s.dkim_selector, s.dkim_key_file) == ("", "", "")
    text = render_config_file()
    assert "# smtp_pool_size = 2\n" in text and "# smtp_timeout = 30.0\n" in text


def test_numbers_from_toml_and_environment(isolated_env: Path) -> None:
    (isolated_env / "newsletter.toml").write_text(
        'smtp_pool_size = 4\nrate_per_second = 2\ndkim_key_file = "keys/dkim.pem"\n'
    )
    s = load_settings(environ={"NEWSLETTER_SMTP_TIMEOUT": " 12 "})
    assert s.smtp_pool_size == 4 and isinstance(s.smtp_pool_size, int)
    assert s.rate_per_second == 2.0 and isinstance(s.rate_per_second, float)
    assert s.smtp_timeout == 12.0
    assert s.dkim_key_file == str(isolated_env / "keys" / "dkim.pem")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('smtp_pool_size = "two"', "smtp_pool_size .* = 'two' .* is not a whole number"),
        ("smtp_pool_size = 1.5", "is not a whole number"),
        ("smtp_pool_size = true", "is not a whole number"),
        ("smtp_pool_size = 0", "is too small"),
        ('smtp_timeout = "soon"', "smtp_timeout .* = 'soon' .* is not a number"),
        ("rate_per_second = -1", "is too small"),
        ('rate_per_second = "nan"', "is not a number"),
        ("rate_per_hour = -5", "is too small"),
    ],
)
def test_bad_numbers_are_config_errors(isolated_env: Path, text: str, message: str) -> None:
    (isolated_env / "newsletter.toml").write_text(text + "\n")
    with pytest.raises(ConfigError, match=message) as info:
        load_settings(environ={})
    assert info.value.hint


def test_bad_number_in_environment_names_the_variable(isolated_env: Path) -> None:
    with pytest.raises(ConfigError, match="NEWSLETTER_RATE_PER_HOUR"):
        load_settings(environ={"NEWSLETTER_RATE_PER_HOUR": "lots"})


def test_open_transport_logs_no_password(
    isolated_env: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    s = load_settings(environ={"NEWSLETTER_SMTP_URL": f"smtps://u:{SECRET}@mail.example"})
    open_transport(s).close()
    assert "s3cr" not in caplog.text


def test_settings_repr_hides_the_smtp_password(isolated_env: Path) -> None:
    s = load_settings(environ={"NEWSLETTER_SMTP_URL": f"smtps://u:{SECRET}@mail.example"})
    assert "s3cr" not in repr(s)
    assert "smtps://u:***@mail.example" in repr(s)
