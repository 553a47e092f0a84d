"""The core API of ext/CORE_SPEC.md, on both backends (marked ``both_cores``, see tests/conftest.py).

Real certificates come from `cryptography` (generated chains) and certifi;
malformed and unusual ones are made here by re-encoding real ones with the
small DER helpers below, so every refusal test differs from an accepted
certificate in exactly the way it names.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import warnings
from types import ModuleType
from typing import Iterator, List, Optional, Sequence, Tuple

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pinengine import _types
from pinengine._errors import CertificateParseError
from tests.certs import KEY_TYPES, cached_chain, certifi_ders, not_valid_after, not_valid_before, spki_der

# Core and policy behaviour: every test here runs on both cores (tests/conftest.py).
pytestmark = pytest.mark.both_cores

UTC = dt.timezone.utc

# --------------------------------------------------------------------------
# DER helpers
# --------------------------------------------------------------------------


def der_len(n: int) -> bytes:
    """The minimal DER length field for ``n``."""
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def tlv(tag: int, content: bytes, length: Optional[bytes] = None) -> bytes:
    """One TLV; ``length`` overrides the (minimal) length field bytes."""
    return bytes([tag]) + (der_len(len(content)) if length is None else length) + content


def read_header(b: bytes, pos: int) -> Tuple[int, int, int]:
    """(tag, content_start, content_end) of the well-formed TLV at ``pos``."""
    tag = b[pos]
    first = b[pos + 1]
    if first < 0x80:
        return tag, pos + 2, pos + 2 + first
    n = first & 0x7F
    length = int.from_bytes(b[pos + 2 : pos + 2 + n], "big")
    start = pos + 2 + n
    return tag, start, start + length


class Node:
    """A TLV as a tree: constructed nodes have ``kids``, primitive ones ``content``.

    ``length`` overrides the encoded length field; ``raw`` replaces the whole
    encoding (for things the model cannot express, such as high tag numbers).
    """

    def __init__(
        self,
        tag: int,
        content: bytes = b"",
        kids: Optional[List[Node]] = None,
        length: Optional[bytes] = None,
        raw: Optional[bytes] = None,
    ) -> None:
        self.tag = tag
        self.content = content
        self.kids = kids
        self.length = length
        self.raw = raw

    def encode(self) -> bytes:
        if self.raw is not None:
            return self.raw
        content = self.content if self.kids is None else b"".join(k.encode() for k in self.kids)
        return tlv(self.tag, content, self.length)

    def depth(self) -> int:
        """Nesting depth of the deepest TLV in this subtree (this node being 1)."""
        return 1 + max((k.depth() for k in self.kids or ()), default=0)


def parse_tree(b: bytes, pos: int = 0) -> Node:
    tag, start, end = read_header(b, pos)
    if tag & 0x20:
        kids = []
        p = start
        while p < end:
            kid = parse_tree(b, p)
            kids.append(kid)
            p = read_header(b, p)[2]
        return Node(tag, kids=kids)
    return Node(tag, content=b[start:end])


def seq(*kids: Node) -> Node:
    return Node(0x30, kids=list(kids))


def prim(tag: int, content: bytes) -> Node:
    return Node(tag, content=content)


def nested(levels: int, innermost: Optional[Node] = None) -> Node:
    """``levels`` SEQUENCEs nested in each other, the innermost holding ``innermost``."""
    node = seq(innermost) if innermost is not None else seq()
    for _ in range(levels - 1):
        node = seq(node)
    return node


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def der_of(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def leaf_der(key_type: str = "p256") -> bytes:
    return cached_chain(key_type).ders[0]


def cert_tree(key_type: str = "p256") -> Node:
    """A fresh tree of a generated v3 leaf: Certificate{tbs, sigAlg, sigValue}."""
    return parse_tree(leaf_der(key_type))


# Indexes into the tbsCertificate of a generated (v3) certificate.
VERSION, SERIAL, SIGNATURE, ISSUER, VALIDITY, SUBJECT, SPKI, EXTENSIONS = range(8)


def tbs(root: Node) -> List[Node]:
    assert root.kids is not None and root.kids[0].kids is not None
    return root.kids[0].kids


def extension_list(root: Node) -> List[Node]:
    """The elements of the extensions SEQUENCE (depth 5) of a generated certificate."""
    ext = tbs(root)[EXTENSIONS]
    assert ext.tag == 0xA3 and ext.kids is not None and ext.kids[0].kids is not None
    return ext.kids[0].kids


def accepted(core: ModuleType, der: bytes) -> None:
    """The certificate passes: every entry point agrees and the digests are right."""
    assert core.cert_sha256(der) == sha256(der)
    spki = core.extract_spki(der)
    assert core.spki_sha256(der) == sha256(spki)
    core.validate_spki(spki)
    info = core.parse_certificate(der)
    assert info.der == der and info.spki == spki


def refused(core: ModuleType, der: bytes, *, pattern: str = "") -> CertificateParseError:
    """Every entry point refuses the certificate with CertificateParseError; none returns a digest."""
    err = None
    for fn in (core.spki_sha256, core.cert_sha256, core.parse_certificate, core.extract_spki):
        with pytest.raises(CertificateParseError) as info:
            fn(der)
        err = info.value
    for alg in _types.ALGORITHMS:
        with pytest.raises(CertificateParseError):
            core.spki_digest(der, alg)
        with pytest.raises(CertificateParseError):
            core.cert_digest(der, alg)
    assert err is not None
    if pattern:
        assert re.search(pattern, str(err), re.IGNORECASE), str(err)
    return err


def refuses(core: ModuleType, der: bytes) -> bool:
    """True when spki_sha256 refuses ``der``; cheap variant for loops."""
    try:
        core.spki_sha256(der)
    except CertificateParseError:
        return True
    return False


# --------------------------------------------------------------------------
# Module surface
# --------------------------------------------------------------------------


def test_module_constants(core: ModuleType, backend: str) -> None:
    assert core.BACKEND == backend
    assert (core.KIND_SPKI, core.KIND_CERT) == (0, 1)
    assert (core.POS_LEAF, core.POS_INTERMEDIATE, core.POS_ROOT, core.POS_ANY) == (1, 2, 4, 7)
    assert tuple(core.ALGORITHMS) == ("sha1", "sha256", "sha384", "sha512")
    if backend == "python":
        assert core.sha256_implementation() == "hashlib"
    else:
        assert core.sha256_implementation() in ("sha-ni", "armv8", "portable")


HASH_LENGTHS = [0, 1, 3, 55, 56, 63, 64, 65, 111, 112, 119, 120, 127, 128, 129, 1000, 100_000]


@pytest.mark.parametrize("algorithm", _types.ALGORITHMS)
def test_hash_bytes(core: ModuleType, algorithm: str) -> None:
    for n in HASH_LENGTHS:
        data = bytes((i * 31 + 7) & 0xFF for i in range(n))
        want = hashlib.new(algorithm, data).digest()
        assert core.hash_bytes(data, algorithm) == want
        assert core.hash_bytes(bytearray(data), algorithm) == want
        assert core.hash_bytes(memoryview(data), algorithm) == want


def test_hash_bytes_errors(core: ModuleType) -> None:
    for bad in ("md5", "SHA256", "sha-256", ""):
        with pytest.raises(ValueError):
            core.hash_bytes(b"x", bad)
    for data in ("text", 1, None, [1, 2]):
        with pytest.raises(TypeError):
            core.hash_bytes(data, "sha256")


def test_sha256_implementations(core: ModuleType, backend: str) -> None:
    """Compiled only (CORE_SPEC §3): every SHA-256 path this CPU has agrees with hashlib."""
    if backend == "python":
        pytest.skip("_sha256_with is a compiled-core extra")
    names = [n for n in ("portable", "sha-ni", "armv8") if core._sha256_available(n)]
    assert "portable" in names
    for n in HASH_LENGTHS:
        data = bytes((i * 131 + 3) & 0xFF for i in range(n))
        for name in names:
            assert core._sha256_with(name, data) == sha256(data), (name, n)
    for name in ("sha-ni", "armv8"):
        if name not in names:
            with pytest.raises(ValueError):
                core._sha256_with(name, b"")
    with pytest.raises(ValueError):
        core._sha256_with("nonsense", b"")


# --------------------------------------------------------------------------
# Real certificates
# --------------------------------------------------------------------------


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_generated_chain_digests(core: ModuleType, key_type: str) -> None:
    chain = cached_chain(key_type)
    for cert, der in zip(chain.certs, chain.ders):
        spki = spki_der(cert)
        assert core.extract_spki(der) == spki
        assert core.spki_sha256(der) == sha256(spki)
        assert core.cert_sha256(der) == sha256(der)
        core.validate_spki(spki)
        for alg in _types.ALGORITHMS:
            assert core.spki_digest(der, alg) == hashlib.new(alg, spki).digest()
            assert core.cert_digest(der, alg) == hashlib.new(alg, der).digest()
        for unknown in ("md5", "SHA256"):
            with pytest.raises(ValueError):
                core.spki_digest(der, unknown)
            with pytest.raises(ValueError):
                core.cert_digest(der, unknown)


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_generated_chain_parse(core: ModuleType, key_type: str) -> None:
    chain = cached_chain(key_type)
    for cert, der in zip(chain.certs, chain.ders):
        info = core.parse_certificate(der)
        assert isinstance(info, _types.CertificateInfo)
        assert info.der == der
        assert info.version == 3
        assert info.serial_number == cert.serial_number
        assert info.subject == cert.subject.rfc4514_string()
        assert info.issuer == cert.issuer.rfc4514_string()
        assert info.not_before == not_valid_before(cert)
        assert info.not_after == not_valid_after(cert)
        assert info.spki == spki_der(cert)
        assert info.subject_der == cert.subject.public_bytes()
        assert info.issuer_der == cert.issuer.public_bytes()
    assert core.parse_certificate(chain.ders[0]).subject == "CN=example.com,O=pinengine tests"


def test_bytes_like_inputs(core: ModuleType) -> None:
    der = leaf_der()
    want = core.spki_sha256(der)
    padded = b"\x00\x00" + der + b"\xff\xff"
    for form in (bytearray(der), memoryview(der), memoryview(padded)[2:-2]):
        assert core.spki_sha256(form) == want
        assert core.cert_sha256(form) == sha256(der)
        assert core.extract_spki(form) == core.extract_spki(der)
        assert core.parse_certificate(form) == core.parse_certificate(der)
        assert core.spki_digest(form, "sha384") == core.spki_digest(der, "sha384")
        assert core.cert_digest(form, "sha1") == core.cert_digest(der, "sha1")
    spki = core.extract_spki(der)
    core.validate_spki(bytearray(spki))
    core.validate_spki(memoryview(spki))


@pytest.mark.parametrize("bad", ["text", 1, None, [0x30, 0x00], 1.5, object()])
def test_non_bytes_arguments(core: ModuleType, bad: object) -> None:
    for fn in (
        core.spki_sha256,
        core.cert_sha256,
        core.parse_certificate,
        core.extract_spki,
        core.validate_spki,
    ):
        with pytest.raises(TypeError):
            fn(bad)
    for alg in ("sha256", "sha512"):
        with pytest.raises(TypeError):
            core.spki_digest(bad, alg)
        with pytest.raises(TypeError):
            core.cert_digest(bad, alg)


# A Name whose every value is "plain" formats identically in pinengine and in
# cryptography. For the few with characters RFC 4514 escapes (or non-ASCII
# text) the two may legitimately differ in which characters get a backslash
# (or a hex escape), so those are compared with the escaping removed.
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9 .'()/:_@&-]*")


def _plain(name: x509.Name) -> bool:
    return all(
        isinstance(a.value, str)
        and _PLAIN_VALUE.fullmatch(a.value)
        and not a.value.startswith((" ", "#"))
        and not a.value.endswith(" ")
        for a in name
    )


def _unescaped(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def test_certifi_bundle(core: ModuleType) -> None:
    ders = certifi_ders()
    assert len(ders) > 50
    exact = 0
    for der in ders:
        with warnings.catch_warnings():
            # A few roots have a non-positive serial number: cryptography warns.
            warnings.simplefilter("ignore")
            cert = x509.load_der_x509_certificate(der)
            serial = cert.serial_number
        spki = spki_der(cert)
        where = cert.subject.rfc4514_string()
        assert core.spki_sha256(der) == sha256(spki), where
        assert core.extract_spki(der) == spki, where
        assert core.cert_sha256(der) == sha256(der), where
        info = core.parse_certificate(der)
        assert info.version == cert.version.value + 1, where
        assert info.serial_number == serial, where
        assert info.not_before == not_valid_before(cert), where
        assert info.not_after == not_valid_after(cert), where
        assert info.subject_der == cert.subject.public_bytes(), where
        assert info.issuer_der == cert.issuer.public_bytes(), where
        for mine, name in ((info.subject, cert.subject), (info.issuer, cert.issuer)):
            if _plain(name):
                assert mine == name.rfc4514_string(), where
                exact += 1
            else:
                assert _unescaped(mine) == _unescaped(name.rfc4514_string()), where
    # The exact comparison must cover most names of the bundle, or it proves little.
    assert exact > len(ders)  # out of 2 * len(ders) names


# --------------------------------------------------------------------------
# v1 and v2 certificates, both time types
# --------------------------------------------------------------------------


def utc_time(text: str) -> Node:
    return prim(0x17, text.encode("ascii"))


def gen_time(text: str) -> Node:
    return prim(0x18, text.encode("ascii"))


def with_validity(not_before: Node, not_after: Node, root: Optional[Node] = None) -> bytes:
    root = root or cert_tree()
    tbs(root)[VALIDITY] = seq(not_before, not_after)
    return root.encode()


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


# --------------------------------------------------------------------------
# TLV encoding (§1.1)
# --------------------------------------------------------------------------


def test_empty_and_tiny_inputs(core: ModuleType) -> None:
    err = refused(core, b"")
    assert "empty" in str(err).lower()
    for tiny in (b"\x30", b"\x00", b"\x30\x00", b"\x30\x01", b"\x30\x02\x05\x00", b"\x00\x00"):
        refused(core, tiny)


def test_truncated_at_every_offset(core: ModuleType) -> None:
    for der in (leaf_der("p256"), leaf_der("ed25519")):
        for cut in range(len(der)):
            assert refuses(core, der[:cut]), cut
            with pytest.raises(CertificateParseError):
                core.parse_certificate(der[:cut])
            with pytest.raises(CertificateParseError):
                core.cert_sha256(der[:cut])
    refused(core, leaf_der("rsa2048")[:-1])


def test_trailing_bytes(core: ModuleType) -> None:
    der = leaf_der()
    for extra in (b"\x00", b"\x00\x00", b"\x05\x00", der, cached_chain("p256").ders[1]):
        refused(core, der + extra, pattern="trailing")


def test_indefinite_length(core: ModuleType) -> None:
    der = leaf_der()
    _, start, end = read_header(der, 0)
    err = refused(core, b"\x30\x80" + der[start:end] + b"\x00\x00", pattern="indefinite")
    assert re.search(r"offset 1\b", str(err)), str(err)
    # inside an extension
    root = cert_tree()
    extension_list(root).append(Node(0x30, raw=b"\x30\x80\x05\x00\x00\x00"))
    refused(core, root.encode(), pattern="indefinite")
    # on a primitive
    root = cert_tree()
    tbs(root)[SERIAL] = Node(0x02, raw=b"\x02\x80\x01\x00\x00")
    refused(core, root.encode())


def test_non_minimal_lengths(core: ModuleType) -> None:
    def with_serial(length: Optional[bytes]) -> bytes:
        root = cert_tree()
        tbs(root)[SERIAL] = Node(0x02, content=b"\x01\x02\x03\x04\x05", length=length)
        return root.encode()

    accepted(core, with_serial(None))
    accepted(core, with_serial(b"\x05"))
    refused(core, with_serial(b"\x81\x05"), pattern="offset")
    refused(core, with_serial(b"\x82\x00\x05"))
    refused(core, with_serial(b"\x83\x00\x00\x05"))
    refused(core, with_serial(b"\x84\x00\x00\x00\x05"))

    # 0x81 0x80 and above is the minimal form; 0x82 0x00 0xc8 is not.
    def with_octets(length: Optional[bytes], n: int = 200) -> bytes:
        root = cert_tree()
        extension_list(root).append(prim(0x04, bytes(n)))
        if length is not None:
            extension_list(root)[-1].length = length
        return root.encode()

    accepted(core, with_octets(b"\x81\xc8"))
    accepted(core, with_octets(b"\x81\x80", 128))
    accepted(core, with_octets(b"\x82\x01\x00", 256))
    refused(core, with_octets(b"\x81\x7f", 127))
    refused(core, with_octets(b"\x82\x00\xc8"))
    refused(core, with_octets(b"\x83\x00\x00\xc8"))
    refused(core, with_octets(b"\x83\x00\x01\x00", 256))

    # the outermost length, written with one byte too many
    der = leaf_der("rsa2048")
    read_header(der, 0)  # a well-formed header
    assert der[1] == 0x82
    refused(core, b"\x30\x83\x00" + der[2:])


def test_long_length_fields(core: ModuleType) -> None:
    der = leaf_der()
    _, start, end = read_header(der, 0)
    body = der[start:end]
    n = len(body)
    refused(core, b"\x30\x85" + n.to_bytes(5, "big") + body)  # 5-byte length
    refused(core, b"\x30\x85\x01" + n.to_bytes(4, "big") + body)
    refused(core, b"\x30\x88" + n.to_bytes(8, "big") + body)
    refused(core, b"\x30\xff" + body)
    refused(core, b"\x30\x84\xff\xff\xff\xff" + body, pattern="offset")  # absurd length
    refused(core, b"\x30\x84\x7f\xff\xff\xff" + body)
    refused(core, b"\x30\x84" + n.to_bytes(4, "big") + body)  # non-minimal 4-byte form
    accepted(core, b"\x30" + der_len(n) + body)
    root = cert_tree()
    tbs(root)[SERIAL] = Node(0x02, raw=b"\x02\x84\xff\xff\xff\xff\x01")
    refused(core, root.encode())
    root = cert_tree()
    extension_list(root).append(Node(0x04, raw=b"\x04\x85\x00\x00\x00\x00\x01\x00"))
    refused(core, root.encode())


@pytest.mark.parametrize("tag", [0x1F, 0x3F, 0x5F, 0x9F, 0xBF, 0xDF, 0xFF])
def test_high_tag_number_form(core: ModuleType, tag: int) -> None:
    root = cert_tree()
    extension_list(root).append(Node(0, raw=bytes([tag, 0x21, 0x01, 0x00])))
    refused(core, root.encode(), pattern="tag")
    root = cert_tree()
    extension_list(root).append(Node(0, raw=bytes([tag, 0x00])))
    refused(core, root.encode())
    # the highest low-tag-number form next to it is fine
    root = cert_tree()
    extension_list(root).append(prim(tag - 1 if tag & 0x20 == 0 else 0x9E, b"\x00"))
    accepted(core, root.encode())


def test_nesting_depth(core: ModuleType) -> None:
    """Depth 32 (the Certificate being 1) is accepted, 33 is refused, inside an extension."""

    def with_nesting(node: Node) -> Tuple[bytes, int]:
        root = cert_tree()
        first_extension = extension_list(root)[0]
        assert first_extension.kids is not None
        first_extension.kids.append(node)
        return root.encode(), root.depth()

    der, depth = with_nesting(nested(27))
    assert depth == 32
    accepted(core, der)
    der, depth = with_nesting(nested(26, prim(0x05, b"")))
    assert depth == 32
    accepted(core, der)
    der, depth = with_nesting(nested(28))
    assert depth == 33
    refused(core, der, pattern="nest|depth")
    der, depth = with_nesting(nested(27, prim(0x05, b"")))
    assert depth == 33
    refused(core, der)
    der, depth = with_nesting(nested(200))
    refused(core, der)
    der, depth = with_nesting(Node(0x30, raw=b"\x30\x80" * 50 + b"\x00\x00" * 50))
    refused(core, der)


# -- every length field, raised and lowered by one


def length_fields(der: bytes) -> Iterator[Tuple[int, int, int, bool]]:
    """(offset of the length field, its size in bytes, the length, guaranteed)
    for every TLV reached by walking constructed TLVs.

    One more or one less in a length field is always refused for a constructed
    TLV (its contents no longer split into TLVs that fill it exactly) and for
    the last TLV of its parent (it overruns the parent, or leaves one byte that
    is no TLV). For a primitive with a following sibling it re-frames the rest
    of the parent; where §1.2 fixes the parent's shape (Certificate,
    tbsCertificate, version, validity, SPKI) that is refused too, but inside a
    Name, an AlgorithmIdentifier or the extensions it may, by coincidence, give
    well-formed TLVs (e.g. "CN=example.com" with the attribute OID one byte
    shorter re-frames into OID + BIT STRING), so ``guaranteed`` is False there.
    """
    _, tbs_start, tbs_end = read_header(der, read_header(der, 0)[1])
    tbs_kids = []
    p = tbs_start
    while p < tbs_end:
        tbs_kids.append(p)
        p = read_header(der, p)[2]
    shaped = {0, read_header(der, 0)[1]}
    if der[tbs_kids[0]] == 0xA0:
        shaped.add(tbs_kids.pop(0))
    shaped.add(tbs_kids[VALIDITY - 1])
    shaped.add(tbs_kids[SPKI - 1])

    def walk(parent: int, start: int, end: int) -> Iterator[Tuple[int, int, int, bool]]:
        p = start
        while p < end:
            tag, cs, ce = read_header(der, p)
            guaranteed = bool(tag & 0x20) or ce == end or parent in shaped
            yield p + 1, cs - p - 1, ce - cs, guaranteed
            if tag & 0x20:
                yield from walk(p, cs, ce)
            p = ce

    yield from walk(-1, 0, len(der))


def with_length(der: bytes, offset: int, size: int, value: int) -> Optional[bytes]:
    if size == 1:
        if not 0 <= value <= 0xFF:
            return None
        field = bytes([value])
    else:
        try:
            field = bytes([der[offset]]) + value.to_bytes(size - 1, "big")
        except OverflowError:
            return None
    return der[:offset] + field + der[offset + size :]


def test_every_length_field_off_by_one(core: ModuleType) -> None:
    ders = [leaf_der("p256"), leaf_der("rsa2048"), cached_chain("ed25519").ders[2]]
    ders += list(certifi_ders()[:3])
    checked = 0
    for der in ders:
        for offset, size, length, must_refuse in length_fields(der):
            for delta in (1, -1):
                mutant = with_length(der, offset, size, length + delta)
                if mutant is None:
                    continue
                if must_refuse:
                    checked += 1
                    assert refuses(core, mutant), (offset, size, length, delta, mutant.hex())
                    with pytest.raises(CertificateParseError):
                        core.cert_sha256(mutant)
                else:
                    # The spec may accept it; whatever it decides, a digest is a digest.
                    try:
                        assert core.cert_sha256(mutant) == sha256(mutant)
                    except CertificateParseError:
                        pass
    assert checked > 300


# --------------------------------------------------------------------------
# validate_spki
# --------------------------------------------------------------------------


def test_validate_spki_good(core: ModuleType) -> None:
    for key_type in KEY_TYPES:
        for cert in cached_chain(key_type).certs:
            assert core.validate_spki(spki_der(cert)) is None
    for der in certifi_ders()[:20]:
        core.validate_spki(core.extract_spki(der))
    alg = seq(prim(0x06, b"\x2b\x65\x70"))
    core.validate_spki(seq(alg, prim(0x03, b"\x00")).encode())


def test_validate_spki_bad(core: ModuleType) -> None:
    spki = spki_der(cached_chain("p256").leaf)
    tree = parse_tree(spki)
    assert tree.kids is not None
    alg, key = tree.kids
    bad = [
        b"",
        spki + b"\x00",
        spki + spki,
        spki[:-1],
        spki[:2],
        b"\x31" + spki[1:],
        seq(alg).encode(),
        seq(alg, key, key).encode(),
        seq(key, alg).encode(),
        seq(alg, prim(0x03, b"\x08\x00")).encode(),
        seq(alg, prim(0x03, b"")).encode(),
        seq(alg, prim(0x04, b"\x00\x01")).encode(),
        seq(seq(), key).encode(),
        seq(seq(prim(0x06, b"")), key).encode(),
        seq(seq(prim(0x05, b"")), key).encode(),
        b"\x30\x80" + spki[2:] + b"\x00\x00",
        b"\x30\x81" + spki[1:],
        leaf_der("p256"),  # a certificate is not an SPKI
        nested(40).encode(),
    ]
    for data in bad:
        with pytest.raises(CertificateParseError):
            core.validate_spki(data)
    for wrong in ("text", None, 5, [1]):
        with pytest.raises(TypeError):
            core.validate_spki(wrong)


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


def spki_pin(der: bytes, alg: str = "sha256", positions: int = 7) -> tuple:
    cert = x509.load_der_x509_certificate(der)
    return (_types.KIND_SPKI, alg, hashlib.new(alg, spki_der(cert)).digest(), positions)


def cert_pin(der: bytes, alg: str = "sha256", positions: int = 7) -> tuple:
    return (_types.KIND_CERT, alg, hashlib.new(alg, der).digest(), positions)


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
