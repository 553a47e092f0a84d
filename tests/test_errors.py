"""One error hierarchy: every exception class lives in pinengine._errors, under PinengineError."""

from __future__ import annotations

import ast
import ssl
from pathlib import Path

import pytest

import pinengine
from pinengine import Pin, PinengineError, PinMismatchError, PinPolicy, _errors
from tests.certs import Chain, cached_chain, make_chain

PACKAGE = Path(pinengine.__file__).resolve().parent


def test_every_public_exception_class_is_defined_in_errors() -> None:
    # Private control-flow exceptions (a leading underscore) stay where they
    # are raised and caught; grpc's error types live with the gRPC hook.
    defined: list[str] = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "_errors.py" or "grpc" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                bases = {ast.unparse(b) for b in node.bases}
                if any(b.endswith(("Error", "Exception", "Warning")) for b in bases):
                    defined.append(f"{path.relative_to(PACKAGE)}: {node.name}")
    assert defined == []


@pytest.mark.parametrize(
    "name", [n for n, v in vars(_errors).items() if isinstance(v, type) and issubclass(v, Exception)
             and not issubclass(v, Warning) and v.__module__ == _errors.__name__],
)
def test_every_error_is_a_pinengine_error_and_exported(name: str) -> None:
    cls = getattr(_errors, name)
    assert issubclass(cls, PinengineError)
    assert getattr(pinengine, name) is cls
    assert name in pinengine.__all__


def test_old_import_paths_still_work() -> None:
    from pinengine.hpkp import HPKPError
    from pinengine.pins import InsecurePinWarning
    from pinengine.stores import NoRecordError, StoreError
    from pinengine.stores._base import NoRecordError as BaseNoRecordError
    from pinengine.stores._base import StoreError as BaseStoreError

    assert HPKPError is _errors.HPKPError
    assert InsecurePinWarning is _errors.InsecurePinWarning is pinengine.InsecurePinWarning
    assert StoreError is BaseStoreError is _errors.StoreError
    assert NoRecordError is BaseNoRecordError is _errors.NoRecordError
    assert issubclass(NoRecordError, LookupError)


def test_a_pin_mismatch_is_caught_as_pinengine_error_and_as_ssl_verification_error() -> None:
    chain: Chain = cached_chain("p256")
    other: Chain = make_chain("p256", "other.example")
    policy = PinPolicy.from_mapping({"domains": [{"host": "example.com", "pins": [
        str(Pin.from_certificate(other.ders[0])), str(Pin.from_certificate(other.ders[1]))]}]})
    with pytest.raises(PinengineError) as caught:
        policy.verify("example.com", chain.ders)
    assert isinstance(caught.value, PinMismatchError)
    assert isinstance(caught.value, ssl.SSLCertVerificationError)
    assert caught.value.hostname == "example.com"
    assert "Certificate pinning failure for example.com" in str(caught.value)


def test_input_errors_that_teach() -> None:
    # issue 15, item 7: the mistake people make gets an error that names the fix.
    from cryptography.hazmat.primitives import serialization

    from pinengine import CertificateParseError, cert_sha256, parse_certificate, spki_sha256

    pem_bytes = cached_chain("p256").leaf.public_bytes(serialization.Encoding.PEM)
    for function in (spki_sha256, cert_sha256, parse_certificate):
        for data in (pem_bytes, pem_bytes.decode()):
            with pytest.raises(CertificateParseError, match=r"PEM text, not DER.*load_certificates"):
                function(data)  # type: ignore[arg-type]
    with pytest.raises(CertificateParseError) as info:
        spki_sha256(b"\x30\x03\x02\x01\x00")
    assert "PEM" not in str(info.value)  # plain bad DER keeps its own message
    with pytest.raises(TypeError, match=r"PinPolicy\.from_mapping"):
        PinPolicy({"domains": []})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"entries\[1\] is a str, not a DomainEntry"):
        PinPolicy([pinengine.DomainEntry("a.example", (Pin.parse("sha256/" + "A" * 43 + "="),),
                                         require_backup_pin=False), "b.example"])  # type: ignore[list-item]
