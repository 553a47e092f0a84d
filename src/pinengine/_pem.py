"""Reading certificates and public keys out of PEM or DER files and bundles."""

from __future__ import annotations

import base64
import binascii
from typing import NamedTuple

from ._errors import CertificateParseError

_BEGIN = b"-----BEGIN "
_END = b"-----END "
_DASHES = b"-----"

#: The longest PEM label read. RFC 7468's labels are at most 23 characters
#: ("NEW CERTIFICATE REQUEST"); 64 leaves room for others. The bound also
#: limits how far past a ``-----BEGIN `` the reader looks for the closing
#: dashes, so a line of BEGINs without them costs linear time.
MAX_LABEL_LENGTH = 64


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


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _label_at(data: bytes, at: int, marker: bytes) -> tuple[str, int]:
    """The label of the BEGIN or END line at ``at`` and the offset just after its closing dashes.

    Looks at most MAX_LABEL_LENGTH bytes ahead: never to the end of the input.
    """
    start = at + len(marker)
    close = data.find(_DASHES, start, start + MAX_LABEL_LENGTH + len(_DASHES))
    word = marker.strip(b"- ").decode("ascii")
    if close < 0:
        raise CertificateParseError(
            f"line {_line_of(data, at)}: PEM {word} line without a label of at most "
            f"{MAX_LABEL_LENGTH} characters followed by '-----'"
        )
    raw = data[start:close]
    if (
        not raw
        or raw[:1] == b" "
        or raw[-1:] in (b" ", b"-")
        or any(c < 0x20 or c > 0x7E for c in raw)
    ):
        raise CertificateParseError(f"line {_line_of(data, at)}: PEM {word} line has an invalid label {raw!r}")
    return raw.decode("ascii"), close + len(_DASHES)


def _decode_body(name: str, body: bytes) -> bytes:
    lines = [ln.strip() for ln in body.splitlines()]
    if any(b":" in ln for ln in lines):
        raise CertificateParseError(f"PEM block {name} has headers; encrypted or legacy PEM is not supported")
    try:
        der = base64.b64decode(b"".join(lines), validate=True)
    except binascii.Error as exc:
        raise CertificateParseError(f"PEM block {name}: bad base64 ({exc})") from None
    if not der:
        raise CertificateParseError(f"PEM block {name} is empty")
    return der


def _pem_blocks(data: bytes) -> list[PemBlock]:
    # One pass from the start to the end: each BEGIN is followed by the search
    # for its own END, and the next BEGIN is looked for after that END. A
    # BEGIN without an END is an error, so nothing is ever scanned twice.
    blocks: list[PemBlock] = []
    pos = 0
    while True:
        begin = data.find(_BEGIN, pos)
        if begin < 0:
            return blocks
        name, after = _label_at(data, begin, _BEGIN)
        newline = after
        while newline < len(data) and data[newline] in b" \t\r":
            newline += 1
        if newline < len(data) and data[newline] != 0x0A:
            raise CertificateParseError(
                f"line {_line_of(data, begin)}: text after the dashes of BEGIN {name} on the same line"
            )
        body_start = newline + 1
        end = data.find(_END, body_start)
        if end < 0:
            raise CertificateParseError(
                f"line {_line_of(data, begin)}: PEM block BEGIN {name} has no END line (truncated input?)"
            )
        body = data[body_start:end]
        if _BEGIN in body:
            raise CertificateParseError(
                f"line {_line_of(data, begin)}: PEM block BEGIN {name} has another BEGIN line before its END line"
            )
        end_name, pos = _label_at(data, end, _END)
        if end_name != name:
            raise CertificateParseError(f"PEM block BEGIN {name} ends with END {end_name}")
        blocks.append(PemBlock(name, _decode_body(name, body)))


def read_blocks(data: bytes | str) -> list[PemBlock]:
    """Every PEM block in ``data`` or, when it has none, every concatenated DER object.

    Text outside PEM blocks (bundle comments) is ignored. A PEM block that is
    empty, has broken base64, no END line, or an END label that does not
    match raises CertificateParseError; so does input with neither PEM nor
    DER in it. The input is read in one pass: time linear in its size.
    """
    if isinstance(data, str):
        # PEM is ASCII; a character that UTF-8 cannot carry (a lone
        # surrogate) can only be outside a block or make one invalid.
        data = data.encode("utf-8", "replace")
    if _BEGIN not in data:
        if not data:
            raise CertificateParseError("no certificate found: input is empty")
        if data[0] != 0x30:
            raise CertificateParseError(
                "no PEM block found and the data is not DER (does not start with a SEQUENCE)"
            )
        return [PemBlock("CERTIFICATE", der) for der in _split_der(data)]
    return _pem_blocks(data)


def load_certificates(data: bytes | str) -> list[bytes]:
    """The DER certificates in PEM text (a chain or bundle) or in concatenated DER, in order.

    Other PEM blocks (keys) are skipped; finding no certificate at all raises
    CertificateParseError. The certificates themselves are checked when used.
    """
    ders = [b.der for b in read_blocks(data) if b.label == "CERTIFICATE"]
    if not ders:
        raise CertificateParseError("no certificate found")
    return ders
