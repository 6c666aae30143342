"""The JSON API of a real ``newsletter serve`` process (waitress), through httpx, and the
example client that knows only the OpenAPI description run against it.

One server per database for the whole module, each on a store of its own (a SQLite file,
a new PostgreSQL database); its checks run in one test (see the last one).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy.exc import OperationalError

from newsletter.config import Settings, load_settings
from newsletter.services import App, api_tokens, subscribers
from tests.plugin import PG_SERVER
from tests.support.delivery_runs import create_database, drop_database
from tests.support.smtpserver import free_port

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


class Server:
    """The running server: its URL, its settings (for the store beside it) and its log."""

    def __init__(self, settings: Settings, port: int, log: Path) -> None:
        self.settings = settings
        self.url = f"http://127.0.0.1:{port}"
        self.log = log

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def token(self, name: str, read_only: bool = False) -> str:
        with App(self.settings) as app:
            return api_tokens.create_token(app, name, read_only=read_only).token


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    project = tmp_path_factory.mktemp("api-server")
    try:
        database = create_database(request.param, project, PG_SERVER)
    except OperationalError:
        if os.environ.get("NEWSLETTER_REQUIRE_POSTGRES"):
            raise
        pytest.skip("PostgreSQL is not reachable")
    try:
        yield from _serve(project, database)
    finally:
        drop_database(database, PG_SERVER)


def _serve(project: Path, database: str):
    port = free_port()
    shutil.copytree(REPO / "issues", project / "issues")
    (project / "newsletter.toml").write_text(
        'secret_key = "api-server-test"\n'
        f'base_url = "http://127.0.0.1:{port}"\n'
        f'database_url = "{database}"\n'
        f'smtp_url = "outbox:///{project}/outbox"\n'
        'sender_address = "digest@example.org"\n'
        'postal_address = "1 Example Street, Exampletown"\n'
        "api_enabled = true\n"
    )
    settings = load_settings(project / "newsletter.toml", environ={})
    with App(settings) as app:
        for email in ("ann@example.org", "bob@example.org"):
            subscribers.add_subscriber(app, email)
    log = project / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "newsletter", "serve", "--port", str(port)],
            cwd=project,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    running = Server(settings, port, log)
    try:
        for _ in range(300):
            try:
                if httpx.get(running.url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                assert proc.poll() is None, log.read_text()
                time.sleep(0.1)
        else:
            raise AssertionError("newsletter serve did not start: " + log.read_text())
        yield running
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def check_the_example_client_adds_changes_removes_and_reads_a_send(server):
    token = server.token("example-client")
    with server.client(token) as api:
        started = api.post("/api/v1/sends/2026-11/start")
        assert started.status_code == 202, started.text
    env = {**os.environ, "NEWSLETTER_API_TOKEN": token}
    run = subprocess.run(
        [
            sys.executable,
            str(REPO / "examples" / "api_client.py"),
            "--url",
            server.url,
            "--email",
            "example.client@example.org",
            "--month",
            "2026-11",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("added example.client@example.org")
    assert "Changed By Client" in lines[1] and "training" in lines[1]
    assert lines[2] == "unsubscribed: unsubscribed"
    assert lines[3] == "erased: True"
    assert lines[4] == "send 2026-11: planned, 0 sent, 2 outstanding of 2"  # ann and bob
    with server.client(token) as api:
        gone = api.get("/api/v1/subscribers", params={"status": "unsubscribed"}).json()
        assert gone["items"] == []  # erased, not only unsubscribed
    # Every write is in the server's log with the token's name, never with the token.
    log = server.log.read_text()
    assert log.count("by token 'example-client'") == 5
    assert token not in log


def check_a_token_revoked_beside_the_server_is_refused_at_once(server):
    token = server.token("short-lived", read_only=True)
    with server.client(token) as api:
        assert api.get("/api/v1/topics").status_code == 200
        refused = api.post("/api/v1/subscribers", json={"email": "x@example.org"})
        assert refused.status_code == 403
        assert refused.headers["content-type"] == "application/problem+json"
        with App(server.settings) as app:
            api_tokens.revoke_token(app, "short-lived")
        gone = api.get("/api/v1/topics")
        assert gone.status_code == 401
        assert gone.json()["type"] == "/api/v1/problems/unauthorized"


def check_the_served_description_and_limits_through_waitress(server):
    token = server.token("limits")
    with server.client(token) as api:
        doc = api.get("/api/v1/openapi.json").json()
        assert doc["servers"] == [{"url": server.url}]
        assert "/api/v1/subscribers/{subscriber_id}" in doc["paths"]
        big = api.post(
            "/api/v1/subscribers", json={"email": "big@example.org", "name": "x" * 20_000}
        )
        assert big.status_code == 413
        assert big.json()["type"] == "/api/v1/problems/too-large"
        page = api.get("/api/v1/subscribers", params={"limit": 1})
        assert page.status_code == 200 and page.json()["next_cursor"]
        assert "set-cookie" not in page.headers
        assert not [h for h in page.headers if h.lower().startswith("access-control")]


def check_paging_while_another_client_adds_people(server):
    reader, writer = server.token("pager", read_only=True), server.token("adder")
    with server.client(reader) as api:
        before = {p["id"] for p in api.get("/api/v1/subscribers").json()["items"]}

    answers: list[int] = []

    def add_people() -> None:
        with server.client(writer) as other:
            for n in range(12):
                added = other.post("/api/v1/subscribers", json={"email": f"new{n}@example.org"})
                answers.append(added.status_code)

    adder = threading.Thread(target=add_people)
    seen: list[int] = []
    with server.client(reader) as api:
        adder.start()
        cursor = None
        while True:
            params = {"limit": 1, **({"cursor": cursor} if cursor else {})}
            page = api.get("/api/v1/subscribers", params=params).json()
            seen += [p["id"] for p in page["items"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        adder.join()
    assert answers == [201] * 12
    assert len(seen) == len(set(seen))  # no one twice
    assert before <= set(seen)  # no one who was there before skipped
    assert seen == sorted(seen)


def test_the_api_of_a_real_server(server):
    """One test, so that pytest-xdist cannot split the checks over two workers and start
    the server twice."""
    check_the_example_client_adds_changes_removes_and_reads_a_send(server)
    check_a_token_revoked_beside_the_server_is_refused_at_once(server)
    check_the_served_description_and_limits_through_waitress(server)
    check_paging_while_another_client_adds_people(server)
