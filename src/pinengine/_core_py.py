"""The pure-Python twin of the compiled core (``pinengine._core``).

Same names, same results, same acceptance rule: ext/CORE_SPEC.md is the
contract, and the differential test holds both backends to it on thousands of
mutated certificates.

The DER walk is done here by hand rather than by pyasn1's decoder: the
acceptance rule of CORE_SPEC §1 is deliberately narrower than "whatever a
BER/DER decoder takes" (pyasn1 accepts non-minimal long-form lengths, rejects
some OBJECT IDENTIFIER contents the rule does not look at, and so on), and a
decision that differs from the compiled core on even one input is a bug. The
walker indexes into one ``bytes`` object with ints and never copies a slice
while it checks; only the parts handed back to the caller are copied.
Digests come from hashlib.
"""

from __future__ import annotations

import hashlib
import threading
from bisect import bisect_left as _bisect_left
from time import perf_counter_ns as _perf_counter_ns
from typing import Any, Callable, List, Sequence, Tuple, Union

from ._errors import CertificateParseError
from ._errors import der_input_error as _der_input_error
from ._types import (
    ALGORITHMS,
    KIND_CERT,
    KIND_SPKI,
    POS_ANY,
    POS_INTERMEDIATE,
    POS_LEAF,
    POS_ROOT,
    CertificateInfo,
)
from ._types import DIGEST_SIZES as _DIGEST_SIZES
from ._types import build_certificate_info as _build_certificate_info
from ._types import outcome_code_of as _outcome_code_of

__all__ = [
    "ALGORITHMS",
    "BACKEND",
    "KIND_CERT",
    "KIND_SPKI",
    "POS_ANY",
    "POS_INTERMEDIATE",
    "POS_LEAF",
    "POS_ROOT",
    "PinSet",
    "Tally",
    "cert_digest",
    "cert_sha256",
    "extract_spki",
    "hash_bytes",
    "match_chain",
    "match_chains",
    "outcome_code",
    "parse_certificate",
    "recall_outcome",
    "recall_outcomes",
    "sha256_implementation",
    "spki_digest",
    "spki_sha256",
    "validate_spki",
]

BACKEND = "python"

#: The outermost TLV is depth 1; a TLV deeper than this is refused.
_MAX_DEPTH = 32

_HASHES: dict[str, Callable[..., Any]] = {
    "sha1": hashlib.sha1,
    "sha256": hashlib.sha256,
    "sha384": hashlib.sha384,
    "sha512": hashlib.sha512,
}

_sha256 = hashlib.sha256

# Tags of CORE_SPEC §1.2.
_SEQUENCE = 0x30
_INTEGER = 0x02
_BIT_STRING = 0x03
_OID = 0x06
_UTC_TIME = 0x17
_GENERALIZED_TIME = 0x18
_VERSION = 0xA0
_ISSUER_UID = 0x81
_SUBJECT_UID = 0x82
_EXTENSIONS = 0xA3

_DAYS_IN_MONTH = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


class _DerError(Exception):
    """Internal: what is wrong and where; turned into CertificateParseError at the API edge."""

    def __init__(self, what: str, offset: int) -> None:
        super().__init__(what, offset)
        self.what = what
        self.offset = offset

    def message(self, subject: str) -> str:
        return f"malformed {subject}: {self.what} at offset {self.offset}"


# --------------------------------------------------------------------------
# Input coercion
# --------------------------------------------------------------------------


def _as_bytes(obj: object, what: str = "certificate") -> bytes:
    """The bytes of a bytes-like object; TypeError for str and non-buffers."""
    if type(obj) is bytes:
        return obj
    if isinstance(obj, str):
        raise TypeError(f"{what} must be a bytes-like object, not str")
    try:
        view = memoryview(obj)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            f"{what} must be a bytes-like object, not {type(obj).__name__}"
        ) from None
    return view.tobytes()


def _hash_ctor(algorithm: object) -> Callable[..., Any]:
    if not isinstance(algorithm, str):
        raise TypeError(f"algorithm must be a str, not {type(algorithm).__name__}")
    ctor = _HASHES.get(algorithm)
    if ctor is None:
        raise ValueError(
            f"unknown hash algorithm {algorithm!r} (expected one of {', '.join(ALGORITHMS)})"
        )
    return ctor


# --------------------------------------------------------------------------
# §1.1: every TLV
# --------------------------------------------------------------------------


def _header(b: bytes, pos: int, end: int) -> Tuple[int, int, int]:
    """Read the TLV header at ``pos`` within ``b[:end]``: (tag, content_start, content_end)."""
    if pos + 2 > end:
        raise _DerError("truncated TLV header", pos)
    tag = b[pos]
    if tag & 0x1F == 0x1F:
        raise _DerError(f"high-tag-number form (tag byte 0x{tag:02x})", pos)
    first = b[pos + 1]
    p = pos + 2
    if first < 0x80:
        length = first
    elif first == 0x80:
        raise _DerError("indefinite length", pos + 1)
    else:
        n = first - 0x80
        if n > 4:
            raise _DerError(f"length field of {n} bytes (at most 4 allowed)", pos + 1)
        if p + n > end:
            raise _DerError("truncated length field", pos + 1)
        if b[p] == 0:
            raise _DerError("non-minimal length (leading zero byte)", pos + 1)
        if n == 1:
            length = b[p]
            if length < 0x80:
                raise _DerError(f"non-minimal length (0x81 0x{length:02x})", pos + 1)
        else:
            length = int.from_bytes(b[p : p + n], "big")
        p += n
    if length > end - p:
        raise _DerError(
            f"length {length} exceeds the {end - p} bytes that remain", pos + 1
        )
    return tag, p, p + length


def _walk(b: bytes, pos: int, end: int, depth: int) -> None:
    """Check that ``b[pos:end]`` is TLVs at nesting ``depth`` that exactly fill it,
    and so on down through every constructed TLV.

    This is _header() inlined into an iterative walk (it is the hot loop of
    the pure-Python core); anything off the common path is handed to
    _header(), which applies the same rules and raises the precise error.
    """
    outer: List[int] = []  # ends of the enclosing constructed TLVs
    while True:
        if pos >= end:
            if not outer:
                return
            end = outer.pop()  # the child ended exactly where its parent continues
            depth -= 1
            continue
        if depth > _MAX_DEPTH:
            raise _DerError(f"nesting deeper than {_MAX_DEPTH} levels", pos)
        tag = b[pos]
        if pos + 2 <= end and tag & 0x1F != 0x1F:
            first = b[pos + 1]
            if first < 0x80:
                start = pos + 2
                stop = start + first
            elif first == 0x81 and pos + 3 <= end and b[pos + 2] >= 0x80:
                start = pos + 3
                stop = start + b[pos + 2]
            elif first == 0x82 and pos + 4 <= end and b[pos + 2]:
                start = pos + 4
                stop = start + (b[pos + 2] << 8 | b[pos + 3])
            else:
                tag, start, stop = _header(b, pos, end)
            if stop > end:
                _header(b, pos, end)  # raises: the contents overrun
        else:
            tag, start, stop = _header(b, pos, end)  # raises
        if tag & 0x20 and start < stop:
            outer.append(end)
            end = stop
            depth += 1
            pos = start
        else:
            pos = stop


def _walk_single(b: bytes) -> Tuple[int, int, int]:
    """§1.1 for a whole input that must be exactly one TLV; its (tag, start, end)."""
    n = len(b)
    if n == 0:
        raise _DerError("empty input", 0)
    tag, start, end = _header(b, 0, n)
    if end != n:
        raise _DerError(f"{n - end} trailing byte(s) after the outermost TLV", end)
    _walk(b, 0, n, 1)
    return tag, start, end


# --------------------------------------------------------------------------
# §1.2: the X.509 structure (runs on input §1.1 already accepted)
# --------------------------------------------------------------------------


def _children(b: bytes, start: int, end: int) -> List[Tuple[int, int, int, int]]:
    """The TLVs filling ``b[start:end]``: (tag, tlv_start, content_start, content_end)."""
    out = []
    pos = start
    while pos < end:
        tag, cs, ce = _header(b, pos, end)
        out.append((tag, pos, cs, ce))
        pos = ce
    return out


def _expect(tag: int, want: int, pos: int, what: str) -> None:
    if tag != want:
        raise _DerError(f"{what}: expected tag 0x{want:02x}, found 0x{tag:02x}", pos)


def _check_algorithm_identifier(b: bytes, tlv: Tuple[int, int, int, int], what: str) -> None:
    tag, pos, cs, ce = tlv
    _expect(tag, _SEQUENCE, pos, what)
    kids = _children(b, cs, ce)
    if not kids:
        raise _DerError(f"{what}: empty AlgorithmIdentifier", pos)
    otag, opos, ocs, oce = kids[0]
    _expect(otag, _OID, opos, f"{what} algorithm")
    if oce == ocs:
        raise _DerError(f"{what}: empty OBJECT IDENTIFIER", opos)
    if len(kids) > 2:
        raise _DerError(f"{what}: more than one parameters element", kids[2][1])


def _check_bit_string(tlv: Tuple[int, int, int, int], b: bytes, what: str) -> None:
    tag, pos, cs, ce = tlv
    _expect(tag, _BIT_STRING, pos, what)
    if ce == cs:
        raise _DerError(f"{what}: empty BIT STRING", pos)
    unused = b[cs]
    if unused > 7:
        raise _DerError(f"{what}: BIT STRING with {unused} unused bits", cs)
    if unused and ce - cs == 1:
        raise _DerError(f"{what}: empty BIT STRING with {unused} unused bits", cs)


def _check_spki(b: bytes, tlv: Tuple[int, int, int, int]) -> None:
    tag, pos, cs, ce = tlv
    _expect(tag, _SEQUENCE, pos, "subjectPublicKeyInfo")
    kids = _children(b, cs, ce)
    if len(kids) != 2:
        raise _DerError(
            f"subjectPublicKeyInfo has {len(kids)} elements, expected 2", pos
        )
    _check_algorithm_identifier(b, kids[0], "subjectPublicKeyInfo")
    _check_bit_string(kids[1], b, "subjectPublicKey")


def _check_time(b: bytes, tlv: Tuple[int, int, int, int], what: str) -> None:
    tag, pos, cs, ce = tlv
    size = ce - cs
    if tag == _UTC_TIME:
        if size != 13:
            raise _DerError(f"{what}: UTCTime of {size} bytes, expected 13 (YYMMDDHHMMSSZ)", pos)
        ydigits = 2
    elif tag == _GENERALIZED_TIME:
        if size != 15:
            raise _DerError(
                f"{what}: GeneralizedTime of {size} bytes, expected 15 (YYYYMMDDHHMMSSZ)", pos
            )
        ydigits = 4
    else:
        raise _DerError(
            f"{what}: tag 0x{tag:02x} is neither UTCTime (0x17) nor GeneralizedTime (0x18)", pos
        )
    last = ce - 1
    for k in range(cs, last):
        c = b[k]
        if c < 0x30 or c > 0x39:
            raise _DerError(f"{what}: non-digit 0x{c:02x} in time", k)
    if b[last] != 0x5A:  # 'Z'
        raise _DerError(f"{what}: time does not end in 'Z'", last)
    p = cs
    if ydigits == 2:
        yy = (b[p] - 48) * 10 + b[p + 1] - 48
        year = 1900 + yy if yy >= 50 else 2000 + yy
    else:
        year = (b[p] - 48) * 1000 + (b[p + 1] - 48) * 100 + (b[p + 2] - 48) * 10 + b[p + 3] - 48
        if year < 1:
            raise _DerError(f"{what}: year 0000", p)
    p += ydigits
    month = (b[p] - 48) * 10 + b[p + 1] - 48
    day = (b[p + 2] - 48) * 10 + b[p + 3] - 48
    hour = (b[p + 4] - 48) * 10 + b[p + 5] - 48
    minute = (b[p + 6] - 48) * 10 + b[p + 7] - 48
    second = (b[p + 8] - 48) * 10 + b[p + 9] - 48
    if not 1 <= month <= 12:
        raise _DerError(f"{what}: month {month}", p)
    dim = _DAYS_IN_MONTH[month]
    if month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0):
        dim = 29
    if not 1 <= day <= dim:
        raise _DerError(f"{what}: day {day} of month {month} in {year}", p + 2)
    if hour > 23:
        raise _DerError(f"{what}: hour {hour}", p + 4)
    if minute > 59:
        raise _DerError(f"{what}: minute {minute}", p + 6)
    if second > 59:
        raise _DerError(f"{what}: second {second}", p + 8)


# The parts of a checked certificate: offsets into its bytes.
_Parts = Tuple[int, int, int, int, int, int, int, int, int, int, int, int, int]


def _check_certificate(b: bytes) -> _Parts:
    """Apply CORE_SPEC §1 to ``b``. Return
    (version, serial_start, serial_end, issuer_start, issuer_end,
     not_before_start, not_before_end, not_after_start, not_after_end,
     subject_start, subject_end, spki_start, spki_end)
    where each (start, end) pair spans a whole TLV, except serial (its contents)."""
    tag, cs, ce = _walk_single(b)
    _expect(tag, _SEQUENCE, 0, "Certificate")
    top = _children(b, cs, ce)
    if len(top) != 3:
        raise _DerError(f"Certificate has {len(top)} elements, expected 3", 0)
    tbs, sig_alg, sig_value = top
    _check_algorithm_identifier(b, sig_alg, "signatureAlgorithm")
    _check_bit_string(sig_value, b, "signatureValue")

    ttag, tpos, tcs, tce = tbs
    _expect(ttag, _SEQUENCE, tpos, "tbsCertificate")
    kids = _children(b, tcs, tce)
    nkids = len(kids)
    i = 0

    def need(what: str) -> Tuple[int, int, int, int]:
        if i >= nkids:
            raise _DerError(f"tbsCertificate ends before its {what}", tce)
        return kids[i]

    version = 0
    vtag, vpos, vcs, vce = need("serialNumber")
    if vtag == _VERSION:
        inner = _children(b, vcs, vce)
        if len(inner) != 1:
            raise _DerError(f"version holds {len(inner)} elements, expected 1", vpos)
        itag, ipos, ics, ice = inner[0]
        _expect(itag, _INTEGER, ipos, "version")
        if ice - ics != 1:
            raise _DerError(f"version INTEGER of {ice - ics} bytes, expected 1", ipos)
        version = b[ics]
        if version > 2:
            raise _DerError(f"version value {version} (only 0, 1, 2 exist)", ics)
        i += 1

    stag, spos, scs, sce = need("serialNumber")
    _expect(stag, _INTEGER, spos, "serialNumber")
    if sce == scs:
        raise _DerError("serialNumber: empty INTEGER", spos)
    i += 1

    _check_algorithm_identifier(b, need("signature"), "signature")
    i += 1

    itag, ipos, _, iend = need("issuer")
    _expect(itag, _SEQUENCE, ipos, "issuer")
    i += 1

    vtag, vpos, vcs, vce = need("validity")
    _expect(vtag, _SEQUENCE, vpos, "validity")
    times = _children(b, vcs, vce)
    if len(times) != 2:
        raise _DerError(f"validity has {len(times)} elements, expected 2", vpos)
    _check_time(b, times[0], "notBefore")
    _check_time(b, times[1], "notAfter")
    i += 1

    jtag, jpos, _, jend = need("subject")
    _expect(jtag, _SEQUENCE, jpos, "subject")
    i += 1

    spki = need("subjectPublicKeyInfo")
    _check_spki(b, spki)
    i += 1

    if i < nkids and kids[i][0] == _ISSUER_UID:
        if version == 0:
            raise _DerError("issuerUniqueID in a v1 certificate", kids[i][1])
        i += 1
    if i < nkids and kids[i][0] == _SUBJECT_UID:
        if version == 0:
            raise _DerError("subjectUniqueID in a v1 certificate", kids[i][1])
        i += 1
    if i < nkids and kids[i][0] == _EXTENSIONS:
        _, epos, ecs, ece = kids[i]
        if version != 2:
            raise _DerError(f"extensions in a v{version + 1} certificate", epos)
        inner = _children(b, ecs, ece)
        if len(inner) != 1:
            raise _DerError(f"extensions [3] holds {len(inner)} elements, expected 1", epos)
        xtag, xpos, xcs, xce = inner[0]
        _expect(xtag, _SEQUENCE, xpos, "extensions")
        if xce == xcs:
            raise _DerError("extensions: empty SEQUENCE", xpos)
        i += 1
    if i < nkids:
        raise _DerError(
            f"unexpected element (tag 0x{kids[i][0]:02x}) in tbsCertificate", kids[i][1]
        )

    t0, t1 = times
    return (
        version,
        scs,
        sce,
        ipos,
        iend,
        t0[1],
        t0[3],
        t1[1],
        t1[3],
        jpos,
        jend,
        spki[1],
        spki[3],
    )


def _checked(der: object, what: str = "certificate") -> Tuple[bytes, _Parts]:
    b = _as_bytes(der)
    try:
        return b, _check_certificate(b)
    except _DerError as exc:
        raise CertificateParseError(exc.message(what)) from None


def _spki_range(b: bytes) -> Tuple[int, int]:
    parts = _check_certificate(b)
    return parts[11], parts[12]


# --------------------------------------------------------------------------
# Module API (CORE_SPEC §2)
# --------------------------------------------------------------------------


def hash_bytes(data: Any, algorithm: str) -> bytes:
    """Digest of ``data`` with one of ALGORITHMS."""
    ctor = _hash_ctor(algorithm)
    return ctor(_as_bytes(data, "data")).digest()  # type: ignore[no-any-return]


def spki_sha256(der: Any) -> bytes:
    """SHA-256 of the certificate's subjectPublicKeyInfo, exactly as encoded.

    Raises CertificateParseError when ``der`` is not a well-formed DER
    certificate (PEM text is told to go through ``load_certificates``).
    """
    try:
        b, parts = _checked(der)
    except (CertificateParseError, TypeError) as exc:
        raise _der_input_error(der, exc) from None
    return _sha256(memoryview(b)[parts[11] : parts[12]]).digest()


def cert_sha256(der: Any) -> bytes:
    """SHA-256 of the whole DER certificate, which must be well-formed."""
    try:
        b, _ = _checked(der)
    except (CertificateParseError, TypeError) as exc:
        raise _der_input_error(der, exc) from None
    return _sha256(b).digest()


def spki_digest(der: Any, algorithm: str) -> bytes:
    """Digest of the subjectPublicKeyInfo TLV with one of ALGORITHMS."""
    ctor = _hash_ctor(algorithm)
    b, parts = _checked(der)
    return ctor(memoryview(b)[parts[11] : parts[12]]).digest()  # type: ignore[no-any-return]


def cert_digest(der: Any, algorithm: str) -> bytes:
    """Digest of the whole certificate with one of ALGORITHMS."""
    ctor = _hash_ctor(algorithm)
    b, _ = _checked(der)
    return ctor(b).digest()  # type: ignore[no-any-return]


def extract_spki(der: Any) -> bytes:
    """The subjectPublicKeyInfo TLV bytes of the certificate."""
    b, parts = _checked(der)
    return b[parts[11] : parts[12]]


def validate_spki(data: Any) -> None:
    """Check a standalone SubjectPublicKeyInfo TLV (§1.1 and the SPKI rule, nothing trailing)."""
    b = _as_bytes(data, "subjectPublicKeyInfo")
    try:
        tag, cs, ce = _walk_single(b)
        _check_spki(b, (tag, 0, cs, ce))
    except _DerError as exc:
        raise CertificateParseError(exc.message("subjectPublicKeyInfo")) from None


def parse_certificate(der: Any) -> CertificateInfo:
    """Read version, serial, names, validity and SPKI out of a DER certificate."""
    try:
        b, p = _checked(der)
    except (CertificateParseError, TypeError) as exc:
        raise _der_input_error(der, exc) from None
    return _build_certificate_info(
        b,
        p[0],
        b[p[1] : p[2]],
        b[p[3] : p[4]],
        b[p[9] : p[10]],
        b[p[5] : p[6]],
        b[p[7] : p[8]],
        b[p[11] : p[12]],
    )


def sha256_implementation() -> str:
    """Which SHA-256 does the work: always ``"hashlib"`` here."""
    return "hashlib"


# --------------------------------------------------------------------------
# Pins and chain matching (CORE_SPEC §2.1)
# --------------------------------------------------------------------------

_Pin = Tuple[int, str, bytes, int]


def _int_field(value: object, what: str, index: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"pin {index}: {what} must be an int, not {type(value).__name__}")
    return value


class PinSet:
    """An immutable list of pins: (kind, algorithm, digest, positions) each.

    ``kind`` is KIND_SPKI or KIND_CERT, ``algorithm`` one of ALGORITHMS,
    ``digest`` that algorithm's digest, ``positions`` a non-empty combination of
    POS_LEAF, POS_INTERMEDIATE and POS_ROOT.
    """

    __slots__ = ("_pins",)

    def __init__(self, pins: Sequence[_Pin]) -> None:
        if isinstance(pins, (str, bytes, bytearray, memoryview)):
            raise TypeError("pins must be a sequence of (kind, algorithm, digest, positions)")
        try:
            items = list(pins)
        except TypeError:
            raise TypeError(
                f"pins must be a sequence of (kind, algorithm, digest, positions), "
                f"not {type(pins).__name__}"
            ) from None
        checked: List[_Pin] = []
        for index, pin in enumerate(items):
            if not isinstance(pin, (tuple, list)):
                raise TypeError(
                    f"pin {index}: expected a (kind, algorithm, digest, positions) tuple, "
                    f"not {type(pin).__name__}"
                )
            if len(pin) != 4:
                raise ValueError(
                    f"pin {index}: expected 4 fields (kind, algorithm, digest, positions), "
                    f"got {len(pin)}"
                )
            kind, algorithm, digest, positions = pin
            kind = _int_field(kind, "kind", index)
            if kind not in (KIND_SPKI, KIND_CERT):
                raise ValueError(f"pin {index}: unknown kind {kind}")
            if not isinstance(algorithm, str):
                raise TypeError(
                    f"pin {index}: algorithm must be a str, not {type(algorithm).__name__}"
                )
            size = _DIGEST_SIZES.get(algorithm)
            if size is None:
                raise ValueError(f"pin {index}: unknown hash algorithm {algorithm!r}")
            digest = _as_bytes(digest, f"pin {index}: digest")
            if len(digest) != size:
                raise ValueError(
                    f"pin {index}: {algorithm} digest of {len(digest)} bytes, expected {size}"
                )
            positions = _int_field(positions, "positions", index)
            if not 1 <= positions <= POS_ANY:
                raise ValueError(f"pin {index}: positions {positions} outside 1..{POS_ANY}")
            checked.append((kind, algorithm, digest, positions))
        self._pins: Tuple[_Pin, ...] = tuple(checked)

    def __len__(self) -> int:
        return len(self._pins)

    def __repr__(self) -> str:
        return f"<pinengine._core_py.PinSet of {len(self._pins)} pins>"


def _chain_buffers(chain: object) -> List[bytes]:
    if isinstance(chain, (str, bytes, bytearray, memoryview)):
        raise TypeError(
            f"chain must be a sequence of certificates, not {type(chain).__name__}"
        )
    try:
        items = list(chain)  # type: ignore[call-overload]
    except TypeError:
        raise TypeError(
            f"chain must be a sequence of certificates, not {type(chain).__name__}"
        ) from None
    return [_as_bytes(item, f"certificate {i}") for i, item in enumerate(items)]


def _match(certs: List[bytes], pins: Tuple[_Pin, ...], verified: bool) -> List[Tuple[int, int]]:
    n = len(certs)
    if n == 0:
        raise CertificateParseError("empty chain")
    spkis = []
    for i, b in enumerate(certs):
        try:
            spkis.append(_spki_range(b))
        except _DerError as exc:
            raise CertificateParseError(f"certificate {i}: {exc.message('certificate')}") from None
    considered = n if verified else 1
    result: List[Tuple[int, int]] = []
    for i in range(considered):
        position = POS_LEAF if i == 0 else POS_ROOT if i == n - 1 else POS_INTERMEDIATE
        b = certs[i]
        digests: dict[Tuple[int, str], bytes] = {}
        for j, (kind, algorithm, digest, positions) in enumerate(pins):
            if not positions & position:
                continue
            key = (kind, algorithm)
            got = digests.get(key)
            if got is None:
                if kind == KIND_CERT:
                    got = _HASHES[algorithm](b).digest()
                else:
                    s, e = spkis[i]
                    got = _HASHES[algorithm](memoryview(b)[s:e]).digest()
                digests[key] = got
            if got == digest:
                result.append((i, j))
    return result


def match_chain(chain: Sequence[Any], pinset: PinSet, verified: bool = True) -> List[Tuple[int, int]]:
    """Every (certificate index, pin index) that matches, ordered by both.

    Every certificate must pass the acceptance rule; with ``verified=False``
    only the leaf (certificate 0) is considered for matching.
    """
    if not isinstance(pinset, PinSet):
        raise TypeError(f"pinset must be a PinSet, not {type(pinset).__name__}")
    return _match(_chain_buffers(chain), pinset._pins, bool(verified))


def match_chains(
    jobs: Sequence[Tuple[Sequence[Any], PinSet]], verified: bool = True
) -> List[Union[List[Tuple[int, int]], CertificateParseError]]:
    """match_chain for many (chain, pinset) jobs; a chain that fails to parse
    gives its CertificateParseError in its place instead of raising."""
    if isinstance(jobs, (str, bytes, bytearray, memoryview)):
        raise TypeError("jobs must be a sequence of (chain, pinset) pairs")
    try:
        items = list(jobs)
    except TypeError:
        raise TypeError(
            f"jobs must be a sequence of (chain, pinset) pairs, not {type(jobs).__name__}"
        ) from None
    prepared = []
    for k, job in enumerate(items):
        if not isinstance(job, (tuple, list)) or len(job) != 2:
            raise TypeError(f"job {k}: expected a (chain, pinset) pair")
        chain, pinset = job
        if not isinstance(pinset, PinSet):
            raise TypeError(f"job {k}: pinset must be a PinSet, not {type(pinset).__name__}")
        prepared.append((_chain_buffers(chain), pinset._pins))
    verified = bool(verified)
    out: List[Union[List[Tuple[int, int]], CertificateParseError]] = []
    for certs, pins in prepared:
        try:
            out.append(_match(certs, pins, verified))
        except CertificateParseError as exc:
            out.append(exc)
    return out


# -- remembered outcomes (CORE_SPEC section 2.2) ------------------------------
# The same codes as the compiled core's, field for field (pinengine._types).


def outcome_code(chain: Sequence[Any], pinset: PinSet, verified: bool = True) -> int:
    """The code of how ``chain`` matches ``pinset`` (every certificate matched, as
    ``match_chain(..., True)``), or -1 when the outcome has none; raises as match_chain."""
    certs = _chain_buffers(chain)
    return _outcome_code_of(match_chain(certs, pinset, True), len(certs), bool(verified))


def _plan_of(plans: dict[Any, Any], host: object, skip_unpinned: bool) -> Any:
    if type(host) is not str:
        return None
    plan = plans.get(host)
    if (
        type(plan) is not tuple
        or len(plan) != 4
        or type(plan[3]) is not dict
        or not isinstance(plan[2], PinSet)
        or (skip_unpinned and plan[1] is None)
    ):
        return None
    return plan


class Tally:
    """The count of one metrics key's remembered decisions, and their latencies.

    ``Tally(bounds)``: a tuple of floats, the ascending upper bounds (seconds)
    of the latency buckets, one more bucket holding what is above the last.
    ``read()`` gives ``(count, buckets, seconds)``, the buckets not cumulative.
    """

    def __init__(self, bounds: Tuple[float, ...]) -> None:
        if type(bounds) is not tuple or any(type(b) is not float for b in bounds):
            raise TypeError("bounds must be a tuple of floats")
        if list(bounds) != sorted(bounds):
            raise ValueError("bounds must be ascending")
        self._bounds = bounds
        self._lock = threading.Lock()  # (+= is not atomic between threads)
        self._count = 0
        self._nanos = 0
        self._buckets = [0] * (len(bounds) + 1)

    def add(self, seconds: float) -> None:
        """Count a decision that took ``seconds``."""
        seconds = float(seconds)
        if not seconds >= 0.0:
            seconds = 0.0
        elif seconds > 1e6:
            seconds = 1e6
        with self._lock:
            self._count += 1
            self._buckets[_bisect_left(self._bounds, seconds)] += 1
            self._nanos += int(seconds * 1e9 + 0.5)

    def read(self) -> Tuple[int, List[int], float]:
        """``(count, buckets, seconds)``: what was counted since it was made or cleared."""
        with self._lock:
            return self._count, list(self._buckets), self._nanos / 1e9

    def clear(self) -> None:
        """Forget every count."""
        with self._lock:
            self._count = 0
            self._nanos = 0
            self._buckets = [0] * (len(self._bounds) + 1)

    def __repr__(self) -> str:
        return f"<pinengine._core_py.Tally of {self._count} decisions>"


def _recalled(plan: Any, chain: Any, verified: bool, started: int) -> Any:
    """The remembered result of one planned item (counted in its Tally), or None."""
    try:
        certs = _chain_buffers(chain)
        code = _outcome_code_of(_match(certs, plan[2]._pins, True), len(certs), verified)
    except CertificateParseError:
        return None
    known = plan[3].get(code) if code >= 0 else None
    if type(known) is not tuple or len(known) != 2 or type(known[1]) is not Tally:
        return None
    known[1].add((_perf_counter_ns() - started) / 1e9)
    return known[0]


def recall_outcome(
    plans: dict[Any, Any], host: Any, chain: Any, verified: bool = True, skip_unpinned: bool = False
) -> Any:
    """recall_outcomes for one item: the remembered result of host for chain (counted), or None."""
    started = _perf_counter_ns()
    if not isinstance(plans, dict):
        raise TypeError(f"plans must be a dict, not {type(plans).__name__}")
    plan = _plan_of(plans, host, bool(skip_unpinned))
    return None if plan is None else _recalled(plan, chain, bool(verified), started)


def recall_outcomes(
    items: Sequence[Any], plans: dict[Any, Any], verified: bool = True, skip_unpinned: bool = False
) -> Tuple[List[Any], List[int]]:
    """The remembered results of many (host, chain) items: ``(results, misses)``.

    results holds each item's remembered result or None (a result found is
    counted in its Tally); misses the index of every other item.
    """
    started = _perf_counter_ns()
    if isinstance(items, (str, bytes, bytearray, memoryview)):
        raise TypeError("items must be a sequence of (host, chain) pairs")
    if not isinstance(plans, dict):
        raise TypeError(f"plans must be a dict, not {type(plans).__name__}")
    item_list = list(items)
    results: List[Any] = [None] * len(item_list)
    misses: List[int] = []
    for k, item in enumerate(item_list):
        plan = None
        if type(item) is tuple and len(item) == 2:
            plan = _plan_of(plans, item[0], bool(skip_unpinned))
        known = None if plan is None else _recalled(plan, item[1], bool(verified), started)
        if known is None:
            misses.append(k)
        else:
            results[k] = known
    return results, misses
