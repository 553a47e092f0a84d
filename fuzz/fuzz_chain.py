"""Fuzz chain matching (CORE_SPEC §2.1): compiled core vs pure-Python twin vs an oracle.

Input layout (every part optional; a short input just means fewer parts):

    byte 0      flags: bit 0 verified; bits 1-4 add cert-sha256, spki-sha384,
                cert-sha512 and spki-sha1 pins; bit 5 the compiled core gets
                the certificates as bytearrays, or with bit 7 as exact-size
                ctypes arrays; bit 6 a duplicate pin
    byte 1      seed for the pins' positions
    then        certificates, each as a 2-byte big-endian length and that
                many bytes (the last one takes what is left), at most 6

Pins are made from the certificates themselves (so that real matches
happen) plus one that can never match. Both cores must give the same list of
(certificate, pin) pairs, which must also equal the oracle's (hashlib over
the SPKI the twin extracts), or both refuse, naming the same certificate.
match_chains over several jobs must agree with match_chain job by job, and
outcome_code / recall_outcomes (CORE_SPEC §2.2) with the codes' definition.

    python fuzz/fuzz_chain.py CORPUS_DIR [libFuzzer flags]
"""

from __future__ import annotations

import hashlib
import re
import sys
from contextlib import ExitStack
from typing import Any

from common import Finding, cores, describe, exact_buffer, instrument_if_main, outcome, run

instrument_if_main(__name__, ())  # the compiled core has native coverage

from pinengine._errors import CertificateParseError  # noqa: E402
from pinengine._types import outcome_code_of  # noqa: E402

C, P = cores()
KIND_SPKI, KIND_CERT = 0, 1
POS_LEAF, POS_INTERMEDIATE, POS_ROOT = 1, 2, 4
MAX_CERTS = 6
# (flag bit, kind, algorithm) of the optional pins made from each certificate.
EXTRA_PINS = ((1, KIND_CERT, "sha256"), (2, KIND_SPKI, "sha384"), (3, KIND_CERT, "sha512"), (4, KIND_SPKI, "sha1"))
_INDEX = re.compile(r"certificate (\d+): ")

Pin = tuple[int, str, bytes, int]


def split(data: bytes) -> tuple[int, int, list[bytes]]:
    """(flags, position seed, certificates) of an input; see the module docstring."""
    flags = data[0] if data else 0
    seed = data[1] if len(data) > 1 else 0
    certs: list[bytes] = []
    pos = 2
    while pos < len(data) and len(certs) < MAX_CERTS:
        if pos + 2 > len(data):
            certs.append(data[pos:])
            break
        n = data[pos] << 8 | data[pos + 1]
        certs.append(data[pos + 2 : pos + 2 + n])
        pos += 2 + n
    return flags, seed, certs


def join(flags: int, seed: int, certs: list[bytes]) -> bytes:
    """The inverse of split (for the seed corpus)."""
    out = bytearray([flags & 0xFF, seed & 0xFF])
    for cert in certs[:MAX_CERTS]:
        out += len(cert).to_bytes(2, "big") + cert
    return bytes(out)


def _spki_or_none(der: bytes) -> bytes | None:
    try:
        spki: bytes = P.extract_spki(der)
    except CertificateParseError:
        return None
    return spki


def make_pins(flags: int, seed: int, certs: list[bytes]) -> list[Pin]:
    pins: list[Pin] = []
    for i, der in enumerate(certs):
        spki = _spki_or_none(der)
        body = spki if spki is not None else der
        wanted = [(KIND_SPKI, "sha256")] + [(k, a) for bit, k, a in EXTRA_PINS if flags >> bit & 1]
        for kind, algorithm in wanted:
            digest = hashlib.new(algorithm, der if kind == KIND_CERT else body).digest()
            positions = (seed >> ((i + len(pins)) % 6)) % 7 + 1  # 1..7
            pins.append((kind, algorithm, digest, positions))
    pins.append((KIND_SPKI, "sha256", hashlib.sha256(b"no certificate has this key" + bytes([seed])).digest(), 7))
    if flags & 0x40 and pins:
        pins.append(pins[0])  # the same pin twice: both indexes must be reported
    return pins


def oracle(certs: list[bytes], pins: list[Pin], verified: bool) -> list[tuple[int, int]] | None:
    """The expected matches, or None when some certificate does not parse."""
    spkis = [_spki_or_none(der) for der in certs]
    if not certs or any(s is None for s in spkis):
        return None
    n = len(certs)
    out = []
    for i in range(n if verified else 1):
        position = POS_LEAF if i == 0 else POS_ROOT if i == n - 1 else POS_INTERMEDIATE
        for j, (kind, algorithm, digest, positions) in enumerate(pins):
            body = certs[i] if kind == KIND_CERT else spkis[i]
            assert body is not None
            if positions & position and hashlib.new(algorithm, body).digest() == digest:
                out.append((i, j))
    return out


def _normal(result: object) -> Any:
    """A comparable form: the pairs, or ("refused", failing certificate index)."""
    if isinstance(result, CertificateParseError):
        m = _INDEX.match(str(result))
        return ("refused", int(m.group(1)) if m else str(result))
    return ("ok", result)


def _single(core: Any, chain: list[Any], pinset: Any, verified: bool) -> Any:
    _, value = outcome(core.match_chain, chain, pinset, verified, refusals=(CertificateParseError,))
    return _normal(value)


def check(data: bytes) -> None:
    flags, seed, certs = split(data)
    verified = bool(flags & 1)
    pins = make_pins(flags, seed, certs)
    c_pins, p_pins = C.PinSet(pins), P.PinSet(pins)
    if len(c_pins) != len(pins) or len(p_pins) != len(pins):
        raise Finding(f"PinSet lost pins: {len(c_pins)} / {len(p_pins)} of {len(pins)}")
    with ExitStack() as stack:
        c_chain: list[Any] = list(certs)
        if flags & 0x20:  # exact-size heap blocks (see common.exact_buffer), or bytearrays
            c_chain = [stack.enter_context(exact_buffer(c)) if flags & 0x80 else bytearray(c) for c in certs]
        compare(data, flags, certs, pins, c_chain, c_pins, p_pins, verified)


def compare(
    data: bytes, flags: int, certs: list[bytes], pins: list[Pin], c_chain: list[Any], c_pins: Any, p_pins: Any,
    verified: bool,
) -> None:
    a = _single(C, c_chain, c_pins, verified)
    b = _single(P, certs, p_pins, verified)
    if a != b:
        raise Finding(describe(f"match_chain(verified={verified})", data, a, b))
    want = oracle(certs, pins, verified)
    if want is not None and a != ("ok", want):
        raise Finding(describe("match_chain vs oracle", data, a, ("ok", want)))
    if not certs and a != ("refused", "empty chain"):
        raise Finding(f"empty chain gave {a!r}")

    # Batches: several jobs, each must equal its own match_chain.
    rest_pins = pins[len(pins) // 2 :] or pins
    c_jobs = [(c_chain, c_pins), (c_chain[:1], C.PinSet(rest_pins)), (c_chain[::-1], c_pins), ([], c_pins)]
    p_jobs = [(certs, p_pins), (certs[:1], P.PinSet(rest_pins)), (certs[::-1], p_pins), ([], p_pins)]
    for v in (verified, not verified):
        got_c = [_normal(r) for r in C.match_chains(c_jobs, v)]
        got_p = [_normal(r) for r in P.match_chains(p_jobs, v)]
        if got_c != got_p:
            raise Finding(describe(f"match_chains(verified={v})", data, got_c, got_p))
        singles = [_single(C, chain, ps, v) for chain, ps in c_jobs]
        if got_c != singles:
            raise Finding(describe(f"match_chains vs match_chain (verified={v})", data, got_c, singles))
    check_codes(data, certs, c_chain, c_pins, p_pins, verified)


def expected_code(verified: bool, n: int, pairs: list[tuple[int, int]]) -> int:
    """CORE_SPEC §2.2, written out: verified (1 bit), n (6), len(pairs) (3), then 9 bits a pair."""
    if n >= 64 or len(pairs) > 5 or any(i >= 8 or j >= 64 for i, j in pairs):
        return -1
    code = int(verified) | n << 1 | len(pairs) << 7
    for k, (i, j) in enumerate(pairs):
        code |= ((i << 6) | j) << (10 + 9 * k)
    return code


def check_codes(data: bytes, certs: list[bytes], c_chain: list[Any], c_pins: Any, p_pins: Any, verified: bool) -> None:
    """Both cores' outcome codes equal the definition; a remembered result is recalled for that code only."""
    whole = _single(P, certs, p_pins, True)
    codes = []
    for core, chain, pinset in ((C, c_chain, c_pins), (P, certs, p_pins)):
        _, code = outcome(core.outcome_code, chain, pinset, verified, refusals=(CertificateParseError,))
        codes.append(_normal(code) if isinstance(code, CertificateParseError) else code)
    want = whole if whole[0] == "refused" else expected_code(verified, len(certs), whole[1])
    if whole[0] == "ok" and outcome_code_of(whole[1], len(certs), verified) != want:
        raise Finding(describe("outcome_code_of (what policies remember under) vs definition", data,
                               outcome_code_of(whole[1], len(certs), verified), want))
    if codes != [want, want]:
        raise Finding(describe("outcome_code (compiled, python) vs definition", data, codes, want))
    if not isinstance(want, int) or want < 0:
        return
    hit = object()
    for core, chain, pinset in ((C, c_chain, c_pins), (P, certs, p_pins)):
        tally = core.Tally(())
        plans = {"h": ("h", "entry", pinset, {want: (hit, tally), want ^ 1: (None, core.Tally(()))})}
        got = core.recall_outcomes([("h", chain)], plans, verified)
        if got != ([hit], []) or tally.read()[0] != 1:
            raise Finding(describe(f"recall_outcomes ({core.BACKEND})", data, (got, tally.read()), ([hit], [])))


if __name__ == "__main__":
    run(check)
    sys.exit(0)
