"""A small real DNS server for tests: answers from zone files, on 127.0.0.1, UDP and TCP.

It listens on one random port for both protocols and answers authoritatively from the
zones it was given (zone files under ``tests/fixtures/dns/``, parsed by dnspython's zone
reader; the origin is the file name without ``.zone``). Questions outside its zones are
REFUSED; an unknown name is NXDOMAIN; a known name without the asked type is an empty
NOERROR answer. A UDP answer larger than 512 bytes (the client sent no EDNS) or than the
client's EDNS size is sent truncated (TC), so the client asks again over TCP, as real
resolvers do for long DKIM records.

Use it through the ``dns_server`` fixture, or directly::

    server = DnsTestServer(ZONES).start()
    server.add_txt("sel._domainkey.example.org", "v=DKIM1; k=rsa; p=...")
    ...  # newsletter doctor --nameserver {server.address}
    server.stop()

What it records: ``questions``, a list of (name, type, "udp" or "tcp").
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import struct
import threading
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.zone

#: The zone files of the tests.
ZONES = Path(__file__).resolve().parent.parent / "fixtures" / "dns"


class DnsTestServer:
    """See the module docstring. ``zone_dir``: a folder of ``<origin>.zone`` files."""

    def __init__(self, zone_dir: Path = ZONES) -> None:
        self.zones: dict[dns.name.Name, dns.zone.Zone] = {}
        for path in sorted(zone_dir.glob("*.zone")):
            origin = dns.name.from_text(path.name.removesuffix(".zone"))
            self.zones[origin] = dns.zone.from_file(str(path), origin=origin, relativize=False)
        self.questions: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()
        self._udp: socketserver.UDPServer | None = None
        self._tcp: socketserver.TCPServer | None = None
        self._threads: list[threading.Thread] = []
        self.host = "127.0.0.1"
        self.port = 0

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, the form ``newsletter doctor --nameserver`` takes."""
        return f"{self.host}:{self.port}"

    # ------------------------------------------------------------------ control

    def start(self, host: str = "127.0.0.1", port: int = 0) -> DnsTestServer:
        """Listen on a free port for UDP and TCP (the same number for both).

        ``host`` and ``port`` choose the address instead: port 53 of a loopback address
        of its own serves a program that only reads ``/etc/resolv.conf`` (needs root).
        """
        for _ in range(20 if port == 0 else 1):
            udp = _UdpServer((host, port), _UdpHandler, self)
            chosen = udp.server_address[1]
            try:
                tcp = _TcpServer((host, chosen), _TcpHandler, self)
            except OSError:  # that TCP port is taken: try another pair
                udp.server_close()
                if port:
                    raise
                continue
            break
        else:
            raise RuntimeError("no free port for both UDP and TCP")
        self._udp, self._tcp, self.port = udp, tcp, chosen
        self.host = host
        for server in (udp, tcp):
            # A short poll: stop() waits for the loop to notice, once per test.
            thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop answering and close both sockets."""
        for server in (self._udp, self._tcp):
            if server is not None:
                server.shutdown()
                server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._udp = self._tcp = None
        self._threads = []

    def __enter__(self) -> DnsTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ records

    def add_txt(self, name: str, text: str) -> None:
        """Add a TXT record (split into strings of at most 255 bytes, as DNS needs)."""
        chunks = [text[i : i + 255] for i in range(0, len(text), 255)] or [""]
        self.add(name, "TXT", " ".join(f'"{chunk}"' for chunk in chunks))

    def add(self, name: str, rdtype: str, value: str) -> None:
        """Add one record in zone-file syntax (``add("x.example.org", "MX", "10 mx")``)."""
        owner = dns.name.from_text(name)
        zone = self._zone_of(owner)
        assert zone is not None, f"{name} is in none of the zones"
        rdata = dns.rdata.from_text(dns.rdataclass.IN, rdtype, value, origin=zone.origin)
        with self._lock:
            node = zone.find_node(owner, create=True)
            rdataset = node.find_rdataset(dns.rdataclass.IN, rdata.rdtype, create=True)
            rdataset.add(rdata, ttl=300)

    def remove(self, name: str, rdtype: str) -> None:
        """Remove every record of ``rdtype`` at ``name``."""
        owner = dns.name.from_text(name)
        zone = self._zone_of(owner)
        assert zone is not None
        with self._lock:
            zone.delete_rdataset(owner, rdtype)

    # ------------------------------------------------------------------ answering

    def _zone_of(self, name: dns.name.Name) -> dns.zone.Zone | None:
        matches = [origin for origin in self.zones if name.is_subdomain(origin)]
        return self.zones[max(matches, key=len)] if matches else None

    def answer(self, wire: bytes, protocol: str) -> bytes | None:
        """The answer to the query ``wire``; None for bytes that are not a DNS query."""
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None
        response = dns.message.make_response(query)
        if len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            return response.to_wire()
        question = query.question[0]
        with self._lock:
            self.questions.append(
                (question.name.to_text(), dns.rdatatype.to_text(question.rdtype), protocol)
            )
            zone = self._zone_of(question.name)
            if zone is None:
                response.set_rcode(dns.rcode.REFUSED)
                return response.to_wire()
            response.flags |= dns.flags.AA
            node = zone.get_node(question.name)
            if node is None:
                response.set_rcode(dns.rcode.NXDOMAIN)
            else:
                rdataset = node.get_rdataset(dns.rdataclass.IN, question.rdtype)
                if rdataset is not None:
                    rrset = response.find_rrset(
                        response.answer,
                        question.name,
                        dns.rdataclass.IN,
                        question.rdtype,
                        create=True,
                    )
                    rrset.update(rdataset)
        if protocol == "tcp":
            return response.to_wire()
        limit = max(512, query.payload if query.edns >= 0 else 512)
        try:
            return response.to_wire(max_size=limit)
        except dns.exception.TooBig:
            truncated = dns.message.make_response(query)
            truncated.flags |= dns.flags.AA | dns.flags.TC
            return truncated.to_wire()


class _UdpServer(socketserver.ThreadingUDPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type, owner: DnsTestServer) -> None:
        self.owner = owner
        super().__init__(address, handler)


class _TcpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type, owner: DnsTestServer) -> None:
        self.owner = owner
        super().__init__(address, handler)


class _UdpHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        data, sock = self.request
        reply = self.server.owner.answer(data, "udp")  # type: ignore[attr-defined]
        if reply is not None:
            sock.sendto(reply, self.client_address)


class _TcpHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        # Each message is preceded by its length in two bytes (RFC 1035, 4.2.2); a
        # client may ask several questions on one connection.
        conn: socket.socket = self.request
        with contextlib.suppress(OSError):
            while True:
                head = _read_exactly(conn, 2)
                if head is None:
                    return
                body = _read_exactly(conn, struct.unpack("!H", head)[0])
                if body is None:
                    return
                reply = self.server.owner.answer(body, "tcp")  # type: ignore[attr-defined]
                if reply is None:
                    return
                conn.sendall(struct.pack("!H", len(reply)) + reply)


def _read_exactly(conn: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data
