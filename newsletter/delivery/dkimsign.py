"""DKIM signing of outgoing messages (RFC 6376, and RFC 8463 for Ed25519), with OpenSSL.

A :class:`DkimSigner` is made from the settings ``dkim_domain``, ``dkim_selector`` and
``dkim_key_file`` (an RSA or an Ed25519 key), plus optionally ``dkim_ed25519_selector``
and ``dkim_ed25519_key_file`` for a second, Ed25519 signature: RFC 8463 advises signing
with both while receivers learn Ed25519. When none are set there is no signing; when only
some are set that is a :class:`~newsletter.errors.ConfigError` naming the missing ones.
Keys are read and checked once, when the signer is made, so a bad key stops a send before
the first message rather than failing every message.

Signing is done here rather than by dkimpy, whose pure-Python RSA costs tens of
milliseconds a message: the ``cryptography`` package signs RSA-2048 in about 2 ms and
Ed25519 in a tenth of that. Canonicalisation is relaxed/relaxed (a relay re-folding
headers or trimming trailing spaces does not break the signature) and works on whole byte
strings with a few regular expressions rather than line by line. The tests verify every
signature with dkimpy, an independent implementation.

The assembler's messages (``OutgoingMessage.canonical``) already have bodies in relaxed
canonical form (see :mod:`newsletter.delivery.message`): ``sign(...,
relaxed_body=True)`` hashes such a body as it is, without a pass of its own over it. Of a
whole send's signing work what then holds the GIL is small: SHA-256 of a body and the RSA
operation of ``cryptography`` run with the GIL released, so sender threads sign at the same
time on several cores.

(The module is not called ``dkim.py`` so that it can never shadow dkimpy's ``dkim``.)
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from newsletter.errors import ConfigError

if TYPE_CHECKING:
    from newsletter.config import Settings

#: Header fields covered by the signature. A field listed but absent from a message is
#: signed as absent, so nobody can add it later without breaking the signature.
SIGNED_HEADERS: tuple[str, ...] = (
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
)

_DKIM_SETTINGS = ("dkim_domain", "dkim_selector", "dkim_key_file")
_ED25519_SETTINGS = ("dkim_ed25519_selector", "dkim_ed25519_key_file")

_MIN_RSA_BITS = 1024  # RFC 8301: verifiers must not accept less
_KEY_HINT = (
    "generate one with `openssl genrsa -out dkim.pem 2048` "
    "(or `openssl genpkey -algorithm ed25519 -out dkim-ed25519.pem`)"
)

# Relaxed canonicalisation (RFC 6376, 3.4.2 and 3.4.4) on whole byte strings.
_WSP_RUN = re.compile(rb"[ \t]+")
# Only what canonicalisation changes: a tab, or two or more blanks (a single space, by
# far the most common, is left alone rather than replaced by itself).
_WSP_CHANGE = re.compile(rb"\t[ \t]*| [ \t]+")
_TRAILING_WSP = re.compile(rb" \r\n")
_FOLD = re.compile(rb"\r\n(?=[ \t])")
_LONE_LF = re.compile(rb"(?<!\r)\n")
# Made once: cryptography's padding and hash objects are immutable.
_PKCS1 = padding.PKCS1v15()
_SHA256 = hashes.SHA256()


@dataclass(frozen=True)
class DkimKey:
    """One signing key: its selector, algorithm tag (``a=``) and loaded private key."""

    selector: str
    algorithm: str  # "rsa-sha256" or "ed25519-sha256"
    key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

    def __repr__(self) -> str:  # never show the key
        return f"DkimKey(selector={self.selector!r}, algorithm={self.algorithm!r})"

    def sign(self, data: bytes) -> bytes:
        """The signature of the canonical header data ``data`` (``b=`` before base64)."""
        if isinstance(self.key, rsa.RSAPrivateKey):
            return self.key.sign(data, _PKCS1, _SHA256)
        # RFC 8463: Ed25519 (pure) signs the SHA-256 hash of the header data.
        return self.key.sign(hashlib.sha256(data).digest())

    def matches_public_key(self, public_key: str) -> bool:
        """True when ``public_key`` (the base64 ``p=`` of a DKIM DNS record) is the public
        half of this key; ConfigError when it is not a key of this key's type.

        RSA keys compare by modulus and exponent, so the DER form the record uses
        (SubjectPublicKeyInfo or a bare RSAPublicKey) does not matter; Ed25519 records
        carry the raw 32 bytes (RFC 8463).
        """
        try:
            raw = base64.b64decode("".join(public_key.split()), validate=True)
        except ValueError:
            raw = b""
        mine = self.key.public_key()
        if isinstance(mine, ed25519.Ed25519PublicKey):
            if len(raw) != 32:
                raise ConfigError(
                    "the p= of the DKIM DNS record is not a base64 Ed25519 public key",
                    hint="publish the public key again: " + self.public_record(),
                )
            return raw == mine.public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
        try:
            published = serialization.load_der_public_key(raw)
        except (ValueError, TypeError):
            published = None
        if not isinstance(published, rsa.RSAPublicKey):
            raise ConfigError(
                "the p= of the DKIM DNS record is not a base64 RSA public key",
                hint="publish the public key again: " + self.public_record(),
            )
        return published.public_numbers() == mine.public_numbers()

    def public_record(self) -> str:
        """The TXT record to publish at ``<selector>._domainkey.<domain>``."""
        public = self.key.public_key()
        if isinstance(public, ed25519.Ed25519PublicKey):
            raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            return "v=DKIM1; k=ed25519; p=" + base64.b64encode(raw).decode("ascii")
        der = public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode("ascii")


def load_key(selector: str, pem: bytes, setting: str = "dkim_key_file") -> DkimKey:
    """A :class:`DkimKey` from a PEM private key (RSA of 1024 bits or more, or Ed25519)."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:  # not PEM, encrypted, or damaged
        raise ConfigError(
            f"{setting} does not hold an unencrypted PEM private key ({type(exc).__name__})",
            hint=_KEY_HINT,
        ) from None
    except Exception as exc:  # an algorithm OpenSSL does not support
        raise ConfigError(
            f"{setting} holds a key that cannot be used ({type(exc).__name__})", hint=_KEY_HINT
        ) from None
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < _MIN_RSA_BITS:
            raise ConfigError(
                f"{setting} holds a {key.key_size}-bit RSA key; receivers ignore signatures "
                f"by keys under {_MIN_RSA_BITS} bits",
                hint=_KEY_HINT,
            )
        return DkimKey(selector, "rsa-sha256", key)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return DkimKey(selector, "ed25519-sha256", key)
    raise ConfigError(
        f"{setting} holds a {type(key).__name__.removeprefix('_')}, not an RSA or Ed25519 key",
        hint=_KEY_HINT,
    )


def _read(path: Path, setting: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"{setting} {path} cannot be read: {exc.strerror or exc}",
            hint=f"set {setting} to the PEM file of the DKIM private key",
        ) from None


def is_canonical_body(body: bytes) -> bool:
    """True when ``body`` is already its own relaxed canonical form (RFC 6376, 3.4.4).

    Byte searches only: no tab, no two blanks together, no blank before a line break, no
    bare line feed, and one line break at the end (or an empty body).
    """
    if not body:
        return True
    return (
        body.endswith(b"\r\n")
        and body[-3:-2] not in (b"", b"\n")  # not only a line break, no empty last line
        and b"\t" not in body
        and b"  " not in body
        and b" \r\n" not in body
        and body.count(b"\n") == body.count(b"\r\n")
    )


def canonical_body(body: bytes) -> bytes:
    """The relaxed canonical form of a message body (RFC 6376, 3.4.4)."""
    if is_canonical_body(body):  # the assembler's bodies: searching is cheaper than rewriting
        return body
    lf, crlf = body.count(b"\n"), body.count(b"\r\n")
    if lf != crlf:  # bare line feeds: a file written on Unix, or a mix
        body = body.replace(b"\n", b"\r\n") if crlf == 0 else _LONE_LF.sub(b"\r\n", body)
    body = _WSP_CHANGE.sub(b" ", body)
    if b" \r\n" in body:
        body = _TRAILING_WSP.sub(b"\r\n", body)
    end = len(body)
    while body.endswith(b"\r\n", 0, end):  # only whole line breaks: a bare CR is content
        end -= 2
    body = body[:end]
    # Trailing empty lines go; what is left ends in one line break (empty stays empty).
    # A last line without a line break keeps its trailing blank, as dkimpy reads RFC 6376
    # (:meth:`DkimSigner.sign` never signs such a body: it ends the message first).
    return body + b"\r\n" if body else b""


def _canonical_header(name: bytes, value: bytes) -> bytes:
    """``name:value`` in relaxed form (RFC 6376, 3.4.2); ``name`` is already lower case."""
    if b"\r" in value or b"\t" in value or b"  " in value:  # folded, or blanks to squeeze
        value = _WSP_RUN.sub(b" ", _FOLD.sub(b"", value)).strip(b" \r\n")
    else:  # most fields: one line, single spaces
        value = value.strip(b" \n")
    return name + b":" + value


def _split(message: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The header fields (name, raw value with its folding) and the body of ``message``."""
    crlf = b"\r\n" in message[:2048]
    end = message.find(b"\r\n\r\n" if crlf else b"\n\n")
    if end < 0:
        head, body = message, b""
    else:
        head, body = message[:end], message[end + (4 if crlf else 2) :]
    if not crlf:
        head = head.replace(b"\n", b"\r\n")
    fields: list[tuple[bytes, bytes]] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + b"\r\n" + line)
        else:
            name, _, value = line.partition(b":")
            fields.append((name, value))
    return fields, body


class DkimSigner:
    """Signs RFC 5322 messages for one domain with one or two keys (RSA, Ed25519)."""

    def __init__(self, domain: str, keys: list[DkimKey] | tuple[DkimKey, ...]) -> None:
        if not keys:
            raise ValueError("a DkimSigner needs at least one key")
        self.domain = domain
        self.keys = tuple(keys)
        self._names = [h.lower().encode("ascii") for h in SIGNED_HEADERS]
        self._wanted = frozenset(self._names)
        self._h_tag = ":".join(h.lower() for h in SIGNED_HEADERS)
        # The last body signed and its hash, as one tuple (sender threads share the
        # signer): a test send or the same variant to many people without personal
        # links gives the same body again, hashed once.
        self._last: tuple[bytes, str] | None = None

    def __repr__(self) -> str:  # never show the key
        return f"DkimSigner(domain={self.domain!r}, keys={list(self.keys)!r})"

    def matches_public_key(self, public_key: str) -> bool:
        """:meth:`DkimKey.matches_public_key` of the first (main) key."""
        return self.keys[0].matches_public_key(public_key)

    @property
    def selector(self) -> str:
        """The selector of the first (main) key."""
        return self.keys[0].selector

    @classmethod
    def from_settings(cls, settings: Settings) -> DkimSigner | None:
        """A signer from the ``dkim_*`` settings, or None when DKIM is not configured."""
        values = {name: getattr(settings, name, "") or "" for name in _DKIM_SETTINGS}
        extra = {name: getattr(settings, name, "") or "" for name in _ED25519_SETTINGS}
        if not any(values.values()) and not any(extra.values()):
            return None
        missing = [name for name, value in values.items() if not value]
        if any(extra.values()):
            missing += [name for name, value in extra.items() if not value]
        if missing:
            raise ConfigError(
                "DKIM signing needs all of dkim_domain, dkim_selector and dkim_key_file "
                "(and, for a second Ed25519 signature, both dkim_ed25519_selector and "
                f"dkim_ed25519_key_file); missing: {', '.join(missing)}",
                hint="set the missing ones, or empty them all to send unsigned",
            )
        keys = [
            load_key(
                values["dkim_selector"],
                _read(Path(values["dkim_key_file"]), "dkim_key_file"),
            )
        ]
        if extra["dkim_ed25519_key_file"]:
            second = load_key(
                extra["dkim_ed25519_selector"],
                _read(Path(extra["dkim_ed25519_key_file"]), "dkim_ed25519_key_file"),
                "dkim_ed25519_key_file",
            )
            if second.algorithm != "ed25519-sha256":
                raise ConfigError(
                    "dkim_ed25519_key_file holds an RSA key",
                    hint="give it an Ed25519 key: "
                    "`openssl genpkey -algorithm ed25519 -out dkim-ed25519.pem`",
                )
            if second.selector == keys[0].selector:
                raise ConfigError(
                    "dkim_ed25519_selector is the same as dkim_selector",
                    hint="each key needs its own selector (its own DNS record)",
                )
            keys.append(second)
        return cls(values["dkim_domain"], keys)

    @classmethod
    def from_key_file(cls, domain: str, selector: str, key_file: Path) -> DkimSigner:
        """A signer with one key, read from the PEM file ``key_file``."""
        return cls(domain, [load_key(selector, _read(key_file, "dkim_key_file"))])

    def body_hash(self, body: bytes, *, relaxed: bool = False) -> str:
        """``bh=``: base64 of the SHA-256 of the relaxed body (the last one is cached).

        ``relaxed``: the caller promises ``body`` is already in relaxed canonical form
        (:func:`is_canonical_body`), so it is hashed as it is.
        """
        last = self._last
        if last is not None and last[0] == body:
            return last[1]
        digest = hashlib.sha256(body if relaxed else canonical_body(body)).digest()
        bh = base64.b64encode(digest).decode("ascii")
        self._last = (body, bh)
        return bh

    def sign(
        self, message: bytes, now: float | None = None, *, relaxed_body: bool = False
    ) -> bytes:
        """``message`` with a ``DKIM-Signature`` header field per key prepended.

        ``relaxed_body``: the caller promises CRLF line ends and a body already in
        relaxed canonical form, as the assembler makes them (``OutgoingMessage.canonical``),
        so the body is hashed without a pass over it; the tests check that promise.
        """
        if not message.endswith(b"\n"):
            # SMTP ends the data with a line break anyway; sign what will arrive.
            message += b"\r\n" if b"\r\n" in message[:2048] else b"\n"
        fields, body = _split(message)
        bh = self.body_hash(body, relaxed=relaxed_body)
        # Each listed name takes the last unused instance, from the bottom up (RFC 6376,
        # 5.4.2); a name with no instance left is signed as absent (contributes nothing).
        wanted = self._wanted
        by_name: dict[bytes, list[bytes]] = {}
        for name, value in fields:
            lower = name.strip().lower()
            if lower in wanted:
                by_name.setdefault(lower, []).append(value)
        signed = []
        for name in self._names:
            found = by_name.get(name)
            if found:
                signed.append(_canonical_header(name, found.pop()))
        signed.append(b"")
        head = b"\r\n".join(signed)
        stamp = int(time.time() if now is None else now)
        out = []
        for key in self.keys:
            # The tags as written (folded) and in relaxed form: unfolded, each fold's tab
            # one space, as _canonical_header would make them (the tests check both).
            tags = (
                f"v=1; a={key.algorithm}; c=relaxed/relaxed; d={self.domain}; "
                f"s={key.selector};\r\n\tt={stamp}; h={self._h_tag};\r\n\tbh={bh};\r\n\tb="
            )
            relaxed = tags.replace("\r\n\t", " ")
            data = head + b"dkim-signature:" + relaxed.encode("ascii")
            b = base64.b64encode(key.sign(data)).decode("ascii")
            folded = "\r\n\t".join([b[i : i + 72] for i in range(0, len(b), 72)])
            out.append(f"DKIM-Signature: {tags}{folded}\r\n".encode("ascii"))
        if b"\r\n" not in message[:2048]:
            out = [field.replace(b"\r\n", b"\n") for field in out]
        out.append(message)
        return b"".join(out)
