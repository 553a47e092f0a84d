"""DER builders for tests: parse a certificate into a tree, change one thing, encode it again.

The core tests (tests/test_core_*.py) and the differential tests use these to
make malformed and unusual certificates that differ from an accepted one in
exactly the way a test names.
"""

from __future__ import annotations

import hashlib
import re
from types import ModuleType
from typing import Iterator, List, Optional, Tuple

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pinengine import _types
from pinengine._errors import CertificateParseError
from tests.certs import cached_chain, spki_der

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


def utc_time(text: str) -> Node:
    return prim(0x17, text.encode("ascii"))


def gen_time(text: str) -> Node:
    return prim(0x18, text.encode("ascii"))


def with_validity(not_before: Node, not_after: Node, root: Optional[Node] = None) -> bytes:
    root = root or cert_tree()
    tbs(root)[VALIDITY] = seq(not_before, not_after)
    return root.encode()


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


def spki_pin(der: bytes, alg: str = "sha256", positions: int = 7) -> tuple:
    cert = x509.load_der_x509_certificate(der)
    return (_types.KIND_SPKI, alg, hashlib.new(alg, spki_der(cert)).digest(), positions)


def cert_pin(der: bytes, alg: str = "sha256", positions: int = 7) -> tuple:
    return (_types.KIND_CERT, alg, hashlib.new(alg, der).digest(), positions)
