"""What the DNS records that mail providers read must say (SPF, DKIM, DMARC).

Pure functions over the text of TXT records (each record's strings already joined);
``services.doctor`` asks DNS and judges the answers with these.
"""

from __future__ import annotations

import re

#: The DMARC policies (``p=``) a receiver acts on.
DMARC_POLICIES = ("none", "quarantine", "reject")

_SPF = re.compile(r"v=spf1(?:\s|$)", re.IGNORECASE)
_DMARC = re.compile(r"v\s*=\s*DMARC1\s*(?:;|$)", re.IGNORECASE)


def tags(record: str) -> dict[str, str]:
    """The ``tag=value`` pairs of a DKIM or DMARC record (``v=DKIM1; k=rsa; p=...``).

    Tag names are lower-cased; values keep their case, with surrounding spaces removed.
    A part without ``=`` is ignored; the first of a repeated tag wins.
    """
    found: dict[str, str] = {}
    for part in record.split(";"):
        name, sep, value = part.partition("=")
        if sep and name.strip():
            found.setdefault(name.strip().lower(), value.strip())
    return found


def spf_records(txt: list[str]) -> list[str]:
    """The SPF records among a domain's TXT records (those starting ``v=spf1``).

    A domain must publish exactly one: none means receivers cannot tell who may send
    for it, two or more is an SPF ``permerror`` (RFC 7208, 4.5).
    """
    return [r for r in txt if _SPF.match(r.strip())]


def dmarc_records(txt: list[str]) -> list[str]:
    """The DMARC records among the TXT records of ``_dmarc.<domain>`` (``v=DMARC1``)."""
    return [r for r in txt if _DMARC.match(r.strip())]


def dmarc_policy(record: str) -> str | None:
    """The ``p=`` policy of a DMARC record, lower-case, or None when it has no valid one."""
    policy = tags(record).get("p", "").lower()
    return policy if policy in DMARC_POLICIES else None


def dkim_public_key(record: str) -> str | None:
    """The base64 text of the ``p=`` tag of a DKIM key record, spaces removed.

    None when the record has no ``p=`` tag; "" when the key is revoked (an empty ``p=``).
    """
    value = tags(record).get("p")
    return None if value is None else "".join(value.split())
