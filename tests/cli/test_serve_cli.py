"""``newsletter serve``: a real process serving the pages; clear errors before listening."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from click.testing import CliRunner

from newsletter.cli import cli
from tests.support.smtpserver import free_port


def test_serve_help_has_an_example():
    result = CliRunner().invoke(cli, ["serve", "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output and "--port" in result.output


def test_serve_without_a_store_is_a_clear_error(isolated_env):
    (isolated_env / "newsletter.toml").write_text('secret_key = "k"\n')
    result = CliRunner().invoke(cli, ["serve", "--port", str(free_port())])
    assert result.exit_code == 1
    assert "no subscriber store" in result.output
    assert "Traceback" not in result.output


def _start_serve(project, port):
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_DATABASE")}
    return subprocess.Popen(
        [sys.executable, "-m", "newsletter", "serve", "--port", str(port)],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _wait_listening(proc, port):
    for _ in range(200):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return
        except (urllib.error.URLError, ConnectionError):
            assert proc.poll() is None, proc.stdout.read().decode()
            time.sleep(0.1)
    raise AssertionError("newsletter serve did not start")


def _raw(port, data: bytes, read_timeout: float = 20.0) -> tuple[int, dict[str, str], bytes]:
    """Send ``data`` as it is and read the answer (up to the server closing, or a timeout:
    a server that waits for more of the request never answers)."""
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            head, sep, body = b"".join(chunks).partition(b"\r\n\r\n")
            if sep and b"content-length:" in head.lower():
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                if len(body) >= length:
                    break
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def _assert_security_headers(headers: dict[str, str]) -> None:
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "same-origin"


@pytest.mark.slow
def test_serve_refuses_big_bodies_and_bad_requests_with_headers(web_project):
    """waitress' own answers: a body over the app's limit is refused from its
    Content-Length before any of it is read (so never spooled to disk), and its error
    answers (413, 431, 400) carry the security headers of every page."""
    port = free_port()
    proc = _start_serve(web_project, port)
    try:
        _wait_listening(proc, port)
        # A 2 MB body announced, only 1 KB sent: the answer comes without the rest.
        status, headers, _ = _raw(
            port,
            b"POST /subscribe HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 2097152\r\n\r\n" + b"a" * 1024,
        )
        assert status == 413
        _assert_security_headers(headers)
        assert headers["cache-control"] == "no-store"
        # Just over the app's own limit is refused the same way.
        from newsletter.web.app import MAX_REQUEST_BYTES

        status, headers, _ = _raw(
            port,
            b"POST /subscribe HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + f"Content-Length: {MAX_REQUEST_BYTES + 1}\r\n\r\n".encode(),
        )
        assert status == 413
        # Oversized headers: 431 from waitress, with the headers.
        status, headers, _ = _raw(
            port,
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"b" * 300_000 + b"\r\n\r\n",
        )
        assert status == 431
        _assert_security_headers(headers)
        # A malformed request line and a header with a bare CR: 400, with the headers.
        for bad in (
            b"GARBAGE\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: b\rc\r\n\r\n",
        ):
            status, headers, _ = _raw(port, bad)
            assert status == 400, bad
            _assert_security_headers(headers)
        # The server still answers pages afterwards.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            assert r.status == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.slow
def test_serve_answers_pages(web_project):
    port = free_port()
    proc = _start_serve(web_project, port)
    try:
        body = None
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/archive", timeout=2) as r:
                    body = r.read().decode()
                    headers = r.headers
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        assert body is not None, proc.stdout.read1().decode() if proc.poll() is not None else ""
        assert "October 2026" in body
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        req = urllib.request.Request(f"http://127.0.0.1:{port}/unsubscribe/forged", method="POST")
        try:
            urllib.request.urlopen(req, data=b"List-Unsubscribe=One-Click", timeout=5)
            raise AssertionError("a forged token must not be accepted")
        except urllib.error.HTTPError as exc:
            assert exc.code == 400
            assert "This link does not work" in exc.read().decode()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
