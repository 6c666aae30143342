"""Which field each column of a subscriber CSV file fills: our own names and those of
the tools people move from (Mailchimp, listmonk, Substack, Buttondown, Mailman 3).

Headers are compared by :func:`column_key`: lower case, every character but letters and
digits dropped, so ``Email Address``, ``email_address`` and ``E-mail address`` are one
name. A column the tables do not know is ignored and listed in the report, unless its
name is one typing slip away from one of our field names (``nmae``): that is refused, as
ignoring it would quietly import every row without the field it was meant to fill.
``--map "Column=field"`` decides a column's field whatever the tables say (``ignore``
drops it).

Status words of the other tools are read into ours (:data:`STATUS_WORDS`). A row that
says its person no longer gets mail (unsubscribed, blocklisted, cleaned, bounced, an
unsubscribe or clean time, ``email_disabled``) is imported as ``unsubscribed`` or
``bounced``, never as active; a stricter word always wins over a looser one.
"""

from __future__ import annotations

import csv
import functools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from newsletter.content.taxonomy import resolve_topics
from newsletter.errors import NewsletterError, UnknownTopicError

#: The fields a column can fill. Besides the subscriber's own fields: ``first_name`` and
#: ``last_name`` (joined into the name when there is no name), ``tags`` (topic names or
#: slugs among other tags), ``email_disabled`` (true: unsubscribed), ``subscribed``
#: (false: unsubscribed), ``cleaned_at`` (a time: bounced), and ``ignore``.
OWN_FIELDS = (
    "email",
    "name",
    "status",
    "topics",
    "all_topics",
    "paused_until",
    "source",
    "created_at",
    "confirmed_at",
    "unsubscribed_at",
)
EXTRA_FIELDS = (
    "first_name",
    "last_name",
    "tags",
    "email_disabled",
    "subscribed",
    "cleaned_at",
    "ignore",
)
FIELDS = OWN_FIELDS + EXTRA_FIELDS

_IGNORE = "ignore"

#: (tool, its column names, the field each fills) — the README's table is made from this.
KNOWN_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("any", "E-mail, Email Address, E-mail Address", "email"),
    ("any", "Full Name", "name"),
    ("any", "First Name, Given Name", "first_name"),
    ("any", "Last Name, Surname, Family Name", "last_name"),
    ("Mailchimp", "Email Address", "email"),
    ("Mailchimp", "First Name, Last Name", "first_name, last_name"),
    ("Mailchimp", "OPTIN_TIME", "created_at"),
    ("Mailchimp", "CONFIRM_TIME", "confirmed_at"),
    ("Mailchimp", "UNSUB_TIME", "unsubscribed_at (and status unsubscribed)"),
    ("Mailchimp", "CLEAN_TIME", "cleaned_at (status bounced)"),
    ("Mailchimp", "TAGS", "tags"),
    ("listmonk", "email, name, status, created_at", "the same"),
    ("Substack", "email, created_at", "the same"),
    ("Substack", "email_disabled", "email_disabled (true: unsubscribed)"),
    ("Buttondown", "email, email_address", "email"),
    ("Buttondown", "creation_date", "created_at"),
    ("Buttondown", "subscriber_type", "status"),
    ("Buttondown", "tags", "tags"),
    ("Mailman 3", "email, display_name", "email, name"),
    ("others", "state, subscription_status, subscriber_status, member_status", "status"),
    ("others", "subscribed, subscribed_to_emails, is_subscribed, opted_in", "subscribed"),
    ("others", "unsubscribed", "email_disabled (true: unsubscribed)"),
    ("others", "subscribed_at, signup_date, date_added", "created_at"),
    ("others", "labels, groups", "tags"),
)

_ALIASES: dict[str, str] = {
    **{name: name for name in OWN_FIELDS},
    # written without the underscore
    "alltopics": "all_topics",
    "pauseduntil": "paused_until",
    "createdat": "created_at",
    "confirmedat": "confirmed_at",
    "unsubscribedat": "unsubscribed_at",
    # any tool, and people's own spreadsheets
    "emailaddress": "email",
    "fullname": "name",
    "displayname": "name",  # Mailman 3
    "firstname": "first_name",
    "givenname": "first_name",
    "lastname": "last_name",
    "surname": "last_name",
    "familyname": "last_name",
    "tags": "tags",
    # Mailchimp (audience export: subscribed, unsubscribed and cleaned files)
    "optintime": "created_at",
    "confirmtime": "confirmed_at",
    "unsubtime": "unsubscribed_at",
    "cleantime": "cleaned_at",
    # Substack
    "emaildisabled": "email_disabled",
    # Buttondown
    "creationdate": "created_at",
    "subscribertype": "status",
    # listmonk (email, name, status, created_at are ours already)
    # other tools' common names (Ghost, Kit, MailerLite, beehiiv, ...)
    "state": "status",  # Kit
    "subscriptionstatus": "status",
    "subscriberstatus": "status",
    "memberstatus": "status",
    "subscribedtoemails": "subscribed",
    "issubscribed": "subscribed",
    "subscribed": "subscribed",
    "optedin": "subscribed",
    "unsubscribed": "email_disabled",
    "subscribedat": "created_at",
    "signupdate": "created_at",
    "dateadded": "created_at",
    "labels": "tags",
    "groups": "tags",
}

#: Status words of other tools -> ours. Ours map to themselves.
STATUS_WORDS: dict[str, str] = {
    "active": "active",
    "pending": "pending",
    "paused": "paused",
    "unsubscribed": "unsubscribed",
    "bounced": "bounced",
    # Mailchimp (the API's and the export's words)
    "subscribed": "active",
    "cleaned": "bounced",
    # listmonk
    "enabled": "active",
    "disabled": "unsubscribed",
    "blocklisted": "unsubscribed",
    # Buttondown's subscriber_type
    "regular": "active",
    "premium": "active",
    "gifted": "active",
    "trialed": "active",
    "churned": "active",  # a paid plan ended; the free newsletter still goes to them
    "unactivated": "pending",
    "removed": "unsubscribed",
    "complained": "unsubscribed",
    "blocked": "unsubscribed",
    "spammy": "unsubscribed",
    "undeliverable": "bounced",
    # words other tools use
    "confirmed": "active",
    "optedin": "active",
    "unconfirmed": "pending",
    "validating": "pending",
    "inactive": "unsubscribed",
    "cancelled": "unsubscribed",
    "canceled": "unsubscribed",
    "optedout": "unsubscribed",
    "optout": "unsubscribed",
    "deleted": "unsubscribed",
    "junk": "unsubscribed",
    "complaint": "unsubscribed",
    "spam": "unsubscribed",
    "bounce": "bounced",
    "hardbounce": "bounced",
    "hardbounced": "bounced",
}


def status_word(word: str) -> str | None:
    """Our status for a status cell's word (any case, punctuation ignored), or None."""
    found = STATUS_WORDS.get(word)
    return found if found is not None else STATUS_WORDS.get(column_key(word))


#: How final each status is: of two statuses a row gives, the higher wins.
_STRICTNESS = {"active": 0, "paused": 1, "pending": 2, "unsubscribed": 3, "bounced": 4}


def stricter(a: str | None, b: str | None) -> str | None:
    """Of two statuses (None: not said), the one that mails the person less."""
    if a is None or b is None:
        return a or b
    return a if _STRICTNESS[a] >= _STRICTNESS[b] else b


class ColumnError(NewsletterError):
    """A header or a ``--map`` that cannot be applied; raised before anything is written."""


def column_key(header: str) -> str:
    """The form headers are compared in: lower case, letters and digits only."""
    return re.sub(r"[\W_]+", "", header.strip().lstrip("\ufeff").lower())


def _one_slip(a: str, b: str) -> bool:
    """True when ``a`` becomes ``b`` by one insertion, deletion, change or swap of two
    neighbouring letters (and the names are long enough for that to mean a typo)."""
    if a == b or min(len(a), len(b)) < 4 or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        if len(diff) == 1:
            return True
        i = diff[0]
        return len(diff) == 2 and diff[1] == i + 1 and a[i] == b[i + 1] and a[i + 1] == b[i]
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    return any(long_[:i] + long_[i + 1 :] == short for i in range(len(long_)))


def _slip_of(key: str) -> str | None:
    """Our field name that ``key`` is one slip away from, if any."""
    for name in (*OWN_FIELDS, "first_name", "last_name"):
        if _one_slip(key, name.replace("_", "")):
            return name
    return None


@dataclass
class Header:
    """What each column of a file fills (None: ignored), and how it was decided."""

    fields: list[str | None]
    #: (the file's column, the field), in the file's order, ignored columns left out
    mapping: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def parse_overrides(pairs: Iterable[str]) -> dict[str, str]:
    """``--map`` values (``Column Name=field``) as {column key: field}; a bad one is a
    :class:`ColumnError`."""
    found: dict[str, str] = {}
    for pair in pairs:
        column, sep, target = pair.rpartition("=")
        target = target.strip().lower()
        if not sep or not column.strip():
            raise ColumnError(
                f"--map {pair!r}: write it as COLUMN=FIELD",
                hint='e.g. --map "E-Mail Adresse=email"',
            )
        if target not in FIELDS:
            raise ColumnError(
                f"--map {pair!r}: unknown field {target!r}",
                hint="fields: " + ", ".join(FIELDS),
            )
        found[column_key(column)] = target
    return found


def read_header(cells: list[str], name: str, overrides: dict[str, str] | None = None) -> Header:
    """The field of each header cell of file ``name``; :class:`ColumnError` (line 1) for a
    header that cannot be imported: no email column, a field filled twice, a ``--map``
    naming a column the file lacks, a column one typing slip from a field name."""
    overrides = overrides or {}
    keys = [column_key(c) for c in cells]
    missing = [k for k in overrides if k not in keys]
    if missing:
        raise ColumnError(
            f"{name}: line 1: --map names a column the file does not have ({missing[0]!r})",
            hint="the file's columns: " + ", ".join(c.strip() for c in cells),
        )
    header = Header([])
    for cell, key in zip(cells, keys, strict=True):
        shown = cell.strip().lstrip("\ufeff")
        target = overrides.get(key) or _ALIASES.get(key)
        if target is None:
            slip = _slip_of(key)
            if slip is not None:
                raise ColumnError(
                    f"{name}: line 1: unknown column {shown!r} (did you mean {slip!r}?)",
                    hint=f'rename the column, or pass --map "{shown}={slip}" '
                    f'(or --map "{shown}=ignore")',
                )
            target = _IGNORE
        if target == _IGNORE:
            header.fields.append(None)
            if shown and shown not in header.ignored:
                header.ignored.append(shown)
            continue
        header.fields.append(target)
        header.mapping.append((shown, target))
    filled = [f for f in header.fields if f is not None]
    twice = sorted({f for f in filled if filled.count(f) > 1})
    if twice:
        cols = [c for c, f in header.mapping if f == twice[0]]
        if len(set(map(column_key, cols))) == 1:
            message = f"{name}: line 1: column {cols[0]!r} appears twice"
            hint = "remove one of them"
        else:
            message = f"{name}: line 1: columns {', '.join(map(repr, cols))} all fill {twice[0]!r}"
            hint = f'keep one: e.g. --map "{cols[-1]}=ignore"'
        raise ColumnError(message, hint=hint)
    if "email" not in filled:
        raise ColumnError(
            f"{name}: line 1: no 'email' column",
            hint="the first line must name the columns, e.g. email,name,topics; or say "
            'which column holds the address: --map "Column Name=email"',
        )
    return header


@functools.lru_cache(maxsize=1024)
def tag_topics(cell: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(topic slugs, tags that are not topics) of a tags cell.

    Mailchimp quotes each tag (``"CBT","VIP"``), Buttondown may write a JSON list; plain
    ``,`` or ``;`` lists work too. Cached: a file repeats a few tag sets.
    """
    text = cell.strip()
    items: list[str] = []
    if text.startswith("["):
        try:
            loaded = json.loads(text)
            items = [str(x) for x in loaded] if isinstance(loaded, list) else []
        except ValueError:
            items = []
    if not items:
        for part in next(csv.reader([text], skipinitialspace=True), []):
            items += part.split(";")
    slugs: list[str] = []
    unknown: list[str] = []
    for item in items:
        tag = item.strip().strip("[]\"'").strip()
        if not tag:
            continue
        try:
            found = resolve_topics(tag)
        except UnknownTopicError:
            unknown.append(tag)
            continue
        slugs += [s for s in found if s not in slugs]
    return tuple(slugs), tuple(unknown)
