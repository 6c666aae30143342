"""The views of the JSON API: each parses nothing itself (its declaration does), calls
one service with the app and turns the result into its response model.

Writes pass ``source="cli"`` to the services: the consent log's sources are a fixed list
checked by the database, and an API client acts for an administrator as the CLI does;
the server's log names the token of every write.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Sequence
from typing import Any

from flask import Response, jsonify, request

from newsletter.content.taxonomy import load_taxonomy
from newsletter.errors import UnknownTopicError
from newsletter.rules.months import check_month
from newsletter.services import issues, reports, sends, signup, subscribers
from newsletter.services.subscribers import SubscriberChange
from newsletter.web.api import schemas as s
from newsletter.web.api.openapi import build_openapi
from newsletter.web.api.problems import ApiProblem
from newsletter.web.api.registry import ROUTES, endpoint
from newsletter.web.context import web

SOURCE = "cli"


# --- cursors -----------------------------------------------------------------------------
# A cursor is the last id of a page, with a letter saying what it pages over, in
# base64url: opaque to clients (the encoding may change), and stable while rows are added,
# since new rows get higher ids.


def make_cursor(kind: str, last_id: int) -> str:
    """The opaque cursor after the row ``last_id`` of a listing of ``kind``."""
    return base64.urlsafe_b64encode(f"{kind}{last_id}".encode()).decode().rstrip("=")


def read_cursor(kind: str, cursor: str | None) -> int:
    """The id a cursor of a ``kind`` listing stands after (0: from the start); a 400
    problem for a cursor this listing did not give out."""
    if not cursor:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    if text.startswith(kind) and text[len(kind) :].isdigit() and len(text) < 24:
        return int(text[len(kind) :])
    raise ApiProblem(
        400,
        "validation",
        "cursor: not a cursor of this listing",
        hint="pass back the next_cursor of the previous page unchanged",
        errors=[{"detail": "not a cursor of this listing", "parameter": "cursor"}],
    )


# --- converters --------------------------------------------------------------------------


def subscriber_out(sub: subscribers.SubscriberView) -> s.Subscriber:
    """The API's form of a subscriber."""
    return s.Subscriber(
        id=sub.id,
        email=sub.email,
        name=sub.name,
        status=sub.status,  # type: ignore[arg-type]  # one of SUBSCRIBER_STATUSES
        all_topics=sub.all_topics,
        topics=list(sub.topics),
        paused_until=sub.paused_until,
        source=sub.source,
        created_at=sub.created_at,
        confirmed_at=sub.confirmed_at,
        unsubscribed_at=sub.unsubscribed_at,
    )


def send_out(st: sends.SendStatus) -> s.SendStatus:
    """The API's form of a send's state."""
    return s.SendStatus(
        month=st.month,
        status=st.status,  # type: ignore[arg-type]  # one of SEND_STATUSES
        subject=st.subject,
        created_at=st.created_at,
        started_at=st.started_at,
        finished_at=st.finished_at,
        paused_reason=st.paused_reason,
        finished=st.finished,
        total=st.total,
        outstanding=st.outstanding,
        sent=st.sent,
        retrying=st.retrying,
        counts=dict(st.counts),
        skipped=dict(st.skipped),
    )


def _by_id(subscriber_id: int) -> subscribers.SubscriberView:
    return subscribers.get_subscriber_by_id(web().app, subscriber_id)


def _topics(names: Sequence[str] | None) -> tuple[str, ...]:
    return tuple(names) if names is not None else ()


# --- the description ---------------------------------------------------------------------


@endpoint("GET", "/openapi.json", tag="meta", auth=False)
def openapi_json() -> Response:
    """Get this description of the API (OpenAPI 3.1).

    No token is needed: it holds nothing secret.
    """
    return jsonify(build_openapi(ROUTES, web().settings.base_url))


# --- subscribers -------------------------------------------------------------------------


@endpoint(
    "GET",
    "/subscribers",
    tag="subscribers",
    query=s.SubscriberQuery,
    response=s.SubscriberPage,
    errors=(422,),
)
def list_subscribers(token: Any, query: s.SubscriberQuery) -> s.SubscriberPage:
    """List subscribers, oldest first, one page at a time.

    Filter by status, topic (slug or name; all-topics subscribers match every topic) and
    creation time. Pass next_cursor back as cursor for the next page: rows added
    meanwhile come at the end, so no row is shown twice or skipped.
    """
    since = query.created_since
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=dt.UTC)
    try:
        page = subscribers.list_after(
            web().app,
            after_id=read_cursor("s", query.cursor),
            limit=query.limit,
            topic=query.topic,
            status=query.status,
            created_since=since,
        )
    except UnknownTopicError as exc:
        raise ApiProblem(
            422,
            "unprocessable",
            exc.message,
            hint=exc.hint,
            errors=[{"detail": exc.message, "parameter": "topic"}],
        ) from None
    items = [subscriber_out(v) for v in page.items]
    following = make_cursor("s", page.items[-1].id) if page.more and page.items else None
    return s.SubscriberPage(items=items, next_cursor=following)


@endpoint(
    "POST",
    "/subscribers",
    tag="subscribers",
    body=s.SubscriberCreate,
    response=s.Subscriber,
    status=201,
    write=True,
    errors=(409,),
)
def create_subscriber(token: Any, body: s.SubscriberCreate) -> Any:
    """Add a subscriber.

    With double_opt_in they are added as pending and sent a confirmation link; they
    receive nothing until they confirm. 409 when the address is on the list already, or
    was erased or complained (pass resubscribe only when they asked to come back).
    """
    app = web().app
    topics = _topics(body.topics)
    view = subscribers.add_subscriber(
        app,
        body.email,
        name=body.name,
        topics=topics,
        all_topics=None if topics else True,
        pending=body.double_opt_in,
        source=SOURCE,
        consent_version=app.settings.consent_version or None,
        resubscribe=body.resubscribe,
    )
    if body.double_opt_in and view.status == "pending":
        # Mailed after the answer, like the sign-up form's confirmation.
        web().submit(lambda: signup.send_confirmation(app, view))
    return subscriber_out(view), {"Location": f"{request.script_root}/api/v1/subscribers/{view.id}"}


@endpoint("GET", "/subscribers/{subscriber_id}", tag="subscribers", response=s.Subscriber)
def get_subscriber(token: Any, subscriber_id: int) -> s.Subscriber:
    """Get one subscriber."""
    return subscriber_out(_by_id(subscriber_id))


@endpoint(
    "PATCH",
    "/subscribers/{subscriber_id}",
    tag="subscribers",
    body=s.SubscriberUpdate,
    response=s.Subscriber,
    write=True,
    errors=(409,),
)
def update_subscriber(token: Any, subscriber_id: int, body: s.SubscriberUpdate) -> s.Subscriber:
    """Change a subscriber's name, topics or status.

    Everything is checked before anything is written: a refused change leaves the
    subscriber as they were. status active confirms a pending subscriber, resumes a
    paused one or brings back one who unsubscribed; paused takes paused_until.
    """
    if not body.model_fields_set:
        raise ApiProblem(
            400,
            "validation",
            "the body changes nothing",
            hint="send at least one of name, topics, all_topics, status",
            errors=[{"detail": "no member to change", "pointer": "#"}],
        )
    change = SubscriberChange(
        name=body.name,
        topics=tuple(body.topics) if body.topics is not None else None,
        all_topics=body.all_topics,
        status=body.status,
        paused_until=body.paused_until,
    )
    sub = _by_id(subscriber_id)
    return subscriber_out(
        subscribers.update_subscriber(web().app, sub.email, change, source=SOURCE)
    )


@endpoint(
    "POST",
    "/subscribers/{subscriber_id}/unsubscribe",
    tag="subscribers",
    response=s.Subscriber,
    write=True,
)
def unsubscribe_subscriber(token: Any, subscriber_id: int) -> s.Subscriber:
    """Unsubscribe a subscriber at once.

    Their queued mail is skipped, also of a send in progress. Unsubscribing twice is
    harmless.
    """
    sub = _by_id(subscriber_id)
    view, _changed = subscribers.unsubscribe(web().app, sub.email, source=SOURCE)
    return subscriber_out(view)


@endpoint(
    "DELETE", "/subscribers/{subscriber_id}", tag="subscribers", response=s.Erasure, write=True
)
def erase_subscriber(token: Any, subscriber_id: int) -> s.Erasure:
    """Erase a subscriber: their data and consent history are deleted.

    Only a salted hash of the address stays, on the suppression list, so they are not
    added again by mistake.
    """
    sub = _by_id(subscriber_id)
    erasure = subscribers.erase(web().app, sub.email, source=SOURCE)
    return s.Erasure(email=erasure.email, erased=True, log_cleared=erasure.log_cleared)


# --- topics and counts -------------------------------------------------------------------


@endpoint("GET", "/topics", tag="topics", response=s.TopicList)
def list_topics(token: Any) -> s.TopicList:
    """List the 36 topics with how many receiving subscribers chose each."""
    counts = subscribers.topic_counts(web().app)
    by_topic = counts.by_topic if counts is not None else {}
    items = [
        s.Topic(slug=t.slug, name=t.name, subscribers=by_topic.get(t.slug, 0))
        for t in load_taxonomy()
    ]
    return s.TopicList(items=items, all_topics=counts.all_topics if counts is not None else 0)


@endpoint("GET", "/stats", tag="stats", response=s.Stats)
def get_stats(token: Any) -> s.Stats:
    """Counts: subscribers by status, receiving subscribers by topic, each send."""
    app = web().app
    st = subscribers.stats(app)
    return s.Stats(
        subscribers=s.SubscriberCounts(
            total=st.total,
            by_status=dict(st.by_status),
            receiving=st.receiving,
            all_topics=st.all_topics,
        ),
        topics=dict(st.by_topic),
        sends=[
            s.SendCounts(
                month=x.month,
                status=x.status,  # type: ignore[arg-type]  # one of SEND_STATUSES
                sent=x.sent,
                outstanding=x.outstanding,
                total=x.total,
            )
            for x in sends.list_sends(app)
        ],
    )


@endpoint("GET", "/report", tag="stats", query=s.ReportQuery, response=s.Report)
def get_report(token: Any, query: s.ReportQuery) -> s.Report:
    """The figures of `newsletter report` (the same numbers as its --json)."""
    return s.Report.model_validate(reports.build(web().app, query.since).to_dict())


# --- issues ------------------------------------------------------------------------------


@endpoint("GET", "/issues", tag="issues", response=s.IssueList)
def list_issues(token: Any) -> s.IssueList:
    """List the issue files, newest first, with how far each one's send got."""
    listing = issues.list_issues(web().app)
    items = []
    for info in listing.issues:
        state = listing.states.get(info.month)
        issue = info.issue
        items.append(
            s.IssueListItem(
                month=info.month,
                valid=issue is not None,
                errors=info.errors,
                warnings=info.warnings,
                status=issue.status if issue else None,
                subject=issue.effective_subject if issue else None,
                summaries=len(issue.summaries) if issue else 0,
                send_status=state.send_status if state else None,  # type: ignore[arg-type]
                sent=state.sent if state else 0,
            )
        )
    return s.IssueList(items=items)


@endpoint("GET", "/issues/{month}", tag="issues", response=s.Issue, errors=(409,))
def get_issue(token: Any, month: str) -> s.Issue:
    """Get one issue, parsed: its subject, introduction and summaries.

    409 when the file has errors (`newsletter issue check` lists them).
    """
    issue = issues.load_issue(web().app, _month(month))
    return s.Issue(
        month=issue.month,
        status=issue.status,
        subject=issue.effective_subject,
        intro=issue.intro,
        summaries=[
            s.IssueSummary(
                key=x.key,
                title=x.title,
                topics=[t.slug for t in x.topics],
                research=x.research.name if x.research else None,
                citation=x.citation,
                link=x.link,
                body=x.body,
                implications=x.implications,
            )
            for x in issue.summaries
        ],
    )


@endpoint("GET", "/issues/{month}/variants", tag="issues", response=s.VariantList, errors=(409,))
def list_variants(token: Any, month: str) -> s.VariantList:
    """List an issue's variants with how many subscribers would get each now."""
    month = _month(month)
    items = [
        s.Variant(
            name=v.name,
            summaries=v.keys,
            titles=v.titles,
            subject=v.subject,
            subscribers=v.subscribers,
            html_bytes=v.html_bytes,
            text_bytes=v.text_bytes,
        )
        for v in issues.list_variants(web().app, month)
    ]
    return s.VariantList(month=month, items=items)


def _month(month: str) -> str:
    """A path's month, refused unless it names a real month (the rule's message)."""
    return check_month(month)


# --- sends -------------------------------------------------------------------------------


@endpoint("GET", "/sends", tag="sends", response=s.SendList)
def list_sends(token: Any) -> s.SendList:
    """List every planned send with its counts, newest month first."""
    return s.SendList(items=[send_out(x) for x in sends.list_sends(web().app)])


@endpoint("GET", "/sends/{month}", tag="sends", response=s.SendStatus)
def get_send(token: Any, month: str) -> s.SendStatus:
    """Get the status of the send of an issue, with the counts of its deliveries."""
    return send_out(sends.delivery_status(web().app, _month(month)))


@endpoint(
    "GET", "/sends/{month}/deliveries", tag="sends", query=s.DeliveryQuery, response=s.DeliveryPage
)
def list_deliveries(token: Any, month: str, query: s.DeliveryQuery) -> s.DeliveryPage:
    """List the deliveries of a send, one page at a time (see next_cursor)."""
    rows = sends.delivery_page(
        web().app,
        _month(month),
        after_id=read_cursor("d", query.cursor),
        limit=query.limit + 1,
        status=query.status,
    )
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    items = [
        s.Delivery(
            id=i,
            email=r.email,
            status=r.status,  # type: ignore[arg-type]  # one of DELIVERY_STATUSES
            variant=r.variant,
            attempts=r.attempts,
            skip_reason=r.skip_reason,
            last_reply=r.last_reply,
            message_id=r.message_id,
            sent_at=r.sent_at,
            next_attempt_at=r.next_attempt_at,
        )
        for i, r in rows
    ]
    following = make_cursor("d", rows[-1][0]) if more and rows else None
    return s.DeliveryPage(items=items, next_cursor=following)


@endpoint(
    "POST",
    "/sends/{month}/start",
    tag="sends",
    response=s.SendStatus,
    status=202,
    write=True,
    errors=(409, 422),
)
def start_send(token: Any, month: str) -> s.SendStatus:
    """Start the send of an issue: plan it (once) and queue every receiving subscriber.

    The issue must be 'status: ready'. A running `newsletter worker` (or the
    scheduler) delivers the queued messages. Starting again adds only people who joined
    since; 409 for a send that is done or cancelled.
    """
    return send_out(sends.start(web().app, _month(month)))


@endpoint(
    "POST", "/sends/{month}/cancel", tag="sends", response=s.SendStatus, write=True, errors=(409,)
)
def cancel_send(token: Any, month: str) -> s.SendStatus:
    """Cancel a send: every message not on the wire yet is skipped.

    A message already being handed to the mail server finishes. 409 for a send that is
    done or cancelled already.
    """
    return send_out(sends.cancel(web().app, _month(month)))
