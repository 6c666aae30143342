"""``delivery.dnslookup`` against the real test DNS server (UDP, and TCP for long answers)."""

from __future__ import annotations

import pytest

from newsletter.delivery.dnslookup import DnsLookup, DnsUnavailableError, parse_nameserver
from newsletter.errors import ConfigError
from tests.support.dns_server import DnsTestServer
from tests.support.smtpserver import free_port


def test_txt_and_mx_answers(dns_server: DnsTestServer) -> None:
    lookup = DnsLookup(dns_server.address)
    assert sorted(lookup.txt("example.org")) == [
        "site-verification=not-an-spf-record",
        "v=spf1 ip4:192.0.2.10 include:_spf.mail.example.net -all",
    ]
    assert lookup.mx("bounces.example.org") == [(10, "mx.example.org")]
    assert lookup.mx("nullmx.bad.example") == [(0, "")]


def test_no_such_name_and_no_such_record_are_empty_answers(dns_server: DnsTestServer) -> None:
    lookup = DnsLookup(dns_server.address)
    assert lookup.txt("nothing.example.org") == []  # NXDOMAIN
    assert lookup.mx("_dmarc.example.org") == []  # the name has a TXT record only


def test_a_long_record_is_joined_and_comes_over_tcp(dns_server: DnsTestServer) -> None:
    text = "v=DKIM1; k=rsa; p=" + "A" * 900
    dns_server.add_txt("long._domainkey.example.org", text)
    assert DnsLookup(dns_server.address).txt("long._domainkey.example.org") == [text]
    asked = [q for q in dns_server.questions if q[0] == "long._domainkey.example.org."]
    assert [q[2] for q in asked] == ["udp", "tcp"]  # truncated over UDP, asked again


def test_a_refusing_server_is_unavailable_and_not_asked_again(dns_server: DnsTestServer) -> None:
    lookup = DnsLookup(dns_server.address)
    with pytest.raises(DnsUnavailableError, match="gave no usable answer"):
        lookup.txt("elsewhere.test")
    with pytest.raises(DnsUnavailableError):
        lookup.txt("example.org")
    assert [q[0] for q in dns_server.questions] == ["elsewhere.test."]


def test_a_silent_server_is_unavailable_after_the_timeout() -> None:
    with pytest.raises(DnsUnavailableError, match="did not answer"):
        DnsLookup(f"127.0.0.1:{free_port()}", timeout=0.3).mx("example.org")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        ("9.9.9.9", ("9.9.9.9", 53)),
        ("[::1]:5353", ("::1", 5353)),
        ("::1", ("::1", 53)),
    ],
)
def test_nameserver_forms(text: str, expected: tuple[str, int]) -> None:
    assert parse_nameserver(text) == expected


@pytest.mark.parametrize("text", ["dns.example.org", "127.0.0.1:0", "127.0.0.1:http", ""])
def test_bad_nameservers(text: str) -> None:
    with pytest.raises(ConfigError, match="not an IP address"):
        parse_nameserver(text)
