"""``newsletter doctor`` through the real CLI: the checklist, --json and the exit status."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli import cli
from tests.support.dns_server import DnsTestServer
from tests.support.smtpserver import SmtpTestServer


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), env={"COLUMNS": "300"})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


@pytest.fixture
def login_server(
    smtp_server_factory: Callable[..., SmtpTestServer], tls_certificate: tuple[Path, Path]
) -> SmtpTestServer:
    return smtp_server_factory(
        auth={"news": "right-password"}, tls="starttls", certificate=tls_certificate
    )


def write_project(
    folder: Path,
    store_url: str,
    server: SmtpTestServer,
    ca_file: Path,
    dkim_key: Path,
    *,
    password: str = "right-password",
    sender: str = "digest@example.org",
) -> None:
    (folder / "newsletter.toml").write_text(
        f'sender_address = "{sender}"\n'
        'postal_address = "1 Example Street, Exampletown"\n'
        'secret_key = "test-secret"\n'
        'base_url = "https://news.example.org"\n'
        f'database_url = "{store_url}"\n'
        f'smtp_url = "smtp://news:{password}@127.0.0.1:{server.port}'
        f'?starttls=true&ca_file={ca_file}"\n'
        'dkim_domain = "example.org"\n'
        'dkim_selector = "news"\n'
        f'dkim_key_file = "{dkim_key}"\n'
        'bounce_address = "bounces@bounces.example.org"\n'
    )


def test_a_good_set_up_is_all_ticks_and_exits_0(
    isolated_env: Path,
    store_url: str,
    dns_server: DnsTestServer,
    login_server: SmtpTestServer,
    tls_certificate: tuple[Path, Path],
    dkim_key: tuple[Path, bytes],
) -> None:
    dns_server.add_txt("news._domainkey.example.org", dkim_key[1].decode())
    write_project(isolated_env, store_url, login_server, tls_certificate[0], dkim_key[0])
    code, out = run("doctor", "--nameserver", dns_server.address)
    assert code == 0, out
    lines = out.splitlines()
    assert len([line for line in lines if line.startswith("✓ ")]) == 8
    assert "✓ Mail transport usable: connected to 127.0.0.1:" in out
    assert "✓ SPF record of the sender domain: example.org: v=spf1" in out
    assert "8 passed, 0 failed, 0 warnings, 0 not checked" in out
    assert "fix:" not in out


def test_a_broken_set_up_shows_crosses_with_fixes_and_exits_1(
    isolated_env: Path,
    store_url: str,
    dns_server: DnsTestServer,
    login_server: SmtpTestServer,
    tls_certificate: tuple[Path, Path],
    dkim_key: tuple[Path, bytes],
) -> None:
    write_project(
        isolated_env,
        store_url,
        login_server,
        tls_certificate[0],
        dkim_key[0],
        password="wrong-Pa55word",
        sender="digest@bad.example",
    )
    code, out = run("doctor", "--nameserver", dns_server.address)
    assert code == 1
    assert "✗ Mail transport usable: the SMTP server 127.0.0.1:" in out
    assert "refused the login of user 'news'" in out
    assert "✗ DKIM key loads and matches DNS: no DKIM key record at news._domainkey" in out
    assert "✗ SPF record of the sender domain: bad.example publishes 2 SPF records" in out
    assert "✗ DMARC record of the sender domain: no DMARC record at _dmarc.bad.example" in out
    assert out.count("    fix: ") == 4
    assert "wrong-Pa55word" not in out and "Traceback" not in out


def test_json_lists_every_check_and_the_exit_status_follows_failures(
    isolated_env: Path, dns_server: DnsTestServer
) -> None:
    # No newsletter.toml: defaults, no sender, outbox transport, store not created.
    code, out = run("doctor", "--json", "--nameserver", dns_server.address)
    assert code == 1
    checks = json.loads(out)
    assert [c["check"] for c in checks] == [
        "settings",
        "store",
        "transport",
        "base_url",
        "dkim",
        "spf",
        "dmarc",
        "bounce_mx",
    ]
    assert all(set(c) == {"check", "title", "status", "ok", "detail", "fix"} for c in checks)
    by_name = {c["check"]: c for c in checks}
    assert by_name["settings"]["status"] == "fail" and not by_name["settings"]["ok"]
    assert "sender_address (NEWSLETTER_SENDER_ADDRESS)" in by_name["settings"]["detail"]
    assert by_name["transport"]["status"] == "warn" and by_name["transport"]["ok"]
    assert by_name["spf"]["status"] == "skip"
    assert not (isolated_env / "outbox").exists()


def test_server_and_dns_text_is_printed_literally(
    isolated_env: Path, dns_server: DnsTestServer
) -> None:
    dns_server.add_txt("markup.example.org", "v=spf1 [bold]include:x[/bold] -all")
    code, out = run(
        "--set",
        "sender_address=x@markup.example.org",
        "doctor",
        "--nameserver",
        dns_server.address,
    )
    assert code == 1  # no postal address, among others
    assert "v=spf1 [bold]include:x[/bold] -all" in out and "Traceback" not in out


def test_settings_that_do_not_load_are_reported_as_the_first_check(isolated_env: Path) -> None:
    (isolated_env / "newsletter.toml").write_text('timezone = "Mars/Olympus"\n')
    code, out = run("doctor", "--nameserver", "127.0.0.1:9")
    assert code == 1
    assert out.splitlines()[0].startswith("✗ Settings complete for a real send: timezone")
    assert "(NEWSLETTER_TIMEZONE)" in out and "newsletter.toml:1)" in out
    assert "1 failed, 0 warnings, 7 not checked" in out


def test_a_bad_nameserver_is_a_clear_error(isolated_env: Path) -> None:
    code, out = run("doctor", "--nameserver", "dns.example.org")
    assert code == 1 and "not an IP address" in out and "hint:" in out
    assert "Traceback" not in out
