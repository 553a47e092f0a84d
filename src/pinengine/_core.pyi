"""Type stub of the compiled core ``pinengine._core`` (contract: ext/CORE_SPEC.md)."""

from collections.abc import Sequence
from typing import Any, Final, Literal

from typing_extensions import Buffer, Self, disjoint_base

from pinengine._errors import CertificateParseError
from pinengine._types import CertificateInfo

__all__ = [
    "ALGORITHMS",
    "BACKEND",
    "KIND_CERT",
    "KIND_SPKI",
    "POS_ANY",
    "POS_INTERMEDIATE",
    "POS_LEAF",
    "POS_ROOT",
    "PinSet",
    "Tally",
    "cert_digest",
    "cert_sha256",
    "extract_spki",
    "hash_bytes",
    "match_chain",
    "match_chains",
    "outcome_code",
    "parse_certificate",
    "recall_outcome",
    "recall_outcomes",
    "sha256_implementation",
    "spki_digest",
    "spki_sha256",
    "validate_spki",
]

BACKEND: Final[Literal["compiled"]]

KIND_SPKI: Final[int]
KIND_CERT: Final[int]
POS_LEAF: Final[int]
POS_INTERMEDIATE: Final[int]
POS_ROOT: Final[int]
POS_ANY: Final[int]
ALGORITHMS: Final[tuple[str, str, str, str]]

def hash_bytes(data: Buffer, algorithm: str) -> bytes: ...
def spki_sha256(der: Buffer) -> bytes: ...
def cert_sha256(der: Buffer) -> bytes: ...
def spki_digest(der: Buffer, algorithm: str) -> bytes: ...
def cert_digest(der: Buffer, algorithm: str) -> bytes: ...
def extract_spki(der: Buffer) -> bytes: ...
def validate_spki(data: Buffer) -> None: ...
def parse_certificate(der: Buffer) -> CertificateInfo: ...
def sha256_implementation() -> str: ...

@disjoint_base
class PinSet:
    """Immutable pins ``(kind, algorithm, digest, positions)`` held in C arrays."""

    # Built in __cinit__ (Cython), which runs from __new__: one construction, never changed.
    def __new__(cls, pins: Sequence[tuple[int, str, Buffer, int]]) -> Self: ...
    def __len__(self) -> int: ...

def match_chain(
    chain: Sequence[Buffer], pinset: PinSet, verified: bool = True
) -> list[tuple[int, int]]: ...
def match_chains(
    jobs: Sequence[tuple[Sequence[Buffer], PinSet]], verified: bool = True
) -> list[list[tuple[int, int]] | CertificateParseError]: ...
def outcome_code(chain: Sequence[Buffer], pinset: PinSet, verified: bool = True) -> int: ...
def recall_outcome(
    plans: dict[Any, Any], host: Any, chain: Any, verified: bool = True, skip_unpinned: bool = False
) -> Any: ...
def recall_outcomes(
    items: Sequence[Any], plans: dict[Any, Any], verified: bool = True, skip_unpinned: bool = False
) -> tuple[list[Any], list[int]]: ...
@disjoint_base
class Tally:
    """Counts of one metrics key's remembered decisions and their latency buckets."""

    def __new__(cls, bounds: tuple[float, ...]) -> Self: ...
    def add(self, seconds: float) -> None: ...
    def read(self) -> tuple[int, list[int], float]: ...
    def clear(self) -> None: ...

# Compiled-only extras (CORE_SPEC section 3).
def _sha256_with(name: str, data: Buffer) -> bytes: ...
def _sha256_available(name: str) -> bool: ...
