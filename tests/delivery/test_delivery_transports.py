"""The transport interface and the scheme registry: a new transport is one module.

``MemoryTransport`` below stands for such a module (an HTTP API provider, say): it
subclasses ``Transport`` and registers the scheme ``memory``, and ``open_transport`` finds
it from ``smtp_url`` alone.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import dkim
import pytest

from newsletter.config import Settings
from newsletter.delivery.transports import (
    EnvelopeError,
    OutboxTransport,
    OutgoingMessage,
    SendOutcome,
    SmtpTransport,
    Transport,
    open_transport,
    parse_smtp_url,
    registry,
)
from newsletter.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
MSG = b"From: a@example.org\r\nTo: b@example.net\r\nMessage-ID: <abc@host>\r\n\r\nHi\r\n"
BUILT_IN_ERROR = "is not an smtp://, smtps:// or outbox:// address"


class MemoryTransport(Transport):
    """Keeps every message it is given in ``messages``: a whole transport in a few lines.

    ``flushed`` counts the messages held when :meth:`flush` was last called.
    """

    name = "memory"

    def __init__(self, box: str) -> None:
        self.box = box
        self.messages: list[OutgoingMessage] = []
        self.flushed = 0
        self.closed = False

    def _deliver(self, message: OutgoingMessage) -> SendOutcome:
        self.messages.append(message)
        return SendOutcome("sent", 250, f"kept in {self.box}")

    def flush(self) -> None:
        self.flushed = len(self.messages)

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def memory_scheme() -> Iterator[list[MemoryTransport]]:
    """Register ``memory://BOX`` for the test; yields the transports it opened."""
    opened: list[MemoryTransport] = []

    @registry.register("memory")
    def open_memory(url: str, settings: Settings) -> MemoryTransport:
        transport = MemoryTransport(url.partition("://")[2])
        opened.append(transport)
        return transport

    yield opened
    registry.unregister("memory")


def test_a_registered_scheme_is_opened_and_its_messages_arrive(
    memory_scheme: list[MemoryTransport], smtp_settings: Callable[..., Settings]
) -> None:
    message = OutgoingMessage("<abc@host>", ("b@example.net",), MSG, "a@example.org")
    with open_transport(smtp_settings("memory://x")) as transport:
        assert isinstance(transport, MemoryTransport)
        assert transport.box == "x" and transport.name == "memory"
        outcome = transport.send(message)
    assert outcome == SendOutcome("sent", 250, "kept in x")
    assert memory_scheme == [transport]
    assert transport.messages == [message]
    assert transport.closed


def test_unknown_scheme_error_lists_the_registered_ones(
    memory_scheme: list[MemoryTransport], smtp_settings: Callable[..., Settings]
) -> None:
    assert registry.schemes() == ("smtp", "smtps", "outbox", "memory")
    with pytest.raises(ConfigError) as info:
        open_transport(smtp_settings("http://u:secret@api.example"))
    assert str(info.value).startswith(
        "smtp_url 'http://u:***@api.example' is not an smtp://, smtps://, outbox:// "
        "or memory:// address"
    )
    assert info.value.hint == registry.URL_HINT
    # parse_smtp_url reads only the forms it knows, whatever else is registered.
    with pytest.raises(ConfigError, match=BUILT_IN_ERROR):
        parse_smtp_url("memory://x")


def test_unknown_scheme_error_of_the_built_in_set(smtp_settings: Callable[..., Settings]) -> None:
    assert registry.schemes() == ("smtp", "smtps", "outbox")
    for url in ("memory://x", "mail.example:25", "http://u:secret@mail.example"):
        with pytest.raises(ConfigError) as info:
            open_transport(smtp_settings(url))
        shown = url.replace("secret", "***")
        assert str(info.value).startswith(f"smtp_url {shown!r} {BUILT_IN_ERROR}")
        assert "secret" not in f"{info.value} {info.value.hint}"
        assert info.value.hint == registry.URL_HINT


def test_built_in_schemes_open_their_transports(
    isolated_env: Path, smtp_settings: Callable[..., Settings]
) -> None:
    for url, kind in (
        ("smtp://127.0.0.1:2525", SmtpTransport),
        ("SMTPS://127.0.0.1:4650", SmtpTransport),
        ("outbox:///out", OutboxTransport),
    ):
        with open_transport(smtp_settings(url)) as transport:
            assert type(transport) is kind
            assert transport.name == ("outbox" if kind is OutboxTransport else "smtp")


def test_a_scheme_cannot_be_taken_twice(memory_scheme: list[MemoryTransport]) -> None:
    with pytest.raises(ValueError, match="already registered"):
        registry.register("smtp")(lambda url, settings: MemoryTransport("x"))
    with pytest.raises(ValueError, match="already registered"):
        registry.register("memory")(lambda url, settings: MemoryTransport("x"))
    with pytest.raises(ValueError, match="lower-case URL scheme"):
        registry.register("Memory://")
    assert registry.schemes() == ("smtp", "smtps", "outbox", "memory")


def test_defaults_of_the_interface() -> None:
    transport = MemoryTransport("x")
    assert transport.probe().sent  # nothing to reach: always usable
    transport.flush()  # nothing held back
    assert transport.messages == []


def test_send_checks_the_envelope_and_the_types_for_every_transport() -> None:
    transport = MemoryTransport("x")
    with pytest.raises(EnvelopeError):
        transport.send(OutgoingMessage("<abc@host>", ("b@x\r\n",), MSG, "a@example.org"))
    with pytest.raises(EnvelopeError):
        transport.send(OutgoingMessage("<abc@host>", (), MSG, "a@example.org"))
    with pytest.raises(TypeError):
        transport.send(OutgoingMessage("<abc@host>", "b@example.net", MSG))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        transport.send(OutgoingMessage("<abc@host>", ("b@example.net",), "text"))  # type: ignore[arg-type]
    assert transport.messages == []
    # Other sequences and byte types are taken, as a tuple and bytes.
    assert transport.send(OutgoingMessage("<abc@host>", ["b@example.net"], bytearray(MSG))).sent  # type: ignore[arg-type]
    [kept] = transport.messages
    assert kept.recipients == ("b@example.net",) and type(kept.data) is bytes


def test_outgoing_message() -> None:
    message = OutgoingMessage("<abc@host>", ("b@example.net", "c@example.net"), MSG)
    assert message.envelope_to == "b@example.net"
    assert (message.envelope_from, message.canonical) == ("", False)
    assert OutgoingMessage("<abc@host>", (), MSG).envelope_to == ""


def test_every_transport_signs_with_the_dkim_settings(
    memory_scheme: list[MemoryTransport],
    smtp_settings: Callable[..., Settings],
    dkim_key: tuple[Path, bytes],
) -> None:
    key, record = dkim_key

    def dns(name: bytes | str, timeout: int = 5) -> bytes | None:
        name = name.decode() if isinstance(name, bytes) else name
        return record if name.rstrip(".") == "s1._domainkey.example.org" else None

    settings = smtp_settings(
        "memory://signed",
        dkim_domain="example.org",
        dkim_selector="s1",
        dkim_key_file=str(key),
    )
    with open_transport(settings) as transport:
        sent = OutgoingMessage("<abc@host>", ("b@example.net",), MSG, canonical=True)
        assert transport.send(sent).sent
    [kept] = memory_scheme[0].messages
    assert kept.data.startswith(b"DKIM-Signature:") and kept.data.endswith(MSG)
    assert dkim.verify(kept.data, dnsfunc=dns)
    # Still canonical: the signature fields end in CRLF and no line of them starts with
    # ".", so SMTP can still skip its line-end scan and dot-stuffing.
    assert kept.canonical
    assert b"\n" not in kept.data.replace(b"\r\n", b"") and b"\r\n." not in kept.data


def test_bad_dkim_settings_close_the_opened_transport(
    memory_scheme: list[MemoryTransport], smtp_settings: Callable[..., Settings]
) -> None:
    settings = smtp_settings("memory://x", dkim_domain="example.org")
    with pytest.raises(ConfigError, match="dkim_selector"):
        open_transport(settings)
    assert [t.closed for t in memory_scheme] == [True]


def test_a_whole_send_through_a_registered_transport(
    memory_scheme: list[MemoryTransport], isolated_env: Path
) -> None:
    import shutil

    from newsletter.config import load_settings
    from newsletter.services import App, sends, subscribers
    from newsletter.store import upgrade_database

    (isolated_env / "newsletter.toml").write_text(
        'sender_address = "digest@example.org"\n'
        'postal_address = "1 Example Street, Exampletown"\n'
        'secret_key = "test-secret"\n'
        'smtp_url = "memory://send"\n'
    )
    shutil.copytree(REPO / "issues", isolated_env / "issues")
    settings = load_settings(isolated_env / "newsletter.toml", environ={})
    upgrade_database(settings.database_url)
    readers = ["ann@example.org", "bob@example.org"]
    with App(settings) as app:
        for address in readers:
            subscribers.add_subscriber(app, address, all_topics=True)
        sends.plan(app, "2026-11")
        result = sends.run_worker(app, sends.WorkerOptions(months=["2026-11"]))
    assert result.report.sent == 2
    [transport] = memory_scheme
    assert sorted(m.envelope_to for m in transport.messages) == readers
    assert all(m.canonical and m.envelope_from == "digest@example.org" for m in transport.messages)
    assert transport.flushed == 2  # the worker flushed after its last message, to record it
    assert transport.closed


def test_a_new_transport_module_needs_no_other_line(tmp_path: Path) -> None:
    """Dropping one module into the transports package is enough: it registers itself.

    Works on a copy of the package, so the source tree (and tests running beside this
    one) never see the probe module.
    """
    import shutil
    import subprocess
    import sys

    import newsletter

    copy = tmp_path / "newsletter"
    shutil.copytree(
        Path(newsletter.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__")
    )
    (copy / "delivery" / "transports" / "probe.py").write_text(
        "from newsletter.delivery.transports import registry\n"
        "from newsletter.delivery.transports.outbox import OutboxTransport\n\n\n"
        '@registry.register("probe")\n'
        "def _open(url, settings):\n"
        "    return OutboxTransport(settings.root / 'probe-outbox')\n"
    )
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import newsletter.delivery.transports as t; "
            "print(t.__file__); print(sorted(t.registry.schemes()))",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    ).stdout
    where, schemes = out.splitlines()
    assert where.startswith(str(copy))
    assert "'probe'" in schemes and "'smtp'" in schemes and "'outbox'" in schemes


def test_an_unexpected_worker_error_is_one_line_without_sql_parameters() -> None:
    from newsletter.delivery.worker import _brief

    err = RuntimeError(
        "(sqlite3.OperationalError) disk I/O error\n[SQL: UPDATE deliveries SET x=?]\n"
        "[parameters: ('ann@example.org', '<2026-11.1.ab@example.org>')]"
    )
    assert _brief(err) == "RuntimeError: (sqlite3.OperationalError) disk I/O error"
    assert "ann@example.org" not in _brief(err)
    assert _brief(KeyError()) == "KeyError"


def test_the_bounce_receiver_answers_451_when_it_cannot_record() -> None:
    """A bounce is never lost: if it cannot be recorded now, the relay is asked to retry."""
    import smtplib

    from newsletter.delivery.inbound import BounceReceiver
    from tests.support.smtpserver import free_port

    got: list[bytes] = []

    def handle(raw: bytes) -> str:
        if b"fail" in raw:
            raise RuntimeError("the database is away")
        got.append(raw)
        return "recorded"

    receiver = BounceReceiver(handle, port=free_port()).start()
    try:
        with smtplib.SMTP("127.0.0.1", receiver.port, timeout=30) as relay:
            relay.sendmail("", ["bounces@x.org"], b"Subject: ok\r\n\r\nfine\r\n")
            try:
                relay.sendmail("", ["bounces@x.org"], b"Subject: fail\r\n\r\nfail\r\n")
            except smtplib.SMTPDataError as exc:
                assert exc.smtp_code == 451
            else:
                raise AssertionError("a failed bounce was answered 250")
    finally:
        receiver.stop()
    assert len(got) == 1 and b"fine" in got[0]
