"""``newsletter bounces fetch --imap`` against a real Dovecot (``tests/support/dovecot.py``).

A real send to the sample people, then the bounce reports of ``tests/fixtures/bounces/``
(filled with that send's Message-IDs and VERP addresses) APPENDed to a fresh IMAP user's
INBOX, read by the real CLI. Each test checks the people (SQLite and PostgreSQL), the
folders and flags on the server, and that a second run reads nothing new.
"""

from __future__ import annotations

import imaplib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from newsletter.cli import cli
from newsletter.importers.bounce_mail import MAX_BOUNCE_BYTES
from newsletter.services import App, bounces, subscribers
from tests.support.bounce_reports import (
    MARKED,
    RECORDED,
    REPORTS,
    SET_ASIDE,
    STATUS_AFTER,
    all_reports,
    send_sample,
)
from tests.support.delivery_runs import settings_of
from tests.support.dovecot import OLD_SERVER
from tests.support.services import SAMPLE_PEOPLE
from tests.support.tcp_proxy import CuttingProxy

PASSWORD = "Tr0ub4dor &3 horse"  # a space and an ampersand: quoted right or refused
WRONG = "not-the-password-7f3c"
UNDERSTOOD = {"dsn_postfix_user_unknown.eml", "dsn_mailbox_full.eml"} | {
    "exim_failed_recipients.eml",
    "arf_complaint.eml",
    "dsn_delayed_warning.eml",
}
ODD = {"autoreply_vacation.eml", "forged_verp.eml", "garbage.eml"}


@dataclass
class Mailbox:
    """The test's own view of one Dovecot user's mail (plain IMAP on loopback)."""

    server: Any
    user: str
    password: str = PASSWORD

    def _login(self) -> imaplib.IMAP4:
        imap = imaplib.IMAP4("127.0.0.1", self.server.imap_port, timeout=30)
        imap.login(self.user, self.password)
        return imap

    def append(self, raw: bytes, name: str, flags: str = "") -> None:
        """APPEND ``raw`` to INBOX with a header naming it (``X-Test-Report``)."""
        imap = self._login()
        try:
            typ, data = imap.append(
                "INBOX",
                f"({flags})" if flags else None,
                None,
                f"X-Test-Report: {name}\n".encode() + raw,
            )
            assert typ == "OK", data
        finally:
            imap.logout()

    def folders(self) -> set[str]:
        imap = self._login()
        try:
            _, data = imap.list()
            return {line.rsplit(b' "/" ', 1)[1].strip(b'"').decode() for line in data if line}
        finally:
            imap.logout()

    def contents(self, folder: str) -> dict[str, set[str]]:
        """Each message of ``folder``: its X-Test-Report name -> its flags."""
        imap = self._login()
        try:
            typ, count = imap.select(folder, readonly=True)
            if typ != "OK" or count[0] == b"0":
                return {}
            typ, data = imap.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (X-TEST-REPORT)])")
            out: dict[str, set[str]] = {}
            for part in data:
                if isinstance(part, tuple):
                    flags = imaplib.ParseFlags(part[0])
                    name = part[1].decode().partition(":")[2].strip()
                    out[name] = {f.decode() for f in flags} - {"\\Recent"}
            return out
        finally:
            imap.logout()


@pytest.fixture
def imap_project(send_project: Path, dovecot: Any, tls_certificate: tuple[Path, Path]) -> Path:
    """The sample send done, and a fresh IMAP user (set in bounce_imap_url, trusted with
    the test CA) whose INBOX holds every report of REPORTS."""
    send_sample(send_project)
    user = dovecot.add_user(PASSWORD)
    with open(send_project / "newsletter.toml", "a") as f:
        f.write(
            f'bounce_imap_url = "imaps://{user}@127.0.0.1:{dovecot.imaps_port}/INBOX"\n'
            f'bounce_imap_ca_file = "{tls_certificate[0]}"\n'
        )
    box = Mailbox(dovecot, user)
    for (fixture, _, _), raw in zip(REPORTS, all_reports(send_project), strict=True):
        box.append(raw, fixture)
    return send_project


@pytest.fixture
def mailbox_only(isolated_env: Path, dovecot: Any, tls_certificate: tuple[Path, Path]) -> Path:
    """No store, no send: a project whose IMAP user has one message (for the tests that
    must fail before anything is read)."""
    user = dovecot.add_user(PASSWORD)
    (isolated_env / "newsletter.toml").write_text(
        f'bounce_imap_url = "imaps://{user}@127.0.0.1:{dovecot.imaps_port}/INBOX"\n'
        f'bounce_imap_ca_file = "{tls_certificate[0]}"\n'
    )
    Mailbox(dovecot, user).append(b"Subject: hello\n\njust a note\n", "note")
    return isolated_env


def _box(project: Path, dovecot: Any) -> Mailbox:
    url = settings_of(project).bounce_imap_url
    return Mailbox(dovecot, url.split("//", 1)[1].split("@", 1)[0])


def _fetch(project: Path, *args: str, password: str = PASSWORD) -> Result:
    env = {
        "NEWSLETTER_CONFIG": str(project / "newsletter.toml"),
        "NEWSLETTER_BOUNCE_IMAP_PASSWORD": password,
    }
    return CliRunner().invoke(cli, ["bounces", "fetch", "--imap", *args], env=env)


def _report(got: Result) -> dict[str, Any]:
    assert got.exit_code == 0, got.output
    assert "Traceback" not in got.output
    return json.loads(got.stdout)


def _statuses(project: Path) -> dict[str, str]:
    with App(settings_of(project)) as app:
        return {e: subscribers.get_subscriber(app, e).status for e in SAMPLE_PEOPLE}


def _bounce_count(project: Path) -> int:
    with App(settings_of(project)) as app:
        return len(bounces.list_bounces(app))


def test_fetch_records_then_files_each_message_once(imap_project: Path, dovecot: Any) -> None:
    box = _box(imap_project, dovecot)
    report = _report(_fetch(imap_project, "--json"))
    assert (report["read"], report["recorded"], report["already"]) == (8, RECORDED, 0)
    assert report["set_aside"] == SET_ASIDE
    assert sorted(report["marked"]) == MARKED
    assert report["moved"] == {"Processed": 5, "Set-aside": 3} and report["flagged"] == 0
    assert _statuses(imap_project) == STATUS_AFTER
    with App(settings_of(imap_project)) as app:
        [hard] = bounces.show_bounces(app, "pdt@example.org")[1]
        assert (hard.kind, hard.status, hard.source) == ("hard", "5.1.1", "imap")

    # On the server: INBOX empty; understood reports filed read, the rest left unread.
    assert {"Processed", "Set-aside"} <= box.folders()
    assert box.contents("INBOX") == {}
    processed, aside = box.contents("Processed"), box.contents("Set-aside")
    assert set(processed) == UNDERSTOOD and set(aside) == ODD
    assert all("\\Seen" in flags for flags in processed.values())
    assert not any("\\Seen" in flags for flags in aside.values())

    # Again: nothing to read, nothing changes.
    before = _bounce_count(imap_project)
    again = _report(_fetch(imap_project, "--json"))
    assert (again["read"], again["recorded"], again["moved"]) == (0, 0, {})
    assert _bounce_count(imap_project) == before

    # The same report delivered twice (a relay retried) is read, known, and filed.
    box.append(all_reports(imap_project)[0], "dsn_postfix_user_unknown.eml")
    got = _fetch(imap_project)
    assert got.exit_code == 0, got.output
    assert "read 1: 0 recorded, 1 seen before" in got.output
    assert "moved 1 to Processed" in got.output
    assert _bounce_count(imap_project) == before and box.contents("INBOX") == {}


def test_keep_flags_messages_where_they_are(
    imap_project: Path, dovecot: Any, tls_certificate: tuple[Path, Path]
) -> None:
    """--keep moves nothing (a shared mailbox must not be rearranged): messages are
    flagged seen and done where they are, and skipped next time. The URL comes from the
    command line, over STARTTLS, with the CA from --ca-file."""
    box = _box(imap_project, dovecot)
    url = f"imap://{box.user}@localhost:{dovecot.imap_port}/INBOX?starttls=true"
    settings_file = imap_project / "newsletter.toml"
    settings_file.write_text(
        "\n".join(
            line for line in settings_file.read_text().splitlines() if "bounce_imap" not in line
        )
        + "\n"
    )
    args = [url, "--keep", "--ca-file", str(tls_certificate[0]), "--json"]
    report = _report(_fetch(imap_project, *args))
    assert (report["read"], report["recorded"], report["flagged"]) == (8, RECORDED, 8)
    assert report["moved"] == {}
    assert _statuses(imap_project) == STATUS_AFTER
    assert box.folders() == {"INBOX"}  # no folder made
    inbox = box.contents("INBOX")
    assert set(inbox) == UNDERSTOOD | ODD
    for name, flags in inbox.items():
        assert {"\\Seen", "$NewsletterDone"} <= flags, name
        assert ("$NewsletterSetAside" in flags) == (name in ODD), name

    again = _report(_fetch(imap_project, *args))
    assert (again["read"], again["flagged"]) == (0, 0)
    box.append(b"Subject: hello\n\njust a note\n", "note")
    again = _report(_fetch(imap_project, *args))
    assert again["read"] == 1 and again["set_aside"] == {"unknown": 1}


def test_a_server_without_move_gets_copy_and_uid_expunge(imap_project: Path, dovecot: Any) -> None:
    """The same Dovecot on 127.0.0.2 announces no MOVE: COPY, \\Deleted and UID EXPUNGE
    of our messages only; a message someone else flagged deleted stays."""
    box = _box(imap_project, dovecot)
    box.append(b"Subject: theirs\n\nflagged deleted by a person\n", "theirs", flags="\\Deleted")
    url = f"imap://{box.user}@{OLD_SERVER}:{dovecot.imap_port}/INBOX"  # loopback: no TLS
    report = _report(_fetch(imap_project, url, "--json"))
    assert report["read"] == 8 and report["moved"] == {"Processed": 5, "Set-aside": 3}
    assert set(box.contents("Processed")) == UNDERSTOOD
    assert set(box.contents("Set-aside")) == ODD
    assert box.contents("INBOX") == {"theirs": {"\\Deleted"}}
    assert _statuses(imap_project) == STATUS_AFTER


def test_a_connection_cut_mid_fetch_loses_and_doubles_nothing(
    imap_project: Path, dovecot: Any
) -> None:
    """The network dies as the third message is asked for: the command fails clearly;
    the two recorded stay recorded, nothing is moved, and the next run reads all eight
    again, finds two already recorded and files everything."""
    box = _box(imap_project, dovecot)
    proxy = CuttingProxy(("127.0.0.1", dovecot.imap_port), cut_at=(b"BODY.PEEK[]", 3)).start()
    try:
        url = f"imap://{box.user}@127.0.0.1:{proxy.port}/INBOX"
        got = _fetch(imap_project, url)
    finally:
        proxy.stop()
    assert proxy.cut.is_set()
    assert got.exit_code == 1, got.output
    assert "connection to the IMAP server" in got.output and "was lost" in got.output
    assert "hint: run the command again" in got.output
    assert "Traceback" not in got.output and PASSWORD not in got.output
    assert _bounce_count(imap_project) == 2  # the first two reports, each once
    assert len(box.contents("INBOX")) == 8  # nothing filed that was not confirmed

    report = _report(_fetch(imap_project, "--json"))
    assert (report["read"], report["recorded"], report["already"]) == (8, RECORDED - 2, 2)
    assert report["moved"] == {"Processed": 5, "Set-aside": 3}
    assert _statuses(imap_project) == STATUS_AFTER
    assert _bounce_count(imap_project) == RECORDED  # each report once


def test_an_oversized_message_is_set_aside_unread(imap_project: Path, dovecot: Any) -> None:
    """A message over the parser's cap is judged by its RFC822.SIZE and set aside
    without being downloaded (the proxy counts what the server sent)."""
    box = _box(imap_project, dovecot)
    big = b"Subject: huge\n\n" + (b"x" * 998 + b"\n") * (MAX_BOUNCE_BYTES // 999 + 10)
    box.append(big, "huge")
    proxy = CuttingProxy(("127.0.0.1", dovecot.imap_port)).start()
    try:
        got = _fetch(imap_project, f"imap://{box.user}@127.0.0.1:{proxy.port}/INBOX", "--json")
    finally:
        proxy.stop()
    report = _report(got)
    assert report["read"] == 9 and report["set_aside"]["too-big"] == 1
    assert proxy.to_client < MAX_BOUNCE_BYTES // 4  # the eight reports and replies only
    assert "huge" in box.contents("Set-aside")


def test_wrong_password_is_a_clear_error(mailbox_only: Path) -> None:
    got = _fetch(mailbox_only, password=WRONG)
    assert got.exit_code == 1
    assert "refused the login of user" in got.output
    assert "hint: check the user in bounce_imap_url and bounce_imap_password" in got.output
    assert "Traceback" not in got.output and WRONG not in got.output


def test_an_untrusted_certificate_is_refused(mailbox_only: Path, dovecot: Any) -> None:
    """Without the test CA the server's certificate is not trusted, on IMAPS and on
    STARTTLS alike; nothing is read (the password is never sent)."""
    box = _box(mailbox_only, dovecot)
    settings_file = mailbox_only / "newsletter.toml"
    settings_file.write_text(settings_file.read_text().splitlines()[0] + "\n")
    starttls = f"imap://{box.user}@127.0.0.1:{dovecot.imap_port}/INBOX?starttls=true"
    for args in ([], [starttls]):
        got = _fetch(mailbox_only, *args)
        assert got.exit_code == 1, got.output
        assert "certificate of the IMAP server" in got.output
        assert "cannot be verified" in got.output and "bounce_imap_ca_file" in got.output
        assert "Traceback" not in got.output and PASSWORD not in got.output
    assert box.contents("INBOX") == {"note": set()}  # not even marked read


def test_bad_settings_are_refused_before_connecting(isolated_env: Path) -> None:
    """URL mistakes are configuration errors with a hint (no server needed)."""
    runner = CliRunner()
    env = {"NEWSLETTER_BOUNCE_IMAP_PASSWORD": PASSWORD}
    cases = {
        "imaps://u:inline-secret@mail.example.org/INBOX": "holds a password",
        "imap://u@mail.example.org/INBOX": "would send the password unencrypted",
        "imaps://u@mail.example.org/INBOX?starttls=true": "already encrypted",
        "imaps://u@mail.example.org/INBOX?verify=false": "unknown option 'verify'",
        "imaps://mail.example.org/INBOX": "names no user",
        "pop3://u@mail.example.org/": "not an imap:// or imaps://",
    }
    for url, expected in cases.items():
        got = runner.invoke(cli, ["bounces", "fetch", "--imap", url], env=env)
        assert got.exit_code == 1 and expected in got.output, (url, got.output)
        assert "hint:" in got.output and "inline-secret" not in got.output
        assert "Traceback" not in got.output
    got = runner.invoke(cli, ["bounces", "fetch", "--imap"], env=env)
    assert got.exit_code == 1 and "'bounce_imap_url' is not set" in got.output
    got = runner.invoke(cli, ["bounces", "fetch", "--imap", "imaps://u@127.0.0.1/INBOX"])
    assert got.exit_code == 1 and "'bounce_imap_password' is not set" in got.output
    assert "NEWSLETTER_BOUNCE_IMAP_PASSWORD" in got.output
    got = runner.invoke(cli, ["bounces", "fetch", "--maildir", ".", "--keep"], env=env)
    assert got.exit_code == 2 and "only apply to --imap" in got.output


def test_the_password_stays_out_of_settings_repr() -> None:
    from newsletter.config import load_settings

    settings = load_settings(overrides={"bounce_imap_password": PASSWORD}, environ={})
    assert PASSWORD not in repr(settings) and "bounce_imap_password=***" in repr(settings)


def test_folder_names_and_uid_sets_on_the_wire() -> None:
    from newsletter.delivery.imap import mailbox_name, uid_set

    assert mailbox_name("Processed") == '"Processed"'
    assert mailbox_name("Entwürfe & Co") == '"Entw&APw-rfe &- Co"'  # RFC 3501 5.1.3
    assert mailbox_name('say "hi"') == '"say \\"hi\\""'
    assert uid_set([7, 1, 2, 3, 9, 10]) == "1:3,7,9:10"
    with pytest.raises(Exception, match="control character"):
        mailbox_name("a\r\nb")
