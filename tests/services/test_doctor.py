"""``services.doctor``: each check, passing and failing, against real servers.

SMTP checks talk to the aiosmtpd test server (TLS, AUTH), DNS checks to the test DNS
server answering from ``tests/fixtures/dns/`` (example.org is set up well, bad.example
has every mistake), the store check to SQLite and PostgreSQL.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from newsletter.config import Settings, load_settings
from newsletter.delivery.dnslookup import DnsLookup
from newsletter.errors import ConfigError
from newsletter.services import doctor
from tests.support.dns_server import DnsTestServer
from tests.support.smtpserver import SmtpTestServer, free_port

COMPLETE = {
    "sender_address": "digest@example.org",
    "postal_address": "1 Example Street, Exampletown",
    "secret_key": "test-secret",
    "base_url": "https://news.example.org",
}


def settings(**overrides: Any) -> Settings:
    return load_settings(overrides={**COMPLETE, **overrides}, environ={})


@pytest.fixture
def lookup(dns_server: DnsTestServer) -> DnsLookup:
    return DnsLookup(dns_server.address, timeout=5)


# --- settings ----------------------------------------------------------------------------


def test_complete_settings_pass() -> None:
    check = doctor.check_settings(settings())
    assert check.status == "ok" and "digest@example.org" in check.detail


def test_missing_settings_fail_naming_each_and_its_variable() -> None:
    check = doctor.check_settings(settings(sender_address="", postal_address="", secret_key=" , "))
    assert check.status == "fail" and not check.ok
    for name in ("sender_address", "postal_address", "secret_key"):
        assert f"{name} (NEWSLETTER_{name.upper()})" in check.detail
    assert "test-secret" not in check.detail and check.fix


def test_settings_that_do_not_load_are_the_first_failure(isolated_env: Path) -> None:
    (isolated_env / "newsletter.toml").write_text('\nbase_url = "news.example.org"\n')
    report = doctor.run_doctor()
    first, *rest = report.checks
    assert first.check == "settings" and first.status == "fail"
    assert "base_url (NEWSLETTER_BASE_URL)" in first.detail and ":2)" in first.detail
    assert {c.status for c in rest} == {"skip"} and not report.ok


def test_a_bad_nameserver_is_refused_before_anything_is_checked() -> None:
    with pytest.raises(ConfigError, match="not an IP address"):
        doctor.run_doctor(nameserver="dns.example.org")


# --- store -------------------------------------------------------------------------------


def test_a_migrated_store_passes(store_url: str) -> None:
    check = doctor.check_store(settings(database_url=store_url))
    assert check.status == "ok" and "(the newest)" in check.detail


def test_a_store_without_tables_fails(tmp_path: Path) -> None:
    check = doctor.check_store(settings(database_url=f"sqlite:///{tmp_path}/new.db"))
    assert check.status == "fail" and "no tables" in check.detail
    assert "newsletter db upgrade" in check.fix
    assert not (tmp_path / "new.db").exists()  # looking creates nothing


def test_a_store_behind_the_newest_revision_fails(sqlite_template: Path, tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    shutil.copy(sqlite_template, path)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0001'")
    check = doctor.check_store(settings(database_url=f"sqlite:///{path}"))
    assert check.status == "fail" and "at revision 0001" in check.detail
    assert "newsletter db upgrade" in check.fix


def test_an_unreachable_store_fails_without_its_password() -> None:
    url = f"postgresql+psycopg://news:s3cret-pw@127.0.0.1:{free_port()}/news"
    check = doctor.check_store(settings(database_url=url))
    assert check.status == "fail" and check.fix
    assert "s3cret-pw" not in check.detail + check.fix


# --- transport ---------------------------------------------------------------------------


def test_a_plain_local_smtp_server_passes(smtp_server: SmtpTestServer) -> None:
    check = doctor.check_transport(settings(smtp_url=smtp_server.url))
    assert check.status == "ok"
    assert check.detail == f"connected to 127.0.0.1:{smtp_server.port}, no login"
    assert smtp_server.messages == []  # nothing is sent


@pytest.fixture
def tls_auth_server(
    smtp_server_factory: Callable[..., SmtpTestServer], tls_certificate: tuple[Path, Path]
) -> SmtpTestServer:
    return smtp_server_factory(
        auth={"news": "right-password"},
        tls="starttls",
        certificate=tls_certificate,
        require_starttls=True,
    )


def test_starttls_with_a_verified_certificate_and_login_passes(
    tls_auth_server: SmtpTestServer, tls_certificate: tuple[Path, Path]
) -> None:
    url = (
        f"smtp://news:right-password@127.0.0.1:{tls_auth_server.port}"
        f"?starttls=true&ca_file={tls_certificate[0]}"
    )
    check = doctor.check_transport(settings(smtp_url=url))
    assert check.status == "ok", check
    assert "STARTTLS, certificate verified, logged in as news" in check.detail
    assert tls_auth_server.logins == ["news"]


def test_a_wrong_password_fails_without_showing_it(
    tls_auth_server: SmtpTestServer, tls_certificate: tuple[Path, Path]
) -> None:
    url = (
        f"smtp://news:wrong-Pa55word@127.0.0.1:{tls_auth_server.port}"
        f"?starttls=true&ca_file={tls_certificate[0]}"
    )
    check = doctor.check_transport(settings(smtp_url=url))
    assert check.status == "fail" and "refused the login of user 'news'" in check.detail
    assert "user name and password" in check.fix
    assert "wrong-Pa55word" not in str(check.to_dict())
    assert tls_auth_server.logins == []


def test_an_unverifiable_certificate_fails(tls_auth_server: SmtpTestServer) -> None:
    url = f"smtp://news:right-password@127.0.0.1:{tls_auth_server.port}?starttls=true"
    check = doctor.check_transport(settings(smtp_url=url))
    assert check.status == "fail" and "cannot be verified" in check.detail
    assert "ca_file" in check.fix


def test_certificate_checks_turned_off_is_a_warning(tls_auth_server: SmtpTestServer) -> None:
    url = f"smtp://news:right-password@127.0.0.1:{tls_auth_server.port}?starttls=true&verify=false"
    check = doctor.check_transport(settings(smtp_url=url))
    assert check.status == "warn" and check.ok
    assert "certificate NOT verified" in check.detail and "verify=false" in check.fix


def test_a_server_without_starttls_fails(smtp_server: SmtpTestServer) -> None:
    check = doctor.check_transport(settings(smtp_url=smtp_server.url + "?starttls=true"))
    assert check.status == "fail" and "does not offer STARTTLS" in check.detail
    assert check.fix


def test_implicit_tls_passes(
    smtp_server_factory: Callable[..., SmtpTestServer], tls_certificate: tuple[Path, Path]
) -> None:
    server = smtp_server_factory(tls="implicit", certificate=tls_certificate)
    check = doctor.check_transport(settings(smtp_url=f"{server.url}?ca_file={tls_certificate[0]}"))
    assert check.status == "ok" and "TLS, certificate verified, no login" in check.detail


def test_a_server_that_is_down_fails() -> None:
    check = doctor.check_transport(settings(smtp_url=f"smtp://127.0.0.1:{free_port()}"))
    assert check.status == "fail" and "cannot use the SMTP server" in check.detail
    assert "running" in check.fix


def test_a_writable_outbox_is_a_warning_not_a_failure(isolated_env: Path) -> None:
    # outbox:///NAME is NAME in the project folder (here the test's working folder).
    check = doctor.check_transport(settings(smtp_url="outbox:///outbox"))
    assert check.status == "warn" and check.ok and "not sent" in check.detail
    assert str(isolated_env / "outbox") in check.detail
    assert not (isolated_env / "outbox").exists()  # looking creates nothing
    (isolated_env / "outbox").mkdir()
    check = doctor.check_transport(settings(smtp_url="outbox:///outbox"))
    assert check.status == "warn" and list((isolated_env / "outbox").iterdir()) == []


def test_an_outbox_that_cannot_be_made_fails(isolated_env: Path) -> None:
    (isolated_env / "a-file").write_text("x")
    check = doctor.check_transport(settings(smtp_url="outbox:///a-file/outbox"))
    assert check.status == "fail" and "cannot create" in check.detail and check.fix
    check = doctor.check_transport(settings(smtp_url="outbox:///a-file"))
    assert check.status == "fail" and "is not a folder" in check.detail


# --- base_url ----------------------------------------------------------------------------


def test_both_dkim_keys_are_checked_each_at_its_selector(
    dns_server: DnsTestServer, lookup: DnsLookup, dkim_key: tuple[Path, bytes], tmp_path: Path
) -> None:
    """With an Ed25519 key beside the RSA one, each must be published at its selector."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from newsletter.delivery.dkimsign import load_key

    key, record = dkim_key
    ed = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (tmp_path / "ed.pem").write_bytes(ed)
    both = dkim_settings(
        key, dkim_ed25519_selector="ed", dkim_ed25519_key_file=str(tmp_path / "ed.pem")
    )
    dns_server.add_txt("news._domainkey.example.org", record.decode())
    check = doctor.check_dkim(both, lookup)
    assert check.status == "fail" and "no DKIM key record at ed._domainkey" in check.detail
    assert "k=ed25519" in check.fix
    other = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    dns_server.add_txt("ed._domainkey.example.org", load_key("ed", other).public_record())
    check = doctor.check_dkim(both, lookup)
    assert check.status == "fail" and "public half of dkim_ed25519_key_file" in check.detail


@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("https://news.example.org", "ok"),
        ("http://127.0.0.1:8000", "warn"),
        ("http://localhost:8000", "warn"),
        ("http://news.example.org", "fail"),
    ],
)
def test_base_url_must_be_https(url: str, status: str) -> None:
    check = doctor.check_base_url(settings(base_url=url))
    assert check.status == status
    assert bool(check.fix) == (status != "ok")


# --- DKIM --------------------------------------------------------------------------------


def dkim_settings(key: Path, selector: str = "news", **more: Any) -> Settings:
    return settings(
        dkim_domain="example.org", dkim_selector=selector, dkim_key_file=str(key), **more
    )


def test_a_dkim_key_that_matches_its_record_passes(
    dns_server: DnsTestServer, lookup: DnsLookup, dkim_key: tuple[Path, bytes]
) -> None:
    key, record = dkim_key
    dns_server.add_txt("news._domainkey.example.org", record.decode())
    check = doctor.check_dkim(dkim_settings(key), lookup)
    assert check.status == "ok" and "news._domainkey.example.org" in check.detail


@pytest.mark.parametrize(
    ("selector", "problem"),
    [
        ("old", "is not the public half of dkim_key_file"),
        ("missing", "no DKIM key record at missing._domainkey.example.org"),
        ("revoked", "is revoked"),
        ("garbage", "not a base64 RSA public key"),
    ],
)
def test_a_dkim_record_that_does_not_match_fails(
    lookup: DnsLookup, dkim_key: tuple[Path, bytes], selector: str, problem: str
) -> None:
    check = doctor.check_dkim(dkim_settings(dkim_key[0], selector), lookup)
    assert check.status == "fail" and problem in check.detail
    assert "._domainkey.example.org" in check.fix


def test_two_dkim_records_at_one_selector_fail(
    dns_server: DnsTestServer, lookup: DnsLookup, dkim_key: tuple[Path, bytes]
) -> None:
    key, record = dkim_key
    dns_server.add_txt("old._domainkey.example.org", record.decode())
    check = doctor.check_dkim(dkim_settings(key, "old"), lookup)
    assert check.status == "fail" and "2 DKIM key records" in check.detail


def test_a_dkim_key_file_that_is_not_a_key_fails(lookup: DnsLookup, tmp_path: Path) -> None:
    bad = tmp_path / "dkim.pem"
    bad.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    check = doctor.check_dkim(dkim_settings(bad), lookup)
    assert check.status == "fail" and "PEM private key" in check.detail
    assert "not a key" not in check.detail


def test_half_configured_dkim_fails_and_no_dkim_warns(lookup: DnsLookup) -> None:
    check = doctor.check_dkim(settings(dkim_domain="example.org"), lookup)
    assert check.status == "fail" and "missing: dkim_selector, dkim_key_file" in check.detail
    check = doctor.check_dkim(settings(), lookup)
    assert check.status == "warn" and "off" in check.detail


def test_a_dkim_domain_unlike_the_senders_warns(
    dns_server: DnsTestServer, lookup: DnsLookup, dkim_key: tuple[Path, bytes]
) -> None:
    key, record = dkim_key
    dns_server.add_txt("news._domainkey.example.org", record.decode())
    check = doctor.check_dkim(dkim_settings(key, sender_address="x@bad.example"), lookup)
    assert check.status == "warn" and "not the sender's domain bad.example" in check.detail


def test_dkim_without_dns_checks_the_key_and_skips_the_record(
    dkim_key: tuple[Path, bytes],
) -> None:
    # A name server that does not answer: the look-up gives up after its timeout.
    unreachable = DnsLookup(f"127.0.0.1:{free_port()}", timeout=0.3)
    check = doctor.check_dkim(dkim_settings(dkim_key[0]), unreachable)
    assert check.status == "skip" and check.ok
    assert "the key loads; DNS not checked" in check.detail


# --- SPF, DMARC, MX ----------------------------------------------------------------------


def test_one_spf_record_passes(lookup: DnsLookup) -> None:
    check = doctor.check_spf(settings(), lookup)
    assert check.status == "ok" and "example.org: v=spf1 ip4:192.0.2.10" in check.detail


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"sender_address": "x@bad.example"}, "bad.example publishes 2 SPF records"),
        ({"sender_address": "x@nothing.example.org"}, "publishes no SPF record"),
        ({"bounce_address": "b@bad.example"}, "bad.example publishes 2 SPF records"),
    ],
)
def test_spf_records_missing_or_doubled_fail(
    lookup: DnsLookup, overrides: dict[str, str], problem: str
) -> None:
    check = doctor.check_spf(settings(**overrides), lookup)
    assert check.status == "fail" and problem in check.detail and check.fix


def test_the_bounce_domain_needs_spf_too(lookup: DnsLookup) -> None:
    check = doctor.check_spf(settings(bounce_address="b@bounces.example.org"), lookup)
    assert check.status == "ok" and "bounces.example.org: v=spf1" in check.detail


@pytest.mark.parametrize(
    ("sender", "detail"),
    [
        ("x@example.org", "_dmarc.example.org: p=quarantine"),
        ("x@news.example.org", "_dmarc.example.org: p=quarantine"),  # the organisation's
    ],
)
def test_a_dmarc_policy_passes(lookup: DnsLookup, sender: str, detail: str) -> None:
    check = doctor.check_dmarc(settings(sender_address=sender), lookup)
    assert check.status == "ok" and check.detail == detail


@pytest.mark.parametrize(
    ("sender", "problem"),
    [
        ("x@bad.example", "no DMARC record at _dmarc.bad.example"),
        ("x@weak.bad.example", "has no valid p= policy"),
    ],
)
def test_a_missing_dmarc_policy_fails(lookup: DnsLookup, sender: str, problem: str) -> None:
    check = doctor.check_dmarc(settings(sender_address=sender), lookup)
    assert check.status == "fail" and problem in check.detail and check.fix


def test_the_bounce_domain_with_an_mx_passes(lookup: DnsLookup) -> None:
    check = doctor.check_bounce_mx(settings(bounce_address="b@bounces.example.org"), lookup)
    assert check.status == "ok" and check.detail == "bounces.example.org: MX 10 mx.example.org"


@pytest.mark.parametrize(
    ("bounce", "problem"),
    [("b@bad.example", "has no MX record"), ("b@nullmx.bad.example", "null MX")],
)
def test_a_bounce_domain_without_mail_fails(lookup: DnsLookup, bounce: str, problem: str) -> None:
    check = doctor.check_bounce_mx(settings(bounce_address=bounce), lookup)
    assert check.status == "fail" and problem in check.detail and check.fix


def test_no_bounce_address_skips_the_mx_check(lookup: DnsLookup) -> None:
    assert doctor.check_bounce_mx(settings(), lookup).status == "skip"


def test_dns_that_gives_no_answer_skips_the_dns_checks(
    dns_server: DnsTestServer, lookup: DnsLookup
) -> None:
    # The test server refuses names outside its zones, as a broken resolver would.
    elsewhere = settings(sender_address="x@elsewhere.test", bounce_address="b@elsewhere.test")
    for check in (doctor.check_spf, doctor.check_dmarc, doctor.check_bounce_mx):
        result = check(elsewhere, lookup)
        assert result.status == "skip" and result.ok, result
        assert "DNS not reachable" in result.detail and "--nameserver" in result.fix
    # After the first failure nobody waits again: one question was asked in all.
    assert [q for q in dns_server.questions if "elsewhere" in q[0]] == [
        ("elsewhere.test.", "TXT", "udp")
    ]


# --- the whole run -----------------------------------------------------------------------


def test_a_good_set_up_passes_every_check(
    isolated_env: Path,
    store_url: str,
    dns_server: DnsTestServer,
    tls_auth_server: SmtpTestServer,
    tls_certificate: tuple[Path, Path],
    dkim_key: tuple[Path, bytes],
) -> None:
    key, record = dkim_key
    dns_server.add_txt("news._domainkey.example.org", record.decode())
    overrides = {
        **COMPLETE,
        "database_url": store_url,
        "smtp_url": f"smtp://news:right-password@127.0.0.1:{tls_auth_server.port}"
        f"?starttls=true&ca_file={tls_certificate[0]}",
        "dkim_domain": "example.org",
        "dkim_selector": "news",
        "dkim_key_file": str(key),
        "bounce_address": "bounces@bounces.example.org",
    }
    report = doctor.run_doctor(overrides=overrides, nameserver=dns_server.address)
    assert [c.status for c in report.checks] == ["ok"] * len(doctor.CHECKS), report
    assert [c.check for c in report.checks] == [name for name, _ in doctor.CHECKS]
    assert report.ok
