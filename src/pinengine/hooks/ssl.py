"""A pinned ``ssl.SSLContext``: every socket and SSLObject it makes checks pins after the handshake.

``create_pinned_context(policy)`` returns a context configured like
``ssl.create_default_context()``. Clients that accept a context — http.client,
urllib, asyncio streams, httpx (``verify=ctx``), aiohttp (``ssl=ctx``),
urllib3 and requests (through ``pinengine.hooks.requests``) — are pinned by
passing it. The check runs inside ``do_handshake``, so it happens before the
handshake call returns to the client and before any application data is sent,
on every handshake, resumed sessions included.
"""

from __future__ import annotations

import ssl as _ssl
import sys
import threading
from collections import OrderedDict
from typing import Any, Sequence

from .._errors import PinMismatchError
from ..policy import PinPolicy, VerificationResult

__all__ = ["PinnedSSLContext", "create_pinned_context", "peer_chains"]

_DER = getattr(_ssl, "_ssl", None)
_ENCODING_DER = getattr(_DER, "ENCODING_DER", 2)
# Validated chains remembered per leaf, for checking resumed sessions.
_CHAIN_CACHE_SIZE = 1024


def _ders(certs: Sequence[Any] | None) -> list[bytes]:
    """DER bytes of what get_(un)verified_chain returned (bytes on 3.13+, _ssl.Certificate before)."""
    out: list[bytes] = []
    for cert in certs or ():
        out.append(cert if isinstance(cert, bytes) else cert.public_bytes(_ENCODING_DER))
    return out


def peer_chains(conn: _ssl.SSLSocket | _ssl.SSLObject) -> tuple[list[bytes], list[bytes]]:
    """``(verified, served)``: the chain the trust store validated and the one the peer sent, as DER.

    The verified chain is empty when validation was off (``CERT_NONE``).
    Uses the public methods on Python 3.13+ and the ssl object's private
    ones on 3.10-3.12, where they exist but were not yet documented.
    """
    if sys.version_info >= (3, 13):
        return _ders(conn.get_verified_chain()), _ders(conn.get_unverified_chain())  # type: ignore[union-attr]
    inner = getattr(conn, "_sslobj", None)
    if inner is None or not hasattr(inner, "get_verified_chain"):
        raise _ssl.SSLError("pinengine needs Python 3.10+ (the ssl module cannot give the verified chain)")
    return _ders(inner.get_verified_chain()), _ders(inner.get_unverified_chain())


def _check(conn: Any, context: PinnedSSLContext) -> VerificationResult:
    """Check the pins of an established connection; raise PinMismatchError to refuse it.

    Leaves the chain that was checked on ``conn.pin_chain`` (for HPKP noting).
    """
    hostname = conn.server_hostname
    if hostname is None:
        raise PinMismatchError(
            "pinning: no server_hostname was given, so no pin entry can be chosen; pass server_hostname",
            hostname="",
        )
    validated = context.verify_mode != _ssl.CERT_NONE
    verified, served = peer_chains(conn)
    leaf = served[0] if served else conn.getpeercert(binary_form=True)
    if not leaf:
        raise PinMismatchError("pinning: the peer presented no certificate", hostname=hostname)
    if not validated:
        chain = [leaf]
    elif verified:
        chain = verified
        context._remember_chain(chain)
    else:
        # A resumed session: OpenSSL keeps the peer's leaf but not the chain
        # it validated. Use the chain this context validated for that leaf in
        # the full handshake that made the session; if it is not known, only
        # the leaf can be trusted.
        known = context._recall_chain(leaf)
        chain, validated = (known, True) if known else ([leaf], False)
    conn.pin_chain = chain
    port = getattr(conn, "pin_port", None)  # an SSLObject: set by whoever owns its transport
    if isinstance(conn, _ssl.SSLSocket):
        try:
            port = conn.getpeername()[1]
        except OSError:
            pass
    return context.pin_policy.verify(hostname, chain, verified=validated, port=port, served_chain=served or [leaf])


class PinnedSSLSocket(_ssl.SSLSocket):
    """An SSLSocket that checks pins when its handshake completes."""

    pin_result: VerificationResult | None = None
    #: The chain the pins were checked against (validated, or the leaf alone).
    pin_chain: list[bytes] | None = None

    def do_handshake(self, block: bool = False) -> None:
        super().do_handshake(block)
        if self.server_side:
            return
        try:
            self.pin_result = _check(self, self.context)  # type: ignore[arg-type]
        except BaseException:
            # Refuse the connection: nothing more may be sent or read on it.
            try:
                self.close()
            except OSError:
                pass
            raise


class PinnedSSLObject(_ssl.SSLObject):
    """An SSLObject (memory BIOs, as asyncio uses) that checks pins when its handshake completes."""

    pin_result: VerificationResult | None = None
    pin_chain: list[bytes] | None = None
    #: The peer's port, when the code that carries the bytes knows it (an
    #: SSLObject has no socket): violation reports and events then carry it.
    pin_port: int | None = None

    def do_handshake(self) -> None:
        super().do_handshake()
        if self.server_side:
            return
        self.pin_result = _check(self, self.context)  # type: ignore[arg-type]


class PinnedSSLContext(_ssl.SSLContext):
    """An ``ssl.SSLContext`` whose client connections are checked against ``pin_policy``.

    Safe to share between threads and connections; each context holds its own
    policy, so contexts built for different policies never see each other's pins.
    """

    sslsocket_class = PinnedSSLSocket
    sslobject_class = PinnedSSLObject
    pin_policy: PinPolicy
    _chains: OrderedDict[bytes, list[bytes]]
    _chains_lock: threading.Lock

    def __new__(cls, protocol: int = _ssl.PROTOCOL_TLS_CLIENT, *args: Any, **kwargs: Any) -> PinnedSSLContext:
        self = super().__new__(cls, protocol, *args, **kwargs)
        self._chains = OrderedDict()
        self._chains_lock = threading.Lock()
        return self

    def _remember_chain(self, chain: list[bytes]) -> None:
        with self._chains_lock:
            self._chains[chain[0]] = chain
            self._chains.move_to_end(chain[0])
            while len(self._chains) > _CHAIN_CACHE_SIZE:
                self._chains.popitem(last=False)

    def _recall_chain(self, leaf: bytes) -> list[bytes] | None:
        with self._chains_lock:
            return self._chains.get(leaf)


def create_pinned_context(
    policy: PinPolicy,
    *,
    cafile: str | None = None,
    capath: str | None = None,
    cadata: str | bytes | None = None,
) -> PinnedSSLContext:
    """A client context like ``ssl.create_default_context()`` that also enforces ``policy``.

    Certificates are validated against the given CA locations, or the
    system's default trust store when none is given; hostname checking is
    on. Pins are then matched against the chain that validation built. If
    the caller switches validation off (``verify_mode = CERT_NONE``), only
    pins on the leaf can match.
    """
    if not isinstance(policy, PinPolicy):
        raise TypeError(f"policy must be a PinPolicy, not {type(policy).__name__}")
    context = PinnedSSLContext(_ssl.PROTOCOL_TLS_CLIENT)
    context.pin_policy = policy
    # The same settings as ssl.create_default_context(Purpose.SERVER_AUTH).
    context.verify_mode = _ssl.CERT_REQUIRED
    context.check_hostname = True
    if cafile or capath or cadata:
        context.load_verify_locations(cafile, capath, cadata)
    else:
        context.load_default_certs(_ssl.Purpose.SERVER_AUTH)
    if hasattr(context, "keylog_filename"):
        import os

        keylogfile = os.environ.get("SSLKEYLOGFILE")
        if keylogfile and not sys.flags.ignore_environment:
            context.keylog_filename = keylogfile
    return context
