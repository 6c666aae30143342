"""The web addresses in emails and pages, and whether the public address is secure.

The email templates, the message headers and the web pages build every link from here,
so the paths (``/unsubscribe/<token>`` ...) and the archive layout agree everywhere.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

#: Where each kind of signed link points, below ``base_url``. ``{token}`` is the signed
#: token; the topic link adds the topic's slug (the slug need not be signed: the token
#: already lets its holder manage that subscriber's topics).
LINK_PATHS = {
    "preferences": "/preferences/{token}",
    "unsubscribe": "/unsubscribe/{token}",
    "topic": "/topic/{token}/{slug}",
    # a pending person's own confirmation (kept for links mailed before sign-up requests)
    "confirm": "/confirm/{token}",
    # a sign-up request's confirmation: the token names the request, not a person
    "signup": "/confirm/{token}",
}


def page_url(base_url: str, purpose: str, token: str, **parts: str) -> str:
    """The absolute address of a signed link, e.g. ``{base_url}/unsubscribe/{token}``."""
    return base_url + LINK_PATHS[purpose].format(token=token, **parts)


def archive_url(base_url: str, month: str | None = None, summary_key: str | None = None) -> str:
    """The public archive, one issue of it, or one summary of that issue."""
    url = f"{base_url}/archive"
    if month:
        url += f"/{month}"
        if summary_key:
            url += f"/{summary_key}"
    return url


def is_secure(base_url: str) -> bool:
    """True when the pages are served over https (cookies are then marked Secure)."""
    return base_url.startswith("https://")


def insecure_warning(base_url: str) -> str | None:
    """Why a send to this ``base_url`` deserves a warning, or None when it is https."""
    if is_secure(base_url):
        return None
    return (
        f"base_url is {base_url}: links in the email point there, and mail providers offer "
        "one-click unsubscribe only for https"
    )


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (127.0.0.0/8, ::1): a name only
    this machine reaches, where plain http or SMTP never crosses a network."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def local_http_address(base_url: str) -> bool:
    """True when ``base_url`` is plain http to a loopback host (a test or preview set-up,
    acceptable with a warning); False for https and for http to any other host."""
    parts = urlsplit(base_url)
    return parts.scheme.lower() == "http" and is_loopback_host(parts.hostname or "")
