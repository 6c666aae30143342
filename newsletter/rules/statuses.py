"""Statuses and how they change: subscribers, sends and deliveries.

Subscribers::

    pending --confirm--> active --pause--> paused --resume--> active
       any --unsubscribe--> unsubscribed --resubscribe--> pending | active

A pause with an end date lapses by itself: from that day the person receives again
without anyone running ``resume`` (:func:`is_receiving`). The store's SQL for planning a
send is built from the same constants (:data:`RECEIVING`, :data:`LAPSING`), and a test
checks that both agree.

Each transition function takes the current state and returns a :class:`StatusChange`
(what to write and which consent event to log), or raises :class:`SubscriberStateError`
saying why the change does not fit. The store applies a change in one transaction.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from newsletter.errors import NewsletterError

# --- subscribers -------------------------------------------------------------------------

SUBSCRIBER_STATUSES = ("pending", "active", "paused", "unsubscribed", "bounced")
SOURCES = ("cli", "import", "web")
#: Where a consent event can come from: the sources of subscribers, and the delivery of
#: mail (a bounce; later a complaint).
EVENT_SOURCES = (*SOURCES, "delivery")
EVENTS = (
    "subscribed",
    "confirmed",
    "topics_changed",
    "paused",
    "resumed",
    "unsubscribed",
    "resubscribed",
    "erased",
    "bounced",
    "reactivated",
    "renamed",
    "email_changed",
)
#: The status whose holders receive every issue.
RECEIVING = "active"
#: The status whose holders receive again once ``paused_until`` has come.
LAPSING = "paused"


class SubscriberStateError(NewsletterError):
    """The operation does not fit the subscriber's current status."""


class BadDateError(NewsletterError):
    """A date given for a change (e.g. the end of a pause) cannot be used."""


def is_receiving(status: str, paused_until: dt.date | None, today: dt.date) -> bool:
    """True when a subscriber in this state gets the issue sent ``today``.

    Active subscribers, and paused ones whose pause ended on or before ``today``.
    """
    return status == RECEIVING or (
        status == LAPSING and paused_until is not None and paused_until <= today
    )


def is_subscribed(status: str) -> bool:
    """True while a person is on the list (not unsubscribed, not bounced)."""
    return status in ("pending", "active", "paused")


@dataclass(frozen=True)
class StatusChange:
    """A new status, what comes with it, and the consent event that records it.

    ``paused_until`` is the new end of the pause (None: none). ``confirmed``: set the
    confirmation time to now (``confirmed_if_unset``: only if it was never set). ``left``:
    the person left now (True) or is back (False); None leaves ``unsubscribed_at`` alone.
    ``stop_queued``: skip the person's deliveries still waiting in a send.
    """

    status: str
    event: str
    detail: str | None = None
    paused_until: dt.date | None = None
    confirmed: bool = False
    confirmed_if_unset: bool = False
    left: bool | None = None
    stop_queued: bool = False


def confirm(address: str, status: str) -> StatusChange:
    """A pending person confirmed their address: they become active."""
    if status != "pending":
        raise SubscriberStateError(f"{address} is {status}, not pending")
    return StatusChange("active", "confirmed", confirmed=True)


def pause(address: str, status: str, until: dt.date | None, today: dt.date) -> StatusChange:
    """Stop sending until ``until`` (None: until resumed)."""
    if until is not None and until <= today:
        raise BadDateError(f"{until} is not in the future", hint="give a later date, YYYY-MM-DD")
    if status not in ("active", "paused"):
        raise SubscriberStateError(f"{address} is {status}; only active subscribers can be paused")
    detail = f"until {until.isoformat()}" if until else "until resumed"
    return StatusChange("paused", "paused", detail, paused_until=until, stop_queued=True)


def bounced(status: str, detail: str) -> StatusChange | None:
    """The address is dead (a hard bounce, or soft bounces reaching the threshold): no
    more mail, queued rows skipped. None when it left already or was marked before."""
    if status in ("bounced", "unsubscribed"):
        return None
    return StatusChange("bounced", "bounced", detail, stop_queued=True)


def forced_back(status: str, to: str | None = None) -> StatusChange:
    """An import with ``--force-resubscribe`` brings back a bounced address or someone who
    reported the list as spam (logged: only on the administrator's word)."""
    new = to if to and to != "bounced" else "active"
    return StatusChange(
        new,
        "resubscribed",
        f"brought back by an import with --force-resubscribe (was {status})",
        confirmed_if_unset=new == "active",
        left=False,
    )


def reactivate(address: str, status: str, detail: str | None = None) -> StatusChange:
    """An administrator brings back a bounced address (e.g. the mailbox works again)."""
    if status != "bounced":
        raise SubscriberStateError(
            f"{address} is {status}, not bounced",
            hint="only bounced addresses are reactivated; see `newsletter bounces show`",
        )
    return StatusChange("active", "reactivated", detail or "bounced address reactivated")


def resume(address: str, status: str) -> StatusChange:
    """Start sending again to a paused subscriber."""
    if status != "paused":
        raise SubscriberStateError(
            f"{address} is {status}, not paused",
            hint="an unsubscribed person comes back with `subscribers add --resubscribe`"
            if status == "unsubscribed"
            else None,
        )
    return StatusChange("active", "resumed")


def unsubscribe(status: str, detail: str | None = None) -> StatusChange | None:
    """Leave the list at once; None when already unsubscribed (links get clicked twice).

    Queued deliveries are skipped in the same change, so it also holds for a send in
    progress.
    """
    if status == "unsubscribed":
        return None
    return StatusChange("unsubscribed", "unsubscribed", detail, left=True, stop_queued=True)


def resubscribe(
    status: str, pending: bool, detail: str | None = None, to: str | None = None
) -> StatusChange:
    """An unsubscribed person comes back (only when they asked), pending or active.

    ``to``: the status a CSV row gives them instead (an import with ``--resubscribe``).
    """
    if status != "unsubscribed":
        raise SubscriberStateError(f"{status} subscribers cannot be resubscribed")
    new = to or ("pending" if pending else "active")
    return StatusChange(
        new, "resubscribed", detail, confirmed=to is None and not pending, left=False
    )


def imported(status: str, new: str, paused_until: dt.date | None) -> StatusChange | None:
    """The change a CSV row's ``status`` column makes to someone already in the store.

    Coming back from ``unsubscribed`` is not decided here (it needs ``--resubscribe``).
    """
    if new == status:
        return None
    event = {
        "unsubscribed": "unsubscribed",
        "paused": "paused",
        "active": "resumed" if status == "paused" else "confirmed",
    }.get(new, "")
    return StatusChange(
        new,
        event,
        paused_until=paused_until if new == "paused" else None,
        confirmed_if_unset=new == "active",
        left=True if new == "unsubscribed" else None,
        stop_queued=new == "unsubscribed",
    )


# What a web sign-up does for an address already in the store (see services.signup).
SIGNUP_NEW = "confirm"  # keep a sign-up request and mail its confirmation link
SIGNUP_KNOWN = "preferences_link"  # someone on the list: mail a link to their preferences
SIGNUP_IGNORE = "ignore"  # never mail a bounced address from a web form


def signup_action(status: str | None) -> str:
    """What a sign-up for an address in this status does (None: not in the store)."""
    if status in (None, "unsubscribed", "pending"):
        return SIGNUP_NEW
    if status in ("active", "paused"):
        return SIGNUP_KNOWN
    return SIGNUP_IGNORE


def confirm_signup(status: str | None, detail: str | None = None) -> StatusChange | None:
    """The owner of an address confirmed a sign-up request: what it does to the person in
    this status (None: not in the store yet, so they are added as active).

    Returns None when the person is on the list already (active or paused: nothing
    changes); raises :class:`SubscriberStateError` for a bounced address.
    """
    if status is None or status == "pending":
        return StatusChange("active", "confirmed", detail, confirmed=True)
    if status == "unsubscribed":
        return StatusChange("active", "resubscribed", detail, confirmed=True, left=False)
    if status in ("active", "paused"):
        return None
    raise SubscriberStateError(f"a {status} address cannot be subscribed from a web form")


def lost_link_action(status: str | None) -> str | None:
    """What a "send me my link" request mails to an address in this status (None: nothing)."""
    if status == "pending":
        return SIGNUP_NEW
    if status in ("active", "paused", "unsubscribed"):
        return SIGNUP_KNOWN
    return None


# --- sends and deliveries ----------------------------------------------------------------

SEND_STATUSES = ("planned", "sending", "paused", "done", "cancelled")
#: Sends a worker may take deliveries from (a send paused by an outage is picked up again).
RUNNING_SENDS = ("planned", "sending", "paused")
#: Sends that are over: nobody is sent anything more.
FINISHED_SENDS = ("done", "cancelled")
#: Sends whose issue the public archive shows.
PUBLIC_SENDS = ("sending", "done")

DELIVERY_STATUSES = ("pending", "sending", "sent", "skipped", "failed")
#: Deliveries still to go out (queued, or claimed by a worker right now).
OUTSTANDING = ("pending", "sending")

SKIP_NO_MATCH = "no matching topic"
SKIP_PAUSED = "paused"
SKIP_LEFT = "unsubscribed before sending"
SKIP_CANCELLED = "send cancelled"


def is_finished(send_status: str | None) -> bool:
    """True when a send is over: the issue was sent already (or cancelled)."""
    return send_status in FINISHED_SENDS


@dataclass(frozen=True)
class RetryDecision:
    """What to do with a message the server refused for now: retry at ``at``, or give up."""

    give_up: bool
    at: dt.datetime | None = None


def retry_after(
    attempts: int,
    first_attempt_at: dt.datetime,
    now: dt.datetime,
    initial_delay: float,
    max_delay: float,
    give_up_after: float,
) -> RetryDecision:
    """When to try a temporarily refused message again (4xx, dropped connection).

    The delay starts at ``initial_delay`` and doubles with each attempt, up to
    ``max_delay``; once the next try would come later than ``give_up_after`` seconds
    after the first attempt, the message is given up (marked failed).
    """
    delay = min(float(initial_delay) * (2 ** min(max(attempts - 1, 0), 30)), float(max_delay))
    given = (now - first_attempt_at).total_seconds()
    if given + delay > float(give_up_after):
        return RetryDecision(give_up=True)
    return RetryDecision(give_up=False, at=now + dt.timedelta(seconds=delay))
