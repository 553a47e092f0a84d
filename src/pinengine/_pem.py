"""Reading certificates and public keys out of PEM or DER files and bundles."""

from __future__ import annotations

import base64
import binascii
import re
from typing import NamedTuple

from ._errors import CertificateParseError

_BLOCK_RE = re.compile(
    rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END ([A-Z0-9 ]+)-----", re.DOTALL
)


class PemBlock(NamedTuple):
    """One object read from a file: its PEM label (``CERTIFICATE`` for DER input) and DER bytes."""

    label: str
    der: bytes


def _split_der(data: bytes) -> list[bytes]:
    """Split concatenated DER objects by their outer lengths (each is validated later)."""
    out: list[bytes] = []
    pos = 0
    while pos < len(data):
        start = pos
        if len(data) - pos < 2:
            raise CertificateParseError(f"truncated DER object at offset {pos}")
        first = data[pos + 1]
        pos += 2
        if first < 0x80:
            length = first
        elif 0x81 <= first <= 0x84:
            n = first & 0x7F
            if len(data) - pos < n:
                raise CertificateParseError(f"truncated DER length at offset {start}")
            length = int.from_bytes(data[pos : pos + n], "big")
            pos += n
        else:
            raise CertificateParseError(f"unsupported DER length form at offset {start + 1}")
        if len(data) - pos < length:
            raise CertificateParseError(
                f"DER object at offset {start} claims {length} bytes, {len(data) - pos} remain"
            )
        pos += length
        out.append(data[start:pos])
    return out


def read_blocks(data: bytes | str) -> list[PemBlock]:
    """Every PEM block in ``data`` or, when it has none, every concatenated DER object.

    Text outside PEM blocks (bundle comments) is ignored. A PEM block whose
    base64 is broken or whose END label does not match raises
    CertificateParseError; so does input with neither PEM nor DER in it.
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    if b"-----BEGIN " not in data:
        if not data:
            raise CertificateParseError("no certificate found: input is empty")
        if data[0] != 0x30:
            raise CertificateParseError(
                "no PEM block found and the data is not DER (does not start with a SEQUENCE)"
            )
        return [PemBlock("CERTIFICATE", der) for der in _split_der(data)]
    blocks: list[PemBlock] = []
    for match in _BLOCK_RE.finditer(data):
        label, body, end_label = match.group(1), match.group(2), match.group(3)
        name = label.decode("ascii")
        if label != end_label:
            raise CertificateParseError(
                f"PEM block BEGIN {name} ends with END {end_label.decode('ascii')}"
            )
        lines = [ln.strip() for ln in body.splitlines()]
        if any(b":" in ln for ln in lines):
            raise CertificateParseError(f"PEM block {name} has headers; encrypted or legacy PEM is not supported")
        try:
            der = base64.b64decode(b"".join(lines), validate=True)
        except binascii.Error as exc:
            raise CertificateParseError(f"PEM block {name}: bad base64 ({exc})") from None
        blocks.append(PemBlock(name, der))
    if not blocks:
        raise CertificateParseError("a PEM BEGIN line was found but no complete PEM block")
    return blocks


def load_certificates(data: bytes | str) -> list[bytes]:
    """The DER certificates in PEM text (a chain or bundle) or in concatenated DER, in order.

    Other PEM blocks (keys) are skipped; finding no certificate at all raises
    CertificateParseError. The certificates themselves are checked when used.
    """
    ders = [b.der for b in read_blocks(data) if b.label == "CERTIFICATE"]
    if not ders:
        raise CertificateParseError("no certificate found")
    return ders
