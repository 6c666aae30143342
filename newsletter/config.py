"""The one settings object.

Precedence, lowest to highest: built-in defaults < ``newsletter.toml`` < ``NEWSLETTER_*``
environment variables < command-line flags. Every setting, its default and its meaning is
declared once, as a field of :class:`Settings` made with :func:`setting` (its type is the
field's annotation); :data:`SETTINGS` is derived from those fields, the file written by
``newsletter init`` is generated from it, and a test checks that the README's
configuration table names every setting and its environment variable.
"""

from __future__ import annotations

import difflib
import os
import re
import secrets
import tomllib
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar, get_type_hints
from urllib.parse import urlsplit

from newsletter.errors import ConfigError, MissingSettingError

ENV_PREFIX = "NEWSLETTER_"
CONFIG_ENV = "NEWSLETTER_CONFIG"
DEFAULT_CONFIG = "newsletter.toml"
NO_MATCH_POLICIES = ("skip", "full", "teaser")

_T = TypeVar("_T")
_DOC = "newsletter.setting"  # the key of a setting's documentation in its field's metadata
_NOT_SETTINGS = frozenset({"root", "config_path", "sources"})  # Settings fields set by the loader
_KINDS = (str, int, float, bool, Path)  # the types a setting field may be annotated with
# Settings never shown in full (repr, logs): signing keys and webhook passwords.
SECRET_SETTINGS = frozenset(
    {
        "secret_key",
        "ses_webhook_secret",
        "postmark_webhook_secret",
        "mailgun_signing_key",
        "sendgrid_verification_key",
        "bounce_imap_password",
    }
)


@dataclass(frozen=True)
class SettingInfo:
    """Documentation of one setting."""

    name: str
    default: Any
    help: str
    kind: type = str
    in_init: bool = False  # written (commented where empty) into a new newsletter.toml
    minimum: float | None = None  # for int/float settings: the smallest allowed value


@dataclass(frozen=True)
class _SettingDoc:
    declared: Any  # the default as documented and written into newsletter.toml
    help: str
    in_init: bool
    minimum: float | None


def setting(default: _T, help: str, *, in_init: bool = False, minimum: float | None = None) -> _T:
    """Declare one field of :class:`Settings` as a setting: its default and its meaning.

    ``in_init``: written (commented out where empty) into a new ``newsletter.toml``;
    ``minimum``: for int/float settings, the smallest allowed value. The field's type
    annotation is the setting's kind: str, int, float or bool (for paths see
    :func:`path_setting`).
    """
    doc = _SettingDoc(default, help, in_init, minimum)
    return field(default=default, metadata={_DOC: doc})


def path_setting(default: str, help: str, *, in_init: bool = False) -> Path:
    """Declare a ``Path`` field of :class:`Settings` as a setting.

    It is documented, written and read as text (``default``, relative to the folder of
    ``newsletter.toml``); :func:`load_settings` makes it an absolute ``Path``.
    """
    doc = _SettingDoc(default, help, in_init, None)
    return field(default=Path(default), metadata={_DOC: doc})


@dataclass(frozen=True)
class Settings:
    """Resolved settings. Build with :func:`load_settings`; paths are absolute.

    Each field made with :func:`setting` or :func:`path_setting` is a setting (see
    :data:`SETTINGS`); only ``root``, ``config_path`` and ``sources`` are not.
    """

    newsletter_name: str = setting(
        "Psychotherapy Research Digest",
        "The newsletter's name: in the From header, the email's header and footer, "
        "List-Id and the web pages.",
        in_init=True,
    )
    sender_name: str = setting(
        "",
        "Who sends the newsletter (a person or organisation), named in every email's "
        "footer beside the postal address; empty: the newsletter's name.",
        in_init=True,
    )
    sender_address: str = setting(
        "", "Address in the From header (required to send).", in_init=True
    )
    postal_address: str = setting(
        "",
        "Sender's postal address, shown in every email's footer (required to send).",
        in_init=True,
    )
    reply_to: str = setting("", "Reply-To address; empty for none.", in_init=True)
    author_address: str = setting(
        "",
        "Where send reports and scheduler warnings go; empty for none.",
        in_init=True,
    )
    base_url: str = setting(
        "http://127.0.0.1:8000",
        "Public address of the web pages, used in every link.",
        in_init=True,
    )
    timezone: str = setting("UTC", "Time zone for schedules and dates (IANA name).", in_init=True)
    secret_key: str = setting(
        "",
        "Key that signs links; a comma-separated list rotates keys (the first signs, all verify).",
        in_init=True,
    )
    database_url: str = setting(
        "sqlite:///subscribers/newsletter.db",
        "SQLAlchemy URL of the subscriber store.",
    )
    smtp_url: str = setting(
        "outbox:///outbox",
        "smtp://[user:pass@]host:port[?starttls=true], smtps://..., or outbox:///dir "
        "(writes .eml files). Add ?ca_file=/path/ca.pem to trust a private CA, or "
        "?verify=false to skip certificate checks (testing only).",
    )
    smtp_pool_size: int = setting(
        2,
        "How many SMTP connections are kept open and used at once.",
        minimum=1,
    )
    smtp_timeout: float = setting(
        30.0,
        "Seconds to wait for the SMTP server before giving up on a command.",
        minimum=0.1,
    )
    bounce_soft_threshold: int = setting(
        5,
        "Soft bounces (mailbox full, a delivery given up after retries) within "
        "bounce_soft_window_days after which an address is marked bounced.",
        minimum=1,
    )
    bounce_soft_window_days: int = setting(
        30,
        "Days over which soft bounces are counted (older ones no longer count).",
        minimum=1,
    )
    smtp_outage_wait: float = setting(
        120.0,
        "Seconds `send` and `worker --once` wait for an unreachable SMTP server before they "
        "exit with status 75, leaving the send paused and the rest queued.",
        minimum=0,
    )
    rate_per_second: float = setting(
        0.0,
        "Most messages sent per second (fractions allowed, 0.5 = one every 2 s); 0 = no limit.",
        minimum=0,
    )
    rate_per_hour: int = setting(
        0,
        "Most messages sent in any 60 minutes (the provider's hourly cap); 0 = no cap.",
        minimum=0,
    )
    dkim_domain: str = setting(
        "",
        "Domain (d=) of the DKIM signature; empty = no DKIM signing.",
    )
    dkim_selector: str = setting("", "DKIM selector (s=): the DNS record <selector>._domainkey.")
    dkim_key_file: str = setting(
        "",
        "PEM file of the DKIM private key, RSA (2048 bits) or Ed25519 (relative to the "
        "project folder).",
    )
    dkim_ed25519_selector: str = setting(
        "",
        "Selector of a second, Ed25519 DKIM signature (RFC 8463) beside the RSA one; "
        "empty = one signature.",
    )
    dkim_ed25519_key_file: str = setting(
        "",
        "PEM file of the Ed25519 private key for dkim_ed25519_selector.",
    )
    # ruff's RUF009 takes Path for mutable; path_setting returns a field(), like setting().
    issues_dir: Path = path_setting(  # noqa: RUF009
        "issues", "Folder of the monthly issue files."
    )
    templates_dir: Path = path_setting(  # noqa: RUF009
        "templates", "Folder of the email and web templates."
    )
    no_match_policy: str = setting(
        "skip",
        "What a subscriber gets when no summary matches their topics: skip, full or teaser.",
    )
    also_in_issue: bool = setting(
        True,
        'List the month\'s other summaries ("Also in this issue") in each email.',
    )
    dev_redirect: str = setting("", "Send every message to this one address instead (staging).")
    bounce_address: str = setting(
        "",
        "Envelope sender for bounces (VERP): each message goes out from "
        "local+TAG@domain, TAG naming its delivery in a short signed form; empty: the "
        "sender address.",
    )
    unsubscribe_mailto: str = setting(
        "",
        "Address added to List-Unsubscribe as mailto: (the subscriber's token in the "
        "subject); empty for none.",
    )
    retry_initial_delay: float = setting(
        60.0,
        "Seconds before the first retry of a message the server refused for now (4xx); "
        "the delay doubles with each attempt.",
        minimum=0,
    )
    retry_max_delay: float = setting(
        3600.0,
        "Longest delay between two retries of one message, in seconds.",
        minimum=0,
    )
    retry_give_up_after: float = setting(
        259200.0,
        "Seconds after the first attempt when a message still refused for now is marked "
        "failed (default: 3 days).",
        minimum=0,
    )
    # bounces read over IMAP (`newsletter bounces fetch --imap`)
    bounce_imap_url: str = setting(
        "",
        "Mailbox `bounces fetch --imap` reads: imaps://user@host[:993]/FOLDER, or "
        "imap://user@host[:143]/FOLDER?starttls=true (no password here; the user name "
        "percent-encoded, user%40example.org); empty: none.",
    )
    bounce_imap_password: str = setting(
        "",
        "Password of the bounce_imap_url user (better given as the environment variable "
        "than written in this file); never printed or logged.",
    )
    bounce_imap_ca_file: str = setting(
        "",
        "PEM file of a certificate authority to trust for the IMAP server, besides the "
        "system's (a private CA; relative to the project folder).",
    )
    bounce_imap_processed_folder: str = setting(
        "Processed",
        "IMAP folder that processed bounces are moved to (created if missing).",
    )
    bounce_imap_set_aside_folder: str = setting(
        "Set-aside",
        "IMAP folder for messages that prove nothing (auto-replies, unknown or oversized "
        "mail), for a person to look at (created if missing).",
    )
    bounce_imap_timeout: float = setting(
        60.0,
        "Seconds to wait for the IMAP server before giving up on a command.",
        minimum=1,
    )
    # web
    consent_version: str = setting(
        "2026-01",
        "Version of the consent text on the sign-up page, recorded with every sign-up; "
        "change it whenever you change that text.",
    )
    signup_limit_per_ip: int = setting(
        20,
        "Most sign-up and lost-link requests from one IP address per hour (0 = no limit).",
        minimum=0,
    )
    signup_limit_per_address: int = setting(
        3,
        "Most sign-up and lost-link requests for one email address per hour (0 = no limit).",
        minimum=0,
    )
    trusted_proxies: int = setting(
        0,
        "How many reverse proxies in front of `newsletter serve` to trust for the client's "
        "IP (X-Forwarded-For); 0 when browsers connect directly.",
        minimum=0,
    )
    api_enabled: bool = setting(
        False,
        "Serve the JSON API under /api/v1/ in `newsletter serve` (off: it answers 404). "
        "Clients need a token from `newsletter api-token create`.",
    )
    api_rate_limit: int = setting(
        120,
        "Most JSON API requests one API token may make per minute (0 = no limit).",
        minimum=0,
    )
    # provider webhooks (docs/webhooks.md): each hook is off (404) while its setting is empty
    ses_webhook_secret: str = setting(
        "",
        "Password Amazon SNS must give (HTTP basic auth in the subscription URL) to post SES "
        "bounces and complaints to /hooks/ses; empty: the hook is off.",
    )
    postmark_webhook_secret: str = setting(
        "",
        "Password Postmark must give (HTTP basic auth in the webhook URL) to post bounces "
        "and spam complaints to /hooks/postmark; empty: the hook is off.",
    )
    mailgun_signing_key: str = setting(
        "",
        "Mailgun's HTTP webhook signing key, to check the signature of events posted to "
        "/hooks/mailgun; empty: the hook is off.",
    )
    sendgrid_verification_key: str = setting(
        "",
        "SendGrid's Signed Event Webhook verification key (base64 public key), to check "
        "events posted to /hooks/sendgrid; empty: the hook is off.",
    )
    # scheduler
    monthly_schedule: str = setting(
        "",
        "When `newsletter scheduler run` sends the month's issue (if it is marked ready): "
        'a rule like "first Tuesday 09:00", "last Friday 17:30", "day 1 08:00", or a '
        'cron expression "minute hour day month weekday"; in `timezone`; empty = no '
        "monthly send.",
    )
    misfire_grace_time: int = setting(
        259200,
        "Seconds a scheduled send may still start late (e.g. after the scheduler was "
        "down); later than that it is reported as missed, not sent (default: 3 days).",
        minimum=1,
    )
    scheduler_lease_seconds: float = setting(
        60.0,
        "Seconds without a heartbeat after which another `scheduler run` may take over the "
        "store's scheduler lease (a stopped scheduler on the same host is replaced at once).",
        minimum=0.5,
    )
    scheduler_heartbeat_seconds: float = setting(
        10.0,
        "Seconds between the scheduler's heartbeats (keep well below the lease time).",
        minimum=0.05,
    )
    scheduler_poll_seconds: float = setting(
        5.0,
        "Seconds between the scheduler's looks for schedules added or cancelled with "
        "`newsletter schedule`.",
        minimum=0.05,
    )
    # not settings: where the settings came from
    root: Path = field(default_factory=Path.cwd)
    config_path: Path | None = None
    sources: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def secret_keys(self) -> list[str]:
        """The signing keys, newest first (the first signs, all verify)."""
        return [k.strip() for k in self.secret_key.split(",") if k.strip()]

    def require(self, name: str, purpose: str | None = None) -> Any:
        """The value of ``name``; :class:`MissingSettingError` naming it if empty."""
        value = getattr(self, name)
        if value in ("", None):
            raise MissingSettingError(name, purpose)
        return value

    def __repr__(self) -> str:  # never show the secret or a password in logs
        def shown(name: str) -> str:
            if name in SECRET_SETTINGS:
                return "***"
            if name == "smtp_url":
                return repr(redact_url(self.smtp_url))
            return repr(getattr(self, name))

        return (
            "Settings("
            + ", ".join(f"{f.name}={shown(f.name)}" for f in fields(self) if f.name != "sources")
            + ")"
        )


def setting_infos(cls: type[Any]) -> tuple[SettingInfo, ...]:
    """The :class:`SettingInfo` of every setting field of the dataclass ``cls``, in order.

    Raises :class:`TypeError` for a field that is neither a documented :func:`setting` nor
    one of ``root``, ``config_path``, ``sources``, so a setting cannot be half declared.
    """
    hints = get_type_hints(cls)
    infos = []
    for f in fields(cls):
        if f.name in _NOT_SETTINGS:
            continue
        doc = f.metadata.get(_DOC)
        where = f"{cls.__name__}.{f.name}"
        if not isinstance(doc, _SettingDoc) or not doc.help.strip():
            raise TypeError(f"{where} is not declared with setting(default, help)")
        kind = hints[f.name]
        if kind not in _KINDS:
            raise TypeError(f"{where}: a setting must be one of {[k.__name__ for k in _KINDS]}")
        if isinstance(f.default, Path) != (kind is Path):
            raise TypeError(f"{where}: a Path setting, and only one, is made with path_setting()")
        if kind is Path:  # documented, written and read as text; load_settings resolves it
            kind = str
        elif type(doc.declared) is not kind:
            raise TypeError(f"{where}: the default {doc.declared!r} is not of type {kind.__name__}")
        if doc.minimum is not None and kind not in (int, float):
            raise TypeError(f"{where}: only int and float settings have a minimum")
        infos.append(SettingInfo(f.name, doc.declared, doc.help, kind, doc.in_init, doc.minimum))
    return tuple(infos)


SETTINGS: tuple[SettingInfo, ...] = setting_infos(Settings)
_BY_NAME = {s.name: s for s in SETTINGS}
# The env var names of DESIGN.md; every other setting is NEWSLETTER_<NAME> too.
ENV_NAMES = {s.name: ENV_PREFIX + s.name.upper() for s in SETTINGS}


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (safe to log or show)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "***" if "@" in url else url
    # The last "@" ends the user information even when an unencoded password holds
    # "/" or "?", which would fool a URL parser.
    userinfo, at, hostpart = rest.rpartition("@")
    if not at:
        return url
    user, colon, _password = userinfo.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{hostpart}"


# What each kind of setting must be in newsletter.toml (TOML has a type for each).
_TOML_KINDS: dict[type, tuple[tuple[type, ...], str, str]] = {
    str: ((str,), "text", '"..."'),
    bool: ((bool,), "true or false", "true"),
    int: ((int,), "a whole number", "2"),
    float: ((int, float), "a number", "0.5"),
}
# Settings holding one email address (written into headers and SMTP envelopes).
ADDRESS_SETTINGS = (
    "sender_address",
    "reply_to",
    "author_address",
    "dev_redirect",
    "bounce_address",
)
MAILTO_SETTINGS = ("unsubscribe_mailto",)
# The shape of an address the message builder accepts: an unquoted ASCII local part and
# ASCII domain labels (newsletter.rules.addresses holds the full rule, used when sending;
# config sits below rules, so the shape is checked here once more, at load time).
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_ADDRESS = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})*")
_UNSAFE_URL_CHARS = re.compile(r"[\x00-\x20\x7f-\x9f\"'<>\\^`{|}]")


def _kind_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "a whole number"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return "a date or time" if hasattr(value, "isoformat") else type(value).__name__


# Settings whose value is never shown in a message, and those shown without a password.
_SECRET_SETTINGS = frozenset({"secret_key"})
_URL_SETTINGS = frozenset({"smtp_url", "database_url"})


def shown_value(name: str, value: Any) -> str:
    """``value`` of the setting ``name`` as a message may show it: a secret as ``'***'``,
    a URL without its password, a list or table as ``[...]`` or ``{...}``."""
    if name in _SECRET_SETTINGS:
        return "'***'"
    if name in _URL_SETTINGS and isinstance(value, str):
        return repr(redact_url(value))
    if isinstance(value, list):
        return "[...]"
    if isinstance(value, dict):
        return "{...}"
    if isinstance(value, str | int | float):
        return repr(value)
    return str(value)


def describe_setting(name: str, value: Any, where: str) -> str:
    """The start of every message about a bad value: the setting, its environment
    variable, the value and where it came from, e.g.
    ``base_url (NEWSLETTER_BASE_URL) = 'foo' (from /p/newsletter.toml:3)``."""
    env = ENV_NAMES.get(name, ENV_PREFIX + name.upper())
    source = {env: "the environment", "command line": "the command line"}.get(where, where)
    return f"{name} ({env}) = {shown_value(name, value)} (from {source})"


def _toml_line(text: str, key: str) -> int | None:
    """The line of ``key = ...`` in the TOML text (for messages), if it is found."""
    name = rf"(?:{re.escape(key)}|\"{re.escape(key)}\"|'{re.escape(key)}')"
    pattern = re.compile(rf"^\s*(?:{name}\s*=|\[\s*{name}\s*\])")
    for n, line in enumerate(text.splitlines(), 1):
        if pattern.match(line):
            return n
    return None


def _check_toml_type(info: SettingInfo, value: Any, where: str) -> None:
    """A value from newsletter.toml must have its setting's TOML type (a quoted "5" is not
    a number, and an unquoted 5 is not text)."""
    allowed, expected, example = _TOML_KINDS[info.kind]
    if isinstance(value, allowed) and not (info.kind is not bool and isinstance(value, bool)):
        return
    raise ConfigError(
        f"{describe_setting(info.name, value, where)} is not {expected} "
        f"(it is {_kind_name(value)})",
        hint=f"write it as {info.name} = {example}",
    )


def check_base_url(value: str, where: str) -> str:
    """``value`` without a trailing ``/`` if it is an absolute http(s) address with a host
    and nothing else (no user or password, query or fragment); ConfigError if not."""
    hint = "write the public address of the web pages, e.g. https://news.example.org"
    problem = None
    try:
        parts = urlsplit(value)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        parts, port_ok = None, False
    if parts is None or not port_ok:
        problem = "is not a valid address"
    elif parts.scheme.lower() not in ("http", "https"):
        problem = "must be an absolute https:// or http:// URL"
    elif not parts.hostname:
        problem = "has no host name"
    elif parts.username is not None or parts.password is not None or "@" in parts.netloc:
        problem = "must not hold a user name or password"
    elif parts.query or parts.fragment or "?" in value or "#" in value:
        problem = "must not have a ?query or #fragment (links are added after it)"
    elif _UNSAFE_URL_CHARS.search(value):
        problem = "holds a space, a quote or a control character"
    if problem:
        raise ConfigError(f"{describe_setting('base_url', value, where)} {problem}", hint=hint)
    return value.rstrip("/")


def check_address_setting(name: str, value: str, where: str) -> str:
    """``value`` if it is empty or one plain ``local@domain`` address; ConfigError if not."""
    if not value or _ADDRESS.fullmatch(value):
        return value
    hint = "write one plain address, e.g. news@example.org (no name, no <>, no spaces)"
    if value.lower().startswith("mailto:"):
        hint = "write the address without 'mailto:', e.g. leave@example.org"
    raise ConfigError(f"{describe_setting(name, value, where)} is not an email address", hint=hint)


def check_timezone(value: str, where: str) -> str:
    """``value`` if it names an IANA time zone (``Europe/London``, ``UTC``); ConfigError
    naming the setting if not. (``rules.schedules.zone`` is the same check for a zone
    typed on the command line; config sits below rules, so it asks zoneinfo itself.)"""
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"{describe_setting('timezone', value, where)} is not a known time zone",
            hint="use an IANA name such as Europe/London, America/New_York or UTC",
        ) from None
    return value


def check_no_match_policy(value: str, where: str) -> str:
    """``value`` if it is one of :data:`NO_MATCH_POLICIES`; ConfigError if not."""
    if value not in NO_MATCH_POLICIES:
        raise ConfigError(
            f"{describe_setting('no_match_policy', value, where)} is not a policy",
            hint="one of: " + ", ".join(NO_MATCH_POLICIES),
        )
    return value


def check_value(name: str, value: Any, where: str) -> Any:
    """One value of the setting ``name`` as it would be used: converted to the setting's
    type (numbers: their minimum) and checked by the rule of that setting (base_url,
    addresses, timezone, no_match_policy). Raises ConfigError naming the setting, its
    environment variable and ``where`` (a ``file:line``, an environment variable name,
    ``command line``). ``newsletter init`` runs it on its flags before writing anything.
    """
    info = _BY_NAME.get(name)
    if info is None:
        close = difflib.get_close_matches(name, list(_BY_NAME), n=1)
        raise ConfigError(
            f"unknown setting {name!r} (from {where})",
            hint=f"did you mean {close[0]!r}?" if close else "see the README's table",
        )
    return _check_rule(name, _coerce(info, value, where), where)


def _check_rule(name: str, value: Any, where: str) -> Any:
    """``value`` (already of its type) checked by the rule of the setting ``name``, if
    it has one; load_settings runs it on every final value."""
    check = _VALUE_CHECKS.get(name)
    if check is not None:
        return check(value, where)
    if name in ADDRESS_SETTINGS + MAILTO_SETTINGS:
        return check_address_setting(name, value, where)
    return value


_VALUE_CHECKS: dict[str, Callable[[str, str], str]] = {
    "base_url": check_base_url,
    "timezone": check_timezone,
    "no_match_policy": check_no_match_policy,
}


def _coerce(info: SettingInfo, value: Any, source: str) -> Any:
    if info.kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off", ""):
            return False
        raise ConfigError(
            f"{describe_setting(info.name, value, source)} is not true or false",
            hint="write true or false",
        )
    if info.kind in (int, float):
        return _coerce_number(info, value, source)
    if not isinstance(value, str | int | float):
        raise ConfigError(
            f"{describe_setting(info.name, value, source)} is not text",
            hint=f'write it as {info.name} = "value"',
        )
    return str(value)


def _coerce_number(info: SettingInfo, value: Any, source: str) -> int | float:
    what = "a whole number" if info.kind is int else "a number"
    example = "2" if info.kind is int else "0.5"
    number: int | float
    try:
        if isinstance(value, bool):  # TOML true/false is not a count
            raise ValueError
        if info.kind is int:
            if isinstance(value, float):
                if not value.is_integer():
                    raise ValueError
                value = int(value)
            number = int(str(value).strip())
        else:
            number = float(str(value).strip())
            if number != number or number in (float("inf"), float("-inf")):
                raise ValueError
    except ValueError:
        raise ConfigError(
            f"{describe_setting(info.name, value, source)} is not {what}",
            hint=f"write {what}, for example {info.name} = {example}",
        ) from None
    if info.minimum is not None and number < info.minimum:
        raise ConfigError(
            f"{describe_setting(info.name, value, source)} is too small",
            hint=f"use {info.minimum:g} or more",
        )
    return number


def config_file_path(
    explicit: str | Path | None = None, environ: dict[str, str] | None = None
) -> Path:
    """Where ``newsletter.toml`` is: the flag, else ``NEWSLETTER_CONFIG``, else ``./``."""
    if explicit:
        return Path(explicit).expanduser().absolute()
    env = (os.environ if environ is None else environ).get(CONFIG_ENV)
    return Path(env).expanduser().absolute() if env else Path.cwd() / DEFAULT_CONFIG


def load_settings(
    config: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Resolve every setting: defaults < config file < environment < ``overrides``.

    A missing config file is fine (defaults apply); a config file that is not valid TOML
    or names an unknown setting is a :class:`ConfigError`, and so is every bad value: the
    message names the setting, its environment variable and where the value came from
    (``file:line``, the environment, or the command line).
    """
    environ = dict(os.environ) if environ is None else environ
    path = config_file_path(config, environ)
    file_text: str | None = None
    if path.is_file():
        try:
            file_text = path.read_text("utf-8")
        except UnicodeDecodeError as exc:
            bad_line = exc.object[: exc.start].count(b"\n") + 1
            raise ConfigError(
                f"{path}:{bad_line}: not UTF-8 (byte 0x{exc.object[exc.start]:02x})",
                hint="save the file as UTF-8",
            ) from None
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    elif config is not None or CONFIG_ENV in environ:
        raise ConfigError(
            f"config file {path} does not exist", hint="create one with `newsletter init`"
        )
    return _resolve(path, file_text, overrides or {}, environ)


def check_new_config(
    path: Path, values: dict[str, str], environ: dict[str, str] | None = None
) -> None:
    """Check what ``newsletter init`` was given before it writes anything.

    Each of ``values`` (from the command line) is checked as a setting; then the file
    :func:`write_config_file` would write is loaded as it will be, with the environment,
    without writing it (so a bad ``NEWSLETTER_*`` variable is reported now, not after
    the file exists). Raises :class:`ConfigError` naming the setting.
    """
    for name, value in values.items():
        check_value(name, value, "command line")
    environ = dict(os.environ) if environ is None else environ
    _resolve(path, render_config_file(values), {}, environ)


def _resolve(
    path: Path, file_text: str | None, overrides: dict[str, Any], environ: dict[str, str]
) -> Settings:
    """The settings from the text of ``path`` (None: no file), ``environ`` and
    ``overrides``, every value checked."""
    values: dict[str, Any] = {s.name: s.default for s in SETTINGS}
    sources = {s.name: "default" for s in SETTINGS}
    places = dict(sources)  # where each value came from, for messages (file:line)

    file_values: dict[str, Any] = {}
    if file_text is not None:
        try:
            file_values = tomllib.loads(file_text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(
                f"{path}: not valid TOML: {exc}", hint="check quotes and '=' signs"
            ) from None
    for key, value in file_values.items():
        key_line = _toml_line(file_text or "", key)
        at = f"{path}:{key_line}" if key_line else str(path)
        if key not in _BY_NAME:
            close = difflib.get_close_matches(key, list(_BY_NAME), n=1)
            raise ConfigError(
                f"{at}: unknown setting {key!r}",
                hint=f"did you mean {close[0]!r}?" if close else "see the README's table",
            )
        _check_toml_type(_BY_NAME[key], value, at)
        values[key] = _coerce(_BY_NAME[key], value, at)
        sources[key] = str(path)
        places[key] = at

    for name, env in ENV_NAMES.items():
        if env in environ:
            values[name] = _coerce(_BY_NAME[name], environ[env], env)
            sources[name] = places[name] = env

    for name, value in overrides.items():
        if name not in _BY_NAME:
            check_value(name, value, "command line")  # raises: unknown setting
        if value is not None:
            values[name] = _coerce(_BY_NAME[name], value, "command line")
            sources[name] = places[name] = "command line"

    # The rules of single settings run on the final values: a bad value in the file
    # that the environment or a flag replaces is not used, so it is not an error.
    for name in _BY_NAME:
        values[name] = _check_rule(name, values[name], places[name])

    root = path.parent if file_text is not None else Path.cwd()
    values["database_url"] = _absolute_sqlite(values["database_url"], root)
    values["smtp_url"] = _absolute_outbox(values["smtp_url"], root)
    for name in ("dkim_key_file", "dkim_ed25519_key_file"):
        if values[name]:
            key_file = Path(values[name]).expanduser()
            values[name] = str(key_file if key_file.is_absolute() else root / key_file)
    for key in ("issues_dir", "templates_dir"):
        p = Path(values[key]).expanduser()
        values[key] = p if p.is_absolute() else root / p
    return Settings(
        **values,
        root=root,
        config_path=path if file_text is not None else None,
        sources=sources,
    )


def _absolute_sqlite(url: str, root: Path) -> str:
    """Make a relative SQLite path relative to the project folder, not the process cwd."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
        rel = url[len(prefix) :]
        return prefix + str(root / rel)
    return url


def _absolute_outbox(url: str, root: Path) -> str:
    prefix = "outbox:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/"):
        return "outbox://" + str(root / url[len(prefix) :])
    return url


def generate_secret_key() -> str:
    """A fresh random key for signing links."""
    return secrets.token_urlsafe(32)


def render_config_file(values: dict[str, str] | None = None) -> str:
    """The text of a new, commented ``newsletter.toml``."""
    values = dict(values or {})
    values.setdefault("secret_key", generate_secret_key())
    lines = [
        "# newsletter.toml: settings of the monthly research newsletter.",
        "#",
        "# Precedence: defaults < this file < NEWSLETTER_* environment variables < flags.",
        "# Every setting can also be set as NEWSLETTER_<NAME>, e.g. NEWSLETTER_DATABASE_URL.",
        "",
    ]
    for info in SETTINGS:
        lines.append(f"# {info.help}")
        value = values.get(info.name, info.default)
        if info.kind is bool:
            text = "true" if value else "false"
        elif info.kind in (int, float):
            text = repr(info.kind(value))
        else:
            text = _toml_string(str(value))
        commented = not info.in_init and info.name not in values
        lines.append(f"{'# ' if commented else ''}{info.name} = {text}")
        if info.name == "secret_key":
            lines.append("# Keep it secret: anyone with it can forge unsubscribe links.")
        lines.append("")
    return "\n".join(lines)


def _toml_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def write_config_file(
    path: Path, values: dict[str, str] | None = None, force: bool = False
) -> Path:
    """Write a new ``newsletter.toml``; refuses to replace an existing one unless ``force``."""
    if path.exists() and not force:
        raise ConfigError(
            f"{path} already exists", hint="keep it, or pass --force to write a new one"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(render_config_file(values), "utf-8")
    os.chmod(tmp, 0o600)  # it holds the signing key
    tmp.replace(path)
    return path


def default_templates_dir() -> Path:
    """The folder of the templates shipped with the program (email and web)."""
    here = Path(__file__).resolve().parent
    packaged = here / "_templates"  # inside a wheel (see pyproject force-include)
    return packaged if packaged.is_dir() else here.parent / "templates"


def template_dirs(settings: Settings, kind: str) -> list[Path]:
    """Where templates of ``kind`` ("email" or "web") are looked up: the project's own
    folder first (its copies win), then the defaults shipped with the program."""
    folders = [settings.templates_dir / kind, default_templates_dir() / kind]
    return [f for f in dict.fromkeys(folders) if f.is_dir()]
