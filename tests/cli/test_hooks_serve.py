"""Provider webhooks against a real ``newsletter serve`` process, over HTTP, on SQLite and
PostgreSQL: per provider, a permanent bounce marks the person ``bounced`` with its
evidence, a complaint unsubscribes, a replay changes nothing and a forged request changes
nothing. (The verification matrix is in tests/web/test_web_hooks.py.)

The process is started through ``tests/support/hooks_serve.py``, which answers the one
network call (fetching the SNS certificate) locally: AWS is unreachable here.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from newsletter.config import Settings
from newsletter.services import App, bounces, subscribers
from tests.support import hooks as h
from tests.support.delivery_runs import ledger_rows, settings_of
from tests.support.services import (
    SAMPLE_MONTH,
    SAMPLE_PEOPLE,
    WorkerOptions,
    add_people,
    plan_issue_send,
    run_worker,
)
from tests.support.smtpserver import free_port

pytestmark = pytest.mark.slow

LAUNCHER = Path(__file__).resolve().parents[1] / "support" / "hooks_serve.py"
SECRET = "hook-password-in-the-url"
MAILGUN_KEY = "key-mailgun-signing"
SENDGRID = h.SendGridSigner()
SNS = h.SnsSigner()


@dataclass
class Served:
    settings: Settings
    port: int
    fetch_log: Path

    def post(self, provider: str, body: bytes | dict[str, Any] | list[Any], **headers: str) -> int:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/hooks/{provider}", data=data, headers=headers
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    def announced_size_answer(self, provider: str, length: int) -> int:
        """The status waitress answers to a body of ``length`` bytes announced, none sent."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=20) as sock:
            sock.sendall(
                f"POST /hooks/{provider} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Content-Length: {length}\r\n\r\n".encode()
            )
            return int(sock.recv(200).split()[1])

    def status(self, email: str) -> str:
        with App(self.settings) as app:
            return subscribers.get_subscriber(app, email).status

    def rows(self) -> list[tuple[str, str, str]]:
        with App(self.settings) as app:
            return sorted((r.email, r.kind, r.source) for r in bounces.list_bounces(app))

    def evidence(self, email: str) -> list[str]:
        with App(self.settings) as app:
            view = subscribers.get_subscriber(app, email, history=True)
        return [e.detail or "" for e in view.events if e.event == "bounced"]

    def message_id(self, email: str) -> str:
        return ledger_rows(self.settings, SAMPLE_MONTH)[email].message_id


@pytest.fixture
def served(send_project: Path, tmp_path: Path) -> Iterator[Served]:
    with open(send_project / "newsletter.toml", "a") as f:
        f.write(
            f'ses_webhook_secret = "{SECRET}"\n'
            f'postmark_webhook_secret = "{SECRET}"\n'
            f'mailgun_signing_key = "{MAILGUN_KEY}"\n'
            f'sendgrid_verification_key = "{SENDGRID.public_b64}"\n'
        )
    settings = settings_of(send_project)
    add_people(settings, {a: topics for a, (topics, _) in SAMPLE_PEOPLE.items()})
    plan_issue_send(settings, SAMPLE_MONTH)
    run_worker(settings, WorkerOptions(months=[SAMPLE_MONTH]))
    certs = tmp_path / "sns-certs.json"
    certs.write_text(json.dumps({SNS.cert_url: SNS.pem.decode()}))
    fetch_log = tmp_path / "fetched.txt"
    fetch_log.touch()
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_DATABASE")},
        "NEWSLETTER_TEST_SNS_CERTS": str(certs),
        "NEWSLETTER_TEST_FETCH_LOG": str(fetch_log),
    }
    proc = subprocess.Popen(
        [sys.executable, str(LAUNCHER), "serve", "--port", str(port)],
        cwd=send_project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                    break
            except (urllib.error.URLError, ConnectionError):
                assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
                time.sleep(0.1)
        else:
            raise AssertionError("newsletter serve did not start")
        yield Served(settings, port, fetch_log)
    finally:
        proc.terminate()
        output = proc.communicate(timeout=10)[0].decode()
    assert "Traceback" not in output
    for secret in (SECRET, MAILGUN_KEY, SENDGRID.public_b64):
        assert secret not in output


def _after(served: Served) -> None:
    """What every provider's journey ends with: the bounce with its evidence, the
    complaint, and nobody else touched."""
    assert served.status("pdt@example.org") == "bounced"
    assert served.status("mixed@example.org") == "unsubscribed"
    for other in ("efficacy@example.org", "training@example.org", "all@example.org"):
        assert served.status(other) == "active", other
    [evidence] = served.evidence("pdt@example.org")
    assert evidence.startswith(f"hard bounce (issue {SAMPLE_MONTH}): ")


def test_ses_over_http(served: Served) -> None:
    auth = h.basic_auth(SECRET)
    bounce = SNS.sign(
        h.sns_notification(
            h.ses_bounce("pdt@example.org", message_id=served.message_id("pdt@example.org"))
        )
    )
    forged = {**bounce, "Message": bounce["Message"].replace("pdt@", "all@")}
    assert served.post("ses", forged, **auth) == 403
    assert served.post("ses", bounce) == 401  # no password
    assert served.rows() == []
    assert served.post("ses", bounce, **auth) == 200
    assert served.post("ses", bounce, **auth) == 200  # SNS redelivers
    complaint = SNS.sign(h.sns_notification(h.ses_complaint("mixed@example.org")))
    assert served.post("ses", complaint, **auth) == 200
    assert served.rows() == [
        ("mixed@example.org", "complaint", "webhook:ses"),
        ("pdt@example.org", "hard", "webhook:ses"),
    ]
    _after(served)
    assert served.fetch_log.read_text().split() == [SNS.cert_url]  # fetched once


def test_postmark_over_http(served: Served) -> None:
    bounce = h.postmark_bounce("pdt@example.org", 9_000_001)
    assert served.post("postmark", bounce, **h.basic_auth("guessed")) == 401
    assert served.rows() == []
    assert served.post("postmark", bounce, **h.basic_auth(SECRET)) == 200
    assert served.post("postmark", bounce, **h.basic_auth(SECRET)) == 200  # replayed
    complaint = h.postmark_complaint("mixed@example.org", 9_000_002)
    assert served.post("postmark", complaint, **h.basic_auth(SECRET)) == 200
    assert [r[:2] for r in served.rows()] == [
        ("mixed@example.org", "complaint"),
        ("pdt@example.org", "hard"),
    ]
    _after(served)


def test_mailgun_over_http(served: Served) -> None:
    now = int(time.time())
    event = h.mailgun_failed(
        "pdt@example.org", "mg-1", message_id=served.message_id("pdt@example.org")
    )
    assert served.post("mailgun", h.mailgun_body("forged-key", event, now)) == 403
    assert served.rows() == []
    body = h.mailgun_body(MAILGUN_KEY, event, now)
    assert served.post("mailgun", body) == 200
    assert served.post("mailgun", body) == 403  # the same token again: a replay
    assert served.post("mailgun", h.mailgun_body(MAILGUN_KEY, event, now)) == 200  # retry
    complaint = h.mailgun_complained("mixed@example.org", "mg-2")
    assert served.post("mailgun", h.mailgun_body(MAILGUN_KEY, complaint, now)) == 200
    assert [r[:2] for r in served.rows()] == [
        ("mixed@example.org", "complaint"),
        ("pdt@example.org", "hard"),
    ]
    _after(served)


def test_sendgrid_over_http(served: Served) -> None:
    now = int(time.time())
    batch = [
        h.sendgrid_bounce("pdt@example.org", "sg-1"),
        h.sendgrid_spamreport("mixed@example.org", "sg-2"),
    ]
    # A real batch is larger than any form: padded past the pages' 64 KB limit.
    batch += [
        {"email": f"p{i}@example.org", "event": "processed", "sg_event_id": f"sg-p{i}"}
        for i in range(2000)
    ]
    body = json.dumps(batch).encode()
    assert len(body) > 64 * 1024
    forged = body.replace(b"pdt@", b"all@")
    assert served.post("sendgrid", forged, **SENDGRID.headers(body, now)) == 403
    assert served.rows() == []
    assert served.post("sendgrid", body, **SENDGRID.headers(body, now)) == 200
    assert served.post("sendgrid", body, **SENDGRID.headers(body, now + 30)) == 200  # again
    # Over the hooks' 1 MB: refused by waitress from the Content-Length, nothing read.
    assert served.announced_size_answer("sendgrid", 2 * 1024 * 1024) == 413
    assert [r[:2] for r in served.rows()] == [
        ("mixed@example.org", "complaint"),
        ("pdt@example.org", "hard"),
    ]
    _after(served)
