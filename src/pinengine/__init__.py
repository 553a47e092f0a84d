"""pinengine: TLS certificate and public-key pinning with a compiled core."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import _backend
from ._backend import cert_sha256 as _cert_sha256
from ._backend import parse_certificate as _parse_certificate
from ._backend import spki_sha256 as _spki_sha256
from ._errors import (
    BundleError,
    BundleFormatError,
    BundleSignatureError,
    CertificateParseError,
    ExpiredBundleError,
    HostnameError,
    HPKPError,
    InsecurePinWarning,
    NoRecordError,
    PinengineError,
    PinFormatError,
    PinMismatchError,
    PolicyError,
    PolicyUpdateError,
    StaleBundleError,
    StalePolicyError,
    StoreError,
    UntrustedKeyError,
)
from ._pem import load_certificates
from ._types import CertificateInfo, Status
from .metrics import stats
from .pins import Pin
from .policy import DomainEntry, PinMatch, PinPolicy, VerificationResult

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .live_policy import LivePolicy


def __getattr__(name: str) -> Any:
    # LivePolicy (threads, file and Redis watchers, bundles) is imported on
    # first use: most programs never need it, and ``import pinengine`` stays
    # small on devices (docs/edge-devices.md).
    if name == "LivePolicy":
        from .live_policy import LivePolicy

        return LivePolicy
    raise AttributeError(f"module 'pinengine' has no attribute {name!r}")


def backend() -> str:
    """Which core does the work: ``"compiled"`` or ``"python"``."""
    return _backend.name()


def spki_sha256(der: bytes) -> bytes:
    """SHA-256 of the certificate's subjectPublicKeyInfo, exactly as encoded.

    Raises CertificateParseError when ``der`` is not a well-formed certificate.
    """
    try:
        return _spki_sha256(der)
    except (CertificateParseError, TypeError) as exc:
        raise _if_pem(der, exc) from None


def cert_sha256(der: bytes) -> bytes:
    """SHA-256 of the whole DER certificate (which must be well-formed)."""
    try:
        return _cert_sha256(der)
    except (CertificateParseError, TypeError) as exc:
        raise _if_pem(der, exc) from None


def parse_certificate(der: bytes) -> CertificateInfo:
    """Read subject, issuer, validity and SPKI out of a DER certificate."""
    try:
        return _parse_certificate(der)
    except (CertificateParseError, TypeError) as exc:
        raise _if_pem(der, exc) from None


def _if_pem(data: object, error: Exception) -> Exception:
    """The error for input that is not DER: PEM text (bytes or str) gets told how to read it.

    Only on the error path: a well-formed certificate never gets here.
    """
    head = data[:64] if isinstance(data, (bytes, bytearray, memoryview, str)) else b""
    text = bytes(head) if not isinstance(head, str) else head.encode("utf-8", "replace")
    if b"-----BEGIN" in text:
        return CertificateParseError(
            "this is PEM text, not DER: read it with pinengine.load_certificates(data), which returns "
            "the DER certificates it holds"
        )
    return error


__all__ = [
    "CertificateInfo",
    "DomainEntry",
    "InsecurePinWarning",
    "LivePolicy",
    "Pin",
    "PinMatch",
    "PinPolicy",
    "Status",
    "VerificationResult",
    "__version__",
    "BundleError",
    "BundleFormatError",
    "BundleSignatureError",
    "CertificateParseError",
    "ExpiredBundleError",
    "HPKPError",
    "HostnameError",
    "NoRecordError",
    "PinFormatError",
    "PinMismatchError",
    "PinengineError",
    "PolicyError",
    "PolicyUpdateError",
    "StaleBundleError",
    "StalePolicyError",
    "StoreError",
    "UntrustedKeyError",
    "backend",
    "cert_sha256",
    "load_certificates",
    "parse_certificate",
    "spki_sha256",
    "stats",
]
