"""Bounces and complaints that come back by mail: parsed once, recorded against the right
delivery, auto-replies and unprovable messages set aside, a second pass changes nothing.

A real send (aiosmtpd) to the sample people with a VERP bounce address, then a Maildir of
reports written from the formats of real servers (``tests/fixtures/bounces/``, filled with
the send's own Message-IDs and VERP addresses), read by ``newsletter bounces fetch``.
"""

from __future__ import annotations

import json
import mailbox
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.importers.bounce_mail import parse_bounce
from newsletter.services import App, bounces, subscribers
from newsletter.tokens import verp_address, verp_tag
from tests.support.bounce_reports import (
    BOUNCES,
    MARKED,
    MONTH,
    RECORDED,
    SET_ASIDE,
    STATUS_AFTER,
    all_reports,
    fill_report,
    send_sample,
)
from tests.support.delivery_runs import settings_of
from tests.support.services import SAMPLE_PEOPLE


@pytest.fixture
def sent(send_project: Path) -> Path:
    return send_sample(send_project)


def _maildir(project: Path, folder: Path) -> mailbox.Maildir:
    box = mailbox.Maildir(folder, create=True)
    for raw in all_reports(project):
        box.add(raw)
    return box


def test_fetch_records_each_report_once_against_the_right_person(
    sent: Path, tmp_path: Path
) -> None:
    settings = settings_of(sent)
    box = _maildir(sent, tmp_path / "Maildir")
    runner = CliRunner()
    env = {"NEWSLETTER_CONFIG": str(sent / "newsletter.toml")}
    args = ["bounces", "fetch", "--maildir", str(tmp_path / "Maildir"), "--json"]
    got = runner.invoke(cli, args, env=env)
    assert got.exit_code == 0, got.output
    assert "Traceback" not in got.stderr  # odd messages are normal input, not errors
    report = json.loads(got.stdout)
    assert report["read"] == 8 and report["recorded"] == RECORDED
    assert report["set_aside"] == SET_ASIDE
    assert sorted(report["marked"]) == MARKED
    with App(settings) as app:
        status = {e: subscribers.get_subscriber(app, e).status for e in SAMPLE_PEOPLE}
        assert status == STATUS_AFTER
        [hard] = bounces.show_bounces(app, "pdt@example.org")[1]
        assert (hard.kind, hard.status, hard.source, hard.month) == (
            "hard",
            "5.1.1",
            "maildir",
            MONTH,
        )
        assert "User unknown" in hard.diagnostic
        [soft] = bounces.show_bounces(app, "efficacy@example.org")[1]
        assert (soft.kind, soft.code) == ("soft", 552)
        view = subscribers.get_subscriber(app, "mixed@example.org", history=True)
        [left] = [e for e in view.events if e.event == "unsubscribed"]
        assert left.source == "delivery" and "feedback-type: abuse" in (left.detail or "")
        before = len(bounces.list_bounces(app))
    # Processed messages are moved to cur/ and flagged seen; a second pass changes nothing.
    assert all(box.get_message(k).get_subdir() == "cur" for k in box.iterkeys())
    assert all("S" in box.get_message(k).get_flags() for k in box.iterkeys())
    again = json.loads(runner.invoke(cli, args, env=env).output)
    assert again["recorded"] == 0 and again["already"] == 4 and again["marked"] == []
    with App(settings) as app:
        assert len(bounces.list_bounces(app)) == before


def test_an_mbox_and_bad_paths(sent: Path, tmp_path: Path) -> None:
    path = tmp_path / "bounces.mbox"
    box = mailbox.mbox(path)
    box.add(fill_report(sent, "dsn_postfix_user_unknown.eml", "pdt@example.org", verp=True, n=1))
    box.close()
    runner = CliRunner()
    env = {"NEWSLETTER_CONFIG": str(sent / "newsletter.toml")}
    got = runner.invoke(cli, ["bounces", "fetch", "--mbox", str(path)], env=env)
    assert got.exit_code == 0 and "1 recorded" in got.output, got.output
    got = runner.invoke(cli, ["bounces", "fetch", "--maildir", str(tmp_path)], env=env)
    assert got.exit_code == 1 and "not a Maildir" in got.output and "Traceback" not in got.output
    got = runner.invoke(cli, ["bounces", "fetch"], env=env)
    assert got.exit_code == 2 and "--maildir" in got.output


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff" * 100,
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n--x",
        b"Content-Type: multipart/report; report-type=delivery-status\r\n\r\nno boundary",
        b"Subject: =?utf-8?b?////?=\r\nContent-Type: message/delivery-status\r\n\r\nAction:",
        b"X" * (3 * 1024 * 1024),
    ],
)
def test_hostile_reports_are_set_aside_never_raised(raw: bytes) -> None:
    parsed = parse_bounce(raw)
    assert parsed.what in ("unknown", "too-big")
    assert parsed.recipients == ()


def test_bounces_serve_records_what_a_relay_forwards(sent: Path) -> None:
    import smtplib
    import threading

    from tests.support.smtpserver import free_port

    settings = settings_of(sent)
    raw = fill_report(sent, "dsn_postfix_user_unknown.eml", "pdt@example.org", verp=True, n=1)
    raw = raw.replace(b"\n", b"\r\n")  # as a relay sends it
    port = free_port()
    stop, ready = threading.Event(), threading.Event()
    with App(settings) as app:
        server = threading.Thread(
            target=bounces.serve_bounces,
            args=(app, "127.0.0.1", port, stop),
            kwargs={"on_ready": lambda _port: ready.set()},
        )
        server.start()
        try:
            assert ready.wait(30)
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as relay:
                verp = verp_address(BOUNCES, verp_tag(settings, MONTH, 1))
                refused = relay.sendmail("", [verp], raw)
                assert refused == {}
                # The same report again (a relay retrying) changes nothing.
                relay.sendmail("", [verp], raw)
        finally:
            stop.set()
            server.join(30)
        assert subscribers.get_subscriber(app, "pdt@example.org").status == "bounced"
        assert len(bounces.show_bounces(app, "pdt@example.org")[1]) == 1


def test_someone_who_complained_comes_back_only_with_force(sent: Path, tmp_path: Path) -> None:
    """After a spam complaint, --resubscribe alone does not bring the person back by CSV;
    --force-resubscribe does, and says so in their history."""
    from newsletter.services import imports

    settings = settings_of(sent)
    raw = fill_report(sent, "arf_complaint.eml", "mixed@example.org", verp=False, n=1)
    path = tmp_path / "back.csv"
    path.write_text("email\nmixed@example.org\n", "utf-8")
    with App(settings) as app:
        assert bounces.process_bounce(app, raw) == ("recorded", ["mixed@example.org"])
        report = imports.import_subscribers(app, path, imports.ImportOptions(resubscribe=True))
        assert report.resubscribed == 0
        assert "reporting the list as spam" in report.skipped[0].reason
        assert subscribers.get_subscriber(app, "mixed@example.org").status == "unsubscribed"
        forced = imports.ImportOptions(force_resubscribe=True)
        assert imports.import_subscribers(app, path, forced).resubscribed == 1
        view = subscribers.get_subscriber(app, "mixed@example.org", history=True)
        assert view.status == "active"
        assert any(
            e.event == "resubscribed" and "--force-resubscribe (was unsubscribed)" in e.detail
            for e in view.events
            if e.detail
        )


def test_a_complaint_suppresses_the_address_even_after_erasure(sent: Path, tmp_path: Path) -> None:
    """A complaint puts the address on the suppression list: erased afterwards, the person
    is still kept out of imports (--resubscribe is not enough), sign-up and `add`; an
    administrator's --force-resubscribe brings them back and lifts the entry."""
    from newsletter.services import imports, signup
    from newsletter.store import subscribers as people_db

    settings = settings_of(sent)
    raw = fill_report(sent, "arf_complaint.eml", "mixed@example.org", verp=False, n=1)
    path = tmp_path / "back.csv"
    path.write_text("email\nmixed@example.org\n", "utf-8")
    with App(settings) as app:
        assert people_db.suppression_reason(app.store, "mixed@example.org") is None
        bounces.process_bounce(app, raw)
        assert people_db.suppression_reason(app.store, "Mixed@Example.org") == "complaint"
        subscribers.erase(app, "mixed@example.org")
        # Erasure keeps the first reason: the address reported spam.
        assert people_db.suppression_reason(app.store, "mixed@example.org") == "complaint"
        with pytest.raises(subscribers.SuppressedError, match="reported the newsletter as spam"):
            subscribers.add_subscriber(app, "mixed@example.org")
        assert signup.request_signup(app, "mixed@example.org", "", (), True, None) == "ignored"
        report = imports.import_subscribers(app, path, imports.ImportOptions(resubscribe=True))
        assert (report.added, report.resubscribed) == (0, 0)
        assert "reported the list as spam" in report.skipped[0].reason
        assert "--force-resubscribe" in report.skipped[0].reason
        forced = imports.ImportOptions(force_resubscribe=True)
        assert imports.import_subscribers(app, path, forced).resubscribed == 1
        assert subscribers.get_subscriber(app, "mixed@example.org").status == "active"
        assert people_db.suppression_reason(app.store, "mixed@example.org") is None


def test_resubscribing_someone_who_complained_lifts_their_entry(sent: Path) -> None:
    """Still in the store (unsubscribed by the complaint), the person comes back only by an
    explicit `add --resubscribe`, which lifts the suppression entry with it; a bounced
    address has no entry at all."""
    from newsletter.store import subscribers as people_db

    settings = settings_of(sent)
    with App(settings) as app:
        bounces.process_bounce(
            app, fill_report(sent, "arf_complaint.eml", "mixed@example.org", verp=False, n=1)
        )
        with pytest.raises(subscribers.SubscriberExistsError):
            subscribers.add_subscriber(app, "mixed@example.org")
        assert people_db.is_suppressed(app.store, "mixed@example.org")
        back = subscribers.add_subscriber(app, "mixed@example.org", resubscribe=True)
        assert back.status == "active"
        assert not people_db.is_suppressed(app.store, "mixed@example.org")
        bounces.process_bounce(
            app,
            fill_report(sent, "dsn_postfix_user_unknown.eml", "pdt@example.org", verp=True, n=2),
        )
        assert subscribers.get_subscriber(app, "pdt@example.org").status == "bounced"
        assert not people_db.is_suppressed(app.store, "pdt@example.org")
