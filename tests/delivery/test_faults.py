"""Fault injection: whole sends through a scripted misbehaving SMTP server.

The server (``tests/support/fault_smtp.py``) refuses, drops, stalls, never greets or goes
down as each test scripts it. Every scenario runs on SQLite and PostgreSQL and ends with
the per-recipient audit of ``tests/support/audit.py`` over what the server accepted:
missing 0, wrong content 0 (each message is the recipient's own: envelope, To, their
signed links, the month's summaries for their topics), duplicates 0.

Documented outcomes (``newsletter/delivery/worker.py``): 4xx is retried later with the
same Message-ID; 5xx is failed with the server's reply kept, never retried; a connection
lost after DATA is retried with the same Message-ID; an unreachable server pauses the
send, which resumes by itself.
"""

from __future__ import annotations

import smtplib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.plugin import PG_SERVER, require_or_skip
from tests.support.audit import Audit, audit
from tests.support.delivery_runs import (
    NewsletterProcess,
    add_settings,
    create_database,
    drop_database,
    ledger_rows,
    send_status,
    settings_of,
    subscriber_ids,
    write_send_project,
)
from tests.support.fault_smtp import FaultSmtpServer, LogEntry
from tests.support.services import (
    SAMPLE_MONTH,
    SAMPLE_PEOPLE,
    WorkerOptions,
    add_people,
    plan_issue_send,
    run_worker,
)
from tests.support.smtpserver import free_port

MONTH = SAMPLE_MONTH
EXPECTED = {addr: want for addr, (_, want) in SAMPLE_PEOPLE.items()}
WANTED = sum(1 for want in EXPECTED.values() if want is not None)  # 5 digests
VICTIM = "mixed@example.org"  # the recipient the scripts pick on

#: How long `newsletter send` may take to hand a paused send over to `newsletter worker`
#: with the projects below (smtp_outage_wait = 5, smtp_timeout = 1): the wait, a probe
#: and start-up on a loaded machine, generously.
HAND_OVER_BOUND = 90.0


@pytest.fixture
def project(send_project: Path, smtp_server, fault_smtp: FaultSmtpServer) -> Path:
    """The sending project, pointed at the fault server, with the sample people."""
    toml = send_project / "newsletter.toml"
    toml.write_text(toml.read_text().replace(smtp_server.url, fault_smtp.url))
    settings = settings_of(send_project)
    add_people(settings, {addr: topics for addr, (topics, _) in SAMPLE_PEOPLE.items()})
    return send_project


def audit_server(server: FaultSmtpServer, project: Path, expected=EXPECTED) -> Audit:
    """The audit of every message the server accepted."""
    settings = settings_of(project)
    return audit(
        [(e.rcpt_tos, e.data) for e in server.accepted()],
        expected,
        settings=settings,
        ids=subscriber_ids(settings),
    )


def assert_perfect(found: Audit) -> None:
    assert not found.missing, found.summary()
    assert not found.unexpected, found.summary()
    assert not found.wrong, found.summary()
    assert not found.duplicates, found.summary()


def worker(project: Path, **options) -> object:
    return run_worker(settings_of(project), WorkerOptions(months=[MONTH], **options))


def entries_for(server: FaultSmtpServer, addr: str) -> list[LogEntry]:
    return [e for e in server.log() if e.rcpt_tos == [addr]]


# --- the fault server itself -------------------------------------------------------------


def _send(server: FaultSmtpServer, to: str, mid: str, timeout: float = 10) -> None:
    with smtplib.SMTP(server.host, server.port, timeout=timeout) as client:
        client.sendmail(
            "from@example.org",
            [to],
            f"From: from@example.org\r\nTo: {to}\r\nMessage-ID: {mid}\r\n\r\nhello\r\n",
        )


def test_the_fault_server_follows_its_script(fault_smtp: FaultSmtpServer) -> None:
    fault_smtp.refuse("rcpt", 451, recipient="ann")  # once, by local part
    fault_smtp.refuse("data", 554, message=3)  # the third transaction
    fault_smtp.refuse("data", 421, recipient="cut@example.org", times=None)
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        _send(fault_smtp, "ann@example.org", "<1@x>")  # transaction 1
    assert refused.value.recipients["ann@example.org"][0] == 451
    _send(fault_smtp, "ann@example.org", "<2@x>")  # 2: the rule was used up
    with pytest.raises(smtplib.SMTPDataError) as data_refused:
        _send(fault_smtp, "bob@example.org", "<3@x>")  # 3
    assert data_refused.value.smtp_code == 554
    for mid in ("<4@x>", "<5@x>"):  # 421 closes the connection, every time
        with pytest.raises((smtplib.SMTPDataError, smtplib.SMTPServerDisconnected)):
            _send(fault_smtp, "cut@example.org", mid)
    log = fault_smtp.log()
    assert [(e.number, e.message_id, e.outcome) for e in log] == [
        (2, "<2@x>", "accepted"),
        (3, "<3@x>", "refused"),
        (4, "<4@x>", "refused"),
        (5, "<5@x>", "refused"),
    ]
    assert log[1].reply.startswith("554 5.7.1") and log[0].rcpt_tos == ["ann@example.org"]
    assert log[0].received_at <= log[1].received_at
    [(number, address, reply)] = fault_smtp.rcpt_refusals
    assert (number, address) == (1, "ann@example.org") and reply.startswith("451 4.3.0")


def test_the_fault_server_drops_stalls_and_keeps_silent(fault_smtp: FaultSmtpServer) -> None:
    fault_smtp.drop_after_data(recipient="drop@example.org")
    with pytest.raises(smtplib.SMTPServerDisconnected):
        _send(fault_smtp, "drop@example.org", "<d@x>")
    [dropped] = fault_smtp.log()
    assert (dropped.outcome, dropped.reply, dropped.message_id) == ("dropped", None, "<d@x>")

    gate = threading.Event()
    fault_smtp.stall("data", until=gate, recipient="slow@example.org")
    sender = threading.Thread(target=_send, args=(fault_smtp, "slow@example.org", "<s@x>"))
    sender.start()
    assert fault_smtp.wait_for(lambda log: len(log) == 2, timeout=30)
    assert fault_smtp.log()[1].outcome == "pending"  # received, not answered
    assert sender.is_alive()
    gate.set()
    sender.join(30)
    assert fault_smtp.log()[1].outcome == "accepted"

    fault_smtp.greet = False
    with pytest.raises((smtplib.SMTPServerDisconnected, TimeoutError, socket.timeout)):
        smtplib.SMTP(fault_smtp.host, fault_smtp.port, timeout=0.5)
    assert fault_smtp.silent_connections == 1
    fault_smtp.greet = True
    _send(fault_smtp, "back@example.org", "<b@x>")
    assert fault_smtp.count("accepted") == 2


# --- scripted codes ----------------------------------------------------------------------

CASES = [(stage, code) for stage in ("rcpt", "data") for code in (421, 451, 452, 552, 554)]


@pytest.mark.parametrize(("stage", "code"), CASES, ids=[f"{s}-{c}" for s, c in CASES])
def test_each_scripted_code_leads_to_its_outcome(
    project: Path, fault_smtp: FaultSmtpServer, stage: str, code: int
) -> None:
    settings = settings_of(project)
    plan_issue_send(settings, MONTH)
    fault_smtp.refuse(stage, code, recipient=VICTIM)
    first = worker(project, threads=1)
    row = ledger_rows(settings, MONTH)[VICTIM]
    if stage == "rcpt":
        [(_, _, reply)] = fault_smtp.rcpt_refusals
    else:
        [(_, _, reply)] = [(0, 0, e.reply) for e in entries_for(fault_smtp, VICTIM)]
    if code < 500:  # temporary: queued again with its Message-ID, sent by the next run
        assert (first.report.sent, first.report.retry) == (WANTED - 1, 1)
        assert (row.status, row.attempts) == ("pending", 1)
        assert row.message_id and row.next_attempt_at is not None
        assert row.last_reply == reply, "the server's reply is kept as it was"
        mid = row.message_id
        again = worker(project, threads=1)
        assert again.report.sent == 1
        row = ledger_rows(settings, MONTH)[VICTIM]
        assert (row.status, row.attempts, row.message_id) == ("sent", 2, mid)
        [delivered] = [e for e in fault_smtp.accepted() if e.rcpt_tos == [VICTIM]]
        assert delivered.message_id == mid
        assert_perfect(audit_server(fault_smtp, project))
    else:  # permanent: failed at once with the server's reply, never tried again
        assert (first.report.sent, first.report.failed) == (WANTED - 1, 1)
        assert row.status == "failed" and row.attempts == 1
        assert row.last_reply == reply, "the server's reply is kept as it was"
        assert worker(project, threads=1).report.handled == 0
        assert_perfect(audit_server(fault_smtp, project, {**EXPECTED, VICTIM: None}))
    assert send_status(settings, MONTH).status == "done"


def test_faults_scripted_by_message_number(project: Path, fault_smtp: FaultSmtpServer) -> None:
    settings = settings_of(project)
    plan_issue_send(settings, MONTH)
    fault_smtp.refuse("data", 451, message=1)
    fault_smtp.refuse("rcpt", 452, message=3)
    fault_smtp.refuse("data", 421, message=4)
    first = worker(project)  # two sender threads: who gets which number is not known
    assert (first.report.sent, first.report.retry) == (WANTED - 3, 3)
    assert worker(project).report.sent == 3
    rows = ledger_rows(settings, MONTH)
    assert sorted(r.attempts for r in rows.values() if r.status == "sent") == [1, 1, 2, 2, 2]
    assert_perfect(audit_server(fault_smtp, project))
    assert send_status(settings, MONTH).status == "done"


# --- lost connections and stalls ---------------------------------------------------------


def test_a_drop_after_data_is_retried_with_the_same_message_id(
    project: Path, fault_smtp: FaultSmtpServer
) -> None:
    settings = settings_of(project)
    plan_issue_send(settings, MONTH)
    fault_smtp.drop_after_data(recipient=VICTIM)
    first = worker(project, threads=1)
    assert (first.report.sent, first.report.retry) == (WANTED - 1, 1)
    row = ledger_rows(settings, MONTH)[VICTIM]
    assert row.status == "pending" and "lost" in (row.last_reply or "")
    worker(project, threads=1)
    dropped, delivered = entries_for(fault_smtp, VICTIM)
    assert (dropped.outcome, delivered.outcome) == ("dropped", "accepted")
    # The server had the message already: the retry is the same message, so the receiving
    # side can tell it is a copy.
    assert dropped.message_id == delivered.message_id == row.message_id
    assert_perfect(audit_server(fault_smtp, project))


def test_a_stall_past_the_smtp_timeout_is_retried_with_the_same_message_id(
    project: Path, fault_smtp: FaultSmtpServer
) -> None:
    add_settings(project, "smtp_timeout = 0.5")
    settings = settings_of(project)
    plan_issue_send(settings, MONTH)
    gate = threading.Event()  # set only once the worker has given up on the reply
    fault_smtp.stall("data", until=gate, recipient=VICTIM)
    first = worker(project, threads=1)
    assert (first.report.sent, first.report.retry) == (WANTED - 1, 1)
    row = ledger_rows(settings, MONTH)[VICTIM]
    assert row.status == "pending" and "lost during DATA" in (row.last_reply or "")
    gate.set()
    assert fault_smtp.wait_for(
        lambda log: [e.outcome for e in log if e.rcpt_tos == [VICTIM]] == ["abandoned"],
        timeout=30,
    )
    assert worker(project, threads=1).report.sent == 1
    stalled, delivered = entries_for(fault_smtp, VICTIM)
    assert delivered.outcome == "accepted"
    assert stalled.message_id == delivered.message_id == row.message_id
    assert_perfect(audit_server(fault_smtp, project))


def test_a_stalled_reply_holds_the_row_until_the_server_answers(
    project: Path, fault_smtp: FaultSmtpServer
) -> None:
    settings = settings_of(project)
    plan_issue_send(settings, MONTH)
    gate = threading.Event()
    fault_smtp.stall("data", until=gate, recipient=VICTIM)
    done: dict = {}
    runner = threading.Thread(target=lambda: done.update(r=worker(project, threads=1)))
    runner.start()
    try:
        assert fault_smtp.wait_for(lambda log: any(e.rcpt_tos == [VICTIM] for e in log), 60)
        # Received, not answered: the row stays claimed; nobody else may take it.
        assert ledger_rows(settings, MONTH)[VICTIM].status == "sending"
    finally:
        gate.set()
        runner.join(60)
    assert not runner.is_alive()
    assert done["r"].report.sent == WANTED
    assert_perfect(audit_server(fault_smtp, project))
    assert send_status(settings, MONTH).status == "done"


# --- the server down ---------------------------------------------------------------------


def test_server_down_pauses_the_send_and_it_resumes(
    project: Path, fault_smtp: FaultSmtpServer
) -> None:
    settings = settings_of(project)
    plan_issue_send(settings, MONTH)
    fault_smtp.stop()
    done: dict = {}
    runner = threading.Thread(target=lambda: done.update(r=worker(project)))
    runner.start()
    try:
        paused = _wait_until(lambda: send_status(settings, MONTH).status == "paused", 60)
        assert paused, "the send is marked paused while the server is down"
        status = send_status(settings, MONTH)
        assert "unavailable" in (status.paused_reason or "")
        assert status.counts.get("sending", 0) == 0  # nothing held while paused
    finally:
        fault_smtp.start()
        runner.join(120)
    assert not runner.is_alive()
    assert done["r"].report.sent == WANTED
    assert_perfect(audit_server(fault_smtp, project))
    assert send_status(settings, MONTH).status == "done"


def _wait_until(condition, timeout: float) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# --- processes against servers that never answer (slow) ----------------------------------


class _OutageRuns:
    """Three processes per database, started together, each on a project of its own:

    - ``greetless``: ``newsletter send --yes`` to a server that accepts TCP, never greets;
    - ``down_send``: ``newsletter send --yes`` with nothing listening on the SMTP port;
    - ``down_worker``: ``newsletter worker --once`` with nothing listening, send planned.
    """

    def __init__(self) -> None:
        self.runs: dict[tuple[str, str], NewsletterProcess] = {}
        self.projects: dict[tuple[str, str], Path] = {}
        self.servers: list[FaultSmtpServer] = []
        self.urls: list[str] = []


@pytest.fixture(scope="module")
def outage_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_OutageRuns]:
    from sqlalchemy.exc import OperationalError

    runs = _OutageRuns()
    kinds = ["sqlite", "postgres"]
    try:
        for kind in kinds:
            for case in ("greetless", "down_send", "down_worker"):
                folder = tmp_path_factory.mktemp(f"outage-{kind}-{case}")
                try:
                    url = create_database(kind, folder / "db", PG_SERVER)
                except OperationalError:
                    continue  # the postgres tests below skip (or fail) on their own
                runs.urls.append(url)
                if case == "greetless":
                    server = FaultSmtpServer().start()
                    server.greet = False
                    runs.servers.append(server)
                    smtp_url = server.url
                else:
                    smtp_url = f"smtp://127.0.0.1:{free_port()}"
                project = write_send_project(
                    folder / "project", url, smtp_url, "smtp_timeout = 1\nsmtp_outage_wait = 5\n"
                )
                add_people(
                    settings_of(project),
                    {addr: topics for addr, (topics, _) in SAMPLE_PEOPLE.items()},
                )
                runs.projects[kind, case] = project
                if case == "down_worker":
                    plan_issue_send(settings_of(project), MONTH)
                    runs.runs[kind, case] = NewsletterProcess(project, "worker", "--once")
                else:
                    runs.runs[kind, case] = NewsletterProcess(project, "send", MONTH, "--yes")
        # Wait for all of them together; whatever still runs after the bound is killed.
        for proc in runs.runs.values():
            proc.wait(max(0.0, HAND_OVER_BOUND - proc.elapsed))
        yield runs
    finally:
        for proc in runs.runs.values():
            proc.kill()
        for server in runs.servers:
            server.stop()
        for url in runs.urls:
            drop_database(url, PG_SERVER)


def _outage(runs: _OutageRuns, kind: str, case: str) -> tuple[NewsletterProcess, Path]:
    if (kind, case) not in runs.runs:
        require_or_skip(
            "NEWSLETTER_REQUIRE_POSTGRES", f"PostgreSQL is not reachable at {PG_SERVER}"
        )
    return runs.runs[kind, case], runs.projects[kind, case]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_send_to_a_server_that_never_greets_hands_over(outage_runs: _OutageRuns, kind: str) -> None:
    proc, project = _outage(outage_runs, kind, "greetless")
    assert proc.ended is not None, f"still running after {HAND_OVER_BOUND:.0f} s"
    out = proc.output()
    assert "Traceback" not in out, out
    assert "paused" in out and "newsletter worker" in out, out
    assert proc.poll() == 75, out
    status = send_status(settings_of(project), MONTH)
    assert status.status == "paused"
    # Nothing was sent and nothing is left claimed: the rest stays queued for a worker.
    assert status.counts.get("pending", 0) == WANTED, status.counts
    assert status.counts.get("sending", 0) == 0 and status.counts.get("sent", 0) == 0
    [server] = [
        s for s in outage_runs.servers if s.url in (project / "newsletter.toml").read_text()
    ]
    assert server.silent_connections >= 1 and server.count() == 0


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_send_paused_by_an_outage_exits_non_zero(outage_runs: _OutageRuns, kind: str) -> None:
    proc, project = _outage(outage_runs, kind, "down_send")
    assert proc.ended is not None, f"still running after {HAND_OVER_BOUND:.0f} s"
    assert send_status(settings_of(project), MONTH).status == "paused"
    assert "paused" in proc.output()
    assert proc.poll() == 75, proc.output()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_worker_once_exits_while_the_server_is_unreachable(
    outage_runs: _OutageRuns, kind: str
) -> None:
    proc, project = _outage(outage_runs, kind, "down_worker")
    assert proc.ended is not None, f"`worker --once` still running after {proc.elapsed:.0f} s"
    out = proc.output()
    assert "Traceback" not in out and "paused" in out, out
    assert proc.poll() == 75, out
    status = send_status(settings_of(project), MONTH)
    assert status.status == "paused" and status.counts.get("sending", 0) == 0
