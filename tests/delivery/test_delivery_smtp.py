"""SmtpTransport against a real aiosmtpd server (tests/delivery/smtpserver.py)."""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from newsletter.delivery.ratelimit import RateLimiter
from newsletter.delivery.transports import (
    EnvelopeError,
    OutgoingMessage,
    SendOutcome,
    SmtpAuthError,
    SmtpTransport,
    TransportClosedError,
    TransportConfigError,
    classify_code,
    open_transport,
    parse_smtp_url,
)
from tests.support.clock import FakeClock
from tests.support.smtpserver import SmtpTestServer

SENDER = "digest@example.org"


def message(n: int = 1, to: str = "reader@example.net") -> bytes:
    """A small message with CRLF line endings, as the assembler makes them."""
    return (
        f"From: Digest <{SENDER}>\r\nTo: {to}\r\nSubject: Issue {n}\r\n"
        f"Message-ID: <m{n}@example.org>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: text/plain; charset="utf-8"\r\n\r\n'
        f"Hello {n}.\r\n.A line starting with a dot.\r\n"
    ).encode()


def outgoing(
    sender: str, recipients: list[str], data: bytes, message_id: str, canonical: bool = False
) -> OutgoingMessage:
    """The message to send, from its parts in the order of the envelope."""
    return OutgoingMessage(message_id, tuple(recipients), data, sender, canonical)


def transport_for(server: SmtpTestServer, url: str | None = None, **options) -> SmtpTransport:
    options.setdefault("timeout", 3.0)
    return SmtpTransport(parse_smtp_url(url or server.url), **options)


@pytest.fixture(params=["pipelining", "one-command-at-a-time"])
def smtp_server(request, smtp_server_factory) -> SmtpTestServer:
    """The test server, with and without PIPELINING: every case runs on both paths."""
    server = smtp_server_factory()
    server.pipelining = request.param == "pipelining"
    return server


@pytest.fixture
def transport(smtp_server: SmtpTestServer):
    t = transport_for(smtp_server)
    yield t
    t.close()


def test_plain_send_is_recorded_with_exact_bytes(
    smtp_server: SmtpTestServer, transport: SmtpTransport
) -> None:
    data = message()
    outcome = transport.send(outgoing(SENDER, ["reader@example.net"], data, "<m1@example.org>"))
    assert outcome == SendOutcome("sent", 250, "2.0.0 OK queued")
    [got] = smtp_server.messages
    assert got.mail_from == SENDER
    assert got.rcpt_tos == ["reader@example.net"]
    assert got.data == data  # dot-stuffing undone, nothing added or changed
    assert got.parsed()["Subject"] == "Issue 1"


def test_canonical_messages_arrive_byte_for_byte(
    smtp_server: SmtpTestServer, transport: SmtpTransport
) -> None:
    # What the assembler makes: CRLF, and "." never starts a line (QP writes =2E).
    data = message().replace(b"\r\n.A line", b"\r\n=2EA line")
    for n in range(3):  # several on one connection: the dialogue stays in step
        outcome = transport.send(
            outgoing(SENDER, ["r@example.net"], data, f"<s{n}@x>", canonical=True)
        )
        assert outcome.sent
    assert [m.data for m in smtp_server.messages] == [data] * 3


def test_connection_is_reused_between_messages(
    smtp_server: SmtpTestServer, transport: SmtpTransport
) -> None:
    for n in range(3):
        assert transport.send(outgoing(SENDER, ["a@example.net"], message(n), f"<m{n}@x>")).sent
    assert len(smtp_server.messages) == 3
    assert smtp_server.sessions == 1
    assert transport.connections_opened == 1


def test_pool_of_two_serves_four_threads(smtp_server: SmtpTestServer) -> None:
    transport = transport_for(smtp_server, pool_size=2)
    outcomes: list[SendOutcome] = []
    lock = threading.Lock()

    def worker(w: int) -> None:
        for i in range(5):
            n = w * 100 + i
            result = transport.send(
                outgoing(SENDER, [f"r{n}@example.net"], message(n), f"<m{n}@x>")
            )
            with lock:
                outcomes.append(result)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    transport.close()
    assert len(outcomes) == 20 and all(o.sent for o in outcomes)
    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == sorted(
        f"r{w * 100 + i}@example.net" for w in range(4) for i in range(5)
    )
    assert smtp_server.max_concurrent <= 2
    assert transport.connections_opened <= 2


def test_451_at_rcpt_is_retry_with_code_and_reply(
    smtp_server: SmtpTestServer, transport: SmtpTransport
) -> None:
    outcome = transport.send(outgoing(SENDER, ["temp-fail@example.net"], message(), "<m1@x>"))
    assert outcome.status == "retry"
    assert outcome.code == 451
    assert "try again later" in outcome.reply
    assert not outcome.connection_lost
    assert smtp_server.messages == []
    # RSET left the connection usable: the next message goes on the same one.
    assert transport.send(outgoing(SENDER, ["ok@example.net"], message(2), "<m2@x>")).sent
    assert smtp_server.sessions == 1


def test_550_at_rcpt_is_failed(smtp_server: SmtpTestServer, transport: SmtpTransport) -> None:
    outcome = transport.send(outgoing(SENDER, ["perm-fail@example.net"], message(), "<m1@x>"))
    assert (outcome.status, outcome.code) == ("failed", 550)
    assert "No such user" in outcome.reply
    assert transport.send(outgoing(SENDER, ["ok@example.net"], message(2), "<m2@x>")).sent
    assert smtp_server.sessions == 1


def test_failure_replies_to_data_are_classified(
    smtp_server: SmtpTestServer, transport: SmtpTransport
) -> None:
    smtp_server.fail_next_data(1, "452 4.3.1 Insufficient system storage")
    smtp_server.fail_next_data(1, "554 5.7.1 Message rejected as spam")
    first = transport.send(outgoing(SENDER, ["a@example.net"], message(1), "<m1@x>"))
    second = transport.send(outgoing(SENDER, ["a@example.net"], message(2), "<m2@x>"))
    third = transport.send(outgoing(SENDER, ["a@example.net"], message(3), "<m3@x>"))
    assert (first.status, first.code) == ("retry", 452)
    assert (second.status, second.code, second.reply) == (
        "failed",
        554,
        "5.7.1 Message rejected as spam",
    )
    assert third.sent
    assert len(smtp_server.rejected) == 2 and len(smtp_server.messages) == 1
    assert smtp_server.sessions == 1


def test_partial_refusal_sends_to_the_others_and_lists_the_refused(
    smtp_server: SmtpTestServer, transport: SmtpTransport
) -> None:
    outcome = transport.send(
        outgoing(SENDER, ["perm-fail@example.net", "ok@example.net"], message(), "<m1@x>")
    )
    assert outcome.sent
    assert outcome.refused == {"perm-fail@example.net": (550, "5.1.1 No such user here")}
    assert smtp_server.messages[0].rcpt_tos == ["ok@example.net"]


def test_all_recipients_refused_mixed_codes_is_retry(transport: SmtpTransport) -> None:
    outcome = transport.send(
        outgoing(SENDER, ["perm-fail@example.net", "temp-fail@example.net"], message(), "<m1@x>")
    )
    assert (outcome.status, outcome.code) == ("retry", 451)
    all_permanent = transport.send(
        outgoing(SENDER, ["perm-fail@example.net"] * 2, message(), "<m1@x>")
    )
    assert all_permanent.status == "failed"


def test_dropped_connection_after_data_is_retry_and_the_pool_recovers(
    smtp_server: SmtpTestServer, transport: SmtpTransport
) -> None:
    assert transport.send(outgoing(SENDER, ["a@example.net"], message(1), "<m1@x>")).sent
    smtp_server.drop_next_data()
    outcome = transport.send(outgoing(SENDER, ["a@example.net"], message(2), "<m2@x>"))
    assert outcome.status == "retry"
    assert outcome.connection_lost
    assert outcome.code is None
    assert "DATA" in outcome.reply
    assert len(smtp_server.dropped) == 1  # the server did get it: hence same Message-ID
    again = transport.send(outgoing(SENDER, ["a@example.net"], message(2), "<m2@x>"))
    assert again.sent
    assert transport.connections_opened == 2
    assert [m.data for m in smtp_server.messages] == [message(1), message(2)]


def test_timeout_waiting_for_the_reply_is_retry_with_connection_lost(
    smtp_server: SmtpTestServer,
) -> None:
    transport = transport_for(smtp_server, timeout=0.3)
    smtp_server.delay_next_data(1.0)
    outcome = transport.send(outgoing(SENDER, ["a@example.net"], message(), "<m1@x>"))
    assert outcome.status == "retry" and outcome.connection_lost
    assert "timed out" in outcome.reply
    assert transport.send(outgoing(SENDER, ["a@example.net"], message(2), "<m2@x>")).sent
    transport.close()


def test_server_down_is_unavailable_and_back_sends_again(
    smtp_server: SmtpTestServer, transport: SmtpTransport
) -> None:
    assert transport.send(outgoing(SENDER, ["a@example.net"], message(1), "<m1@x>")).sent
    smtp_server.stop()
    down = transport.send(outgoing(SENDER, ["a@example.net"], message(2), "<m2@x>"))
    assert down.status == "unavailable"
    assert "Connection refused" in down.reply
    assert not down.connection_lost
    assert transport.probe().status == "unavailable"
    smtp_server.start()  # same port
    assert transport.probe().sent
    back = transport.send(outgoing(SENDER, ["a@example.net"], message(2), "<m2@x>"))
    assert back.sent
    assert [m.data for m in smtp_server.messages] == [message(1), message(2)]


def test_never_reachable_server_is_unavailable() -> None:
    server = SmtpTestServer()  # a free port, never started
    transport = transport_for(server)
    outcome = transport.send(outgoing(SENDER, ["a@example.net"], message(), "<m1@x>"))
    assert outcome.status == "unavailable" and outcome.code is None


def test_stale_idle_connection_is_checked_with_noop(
    smtp_server: SmtpTestServer,
) -> None:
    transport = transport_for(smtp_server, idle_check_after=0.0)
    assert transport.send(outgoing(SENDER, ["a@example.net"], message(1), "<m1@x>")).sent
    smtp_server.restart()  # the pooled connection is now dead
    assert transport.send(outgoing(SENDER, ["a@example.net"], message(2), "<m2@x>")).sent
    assert transport.connections_opened == 2
    transport.close()


def test_envelope_with_line_breaks_is_rejected_before_sending(
    smtp_server: SmtpTestServer, transport: SmtpTransport
) -> None:
    bad = [
        (SENDER, ["a@example.net\r\nRCPT TO:<evil@example.com>"]),
        (SENDER + "\n", ["a@example.net"]),
        (SENDER, ["<a@example.net>"]),
        (SENDER, ["no-at-sign"]),
        (SENDER, []),
    ]
    for sender, recipients in bad:
        with pytest.raises(EnvelopeError):
            transport.send(outgoing(sender, recipients, message(), "<m1@x>"))
        with pytest.raises(ValueError):
            transport.send(outgoing(sender, recipients, message(), "<m1@x>"))
    with pytest.raises(EnvelopeError):
        transport.send(outgoing(SENDER, ["a@example.net"], message(), "<m1@x>\r\nBcc: x"))
    assert smtp_server.messages == [] and smtp_server.sessions == 0


def test_null_sender_is_allowed(smtp_server: SmtpTestServer, transport: SmtpTransport) -> None:
    assert transport.send(outgoing("", ["a@example.net"], message(), "<m1@x>")).sent
    assert smtp_server.messages[0].mail_from == "<>"


def test_send_after_close_is_an_error(transport: SmtpTransport) -> None:
    transport.close()
    with pytest.raises(TransportClosedError):
        transport.send(outgoing(SENDER, ["a@example.net"], message(), "<m1@x>"))


def test_code_classification() -> None:
    assert [classify_code(c) for c in (250, 251, 421, 451, 452, 550, 554, 354)] == [
        "sent",
        "sent",
        "retry",
        "retry",
        "retry",
        "failed",
        "failed",
        "retry",
    ]


# ------------------------------------------------------------------ AUTH and TLS

PASSWORD = "correct horse:battery@staple"
ENCODED = "correct%20horse%3Abattery%40staple"


def test_auth_success(smtp_server_factory: Callable[..., SmtpTestServer]) -> None:
    server = smtp_server_factory(auth={"newsletter": PASSWORD})
    transport = transport_for(server, f"smtp://newsletter:{ENCODED}@127.0.0.1:{server.port}")
    assert transport.send(outgoing(SENDER, ["a@example.net"], message(), "<m1@x>")).sent
    assert server.logins == ["newsletter"]
    assert server.messages[0].login == "newsletter"
    transport.close()


def test_server_requiring_auth_refuses_anonymous_mail(
    smtp_server_factory: Callable[..., SmtpTestServer],
) -> None:
    server = smtp_server_factory(auth={"newsletter": PASSWORD})
    outcome = transport_for(server).send(outgoing(SENDER, ["a@example.net"], message(), "<m1@x>"))
    assert (outcome.status, outcome.code) == ("failed", 530)


def test_bad_password_raises_without_showing_it(
    smtp_server_factory: Callable[..., SmtpTestServer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server = smtp_server_factory(auth={"newsletter": "the-right-one"})
    transport = transport_for(server, f"smtp://newsletter:{ENCODED}@127.0.0.1:{server.port}")
    with pytest.raises(SmtpAuthError) as info:
        transport.send(outgoing(SENDER, ["a@example.net"], message(), "<m1@x>"))
    assert "535" in str(info.value) and "newsletter" in str(info.value)
    assert info.value.hint
    leaks = (PASSWORD, ENCODED, "battery", base64.b64encode(PASSWORD.encode()).decode())
    shown = f"{info.value} {info.value.hint} {info.value!r} {transport!r} {caplog.text}"
    for leak in leaks:
        assert leak not in shown
    assert server.messages == []


def test_starttls_with_a_trusted_private_ca(
    smtp_server_factory: Callable[..., SmtpTestServer], tls_certificate: tuple[Path, Path]
) -> None:
    server = smtp_server_factory(tls="starttls", certificate=tls_certificate, require_starttls=True)
    cert = tls_certificate[0]
    url = f"smtp://127.0.0.1:{server.port}?starttls=true&ca_file={cert}"
    transport = transport_for(server, url)
    assert transport.send(outgoing(SENDER, ["a@example.net"], message(), "<m1@x>")).sent
    assert server.messages[0].tls
    transport.close()


def test_starttls_with_auth(
    smtp_server_factory: Callable[..., SmtpTestServer], tls_certificate: tuple[Path, Path]
) -> None:
    server = smtp_server_factory(tls="starttls", certificate=tls_certificate, auth={"u": PASSWORD})
    url = f"smtp://u:{ENCODED}@localhost:{server.port}?starttls=true&ca_file={tls_certificate[0]}"
    transport = transport_for(server, url)
    assert transport.send(outgoing(SENDER, ["a@example.net"], message(), "<m1@x>")).sent
    assert server.messages[0].tls and server.messages[0].login == "u"
    transport.close()


def test_untrusted_certificate_is_a_config_error_by_default(
    smtp_server_factory: Callable[..., SmtpTestServer], tls_certificate: tuple[Path, Path]
) -> None:
    server = smtp_server_factory(tls="starttls", certificate=tls_certificate)
    transport = transport_for(server, f"smtp://127.0.0.1:{server.port}?starttls=true")
    with pytest.raises(TransportConfigError, match="cannot be verified") as info:
        transport.send(outgoing(SENDER, ["a@example.net"], message(), "<m1@x>"))
    assert "ca_file" in info.value.hint
    insecure = transport_for(server, f"smtp://127.0.0.1:{server.port}?starttls=true&verify=false")
    assert insecure.send(outgoing(SENDER, ["a@example.net"], message(), "<m1@x>")).sent


def test_starttls_asked_but_not_offered(smtp_server: SmtpTestServer) -> None:
    transport = transport_for(
        smtp_server, f"smtp://127.0.0.1:{smtp_server.port}?starttls=true&verify=false"
    )
    with pytest.raises(TransportConfigError, match="does not offer STARTTLS"):
        transport.send(outgoing(SENDER, ["a@example.net"], message(), "<m1@x>"))


def test_smtps_implicit_tls(
    smtp_server_factory: Callable[..., SmtpTestServer], tls_certificate: tuple[Path, Path]
) -> None:
    server = smtp_server_factory(tls="implicit", certificate=tls_certificate)
    url = f"smtps://127.0.0.1:{server.port}?ca_file={tls_certificate[0]}"
    transport = transport_for(server, url)
    assert transport.send(outgoing(SENDER, ["a@example.net"], message(), "<m1@x>")).sent
    assert server.messages[0].data == message()
    transport.close()


def test_smtps_against_a_plain_port_explains_the_mistake(smtp_server: SmtpTestServer) -> None:
    transport = transport_for(smtp_server, f"smtps://127.0.0.1:{smtp_server.port}")
    with pytest.raises(TransportConfigError) as info:
        transport.send(outgoing(SENDER, ["a@example.net"], message(), "<m1@x>"))
    assert "starttls" in info.value.hint


def test_open_transport_from_settings_sends(
    smtp_server: SmtpTestServer, smtp_settings: Callable
) -> None:
    settings = smtp_settings(smtp_server.url, smtp_pool_size=1, smtp_timeout=3)
    with open_transport(settings) as transport:
        assert transport.send(outgoing(SENDER, ["a@example.net"], message(), "<m1@x>")).sent
    assert len(smtp_server.messages) == 1


def test_connection_dead_at_mail_from_is_replaced_without_losing_the_message(
    smtp_server: SmtpTestServer, transport: SmtpTransport
) -> None:
    assert transport.idle_check_after >= 30  # no NOOP: the death shows at MAIL FROM
    assert transport.send(outgoing(SENDER, ["a@example.net"], message(1), "<m1@x>")).sent
    smtp_server.restart()
    outcome = transport.send(outgoing(SENDER, ["a@example.net"], message(2), "<m2@x>"))
    assert outcome.sent and not outcome.connection_lost
    assert transport.connections_opened == 2
    assert [m.data for m in smtp_server.messages] == [message(1), message(2)]


def test_rate_limiter_paces_smtp_sends(smtp_server: SmtpTestServer) -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate_per_second=5, clock=clock, sleep=clock.sleep)
    transport = transport_for(smtp_server, rate_limiter=limiter)
    for n in range(4):
        assert transport.send(outgoing(SENDER, ["a@example.net"], message(n), f"<m{n}@x>")).sent
    transport.close()
    assert clock.sleeps == pytest.approx([0.2, 0.2, 0.2])


def test_421_closes_the_connection_and_is_retry(
    smtp_server: SmtpTestServer, transport: SmtpTransport
) -> None:
    smtp_server.rcpt_replies["busy"] = "421 4.3.2 Service shutting down"
    outcome = transport.send(outgoing(SENDER, ["busy@example.net"], message(1), "<m1@x>"))
    assert (outcome.status, outcome.code) == ("retry", 421)
    assert transport.send(outgoing(SENDER, ["a@example.net"], message(2), "<m2@x>")).sent
    assert transport.connections_opened == 2  # the 421 connection was not reused


def test_recipients_must_be_a_list(transport: SmtpTransport) -> None:
    with pytest.raises(TypeError):
        transport.send(OutgoingMessage("<m1@x>", "a@example.net", message(), SENDER))  # type: ignore[arg-type]


def test_server_restart_with_several_idle_connections(smtp_server: SmtpTestServer) -> None:
    transport = transport_for(smtp_server, pool_size=2)
    smtp_server.delay_next_data(0.3)  # holds the first connection while a second opens
    slow = threading.Thread(
        target=transport.send, args=(outgoing(SENDER, ["a@example.net"], message(1), "<m1@x>"),)
    )
    slow.start()
    deadline = time.monotonic() + 5
    while transport.connections_opened < 1 and time.monotonic() < deadline:
        time.sleep(0.01)  # the slow send now holds its connection for 0.3 s
    assert transport.send(outgoing(SENDER, ["b@example.net"], message(2), "<m2@x>")).sent
    slow.join()
    assert transport.connections_opened == 2
    smtp_server.restart()  # both pooled connections die
    outcome = transport.send(outgoing(SENDER, ["c@example.net"], message(3), "<m3@x>"))
    assert outcome.sent
    assert transport.connections_opened == 3
    transport.close()
