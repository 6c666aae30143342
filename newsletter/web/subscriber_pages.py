"""Pages for subscribers: preferences, one-click unsubscribe, fewer emails on a topic,
sign-up with double opt-in, confirmation, and "send me my link".

Rules kept here:

- a GET or HEAD never changes anything (link scanners follow every link in an email);
- every change is a POST with a CSRF token, except the RFC 8058 one-click POST to
  ``/unsubscribe/<token>`` that mail providers send without cookies or tokens;
- every change is logged in the store's consent log with source "web" and the IP;
- the sign-up and lost-link forms answer the same whatever the address (the work is
  done afterwards, in :mod:`newsletter.web.jobs`);
- a bad link (tampered, expired, for another purpose, signed by an unknown key, or for a
  person no longer in the store) gets one helpful page offering a new link.
"""

from __future__ import annotations

import calendar
import datetime as dt
from typing import Any

from flask import Blueprint, abort, request, url_for

from newsletter.tokens import BadTokenError, ExpiredTokenError, read_token
from newsletter.web.app import CONFIRM_MAX_AGE, client_ip, csrf_ok, page, web

subscriber_pages = Blueprint("subscriber_pages", __name__)

PAUSE_MONTHS = (1, 3, 6)
MAX_NAME = 200
MAX_EMAIL = 320


class _BadLink(Exception):
    def __init__(self, status: int, expired: bool = False) -> None:
        super().__init__(status)
        self.status = status
        self.expired = expired


@subscriber_pages.errorhandler(_BadLink)
def _bad_link(exc: _BadLink):
    return page("bad_link.html", exc.status, expired=exc.expired, form={}, errors={})


def _subscriber(purpose: str, token: str, max_age: int | None = None):
    """The subscriber a link names; :class:`_BadLink` if the link is not good."""
    from newsletter.store import SubscriberNotFoundError, get_subscriber, get_subscriber_by_id

    if len(token) > 512:
        raise _BadLink(400)
    try:
        payload = read_token(web().settings, purpose, token, max_age=max_age)
    except ExpiredTokenError:
        raise _BadLink(400, expired=True) from None
    except BadTokenError:
        raise _BadLink(400) from None
    try:
        if isinstance(payload, int):
            return get_subscriber_by_id(web().store, payload)
        return get_subscriber(web().store, payload)
    except SubscriberNotFoundError:
        raise _BadLink(404) from None


def _require_csrf(scope: str = "") -> None:
    if not csrf_ok(scope):
        abort(400, "This form has expired or was not sent from our page. Please try again.")


def _topic_names() -> dict[str, str]:
    from newsletter.content.taxonomy import load_taxonomy

    return {t.slug: t.name for t in load_taxonomy()}


def _chosen_topics(field: str = "topics") -> list[str]:
    """The topic slugs ticked in the form; 400 for a slug that is not a topic."""
    names = _topic_names()
    slugs = request.form.getlist(field)
    if len(slugs) > len(names) or any(s not in names for s in slugs):
        abort(400, "The form named a topic that does not exist.")
    return list(dict.fromkeys(slugs))


def add_months(day: dt.date, months: int) -> dt.date:
    """``day`` plus ``months`` calendar months (the day is clamped to the month's end)."""
    total = day.month - 1 + months
    year, month = day.year + total // 12, total % 12 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


# --- preferences -------------------------------------------------------------------------


def _preferences_page(sub, token: str, status: int = 200, **extra: Any):
    from newsletter.web.topic_groups import topic_groups

    context: dict[str, Any] = {
        "sub": sub,
        "token": token,
        "groups": topic_groups(),
        "selected": set(sub.topics),
        "all_topics": sub.all_topics,
        "pause_months": PAUSE_MONTHS,
        "pause_choice": None,
        "errors": {},
        "notice": None,
        "notice_kind": "info" if status >= 400 else "ok",
    }
    context.update(extra)
    return page("preferences.html", status, **context)


@subscriber_pages.get("/preferences/<token>")
def preferences(token: str):
    """The preference centre of the person the link names."""
    return _preferences_page(_subscriber("preferences", token), token)


@subscriber_pages.post("/preferences/<token>")
def preferences_save(token: str):
    """Save topics, pause, resume, unsubscribe or subscribe again."""
    from newsletter.store import (
        StoreError,
        add_subscriber,
        pause,
        resume,
        set_topics,
        unsubscribe,
    )

    sub = _subscriber("preferences", token)
    _require_csrf(token)
    action = request.form.get("action", "save")
    store, ip = web().store, client_ip()
    try:
        if action == "save":
            all_topics = request.form.get("all_topics") == "1"
            slugs = _chosen_topics()
            if sub.status == "unsubscribed":
                return _preferences_page(
                    sub, token, 400, notice="You are unsubscribed: subscribe again first."
                )
            if not all_topics and not slugs:
                return _preferences_page(
                    sub,
                    token,
                    400,
                    selected=set(),
                    all_topics=False,
                    errors={
                        "topics": "Choose at least one topic or “All topics”. "
                        "To stop all emails, use “Unsubscribe” below."
                    },
                )
            sub = set_topics(store, sub.email, slugs, all_topics=all_topics, source="web", ip=ip)
            notice = "Saved. " + (
                "You will get summaries on every topic."
                if sub.all_topics
                else f"You will get summaries on {len(sub.topics)} "
                f"topic{'s' if len(sub.topics) != 1 else ''}."
            )
            return _preferences_page(sub, token, notice=notice)
        if action == "pause":
            raw = request.form.get("months", "")
            if not raw.isdigit() or int(raw) not in PAUSE_MONTHS:
                return _preferences_page(
                    sub, token, 400, errors={"months": "Choose 1, 3 or 6 months."}
                )
            until = add_months(dt.date.today(), int(raw))
            sub = pause(store, sub.email, until, source="web", ip=ip)
            return _preferences_page(
                sub,
                token,
                notice=f"Paused. Emails start again after {until:%-d %B %Y}.",
            )
        if action == "resume":
            sub = resume(store, sub.email, source="web", ip=ip)
            return _preferences_page(sub, token, notice="Welcome back: emails start again.")
        if action == "unsubscribe":
            unsubscribe(
                store, sub.email, source="web", ip=ip, detail="preference page", settle=10.0
            )
            return page("unsubscribed.html", sub=sub, token=None)
        if action == "resubscribe":
            if sub.status != "unsubscribed":
                return _preferences_page(sub, token, notice="You are already subscribed.")
            sub = add_subscriber(
                store,
                sub.email,
                topics=sub.topics,
                all_topics=sub.all_topics,
                resubscribe=True,
                source="web",
                ip=ip,
                consent_version=web().settings.consent_version,
            )
            return _preferences_page(sub, token, notice="You are subscribed again.")
    except StoreError as exc:  # e.g. pausing someone who is not active
        return _preferences_page(sub, token, 400, notice=exc.message)
    abort(400, "Unknown action.")


# --- one-click unsubscribe ---------------------------------------------------------------


@subscriber_pages.get("/unsubscribe/<token>")
def unsubscribe_page(token: str):
    """A page with one button (GET and HEAD change nothing: scanners follow links)."""
    sub = _subscriber("unsubscribe", token)
    return page("unsubscribe.html", sub=sub, token=token)


@subscriber_pages.post("/unsubscribe/<token>")
def unsubscribe_post(token: str):
    """RFC 8058 one-click unsubscribe: no cookie, no CSRF token, 200, idempotent.

    The store's ``unsubscribe`` also skips the person's queued deliveries in the same
    transaction, so nothing more is sent once this returns.
    """
    from newsletter.store import unsubscribe

    sub = _subscriber("unsubscribe", token)
    if request.form.get("List-Unsubscribe") != "One-Click":
        abort(400, "Use the button on the unsubscribe page.")
    # settle: a message a worker already holds for this person finishes before we answer,
    # so nothing at all goes to the address after this response.
    unsubscribe(
        web().store, sub.email, source="web", ip=client_ip(), detail="one-click", settle=10.0
    )
    return page("unsubscribed.html", sub=sub, token=None)


# --- fewer emails on one topic -----------------------------------------------------------


def _topic_or_404(slug: str):
    from newsletter.content.taxonomy import load_taxonomy

    topic = load_taxonomy().by_slug.get(slug)
    if topic is None:
        abort(404)
    return topic


@subscriber_pages.get("/topic/<token>/<slug>")
def topic_page(token: str, slug: str):
    """Ask to confirm: stop getting summaries on this topic."""
    sub = _subscriber("topic", token)
    topic = _topic_or_404(slug)
    return page("topic.html", sub=sub, topic=topic, token=token, **_topic_state(sub, slug))


def _topic_state(sub, slug: str) -> dict[str, Any]:
    has = sub.all_topics or slug in sub.topics
    last = not sub.all_topics and tuple(sub.topics) == (slug,)
    return {"has_topic": has, "last_topic": last, "receiving": sub.status != "unsubscribed"}


@subscriber_pages.post("/topic/<token>/<slug>")
def topic_remove(token: str, slug: str):
    """Remove one topic (for an all-topics subscriber: every topic except this one)."""
    from newsletter.store import set_topics

    sub = _subscriber("topic", token)
    topic = _topic_or_404(slug)
    _require_csrf(token)
    state = _topic_state(sub, slug)
    if not state["receiving"] or not state["has_topic"] or state["last_topic"]:
        return page("topic.html", sub=sub, topic=topic, token=token, **state)
    if sub.all_topics:
        rest = [t for t in _topic_names() if t != slug]
    else:
        rest = [t for t in sub.topics if t != slug]
    sub = set_topics(web().store, sub.email, rest, source="web", ip=client_ip())
    return page("topic_done.html", sub=sub, topic=topic)


# --- sign-up -----------------------------------------------------------------------------


def _signup_page(status: int = 200, form: dict | None = None, errors: dict | None = None):
    from newsletter.web.topic_groups import topic_groups

    form = form or {"all_topics": True, "topics": []}
    return page(
        "signup.html",
        status,
        groups=topic_groups(),
        form=form,
        errors=errors or {},
        consent_version=web().settings.consent_version,
    )


@subscriber_pages.get("/")
@subscriber_pages.get("/subscribe")
def signup():
    """The sign-up form."""
    return _signup_page()


def _rate_limited(address: str) -> bool:
    settings = web().settings
    limiter = web().limiter
    ok_ip = limiter.hit(f"ip:{client_ip()}", settings.signup_limit_per_ip)
    ok_addr = limiter.hit(f"addr:{address}", settings.signup_limit_per_address)
    return not (ok_ip and ok_addr)


def _check_email(raw: str, errors: dict[str, str]) -> str:
    from newsletter.store import InvalidEmailError, normalise_email

    if not raw.strip():
        errors["email"] = "Enter your email address."
        return ""
    if len(raw) > MAX_EMAIL:
        errors["email"] = "That address is too long."
        return ""
    try:
        return normalise_email(raw)
    except InvalidEmailError:
        errors["email"] = "Enter an email address like name@example.org."
        return ""


@subscriber_pages.post("/subscribe")
def signup_post():
    """Validate the form, then answer "check your email" whatever the address."""
    from newsletter.web import mail_jobs

    form = {
        "email": request.form.get("email", ""),
        "name": request.form.get("name", ""),
        "all_topics": request.form.get("all_topics") == "1",
        "topics": _chosen_topics(),
        "consent": request.form.get("consent") == "1",
    }
    if not csrf_ok():
        return _signup_page(
            400,
            form,
            {"form": "This form had expired. Check your choices and send it again."},
        )
    errors: dict[str, str] = {}
    address = _check_email(form["email"], errors)
    name = " ".join(form["name"].split())
    if len(name) > MAX_NAME:
        errors["name"] = f"Please shorten your name to {MAX_NAME} characters."
    if not form["all_topics"] and not form["topics"]:
        errors["topics"] = "Choose at least one topic, or “All topics”."
    if not form["consent"]:
        errors["consent"] = "Please tick the box to agree to receive the newsletter."
    if errors:
        return _signup_page(400, form, errors)
    if request.form.get("website"):  # the honeypot: people never see this field
        return page("signup_sent.html", email=address)
    if _rate_limited(address):
        return page("error.html", 429, **_too_many())
    topics = [] if form["all_topics"] else form["topics"]
    web().jobs.submit(
        mail_jobs.signup_job(_job_context(), address, name, topics, form["all_topics"], client_ip())
    )
    return page("signup_sent.html", email=address)


def _too_many() -> dict[str, str]:
    return {
        "title": "Too many requests",
        "message": "Please wait an hour before trying again.",
    }


def _job_context():
    from flask import current_app

    return current_app._get_current_object()  # type: ignore[attr-defined]


# --- confirmation ------------------------------------------------------------------------


@subscriber_pages.get("/confirm/<token>")
def confirm_page(token: str):
    """A button to confirm the subscription (GET changes nothing)."""
    sub = _subscriber("confirm", token, max_age=CONFIRM_MAX_AGE)
    return page("confirm.html", sub=sub, token=token)


@subscriber_pages.post("/confirm/<token>")
def confirm_post(token: str):
    """Make the pending subscriber active and send the welcome email."""
    from newsletter.store import SubscriberStateError, confirm
    from newsletter.web import mail_jobs

    sub = _subscriber("confirm", token, max_age=CONFIRM_MAX_AGE)
    _require_csrf(token)
    if sub.status != "pending":
        return page(
            "confirmed.html", sub=sub, already=True, preferences_token=_preferences_token(sub)
        )
    try:
        sub = confirm(
            web().store,
            sub.email,
            source="web",
            ip=client_ip(),
            consent_version=web().settings.consent_version,
        )
    except SubscriberStateError:
        return page(
            "confirmed.html", sub=sub, already=True, preferences_token=_preferences_token(sub)
        )
    web().jobs.submit(mail_jobs.welcome_job(_job_context(), sub.id))
    return page("confirmed.html", sub=sub, already=False, preferences_token=_preferences_token(sub))


def _preferences_token(sub) -> str:
    from newsletter.tokens import make_token

    return make_token(web().settings, "preferences", sub.id)


# --- lost link ---------------------------------------------------------------------------


@subscriber_pages.get("/preferences")
def lost_link():
    """Ask for an address to email a fresh preferences link to."""
    return page("lost_link.html", form={}, errors={})


@subscriber_pages.post("/preferences")
def lost_link_post():
    """Same answer, same speed, whether or not the address is on the list."""
    from newsletter.web import mail_jobs

    form = {"email": request.form.get("email", "")}
    if not csrf_ok():
        return page(
            "lost_link.html",
            400,
            form=form,
            errors={"form": "This form had expired. Please send it again."},
        )
    errors: dict[str, str] = {}
    address = _check_email(form["email"], errors)
    if errors:
        return page("lost_link.html", 400, form=form, errors=errors)
    if request.form.get("website"):
        return page("lost_link_sent.html", email=address)
    if _rate_limited(address):
        return page("error.html", 429, **_too_many())
    web().jobs.submit(mail_jobs.lost_link_job(_job_context(), address, client_ip()))
    return page("lost_link_sent.html", email=address)


def preferences_url(token: str) -> str:
    """The preference page's path for a token (used by templates)."""
    return url_for("subscriber_pages.preferences", token=token)
