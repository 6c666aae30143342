"""Fixtures for delivery tests: a real aiosmtpd server and settings pointing at it.

- ``smtp_server``: a started plain :class:`SmtpTestServer` (no TLS, no AUTH), stopped
  after the test. Its API (records, misbehaviour, stop/start) is in ``smtpserver.py``.
- ``smtp_server_factory(**options)``: more servers with ``auth=``, ``tls=`` ...; every
  one made is stopped after the test.
- ``tls_certificate``: ``(cert_pem, key_pem)`` of a self-signed certificate for
  127.0.0.1 and localhost, made once per test session with openssl.
- ``smtp_settings(url, **settings)``: :class:`~newsletter.config.Settings` with that
  ``smtp_url`` and any other settings, from nothing but defaults.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from newsletter.config import Settings, load_settings
from tests.delivery.smtpserver import AUTH_WARNING_FILTER, SmtpTestServer, make_certificate


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("filterwarnings", AUTH_WARNING_FILTER)


@pytest.fixture(scope="session")
def tls_certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate (cert.pem, key.pem) valid for 127.0.0.1 and localhost."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    return make_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def smtp_server_factory() -> Iterator[Callable[..., SmtpTestServer]]:
    """Make and start SmtpTestServer(**options); all are stopped after the test."""
    made: list[SmtpTestServer] = []

    def make(**options: Any) -> SmtpTestServer:
        server = SmtpTestServer(**options).start()
        made.append(server)
        return server

    yield make
    for server in made:
        server.stop()


@pytest.fixture
def smtp_server(smtp_server_factory: Callable[..., SmtpTestServer]) -> SmtpTestServer:
    """A started plain SMTP test server on a free 127.0.0.1 port."""
    return smtp_server_factory()


@pytest.fixture
def smtp_settings(isolated_env: Path) -> Callable[..., Settings]:
    """Build Settings from defaults plus ``smtp_url`` and other overrides."""

    def build(url: str, **overrides: Any) -> Settings:
        return load_settings(overrides={"smtp_url": url, **overrides}, environ={})

    return build


@pytest.fixture(scope="session")
def dkim_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """(private key PEM file, the DNS TXT record publishing its public half), made once."""
    import base64
    import subprocess

    folder = tmp_path_factory.mktemp("dkim")
    key = folder / "dkim.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    der = subprocess.run(
        ["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout
    return key, b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)
