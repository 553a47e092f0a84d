"""The X.509 structure a certificate must have (ext/CORE_SPEC.md §1.2): versions, times, fields, on both cores.

Malformed and unusual certificates are made by re-encoding real ones with
the DER builders of tests/der.py, so every refusal test differs from an
accepted certificate in exactly the way it names.
"""

from __future__ import annotations

import datetime as dt
from types import ModuleType

import pytest

from tests.certs import cached_chain, spki_der
from tests.der import (
    EXTENSIONS,
    SERIAL,
    SIGNATURE,
    SPKI,
    SUBJECT,
    VALIDITY,
    VERSION,
    Node,
    accepted,
    cert_tree,
    extension_list,
    gen_time,
    prim,
    refused,
    seq,
    tbs,
    tlv,
    utc_time,
    with_validity,
)

# Core behaviour: every test here runs on both cores (tests/conftest.py).
pytestmark = pytest.mark.both_cores

UTC = dt.timezone.utc


# --------------------------------------------------------------------------
# v1 and v2 certificates, both time types
# --------------------------------------------------------------------------


def test_v1_certificate(core: ModuleType) -> None:
    root = cert_tree()
    kids = tbs(root)
    del kids[EXTENSIONS]
    del kids[VERSION]
    kids[VALIDITY - 1] = seq(utc_time("200102030405Z"), gen_time("20510607080910Z"))
    der = root.encode()
    accepted(core, der)
    info = core.parse_certificate(der)
    assert info.version == 1
    assert info.not_before == dt.datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert info.not_after == dt.datetime(2051, 6, 7, 8, 9, 10, tzinfo=UTC)
    assert info.subject == "CN=example.com,O=pinengine tests"
    assert info.issuer == "CN=pinengine test intermediate,O=pinengine tests"
    assert info.spki == spki_der(cached_chain("p256").leaf)


def test_explicit_version_1(core: ModuleType) -> None:
    """[0] INTEGER 0 (v1 written out) is accepted; extensions then are not."""
    root = cert_tree()
    kids = tbs(root)
    del kids[EXTENSIONS]
    kids[VERSION] = Node(0xA0, kids=[prim(0x02, b"\x00")])
    der = root.encode()
    accepted(core, der)
    assert core.parse_certificate(der).version == 1


def v2_tree(issuer_uid: bool = True, subject_uid: bool = True) -> Node:
    root = cert_tree()
    kids = tbs(root)
    del kids[EXTENSIONS]
    kids[VERSION] = Node(0xA0, kids=[prim(0x02, b"\x01")])
    if issuer_uid:
        kids.append(prim(0x81, b"\x00\x12\x34\x56"))
    if subject_uid:
        kids.append(prim(0x82, b"\x04\xab\xcd\xe0"))
    return root


def test_v2_certificate_with_unique_ids(core: ModuleType) -> None:
    root = v2_tree()
    tbs(root)[VALIDITY] = seq(gen_time("19991231235959Z"), utc_time("491231235959Z"))
    der = root.encode()
    accepted(core, der)
    info = core.parse_certificate(der)
    assert info.version == 2
    assert info.not_before == dt.datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert info.not_after == dt.datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC)
    for issuer_uid, subject_uid in ((True, False), (False, True), (False, False)):
        accepted(core, v2_tree(issuer_uid, subject_uid).encode())


def test_v3_certificate_with_unique_ids(core: ModuleType) -> None:
    root = cert_tree()
    kids = tbs(root)
    kids[EXTENSIONS:EXTENSIONS] = [prim(0x81, b"\x00\x01"), prim(0x82, b"\x00\x02")]
    accepted(core, root.encode())
    assert core.parse_certificate(root.encode()).version == 3


def test_unique_ids_refused_where_spec_forbids(core: ModuleType) -> None:
    # in a v1 certificate (no version field)
    root = v2_tree()
    del tbs(root)[VERSION]
    refused(core, root.encode())
    for only in ((True, False), (False, True)):
        root = v2_tree(*only)
        del tbs(root)[VERSION]
        refused(core, root.encode())
    # in a v1 certificate with an explicit version 0
    root = v2_tree()
    tbs(root)[VERSION] = Node(0xA0, kids=[prim(0x02, b"\x00")])
    refused(core, root.encode())
    # out of order, repeated, or constructed
    root = v2_tree()
    kids = tbs(root)
    kids[-2], kids[-1] = kids[-1], kids[-2]
    refused(core, root.encode())
    root = v2_tree(subject_uid=False)
    tbs(root).append(prim(0x81, b"\x00"))
    refused(core, root.encode())
    root = v2_tree(subject_uid=False)
    tbs(root)[-1] = Node(0xA1, kids=[prim(0x03, b"\x00")])
    refused(core, root.encode())
    # after the extensions
    root = cert_tree()
    tbs(root).append(prim(0x81, b"\x00"))
    refused(core, root.encode())


def test_extensions_only_in_v3(core: ModuleType) -> None:
    root = cert_tree()
    del tbs(root)[VERSION]
    refused(core, root.encode(), pattern="extension")
    root = cert_tree()
    tbs(root)[VERSION] = Node(0xA0, kids=[prim(0x02, b"\x01")])
    refused(core, root.encode())
    root = cert_tree()
    tbs(root)[VERSION] = Node(0xA0, kids=[prim(0x02, b"\x00")])
    refused(core, root.encode())


def test_extensions_shape(core: ModuleType) -> None:
    def with_ext(node: Node) -> bytes:
        root = cert_tree()
        tbs(root)[EXTENSIONS] = node
        return root.encode()

    one = seq(prim(0x06, b"\x55\x1d\x13"), prim(0x04, b"\x30\x00"))
    accepted(core, with_ext(Node(0xA3, kids=[seq(one)])))
    # The Extension's own structure is not checked: any TLVs will do.
    accepted(core, with_ext(Node(0xA3, kids=[seq(prim(0x05, b""))])))
    refused(core, with_ext(Node(0xA3, kids=[seq()])))  # no extension
    refused(core, with_ext(Node(0xA3, kids=[])))  # empty [3]
    refused(core, with_ext(Node(0xA3, kids=[seq(one), seq(one)])))  # two SEQUENCEs
    refused(core, with_ext(Node(0xA3, kids=[Node(0x31, kids=[one])])))  # a SET
    refused(core, with_ext(prim(0x83, seq(one).encode())))  # primitive [3]
    refused(core, with_ext(Node(0xA4, kids=[seq(one)])))  # [4]


# --------------------------------------------------------------------------
# Times
# --------------------------------------------------------------------------

GOOD_TIMES = [
    (utc_time("240229120000Z"), dt.datetime(2024, 2, 29, 12, 0, 0)),  # leap year
    (utc_time("000229000000Z"), dt.datetime(2000, 2, 29)),  # 2000 is a leap year
    (gen_time("20000229000000Z"), dt.datetime(2000, 2, 29)),
    (gen_time("20240229235959Z"), dt.datetime(2024, 2, 29, 23, 59, 59)),
    (utc_time("500101000000Z"), dt.datetime(1950, 1, 1)),
    (utc_time("491231235959Z"), dt.datetime(2049, 12, 31, 23, 59, 59)),
    (utc_time("241231235959Z"), dt.datetime(2024, 12, 31, 23, 59, 59)),
    (utc_time("240430000000Z"), dt.datetime(2024, 4, 30)),
    (gen_time("00010101000000Z"), dt.datetime(1, 1, 1)),
    (gen_time("99991231235959Z"), dt.datetime(9999, 12, 31, 23, 59, 59)),
    (gen_time("16000229000000Z"), dt.datetime(1600, 2, 29)),
]

BAD_TIMES = [
    utc_time("230229120000Z"),  # Feb 29 in a non-leap year
    gen_time("21000229000000Z"),  # 2100 is not a leap year
    gen_time("19000229000000Z"),
    utc_time("241301000000Z"),  # month 13
    utc_time("240001000000Z"),  # month 0
    utc_time("240100000000Z"),  # day 0
    utc_time("240132000000Z"),  # Jan 32
    utc_time("240230000000Z"),  # Feb 30
    utc_time("240431000000Z"),  # Apr 31
    utc_time("240101240000Z"),  # hour 24
    utc_time("240101006000Z"),  # minute 60
    utc_time("240101000060Z"),  # second 60
    gen_time("20240101240000Z"),
    utc_time("24010100000aZ"),  # non-digits
    utc_time(" 40101000000Z"),
    utc_time("2401010000-0Z"),
    utc_time("24o101000000Z"),
    prim(0x18, b"2024010100000\xb9Z"),
    gen_time("20240101000000.5Z"),  # fractional seconds
    gen_time("202401010000.5Z"),  # fraction with the right length
    utc_time("240101000000+0000"),  # offsets
    gen_time("20240101000000+0000"),
    utc_time("2401010000+00"),  # offset with the right length
    utc_time("240101000000"),  # no Z
    utc_time("240101000000z"),
    utc_time("2401010000000"),
    utc_time("2401010000Z"),  # no seconds: wrong length
    utc_time("20240101000000Z"),  # GeneralizedTime text in a UTCTime
    gen_time("240101000000Z"),  # UTCTime text in a GeneralizedTime
    gen_time("00000101000000Z"),  # year 0
    prim(0x13, b"240101000000Z"),  # PrintableString
    prim(0x04, b"240101000000Z"),
    Node(0x37, kids=[]),  # constructed
    prim(0x17, b""),
]


@pytest.mark.parametrize("index", range(len(GOOD_TIMES)))
def test_good_times(core: ModuleType, index: int) -> None:
    node, when = GOOD_TIMES[index]
    when = when.replace(tzinfo=UTC)
    other = utc_time("300101000000Z")
    for nb, na in ((node, other), (other, node)):
        der = with_validity(nb, na)
        accepted(core, der)
        info = core.parse_certificate(der)
        assert (info.not_before if nb is node else info.not_after) == when


@pytest.mark.parametrize("index", range(len(BAD_TIMES)))
def test_bad_times(core: ModuleType, index: int) -> None:
    node = BAD_TIMES[index]
    other = utc_time("300101000000Z")
    refused(core, with_validity(node, other))
    refused(core, with_validity(other, node))


def test_validity_shape(core: ModuleType) -> None:
    t = utc_time("300101000000Z")
    root = cert_tree()
    tbs(root)[VALIDITY] = seq(t)
    refused(core, root.encode())
    tbs(root)[VALIDITY] = seq(t, t, t)
    refused(core, root.encode())
    tbs(root)[VALIDITY] = seq()
    refused(core, root.encode())
    tbs(root)[VALIDITY] = Node(0x31, kids=[t, t])
    refused(core, root.encode())
    tbs(root)[VALIDITY] = seq(t, t)
    accepted(core, root.encode())


# --------------------------------------------------------------------------
# X.509 structure
# --------------------------------------------------------------------------


def test_certificate_shape(core: ModuleType) -> None:
    root = cert_tree()
    assert root.kids is not None
    tbs_node, alg, sig = root.kids
    refused(core, seq(tbs_node, alg).encode())
    refused(core, seq(tbs_node, alg, sig, prim(0x05, b"")).encode())
    refused(core, seq(tbs_node).encode())
    refused(core, Node(0x31, kids=[tbs_node, alg, sig]).encode())
    refused(core, Node(0x31, kids=[Node(0x31, kids=tbs_node.kids), alg, sig]).encode())
    refused(core, seq(Node(0x31, kids=tbs_node.kids), alg, sig).encode())
    refused(core, seq(alg, tbs_node, sig).encode())
    refused(core, tlv(0x30, b""))
    refused(core, b"\x30")
    refused(core, b"\x05\x00")
    accepted(core, seq(tbs_node, alg, sig).encode())


def test_tbs_missing_or_extra_elements(core: ModuleType) -> None:
    for cut in range(1, SPKI + 1):
        root = cert_tree()
        del tbs(root)[cut:]
        refused(core, root.encode())
    for missing in range(SERIAL, SPKI + 1):
        root = cert_tree()
        del tbs(root)[missing]
        refused(core, root.encode())
    root = cert_tree()
    tbs(root).append(prim(0x05, b""))
    refused(core, root.encode())
    root = cert_tree()
    tbs(root).append(Node(0xA4, kids=[]))
    refused(core, root.encode())


def test_version_field(core: ModuleType) -> None:
    def with_version(node: Node) -> bytes:
        root = cert_tree()
        tbs(root)[VERSION] = node
        return root.encode()

    accepted(core, with_version(Node(0xA0, kids=[prim(0x02, b"\x02")])))
    for bad in (
        Node(0xA0, kids=[prim(0x02, b"\x03")]),  # version value 3
        Node(0xA0, kids=[prim(0x02, b"\xff")]),  # -1
        Node(0xA0, kids=[prim(0x02, b"\x00\x02")]),  # two bytes
        Node(0xA0, kids=[prim(0x02, b"")]),  # empty
        Node(0xA0, kids=[prim(0x02, b"\x02"), prim(0x02, b"\x02")]),
        Node(0xA0, kids=[prim(0x04, b"\x02")]),
        Node(0xA0, kids=[]),
        prim(0x80, prim(0x02, b"\x02").encode()),  # primitive [0]
        Node(0xA1, kids=[prim(0x02, b"\x02")]),
    ):
        refused(core, with_version(bad))
    err = refused(core, with_version(Node(0xA0, kids=[prim(0x02, b"\x03")])))
    assert "offset" in str(err)
    # version value 3 (or more) with nothing that only v2/v3 may carry
    for value in (b"\x03", b"\x04", b"\x7f"):
        root = cert_tree()
        kids = tbs(root)
        del kids[EXTENSIONS]
        kids[VERSION] = Node(0xA0, kids=[prim(0x02, value)])
        refused(core, root.encode())
        root = v2_tree()
        tbs(root)[VERSION] = Node(0xA0, kids=[prim(0x02, value)])
        refused(core, root.encode())
    root = cert_tree()
    del tbs(root)[EXTENSIONS]
    accepted(core, root.encode())  # a v3 certificate need not have extensions
    assert core.parse_certificate(root.encode()).version == 3


def test_serial_number(core: ModuleType) -> None:
    def with_serial(node: Node) -> bytes:
        root = cert_tree()
        tbs(root)[SERIAL] = node
        return root.encode()

    # Minimality is not checked: leading zero bytes and negative values pass.
    der = with_serial(prim(0x02, b"\x00\x00\x01"))
    accepted(core, der)
    assert core.parse_certificate(der).serial_number == 1
    der = with_serial(prim(0x02, b"\xff"))
    assert core.parse_certificate(der).serial_number == -1
    der = with_serial(prim(0x02, bytes(range(1, 41))))
    assert core.parse_certificate(der).serial_number == int.from_bytes(bytes(range(1, 41)), "big")
    refused(core, with_serial(prim(0x02, b"")))
    refused(core, with_serial(prim(0x04, b"\x01")))
    refused(core, with_serial(Node(0x22, kids=[prim(0x02, b"\x01")])))


OID_SHA256_RSA = b"\x2a\x86\x48\x86\xf7\x0d\x01\x01\x0b"


@pytest.mark.parametrize("where", ["signature", "signatureAlgorithm", "spki"])
def test_algorithm_identifier(core: ModuleType, where: str) -> None:
    def with_alg(node: Node) -> bytes:
        root = cert_tree()
        assert root.kids is not None
        if where == "signature":
            tbs(root)[SIGNATURE] = node
        elif where == "signatureAlgorithm":
            root.kids[1] = node
        else:
            spki = tbs(root)[SPKI]
            assert spki.kids is not None
            spki.kids[0] = node
        return root.encode()

    oid = prim(0x06, OID_SHA256_RSA)
    accepted(core, with_alg(seq(oid)))
    accepted(core, with_alg(seq(oid, prim(0x05, b""))))
    accepted(core, with_alg(seq(oid, seq(prim(0x02, b"\x01"), prim(0x04, b"x")))))
    accepted(core, with_alg(seq(prim(0x06, b"\x80"))))  # OID contents are not decoded
    refused(core, with_alg(seq()))
    refused(core, with_alg(seq(prim(0x06, b""))))
    refused(core, with_alg(seq(prim(0x05, b""), oid)))
    refused(core, with_alg(seq(oid, prim(0x05, b""), prim(0x05, b""))))
    refused(core, with_alg(Node(0x31, kids=[oid])))
    refused(core, with_alg(prim(0x06, OID_SHA256_RSA)))


def test_names_not_inspected_but_walked(core: ModuleType) -> None:
    """issuer/subject must be SEQUENCEs whose TLVs are well-formed; nothing more."""

    def with_subject(node: Node) -> bytes:
        root = cert_tree()
        tbs(root)[SUBJECT] = node
        return root.encode()

    der = with_subject(seq())
    accepted(core, der)
    assert core.parse_certificate(der).subject == ""
    accepted(core, with_subject(seq(prim(0x04, b"\x30\x80\xff\x1f"), prim(0x05, b""))))
    accepted(core, with_subject(seq(Node(0x31, kids=[prim(0x13, b"x")]))))
    refused(core, with_subject(Node(0x31, kids=[])))
    refused(core, with_subject(prim(0x04, b"")))
    # a constructed element inside the Name is walked: its contents must be TLVs
    # SET { SEQUENCE { OID, a string whose length says 5 but holds 3 bytes } }
    bad_inner = Node(0x31, kids=[seq(prim(0x06, b"\x55\x04\x03"), Node(0, raw=b"\x13\x05abc"))])
    refused(core, with_subject(seq(bad_inner)))


def test_primitive_contents_not_inspected(core: ModuleType) -> None:
    """An OCTET STRING holding broken DER (in an extension) is just bytes."""
    root = cert_tree()
    extension_list(root).append(
        seq(prim(0x06, b"\x55\x1d\x0e"), prim(0x04, b"\x30\x80\x9f\x85\xff\xff\xff\xff\xff"))
    )
    accepted(core, root.encode())


@pytest.mark.parametrize("where", ["signatureValue", "subjectPublicKey"])
def test_bit_string(core: ModuleType, where: str) -> None:
    def with_bits(content: bytes, tag: int = 0x03) -> bytes:
        root = cert_tree()
        assert root.kids is not None
        if where == "signatureValue":
            root.kids[2] = prim(tag, content)
        else:
            spki = tbs(root)[SPKI]
            assert spki.kids is not None
            spki.kids[1] = prim(tag, content)
        return root.encode()

    accepted(core, with_bits(b"\x00"))  # empty bit string
    accepted(core, with_bits(b"\x00\x01\x02"))
    accepted(core, with_bits(b"\x07\x80"))
    refused(core, with_bits(b"\x08\x00"))  # unused bits 8
    refused(core, with_bits(b"\xff\x00"))
    refused(core, with_bits(b"\x01"))  # unused bits in an empty bit string
    refused(core, with_bits(b"\x07"))
    refused(core, with_bits(b""))
    refused(core, with_bits(b"\x00\x01", tag=0x04))
    refused(core, with_bits(b"\x00\x01", tag=0x23))


def test_spki_shape(core: ModuleType) -> None:
    def with_spki(node: Node) -> bytes:
        root = cert_tree()
        tbs(root)[SPKI] = node
        return root.encode()

    good = tbs(cert_tree())[SPKI]
    assert good.kids is not None
    alg, key = good.kids
    accepted(core, with_spki(seq(alg, key)))
    refused(core, with_spki(seq(alg)))
    refused(core, with_spki(seq(alg, key, key)))
    refused(core, with_spki(seq(key, alg)))
    refused(core, with_spki(Node(0x31, kids=[alg, key])))
