"""DNS look-ups for ``newsletter doctor`` (dnspython): TXT and MX records of a name.

(Not called ``dns.py``, so that it can never shadow dnspython's ``dns``.)

:class:`DnsLookup` asks the system's resolvers, or one given name server
(``HOST:PORT``, e.g. a test server on 127.0.0.1). "No such name" and "no record of that
type" are answers (an empty list); a resolver that cannot be reached or does not answer
raises :class:`DnsUnavailableError`, and once that happened every later question raises it
at once, so a machine without DNS waits for one timeout, not one per check.
"""

from __future__ import annotations

import ipaddress

import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver

from newsletter.errors import ConfigError, NewsletterError


class DnsUnavailableError(NewsletterError):
    """No answer from DNS at all (not "no such record"): the check cannot be made."""


def parse_nameserver(text: str) -> tuple[str, int]:
    """``HOST`` or ``HOST:PORT`` (``[v6]:PORT`` for IPv6) as (IP address, port).

    The host must be an IP address: a name server named by a name would need DNS to be
    found. :class:`ConfigError` if the text is not such an address.
    """
    hint = "give an IP address and optionally a port, e.g. 127.0.0.1:5353 or 9.9.9.9"
    raw = text.strip()
    host, port_text = raw, ""
    if raw.startswith("["):
        host, _, rest = raw[1:].partition("]")
        port_text = rest.removeprefix(":")
    elif raw.count(":") == 1:
        host, _, port_text = raw.partition(":")
    try:
        ipaddress.ip_address(host)
        port = int(port_text) if port_text else 53
        if not 0 < port < 65536:
            raise ValueError
    except ValueError:
        raise ConfigError(f"name server {text!r} is not an IP address[:port]", hint=hint) from None
    return host, port


class DnsLookup:
    """Asks DNS for TXT and MX records; see the module docstring.

    ``nameserver``: ``HOST[:PORT]`` of the one server to ask (None: the system's
    resolvers, from /etc/resolv.conf). ``timeout``: seconds for one question in all.
    """

    def __init__(self, nameserver: str | None = None, timeout: float = 5.0) -> None:
        self.nameserver = nameserver
        self._unavailable: str | None = None
        if nameserver:
            host, port = parse_nameserver(nameserver)
            self._resolver = dns.resolver.Resolver(configure=False)
            self._resolver.nameservers = [host]
            self._resolver.port = port
        else:
            try:
                self._resolver = dns.resolver.Resolver()
            except dns.resolver.NoResolverConfiguration:
                self._resolver = dns.resolver.Resolver(configure=False)
                self._unavailable = "this machine has no DNS resolver configured"
        self._resolver.lifetime = timeout
        self._resolver.timeout = timeout

    @property
    def server(self) -> str:
        """Which server is asked, for messages."""
        return self.nameserver or "the system's resolver"

    def txt(self, name: str) -> list[str]:
        """The TXT records of ``name``, each with its strings joined (as SPF, DKIM and
        DMARC read them); [] when there is none."""
        records = []
        for rdata in self._ask(name, "TXT"):
            strings = getattr(rdata, "strings", ())
            records.append(b"".join(strings).decode("utf-8", "replace"))
        return records

    def mx(self, name: str) -> list[tuple[int, str]]:
        """The MX records of ``name`` as (preference, host without the final dot),
        lowest preference first; [] when there is none."""
        found = []
        for rdata in self._ask(name, "MX"):
            exchange = getattr(rdata, "exchange", dns.name.root)
            found.append((int(getattr(rdata, "preference", 0)), exchange.to_text().rstrip(".")))
        return sorted(found)

    def _ask(self, name: str, rdtype: str) -> list[object]:
        if self._unavailable:
            raise DnsUnavailableError(self._unavailable)
        try:
            answer = self._resolver.resolve(name, dns.rdatatype.from_text(rdtype), search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.resolver.NoNameservers:
            # Every server refused or failed (SERVFAIL, REFUSED, connection refused).
            self._unavailable = f"{self.server} gave no usable answer for {name} {rdtype}"
            raise DnsUnavailableError(self._unavailable) from None
        except dns.exception.Timeout:
            self._unavailable = f"{self.server} did not answer within {self._resolver.lifetime:g} s"
            raise DnsUnavailableError(self._unavailable) from None
        except dns.exception.DNSException as exc:
            raise DnsUnavailableError(f"DNS look-up of {name} {rdtype} failed: {exc}") from None
        return list(answer)
