"""DKIM signing cost per message (target: <= 2.5 ms with RSA-2048, canonicalisation included).

Run from the project folder:

    .venv/bin/python bench/bench_dkim.py [--n 2000] [--dkimpy-n 100]

Builds the 2026-10 sample issue, assembles ``--n`` personal messages (each with its own
links, so each body is different and hashed anew), and times
:meth:`newsletter.delivery.dkimsign.DkimSigner.sign` per message with an RSA-2048 key, an
Ed25519 key and both at once, as ``Transport.send`` calls it (``relaxed_body=True``: the
assembler's bodies are already in relaxed form). Also: the same without that promise (the
body is checked first), the body hash alone and the RSA operation alone (``cryptography``
releases the GIL for it and ``hashlib`` for SHA-256, so sender threads run those at the
same time). The reference is dkimpy's ``dkim.sign`` (pure-Python RSA,
the signer before) on the same messages, when dkimpy is installed (the dev extra). Times
are the fastest chunk over three passes, so other work on a shared machine does not
inflate them.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from newsletter.config import load_settings
from newsletter.content.parser import load_issue
from newsletter.delivery.dkimsign import SIGNED_HEADERS, DkimSigner, load_key
from newsletter.delivery.message import assemble, build_message_template
from newsletter.delivery.personalise import Recipient
from newsletter.render import build_issue

TARGET_MS = 2.5
REPO = Path(__file__).resolve().parent.parent


def per_item_ms(fn, items, chunk: int = 200) -> float:
    """``fn``'s cost per item in milliseconds: the fastest chunk over three passes."""
    best = float("inf")
    for _ in range(3):
        for at in range(0, len(items), chunk):
            part = items[at : at + chunk]
            start = time.perf_counter()
            for item in part:
                fn(item)
            best = min(best, (time.perf_counter() - start) / len(part))
    return best * 1e3


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="messages signed per key")
    parser.add_argument("--dkimpy-n", type=int, default=100, help="messages, dkimpy")
    args = parser.parse_args()

    settings = load_settings(
        overrides={
            "secret_key": "bench-key-1",
            "base_url": "https://news.example.org",
            "postal_address": "1 Example Street, Exampletown",
            "sender_address": "digest@news.example.org",
        },
        environ={},
    )
    issue = load_issue(REPO / "issues" / "2026-10.md")
    variant = build_issue(issue, settings).variant_for([], all_topics=True)
    template = build_message_template(variant, settings, issue_month=issue.month)
    messages = [
        assemble(
            template,
            Recipient(f"reader{i}@example.org", i, f"Reader {i}", ("empathy",)),
        ).data
        for i in range(args.n)
    ]
    rsa_pem = subprocess.run(["openssl", "genrsa", "2048"], check=True, capture_output=True).stdout
    ed_pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    rsa_key, ed_key = load_key("s1", rsa_pem), load_key("s2", ed_pem)
    signers = {
        "RSA-2048": DkimSigner("news.example.org", [rsa_key]),
        "Ed25519": DkimSigner("news.example.org", [ed_key]),
        "RSA-2048 + Ed25519": DkimSigner("news.example.org", [rsa_key, ed_key]),
    }
    size = sum(map(len, messages)) / len(messages)
    print(f"{len(messages)} personal messages of {size / 1024:.1f} KB (issue {issue.month})")
    figures = {
        name: per_item_ms(lambda m, s=s: s.sign(m, relaxed_body=True), messages)
        for name, s in signers.items()
    }
    for name, ms in figures.items():
        print(f"{name:<22} {ms:7.3f} ms a message  ({1000 / ms:8.0f} messages/s on one core)")
    checked = per_item_ms(signers["RSA-2048"].sign, messages)
    print(f"{'RSA-2048, body checked':<22} {checked:7.3f} ms (a caller without the promise)")
    bh = per_item_ms(
        lambda m: signers["Ed25519"].body_hash(m[m.find(b"\r\n\r\n") + 4 :], relaxed=True),
        messages,
    )
    print(f"{'  of which body hash':<22} {bh:7.3f} ms")
    rsa = signers["RSA-2048"].keys[0]
    op = per_item_ms(lambda m: rsa.sign(m[:700]), messages)
    print(f"{'  of which RSA':<22} {op:7.3f} ms (the GIL is released for it and for SHA-256)")
    try:
        import dkim
    except ImportError:
        print("dkimpy not installed: no reference")
    else:
        ref = per_item_ms(
            lambda m: dkim.sign(
                m,
                b"s1",
                b"news.example.org",
                rsa_pem,
                canonicalize=(b"relaxed", b"relaxed"),
                include_headers=[h.encode() for h in SIGNED_HEADERS],
            ),
            messages[: args.dkimpy_n],
            chunk=20,
        )
        print(f"{'dkimpy RSA-2048':<22} {ref:7.3f} ms a message (the signer before)")
        print(f"ratio dkimpy / ours (RSA-2048): {ref / figures['RSA-2048']:.1f} x")
    ok = figures["RSA-2048"] <= TARGET_MS
    print(f"{'PASS' if ok else 'FAIL'}: RSA-2048 {figures['RSA-2048']:.2f} ms <= {TARGET_MS} ms")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
