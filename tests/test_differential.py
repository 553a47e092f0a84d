"""Compiled core vs pure-Python core on the same inputs: the same decision, always.

For every input both backends must give the same spki_sha256 / cert_sha256 /
extract_spki / parse_certificate result, or both raise CertificateParseError.
Inputs: every certifi certificate, and seeded random mutants of real
certificates (byte flips, insertions, deletions, length-field tweaks,
truncations, splices, and re-encoded structural edits that keep the DER
framing valid so the X.509 shape rules get exercised too).

``PINENGINE_DIFF_MUTANTS=N`` sets the number of mutants (default 4000) and
``PINENGINE_DIFF_SEED=S`` the random seed.

These tests need both cores at once, so they run once, not once per backend
(the ``backend`` fixture below overrides the per-backend one of conftest).
With ``PINENGINE_NO_EXTENSIONS=1`` they are skipped; otherwise a missing
compiled core is a failure.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import random
from types import ModuleType
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple

import pytest

from pinengine._errors import CertificateParseError
from tests.certs import cached_chain, certifi_ders
from tests.der import Node, gen_time, parse_tree, prim, read_header, seq, utc_time

_NO_EXTENSIONS = os.environ.get("PINENGINE_NO_EXTENSIONS", "") not in ("", "0")
MUTANTS = int(os.environ.get("PINENGINE_DIFF_MUTANTS", "") or 4000)
SEED = int(os.environ.get("PINENGINE_DIFF_SEED", "") or 20240229)
MAX_REPORTED = 5

pytestmark = pytest.mark.skipif(
    _NO_EXTENSIONS,
    reason="PINENGINE_NO_EXTENSIONS=1: no compiled core in this run to compare with the pure-Python one",
)

# Key types for seed certificates (RSA-4096 is left out: slow to generate, and
# its DER differs from RSA-2048's only in sizes the length tweaks cover anyway).
SEED_KEY_TYPES = ("p256", "p384", "rsa2048", "ed25519")


@pytest.fixture
def backend() -> str:
    """Overrides conftest's per-backend fixture: each test here uses both cores."""
    return "compiled+python"


@pytest.fixture(scope="module")
def cores() -> Tuple[ModuleType, ModuleType]:
    try:
        compiled = importlib.import_module("pinengine._core")
    except ImportError as exc:
        problem = str(exc)
    else:
        problem = ""
    if problem:  # a failure, not a skip: a broken build must never pass as green
        pytest.fail(
            f"the compiled core pinengine._core is not importable ({problem}); build it with "
            "`python setup.py build_ext --inplace`, or set PINENGINE_NO_EXTENSIONS=1 to "
            "test the pure-Python core alone",
            pytrace=False,
        )
    python = importlib.import_module("pinengine._core_py")
    assert compiled.BACKEND == "compiled" and python.BACKEND == "python"
    return compiled, python


# --------------------------------------------------------------------------
# Outcomes and comparison
# --------------------------------------------------------------------------

Outcome = Tuple[str, Any]


def outcome(fn: Callable[..., Any], *args: Any) -> Outcome:
    """("ok", value), ("refused", message), or ("crash", "Type: message") for any other exception."""
    try:
        return ("ok", fn(*args))
    except CertificateParseError as exc:
        return ("refused", str(exc))
    except Exception as exc:  # a wrong exception type is a bug in that backend
        return ("crash", f"{type(exc).__name__}: {exc}")


def same(a: Outcome, b: Outcome) -> bool:
    if a[0] == "crash" or b[0] == "crash":
        return False
    if a[0] != b[0]:
        return False
    return a[0] == "refused" or a[1] == b[1]


CERT_FUNCTIONS = ("spki_sha256", "cert_sha256", "extract_spki", "parse_certificate")


def certificate_outcomes(core: ModuleType, der: bytes) -> List[Outcome]:
    return [outcome(getattr(core, name), der) for name in CERT_FUNCTIONS]


def describe(der: bytes, name: str, got_c: Outcome, got_py: Outcome, note: str = "") -> str:
    return (
        f"{name} disagrees{note} on input ({len(der)} bytes) hex:\n{der.hex()}\n"
        f"  compiled: {got_c[0]}: {got_c[1]!r}\n"
        f"  python:   {got_py[0]}: {got_py[1]!r}"
    )


class Disagreements:
    """Collects disagreements; fails the test with the first few, inputs in hex."""

    def __init__(self) -> None:
        self.items: List[str] = []
        self.count = 0

    def add(self, text: str) -> None:
        self.count += 1
        if len(self.items) < MAX_REPORTED:
            self.items.append(text)

    def check_certificate(self, cores: Tuple[ModuleType, ModuleType], der: bytes) -> bool:
        """Compare every certificate entry point; True when the input was accepted."""
        compiled, python = cores
        got_c = certificate_outcomes(compiled, der)
        got_py = certificate_outcomes(python, der)
        before = self.count
        for name, a, b in zip(CERT_FUNCTIONS, got_c, got_py):
            if not same(a, b):
                self.add(describe(der, name, a, b))
                break
        # each backend must decide the same way through every entry point
        for label, got in (("compiled", got_c), ("python", got_py)):
            if len({kind for kind, _ in got}) != 1 and self.count == before:
                self.add(
                    f"the {label} core decides differently across entry points on hex:\n"
                    f"{der.hex()}\n  "
                    + "\n  ".join(f"{n}: {k}: {v!r}" for n, (k, v) in zip(CERT_FUNCTIONS, got))
                )
        return got_py[0][0] == "ok"

    def check_spki(self, cores: Tuple[ModuleType, ModuleType], data: bytes) -> bool:
        compiled, python = cores
        a = outcome(compiled.validate_spki, data)
        b = outcome(python.validate_spki, data)
        if not same(a, b):
            self.add(describe(data, "validate_spki", a, b))
        return b[0] == "ok"

    def finish(self, what: str) -> None:
        if self.count:
            pytest.fail(
                f"{self.count} disagreement(s) between the compiled and Python cores on {what}; "
                f"the first {len(self.items)}:\n\n" + "\n\n".join(self.items),
                pytrace=False,
            )


# --------------------------------------------------------------------------
# Seeds and mutants
# --------------------------------------------------------------------------


def crafted_seeds() -> List[bytes]:
    """v1 and v2 certificates and both time types, re-encoded from a generated leaf."""
    out = []
    leaf = cached_chain("p256").ders[0]
    root = parse_tree(leaf)
    assert root.kids is not None and root.kids[0].kids is not None
    kids = root.kids[0].kids
    kids.pop()  # extensions
    kids[0] = Node(0xA0, kids=[prim(0x02, b"\x01")])
    kids += [prim(0x81, b"\x00\x12\x34"), prim(0x82, b"\x04\xa0")]
    kids[4] = seq(gen_time("20240229000000Z"), utc_time("491231235959Z"))
    out.append(root.encode())
    del kids[0]
    del kids[-2:]
    out.append(root.encode())
    return out


def seed_certificates(rng: random.Random) -> List[bytes]:
    seeds = [der for kt in SEED_KEY_TYPES for der in cached_chain(kt).ders]
    seeds += crafted_seeds()
    bundle = list(certifi_ders())
    seeds += rng.sample(bundle, min(40, len(bundle)))
    return seeds


def headers(der: bytes) -> List[Tuple[int, int, int, int]]:
    """(tlv_offset, tag, length_field_size, length) for every TLV reached through
    constructed TLVs; stops quietly where the input is not well-formed."""
    out: List[Tuple[int, int, int, int]] = []

    def walk(start: int, end: int, depth: int) -> None:
        p = start
        while p < end and depth < 40:
            if p + 2 > end:
                return
            tag, first = der[p], der[p + 1]
            if first == 0x80 or first > 0x84:
                return
            size = 1 if first < 0x80 else 1 + (first & 0x7F)
            if p + 1 + size > end:
                return
            _, cs, ce = read_header(der, p)
            if ce > end:
                return
            out.append((p, tag, size, ce - cs))
            if tag & 0x20:
                walk(cs, ce, depth + 1)
            p = ce

    walk(0, len(der), 1)
    return out


def tree_nodes(node: Node) -> Iterator[Tuple[Node, Node, int]]:
    """(parent, child, index) for every node below ``node``."""
    for i, kid in enumerate(node.kids or ()):
        yield node, kid, i
        yield from tree_nodes(kid)


def random_length_field(rng: random.Random, length: int, size: int) -> bytes:
    choice = rng.randrange(10)
    if choice == 0:
        return b"\x80"  # indefinite
    if choice == 1:
        return b"\x84\xff\xff\xff\xff"
    if choice == 2:  # non-minimal: one byte more than needed
        n = max(1, (length.bit_length() + 7) // 8)
        return bytes([0x80 | (n + 1)]) + length.to_bytes(n + 1, "big")
    if choice == 3:
        return b"\x81" + bytes([length & 0xFF])
    if choice == 4:
        return bytes([0x85]) + length.to_bytes(5, "big")
    if choice == 5:
        return bytes([rng.randrange(256)])
    new = max(0, length + rng.choice((-2, -1, 1, 2)))
    if size == 1:
        return bytes([new]) if new < 0x80 else b"\x81" + bytes([new & 0xFF])
    n = size - 1
    return bytes([0x80 | n]) + (new % (1 << (8 * n))).to_bytes(n, "big")


STRUCTURAL_EDITS = 11


def random_time(rng: random.Random) -> Node:
    """A validity time near the edges of the calendar rules (leap years, 0/13, 24/60...)."""
    year = rng.choice((1, 1600, 1900, 1950, 1999, 2000, 2023, 2024, 2049, 2100, 2400, 9999, 0))
    fields = [
        rng.choice((0, 1, 2, 2, 2, 4, 12, 13, 99)),
        rng.choice((0, 1, 28, 29, 29, 30, 31, 32)),
        rng.choice((0, 12, 23, 24)),
        rng.choice((0, 59, 60)),
        rng.choice((0, 59, 60)),
    ]
    text = "".join(f"{v:02d}" for v in fields) + rng.choice(("Z", "Z", "Z", "z", "0", ".5Z", "+0000"))
    if rng.random() < 0.5:
        tag, text = 0x18, f"{year:04d}" + text
    else:
        tag, text = 0x17, f"{year % 100:02d}" + text
    if rng.random() < 0.1:
        tag ^= 0x0F  # 0x17 <-> 0x18
    return prim(tag, text.encode("ascii"))


def structural_mutant(rng: random.Random, der: bytes, donor: bytes) -> bytes:
    """Edit the parsed tree and re-encode it with correct lengths: the framing stays
    valid, so the shape rules of §1.2 decide."""
    root = parse_tree(der)
    nodes = list(tree_nodes(root))
    parent, node, index = rng.choice(nodes)
    assert parent.kids is not None
    edit = rng.randrange(STRUCTURAL_EDITS)
    if edit == 0:
        del parent.kids[index]
    elif edit == 1:
        parent.kids.insert(index, parse_tree(node.encode()))
    elif edit == 2:  # another tag, same contents
        node.tag = rng.choice(
            (0x02, 0x03, 0x04, 0x05, 0x06, 0x13, 0x17, 0x18, 0x30, 0x31, 0x80, 0x81, 0x82, 0xA0,
             0xA3, rng.randrange(256) & ~0x20 if node.kids is None else rng.randrange(256) | 0x20)
        )
        if node.tag & 0x1F == 0x1F:
            node.tag ^= 0x01
    elif edit == 3 and node.kids is None:  # new primitive contents
        n = rng.choice((0, 1, 2, len(node.content), len(node.content) + 1, 13, 15))
        if node.tag in (0x17, 0x18) and rng.random() < 0.7:
            content = bytearray(node.content)
            if content:
                content[rng.randrange(len(content))] = rng.choice(b"0123456789Z+-.")
            node.content = bytes(content)
        elif node.tag == 0x03 and rng.random() < 0.5:
            node.content = bytes([rng.randrange(10)]) + node.content[1 : rng.randrange(3)]
        else:
            node.content = bytes(rng.randrange(256) for _ in range(n))
    elif edit == 4:  # wrap in a SEQUENCE or a context tag
        parent.kids[index] = Node(rng.choice((0x30, 0xA0, 0xA3)), kids=[node])
    elif edit == 5 and node.kids:  # unwrap
        parent.kids[index : index + 1] = node.kids
    elif edit == 6:  # graft a subtree of another certificate
        other = rng.choice(list(tree_nodes(parse_tree(donor))))[1]
        parent.kids[index] = other
    elif edit == 7:  # swap with a sibling
        j = rng.randrange(len(parent.kids))
        parent.kids[index], parent.kids[j] = parent.kids[j], parent.kids[index]
    elif edit in (8, 9):  # a validity time
        tbs = root.kids[0].kids if root.kids and root.kids[0].kids else None  # type: ignore[index]
        for kid in tbs or ():
            if kid.tag == 0x30 and kid.kids and all(k.tag in (0x17, 0x18) for k in kid.kids):
                kid.kids[rng.randrange(len(kid.kids))] = random_time(rng)
                break
    else:  # deep nesting around this node
        levels = rng.choice((20, 24, 26, 27, 28, 29, 30, 31, 32))
        wrapped = node
        for _ in range(levels):
            wrapped = seq(wrapped)
        parent.kids[index] = wrapped
    return root.encode()


def mutant(rng: random.Random, seeds: Sequence[bytes]) -> bytes:
    der = rng.choice(seeds)
    op = rng.randrange(11)
    n = len(der)
    if op == 0:  # byte flips
        b = bytearray(der)
        for _ in range(rng.choice((1, 1, 2, 3))):
            b[rng.randrange(n)] = rng.randrange(256)
        return bytes(b)
    if op == 1:  # bit flip
        b = bytearray(der)
        b[rng.randrange(n)] ^= 1 << rng.randrange(8)
        return bytes(b)
    if op == 2:  # insertion
        i = rng.randrange(n + 1)
        return der[:i] + bytes(rng.randrange(256) for _ in range(rng.choice((1, 1, 2)))) + der[i:]
    if op == 3:  # deletion
        i = rng.randrange(n)
        return der[:i] + der[i + rng.choice((1, 1, 2, 3)) :]
    if op in (4, 5):  # a length field, rewritten in place (ancestors untouched)
        hs = headers(der)
        p, _, size, length = rng.choice(hs)
        return der[: p + 1] + random_length_field(rng, length, size) + der[p + 1 + size :]
    if op == 6:  # a tag byte
        hs = headers(der)
        p = rng.choice(hs)[0]
        return der[:p] + bytes([rng.randrange(256)]) + der[p + 1 :]
    if op == 7:  # truncation
        return der[: rng.randrange(n)]
    if op == 8:  # splice of two certificates
        other = rng.choice(seeds)
        return der[: rng.randrange(n + 1)] + other[rng.randrange(len(other) + 1) :]
    if op == 9 and rng.random() < 0.2:  # trailing data
        return der + rng.choice((b"\x00", b"\x05\x00", rng.choice(seeds)))
    return structural_mutant(rng, der, rng.choice(seeds))


# --------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------


def test_certifi_bundle_same_results(cores: Tuple[ModuleType, ModuleType]) -> None:
    found = Disagreements()
    ders = certifi_ders()
    for der in ders:
        assert found.check_certificate(cores, der) or found.count, der.hex()
        found.check_spki(cores, cores[1].extract_spki(der))
    found.finish(f"the {len(ders)} certificates of the certifi bundle")


def test_mutants_same_decision(cores: Tuple[ModuleType, ModuleType]) -> None:
    rng = random.Random(SEED)
    seeds = seed_certificates(rng)
    found = Disagreements()
    accepted = 0
    for _ in range(MUTANTS):
        if found.check_certificate(cores, mutant(rng, seeds)):
            accepted += 1
    found.finish(f"{MUTANTS} mutants (seed {SEED}; the certificates are generated afresh each run, so the hex above is the reproducer)")
    # Both outcomes must be well represented, or the comparison proves little.
    assert MUTANTS < 200 or 0.05 * MUTANTS < accepted < 0.8 * MUTANTS, accepted


def test_spki_mutants_same_decision(cores: Tuple[ModuleType, ModuleType]) -> None:
    rng = random.Random(SEED + 1)
    spkis = [cores[1].extract_spki(der) for der in seed_certificates(rng)]
    found = Disagreements()
    count = max(200, MUTANTS // 4)
    accepted = 0
    for _ in range(count):
        accepted += found.check_spki(cores, mutant(rng, spkis))
    found.finish(f"{count} SPKI mutants (seed {SEED + 1})")
    assert 0 < accepted < count


def test_hash_bytes_same(cores: Tuple[ModuleType, ModuleType]) -> None:
    compiled, python = cores
    rng = random.Random(SEED + 2)
    for n in list(range(0, 300)) + [rng.randrange(300, 5000) for _ in range(20)] + [1 << 17]:
        data = rng.randbytes(n)
        for alg in python.ALGORITHMS:
            want = hashlib.new(alg, data).digest()
            assert compiled.hash_bytes(data, alg) == python.hash_bytes(data, alg) == want, (alg, n)


def _pins(rng: random.Random, chains: Sequence[Sequence[bytes]], python: ModuleType) -> list:
    pins = []
    for _ in range(rng.randrange(0, 12)):
        der = rng.choice(rng.choice(chains))
        kind = rng.randrange(2)
        alg = rng.choice(python.ALGORITHMS)
        if rng.random() < 0.8:
            digest = (python.cert_digest if kind else python.spki_digest)(der, alg)
        else:
            digest = rng.randbytes(hashlib.new(alg).digest_size)
        pins.append((kind, alg, digest, rng.randrange(1, 8)))
    return pins


def _chain_outcome(core: ModuleType, chain: list, pins: list, verified: bool) -> Outcome:
    got = outcome(core.match_chain, chain, core.PinSet(pins), verified)
    if got[0] == "refused":  # the index prefix must agree too
        return ("refused", got[1].split(":", 1)[0])
    return got


def test_match_chain_same_results(cores: Tuple[ModuleType, ModuleType]) -> None:
    compiled, python = cores
    rng = random.Random(SEED + 3)
    chains = [cached_chain(kt).ders for kt in SEED_KEY_TYPES]
    seeds = seed_certificates(rng)
    found = Disagreements()
    matched = 0
    jobs_c, jobs_py = [], []
    expected: List[Optional[Outcome]] = []
    for _ in range(600):
        chain = list(rng.choice(chains))
        shape = rng.randrange(6)
        if shape == 0:
            chain = chain[:1]
        elif shape == 1:
            chain = [chain[0], chain[2]]
        elif shape == 2:
            chain = chain + [rng.choice(rng.choice(chains))]
        elif shape == 3:  # one certificate mutated (often refused)
            i = rng.randrange(len(chain))
            chain[i] = mutant(rng, seeds)
        elif shape == 4 and rng.random() < 0.1:
            chain = []
        pins = _pins(rng, chains, python)
        verified = rng.random() < 0.7
        a = _chain_outcome(compiled, chain, pins, verified)
        b = _chain_outcome(python, chain, pins, verified)
        if not same(a, b):
            found.add(
                f"match_chain(verified={verified}) disagrees on chain "
                f"[{', '.join(c.hex() for c in chain)}] with pins {pins!r}:\n"
                f"  compiled: {a}\n  python:   {b}"
            )
        matched += bool(b[0] == "ok" and b[1])
        jobs_c.append((chain, compiled.PinSet(pins)))
        jobs_py.append((chain, python.PinSet(pins)))
        expected.append(b if verified else None)
    found.finish("generated chains")
    assert matched > 100, matched

    # match_chains on all the jobs at once: the same list, errors in place.
    for verified in (True, False):
        got_c = compiled.match_chains(jobs_c, verified)
        got_py = python.match_chains(jobs_py, verified)
        assert len(got_c) == len(got_py) == len(jobs_c)
        for k, (a, b) in enumerate(zip(got_c, got_py)):
            if isinstance(b, CertificateParseError):
                assert isinstance(a, CertificateParseError), (k, a, b)
                assert str(a).split(":", 1)[0] == str(b).split(":", 1)[0], (k, str(a), str(b))
            else:
                assert a == b, (k, a, b)
            want = expected[k]
            if verified and want is not None:
                if want[0] == "ok":
                    assert b == want[1], k
                else:
                    assert isinstance(b, CertificateParseError), k
