"""Sending an issue: plan it once into a snapshot, deliver it, follow it, retry it.

Planning parses the issue file and renders each variant once, and stores in the ledger
what the workers need (:func:`plan`): every variant's parts, the subject and header
values, each summary's topics and a hash of the content. Workers build messages from that
snapshot alone (:func:`run_worker`), so a worker on another machine needs only the
database and the transport, and an issue file edited after planning changes nothing until
the author re-plans the rows not yet sent (``replan=True``).

"Has this issue been sent?" is :attr:`SendStatus.finished`, asked through
:func:`send_state` by every entry point.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from newsletter.content.model import Issue
from newsletter.delivery.message import (
    assemble_test,
    build_message_template,
    check_address,
    headers_from_settings,
)
from newsletter.delivery.personalise import Recipient
from newsletter.delivery.worker import DeliveryWorker, WorkerOptions, WorkerReport
from newsletter.errors import NewsletterError
from newsletter.render import BuiltIssue
from newsletter.rules.bounces import rate_warnings
from newsletter.rules.links import insecure_warning
from newsletter.rules.personal import TEST_SUBSCRIBER_ID
from newsletter.rules.statuses import is_finished
from newsletter.rules.variants import VariantKey
from newsletter.services import issues
from newsletter.services.app import App
from newsletter.store import bounces as bounce_store
from newsletter.store import ledger
from newsletter.store.errors import SendFinishedError
from newsletter.store.ledger import DeliveryRow, NewSnapshot, SendStatus
from newsletter.store.views import PartContent, SummaryInfo, VariantContent

__all__ = [
    "SendPlan",
    "SendPreview",
    "SendResult",
    "SendStatus",
    "TestSendResult",
    "WorkerOptions",
    "WorkerReport",
    "cancel",
    "delivery_page",
    "delivery_status",
    "list_deliveries",
    "list_sends",
    "plan",
    "prepare",
    "retry_failed",
    "run_worker",
    "send_state",
    "send_test",
    "sendable_issue",
    "start",
]


def sendable_issue(app: App, month: str) -> Issue:
    """The issue of ``month`` if it may be sent: valid and marked ``status: ready``."""
    return issues.load_sendable(app, month)


def send_state(app: App, month: str) -> SendStatus | None:
    """The send of ``month`` with its counts, or None if it was never planned."""
    if ledger.find_send(app.store, month) is None:
        return None
    return ledger.send_status(app.store, month)


@dataclass(frozen=True)
class SendPreview:
    """What a send of an issue looks like: recipients per variant, skips, what is left."""

    month: str
    subject: str
    status: str  # "new" (not planned yet), or the send's status
    titles: tuple[str, ...]  # the summaries' titles, in order
    variants: dict[VariantKey, int]  # recipients (still to send or sent)
    skipped: dict[str, int]
    outstanding: int  # messages still to send
    sent: int = 0
    planning: bool = False  # planning in steps is not over: not everyone has a row yet

    @property
    def finished(self) -> bool:
        """True when the issue was sent already: nothing more goes out."""
        return is_finished(self.status)


@dataclass(frozen=True)
class SendPlan:
    """An issue read once for sending: its preview, and whether its file changed since
    the send was planned."""

    issue: Issue
    preview: SendPreview
    changed: bool = False  # the file's content differs from the planned version
    warnings: list[str] = field(default_factory=list)


def preview(app: App, month: str) -> SendPreview:
    """The counts of the send of ``month`` (planned), as :func:`prepare` shows them."""
    return _preview_of(ledger.send_status(app.store, month))


def _preview_of(status: SendStatus) -> SendPreview:
    k = status.summaries
    return SendPreview(
        month=status.month,
        subject=status.subject,
        status=status.status,
        titles=status.titles,
        variants={VariantKey(m, k): sum(c.values()) for m, c in sorted(status.variants.items())},
        skipped=status.skipped,
        outstanding=status.outstanding,
        sent=status.sent,
        planning=status.planning,
    )


def prepare(
    app: App, month: str, *, replan: bool = False, count: bool = True, dry_run: bool = False
) -> SendPlan:
    """Read the issue of ``month`` once and show what its send looks like; changes nothing.

    A send not planned yet is previewed from the issue file; a planned one from its
    ledger, with ``changed`` set when the file no longer matches the planned version.
    ``replan``: refused at once for a send that is over. ``count`` False leaves a new
    send's counts out (``outstanding`` is then -1): counting who gets which variant is
    a pass over every subscriber, as long as planning itself, which a caller that plans
    at once (``send --yes``) need not wait for twice. ``dry_run``: a draft is previewed
    too (with a warning that it cannot be sent yet), since nothing will be planned.
    """
    warnings = []
    if dry_run:
        issue = issues.load_issue(app, month)
        if issue.status == "draft":
            warnings.append(
                f"{issue.month} is a draft: set 'status: ready' in {issue.path} before "
                "it can be sent"
            )
        else:
            issues.check_sendable(issue)
    else:
        issue = sendable_issue(app, month)
    warning = insecure_warning(app.settings.base_url)
    if warning:
        warnings.append(warning)
    state = send_state(app, issue.month)
    if state is None:
        if not count:
            preview = SendPreview(
                month=issue.month,
                subject=issue.effective_subject,
                status="new",
                titles=tuple(s.title for s in issue.summaries),
                variants={},
                skipped={},
                outstanding=-1,
            )
            return SendPlan(issue, preview, warnings=warnings)
        variants, skipped = ledger.preview_plan(
            app.store, issue.summary_topics, app.settings.no_match_policy, app.today()
        )
        k = len(issue.summaries)
        preview = SendPreview(
            month=issue.month,
            subject=issue.effective_subject,
            status="new",
            titles=tuple(s.title for s in issue.summaries),
            variants={VariantKey(m, k): n for m, n in sorted(variants.items())},
            skipped=skipped,
            outstanding=sum(variants.values()),
        )
        return SendPlan(issue, preview, warnings=warnings)
    if replan and state.finished:
        raise ledger.replan_refused(issue.month, state.status)
    changed = state.revision > 0 and state.content_hash != issue.content_hash()
    return SendPlan(issue, _preview_of(state), changed=changed, warnings=warnings)


def snapshot_of(app: App, built: BuiltIssue) -> NewSnapshot:
    """What a send keeps of a rendered issue (see the module docstring)."""
    issue = built.issue
    return NewSnapshot(
        subject=issue.effective_subject,
        content_hash=issue.content_hash(),
        policy=built.policy,
        summaries=tuple(SummaryInfo(s.key, s.title, s.topic_slugs) for s in issue.summaries),
        headers=headers_from_settings(app.settings),
        variants=tuple(
            VariantContent(
                mask=v.key.mask,
                name=v.name,
                subject=v.subject,
                web_view_url=v.web_view_url,
                html=PartContent("html", v.html.segments, v.html.names),
                text=PartContent("text", v.text.segments, v.text.names),
            )
            for v in built.variants.values()
        ),
    )


def plan(app: App, month: str, *, issue: Issue | None = None, replan: bool = False) -> SendPreview:
    """Plan the send of ``month`` (idempotent) and return its counts.

    The first plan renders every variant once and stores the snapshot; planning again
    only adds people who joined since, from that snapshot. ``replan`` renders the issue
    file anew and re-plans every row not yet sent with it. ``issue`` is the issue already
    read (by :func:`prepare`), so that the file is parsed once.
    """
    issue = issue if issue is not None else sendable_issue(app, month)
    app.settings.require("sender_address", "to send")
    store = app.store
    existing = ledger.find_send(store, issue.month)
    if replan and existing is not None and is_finished(existing.status):
        raise ledger.replan_refused(issue.month, existing.status)
    if replan or existing is None:
        # Rendered before anyone is queued: a broken template or a missing postal address
        # stops here.
        snapshot = snapshot_of(app, issues.build(app, issue))
        if replan and existing is not None:
            ledger.replan_send(store, issue.month, snapshot, app.today())
        else:
            ledger.plan_send(store, issue.month, snapshot, app.today())
    else:
        ledger.plan_send(store, issue.month, None, app.today())
    return _preview_of(ledger.send_status(store, issue.month))


#: Subscribers planned before a new send's first message when the rest is planned while
#: it goes (:func:`plan_while_sending`): enough for the first claims of every thread.
FIRST_STEP = 5_000


class Planning:
    """The rest of a new send being planned, a step at a time, in a thread of this
    process, while the rows planned so far are sent. :meth:`more_coming` goes in
    :attr:`WorkerOptions.more_coming`; :meth:`wait` ends it (and raises what it raised)."""

    def __init__(self, app: App, month: str, preview: SendPreview, planning: bool) -> None:
        self.preview = preview  # the counts after the first step
        self.added = 0  # rows the later steps added
        # Once planning is over: the messages of the whole send (sent or to send).
        self.total: int | None = None if planning else preview.outstanding + preview.sent
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        if planning:
            self._thread = threading.Thread(
                target=self._run, args=(app, month), name="planning", daemon=True
            )
            self._thread.start()

    def _run(self, app: App, month: str) -> None:
        try:
            done = False
            while not done:
                if self._stop.is_set():
                    return
                added, done = ledger.plan_step(app.store, month, app.today())
                self.added += added
            ledger.analyze_after_planning(app.store, self.added)
            status = ledger.send_status(app.store, month)
            self.total = status.total - status.counts.get("skipped", 0)
        except BaseException as exc:  # raised again by wait(), in the caller's thread
            self._error = exc

    def more_coming(self) -> bool:
        """True while planning goes on."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        """Stop after the step under way: the send stays planning (unfinished) until it
        is planned again (``newsletter send MONTH``)."""
        self._stop.set()

    def wait(self) -> None:
        """Wait for planning to end; raise what stopped it, if anything did."""
        if self._thread is not None:
            self._thread.join()
        if self._error is not None:
            raise self._error


def plan_while_sending(app: App, month: str, *, issue: Issue | None = None) -> Planning:
    """Plan the send of ``month`` so that its first messages can go at once.

    A new send is planned for its first :data:`FIRST_STEP` subscribers now and for the
    rest in a thread, a step at a time (each step its own transaction), while a worker
    given :meth:`Planning.more_coming` sends what is planned. The send is not marked done
    until every step is over; a step that failed (or a process that stopped) leaves it
    planning, and planning it again (``newsletter send``) finishes it. A send that
    exists already is planned as :func:`plan` does.
    """
    issue = issue if issue is not None else sendable_issue(app, month)
    if ledger.find_send(app.store, issue.month) is not None:
        return Planning(app, issue.month, plan(app, month, issue=issue), planning=False)
    app.settings.require("sender_address", "to send")
    snapshot = snapshot_of(app, issues.build(app, issue))
    row, _added, _created = ledger.plan_send(
        app.store, issue.month, snapshot, app.today(), first_step=FIRST_STEP
    )
    preview = _preview_of(ledger.send_status(app.store, issue.month))
    return Planning(app, issue.month, preview, planning=row.planning)


@dataclass
class SendResult:
    """What one ``send`` or ``worker`` run did, with the send's counts after it."""

    report: WorkerReport
    statuses: list[SendStatus] = field(default_factory=list)


def run_worker(
    app: App,
    options: WorkerOptions,
    on_progress: Callable[[WorkerReport], None] | None = None,
    stop: threading.Event | None = None,
    planning: Planning | None = None,
) -> SendResult:
    """Drain due deliveries (of ``options.months``, or of every running send).

    ``planning``: the rest of a send being planned (:func:`plan_while_sending`); the
    worker waits for its rows, and the counts returned are taken once it is over. Stopped
    (Ctrl-C, an error), it ends after its current step and the send stays planning.
    """
    if planning is not None:
        options = replace(options, more_coming=planning.more_coming)
    worker = DeliveryWorker(app.settings, app.store, app.transport, options, on_progress, stop)
    try:
        report = worker.run()
    except BaseException:
        if planning is not None:
            planning.stop()
            with contextlib.suppress(Exception):
                planning.wait()
        raise
    if planning is not None:
        if report.stopped and not report.paused:  # Ctrl-C: the rest stays for later
            planning.stop()
        planning.wait()  # paused by an outage: the rest is planned for the next worker
    months = options.months or [s.month for s in ledger.list_sends(app.store)]
    statuses = [s for m in months if (s := send_state(app, m)) is not None]
    return SendResult(report, statuses)


def has_due(app: App) -> bool:
    """Whether any running send has a delivery due now (a retry whose time has come)."""
    return ledger.has_due(app.store)


def delivery_status(app: App, month: str) -> SendStatus:
    """The send of ``month`` with its counts (:class:`SendNotFoundError` if never planned)."""
    return ledger.send_status(app.store, month)


def list_deliveries(
    app: App, month: str, status: str | None = None, limit: int = 1000
) -> list[DeliveryRow]:
    """Delivery rows of one send."""
    ledger.send_status(app.store, month)  # a clear error for an unknown send
    return ledger.list_deliveries(app.store, month, status=status, limit=limit)


def delivery_page(
    app: App, month: str, *, after_id: int = 0, limit: int = 100, status: str | None = None
) -> list[tuple[int, DeliveryRow]]:
    """Up to ``limit`` deliveries of one send after the delivery id ``after_id``, each with
    its id (keyset paging: a row added by a later planning comes after those seen)."""
    ledger.send_status(app.store, month)  # a clear error for an unknown send
    return ledger.delivery_page(app.store, month, after_id, limit, status)


def list_sends(app: App) -> list[SendStatus]:
    """Every send that was planned, with its counts."""
    return ledger.list_sends(app.store)


def start(app: App, month: str) -> SendStatus:
    """Plan the send of ``month`` (as :func:`plan`) and return its state: a running
    worker or the scheduler then delivers it. :class:`SendFinishedError` for a send that
    is done or cancelled (it is not started again)."""
    state = send_state(app, month)
    if state is not None and state.finished:
        raise SendFinishedError(
            f"the send of {month} is {state.status} already",
            hint="a finished send is not started again",
        )
    plan(app, month)
    return ledger.send_status(app.store, month)


def cancel(app: App, month: str) -> SendStatus:
    """Cancel the send of ``month``: nothing more of it goes out (a message already on
    the wire finishes). Refused for a send that is done or cancelled already."""
    return ledger.cancel_send(app.store, month, app.now())


@dataclass(frozen=True)
class BounceReport:
    """The bounces of one send: counts by kind, rates and the warnings they call for."""

    counts: dict[str, int]
    attempted: int  # messages handed to the server (sent or failed)
    warnings: list[str]

    def rate(self, kind: str) -> float:
        """The share of attempted messages that bounced as ``kind``."""
        return self.counts.get(kind, 0) / self.attempted if self.attempted else 0.0


def bounce_report(app: App, month: str) -> BounceReport:
    """Bounce and complaint rates of the send of ``month`` (see rules.bounces.WARN_RATES)."""
    status = ledger.send_status(app.store, month)
    counts = bounce_store.counts_by_kind(app.store, status.send_id)
    attempted = status.counts.get("sent", 0) + status.counts.get("failed", 0)
    return BounceReport(counts, attempted, rate_warnings(counts, attempted))


def retry_failed(app: App, month: str, include_hard: bool = False) -> int:
    """Put the failed deliveries of ``month`` back in the queue (only on request); those
    refused with a hard bounce only with ``include_hard``."""
    return ledger.retry_failed(app.store, month, include_hard=include_hard)


@dataclass(frozen=True)
class TestSendResult:
    """What ``send-test`` sent."""

    to: str
    subject: str
    variant: str
    message_id: str
    status: str
    reply: str


def send_test(
    app: App,
    month: str,
    to: str,
    topics: str | None = None,
    subscriber: str | None = None,
) -> TestSendResult:
    """Send one test message of ``month`` to ``to`` (not recorded in the ledger).

    ``subscriber`` (an address in the store): the message that person would get, with
    their name, topics and working links (which act for them). Otherwise ``topics`` picks
    the variant a reader of those topics would get (default: all), and the links carry
    :data:`~newsletter.rules.personal.TEST_SUBSCRIBER_ID`: they open a page saying they
    came from a test. Drafts may be tested.
    """
    check_address("test address", to)
    issue = issues.load_issue(app, month)
    built = issues.build(app, issue)
    recipient = issues.preview_recipient(app, topics, subscriber)
    variant = built.variant_for(recipient.topics, recipient.all_topics)
    if variant is None:
        who = recipient.email if subscriber else "a subscriber of those topics"
        raise NewsletterError(
            f"{who} gets nothing from {issue.month}",
            hint="no_match_policy is 'skip'; choose topics that one of the summaries has",
        )
    template = build_message_template(
        variant,
        app.settings,
        issue_month=issue.month,
        test=True,
        summary_topics=variant.summary_topics,
    )
    if subscriber:
        person = recipient  # their own name, address, topics and links
    else:
        person = Recipient(
            email=to,
            subscriber_id=TEST_SUBSCRIBER_ID,
            topics=recipient.topics,
            all_topics=recipient.all_topics,
        )
    # The To: line names the test address only, never the subscriber's name.
    msg = assemble_test(template, to, name="", recipient=person)
    outcome = app.transport.send(msg)
    return TestSendResult(
        to, template.subject, variant.name, msg.message_id, outcome.status, outcome.reply
    )
