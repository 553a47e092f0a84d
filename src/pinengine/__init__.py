"""pinengine: TLS certificate and public-key pinning with a compiled core."""

from __future__ import annotations

from . import _backend
from ._errors import (
    CertificateParseError,
    PinengineError,
    PinFormatError,
    PinMismatchError,
    PolicyError,
)
from ._pem import load_certificates
from ._types import CertificateInfo
from .live_policy import LivePolicy
from .metrics import stats
from .pins import InsecurePinWarning, Pin
from .policy import DomainEntry, PinMatch, PinPolicy, VerificationResult

__version__ = "0.1.0"


def backend() -> str:
    """Which core does the work: ``"compiled"`` or ``"python"``."""
    return _backend.name()


def spki_sha256(der: bytes) -> bytes:
    """SHA-256 of the certificate's subjectPublicKeyInfo, exactly as encoded.

    Raises CertificateParseError when ``der`` is not a well-formed certificate.
    """
    return _backend.core.spki_sha256(der)  # type: ignore[no-any-return]


def cert_sha256(der: bytes) -> bytes:
    """SHA-256 of the whole DER certificate (which must be well-formed)."""
    return _backend.core.cert_sha256(der)  # type: ignore[no-any-return]


def parse_certificate(der: bytes) -> CertificateInfo:
    """Read subject, issuer, validity and SPKI out of a DER certificate."""
    return _backend.core.parse_certificate(der)  # type: ignore[no-any-return]


__all__ = [
    "CertificateInfo",
    "DomainEntry",
    "InsecurePinWarning",
    "LivePolicy",
    "Pin",
    "PinMatch",
    "PinPolicy",
    "VerificationResult",
    "__version__",
    "CertificateParseError",
    "PinFormatError",
    "PinMismatchError",
    "PinengineError",
    "PolicyError",
    "backend",
    "cert_sha256",
    "load_certificates",
    "parse_certificate",
    "spki_sha256",
    "stats",
]
