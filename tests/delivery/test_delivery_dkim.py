"""DKIM signing: a key made in the test, verified by dkimpy against that key's record."""

from __future__ import annotations

import email
from collections.abc import Callable
from pathlib import Path

import dkim
import pytest

from newsletter.delivery.dkimsign import DkimSigner
from newsletter.delivery.transports import (
    OutboxTransport,
    OutgoingMessage,
    SmtpTransport,
    open_transport,
    parse_smtp_url,
)
from newsletter.errors import ConfigError
from tests.support.smtpserver import SmtpTestServer

MESSAGE = (
    b"From: Digest <digest@news.example.org>\r\n"
    b"To: reader@example.net\r\n"
    b"Subject: The March digest\r\n"
    b"Date: Wed, 06 Mar 2024 09:00:00 +0000\r\n"
    b"Message-ID: <m1@news.example.org>\r\n"
    b"List-Unsubscribe: <https://news.example.org/u/abc>\r\n"
    b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"Two new studies this month.\r\n"
)


def outgoing(
    sender: str, recipients: list[str], data: bytes, message_id: str, canonical: bool = False
) -> OutgoingMessage:
    """The message to send, from its parts in the order of the envelope."""
    return OutgoingMessage(message_id, tuple(recipients), data, sender, canonical)


def dns_for(record: bytes) -> Callable[..., bytes | None]:
    def lookup(name: bytes | str, timeout: int = 5) -> bytes | None:
        name = name.decode() if isinstance(name, bytes) else name
        return record if name.rstrip(".") == "mar2024._domainkey.news.example.org" else None

    return lookup


def signer(key: Path) -> DkimSigner:
    return DkimSigner.from_key_file("news.example.org", "mar2024", key)


def test_signed_message_verifies(dkim_key: tuple[Path, bytes]) -> None:
    key, record = dkim_key
    signed = signer(key).sign(MESSAGE)
    assert signed.startswith(b"DKIM-Signature: ")
    assert signed.endswith(MESSAGE)
    assert dkim.verify(signed, dnsfunc=dns_for(record))


def test_signature_covers_the_required_headers(dkim_key: tuple[Path, bytes]) -> None:
    signed = signer(dkim_key[0]).sign(MESSAGE)
    header = email.message_from_bytes(signed)["DKIM-Signature"]
    tags = dkim.util.parse_tag_value("".join(header.split()).encode())
    signed_headers = {h.strip().lower() for h in tags[b"h"].split(b":")}
    for name in (
        b"from",
        b"to",
        b"subject",
        b"date",
        b"message-id",
        b"list-unsubscribe",
        b"list-unsubscribe-post",
    ):
        assert name in signed_headers
    assert tags[b"d"] == b"news.example.org" and tags[b"s"] == b"mar2024"


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"Subject: The March digest", b"Subject: The April digest"),
        (b"<https://news.example.org/u/abc>", b"<https://evil.example/u/abc>"),
        (b"Two new studies", b"Three new studies"),
    ],
)
def test_tampering_breaks_the_signature(
    dkim_key: tuple[Path, bytes], old: bytes, new: bytes
) -> None:
    signed = signer(dkim_key[0]).sign(MESSAGE)
    assert dkim.verify(signed, dnsfunc=dns_for(dkim_key[1]))
    assert not dkim.verify(signed.replace(old, new), dnsfunc=dns_for(dkim_key[1]))


def test_from_settings_needs_all_three(isolated_env: Path, smtp_settings, dkim_key) -> None:
    assert DkimSigner.from_settings(smtp_settings("outbox:///o")) is None
    with pytest.raises(ConfigError, match="missing: dkim_selector, dkim_key_file"):
        DkimSigner.from_settings(smtp_settings("outbox:///o", dkim_domain="news.example.org"))
    made = DkimSigner.from_settings(
        smtp_settings(
            "outbox:///o",
            dkim_domain="news.example.org",
            dkim_selector="mar2024",
            dkim_key_file=str(dkim_key[0]),
        )
    )
    assert made is not None and made.selector == "mar2024"
    assert "PRIVATE" not in repr(made)


def test_missing_key_file_names_the_setting(isolated_env: Path, smtp_settings) -> None:
    settings = smtp_settings(
        "outbox:///o", dkim_domain="d.example", dkim_selector="s", dkim_key_file="nope.pem"
    )
    with pytest.raises(ConfigError, match="dkim_key_file") as info:
        open_transport(settings)
    assert str(isolated_env / "nope.pem") in str(info.value)
    assert info.value.hint


def test_key_file_that_is_not_a_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ConfigError, match="does not hold a PEM RSA private key") as info:
        DkimSigner.from_key_file("d.example", "s", bad)
    assert "openssl genrsa" in info.value.hint


def test_transports_sign_what_they_deliver(
    dkim_key: tuple[Path, bytes], tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    key, record = dkim_key
    outbox = OutboxTransport(tmp_path / "out", signer=signer(key))
    outbox.send(outgoing("digest@news.example.org", ["reader@example.net"], MESSAGE, "<m1@x>"))
    written = (tmp_path / "out" / "m1@x.eml").read_bytes()
    assert dkim.verify(written, dnsfunc=dns_for(record))

    smtp = SmtpTransport(parse_smtp_url(smtp_server.url), signer=signer(key), timeout=3)
    assert smtp.send(
        outgoing("digest@news.example.org", ["reader@example.net"], MESSAGE, "<m1@x>")
    ).sent
    smtp.close()
    received = smtp_server.messages[0].data
    assert received.startswith(b"DKIM-Signature:")
    assert dkim.verify(received, dnsfunc=dns_for(record))
