"""``newsletter serve``: a real process serving the pages; clear errors before listening."""

from __future__ import annotations

import os
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


@pytest.mark.slow
def test_serve_answers_pages(web_project):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_DATABASE")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "serve", "--port", str(port)],
        cwd=web_project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
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
