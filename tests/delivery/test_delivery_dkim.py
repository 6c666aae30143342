"""DKIM signing: a key made in the test, verified by dkimpy against that key's record."""

from __future__ import annotations

import email
from collections.abc import Callable
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from dkim.canonicalization import Relaxed
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter.config import load_settings
from newsletter.content.parser import load_issue
from newsletter.delivery.dkimsign import DkimSigner, canonical_body, is_canonical_body
from newsletter.delivery.message import assemble, build_message_template
from newsletter.delivery.personalise import Recipient
from newsletter.delivery.transports import (
    OutboxTransport,
    OutgoingMessage,
    SmtpTransport,
    open_transport,
    parse_smtp_url,
)
from newsletter.errors import ConfigError
from newsletter.render import build_issue
from tests.support.smtpserver import SmtpTestServer

REPO = Path(__file__).resolve().parents[2]
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


def dns_for(record: bytes, **more: bytes) -> Callable[..., bytes | None]:
    """A DNS lookup for dkimpy answering the selector ``mar2024`` (and ``more``)."""
    records = {"mar2024": record, **more}

    def lookup(name: bytes | str, timeout: int = 5) -> bytes | None:
        name = name.decode() if isinstance(name, bytes) else name
        selector, _, rest = name.rstrip(".").partition("._domainkey.")
        return records.get(selector) if rest == "news.example.org" else None

    return lookup


def pem(key: object) -> bytes:
    return key.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.fixture(scope="module")
def ed_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """An Ed25519 key file and its DNS record (RFC 8463: k=ed25519, p= the raw key)."""
    import base64

    key = ed25519.Ed25519PrivateKey.generate()
    path = tmp_path_factory.mktemp("ed") / "ed.pem"
    path.write_bytes(pem(key))
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return path, b"v=DKIM1; k=ed25519; p=" + base64.b64encode(raw)


def verify_all(signed: bytes, dns: Callable[..., bytes | None]) -> list[bool]:
    """dkimpy's verdict on each DKIM-Signature of ``signed``, top first."""
    checker = dkim.DKIM(signed)
    count = sum(1 for name, _ in checker.headers if name.lower() == b"dkim-signature")
    return [checker.verify(idx=i, dnsfunc=dns) for i in range(count)]


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
    with pytest.raises(ConfigError, match="does not hold an unencrypted PEM private key") as info:
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


def test_an_ed25519_key_signs_by_rfc_8463(ed_key: tuple[Path, bytes]) -> None:
    path, record = ed_key
    signed = DkimSigner.from_key_file("news.example.org", "mar2024", path).sign(MESSAGE)
    assert b"a=ed25519-sha256" in signed
    assert verify_all(signed, dns_for(record)) == [True]
    assert not dkim.verify(signed.replace(b"Two new", b"Ten new"), dnsfunc=dns_for(record))


def test_both_keys_sign_at_once(
    isolated_env: Path, smtp_settings, dkim_key: tuple[Path, bytes], ed_key: tuple[Path, bytes]
) -> None:
    """With dkim_ed25519_* set beside the RSA key, each message carries two signatures,
    each verified by dkimpy against its own selector's record."""
    made = DkimSigner.from_settings(
        smtp_settings(
            "outbox:///o",
            dkim_domain="news.example.org",
            dkim_selector="mar2024",
            dkim_key_file=str(dkim_key[0]),
            dkim_ed25519_selector="mar2024e",
            dkim_ed25519_key_file=str(ed_key[0]),
        )
    )
    assert made is not None
    signed = made.sign(MESSAGE)
    assert signed.count(b"DKIM-Signature:") == 2
    assert b"a=rsa-sha256" in signed and b"a=ed25519-sha256" in signed
    dns = dns_for(dkim_key[1], mar2024e=ed_key[1])
    assert verify_all(signed, dns) == [True, True]
    assert verify_all(signed.replace(b"March", b"April"), dns) == [False, False]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"dkim_ed25519_selector": "e"}, "missing: dkim_ed25519_key_file"),
        ({"dkim_ed25519_key_file": "RSA", "dkim_ed25519_selector": "e"}, "holds an RSA key"),
        ({"dkim_ed25519_key_file": "ED", "dkim_ed25519_selector": "mar2024"}, "same as"),
    ],
)
def test_the_second_key_is_checked(
    isolated_env: Path,
    smtp_settings,
    dkim_key: tuple[Path, bytes],
    ed_key: tuple[Path, bytes],
    extra: dict[str, str],
    message: str,
) -> None:
    files = {"RSA": str(dkim_key[0]), "ED": str(ed_key[0])}
    extra = {k: files.get(v, v) for k, v in extra.items()}
    with pytest.raises(ConfigError, match=message) as info:
        DkimSigner.from_settings(
            smtp_settings(
                "outbox:///o",
                dkim_domain="news.example.org",
                dkim_selector="mar2024",
                dkim_key_file=str(dkim_key[0]),
                **extra,
            )
        )
    assert info.value.hint


def _openssl_rsa(bits: int) -> object:
    """A short RSA key (the cryptography package refuses to make one under 1,024 bits)."""
    import subprocess

    out = subprocess.run(["openssl", "genrsa", str(bits)], check=True, capture_output=True)
    return serialization.load_pem_private_key(out.stdout, password=None)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: _openssl_rsa(768), "768-bit RSA key"),
        (lambda: ec.generate_private_key(ec.SECP256R1()), "not an RSA or Ed25519 key"),
    ],
)
def test_keys_receivers_would_not_accept_are_refused(
    tmp_path: Path, make: Callable[[], object], message: str
) -> None:
    path = tmp_path / "k.pem"
    path.write_bytes(pem(make()))
    with pytest.raises(ConfigError, match=message):
        DkimSigner.from_key_file("d.example", "s", path)


def test_the_dns_record_it_prints_is_what_dkimpy_accepts(
    dkim_key: tuple[Path, bytes], ed_key: tuple[Path, bytes]
) -> None:
    for path in (dkim_key[0], ed_key[0]):
        one = DkimSigner.from_key_file("news.example.org", "mar2024", path)
        record = one.keys[0].public_record().encode()
        assert verify_all(one.sign(MESSAGE), dns_for(record)) == [True]


_header_text = st.text(
    alphabet=st.sampled_from(list("abc XYZ\t,;:<>@.=-_")), min_size=0, max_size=60
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    subject=_header_text,
    folds=st.lists(st.sampled_from(["\r\n ", "\r\n\t", "  ", "\t"]), max_size=4),
    body=st.lists(st.text(alphabet=st.sampled_from(list("ab  \t.")), max_size=30), max_size=8),
    trailing=st.sampled_from(["", "\r\n", "\r\n\r\n\r\n", "  \r\n\t\r\n"]),
    lf_only=st.booleans(),
)
def test_any_message_shape_verifies(
    dkim_key: tuple[Path, bytes],
    ed_key: tuple[Path, bytes],
    subject: str,
    folds: list[str],
    body: list[str],
    trailing: str,
    lf_only: bool,
) -> None:
    """Folded headers, runs of spaces and tabs, trailing blank lines, an empty body and
    bare-LF messages: dkimpy accepts every signature (both algorithms)."""
    folded = "x" + "".join(f + "y" for f in folds)
    raw = (
        "From: Digest <digest@news.example.org>\r\n"
        f"To: reader@example.net\r\nSubject: {subject.strip() or 's'} {folded}\r\n"
        "Message-ID: <m@x>\r\n\r\n" + "\r\n".join(body) + trailing
    ).encode()
    if lf_only:
        raw = raw.replace(b"\r\n", b"\n")
    for path, record in (dkim_key, ed_key):
        signed = DkimSigner.from_key_file("news.example.org", "mar2024", path).sign(raw)
        assert verify_all(signed, dns_for(record)) == [True], signed


_body_text = st.lists(
    st.sampled_from([b"a", b".", b" ", b"  ", b"\t", b"\r", b"\r\n", b"\r\n\r\n"]), max_size=30
).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(body=_body_text)
def test_body_canonicalisation_agrees_with_dkimpy(body: bytes) -> None:
    """canonical_body is dkimpy's relaxed body form, and is_canonical_body (the check that
    lets a canonical body skip the rewriting) holds exactly for the bodies it leaves alone."""
    theirs = Relaxed.canonicalize_body(body)
    assert canonical_body(body) == theirs
    assert is_canonical_body(body) == (theirs == body)


def test_a_body_the_assembler_made_is_hashed_as_it_is(
    dkim_key: tuple[Path, bytes], ed_key: tuple[Path, bytes]
) -> None:
    """relaxed_body=True (the transports pass OutgoingMessage.canonical) hashes the body
    without canonicalising it. The assembler's bodies are already in relaxed form by
    dkimpy's own canonicalisation, and dkimpy accepts both signatures of every variant."""
    settings = load_settings(
        overrides={
            "secret_key": "dkim-test-key",
            "base_url": "https://news.example.org",
            "postal_address": "1 Example Street; Exampletown",
            "sender_address": "digest@news.example.org",
        },
        environ={},
    )
    issue = load_issue(REPO / "issues" / "2026-11.md")
    rsa_key = signer(dkim_key[0]).keys[0]
    ed = DkimSigner.from_key_file("news.example.org", "mar2024e", ed_key[0]).keys[0]
    both = DkimSigner("news.example.org", [rsa_key, ed])
    dns = dns_for(dkim_key[1], mar2024e=ed_key[1])
    person = Recipient("zoe@example.net", 7, "Zoë  Tab\tName", ("training",))
    for variant in build_issue(issue, settings).variants.values():
        template = build_message_template(variant, settings, issue_month=issue.month)
        out = assemble(template, person)
        assert out.canonical
        body = out.data.split(b"\r\n\r\n", 1)[1]
        assert Relaxed.canonicalize_body(body) == body
        signed = both.sign(out.data, relaxed_body=True)
        assert verify_all(signed, dns) == [True, True]
        head, gap, text = signed.partition(b"\r\n\r\n")
        assert not dkim.verify(head + gap + text.replace(b"e", b"E", 1), dnsfunc=dns)
