"""Fuzz pin parsing (``Pin.parse``) and pins made from public keys.

Input: byte 0 chooses the options (bits 0-1: kind None / "spki" /
"certificate" / None; bit 2: allow_sha1; bit 3: treat the rest as a public
key for ``Pin.from_public_key`` instead of pin text); the rest is the text
(UTF-8, undecodable bytes kept as surrogates) or the key.

Invariants: ``Pin.parse`` returns a Pin or raises PinFormatError (nothing
else); a parsed pin has a known algorithm and a digest of its size, is SHA-1
only when allowed, prints in a canonical form that parses back to the same
pin (and so does its HPKP form), and both cores accept it in a PinSet.
``Pin.from_public_key`` (validate_spki + digest in the core) gives the same
pin, or the same refusal, on both cores.

    python fuzz/fuzz_pins.py CORPUS_DIR [libFuzzer flags]
"""

from __future__ import annotations

import sys
import warnings

from common import Finding, cores, describe, instrument_if_main, outcome, run

instrument_if_main(__name__, ("pinengine.pins",))

from pinengine import _backend  # noqa: E402
from pinengine._errors import CertificateParseError, PinFormatError  # noqa: E402
from pinengine._types import ALGORITHMS, DIGEST_SIZES  # noqa: E402
from pinengine.pins import InsecurePinWarning, Pin  # noqa: E402

C, P = cores()
KINDS = (None, "spki", "certificate", None)

warnings.simplefilter("ignore", InsecurePinWarning)


def check_text(text: str, kind: str | None, allow_sha1: bool, data: bytes) -> None:
    try:
        pin = Pin.parse(text, kind=kind, allow_sha1=allow_sha1)
    except PinFormatError as exc:
        if not str(exc):
            raise Finding(f"empty PinFormatError message for {text!r}") from None
        return
    if pin.algorithm not in ALGORITHMS or len(pin.digest) != DIGEST_SIZES[pin.algorithm]:
        raise Finding(f"{text!r} parsed to the impossible pin {pin!r}")
    if pin.algorithm == "sha1" and not allow_sha1:
        raise Finding(f"{text!r} gave a SHA-1 pin without allow_sha1")
    if kind is not None and pin.kind != kind:
        raise Finding(f"{text!r} with kind={kind!r} gave a {pin.kind} pin")
    canonical = str(pin)
    again = Pin.parse(canonical, allow_sha1=True)
    if again != pin or str(again) != canonical:
        raise Finding(f"{text!r} -> {canonical!r} -> {again!r}: the canonical form does not round-trip")
    if pin.kind == "spki" and Pin.parse(pin.hpkp, allow_sha1=True) != pin:
        raise Finding(f"{text!r}: the HPKP form {pin.hpkp!r} does not round-trip")
    spec = [(pin.kind_code, pin.algorithm, pin.digest, 7)]
    if len(C.PinSet(spec)) != 1 or len(P.PinSet(spec)) != 1:
        raise Finding(f"a core refused the pin {pin!r}")


def check_public_key(key: bytes) -> None:
    results = []
    for core in (C, P):
        saved = _backend.use(core)
        try:
            results.append(outcome(Pin.from_public_key, key, refusals=(CertificateParseError,)))
        finally:
            _backend.use(saved)
    a, b = results
    if a[0] != b[0] or (a[0] == "ok" and a[1] != b[1]):
        raise Finding(describe("Pin.from_public_key", key, a, b))


def check(data: bytes) -> None:
    if not data:
        return
    options, body = data[0], data[1:]
    if options & 8:
        check_public_key(body)
        return
    text = body.decode("utf-8", "surrogateescape")
    check_text(text, KINDS[options & 3], bool(options & 4), data)


if __name__ == "__main__":
    run(check)
    sys.exit(0)
