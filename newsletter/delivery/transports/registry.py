"""Which transport ``smtp_url`` names: factories registered by URL scheme.

Each transport module registers a factory for its schemes when it is imported::

    @register("smtp", "smtps")
    def _open(url: str, settings: Settings) -> Transport: ...

:func:`newsletter.delivery.transports.open_transport` looks the scheme of ``smtp_url`` up
here (the package imports the built-in modules, so they are always registered). Adding a
way to send, such as an HTTP API provider, is one new module that registers its scheme;
the error for an unknown scheme lists every registered one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from newsletter.config import redact_url
from newsletter.errors import ConfigError

if TYPE_CHECKING:
    from newsletter.config import Settings
    from newsletter.delivery.transports.base import Transport

#: Makes the transport for ``smtp_url`` (``url``) from the settings; raises ConfigError
#: for a URL it cannot use. It should open no connection yet (the first send does).
Factory = Callable[[str, "Settings"], "Transport"]
F = TypeVar("F", bound=Factory)

#: The hint of every ``smtp_url`` error: how the built-in forms are written.
URL_HINT = (
    "write smtp://user:password@host:port (add ?starttls=true for port 587), "
    "smtps://user:password@host:465, or outbox:///folder; percent-encode special "
    "characters in the user name and password (@ is %40, : is %3A, / is %2F)"
)

_factories: dict[str, Factory] = {}  # scheme -> factory, in the order registered


def register(*schemes: str) -> Callable[[F], F]:
    """Decorator: ``factory`` makes the transport for URLs with these ``schemes``.

    Schemes are lower-case names without ``://``. Registering a scheme that another
    factory holds raises ``ValueError`` (:func:`unregister` it first).
    """
    if not schemes:
        raise ValueError("register() needs at least one URL scheme")
    for scheme in schemes:
        if not scheme or scheme != scheme.strip().lower() or ":" in scheme or "/" in scheme:
            raise ValueError(f"{scheme!r} is not a lower-case URL scheme such as 'smtp'")

    def decorate(factory: F) -> F:
        for scheme in schemes:
            held = _factories.get(scheme)
            if held is not None and held is not factory:
                raise ValueError(f"the URL scheme {scheme!r} is already registered to {held!r}")
        for scheme in schemes:
            _factories[scheme] = factory
        return factory

    return decorate


def unregister(*schemes: str) -> None:
    """Forget the factories of ``schemes`` (unknown schemes are ignored)."""
    for scheme in schemes:
        _factories.pop(scheme, None)


# The built-in schemes come first, in this order, wherever schemes are listed.
_BUILT_IN_ORDER = ("smtp", "smtps", "outbox")


def schemes() -> tuple[str, ...]:
    """The registered URL schemes: the built-in ones first, then others as registered."""
    built_in = [s for s in _BUILT_IN_ORDER if s in _factories]
    return (*built_in, *(s for s in _factories if s not in _BUILT_IN_ORDER))


def scheme_of(url: str) -> str:
    """The lower-case scheme of ``url`` (the part before ``://``), or "" if it has none."""
    scheme, sep, _ = url.strip().partition("://")
    return scheme.lower() if sep else ""


def unknown_scheme_error(url: str, accepted: tuple[str, ...]) -> ConfigError:
    """The error for an ``smtp_url`` whose scheme is not one of ``accepted``.

    For the built-in set it reads: "smtp_url '...' is not an smtp://, smtps:// or
    outbox:// address". The URL is shown without its password.
    """
    forms = [f"{scheme}://" for scheme in accepted]
    listed = ", ".join(forms[:-1]) + " or " + forms[-1] if len(forms) > 1 else "".join(forms)
    return ConfigError(
        f"smtp_url {redact_url(url)!r} is not an {listed} address",
        hint=URL_HINT,
    )


def factory_for(url: str) -> Factory:
    """The factory registered for the scheme of ``url``; ConfigError if there is none."""
    factory = _factories.get(scheme_of(url))
    if factory is None:
        raise unknown_scheme_error(url, schemes())
    return factory
