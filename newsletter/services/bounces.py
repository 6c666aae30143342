"""Bounces: what the list knows about refused mail, for the administrator.

A refusal at send time (a synchronous SMTP reply) is recorded by the worker with the
delivery's outcome (:mod:`newsletter.store.bounces`); the policy is
:mod:`newsletter.rules.bounces`. This module reads the record and brings a bounced
address back.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import mailbox
import threading
import urllib.request
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from newsletter.errors import NewsletterError
from newsletter.importers import provider_events as hooks
from newsletter.importers.bounce_mail import MAX_BOUNCE_BYTES, FetchReport, parse_bounce
from newsletter.importers.provider_events import (
    MAX_HOOK_BYTES,
    PROVIDERS,
    ProviderEvent,
    WebhookRefused,
)
from newsletter.rules import statuses
from newsletter.rules.bounces import BouncePolicy
from newsletter.rules.schedules import zone
from newsletter.services.app import App
from newsletter.store import bounces as db
from newsletter.store import subscribers as people_db
from newsletter.store.bounces import BounceRow
from newsletter.store.views import SubscriberView
from newsletter.tokens import read_verp_tag

__all__ = [
    "DONE_KEYWORD",
    "MAX_HOOK_BYTES",
    "PROVIDERS",
    "BounceRow",
    "FetchReport",
    "HookOutcome",
    "HookState",
    "WebhookRefused",
    "fetch_imap",
    "fetch_mailbox",
    "hook_state",
    "https_get",
    "list_bounces",
    "process_bounce",
    "process_provider_event",
    "reactivate",
    "serve_bounces",
    "show_bounces",
]

log = logging.getLogger("newsletter.services.bounces")


def _policy(app: App) -> BouncePolicy:
    s = app.settings
    return BouncePolicy(s.bounce_soft_threshold, s.bounce_soft_window_days)


def _verp_owner(app: App, tags: Sequence[str], what: str) -> tuple[str | None, int | None]:
    """(month, subscriber id) of the first VERP tag whose MAC is ours, or (None, None).

    A forged or mangled tag proves nothing: the delivery is then found by the returned
    Message-ID or the failed address, or not at all.
    """
    for tag in tags:
        read = read_verp_tag(app.settings, tag)
        if read is not None:
            return read
    if tags:
        log.warning("%s with a forged or mangled VERP tag: not trusted", what)
    return None, None


def process_bounce(app: App, raw: bytes, source: str = "mail") -> tuple[str, list[str]]:
    """Read one message that came back and record what it proves, once.

    Returns what it was (``recorded``, ``already``, ``autoreply``, ``unknown``, ...) and
    the addresses it marked bounced or unsubscribed. A message that proves nothing about
    a person (no VERP tag, no Message-ID of ours, no address that was sent mail) changes
    nothing and is logged.
    """
    parsed = parse_bounce(raw)
    if parsed.what in ("autoreply", "unknown", "too-big") or not parsed.recipients:
        log.info("set aside a %s message (%s)", parsed.what, parsed.note or parsed.report_id)
        return parsed.what, []
    # The address it came back to first, else a tag in the report or the returned message.
    month, subscriber_id = _verp_owner(app, parsed.verp_tags, "a bounce")
    outcome, marked = "unknown", []
    for r in parsed.recipients:
        if r.kind is None:  # a delay warning
            outcome = "warning" if outcome == "unknown" else outcome
            continue
        result, who = db.record_mailed(
            app.store,
            db.MailedBounce(
                report_id=parsed.report_id,
                kind=r.kind,
                code=r.code,
                diagnostic=(parsed.note + " " + r.diagnostic).strip()
                if r.kind == "complaint"
                else r.diagnostic,
                source=source,
                month=month,
                subscriber_id=subscriber_id,
                message_id=parsed.original_message_id,
                address=r.address,
            ),
            _policy(app),
            app.now(),
        )
        if result == "recorded" or outcome in ("unknown", "warning"):
            outcome = result
        if who:
            marked.append(who)
    if outcome == "unknown":
        log.warning("a bounce about nobody we sent to (%s): set aside", parsed.report_id)
    return outcome, marked


def serve_bounces(
    app: App,
    host: str,
    port: int,
    stop: threading.Event,
    on_ready: Callable[[int], None] | None = None,
) -> None:
    """Receive bounces by SMTP on ``host:port`` until ``stop`` is set (each message is
    processed like one read by :func:`fetch_mailbox`; a failure answers 451)."""
    from newsletter.delivery.inbound import BounceReceiver

    def handle(raw: bytes) -> str:
        what, marked = process_bounce(app, raw, source="smtp-in")
        return what + (f": {len(marked)} stopped" if marked else "")

    receiver = BounceReceiver(handle, host, port, max_bytes=MAX_BOUNCE_BYTES).start()
    try:
        if on_ready is not None:
            on_ready(receiver.port)
        stop.wait()
    finally:
        receiver.stop()


def fetch_mailbox(app: App, path: Path, kind: str = "maildir") -> FetchReport:
    """Process every message of a Maildir (new ones are moved to cur/ and flagged seen)
    or an mbox file; a message processed before changes nothing again."""
    report = FetchReport()
    if kind == "maildir":
        if not (path / "new").is_dir() and not (path / "cur").is_dir():
            raise NewsletterError(
                f"{path} is not a Maildir (no new/ or cur/ folder)",
                hint="give the folder that holds new/, cur/ and tmp/, or use --mbox FILE",
            )
        box: mailbox.Mailbox = mailbox.Maildir(path, create=False)
    else:
        if not path.is_file():
            raise NewsletterError(f"{path} is not a file", hint="give an mbox file")
        box = mailbox.mbox(path, create=False)
    for key in list(box.keys()):
        raw = box.get_bytes(key)
        _count(report, *process_bounce(app, raw, source=kind))
        if isinstance(box, mailbox.Maildir):
            msg = box.get_message(key)
            if msg.get_subdir() != "cur" or "S" not in msg.get_flags():
                msg.set_subdir("cur")
                msg.add_flag("S")
                box[key] = msg
    box.close()
    return report


def _count(report: FetchReport, what: str, marked: list[str]) -> None:
    report.read += 1
    if what == "recorded":
        report.recorded += 1
    elif what == "already":
        report.already += 1
    else:
        report.ignored[what] = report.ignored.get(what, 0) + 1
    report.marked.extend(marked)


#: What ``process_bounce`` understood: filed as processed. Anything else is set aside
#: for a person (auto-replies, reports about nobody we know, oversized or odd mail).
UNDERSTOOD = frozenset({"recorded", "already", "warning"})
#: Keywords of ``fetch_imap(keep=True)``: done (skipped next time), and set aside.
DONE_KEYWORD = "$NewsletterDone"
SET_ASIDE_KEYWORD = "$NewsletterSetAside"
#: Messages filed per IMAP command: a crash repeats at most this many (as "already").
FILE_EVERY = 20


def fetch_imap(
    app: App,
    url: str | None = None,
    *,
    ca_file: str | None = None,
    keep: bool = False,
) -> FetchReport:
    """Process each message waiting in the IMAP folder of ``bounce_imap_url`` (or
    ``url``) once, then file it.

    Each message is downloaded without marking it read and recorded by
    :func:`process_bounce` (idempotent by report id). Only then is it filed: understood
    ones go to ``bounce_imap_processed_folder``, the rest (auto-replies, reports about
    nobody, anything larger than the parser reads, which is never downloaded) to
    ``bounce_imap_set_aside_folder``; both are created if missing. With ``keep`` nothing
    moves: messages are marked seen with ``$NewsletterDone`` (set-aside ones also
    ``$NewsletterSetAside``) and skipped next time. A run cut off halfway files what it
    can; what it could not is read again next time and found ``already`` recorded.
    """
    from newsletter.delivery.imap import ImapMailbox, ImapUnavailableError, parse_imap_url

    s = app.settings
    target = url or s.require("bounce_imap_url", "to read bounces over IMAP")
    config = parse_imap_url(
        target,
        password=s.bounce_imap_password,
        ca_file=ca_file if ca_file is not None else s.bounce_imap_ca_file,
        timeout=s.bounce_imap_timeout,
        root=s.root,
    )
    processed, aside = s.bounce_imap_processed_folder, s.bounce_imap_set_aside_folder
    report = FetchReport()
    with ImapMailbox(config) as box:
        if keep and not box.can_keep(DONE_KEYWORD, SET_ASIDE_KEYWORD):
            raise NewsletterError(
                f"the IMAP folder {config.folder!r} does not take keywords, so --keep "
                "cannot mark what was processed",
                hint="run without --keep (processed mail is moved to its own folder)",
            )
        if not keep:
            box.ensure_folder(processed)
            box.ensure_folder(aside)
        done: list[int] = []
        odd: list[int] = []

        def file_them() -> None:
            # Filed only after being recorded: a crash before this re-reads, never loses.
            if keep:
                box.flag(done, [DONE_KEYWORD])
                box.flag(odd, [DONE_KEYWORD, SET_ASIDE_KEYWORD])
                report.flagged += len(done) + len(odd)
            else:
                box.move(done, processed, seen=True)
                box.move(odd, aside)  # left unread: a person should look at them
                for folder, n in ((processed, len(done)), (aside, len(odd))):
                    if n:
                        report.moved[folder] = report.moved.get(folder, 0) + n
            done.clear()
            odd.clear()

        try:
            for item in box.waiting(skip_keyword=DONE_KEYWORD if keep else None):
                marked: list[str] = []
                if item.size > MAX_BOUNCE_BYTES:
                    log.info("set aside IMAP message %s: %s bytes, not read", item.uid, item.size)
                    what = "too-big"
                else:
                    raw = box.fetch(item.uid)
                    if raw is None:  # expunged by someone else meanwhile
                        continue
                    what, marked = process_bounce(app, raw, source="imap")
                _count(report, what, marked)
                (done if what in UNDERSTOOD else odd).append(item.uid)
                if len(done) + len(odd) >= FILE_EVERY:
                    file_them()
        except ImapUnavailableError:
            raise  # the connection is gone: the rest is read again next time
        except BaseException:
            # Something else stopped us (the store is away, Ctrl-C): file what was
            # processed so far, then let the error through.
            with contextlib.suppress(NewsletterError):
                file_them()
            raise
        file_them()
    return report


def list_bounces(app: App, since: dt.date | None = None, limit: int = 1000) -> list[BounceRow]:
    """Recorded bounces, newest first, from ``since`` (a date in the configured zone)."""
    start = None
    if since is not None:
        start = dt.datetime.combine(since, dt.time(), tzinfo=zone(app.settings.timezone))
    return db.list_bounces(app.store, since=start, limit=limit)


def show_bounces(app: App, email: str) -> tuple[SubscriberView, list[BounceRow]]:
    """One person and their bounces, newest first."""
    view = people_db.get_subscriber(app.store, email)
    return view, db.list_bounces(app.store, email=view.email)


def reactivate(
    app: App, email: str, *, source: str = "cli", detail: str | None = None
) -> SubscriberView:
    """Bring a bounced address back (logged as a consent event ``reactivated``)."""
    view, _ = people_db.change_status(
        app.store,
        email,
        lambda sub: statuses.reactivate(sub.email, sub.status, detail),
        source=source,
    )
    return view


# --- provider webhooks -------------------------------------------------------------------

#: The most a fetched SNS certificate (or a subscription confirmation's answer) may be.
_MAX_FETCH_BYTES = 64 * 1024


def https_get(url: str) -> bytes:
    """GET ``url`` (an address already checked to be https on an Amazon SNS host) with
    certificate verification; the body, at most 64 KB.

    The one network call of the webhooks: :class:`HookState` calls it through this
    module, so a process that cannot reach AWS (tests) can put another in its place.
    """
    with urllib.request.urlopen(url, timeout=10) as answer:  # https, host checked
        return bytes(answer.read(_MAX_FETCH_BYTES))


@dataclass
class HookState:
    """What the webhooks of one process keep between requests: SNS certificates by URL
    and the Mailgun tokens accepted recently. ``fetch`` is the network GET (default
    :func:`https_get`)."""

    fetch: Callable[[str], bytes] = field(default=lambda url: https_get(url))
    tokens: hooks.SeenTokens = field(default_factory=hooks.SeenTokens)
    certificates: hooks.CertificateCache = field(init=False)

    def __post_init__(self) -> None:
        # Through the state, so a fetch replaced later is the one used.
        self.certificates = hooks.CertificateCache(lambda url: self.fetch(url))


_STATES: weakref.WeakKeyDictionary[App, HookState] = weakref.WeakKeyDictionary()
_STATES_LOCK = threading.Lock()


def hook_state(app: App) -> HookState:
    """The :class:`HookState` of ``app`` (made on first use, gone with the app)."""
    with _STATES_LOCK:
        state = _STATES.get(app)
        if state is None:
            state = _STATES[app] = HookState()
        return state


@dataclass
class HookOutcome:
    """What one webhook request did (the answer is 200 whatever it recorded)."""

    recorded: int = 0
    already: int = 0
    ignored: dict[str, int] = field(default_factory=dict)  # by reason
    marked: list[str] = field(default_factory=list)  # addresses bounced or unsubscribed
    note: str = ""

    def ignore(self, why: str) -> None:
        """Count one event deliberately not recorded."""
        self.ignored[why] = self.ignored.get(why, 0) + 1


def _secret(app: App, provider: str) -> str:
    names = {
        "ses": "ses_webhook_secret",
        "postmark": "postmark_webhook_secret",
        "mailgun": "mailgun_signing_key",
        "sendgrid": "sendgrid_verification_key",
    }
    if provider not in names:
        raise hooks.WebhookOff(f"no webhook for {provider[:20]!r}")
    value = str(getattr(app.settings, names[provider])).strip()
    if not value:
        raise hooks.WebhookOff(f"the {provider} webhook is off ({names[provider]} is empty)")
    return value


def process_provider_event(
    app: App, provider: str, headers: Mapping[str, str], body: bytes
) -> HookOutcome:
    """Check one webhook request of ``provider`` and record the bounces and complaints it
    reports, each once, exactly like a bounce read from a mailbox.

    Raises :class:`WebhookRefused` (its ``status`` is the HTTP answer) for a hook that is
    off (404), missing or wrong credentials (401), a signature, timestamp or replay that
    does not pass (403), a body that is not the provider's format (400), or an SNS
    certificate that cannot be fetched now (503). A store failure propagates (the
    provider retries; what was recorded before it is not recorded twice).
    """
    secret = _secret(app, provider)
    lowered = {k.lower(): v for k, v in headers.items()}
    state = hook_state(app)
    now = app.now()
    outcome = HookOutcome()
    if provider in ("ses", "postmark"):
        hooks.check_basic_auth(lowered.get("authorization"), secret)
    if provider == "ses":
        message = hooks.sns_message(body)
        pem = state.certificates.get(hooks.check_sns_url(message.get("SigningCertURL")))
        hooks.verify_sns(message, pem, now)
        kind = message["Type"]
        if kind == "SubscriptionConfirmation":
            url = hooks.check_sns_url(message.get("SubscribeURL"), "SubscribeURL")
            try:
                state.fetch(url)
            except Exception as exc:  # the network: SNS sends the confirmation again
                raise hooks.WebhookUnavailable(
                    f"cannot confirm the SNS subscription ({type(exc).__name__})"
                ) from None
            outcome.note = f"confirmed the SNS subscription to {message.get('TopicArn')}"
            log.info("webhook ses: %s", outcome.note)
            return outcome
        if kind == "UnsubscribeConfirmation":
            outcome.note = f"SNS unsubscribed this endpoint from {message.get('TopicArn')}"
            log.warning("webhook ses: %s", outcome.note)
            return outcome
        events = hooks.ses_events(message)
    elif provider == "postmark":
        events = hooks.postmark_events(hooks.parse_json(body))
    elif provider == "mailgun":
        payload = hooks.parse_json(body)
        token = hooks.verify_mailgun(payload, secret, now)
        events = hooks.mailgun_events(payload)  # a malformed body does not spend the token
        if not state.tokens.claim(token, now):
            raise WebhookRefused("Mailgun token seen before (a replayed request)")
        try:
            _record_events(app, provider, events, outcome)
        except BaseException:
            state.tokens.release(token)  # Mailgun's retry of this request must pass
            raise
        return outcome
    else:
        hooks.verify_sendgrid(
            body,
            lowered.get("x-twilio-email-event-webhook-signature"),
            lowered.get("x-twilio-email-event-webhook-timestamp"),
            secret,
            now,
        )
        events = hooks.sendgrid_events(hooks.parse_json(body))
    _record_events(app, provider, events, outcome)
    return outcome


def _record_events(
    app: App, provider: str, events: list[ProviderEvent], outcome: HookOutcome
) -> None:
    for e in events:
        if e.kind is None:
            outcome.ignore(e.what)
            log.info("webhook %s: %s event %s not recorded", provider, e.what, e.event_id)
            continue
        tags = (e.verp_tag,) if e.verp_tag else ()
        month, subscriber_id = _verp_owner(app, tags, f"webhook {provider}")
        result, who = db.record_mailed(
            app.store,
            db.MailedBounce(
                report_id=e.report_id,
                kind=e.kind,
                code=e.code,
                diagnostic=e.diagnostic or e.what,
                source=f"webhook:{provider}",
                month=month,
                subscriber_id=subscriber_id,
                message_id=e.message_id,
                address=e.address,
            ),
            _policy(app),
            app.now(),
        )
        if result == "recorded":
            outcome.recorded += 1
        elif result == "already":
            outcome.already += 1
        else:
            outcome.ignore("unknown")
            # Answered 200 all the same: the provider would retry for days otherwise.
            log.warning(
                "webhook %s: %s %s about nobody we sent to: ignored", provider, e.what, e.event_id
            )
        if who:
            outcome.marked.append(who)
        log.info("webhook %s: %s %s %s", provider, e.kind, e.event_id, result)
