"""Values shared by both core backends: constants and the parsed-certificate record."""

from __future__ import annotations

import datetime as _dt
import enum
from dataclasses import dataclass
from typing import Sequence

KIND_SPKI = 0
KIND_CERT = 1

POS_LEAF = 1
POS_INTERMEDIATE = 2
POS_ROOT = 4
POS_ANY = POS_LEAF | POS_INTERMEDIATE | POS_ROOT


class Status(str, enum.Enum):
    """What a verification decided: ``VerificationResult.status``, and the status of each verification event.

    A ``str`` enum: each member equals, hashes, prints and formats as its
    string (``Status.MATCH == "match"``), so code and documents that use the
    strings keep working.
    """

    #: A pin matched (see ``VerificationResult.matches``).
    MATCH = "match"
    #: No entry covers the host; the chain passes.
    NOT_PINNED = "not-pinned"
    #: The entry has expired; it was not enforced (a warning was logged).
    EXPIRED = "expired"
    #: The entry is report-only and did not match; the connection may go on, the violation was reported.
    REPORT_ONLY = "report-only"
    #: No pin matched an enforced entry, or the chain holds a blocked key: refused (PinMismatchError).
    MISMATCH = "mismatch"
    #: A certificate of the chain is malformed: refused (CertificateParseError).
    PARSE_ERROR = "parse-error"

    def __str__(self) -> str:
        return str.__str__(self)

    def __format__(self, spec: str) -> str:
        return str.__format__(self, spec)

    def __repr__(self) -> str:
        return str.__repr__(self)


def outcome_code_of(pairs: Sequence[tuple[int, int]], ncerts: int, verified: bool) -> int:
    """The code of an outcome (ext/CORE_SPEC.md 2.2): ``verified`` (1 bit), ``ncerts`` (6), the
    number of pairs (3), then ``(i << 6) | j`` (9 bits) for each pair; -1 when a value does not fit.

    The compiled core computes the same codes in C (``outcome_code``); the
    twin and the policy compute them here.
    """
    if ncerts >= 64 or len(pairs) > 5:
        return -1
    code = (1 if verified else 0) | (ncerts << 1) | (len(pairs) << 7)
    for k, (i, j) in enumerate(pairs):
        if i >= 8 or j >= 64:
            return -1
        code |= ((i << 6) | j) << (10 + 9 * k)
    return code


def chain_role(index: int, length: int) -> str:
    """The role of certificate ``index`` in a chain of ``length``: ``"leaf"``, ``"intermediate"`` or ``"root"``.

    The first certificate is the leaf (also when it is the only one); the last
    of several is the root.
    """
    if index == 0:
        return "leaf"
    return "root" if index == length - 1 else "intermediate"

ALGORITHMS = ("sha1", "sha256", "sha384", "sha512")
DIGEST_SIZES = {"sha1": 20, "sha256": 32, "sha384": 48, "sha512": 64}

# Short names for attribute types in distinguished names (as RFC 4514 and
# cryptography's rfc4514_string() use them); others print as dotted OIDs.
_NAME_OIDS = {
    "2.5.4.3": "CN",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "2.5.4.6": "C",
    "2.5.4.9": "STREET",
    "0.9.2342.19200300.100.1.25": "DC",
    "0.9.2342.19200300.100.1.1": "UID",
}


@dataclass(frozen=True)
class CertificateInfo:
    """What pinengine reads out of one X.509 certificate.

    ``subject`` and ``issuer`` are RFC 4514 strings meant for messages; ``spki``
    is the subjectPublicKeyInfo exactly as encoded in ``der``.
    """

    der: bytes
    version: int
    serial_number: int
    subject: str
    issuer: str
    not_before: _dt.datetime
    not_after: _dt.datetime
    spki: bytes
    subject_der: bytes
    issuer_der: bytes


def build_certificate_info(
    der: bytes,
    version: int,
    serial: bytes,
    issuer_tlv: bytes,
    subject_tlv: bytes,
    not_before_tlv: bytes,
    not_after_tlv: bytes,
    spki_tlv: bytes,
) -> CertificateInfo:
    """Assemble a CertificateInfo from parts a backend's walker already validated.

    ``version`` is the encoded value (0, 1 or 2); ``serial`` the INTEGER's
    contents; the ``*_tlv`` arguments are whole TLVs (tag, length, contents).
    """
    return CertificateInfo(
        der=bytes(der),
        version=version + 1,
        serial_number=int.from_bytes(serial, "big", signed=True),
        subject=format_name(subject_tlv),
        issuer=format_name(issuer_tlv),
        not_before=time_from_tlv(not_before_tlv),
        not_after=time_from_tlv(not_after_tlv),
        spki=bytes(spki_tlv),
        subject_der=bytes(subject_tlv),
        issuer_der=bytes(issuer_tlv),
    )


def time_from_tlv(tlv: bytes) -> _dt.datetime:
    """Convert a UTCTime / GeneralizedTime TLV that the walker already checked."""
    tag = tlv[0]
    text = bytes(tlv[2:]).decode("ascii")
    if tag == 0x17:
        yy = int(text[0:2])
        year = 1900 + yy if yy >= 50 else 2000 + yy
        rest = text[2:]
    else:
        year = int(text[0:4])
        rest = text[4:]
    return _dt.datetime(
        year,
        int(rest[0:2]),
        int(rest[2:4]),
        int(rest[4:6]),
        int(rest[6:8]),
        int(rest[8:10]),
        tzinfo=_dt.timezone.utc,
    )


def _read_tlv(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """Return (tag, content_start, content_end) of the TLV at pos; ValueError if it is not one."""
    if pos + 2 > end:
        raise ValueError("truncated")
    tag = buf[pos]
    first = buf[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        n = first & 0x7F
        if n == 0 or n > 4 or pos + n > end:
            raise ValueError("bad length")
        length = int.from_bytes(buf[pos : pos + n], "big")
        pos += n
    if pos + length > end:
        raise ValueError("overrun")
    return tag, pos, pos + length


#: The longest arc of an OID that names print (20 bytes: 140 bits; UUID arcs, the longest in use, take 19).
_MAX_ARC_BYTES = 20


def _decode_oid(body: bytes) -> str:
    if not body or body[-1] & 0x80:
        raise ValueError("bad oid")
    arcs: list[int] = []
    value = 0
    length = 0
    for byte in body:
        # An arc of more than _MAX_ARC_BYTES bytes is refused (the name prints as hex): a longer one
        # would make this loop quadratic (each shift copies the whole integer), and no OID has one.
        length += 1
        if length > _MAX_ARC_BYTES:
            raise ValueError("oid arc too long")
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
            length = 0
    first = arcs[0]
    head = [0, first] if first < 40 else [1, first - 40] if first < 80 else [2, first - 80]
    return ".".join(str(a) for a in head + arcs[1:])


_STRING_CODECS = {
    0x0C: "utf-8",  # UTF8String
    0x13: "ascii",  # PrintableString
    0x16: "ascii",  # IA5String
    0x12: "ascii",  # NumericString
    0x1A: "ascii",  # VisibleString
    0x14: "latin-1",  # TeletexString (T61): latin-1 is what real certificates mean
    0x1E: "utf-16-be",  # BMPString
    0x1C: "utf-32-be",  # UniversalString
}


def _escape_value(value: str) -> str:
    """An attribute value as RFC 4514 writes it. Any character that is not printable (controls, line
    and paragraph separators, escape sequences) is written as the hex of its UTF-8 bytes (``\\0A``):
    a subject is written by whoever made the certificate, and must not add lines or terminal
    commands to the messages and output that quote it."""
    out = []
    for i, ch in enumerate(value):
        if ch in ',+"\\<>;' or (i == 0 and ch in "# ") or (i == len(value) - 1 and ch == " "):
            out.append("\\" + ch)
        elif not ch.isprintable():
            out.append("".join(f"\\{b:02X}" for b in ch.encode("utf-8", "surrogatepass")))
        else:
            out.append(ch)
    return "".join(out)


def format_name(tlv: bytes) -> str:
    """Format a DER Name as an RFC 4514 string (last RDN first).

    Never raises for a TLV the walker accepted: a Name whose inner structure is
    not SEQUENCE OF SET OF SEQUENCE {OID, value} prints as ``#`` and its hex.
    """
    buf = bytes(tlv)
    try:
        tag, start, end = _read_tlv(buf, 0, len(buf))
        if tag != 0x30:
            raise ValueError("not a sequence")
        rdns: list[str] = []
        pos = start
        while pos < end:
            rtag, rstart, rend = _read_tlv(buf, pos, end)
            if rtag != 0x31:
                raise ValueError("not a set")
            atvs: list[str] = []
            apos = rstart
            while apos < rend:
                atag, astart, aend = _read_tlv(buf, apos, rend)
                if atag != 0x30:
                    raise ValueError("not a sequence")
                otag, ostart, oend = _read_tlv(buf, astart, aend)
                if otag != 0x06:
                    raise ValueError("not an oid")
                oid = _decode_oid(buf[ostart:oend])
                vtag, vstart, vend = _read_tlv(buf, oend, aend)
                if vend != aend:
                    raise ValueError("extra data")
                codec = _STRING_CODECS.get(vtag)
                if codec is None:
                    text = "#" + buf[oend:vend].hex()
                else:
                    try:
                        text = _escape_value(buf[vstart:vend].decode(codec))
                    except UnicodeDecodeError:
                        text = "#" + buf[oend:vend].hex()
                atvs.append(f"{_NAME_OIDS.get(oid, oid)}={text}")
                apos = aend
            rdns.append("+".join(atvs))
            pos = rend
        return ",".join(reversed(rdns))
    except (ValueError, IndexError):
        return "#" + buf.hex()
