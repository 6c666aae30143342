"""The one rule for email addresses: what may be stored, and therefore what is sent.

An address is stored in the form it is sent in: lower case, a plain ASCII local part (a
dot-atom: no quotes, no spaces) and an ASCII domain, internationalised domains in their
``xn--`` form (``ann@bücher.de`` is stored as ``ann@xn--bcher-kva.de``). Local parts with
non-ASCII letters are refused here, at the door, because most mail servers refuse them
(SMTPUTF8) and a message could not be addressed to them.

:func:`normalise_address` is used by everything that takes an address from a person (the
CLI, the CSV import, the sign-up form); :func:`is_sendable` is the cheap check the message
builder makes on each recipient. Whatever the first returns, the second accepts (a
property test checks it).
"""

from __future__ import annotations

import functools
import re

from email_validator import EmailNotValidError, validate_email

from newsletter.errors import NewsletterError

MAX_ADDRESS = 254  # RFC 5321's limit on a path, the angle brackets excluded
MAX_LOCAL = 64

# An unquoted ASCII local part (RFC 5322 dot-atom): the shape of nearly every address.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = re.compile(rf"^{_ATOM}(?:\.{_ATOM})*$")
# What can be written into a header and an SMTP envelope: a dot-atom local part and ASCII
# domain labels (any case: settings such as sender_address are written by people).
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_SENDABLE = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})*")
HINT = "check for typos, spaces and a missing @ or domain"


class InvalidAddressError(NewsletterError):
    """A text is not an email address this program can store and send to."""


def normalise_address(text: str) -> str:
    """The stored (and sent) form of an address typed by a person.

    Raises :class:`InvalidAddressError` with the reason for anything that is not an
    address, or that could not be sent to (quoted or non-ASCII local parts, IP literals).
    """
    value = text.strip()
    if not value:
        raise InvalidAddressError("no email address given", hint="write it as name@example.org")
    local, at, domain = value.rpartition("@")
    if at and len(value) <= MAX_ADDRESS and len(local) <= MAX_LOCAL and _DOT_ATOM.match(local):
        # Fast path for imports: a plain local part needs no more checking than the
        # pattern, and the (costly, IDNA) domain check is made once per distinct domain.
        checked = _checked_domain(domain)
        if checked is not None:
            return f"{local}@{checked}".lower()
    return _validate(value)


@functools.lru_cache(maxsize=4096)
def _checked_domain(domain: str) -> str | None:
    """The domain's ASCII form if it is valid, else None (the full check explains why)."""
    try:
        return _validate("postmaster@" + domain).partition("@")[2]
    except InvalidAddressError:
        return None


def _validate(value: str) -> str:
    try:
        info = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidAddressError(
            f"{value!r} is not a valid email address: {exc}", hint=HINT
        ) from None
    if info.ascii_email is None:
        raise InvalidAddressError(
            f"{value!r} is not a valid email address: it has letters outside ASCII before "
            "the @-sign, which most mail servers refuse",
            hint="ask the person for an address without accented or non-Latin letters",
        )
    address = info.ascii_email.lower()
    if not _SENDABLE.fullmatch(address):  # pragma: no cover - email-validator is stricter
        raise InvalidAddressError(f"{value!r} is not a valid email address", hint=HINT)
    return address


def is_sendable(address: str) -> bool:
    """True when ``address`` can be written into a header and an SMTP envelope as it is.

    Every address :func:`normalise_address` returns is sendable.
    """
    return len(address) <= MAX_ADDRESS and _SENDABLE.fullmatch(address) is not None


def lookup_key(text: str) -> str:
    """The stored form of an address typed to find someone (no error if it is invalid)."""
    try:
        return normalise_address(text)
    except InvalidAddressError:
        return text.strip().lower()


def mailbox_key(address: str) -> str:
    """One key per mailbox, for counting requests: ``ann+news@Example.org`` and
    ``ann@example.org`` reach the same person, so they count as one (``+tag`` removed,
    domain case-folded; a local part that is only a tag is kept whole)."""
    local, at, domain = address.strip().rpartition("@")
    if not at:
        return address.strip().casefold()
    base = local.split("+", 1)[0] or local
    return f"{base}@{domain.casefold()}"
