"""OutboxTransport: one .eml per Message-ID, written atomically."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from newsletter.delivery.transports import (
    EnvelopeError,
    OutboxTransport,
    OutgoingMessage,
    open_transport,
    outbox_file_name,
)
from newsletter.errors import ConfigError

MSG = b"From: a@example.org\r\nTo: b@example.net\r\nMessage-ID: <abc@host>\r\n\r\nHi\r\n"


def outgoing(
    sender: str, recipients: list[str], data: bytes, message_id: str, canonical: bool = False
) -> OutgoingMessage:
    """The message to send, from its parts in the order of the envelope."""
    return OutgoingMessage(message_id, tuple(recipients), data, sender, canonical)


def test_writes_the_exact_bytes_named_from_the_message_id(tmp_path: Path) -> None:
    outbox = OutboxTransport(tmp_path / "new" / "outbox")  # folders are created
    outcome = outbox.send(outgoing("a@example.org", ["b@example.net"], MSG, "<abc@host>"))
    assert outcome.sent and outcome.code == 250
    target = tmp_path / "new" / "outbox" / "abc@host.eml"
    assert target.read_bytes() == MSG
    assert str(target) in outcome.reply


def test_same_message_id_overwrites_and_leaves_no_temp_files(tmp_path: Path) -> None:
    tmp_path = tmp_path / "out"
    outbox = OutboxTransport(tmp_path)
    outbox.send(outgoing("a@example.org", ["b@example.net"], b"first\r\n", "<abc@host>"))
    outbox.send(outgoing("a@example.org", ["b@example.net"], b"second\r\n", "<abc@host>"))
    outbox.send(outgoing("a@example.org", ["b@example.net"], b"other\r\n", "<def@host>"))
    assert sorted(os.listdir(tmp_path)) == ["abc@host.eml", "def@host.eml"]
    assert (tmp_path / "abc@host.eml").read_bytes() == b"second\r\n"


def test_failed_write_answers_unavailable_and_leaves_no_temp_file(tmp_path: Path) -> None:
    outbox = OutboxTransport(tmp_path / "out")
    (tmp_path / "out" / "abc@host.eml").mkdir()  # the rename cannot replace a folder
    outcome = outbox.send(outgoing("a@example.org", ["b@example.net"], MSG, "<abc@host>"))
    assert outcome.status == "unavailable"
    assert "abc@host.eml" in outcome.reply
    assert os.listdir(tmp_path / "out") == ["abc@host.eml"]
    assert (tmp_path / "out" / "abc@host.eml").is_dir()


@pytest.mark.parametrize(
    ("message_id", "name"),
    [
        ("<abc@host>", "abc@host.eml"),
        ("abc@host", "abc@host.eml"),
        ("<20240101.a-b_c+d=e@news.example.org>", "20240101.a-b_c+d=e@news.example.org.eml"),
    ],
)
def test_file_names(message_id: str, name: str) -> None:
    assert outbox_file_name(message_id) == name


def test_unsafe_message_ids_become_safe_distinct_names(tmp_path: Path) -> None:
    names = {outbox_file_name(m) for m in ("<a/b@h>", "<a_b@h>", "<../../x@h>", "<a\\b@h>")}
    assert len(names) == 4
    for name in names:
        assert "/" not in name and "\\" not in name and not name.startswith(".")
    outbox = OutboxTransport(tmp_path / "out")
    outbox.send(outgoing("a@example.org", ["b@example.net"], MSG, "<../../escape@h>"))
    assert len(os.listdir(tmp_path / "out")) == 1
    assert sorted(os.listdir(tmp_path)) == ["out", "work"]
    assert len(outbox_file_name("<" + "x" * 500 + "@h>")) < 200


def test_envelope_is_still_validated(tmp_path: Path) -> None:
    tmp_path = tmp_path / "out"
    with pytest.raises(EnvelopeError):
        OutboxTransport(tmp_path).send(outgoing("a@example.org", ["b@x\r\n"], MSG, "<abc@host>"))
    assert os.listdir(tmp_path) == []


def test_folder_that_cannot_be_created_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="cannot create the outbox folder"):
        OutboxTransport(tmp_path / "file" / "outbox")


def test_open_transport_defaults_to_the_project_outbox(isolated_env: Path, smtp_settings) -> None:
    settings = smtp_settings("outbox:///sent-mail")
    with open_transport(settings) as transport:
        transport.send(outgoing("a@example.org", ["b@example.net"], MSG, "<abc@host>"))
    assert (isolated_env / "sent-mail" / "abc@host.eml").read_bytes() == MSG
