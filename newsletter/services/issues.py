"""The author's issues: check, list, read, preview as a reader, variants, the public archive.

An issue file is parsed here (:func:`load_issue`) and its variants rendered here
(:func:`build`); a send parses and renders once, at planning (see
:mod:`newsletter.services.sends`), and keeps the result in its snapshot.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from newsletter.browser import screenshot
from newsletter.content.files import (
    AcceptedFile,
    CheckedFile,
    IssueInfo,
    check_issues,
    get_issue,
    new_issue_file,
    plan_acceptance,
)
from newsletter.content.files import list_issues as list_issue_files
from newsletter.content.model import Issue, Summary
from newsletter.content.parser import find_issue_files
from newsletter.content.taxonomy import means_all_topics, resolve_topics
from newsletter.delivery.personalise import Recipient, recipient_values
from newsletter.errors import NewsletterError
from newsletter.render import BuiltIssue, NoMatchingVariantError, Variant, build_issue
from newsletter.rules.months import looks_like_month
from newsletter.rules.schedules import month_of, parse_monthly_rule
from newsletter.rules.variants import VariantKey
from newsletter.services.app import App
from newsletter.store import ledger, schedules
from newsletter.store import subscribers as subscriber_store
from newsletter.store.errors import StoreError
from newsletter.store.views import IssueStats

# Gmail clips messages whose HTML is larger than this ("[Message clipped]").
HTML_SIZE_LIMIT = 102 * 1024
PREVIEW_NAME = "Alex Example"
PREVIEW_EMAIL = "preview@example.org"
# Values of typical length, to measure a variant as subscribers will receive it.
SAMPLE_RECIPIENT = Recipient(
    email="alex.example@example.org",
    subscriber_id=123456,
    name="Alex Example",
    topics=(
        "alliance-and-therapeutic-relationship",
        "empathy",
        "depression-and-depressive-symptoms",
    ),
)


class SendRefusedError(NewsletterError):
    """The issue may not be sent (a draft, a published back issue, an invalid file)."""


# --- reading issue files -----------------------------------------------------------------


def load_issue(app: App, month: str) -> Issue:
    """The valid issue of ``month`` (YYYY-MM, or a path to a file), or a clear error."""
    return get_issue(app.settings.issues_dir, month)


def check_sendable(issue: Issue) -> Issue:
    """``issue`` if it may be sent (``status: ready``); :class:`SendRefusedError` if not."""
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


def load_sendable(app: App, month: str) -> Issue:
    """The issue of ``month`` if it may be sent: valid and marked ``status: ready``."""
    return check_sendable(load_issue(app, month))


def resolve_path(app: App, path: Path) -> Path:
    """A path given on the command line; a month (2026-12) means its file in issues/."""
    if looks_like_month(str(path)) and not path.exists():
        return app.settings.issues_dir / f"{path}.md"
    return path


def check(app: App, paths: Iterable[Path] = ()) -> list[CheckedFile]:
    """Check the given files (months allowed), or every file of the issues folder."""
    resolved = [resolve_path(app, p) for p in paths]
    return check_issues(resolved, app.settings.issues_dir)


def accept_suggestions(
    app: App, paths: Iterable[Path] = (), *, every_file: bool = False
) -> list[AcceptedFile]:
    """Confirm the archive import's suggested topics and research types.

    ``paths`` are files or months; with ``every_file``, every file of the issues folder.
    Returns one entry per file looked at (``lines`` is 0 where there was nothing to
    accept). Every file is checked before any is written: if one would not parse
    afterwards (:class:`~newsletter.errors.IssueFormatError`), none changes.
    """
    targets = [resolve_path(app, p) for p in paths]
    if every_file:
        targets += [p for p in find_issue_files(app.settings.issues_dir) if p not in targets]
    if not targets:
        raise NewsletterError(
            "no issue files given", hint="name a month (2026-12) or a file, or use --all"
        )
    planned = [plan_acceptance(p) for p in targets]
    for f in planned:
        f.write()
    return planned


def new_issue(app: App, month: str) -> Path:
    """Write a commented skeleton for ``month``; never overwrites an existing file."""
    return new_issue_file(app.settings.issues_dir, month)


@dataclass(frozen=True)
class IssueState:
    """What ``issue list`` adds to a file's status: when it is scheduled, how far it got."""

    scheduled: dt.datetime | None = None  # the next scheduled send
    monthly: bool = False  # ... by the monthly rule (not a one-off)
    send_status: str | None = None  # planned | sending | paused | done | cancelled
    sent: int = 0


@dataclass(frozen=True)
class IssueListing:
    """The issue files, newest first, and (when there is a store) their send states."""

    issues: list[IssueInfo]
    states: dict[str, IssueState]  # empty without a usable store


def list_issues(app: App) -> IssueListing:
    """Every issue file, valid or not, with when it is scheduled and how far its send got."""
    infos = list_issue_files(app.settings.issues_dir)
    return IssueListing(infos, _issue_states(app, [i.month for i in infos]))


def _issue_states(app: App, months: list[str]) -> dict[str, IssueState]:
    try:
        store = app.store
        planned = {r.month: r for r in schedules.list_schedules(store, ["scheduled"])}
        sends = {s.month: s for s in ledger.list_sends(store)}
    except NewsletterError:
        return {}  # no store yet, or unreachable: file status only
    settings = app.settings
    monthly_next: dt.datetime | None = None
    if settings.monthly_schedule.strip():
        with contextlib.suppress(NewsletterError):
            rule = parse_monthly_rule(settings.monthly_schedule, settings.timezone)
            monthly_next = rule.next_time(app.now())
    out: dict[str, IssueState] = {}
    for month in months:
        when, monthly = None, False
        if month in planned:
            when = planned[month].run_at
        elif monthly_next is not None and month_of(monthly_next, settings.timezone) == month:
            when, monthly = monthly_next, True
        st = sends.get(month)
        out[month] = IssueState(
            scheduled=when,
            monthly=monthly,
            send_status=st.status if st else None,
            sent=st.sent if st else 0,
        )
    return out


# --- rendering and previews --------------------------------------------------------------


def build(app: App, issue: Issue) -> BuiltIssue:
    """Render every variant of ``issue`` once with this app's settings and templates."""
    return build_issue(issue, app.settings)


def preview_recipient(
    app: App, topics: str | None = None, subscriber: str | None = None
) -> Recipient:
    """Whom to preview as: a subscriber from the store, or a reader of ``topics``.

    ``topics`` is ``"a; b"`` or ``"all"``; neither given means a reader of every topic.
    """
    if subscriber:
        view = subscriber_store.get_subscriber(app.store, subscriber)
        return Recipient(
            email=view.email,
            subscriber_id=view.id,
            name=view.name,
            topics=view.topics,
            all_topics=view.all_topics,
        )
    if topics is None or not topics.strip() or means_all_topics(topics):
        return Recipient(PREVIEW_EMAIL, name=PREVIEW_NAME, all_topics=True)
    return Recipient(PREVIEW_EMAIL, name=PREVIEW_NAME, topics=tuple(resolve_topics(topics)))


def variant_for(built: BuiltIssue, recipient: Recipient) -> Variant:
    """The variant ``recipient`` gets; a clear error when the policy sends them nothing."""
    variant = built.variant_for(recipient.topics, recipient.all_topics)
    if variant is None:
        raise NoMatchingVariantError(
            f"no summary of {built.issue.month} is on these topics; with no_match_policy = "
            f"{built.policy} such a subscriber gets no email",
            hint="preview another set of topics, or try --set no_match_policy=teaser",
        )
    return variant


@dataclass(frozen=True)
class PersonalMessage:
    """One recipient's subject, HTML and text, as they would get it."""

    subject: str
    html: str
    text: str


def personalise(app: App, variant: Variant, recipient: Recipient) -> PersonalMessage:
    """``variant`` filled in for ``recipient``."""
    values = recipient_values(app.settings, recipient, variant.web_view_url, variant.summary_topics)
    return PersonalMessage(variant.subject, variant.html.fill(values), variant.text.fill(values))


@dataclass(frozen=True)
class PreviewFiles:
    """What :func:`write_preview` wrote."""

    variant: Variant
    message: PersonalMessage
    html_path: Path
    text_path: Path
    screenshots: list[Path] = field(default_factory=list)


def write_preview(
    app: App,
    month: str,
    topics: str | None = None,
    subscriber: str | None = None,
    out_dir: Path = Path("preview"),
    png: bool = False,
) -> PreviewFiles:
    """Write the HTML and text one recipient would get to ``out_dir`` (and screenshots)."""
    built = build(app, load_issue(app, month))
    recipient = preview_recipient(app, topics, subscriber)
    variant = variant_for(built, recipient)
    message = personalise(app, variant, recipient)
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    stem = f"{built.issue.month}-{variant.name}"
    html_path = out_dir / f"{stem}.html"
    text_path = out_dir / f"{stem}.txt"
    # With --subscriber these hold a real person's name and working signed links.
    _write_private(html_path, message.html)
    _write_private(text_path, message.text)
    shots = screenshot(html_path, out_dir / stem) if png else []
    return PreviewFiles(variant, message, html_path, text_path, shots)


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` (replacing it), readable by its owner only (0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an older preview file may have been made readable by others
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


@dataclass(frozen=True)
class LivePreview:
    """One variant of an issue as the preview server shows it."""

    built: BuiltIssue
    variant: Variant
    message: PersonalMessage


def live_preview(app: App, month: str, variant_name: str = "all") -> LivePreview:
    """Read the issue file again and render it: what the preview server shows on a reload."""
    built = build(app, load_issue(app, month))
    variant = built.by_name(variant_name)
    return LivePreview(built, variant, personalise(app, variant, preview_recipient(app)))


def sample_values(app: App, variant: Variant) -> dict[str, str]:
    """Field values of a typical recipient, to measure or preview a variant."""
    return recipient_values(
        app.settings, SAMPLE_RECIPIENT, variant.web_view_url, variant.summary_topics
    )


def html_size(app: App, variant: Variant) -> int:
    """Bytes of the variant's HTML as a typical recipient receives it."""
    return len(variant.html.fill_bytes(sample_values(app, variant)))


@dataclass(frozen=True)
class VariantInfo:
    """One line of ``issue variants``."""

    name: str
    keys: list[str]
    titles: list[str]
    subject: str
    html_bytes: int
    text_bytes: int
    subscribers: int | None = None  # who would get it now (None: no subscriber store)

    @property
    def html_kb(self) -> float:
        """HTML size in KB (1024 bytes)."""
        return self.html_bytes / 1024

    @property
    def too_big(self) -> bool:
        """True when Gmail would clip the message."""
        return self.html_bytes >= HTML_SIZE_LIMIT


def list_variants(app: App, month: str) -> list[VariantInfo]:
    """Every variant of the issue of ``month`` with its summaries and sizes."""
    built = build(app, load_issue(app, month))
    counts = _subscriber_counts(app, built)
    out = []
    for v in built.variants.values():
        values = sample_values(app, v)
        out.append(
            VariantInfo(
                name=v.name,
                keys=[s.key for s in v.summaries],
                titles=[s.title for s in v.summaries],
                subject=v.subject,
                html_bytes=len(v.html.fill_bytes(values)),
                text_bytes=len(v.text.fill_bytes(values)),
                subscribers=None if counts is None else counts.get(v.name, 0),
            )
        )
    return out


def _subscriber_counts(app: App, built: BuiltIssue) -> dict[str, int] | None:
    """Receiving subscribers per variant name, or None when there is no store yet."""
    try:
        store = app.store
    except StoreError:
        return None
    by_mask, _ = ledger.preview_plan(store, built.issue.summary_topics, built.policy, app.today())
    k = len(built.issue.summaries)
    return {VariantKey(mask, k).name: n for mask, n in by_mask.items()}


def audience(app: App, month: str) -> IssueStats:
    """How many receiving subscribers would get 0, 1, 2, ... of the issue's summaries."""
    issue = load_issue(app, month)
    return subscriber_store.issue_stats(
        app.store,
        issue.month,
        [s.title for s in issue.summaries],
        issue.summary_topics,
        app.today(),
    )


# --- the public archive ------------------------------------------------------------------


def public_issues(app: App) -> list[Issue]:
    """Issues the public may see, newest first: published back issues and sent issues.

    Drafts, ready-but-unsent issues and invalid files never appear.
    """
    sent = set(ledger.public_months(app.store))
    return sorted(
        (i for i in app.library.issues().values() if i.status == "published" or i.month in sent),
        key=lambda i: i.month,
        reverse=True,
    )


def archive_version(app: App) -> tuple[object, ...]:
    """What the public archive's pages depend on: the issue files (names, sizes, times)
    and the months sent. Equal versions give equal pages."""
    return (app.library.fingerprint(), ledger.public_months(app.store))


def public_issue(app: App, month: str) -> Issue | None:
    """The public issue of ``month``, or None (not public, or no such month)."""
    for issue in public_issues(app):
        if issue.month == month:
            return issue
    return None


@dataclass(frozen=True)
class ArchiveEntry:
    """One public issue with the summaries that pass the current filter."""

    issue: Issue
    summaries: tuple[Summary, ...]


def archive(app: App, topic: str | None = None, research: str | None = None) -> list[ArchiveEntry]:
    """The public issues with at least one summary on ``topic`` of type ``research``."""
    out = []
    for issue in public_issues(app):
        chosen = tuple(
            s
            for s in issue.summaries
            if (topic is None or topic in s.topic_slugs)
            and (research is None or (s.research is not None and s.research.slug == research))
        )
        if chosen:
            out.append(ArchiveEntry(issue, chosen))
    return out


def recent_summaries(
    app: App, topics: Iterable[str], all_topics: bool, limit: int = 3
) -> list[tuple[Issue, Summary]]:
    """The newest ``limit`` public summaries on a subscriber's topics."""
    wanted = set(topics)
    out: list[tuple[Issue, Summary]] = []
    for issue in public_issues(app):
        for s in issue.summaries:
            if all_topics or s.topic_slugs & wanted:
                out.append((issue, s))
                if len(out) >= limit:
                    return out
    return out
