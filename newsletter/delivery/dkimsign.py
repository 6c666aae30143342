"""DKIM signing of outgoing messages (dkimpy).

A :class:`DkimSigner` is made from the three settings ``dkim_domain``, ``dkim_selector``
and ``dkim_key_file``; when all three are empty there is no signing, when only some are
set that is a :class:`~newsletter.errors.ConfigError` naming the missing ones. The key is
read and checked once, when the signer is made, so a bad key stops a send before the
first message rather than failing every message.

(The module is not called ``dkim.py`` so that it can never shadow dkimpy's ``dkim``.)
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import TYPE_CHECKING

import dkim
import dkim.crypto

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


class DkimSigner:
    """Signs RFC 5322 messages for one domain and selector with one RSA key."""

    def __init__(self, domain: str, selector: str, private_key: bytes) -> None:
        self.domain = domain
        self.selector = selector
        try:
            dkim.crypto.parse_pem_private_key(private_key)
        except Exception as exc:  # dkimpy raises several types for a malformed key
            raise ConfigError(
                f"dkim_key_file does not hold a PEM RSA private key ({type(exc).__name__})",
                hint="generate one with `openssl genrsa -out dkim.pem 2048`",
            ) from None
        self._key = private_key

    def __repr__(self) -> str:  # never show the key
        return f"DkimSigner(domain={self.domain!r}, selector={self.selector!r})"

    @classmethod
    def from_settings(cls, settings: Settings) -> DkimSigner | None:
        """A signer from the ``dkim_*`` settings, or None when DKIM is not configured."""
        values = {name: getattr(settings, name, "") or "" for name in _DKIM_SETTINGS}
        if not any(values.values()):
            return None
        missing = [name for name, value in values.items() if not value]
        if missing:
            raise ConfigError(
                "DKIM signing needs all of dkim_domain, dkim_selector and dkim_key_file; "
                f"missing: {', '.join(missing)}",
                hint="set the missing ones, or empty all three to send unsigned",
            )
        return cls.from_key_file(
            values["dkim_domain"], values["dkim_selector"], Path(values["dkim_key_file"])
        )

    @classmethod
    def from_key_file(cls, domain: str, selector: str, key_file: Path) -> DkimSigner:
        """A signer whose key is read from the PEM file ``key_file``."""
        try:
            key = Path(key_file).read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"dkim_key_file {key_file} cannot be read: {exc.strerror or exc}",
                hint="set dkim_key_file to the PEM file of the DKIM private key",
            ) from None
        return cls(domain, selector, key)

    def matches_public_key(self, public_key: str) -> bool:
        """True when ``public_key`` (the base64 ``p=`` of a DKIM DNS record) is the public
        half of this signer's private key; ConfigError when it is not an RSA public key.

        The two are compared by modulus and exponent, so the DER form the record uses
        (SubjectPublicKeyInfo or a bare RSAPublicKey) does not matter.
        """
        try:
            published = dkim.crypto.parse_public_key(base64.b64decode(public_key, validate=True))
        except Exception:  # binascii.Error or one of dkimpy's several parse errors
            raise ConfigError(
                "the p= of the DKIM DNS record is not a base64 RSA public key",
                hint="publish the public key again (see docs/doctor.md)",
            ) from None
        private = dkim.crypto.parse_pem_private_key(self._key)
        return bool(
            published["modulus"] == private["modulus"]
            and published["publicExponent"] == private["publicExponent"]
        )

    def sign(self, message: bytes) -> bytes:
        """``message`` with a ``DKIM-Signature`` header field prepended.

        Relaxed/relaxed canonicalisation, so a relay re-folding headers or trimming
        trailing spaces does not break the signature.
        """
        header = dkim.sign(
            message,
            self.selector.encode("ascii"),
            self.domain.encode("ascii"),
            self._key,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=[h.encode("ascii") for h in SIGNED_HEADERS],
        )
        return header + message
