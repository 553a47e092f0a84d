"""pinengine: TLS certificate and public-key pinning with a compiled core."""

from __future__ import annotations

from . import _backend
from ._backend import cert_sha256 as _cert_sha256
from ._backend import parse_certificate as _parse_certificate
from ._backend import spki_sha256 as _spki_sha256
from ._errors import (
    CertificateParseError,
    HostnameError,
    HPKPError,
    InsecurePinWarning,
    NoRecordError,
    PinengineError,
    PinFormatError,
    PinMismatchError,
    PolicyError,
    StoreError,
)
from ._pem import load_certificates
from ._types import CertificateInfo, Status
from .metrics import stats
from .pins import Pin
from .policy import DomainEntry, PinMatch, PinPolicy, VerificationResult

__version__ = "0.1.0"


def backend() -> str:
    """Which core does the work: ``"compiled"`` or ``"python"``."""
    return _backend.name()


def spki_sha256(der: bytes) -> bytes:
    """SHA-256 of the certificate's subjectPublicKeyInfo, exactly as encoded.

    Raises CertificateParseError when ``der`` is not a well-formed certificate.
    """
    return _spki_sha256(der)


def cert_sha256(der: bytes) -> bytes:
    """SHA-256 of the whole DER certificate (which must be well-formed)."""
    return _cert_sha256(der)


def parse_certificate(der: bytes) -> CertificateInfo:
    """Read subject, issuer, validity and SPKI out of a DER certificate."""
    return _parse_certificate(der)


__all__ = [
    "CertificateInfo",
    "DomainEntry",
    "InsecurePinWarning",
    "Pin",
    "PinMatch",
    "PinPolicy",
    "Status",
    "VerificationResult",
    "__version__",
    "CertificateParseError",
    "HPKPError",
    "HostnameError",
    "NoRecordError",
    "PinFormatError",
    "PinMismatchError",
    "PinengineError",
    "PolicyError",
    "StoreError",
    "backend",
    "cert_sha256",
    "load_certificates",
    "parse_certificate",
    "spki_sha256",
    "stats",
]
