"""pinengine: TLS certificate and public-key pinning with a compiled core."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import _backend

# The core's own functions (no wrapper per call): they raise
# CertificateParseError for malformed input, and tell PEM text apart.
from ._backend import cert_sha256 as cert_sha256
from ._backend import parse_certificate as parse_certificate
from ._backend import spki_sha256 as spki_sha256
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
