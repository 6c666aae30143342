"""Does a domain receive mail? A DNS look-up, for imports that ask for it (``--check-dns``)."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email

from newsletter.rules.addresses import HINT, InvalidAddressError


def check_deliverable(address: str) -> None:
    """:class:`InvalidAddressError` when the address's domain has no mail server (DNS)."""
    try:
        validate_email(address, check_deliverability=True)
    except EmailNotValidError as exc:
        raise InvalidAddressError(
            f"{address!r} is not a valid email address: {exc}", hint=HINT
        ) from None
