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

from dataclasses import asdict
from typing import Any

from flask import Blueprint, abort, request, url_for

from newsletter.content.model import Topic
from newsletter.content.taxonomy import load_taxonomy, topic_names
from newsletter.errors import NewsletterError
from newsletter.rules.addresses import InvalidAddressError, mailbox_key, normalise_address
from newsletter.rules.months import add_months
from newsletter.rules.names import MAX_NAME, InvalidNameError, check_name
from newsletter.rules.statuses import SubscriberStateError
from newsletter.services import signup as signups
from newsletter.services import subscribers as people
from newsletter.services.subscribers import BadLinkError, LinkFromTestError, SubscriberView
from newsletter.web.context import client_ip, csrf_ok, page, web
from newsletter.web.security import ip_key
from newsletter.web.topic_groups import topic_groups

subscriber_pages = Blueprint("subscriber_pages", __name__)

PAUSE_MONTHS = (1, 3, 6)
MAX_EMAIL = 320


@subscriber_pages.errorhandler(BadLinkError)
def _bad_link(exc: BadLinkError):
    if isinstance(exc, LinkFromTestError):
        # Not an error: the author is trying the links of a test message.
        return page("test_link.html", purpose=exc.purpose)
    return page("bad_link.html", 404 if exc.gone else 400, expired=exc.expired, form={}, errors={})


def _subscriber(purpose: str, token: str, max_age: int | None = None) -> SubscriberView:
    """The subscriber a link names; :class:`BadLinkError` (a helpful page) if it is bad."""
    return people.from_link(web().app, purpose, token, max_age=max_age)


def _require_csrf(scope: str = "") -> None:
    if not csrf_ok(scope):
        abort(400, "This form has expired or was not sent from our page. Please try again.")


def _topic_names() -> dict[str, str]:
    return {t.slug: t.name for t in load_taxonomy()}


def _chosen_topics(field: str = "topics") -> list[str]:
    """The topic slugs ticked in the form; 400 for a slug that is not a topic."""
    names = _topic_names()
    slugs = request.form.getlist(field)
    if len(slugs) > len(names) or any(s not in names for s in slugs):
        abort(400, "The form named a topic that does not exist.")
    return list(dict.fromkeys(slugs))


def _topic_choice() -> tuple[bool, list[str]]:
    """(all topics?, slugs) as the form asks: ticked topics win over "All topics".

    The box is ticked by default, and without the page's script ticking a topic leaves
    it ticked: whoever ticked topics meant them.
    """
    slugs = _chosen_topics()
    return (request.form.get("all_topics") == "1" and not slugs), slugs


# --- preferences -------------------------------------------------------------------------


def _preferences_page(sub: SubscriberView, token: str, status: int = 200, **extra: Any):
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
    sub = _subscriber("preferences", token)
    _require_csrf(token)
    action = request.form.get("action", "save")
    app, ip = web().app, client_ip()
    try:
        if action == "save":
            all_topics, slugs = _topic_choice()
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
            sub = people.set_topics(
                app, sub.email, slugs, all_topics=all_topics, source="web", ip=ip
            )
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
            until = add_months(app.today(), int(raw))
            sub = people.pause(app, sub.email, until, source="web", ip=ip)
            return _preferences_page(
                sub,
                token,
                notice=f"Paused. Emails start again after {until:%-d %B %Y}.",
            )
        if action == "resume":
            sub = people.resume(app, sub.email, source="web", ip=ip)
            return _preferences_page(sub, token, notice="Welcome back: emails start again.")
        if action == "unsubscribe":
            people.unsubscribe(app, sub.email, source="web", ip=ip, detail="preference page")
            return page("unsubscribed.html", sub=sub, token=None)
        if action == "resubscribe":
            if sub.status != "unsubscribed":
                return _preferences_page(sub, token, notice="You are already subscribed.")
            sub = people.resubscribe(app, sub, source="web", ip=ip)
            return _preferences_page(sub, token, notice="You are subscribed again.")
    except NewsletterError as exc:  # e.g. pausing someone who is not active
        return _preferences_page(sub, token, 400, notice=exc.message)
    abort(400, "Unknown action.")


# --- one-click unsubscribe ---------------------------------------------------------------


@subscriber_pages.get("/unsubscribe/<token>")
def unsubscribe_page(token: str):
    """A page with one button (GET and HEAD change nothing: scanners follow links)."""
    sub = _subscriber("unsubscribe", token)
    return page("unsubscribe.html", sub=sub, token=token)


ONE_CLICK_BODY = b"List-Unsubscribe=One-Click"


def _one_click_asked() -> bool:
    """True if the form says ``List-Unsubscribe=One-Click`` (RFC 8058).

    What mail providers send is exactly that body, form-encoded: it is compared as it
    is, which costs a fraction of parsing the form. Anything else (multipart, other
    fields, the page's button) goes through the form parser as before.
    """
    if (
        request.content_length == len(ONE_CLICK_BODY)
        and request.mimetype == "application/x-www-form-urlencoded"
        and request.get_data(cache=True) == ONE_CLICK_BODY
    ):
        return True
    return request.form.get("List-Unsubscribe") == "One-Click"


@subscriber_pages.post("/unsubscribe/<token>")
def unsubscribe_post(token: str):
    """RFC 8058 one-click unsubscribe: no cookie, no CSRF token, 200, idempotent.

    One transaction by the signed token's id (the link is checked first, reading
    nothing): final once this returns. The service skips every delivery to the person
    not yet on the wire and waits only for one that is (one SMTP transaction), so no
    message starts after the response.
    """
    if not _one_click_asked():
        _subscriber("unsubscribe", token)  # a bad link still gets its own page
        abort(400, "Use the button on the unsubscribe page.")
    sub = people.unsubscribe_link(
        web().app, token, source="web", ip=client_ip(), detail="one-click"
    )
    return page("unsubscribed.html", sub=sub, token=None)


# --- fewer emails on one topic -----------------------------------------------------------


def _topic_or_404(slug: str) -> Topic:
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


def _topic_state(sub: SubscriberView, slug: str) -> dict[str, Any]:
    return asdict(people.topic_state(sub, slug))


@subscriber_pages.post("/topic/<token>/<slug>")
def topic_remove(token: str, slug: str):
    """Remove one topic (for an all-topics subscriber: every topic except this one)."""
    sub = _subscriber("topic", token)
    topic = _topic_or_404(slug)
    _require_csrf(token)
    try:
        sub = people.drop_topic(web().app, sub, slug, ip=client_ip())
    except SubscriberStateError:  # not theirs, their last one, or they left: say so
        return page("topic.html", sub=sub, topic=topic, token=token, **_topic_state(sub, slug))
    return page("topic_done.html", sub=sub, topic=topic)


# --- sign-up -----------------------------------------------------------------------------


def _signup_page(status: int = 200, form: dict | None = None, errors: dict | None = None):
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
    ok_ip = limiter.hit(ip_key(client_ip()), settings.signup_limit_per_ip)
    ok_addr = limiter.hit(f"addr:{mailbox_key(address)}", settings.signup_limit_per_address)
    return not (ok_ip and ok_addr)


def _check_name(raw: str, errors: dict[str, str]) -> str:
    """The name as it will be stored (the one rule of :mod:`newsletter.rules.names`)."""
    try:
        return check_name(raw)
    except InvalidNameError:
        if len(" ".join(raw.split())) > MAX_NAME:
            errors["name"] = f"Please shorten your name to {MAX_NAME} characters."
        else:
            errors["name"] = "Please write your name on one line, as plain text."
        return ""


def _check_email(raw: str, errors: dict[str, str]) -> str:
    if not raw.strip():
        errors["email"] = "Enter your email address."
        return ""
    if len(raw) > MAX_EMAIL:
        errors["email"] = "That address is too long."
        return ""
    try:
        return normalise_address(raw)
    except InvalidAddressError:
        errors["email"] = "Enter an email address like name@example.org."
        return ""


@subscriber_pages.post("/subscribe")
def signup_post():
    """Validate the form, then answer "check your email" whatever the address."""
    all_topics, topics = _topic_choice()
    form = {
        "email": request.form.get("email", ""),
        "name": request.form.get("name", ""),
        "all_topics": all_topics,
        "topics": topics,
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
    name = _check_name(form["name"], errors)
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
    app, ip = web().app, client_ip()
    web().submit(lambda: signups.request_signup(app, address, name, topics, all_topics, ip))
    return page("signup_sent.html", email=address)


def _too_many() -> dict[str, str]:
    return {
        "title": "Too many requests",
        "message": "Please wait an hour before trying again.",
    }


# --- confirmation ------------------------------------------------------------------------


@subscriber_pages.get("/confirm/<token>")
def confirm_page(token: str):
    """A button to confirm the subscription (GET changes nothing)."""
    found = signups.confirmation_from_link(web().app, token)
    return page("confirm.html", sub=found, token=token)


@subscriber_pages.post("/confirm/<token>")
def confirm_post(token: str):
    """Apply the sign-up (the person becomes active) and send the welcome email."""
    signups.confirmation_from_link(web().app, token)
    _require_csrf(token)
    app = web().app
    sub, confirmed = signups.confirm_link(app, token, client_ip())
    if confirmed:
        subscriber_id = sub.id
        web().submit(lambda: signups.send_welcome(app, subscriber_id))
    return page(
        "confirmed.html",
        sub=sub,
        already=not confirmed,
        topic_names=topic_names(sub.topics),
        preferences_token=signups.link_token(app, "preferences", sub),
    )


# --- lost link ---------------------------------------------------------------------------


@subscriber_pages.get("/preferences")
def lost_link():
    """Ask for an address to email a fresh preferences link to."""
    return page("lost_link.html", form={}, errors={})


@subscriber_pages.post("/preferences")
def lost_link_post():
    """Same answer, same speed, whether or not the address is on the list."""
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
    app, ip = web().app, client_ip()
    web().submit(lambda: signups.request_link(app, address, ip))
    return page("lost_link_sent.html", email=address)


def preferences_url(token: str) -> str:
    """The preference page's path for a token (used by templates)."""
    return url_for("subscriber_pages.preferences", token=token)
