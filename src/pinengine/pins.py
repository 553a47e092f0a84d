"""Pins: what a pin is, how it is written, and how it is made from certificates and keys."""

from __future__ import annotations

import base64
import binascii
import os
import re
import warnings
from dataclasses import dataclass
from typing import Union

from ._backend import cert_digest, hash_bytes, spki_digest, spki_sha256, validate_spki
from ._errors import CertificateParseError, InsecurePinWarning, PinFormatError, quoted
from ._pem import read_blocks
from ._types import ALGORITHMS, DIGEST_SIZES, KIND_CERT, KIND_SPKI

__all__ = ["Pin", "InsecurePinWarning", "SPKI", "CERTIFICATE", "spki_pin"]

#: Pin kinds: a pin on the public key (SubjectPublicKeyInfo), the recommended
#: kind because it survives certificate renewal with the same key; and a pin
#: on the whole certificate.
SPKI = "spki"
CERTIFICATE = "certificate"

_KIND_CODES = {SPKI: KIND_SPKI, CERTIFICATE: KIND_CERT}
_CERT_PREFIX = "cert-"

_PATH_FORM = re.compile(r"^(cert-|spki-)?(sha1|sha256|sha384|sha512)/(.*)$", re.DOTALL)
_HEADER_FORM = re.compile(r'^pin-(sha1|sha256|sha384|sha512)\s*=\s*(.*)$', re.DOTALL | re.IGNORECASE)
_HEX_FORM = re.compile(r"^[0-9A-Fa-f]{2}(?::?[0-9A-Fa-f]{2})*$")

PathLike = Union[str, "os.PathLike[str]"]


#: The most pins ``Pin.parse_list`` reads from one list.
MAX_PIN_LIST = 64

#: The longest text ``Pin.parse`` reads: the longest form (a SHA-512 digest in
#: hex with colons, 191 characters) with room for its prefix and white space.
MAX_PIN_LENGTH = 512


def _sha1_gate(text: str, allow_sha1: bool) -> None:
    if not allow_sha1:
        raise PinFormatError(
            f"invalid pin {text!r}: SHA-1 pins are refused unless explicitly allowed "
            "(allow_sha1=True); pin with sha256"
        )
    warnings.warn(
        f"SHA-1 pin {text!r} accepted because allow_sha1=True; SHA-1 is weak, prefer sha256",
        InsecurePinWarning,
        stacklevel=4,
    )


def _decode_base64(text: str, value: str, algorithm: str) -> bytes:
    if not value:
        raise PinFormatError(f"invalid pin {text!r}: the digest is empty")
    try:
        digest = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        if "-" in value or "_" in value:
            why = "bad base64 (URL-safe alphabet: use standard base64 with + and /)"
        elif len(value) % 4:
            why = f"bad base64 (length {len(value)} is not a multiple of 4; padding missing?)"
        else:
            why = "bad base64"
        raise PinFormatError(f"invalid pin {text!r}: {why}") from None
    # Refuse non-canonical encodings (stray bits in the last character): a
    # pin must have exactly one spelling so that it compares as written.
    if base64.b64encode(digest).decode("ascii") != value:
        raise PinFormatError(f"invalid pin {text!r}: bad base64 (non-canonical encoding)")
    _check_size(text, algorithm, digest)
    return digest


def _check_size(text: str, algorithm: str, digest: bytes) -> None:
    want = DIGEST_SIZES[algorithm]
    if len(digest) != want:
        raise PinFormatError(
            f"invalid pin {text!r}: wrong length for {algorithm}: "
            f"{len(digest)} bytes, a {algorithm} digest has {want}"
        )


@dataclass(frozen=True)
class Pin:
    """A pin: a digest of a public key (``kind="spki"``) or of a whole certificate.

    ``str(pin)`` is the canonical form: ``sha256/<base64>`` for public-key pins
    (as OkHttp and RFC 7469 write them) and ``cert-sha256/<base64>`` for
    certificate pins. Pins compare equal when kind, algorithm and digest do.
    """

    algorithm: str
    digest: bytes
    kind: str = SPKI

    def __post_init__(self) -> None:
        if self.kind not in _KIND_CODES:
            raise PinFormatError(f"unknown pin kind {self.kind!r}; use 'spki' or 'certificate'")
        if self.algorithm not in ALGORITHMS:
            raise PinFormatError(
                f"unknown pin algorithm {self.algorithm!r}; use one of {', '.join(ALGORITHMS)}"
            )
        if not isinstance(self.digest, bytes):
            raise TypeError(f"Pin digest must be bytes, not {type(self.digest).__name__}")
        _check_size(f"{self.algorithm}:{self.digest.hex()}", self.algorithm, self.digest)

    # -- text -------------------------------------------------------------

    @classmethod
    def parse_list(cls, text: str, *, allow_sha1: bool = False) -> list[Pin]:
        """Parse a ``;``-separated pin list, as curl's ``--pinnedpubkey`` takes it.

        ``"sha256//A=;sha256//B="`` gives two pins; each item may be any form
        ``parse`` reads. Empty items, duplicates and lists of more than
        ``MAX_PIN_LIST`` pins raise PinFormatError.
        """
        if not isinstance(text, str):
            raise TypeError(f"a pin list must be given as str, not {type(text).__name__}")
        items = text.split(";", MAX_PIN_LIST)
        if len(items) > MAX_PIN_LIST:
            raise PinFormatError(f"a pin list holds at most {MAX_PIN_LIST} pins")
        pins: list[Pin] = []
        for index, item in enumerate(items):
            if not item.strip():
                raise PinFormatError(f"invalid pin list {text[:200]!r}: item {index} is empty")
            pin = cls.parse(item, allow_sha1=allow_sha1)
            if pin in pins:
                raise PinFormatError(f"invalid pin list: {pin} is listed twice")
            pins.append(pin)
        return pins

    @classmethod
    def parse(cls, text: str, *, kind: str | None = None, allow_sha1: bool = False) -> Pin:
        """Parse a pin from any of the forms people write.

        - ``sha256/<base64>`` (OkHttp, curl's ``sha256//`` without the extra
          slash, RFC 7469 digests), also ``sha384/`` and ``sha512/``;
        - ``cert-sha256/<base64>``: a pin on the whole certificate;
        - ``pin-sha256="<base64>"``: the HPKP header form;
        - a hex digest, with or without colons (``AB:CD:...``): the algorithm
          follows from its length. Hex digests are public-key pins unless
          ``kind="certificate"`` is given (OpenSSL's ``-fingerprint`` prints
          certificate digests: pass ``kind="certificate"`` for those).

        SHA-1 pins are refused unless ``allow_sha1=True`` (then they warn).
        Raises PinFormatError, quoting the text and saying what is wrong.
        """
        if not isinstance(text, str):
            raise TypeError(f"a pin must be given as str, not {type(text).__name__}")
        if len(text) > MAX_PIN_LENGTH:  # before anything reads it, or quotes it whole
            raise PinFormatError(
                f"invalid pin {quoted(text)}: longer than any pin is written ({MAX_PIN_LENGTH} characters at most)"
            )
        if kind is not None and kind not in _KIND_CODES:
            raise PinFormatError(f"unknown pin kind {kind!r}; use 'spki' or 'certificate'")
        stripped = text.strip()
        if not stripped:
            raise PinFormatError(f"invalid pin {text!r}: empty")

        m = _PATH_FORM.match(stripped)
        if m:
            prefix, algorithm, value = m.group(1), m.group(2), m.group(3)
            # curl writes sha256//<base64>; but base64 may itself start with
            # "/". A digest's base64 has one fixed length, so at most one
            # reading can be right.
            if value.startswith("/") and len(value) != len(base64.b64encode(bytes(DIGEST_SIZES[algorithm]))):
                value = value[1:]
            found_kind = CERTIFICATE if prefix == _CERT_PREFIX else SPKI
            if kind is not None and prefix is not None and kind != found_kind:
                raise PinFormatError(f"invalid pin {text!r}: written as a {found_kind} pin, but kind={kind!r} was asked for")
            if algorithm == "sha1":
                _sha1_gate(text, allow_sha1)
            digest = _decode_base64(text, value, algorithm)
            return cls(algorithm, digest, kind if prefix is None and kind is not None else found_kind)

        m = _HEADER_FORM.match(stripped)
        if m:
            algorithm, value = m.group(1).lower(), m.group(2).strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            elif '"' in value:
                raise PinFormatError(f"invalid pin {text!r}: unbalanced quotes")
            if algorithm == "sha1":
                _sha1_gate(text, allow_sha1)
            if kind == CERTIFICATE:
                raise PinFormatError(f"invalid pin {text!r}: HPKP pins are public-key pins")
            return cls(algorithm, _decode_base64(text, value, algorithm), SPKI)

        if _HEX_FORM.match(stripped):
            digest = bytes.fromhex(stripped.replace(":", ""))
            by_size = {size: alg for alg, size in DIGEST_SIZES.items()}
            algorithm = by_size.get(len(digest), "")
            if not algorithm:
                raise PinFormatError(
                    f"invalid pin {text!r}: wrong length for a hex digest: {len(digest)} bytes "
                    "(sha256 has 32, sha384 48, sha512 64, sha1 20)"
                )
            if algorithm == "sha1":
                _sha1_gate(text, allow_sha1)
            return cls(algorithm, digest, kind or SPKI)

        head = stripped.split("/", 1)[0] if "/" in stripped else stripped.split("=", 1)[0]
        if "/" in stripped or "=" in stripped[:16]:
            raise PinFormatError(
                f"invalid pin {text!r}: unknown algorithm {head!r}; "
                "write sha256/<base64> (or sha384/, sha512/, cert-sha256/, pin-sha256=\"...\")"
            )
        raise PinFormatError(
            f"invalid pin {text!r}: not a pin; write sha256/<base64>, "
            "pin-sha256=\"<base64>\" or a hex digest"
        )

    def __str__(self) -> str:
        prefix = _CERT_PREFIX if self.kind == CERTIFICATE else ""
        return f"{prefix}{self.algorithm}/{base64.b64encode(self.digest).decode('ascii')}"

    def __repr__(self) -> str:
        return f"Pin({str(self)!r})"

    @property
    def hpkp(self) -> str:
        """The pin in HPKP header form, ``pin-sha256="<base64>"`` (public-key pins only)."""
        if self.kind != SPKI:
            raise ValueError("only public-key pins have an HPKP form")
        return f'pin-{self.algorithm}="{base64.b64encode(self.digest).decode("ascii")}"'

    @property
    def kind_code(self) -> int:
        """The core's numeric code for this pin's kind."""
        return _KIND_CODES[self.kind]

    # -- from certificates and keys ----------------------------------------

    @classmethod
    def from_certificate(
        cls, data: bytes | str, *, kind: str = SPKI, algorithm: str = "sha256"
    ) -> Pin:
        """The pin of one certificate, given as DER bytes or PEM (bytes or str).

        ``kind="spki"`` (default) pins its public key; ``kind="certificate"``
        pins the certificate itself. Input holding more than one certificate
        is refused (use ``from_file`` for bundles).
        """
        blocks = [b for b in read_blocks(data) if b.label == "CERTIFICATE"]
        if len(blocks) != 1:
            raise CertificateParseError(
                f"expected exactly one certificate, found {len(blocks)}"
            )
        return cls._of_certificate(blocks[0].der, kind, algorithm)

    @classmethod
    def _of_certificate(cls, der: bytes, kind: str, algorithm: str) -> Pin:
        if kind not in _KIND_CODES:
            raise PinFormatError(f"unknown pin kind {kind!r}; use 'spki' or 'certificate'")
        _check_algorithm(algorithm)
        if kind == SPKI:
            digest = spki_digest(der, algorithm)
        else:
            digest = cert_digest(der, algorithm)
        return cls(algorithm, digest, kind)

    @classmethod
    def from_public_key(cls, data: bytes | str, *, algorithm: str = "sha256") -> Pin:
        """The pin of a public key: a DER SubjectPublicKeyInfo or a PEM ``PUBLIC KEY`` block."""
        _check_algorithm(algorithm)
        if isinstance(data, str) or (isinstance(data, (bytes, bytearray)) and b"-----BEGIN " in data):
            blocks = [b for b in read_blocks(data) if b.label == "PUBLIC KEY"]
            if len(blocks) != 1:
                raise CertificateParseError(f"expected exactly one PUBLIC KEY block, found {len(blocks)}")
            der = blocks[0].der
        else:
            der = bytes(data)
        validate_spki(der)
        return cls(algorithm, hash_bytes(der, algorithm), SPKI)

    @classmethod
    def from_file(
        cls, path: PathLike, *, kind: str = SPKI, algorithm: str = "sha256"
    ) -> list[Pin]:
        """One pin per certificate, public key, private key or CSR in a PEM or DER file or bundle.

        ``kind="certificate"`` pins certificates only (keys and CSRs have no
        certificate pin). Of a private key only the public key is pinned; see
        ``pinengine._keys`` for the formats read.
        """
        from ._keys import public_keys

        with open(path, "rb") as f:
            data = f.read()
        try:
            pins: list[Pin] = []
            for key in public_keys(data):
                if key.certificate is not None:
                    pins.append(cls._of_certificate(key.certificate, kind, algorithm))
                elif kind == SPKI:
                    pins.append(cls(algorithm, hash_bytes(key.spki, algorithm), SPKI))
            if not pins:
                raise CertificateParseError("no certificate in it")
        except CertificateParseError as exc:
            raise CertificateParseError(f"{os.fspath(path)}: {exc}") from None
        return pins


def _check_algorithm(algorithm: str) -> None:
    if algorithm not in ALGORITHMS:
        raise PinFormatError(f"unknown pin algorithm {algorithm!r}; use one of {', '.join(ALGORITHMS)}")


def spki_pin(der: bytes) -> Pin:
    """The SHA-256 pin of a DER certificate's public key (CertificateParseError when it is malformed)."""
    return Pin("sha256", spki_sha256(der))
