"""``newsletter doctor``: is this set-up ready for a real send? Each check returns plain data.

Every check is one function taking the settings (and, for DNS, a
:class:`~newsletter.delivery.dnslookup.DnsLookup`) and returning a :class:`Check`:
``ok``, ``fail`` (with a one-line ``fix``), ``warn`` (usable, but see the fix) or ``skip``
(could not be checked here, e.g. DNS unreachable). :func:`run_doctor` loads the settings
and runs them all in a fixed order; only ``fail`` makes the report fail. What each check
means and how to fix it is in the README (`newsletter doctor`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from newsletter.config import ENV_NAMES, Settings, load_settings
from newsletter.delivery.dkimsign import DkimSigner
from newsletter.delivery.dnslookup import DnsLookup, DnsUnavailableError
from newsletter.delivery.probe import probe_transport
from newsletter.errors import ConfigError, NewsletterError
from newsletter.rules.links import is_secure, local_http_address
from newsletter.rules.mail_records import (
    dkim_public_key,
    dmarc_policy,
    dmarc_records,
    spf_records,
    tags,
)
from newsletter.services.setup import store_status

Status = Literal["ok", "warn", "fail", "skip"]

#: Settings a real send cannot do without (``secret_key`` signs the unsubscribe links).
REQUIRED_FOR_SENDING = ("sender_address", "postal_address", "base_url", "secret_key")

_NO_DNS_FIX = "run doctor where DNS is reachable, or name a resolver with --nameserver"


@dataclass(frozen=True)
class Check:
    """The result of one check. ``check`` is its short name (``store``, ``spf``...)."""

    check: str
    title: str
    status: Status
    detail: str
    fix: str = ""

    @property
    def ok(self) -> bool:
        """False only for ``fail``: a warning or a skipped check does not fail doctor."""
        return self.status != "fail"

    def to_dict(self) -> dict[str, Any]:
        """The check as JSON data: check, title, status, ok, detail, fix."""
        return {**asdict(self), "ok": self.ok}


@dataclass(frozen=True)
class DoctorReport:
    """Every check, in the order they ran."""

    checks: list[Check]

    @property
    def ok(self) -> bool:
        """True when no check failed."""
        return all(c.ok for c in self.checks)

    def count(self, status: Status) -> int:
        """How many checks ended with ``status``."""
        return sum(1 for c in self.checks if c.status == status)

    def to_list(self) -> list[dict[str, Any]]:
        """The checks as JSON data (``newsletter doctor --json``)."""
        return [c.to_dict() for c in self.checks]


#: (name, title) of every check, in the order run_doctor runs them.
CHECKS = (
    ("settings", "Settings complete for a real send"),
    ("store", "Subscriber store reachable and up to date"),
    ("transport", "Mail transport usable"),
    ("base_url", "Links use https"),
    ("dkim", "DKIM key loads and matches DNS"),
    ("spf", "SPF record of the sender domain"),
    ("dmarc", "DMARC record of the sender domain"),
    ("bounce_mx", "Bounce domain receives mail (MX)"),
)
_TITLES = dict(CHECKS)


def _result(name: str, status: Status, detail: str, fix: str = "") -> Check:
    return Check(name, _TITLES[name], status, detail, fix)


def run_doctor(
    config: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    *,
    nameserver: str | None = None,
    dns_timeout: float = 5.0,
) -> DoctorReport:
    """Load the settings and run every check of :data:`CHECKS`.

    Settings that do not load are the first check's failure (the others are skipped),
    not an exception. ``nameserver`` (``HOST[:PORT]``) is the DNS server to ask instead
    of the system's; a bad one is a :class:`ConfigError` before anything is checked.
    """
    lookup = DnsLookup(nameserver, timeout=dns_timeout)
    try:
        settings = load_settings(config, overrides)
    except ConfigError as exc:
        first = _result("settings", "fail", exc.message, exc.hint or "")
        why = "not checked: the settings did not load"
        return DoctorReport([first, *(_result(name, "skip", why) for name, _ in CHECKS[1:])])
    return run_checks(settings, lookup)


def run_checks(settings: Settings, lookup: DnsLookup) -> DoctorReport:
    """Every check of :data:`CHECKS` on ``settings``, asking DNS through ``lookup``."""
    return DoctorReport(
        [
            check_settings(settings),
            check_store(settings),
            check_transport(settings),
            check_base_url(settings),
            check_dkim(settings, lookup),
            check_spf(settings, lookup),
            check_dmarc(settings, lookup),
            check_bounce_mx(settings, lookup),
        ]
    )


# --- the checks --------------------------------------------------------------------------


def check_settings(settings: Settings) -> Check:
    """The settings a real send needs are set (:data:`REQUIRED_FOR_SENDING`)."""
    missing = [
        name
        for name in REQUIRED_FOR_SENDING
        if not (settings.secret_keys if name == "secret_key" else getattr(settings, name))
    ]
    if missing:
        named = ", ".join(f"{name} ({ENV_NAMES[name]})" for name in missing)
        return _result(
            "settings",
            "fail",
            f"not set: {named}",
            "set them in newsletter.toml or as environment variables "
            "(`newsletter init` writes a secret key)",
        )
    where = settings.config_path or "defaults and the environment"
    return _result("settings", "ok", f"from {where}; sender {settings.sender_address}")


def check_store(settings: Settings) -> Check:
    """The store of ``database_url`` can be opened and is at the newest revision."""
    try:
        status = store_status(settings.database_url)
    except NewsletterError as exc:
        return _result("store", "fail", exc.message, exc.hint or "check database_url")
    if status.current is None:
        return _result(
            "store",
            "fail",
            f"{status.url} has no tables yet",
            "run `newsletter db upgrade`",
        )
    if not status.up_to_date:
        return _result(
            "store",
            "fail",
            f"{status.url} is at revision {status.current}, this version needs {status.head}",
            "back up the store, then run `newsletter db upgrade`",
        )
    return _result("store", "ok", f"{status.url} at revision {status.current} (the newest)")


def check_transport(settings: Settings) -> Check:
    """The transport of ``smtp_url`` works: an SMTP login, or a writable outbox folder."""
    probe = probe_transport(settings)
    return _result("transport", probe.status, probe.detail, probe.fix)


def check_base_url(settings: Settings) -> Check:
    """``base_url`` is https; plain http is a warning for this machine only, else a fail."""
    url = settings.base_url
    if is_secure(url):
        return _result("base_url", "ok", url)
    if local_http_address(url):
        return _result(
            "base_url",
            "warn",
            f"{url} is plain http on this machine: links work only here",
            "set base_url to the public https:// address of the web pages",
        )
    return _result(
        "base_url",
        "fail",
        f"{url} is plain http: providers offer one-click unsubscribe only for https",
        "serve the pages over https and set base_url = https://...",
    )


def check_dkim(settings: Settings, lookup: DnsLookup) -> Check:
    """With DKIM configured: the private key loads and DNS publishes its public half at
    ``<dkim_selector>._domainkey.<dkim_domain>``. Without: a warning."""
    try:
        signer = DkimSigner.from_settings(settings)
    except ConfigError as exc:
        return _result("dkim", "fail", exc.message, exc.hint or "check the dkim_* settings")
    if signer is None:
        return _result(
            "dkim",
            "warn",
            "DKIM signing is off: large providers refuse or file unsigned bulk mail",
            "set dkim_domain, dkim_selector and dkim_key_file, and publish the key "
            "(README: DKIM signing)",
        )
    names = []
    # The main key, and the Ed25519 one when both are configured.
    for key, setting in zip(signer.keys, ("dkim_key_file", "dkim_ed25519_key_file"), strict=False):
        name = f"{key.selector}._domainkey.{signer.domain}"
        publish = f"publish a TXT record at {name}: {key.public_record()}"
        try:
            keys = [p for p in map(dkim_public_key, lookup.txt(name)) if p is not None]
        except DnsUnavailableError as exc:
            return _result("dkim", "skip", f"the key loads; DNS not checked: {exc.message}", "")
        if not keys:
            return _result("dkim", "fail", f"no DKIM key record at {name}", publish)
        if len(keys) > 1:
            return _result(
                "dkim", "fail", f"{len(keys)} DKIM key records at {name}", "keep only one"
            )
        if not keys[0]:
            return _result("dkim", "fail", f"the key at {name} is revoked (empty p=)", publish)
        try:
            matches = key.matches_public_key(keys[0])
        except ConfigError as exc:
            return _result("dkim", "fail", f"{name}: {exc.message}", publish)
        if not matches:
            return _result(
                "dkim",
                "fail",
                f"the key published at {name} is not the public half of {setting}",
                publish + " (or point the selector at the record of this key)",
            )
        names.append(name)
    name = " and ".join(names)
    sender_domain = _domain(settings.sender_address)
    if sender_domain and not _aligned(signer.domain, sender_domain):
        return _result(
            "dkim",
            "warn",
            f"the key matches {name}, but d={signer.domain} is not the sender's domain "
            f"{sender_domain}: DMARC will not pass on DKIM",
            f"sign for {sender_domain} (set dkim_domain and publish the key there)",
        )
    return _result("dkim", "ok", f"the key of dkim_key_file matches {name}")


def check_spf(settings: Settings, lookup: DnsLookup) -> Check:
    """The sender's domain (and the bounce domain, the envelope sender when
    ``bounce_address`` is set) each publish exactly one ``v=spf1`` TXT record."""
    domains = list(
        dict.fromkeys(
            d for d in (_domain(settings.sender_address), _domain(settings.bounce_address)) if d
        )
    )
    if not domains:
        return _result("spf", "skip", "no sender_address, so no domain to check")
    found = []
    for domain in domains:
        try:
            records = spf_records(lookup.txt(domain))
        except DnsUnavailableError as exc:
            return _result("spf", "skip", f"DNS not reachable: {exc.message}", _NO_DNS_FIX)
        if not records:
            return _result(
                "spf",
                "fail",
                f"{domain} publishes no SPF record (v=spf1)",
                f"publish one TXT record at {domain}, e.g. "
                '"v=spf1 include:<your mail provider> -all"',
            )
        if len(records) > 1:
            return _result(
                "spf",
                "fail",
                f"{domain} publishes {len(records)} SPF records; receivers treat that as "
                "an error (permerror)",
                f"merge them into one v=spf1 record at {domain}",
            )
        found.append(f"{domain}: {records[0]}")
    return _result("spf", "ok", "; ".join(found))


def check_dmarc(settings: Settings, lookup: DnsLookup) -> Check:
    """``_dmarc.<sender domain>`` (or of a parent domain, as receivers look it up)
    publishes one ``v=DMARC1`` record with a ``p=`` policy."""
    domain = _domain(settings.sender_address)
    if not domain:
        return _result("dmarc", "skip", "no sender_address, so no domain to check")
    fix = f'publish a TXT record at _dmarc.{domain}, e.g. "v=DMARC1; p=none; rua=mailto:..."'
    labels = domain.split(".")
    # A subdomain without its own record falls under its organisation's (RFC 7489,
    # 6.6.3); without a public-suffix list, every parent of two labels or more is tried.
    for start in range(max(len(labels) - 1, 1)):
        name = "_dmarc." + ".".join(labels[start:])
        try:
            records = dmarc_records(lookup.txt(name))
        except DnsUnavailableError as exc:
            return _result("dmarc", "skip", f"DNS not reachable: {exc.message}", _NO_DNS_FIX)
        if not records:
            continue
        if len(records) > 1:
            return _result(
                "dmarc", "fail", f"{name} has {len(records)} DMARC records", "keep only one"
            )
        policy = dmarc_policy(records[0])
        if start and tags(records[0]).get("sp"):
            policy = dmarc_policy("p=" + tags(records[0])["sp"])
        if policy is None:
            return _result(
                "dmarc",
                "fail",
                f"the DMARC record at {name} has no valid p= policy",
                "add p=none, p=quarantine or p=reject",
            )
        return _result("dmarc", "ok", f"{name}: p={policy}")
    return _result("dmarc", "fail", f"no DMARC record at _dmarc.{domain}", fix)


def check_bounce_mx(settings: Settings, lookup: DnsLookup) -> Check:
    """When ``bounce_address`` is set, its domain has an MX record, so bounces come back."""
    domain = _domain(settings.bounce_address)
    if not domain:
        return _result("bounce_mx", "skip", "bounce_address is not set (bounces go to the sender)")
    try:
        hosts = lookup.mx(domain)
    except DnsUnavailableError as exc:
        return _result("bounce_mx", "skip", f"DNS not reachable: {exc.message}", _NO_DNS_FIX)
    fix = (
        f"publish an MX record for {domain} naming the server that receives bounces "
        "(where `newsletter bounces serve` or your bounce mailbox runs)"
    )
    if not hosts:
        return _result("bounce_mx", "fail", f"{domain} has no MX record", fix)
    if all(host in ("", ".") for _, host in hosts):
        return _result("bounce_mx", "fail", f"{domain} has a null MX: it accepts no mail", fix)
    shown = ", ".join(f"{pref} {host}" for pref, host in hosts)
    return _result("bounce_mx", "ok", f"{domain}: MX {shown}")


# --- helpers -----------------------------------------------------------------------------


def _domain(address: str) -> str:
    """The lower-case domain of ``address`` ("" for an empty one)."""
    return address.rpartition("@")[2].lower() if "@" in address else ""


def _aligned(signing: str, sender: str) -> bool:
    """Relaxed DMARC alignment, approximated: one domain is the other or a parent of it."""
    signing, sender = signing.lower().rstrip("."), sender.lower().rstrip(".")
    return signing == sender or sender.endswith("." + signing) or signing.endswith("." + sender)
