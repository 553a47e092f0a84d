"""PinSet and chain matching (ext/CORE_SPEC.md §2.1), on both cores."""

from __future__ import annotations

from types import ModuleType
from typing import Sequence, Tuple

import pytest
from cryptography import x509

from pinengine import _types
from pinengine._errors import CertificateParseError
from tests.certs import cached_chain, spki_der
from tests.der import cert_pin, leaf_der, sha256, spki_pin

# Core behaviour: every test here runs on both cores (tests/conftest.py).
pytestmark = pytest.mark.both_cores


# --------------------------------------------------------------------------
# PinSet
# --------------------------------------------------------------------------

DIGEST32 = bytes(32)


def test_pinset_valid(core: ModuleType) -> None:
    pins = [
        (kind, alg, bytes(_types.DIGEST_SIZES[alg]), positions)
        for kind in (core.KIND_SPKI, core.KIND_CERT)
        for alg in core.ALGORITHMS
        for positions in range(1, 8)
    ]
    assert len(core.PinSet(pins)) == len(pins)
    assert len(core.PinSet([])) == 0
    assert len(core.PinSet(tuple(pins[:3]))) == 3
    assert len(core.PinSet([(0, "sha256", bytearray(32), 7)])) == 1


@pytest.mark.parametrize(
    "pin",
    [
        (2, "sha256", DIGEST32, 7),  # unknown kind
        (-1, "sha256", DIGEST32, 7),
        (0, "md5", bytes(16), 7),  # unknown algorithm
        (0, "SHA256", DIGEST32, 7),
        (0, "", DIGEST32, 7),
        (0, "sha256", bytes(31), 7),  # wrong digest length
        (0, "sha256", bytes(33), 7),
        (0, "sha256", b"", 7),
        (0, "sha1", DIGEST32, 7),
        (1, "sha512", bytes(48), 7),
        (0, "sha256", DIGEST32, 0),  # positions outside 1..7
        (0, "sha256", DIGEST32, 8),
        (0, "sha256", DIGEST32, -1),
        (0, "sha256", DIGEST32, 15),
    ],
)
def test_pinset_value_errors(core: ModuleType, pin: tuple) -> None:
    with pytest.raises(ValueError):
        core.PinSet([pin])
    with pytest.raises(ValueError):
        core.PinSet([(0, "sha256", DIGEST32, 7), pin])


def test_pinset_type_errors(core: ModuleType) -> None:
    for pins in (None, 5):
        with pytest.raises(TypeError):
            core.PinSet(pins)
    for pin in (
        (0, "sha256", "00" * 32, 7),  # digest as text
        (0, "sha256", None, 7),
        (0, None, DIGEST32, 7),
        ("0", "sha256", DIGEST32, 7),
        (0, "sha256", DIGEST32, "7"),
        None,
    ):
        with pytest.raises(TypeError):
            core.PinSet([pin])
    for odd in ((0, "sha256", DIGEST32), (0, "sha256", DIGEST32, 7, 7), ()):
        with pytest.raises((TypeError, ValueError)):
            core.PinSet([odd])


# --------------------------------------------------------------------------
# match_chain / match_chains
# --------------------------------------------------------------------------


def test_match_positions(core: ModuleType) -> None:
    leaf, inter, root = cached_chain("p256").ders
    pins = core.PinSet(
        [
            spki_pin(leaf, positions=core.POS_LEAF),
            spki_pin(inter, positions=core.POS_INTERMEDIATE),
            spki_pin(root, positions=core.POS_ROOT),
        ]
    )
    assert core.match_chain([leaf, inter, root], pins) == [(0, 0), (1, 1), (2, 2)]
    assert core.match_chain([leaf, inter, root], pins, verified=True) == [(0, 0), (1, 1), (2, 2)]
    # a pin only matches in the positions it names
    wrong = core.PinSet(
        [
            spki_pin(leaf, positions=core.POS_INTERMEDIATE | core.POS_ROOT),
            spki_pin(inter, positions=core.POS_LEAF | core.POS_ROOT),
            spki_pin(root, positions=core.POS_LEAF | core.POS_INTERMEDIATE),
        ]
    )
    assert core.match_chain([leaf, inter, root], wrong) == []
    # four certificates: both middle ones are intermediates
    assert core.match_chain([leaf, inter, inter, root], pins) == [(0, 0), (1, 1), (2, 1), (3, 2)]
    # two certificates: the second is the root
    assert core.match_chain([leaf, root], pins) == [(0, 0), (1, 2)]
    assert core.match_chain([leaf, inter], pins) == [(0, 0)]


def test_match_unverified_considers_only_leaf(core: ModuleType) -> None:
    leaf, inter, root = cached_chain("p256").ders
    pins = core.PinSet([spki_pin(leaf), spki_pin(inter), spki_pin(root), cert_pin(leaf)])
    assert core.match_chain([leaf, inter, root], pins) == [(0, 0), (0, 3), (1, 1), (2, 2)]
    assert core.match_chain([leaf, inter, root], pins, verified=False) == [(0, 0), (0, 3)]
    assert core.match_chain([leaf, inter, root], pins, False) == [(0, 0), (0, 3)]
    only_root = core.PinSet([spki_pin(root), spki_pin(inter)])
    assert core.match_chain([leaf, inter, root], only_root, verified=False) == []


def test_match_single_certificate_is_leaf(core: ModuleType) -> None:
    leaf, _, root = cached_chain("p256").ders
    pins = core.PinSet(
        [
            spki_pin(root, positions=core.POS_ROOT),
            spki_pin(root, positions=core.POS_LEAF),
            spki_pin(leaf, positions=core.POS_INTERMEDIATE),
        ]
    )
    assert core.match_chain([root], pins) == [(0, 1)]
    assert core.match_chain([root], pins, verified=False) == [(0, 1)]
    assert core.match_chain([leaf], pins) == []


def test_match_cert_and_spki_pins(core: ModuleType) -> None:
    leaf, inter, root = cached_chain("rsa2048").ders
    leaf_spki_digest = sha256(spki_der(x509.load_der_x509_certificate(leaf)))
    pins = core.PinSet(
        [
            (core.KIND_CERT, "sha256", leaf_spki_digest, 7),  # an SPKI digest as a cert pin
            (core.KIND_SPKI, "sha256", sha256(leaf), 7),  # a cert digest as an SPKI pin
            cert_pin(inter),
            spki_pin(inter),
        ]
    )
    assert core.match_chain([leaf, inter, root], pins) == [(1, 2), (1, 3)]


@pytest.mark.parametrize("alg", _types.ALGORITHMS)
def test_match_every_algorithm(core: ModuleType, alg: str) -> None:
    leaf, inter, root = cached_chain("p384").ders
    pins = core.PinSet(
        [cert_pin(root, alg), spki_pin(inter, alg), cert_pin(leaf, alg), spki_pin(leaf, alg)]
    )
    assert core.match_chain([leaf, inter, root], pins) == [(0, 2), (0, 3), (1, 1), (2, 0)]
    # the same digest under another algorithm's name does not match
    other = "sha512" if alg != "sha512" else "sha384"
    assert core.match_chain([leaf, inter, root], core.PinSet([spki_pin(leaf, other)])) == [(0, 0)]
    mixed = core.PinSet(
        [
            (core.KIND_SPKI, other, bytes(_types.DIGEST_SIZES[other]), 7),
            spki_pin(leaf, alg),
        ]
    )
    assert core.match_chain([leaf, inter, root], mixed) == [(0, 1)]


def test_match_ordering_and_multiple_matches(core: ModuleType) -> None:
    leaf, inter, root = cached_chain("ed25519").ders
    pins = core.PinSet(
        [
            spki_pin(root),
            spki_pin(inter),
            spki_pin(leaf, "sha1"),
            spki_pin(leaf, "sha512"),
            cert_pin(leaf),
            spki_pin(leaf),
            spki_pin(leaf),  # duplicates are matched too
        ]
    )
    assert core.match_chain([leaf, inter, root], pins) == [
        (0, 2),
        (0, 3),
        (0, 4),
        (0, 5),
        (0, 6),
        (1, 1),
        (2, 0),
    ]
    # the same key in two positions (a chain that repeats a certificate)
    assert core.match_chain([leaf, leaf, leaf], core.PinSet([spki_pin(leaf)])) == [
        (0, 0),
        (1, 0),
        (2, 0),
    ]


def test_match_no_match(core: ModuleType) -> None:
    ders = cached_chain("p256").ders
    others = cached_chain("ed25519").ders
    pins = core.PinSet([spki_pin(d) for d in others] + [cert_pin(d) for d in others])
    assert core.match_chain(ders, pins) == []
    assert core.match_chain(ders, core.PinSet([])) == []
    assert core.match_chain(tuple(ders), pins, verified=False) == []


def test_match_bytes_like_chain(core: ModuleType) -> None:
    leaf, inter, root = cached_chain("p256").ders
    pins = core.PinSet([spki_pin(leaf), cert_pin(root)])
    chain = [bytearray(leaf), memoryview(inter), root]
    assert core.match_chain(chain, pins) == [(0, 0), (2, 1)]
    assert core.match_chain(tuple(chain), pins) == [(0, 0), (2, 1)]


def test_match_broken_certificate(core: ModuleType) -> None:
    leaf, inter, root = cached_chain("p256").ders
    pins = core.PinSet([spki_pin(leaf)])
    for broken in (root[:-1], root + b"\x00", b"", b"\x30\x80\x00\x00"):
        for verified in (True, False):
            with pytest.raises(CertificateParseError) as info:
                core.match_chain([leaf, inter, broken], pins, verified=verified)
            assert str(info.value).startswith("certificate 2: "), str(info.value)
    with pytest.raises(CertificateParseError) as info:
        core.match_chain([leaf[:10], inter, root], pins)
    assert str(info.value).startswith("certificate 0: ")
    with pytest.raises(CertificateParseError) as info:
        core.match_chain([leaf, inter + b"\x00", root], pins, verified=False)
    assert str(info.value).startswith("certificate 1: ")


def test_match_empty_chain(core: ModuleType) -> None:
    pins = core.PinSet([spki_pin(leaf_der())])
    empties: Tuple[Sequence[bytes], ...] = ([], ())
    for empty in empties:
        with pytest.raises(CertificateParseError, match="empty chain"):
            core.match_chain(empty, pins)
        with pytest.raises(CertificateParseError, match="empty chain"):
            core.match_chain(empty, pins, verified=False)


def test_match_type_errors(core: ModuleType) -> None:
    leaf = cached_chain("p256").ders[0]
    pins = core.PinSet([spki_pin(leaf)])
    for chain in ([leaf, "text"], [leaf, None], [leaf, 5], None, 5):
        with pytest.raises(TypeError):
            core.match_chain(chain, pins)
    for pinset in (None, [spki_pin(leaf)], "pins"):
        with pytest.raises(TypeError):
            core.match_chain([leaf], pinset)


def test_match_chains(core: ModuleType) -> None:
    p256 = cached_chain("p256").ders
    rsa = cached_chain("rsa2048").ders
    ed = cached_chain("ed25519").ders
    pins_a = core.PinSet([spki_pin(p256[0]), cert_pin(p256[2]), spki_pin(rsa[1])])
    pins_b = core.PinSet([spki_pin(ed[2], "sha384"), spki_pin(ed[0], "sha1")])
    jobs = [
        (p256, pins_a),
        (rsa, pins_a),
        (ed, pins_b),
        ([p256[0], p256[1][:-3], p256[2]], pins_a),  # broken certificate 1
        ([], pins_b),  # empty chain
        (ed, pins_a),  # no match
        ([ed[0]], pins_b),
    ]
    for verified in (True, False):
        results = core.match_chains(jobs, verified=verified)
        assert len(results) == len(jobs)
        for (chain, pinset), got in zip(jobs, results):
            try:
                want = core.match_chain(chain, pinset, verified=verified)
            except CertificateParseError as exc:
                assert isinstance(got, CertificateParseError)
                assert str(got) == str(exc)
            else:
                assert got == want
    results = core.match_chains(jobs)
    assert results[0] == [(0, 0), (2, 1)]
    assert results[1] == [(1, 2)]
    assert results[2] == [(0, 1), (2, 0)]
    assert isinstance(results[3], CertificateParseError)
    assert str(results[3]).startswith("certificate 1: ")
    assert isinstance(results[4], CertificateParseError)
    assert "empty chain" in str(results[4])
    assert results[5] == []
    assert results[6] == [(0, 1)]
    assert core.match_chains([]) == []
    assert core.match_chains(jobs[:1], False) == [[(0, 0)]]


def test_match_chains_type_errors(core: ModuleType) -> None:
    leaf = leaf_der()
    pins = core.PinSet([spki_pin(leaf)])
    for jobs in (None, 5, [([leaf], None)], [([leaf, "x"], pins)], [None]):
        with pytest.raises(TypeError):
            core.match_chains(jobs)
