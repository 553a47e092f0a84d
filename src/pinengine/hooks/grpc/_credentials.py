"""The pinned TLS context a channel's relay uses: grpc's roots, the client key pair, ALPN h2."""

from __future__ import annotations

import hashlib
import os
import shutil
import ssl
import tempfile
import threading
import weakref
from collections import OrderedDict
from typing import Any

import grpc

from ...policy import PinPolicy
from ..ssl import create_pinned_context

__all__ = ["as_pem", "pinned_context"]


def default_cafile() -> str | None:
    """The trust anchors grpc itself uses when ``root_certificates`` is None.

    ``GRPC_DEFAULT_SSL_ROOTS_FILE_PATH`` if set, else the bundle shipped in
    the grpcio package; None (the system trust store) if neither exists.
    """
    path = os.environ.get("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH")
    if path:
        return path
    bundled = os.path.join(os.path.dirname(grpc.__file__), "_cython", "_credentials", "roots.pem")
    return bundled if os.path.isfile(bundled) else None


def _load_client_pair(context: ssl.SSLContext, private_key: bytes, certificate_chain: bytes) -> None:
    """``load_cert_chain`` from PEM bytes without writing the key to a disk file where avoidable."""
    if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
        fds: list[int] = []
        try:
            for data in (certificate_chain, private_key):
                fd = os.memfd_create("pinengine-grpc", getattr(os, "MFD_CLOEXEC", 0))
                fds.append(fd)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            context.load_cert_chain(f"/proc/self/fd/{fds[0]}", f"/proc/self/fd/{fds[1]}")
        finally:
            for fd in fds:
                os.close(fd)
        return
    d = tempfile.mkdtemp(prefix="pinengine-grpc-key-")
    try:
        cert_path, key_path = os.path.join(d, "chain.pem"), os.path.join(d, "key.pem")
        for path, data in ((cert_path, certificate_chain), (key_path, private_key)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        context.load_cert_chain(cert_path, key_path)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def as_pem(name: str, value: Any) -> bytes | None:
    """A PEM argument as bytes (grpc takes bytes; str is accepted too)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode("ascii")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"{name} must be PEM bytes, not {type(value).__name__}")


#: Contexts kept per policy, for channels made with the same credentials (a
#: service making a channel per request would otherwise parse its roots and
#: key every time; grpc keeps its default roots once per process). A few
#: distinct key pairs and root sets per policy is the common case.
_CONTEXTS_PER_POLICY = 16
_contexts: weakref.WeakKeyDictionary[PinPolicy, OrderedDict[tuple[Any, ...], ssl.SSLContext]] = (
    weakref.WeakKeyDictionary()
)
_contexts_lock = threading.Lock()


def pinned_context(
    policy: PinPolicy,
    root_certificates: bytes | None,
    private_key: bytes | None,
    certificate_chain: bytes | None,
) -> ssl.SSLContext:
    """A pinned client context with what ``grpc.ssl_channel_credentials`` would use, and ALPN h2.

    Channels of one policy made with the same credentials share a context
    (it is safe to share: it holds that policy and those credentials only).
    """
    if (private_key is None) != (certificate_chain is None):
        raise ValueError("mutual TLS needs both private_key and certificate_chain")
    cafile = None if root_certificates is not None else default_cafile()
    key = (
        *(None if part is None else hashlib.sha256(part).digest()
          for part in (root_certificates, private_key, certificate_chain)),
        cafile,
        os.environ.get("GRPC_SSL_CIPHER_SUITES"),
        os.environ.get("SSLKEYLOGFILE"),
    )
    with _contexts_lock:
        known = _contexts.get(policy)
        if known is not None and key in known:
            known.move_to_end(key)
            return known[key]
    context = _new_context(policy, root_certificates, cafile, private_key, certificate_chain)
    with _contexts_lock:
        known = _contexts.setdefault(policy, OrderedDict())
        known[key] = context
        while len(known) > _CONTEXTS_PER_POLICY:
            known.popitem(last=False)
    return context


def _new_context(
    policy: PinPolicy,
    root_certificates: bytes | None,
    cafile: str | None,
    private_key: bytes | None,
    certificate_chain: bytes | None,
) -> ssl.SSLContext:
    if root_certificates is not None:
        context = create_pinned_context(policy, cadata=root_certificates.decode("ascii"))
    else:
        context = create_pinned_context(policy, cafile=cafile)
    context.set_alpn_protocols(["h2"])
    # A TLS 1.2 server could otherwise renegotiate an open connection and
    # present another certificate, which no pin check would see.
    context.options |= ssl.OP_NO_RENEGOTIATION
    ciphers = os.environ.get("GRPC_SSL_CIPHER_SUITES")
    if ciphers:  # grpc's own setting for its TLS (TLS 1.2 suites, OpenSSL names)
        try:
            context.set_ciphers(ciphers)
        except ssl.SSLError as exc:
            raise ValueError(f"GRPC_SSL_CIPHER_SUITES={ciphers!r}: no usable cipher suite ({exc})") from None
    if private_key is not None and certificate_chain is not None:
        _load_client_pair(context, private_key, certificate_chain)
    return context
