"""Transports: the one place that hands finished messages to a mail server or a folder.

- :mod:`~newsletter.delivery.transports.base`: the interface (:class:`Transport`,
  :class:`OutgoingMessage`, :class:`SendOutcome` and what its statuses mean), with no
  SMTP in it;
- :mod:`~newsletter.delivery.transports.registry`: which factory makes the transport for
  a URL scheme;
- :mod:`~newsletter.delivery.transports.smtp` (``smtp://``, ``smtps://``) and
  :mod:`~newsletter.delivery.transports.outbox` (``outbox://``): the built-in transports.

Build the configured transport with :func:`open_transport`; close it (or use ``with``)
when done. Adding a way to send (an HTTP API provider, say) is one new module in this
package that subclasses :class:`Transport` and registers its scheme with
:func:`registry.register`: every module here is imported with the package.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING

from newsletter.config import redact_url
from newsletter.delivery.dkimsign import DkimSigner
from newsletter.delivery.transports import registry
from newsletter.delivery.transports.base import (
    STATUSES,
    EnvelopeError,
    OutgoingMessage,
    SendOutcome,
    Status,
    Transport,
    TransportClosedError,
    TransportConfigError,
    validate_envelope,
)
from newsletter.delivery.transports.outbox import (
    OutboxTransport,
    outbox_file_name,
    parse_outbox_url,
)
from newsletter.delivery.transports.smtp import (
    SmtpAuthError,
    SmtpTransport,
    TransportConfig,
    classify_code,
    parse_smtp_url,
)

if TYPE_CHECKING:
    from newsletter.config import Settings

# Every other module of this package is a transport that registers its scheme when it is
# imported, so a new one needs no line anywhere else.
_BUILT_IN = frozenset({"base", "registry", "smtp", "outbox"})
for _module in pkgutil.iter_modules(__path__):
    if _module.name not in _BUILT_IN:
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "STATUSES",
    "EnvelopeError",
    "OutboxTransport",
    "OutgoingMessage",
    "SendOutcome",
    "SmtpAuthError",
    "SmtpTransport",
    "Status",
    "Transport",
    "TransportClosedError",
    "TransportConfig",
    "TransportConfigError",
    "classify_code",
    "open_transport",
    "outbox_file_name",
    "parse_outbox_url",
    "parse_smtp_url",
    "redact_url",
    "registry",
    "validate_envelope",
]


def open_transport(settings: Settings) -> Transport:
    """The transport ``settings.smtp_url`` names, DKIM-signing when the settings say so.

    The scheme picks the factory from the :mod:`registry` (SMTP with its pool and rate
    limit, the outbox, or any registered module). Opens no connection yet (the first
    :meth:`Transport.send` does); raises :class:`~newsletter.errors.ConfigError` for a bad
    URL or DKIM setting.
    """
    transport = registry.factory_for(settings.smtp_url)(settings.smtp_url, settings)
    try:
        signer = DkimSigner.from_settings(settings)
    except BaseException:
        transport.close()
        raise
    if signer is not None:
        transport.signer = signer
    return transport
