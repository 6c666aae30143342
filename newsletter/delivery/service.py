"""What the ``send``, ``send-test``, ``worker`` and ``deliveries`` commands call.

Each function opens what it needs (store, transport), does one job and returns plain
data for the CLI to print.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from newsletter.errors import NewsletterError
from newsletter.store.db import open_store

if TYPE_CHECKING:
    from newsletter.config import Settings
    from newsletter.content.model import Issue
    from newsletter.delivery.worker import WorkerOptions, WorkerReport
    from newsletter.store.ledger import SendStatus


class SendRefusedError(NewsletterError):
    """The issue may not be sent (a draft, a published back issue, an invalid file)."""


def variant_name(mask: int, summaries: int) -> str:
    """The variant's name as the render stage shows it: ``all``, ``s1+s3``, ``teaser``."""
    if mask == 0:
        return "teaser"
    if mask == (1 << summaries) - 1:
        return "all"
    return "+".join(f"s{i + 1}" for i in range(summaries) if mask & (1 << i))


@dataclass(frozen=True)
class SendPreview:
    """What a send of an issue looks like before it goes: rows per variant, skips."""

    issue: Issue
    status: str  # "new" (not planned yet), or the send's status
    variants: dict[str, int]  # variant name -> recipients (still to send or sent)
    skipped: dict[str, int]
    outstanding: int  # messages still to send
    sent: int = 0


@dataclass
class SendResult:
    """What one ``send`` or ``worker`` run did, with the send's counts after it."""

    report: WorkerReport
    statuses: list[SendStatus] = field(default_factory=list)


def load_sendable_issue(settings: Settings, month: str) -> Issue:
    """The issue of ``month`` if it may be sent: valid and marked ``status: ready``."""
    from newsletter.content.files import get_issue

    issue = get_issue(settings.issues_dir, month)
    if issue.status == "draft":
        raise SendRefusedError(
            f"{issue.month} is a draft",
            hint=f"set 'status: ready' in {issue.path} when it may be sent",
        )
    if issue.status == "published":
        raise SendRefusedError(
            f"{issue.month} is a published back issue (imported from the archive)",
            hint="back issues are shown in the web archive and never sent",
        )
    return issue


def preview_send(settings: Settings, month: str) -> SendPreview:
    """Counts per variant of the send of ``month``, planned or not (changes nothing)."""
    from newsletter.store import ledger

    issue = load_sendable_issue(settings, month)
    k = len(issue.summaries)
    with open_store(settings) as store:
        if ledger.find_send(store, issue.month) is None:
            variants, skipped = ledger.preview_plan(store, issue, settings.no_match_policy)
            names = {variant_name(m, k): n for m, n in sorted(variants.items())}
            return SendPreview(issue, "new", names, skipped, sum(variants.values()))
        st = ledger.send_status(store, issue.month)
        names = {variant_name(m, k): sum(c.values()) for m, c in sorted(st.variants.items())}
        return SendPreview(
            issue, st.status, names, st.skipped, st.outstanding, st.counts.get("sent", 0)
        )


def plan_issue_send(settings: Settings, month: str) -> SendPreview:
    """Plan the send of ``month`` (idempotent) and return its counts."""
    from newsletter.render.build import build_issue
    from newsletter.store import ledger

    issue = load_sendable_issue(settings, month)
    # Build once before planning: a broken template or a missing postal address stops
    # here, before anyone is queued.
    settings.require("sender_address", "to send")
    build_issue(issue, settings)
    with open_store(settings) as store:
        ledger.plan_send(store, issue, settings.no_match_policy)
    return preview_send(settings, month)


def run_worker(
    settings: Settings,
    options: WorkerOptions,
    on_progress: Callable[[WorkerReport], None] | None = None,
    stop: threading.Event | None = None,
) -> SendResult:
    """Drain due deliveries (of ``options.months`` or every running send)."""
    from newsletter.delivery.transports import open_transport
    from newsletter.delivery.worker import DeliveryWorker
    from newsletter.store import ledger

    with open_store(settings) as store:
        transport = open_transport(settings)
        try:
            worker = DeliveryWorker(settings, store, transport, options, on_progress, stop)
            report = worker.run()
        finally:
            transport.close()
        months = options.months or [s.month for s in ledger.list_sends(store)]
        statuses = [ledger.send_status(store, m) for m in months if ledger.find_send(store, m)]
    return SendResult(report, statuses)


def delivery_status(settings: Settings, month: str) -> SendStatus:
    """The send of ``month`` with its counts."""
    from newsletter.store import ledger

    with open_store(settings) as store:
        return ledger.send_status(store, month)


def list_deliveries(
    settings: Settings, month: str, status: str | None = None, limit: int = 1000
) -> list:
    """Delivery rows of one send."""
    from newsletter.store import ledger

    with open_store(settings) as store:
        ledger.send_status(store, month)  # a clear error for an unknown send
        return ledger.list_deliveries(store, month, status=status, limit=limit)


def retry_failed(settings: Settings, month: str) -> int:
    """Put the failed deliveries of ``month`` back in the queue."""
    from newsletter.store import ledger

    with open_store(settings) as store:
        return ledger.retry_failed(store, month)


@dataclass(frozen=True)
class TestSendResult:
    """What ``send-test`` sent."""

    to: str
    subject: str
    variant: str
    message_id: str
    status: str
    reply: str


def send_test(settings: Settings, month: str, to: str, topics: str | None = None) -> TestSendResult:
    """Send one test message of ``month`` to ``to`` (not recorded in the ledger).

    ``topics`` picks the variant a subscriber of those topics would get (default: all).
    Drafts may be tested.
    """
    from newsletter.content.files import get_issue
    from newsletter.content.taxonomy import load_taxonomy
    from newsletter.delivery.message import assemble_test, build_message_template
    from newsletter.delivery.transports import open_transport
    from newsletter.render.build import build_issue
    from newsletter.render.personalise import RecipientFields

    issue = get_issue(settings.issues_dir, month)
    built = build_issue(issue, settings)
    slugs = [t.slug for t in load_taxonomy().resolve_list(topics)] if topics else []
    variant = built.variant_for(slugs, all_topics=not slugs)
    if variant is None:
        raise NewsletterError(
            f"a subscriber of those topics gets nothing from {issue.month}",
            hint="no_match_policy is 'skip'; choose topics that one of the summaries has",
        )
    template = build_message_template(variant, settings, issue_month=issue.month, test=True)
    person = RecipientFields(email=to, subscriber_id=0, topics=tuple(slugs), all_topics=not slugs)
    msg = assemble_test(template, to, recipient=person)
    sender = settings.require("sender_address", "to send")
    if not msg.envelope_from:
        msg = msg._replace(envelope_from=sender)
    transport = open_transport(settings)
    try:
        outcome = transport.send(msg)
    finally:
        transport.close()
    return TestSendResult(
        to, template.subject, variant.name, msg.message_id, outcome.status, outcome.reply
    )
