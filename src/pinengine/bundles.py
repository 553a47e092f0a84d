"""Signed policy bundles: a pin policy, a serial, an optional ``not_after``, signed with Ed25519.

A bundle is one small JSON document (at most ``MAX_BUNDLE_BYTES``)::

    {"format": "pinengine-bundle/1", "key_id": "ed25519:<base64 sha256 of the raw public key>",
     "payload": "<base64 of the payload JSON>", "signature": "<base64 of 64 bytes>"}

The payload JSON is ``{"serial": N, "issued_at": ISO-8601, "not_after": ISO-8601 or null,
"policy": {...the policy file schema...}}``. The signature covers ``b"pinengine-bundle/1\\0"``
followed by the payload bytes exactly as carried, so nothing is re-encoded before checking.

``read_bundle`` checks, in this order, so that only a correctly signed bundle can get
past the signature and any later refusal is about a genuine bundle: size, shape
(``BundleFormatError``), key (``UntrustedKeyError``), signature
(``BundleSignatureError``), serial range, ``not_after`` (``ExpiredBundleError``), serial
against the last accepted one (``StaleBundleError``), and last the policy itself
(``PolicyError``). Ed25519 comes from ``cryptography`` (``pip install 'pinengine[cryptography]'``).
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Union

from . import _json as strict_json
from ._errors import (
    BundleError,
    BundleFormatError,
    BundleSignatureError,
    ExpiredBundleError,
    StaleBundleError,
    UntrustedKeyError,
    quoted,
)
from ._files import read_at_most

__all__ = [
    "BundleError",
    "BundleFormatError",
    "BundleSignatureError",
    "ExpiredBundleError",
    "StaleBundleError",
    "UntrustedKeyError",
    "FORMAT",
    "MAX_BUNDLE_BYTES",
    "MAX_SERIAL",
    "Bundle",
    "generate_key",
    "key_id",
    "load_private_key",
    "load_public_key",
    "read_bundle",
    "read_bundle_file",
    "sign_bundle",
]

FORMAT = "pinengine-bundle/1"
#: The largest bundle read, in bytes (checked before anything is parsed).
MAX_BUNDLE_BYTES = 1 << 20
#: Serials are whole numbers from 1 to 2**64 - 1.
MAX_SERIAL = 2**64 - 1
_CONTEXT = FORMAT.encode("ascii") + b"\0"
_OUTER_KEYS = {"format", "key_id", "payload", "signature"}
_PAYLOAD_KEYS = {"serial", "issued_at", "not_after", "policy"}

KeySource = Union[str, bytes, "os.PathLike[str]", Any]


def _ed25519() -> Any:
    try:
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise BundleError(
            "signed policy bundles need the cryptography package: pip install 'pinengine[cryptography]'"
        ) from None
    return ed25519


def _raw_public(public_key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


def key_id(public_key: Any) -> str:
    """The name a bundle gives its signing key: ``ed25519:`` and the base64 SHA-256 of the raw key."""
    return "ed25519:" + base64.b64encode(hashlib.sha256(_raw_public(public_key)).digest()).decode("ascii")


def _read_key_bytes(source: KeySource, what: str) -> bytes:
    if isinstance(source, bytes):
        return source
    if isinstance(source, str) and source.lstrip().startswith("-----BEGIN"):
        return source.encode("ascii", "replace")
    try:
        with open(source, "rb") as f:
            data = f.read(64 * 1024 + 1)
    except OSError as exc:
        raise BundleError(f"cannot read the {what} {os.fspath(source)}: {exc.strerror or exc}") from None
    if len(data) > 64 * 1024:
        raise BundleError(f"{os.fspath(source)}: too large to be an Ed25519 key")
    return data


def load_public_key(source: KeySource) -> Any:
    """An Ed25519 public key from a key object, PEM text/bytes, 32 raw bytes, or a PEM file path."""
    ed25519 = _ed25519()
    if isinstance(source, ed25519.Ed25519PublicKey):
        return source
    if isinstance(source, ed25519.Ed25519PrivateKey):
        return source.public_key()
    data = _read_key_bytes(source, "trusted key")
    if len(data) == 32:
        return ed25519.Ed25519PublicKey.from_public_bytes(data)
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise BundleError(f"not a PEM public key: {exc}") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise BundleError(f"bundles are signed with Ed25519 keys, not {type(key).__name__}")
    return key


def load_private_key(source: KeySource, password: bytes | None = None) -> Any:
    """An Ed25519 private key from a key object, PEM (PKCS#8) text/bytes or a PEM file path."""
    ed25519 = _ed25519()
    if isinstance(source, ed25519.Ed25519PrivateKey):
        return source
    data = _read_key_bytes(source, "signing key")
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_pem_private_key(data, password=password)
    except (ValueError, TypeError) as exc:
        raise BundleError(f"not a PEM private key: {exc}") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise BundleError(f"bundles are signed with Ed25519 keys, not {type(key).__name__}")
    return key


def generate_key() -> tuple[bytes, bytes]:
    """A new Ed25519 key pair as (private key PEM, unencrypted PKCS#8; public key PEM)."""
    ed25519 = _ed25519()
    from cryptography.hazmat.primitives import serialization

    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return bytes(private), bytes(public)


def _when(value: _dt.datetime) -> str:
    return _to_utc(value).isoformat().replace("+00:00", "Z")


def _to_utc(value: _dt.datetime) -> _dt.datetime:
    """``value`` (with a timezone) in UTC. A time that UTC puts past either end of the calendar (at most a
    day past it) is that end: earlier than any clock reads, or later; so it still compares right."""
    try:
        return value.astimezone(_dt.timezone.utc)
    except OverflowError:
        end = _dt.datetime.max if value.year == _dt.MAXYEAR else _dt.datetime.min
        return end.replace(tzinfo=_dt.timezone.utc)


def _check_serial(serial: Any, where: str, error: type[BundleError] = BundleFormatError) -> int:
    if type(serial) is not int or not 1 <= serial <= MAX_SERIAL:
        shown = f"a {type(serial).__name__}" if type(serial) is not int else (
            f"an integer of {serial.bit_length()} bits" if abs(serial) > MAX_SERIAL else repr(serial)
        )
        raise error(f"{where}: serial must be a whole number from 1 to 2**64-1, not {shown}")
    return serial


def sign_bundle(
    policy: Mapping[str, Any] | Any,
    private_key: KeySource,
    *,
    serial: int,
    not_after: _dt.datetime | None = None,
    issued_at: _dt.datetime | None = None,
) -> bytes:
    """A signed bundle of ``policy`` (a PinPolicy, or a mapping of the file schema).

    The policy is checked first (a bundle that cannot load is never produced).
    ``serial`` must exceed the serial of every bundle signed before it.
    """
    from .policy import PinPolicy

    if isinstance(policy, PinPolicy):
        mapping = policy.to_mapping()
    else:
        mapping = dict(policy)
        PinPolicy.from_mapping(mapping, source="<bundle policy>")
    _check_serial(serial, "sign_bundle", BundleError)
    for name, value in (("not_after", not_after), ("issued_at", issued_at)):
        if value is not None and value.tzinfo is None:
            raise BundleError(f"sign_bundle: {name} needs a timezone")
    key = load_private_key(private_key)
    issued = issued_at or _dt.datetime.now(_dt.timezone.utc)
    payload = json.dumps(
        {"serial": serial, "issued_at": _when(issued), "not_after": None if not_after is None else _when(not_after),
         "policy": mapping},
        sort_keys=True, separators=(",", ":"),
    ).encode("utf-8")
    signature = key.sign(_CONTEXT + payload)
    document = {
        "format": FORMAT,
        "key_id": key_id(key.public_key()),
        "payload": base64.b64encode(payload).decode("ascii"),
        "signature": base64.b64encode(signature).decode("ascii"),
    }
    data = (json.dumps(document, indent=1) + "\n").encode("ascii")
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleError(f"the bundle would be {len(data)} bytes, above the limit of {MAX_BUNDLE_BYTES}")
    return data


@dataclass(frozen=True)
class Bundle:
    """A bundle whose signature checked out against a trusted key."""

    serial: int
    issued_at: _dt.datetime | None
    not_after: _dt.datetime | None
    policy: Mapping[str, Any]
    key_id: str
    #: SHA-256 of the signed payload: tells a re-delivery of the same bundle from a different one.
    digest: str
    source: str


def _b64(where: str, value: Any) -> bytes:
    if not isinstance(value, str):
        raise BundleFormatError(f"{where}: expected base64 text, not {type(value).__name__}")
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise BundleFormatError(f"{where}: not valid base64") from None


def _time(where: str, value: Any) -> _dt.datetime | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 64:
        raise BundleFormatError(f"{where}: expected an ISO 8601 time")
    try:
        parsed = _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BundleFormatError(f"{where}: {quoted(value)} is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise BundleFormatError(f"{where}: {quoted(value)} has no timezone")
    return _to_utc(parsed)


def _json(where: str, data: bytes) -> Any:
    try:
        return strict_json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BundleFormatError(f"{where}: not a pinengine policy bundle (not JSON: {exc})") from None


def trusted_key_ids(trusted_keys: Iterable[KeySource]) -> dict[str, Any]:
    """``{key_id: public key}`` for the given keys (at least one)."""
    keys = {}
    for source in trusted_keys:
        key = load_public_key(source)
        keys[key_id(key)] = key
    if not keys:
        raise BundleError("no trusted keys given: a bundle can only be accepted when signed by a trusted key")
    return keys


def read_bundle(
    data: bytes,
    trusted_keys: Iterable[KeySource] | Mapping[str, Any],
    *,
    min_serial: int = 0,
    now: _dt.datetime | None = None,
    source: str = "<bundle>",
    accept_digest: str | None = None,
) -> Bundle:
    """Check ``data`` and return the Bundle; raise a BundleError subclass saying why it is refused.

    ``min_serial`` is the last serial accepted: the bundle's must be higher,
    except that the very bundle accepted last (``accept_digest``) may be read again.
    The policy in it is checked by loading it (PolicyError) before anything is returned.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise BundleFormatError(f"{source}: a bundle is bytes, not {type(data).__name__}")
    data = bytes(data)
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleFormatError(
            f"{source}: {len(data)} bytes is larger than a policy bundle may be ({MAX_BUNDLE_BYTES} bytes)"
        )
    keys = trusted_keys if isinstance(trusted_keys, Mapping) else trusted_key_ids(trusted_keys)
    outer = _json(source, data)
    if not isinstance(outer, dict) or outer.get("format") != FORMAT:
        raise BundleFormatError(f"{source}: not a pinengine policy bundle (no \"format\": \"{FORMAT}\")")
    extra = set(outer) - _OUTER_KEYS
    if extra or set(outer) != _OUTER_KEYS:
        raise BundleFormatError(
            f"{source}: a bundle has exactly the keys {', '.join(sorted(_OUTER_KEYS))}; "
            f"found {', '.join(quoted(k) for k in sorted(map(str, outer))[:len(_OUTER_KEYS) + 2])}"
        )
    kid = outer["key_id"]
    if not isinstance(kid, str) or len(kid) > 128:
        raise BundleFormatError(f"{source}: key_id is not a key name")
    payload = _b64(f"{source}: payload", outer["payload"])
    signature = _b64(f"{source}: signature", outer["signature"])
    key = keys.get(kid)
    if key is None:
        raise UntrustedKeyError(
            f"{source}: signed by the key {quoted(kid)}, which is not trusted; trusted keys: {', '.join(sorted(keys))}"
        )
    from cryptography.exceptions import InvalidSignature

    try:
        key.verify(signature, _CONTEXT + payload)
    except InvalidSignature:
        raise BundleSignatureError(
            f"{source}: the signature does not verify with the trusted key {kid}: the bundle was altered "
            "after signing (or signed by another key under this key's name)"
        ) from None
    body = _json(f"{source}: payload", payload)
    if not isinstance(body, dict) or set(body) != _PAYLOAD_KEYS:
        raise BundleFormatError(f"{source}: the signed payload has not the keys {', '.join(sorted(_PAYLOAD_KEYS))}")
    serial = _check_serial(body["serial"], source)
    issued = _time(f"{source}: issued_at", body["issued_at"])
    not_after = _time(f"{source}: not_after", body["not_after"])
    at = now or _dt.datetime.now(_dt.timezone.utc)
    if not_after is not None and at >= not_after:
        raise ExpiredBundleError(f"{source}: bundle serial {serial} expired at {_when(not_after)} (not_after)")
    digest = hashlib.sha256(payload).hexdigest()
    if serial < min_serial or (serial == min_serial and digest != accept_digest):
        raise StaleBundleError(
            f"{source}: bundle serial {serial} is not newer than serial {min_serial}, the last one accepted "
            "(a rollback or a replay)"
        )
    if not isinstance(body["policy"], dict):
        raise BundleFormatError(f"{source}: the signed payload's policy is not an object")
    from .policy import PinPolicy

    PinPolicy.from_mapping(body["policy"], source=f"{source} (serial {serial})")
    return Bundle(serial, issued, not_after, body["policy"], kid, digest, source)


def read_bundle_file(path: str | os.PathLike[str]) -> bytes:
    """The bytes of a bundle file, reading at most ``MAX_BUNDLE_BYTES + 1`` (BundleFormatError if more)."""
    name = os.fspath(path)
    try:
        data = read_at_most(path, MAX_BUNDLE_BYTES)
    except OSError as exc:
        raise BundleError(f"{name}: cannot read the bundle: {exc.strerror or exc}") from None
    if data is None:
        raise BundleFormatError(f"{name}: larger than a policy bundle may be ({MAX_BUNDLE_BYTES} bytes)")
    return data
