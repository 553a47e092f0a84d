"""Every TLV, everywhere in the certificate (ext/CORE_SPEC.md §1.1): lengths, tags, nesting, on both cores."""

from __future__ import annotations

import re
from types import ModuleType
from typing import Optional, Tuple

import pytest

from pinengine._errors import CertificateParseError
from tests.certs import cached_chain, certifi_ders
from tests.der import (
    SERIAL,
    Node,
    accepted,
    cert_tree,
    der_len,
    extension_list,
    leaf_der,
    length_fields,
    nested,
    prim,
    read_header,
    refused,
    refuses,
    sha256,
    tbs,
    with_length,
)

# Core behaviour: every test here runs on both cores (tests/conftest.py).
pytestmark = pytest.mark.both_cores


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
