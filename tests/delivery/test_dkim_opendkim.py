"""DKIM signatures checked by OpenDKIM's ``opendkim-testmsg``, a second verifier (in C).

``opendkim-testmsg`` verifies the message on its standard input and finds the public key
the only way it can: by DNS, through ``/etc/resolv.conf``. So the tests' DNS server answers
on port 53 of a loopback address of its own (127.x.y.z), and ``opendkim-testmsg`` runs in a
private mount namespace (``unshare --mount``) in which ``/etc/resolv.conf`` names that
server; the machine's own set-up is never touched. Skipped without ``opendkim-testmsg``
(Debian's opendkim-tools) and ``unshare``, or when not root (port 53, the namespace).
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from newsletter.config import load_settings
from newsletter.content.parser import load_issue
from newsletter.delivery.dkimsign import DkimSigner
from newsletter.delivery.message import assemble, build_message_template
from newsletter.delivery.personalise import Recipient
from newsletter.delivery.transports import OutboxTransport
from newsletter.render import build_issue
from tests.support.dns_server import DnsTestServer

REPO = Path(__file__).resolve().parents[2]
TESTMSG = shutil.which("opendkim-testmsg") or "/usr/sbin/opendkim-testmsg"
DOMAIN = "example.org"  # a zone of tests/fixtures/dns
BAD_SIGNATURE = 70  # EX_SOFTWARE: what opendkim-testmsg exits with when a check fails


class OpenDkim:
    """Runs ``opendkim-testmsg`` against ``dns`` (see the module docstring)."""

    def __init__(self, dns: DnsTestServer, resolv: Path) -> None:
        self.dns = dns
        self.resolv = resolv

    def verify(self, message: bytes) -> subprocess.CompletedProcess[bytes]:
        script = f"mount --bind {self.resolv} /etc/resolv.conf && exec {TESTMSG}"
        return subprocess.run(
            ["unshare", "--mount", "sh", "-c", script],
            input=message,
            capture_output=True,
            timeout=30,
            check=False,
        )


@pytest.fixture(scope="module")
def opendkim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenDkim]:
    if not (os.path.exists(TESTMSG) and shutil.which("unshare")):
        pytest.skip("opendkim-testmsg (opendkim-tools) or unshare is not installed")
    if os.geteuid() != 0:
        pytest.skip("needs root: port 53 and a private mount namespace")
    server = DnsTestServer()
    for _ in range(10):
        host = "127." + ".".join(str(random.randint(1, 254)) for _ in range(3))
        try:
            server.start(host=host, port=53)
            break
        except OSError:  # taken (another test run): try another address
            continue
    else:
        pytest.skip("no loopback address with a free port 53")
    resolv = tmp_path_factory.mktemp("resolv") / "resolv.conf"
    resolv.write_text(f"nameserver {host}\noptions attempts:1 timeout:2\n")
    probe = subprocess.run(
        ["unshare", "--mount", "sh", "-c", f"mount --bind {resolv} /etc/resolv.conf"],
        capture_output=True,
        check=False,
    )
    if probe.returncode != 0:
        server.stop()
        pytest.skip(f"no private mount namespace here: {probe.stderr.decode()[:200]}")
    yield OpenDkim(server, resolv)
    server.stop()


def _key_file(folder: Path, algorithm: str) -> Path:
    path = folder / f"{algorithm}.pem"
    if algorithm == "rsa":
        subprocess.run(["openssl", "genrsa", "-out", str(path), "2048"], check=True)
    else:
        key = ed25519.Ed25519PrivateKey.generate()
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return path


@pytest.mark.parametrize("algorithm", ["rsa", "ed25519"])
def test_opendkim_accepts_every_variant_a_transport_signed(
    opendkim: OpenDkim, tmp_path: Path, algorithm: str
) -> None:
    """Each variant of 2026-11, assembled for a person whose name holds a tab and two
    blanks and signed by ``Transport.send`` (which hashes the assembler's canonical body
    as it is), passes OpenDKIM; the same message with one body byte changed does not."""
    selector = f"t{algorithm}"
    signer = DkimSigner.from_key_file(DOMAIN, selector, _key_file(tmp_path, algorithm))
    opendkim.dns.add_txt(f"{selector}._domainkey.{DOMAIN}", signer.keys[0].public_record())
    settings = load_settings(
        overrides={
            "secret_key": "opendkim-test-key",
            "base_url": "https://news.example.org",
            "postal_address": "1 Example Street; Exampletown",
            "sender_address": f"digest@{DOMAIN}",
        },
        environ={},
    )
    issue = load_issue(REPO / "issues" / "2026-11.md")
    outbox = OutboxTransport(tmp_path / "out", signer=signer)
    person = Recipient("zoe@example.net", 7, "Zoë  Tab\tName", ("training",))
    for variant in build_issue(issue, settings).variants.values():
        template = build_message_template(variant, settings, issue_month=issue.month)
        message = assemble(template, person)
        assert message.canonical and outbox.send(message).sent
        written = outbox.path_for(message.message_id).read_bytes()
        assert f"a={signer.keys[0].algorithm};".encode() in written
        good = opendkim.verify(written)
        assert good.returncode == 0, (variant.name, good.stderr)
        head, gap, body = written.partition(b"\r\n\r\n")
        bad = opendkim.verify(head + gap + body.replace(b"e", b"E", 1))
        assert bad.returncode == BAD_SIGNATURE and b"Bad signature" in bad.stderr
    assert opendkim.dns.questions  # the key really came from the test server
