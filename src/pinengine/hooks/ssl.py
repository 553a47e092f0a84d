"""A pinned ``ssl.SSLContext``: every socket and SSLObject it makes checks pins after the handshake.

``create_pinned_context(policy)`` returns a context configured like
``ssl.create_default_context()``. Clients that accept a context — http.client,
urllib, asyncio streams, httpx (``verify=ctx``), aiohttp (``ssl=ctx``),
urllib3 and requests (through ``pinengine.hooks.requests``) — are pinned by
passing it. The check runs when the handshake completes, before the
handshake call returns to the client, on every handshake, resumed sessions
included. A handshake that OpenSSL would run implicitly inside a read or a
write (``do_handshake_on_connect=False``, an SSLObject written to before
``do_handshake``) is run explicitly first, so no application byte is sent or
returned before the pin decision; a refused connection stays refused.
"""

from __future__ import annotations

import socket as _socket
import ssl as _ssl
import sys
import threading
from collections import OrderedDict
from typing import Any, NamedTuple, Sequence, cast

from .._errors import PinMismatchError
from .._hostnames import normalize_hostname
from ..policy import PinPolicy, VerificationResult

__all__ = ["PinnedSSLContext", "create_pinned_context", "peer_chains", "pin_context"]

_DER = getattr(_ssl, "_ssl", None)
_ENCODING_DER = getattr(_DER, "ENCODING_DER", 2)
# Validated chains remembered per (leaf, host name), for checking resumed
# sessions: OpenSSL keeps no validated chain for them. 1024 covers the hosts a
# busy client resumes with (a few KiB each, a few MiB at most); a chain that
# fell out is only a cost: the resumed connection is then judged on its leaf.
_CHAIN_CACHE_SIZE = 1024


def _ders(certs: Sequence[Any] | None) -> list[bytes]:
    """DER bytes of what get_(un)verified_chain returned (bytes on 3.13+, _ssl.Certificate before)."""
    return [cert if type(cert) is bytes else cert.public_bytes(_ENCODING_DER) for cert in certs or ()]


# The ssl module's own ``options`` property, which PinnedSSLContext wraps.
_SSL_OPTIONS = cast(property, vars(_ssl.SSLContext)["options"])
# The ssl module's own ``session`` properties, which the pinned classes wrap.
_SOCKET_SESSION = cast(property, vars(_ssl.SSLSocket)["session"])
_OBJECT_SESSION = cast(property, vars(_ssl.SSLObject)["session"])


# The public get_verified_chain / get_unverified_chain (3.13+); before, the ssl object's private ones.
_PUBLIC_CHAINS = sys.version_info >= (3, 13)


def _chains_of(conn: Any) -> Any:
    """What answers get_verified_chain / get_unverified_chain: the connection on 3.13+, its ssl object before."""
    if _PUBLIC_CHAINS:
        return conn
    inner = getattr(conn, "_sslobj", None)
    if inner is None or not hasattr(inner, "get_verified_chain"):
        raise _ssl.SSLError("pinengine needs Python 3.10+ (the ssl module cannot give the verified chain)")
    return inner


def peer_chains(conn: _ssl.SSLSocket | _ssl.SSLObject) -> tuple[list[bytes], list[bytes]]:
    """``(verified, served)``: the chain the trust store validated and the one the peer sent, as DER.

    The verified chain is empty when validation was off (``CERT_NONE``).
    Uses the public methods on Python 3.13+ and the ssl object's private
    ones on 3.10-3.12, where they exist but were not yet documented.
    """
    source = _chains_of(conn)
    return _ders(source.get_verified_chain()), _ders(source.get_unverified_chain())


class _ServedChain(Sequence[bytes]):
    """The chain the peer sent, read from the connection only when something looks at it.

    On the common path (a validated chain for the name, which the policy
    decides on) nothing does: only a violation report shows the served
    chain, and a policy copies it into the event before any observer sees it,
    while the handshake is still in hand.
    """

    __slots__ = ("_source", "_ders")

    def __init__(self, source: Any) -> None:
        self._source = source
        self._ders: list[bytes] | None = None

    def _get(self) -> list[bytes]:
        if self._ders is None:
            self._ders = _ders(self._source.get_unverified_chain())
            self._source = None
        return self._ders

    def __len__(self) -> int:
        return len(self._get())

    def __getitem__(self, index: Any) -> Any:
        return self._get()[index]

    def __iter__(self) -> Any:
        return iter(self._get())


def _chain_key(hostname: str) -> str:
    """The host part of a remembered chain's key: the name as the policy compares it."""
    try:
        return normalize_hostname(hostname)
    except ValueError:
        return hostname


class _Checked(NamedTuple):
    """What the pins of an established connection are checked on (see ``checked_chain``)."""

    hostname: str
    chain: list[bytes]
    validated: bool
    served: Sequence[bytes]
    #: A full handshake's chain, to remember for a resumption of its session (see _take_session).
    resumable: bool


def checked_chain(conn: Any, context: Any) -> _Checked:
    """The chain the pins of ``conn`` (an established client connection of ``context``) are checked on.

    One reading for the hook's check and for a live policy's recheck of a
    pooled connection, so both judge a connection alike. Raises
    PinMismatchError when there is nothing to check (no host name, no
    certificate).
    """
    hostname = conn.server_hostname
    if hostname is None:
        raise PinMismatchError(
            "pinning: no server_hostname was given, so no pin entry can be chosen; pass server_hostname",
            hostname="",
        )
    validated = context.verify_mode != _ssl.CERT_NONE
    source = _chains_of(conn)
    verified = _ders(source.get_verified_chain()) if validated and context.check_hostname else []
    if verified:
        # The common case: the trust store validated a chain for this name
        # (a full handshake). The policy decides on it; what the peer sent is
        # read only if a report needs it.
        return _Checked(hostname, verified, True, _ServedChain(source), True)
    served = _ders(source.get_unverified_chain())
    leaf = served[0] if served else conn.getpeercert(binary_form=True)
    if not leaf:
        raise PinMismatchError("pinning: the peer presented no certificate", hostname=hostname)
    served = served or [leaf]
    recall = getattr(context, "_recall_chain", None)
    if validated and context.check_hostname:
        # A resumed session: OpenSSL keeps the peer's leaf but not the chain
        # it validated, and does not check the host name again. Use the chain
        # this context validated for that leaf *and this host name* in the
        # full handshake that made the session. A session made for another
        # host, one no longer remembered, or one whose full handshake was not
        # validated for this name (the context's settings changed since)
        # proves nothing about this one: then only the leaf can match, and
        # a blocked key in what the full handshake was checked on refuses.
        known = recall(hostname, leaf) if recall is not None else None
        if known is not None and known[1]:
            return _Checked(hostname, known[0], True, served, False)
        return _Checked(hostname, known[0] if known else served, False, served, False)
    # Nothing validated for this name: the policy gets what the peer sent,
    # so that a blocked key anywhere in it refuses the connection; only the
    # leaf can match a pin. Either validation is off (CERT_NONE), or the trust
    # store validated the chain, but not for this host name (check_hostname
    # off; urllib3 with assert_hostname matches names itself, after the
    # handshake): that shows a CA vouches for some name, not for this one. A
    # CA pin would let any certificate of that CA through, and a first key
    # recorded from it could be anyone's: so, as under CERT_NONE, only the
    # leaf can match and nothing is recorded.
    if getattr(conn, "session_reused", False):
        # A resumed session holds the leaf alone: what the full handshake
        # that made the session was checked on, remembered for that leaf and
        # host name, so that a key blocked since is still seen.
        known = recall(hostname, leaf) if recall is not None else None
        return _Checked(hostname, known[0] if known else served, False, served, False)
    if validated:
        return _Checked(hostname, _ders(source.get_verified_chain()) or served, False, served, True)
    return _Checked(hostname, served, False, served, True)


def _check(conn: Any, context: PinnedSSLContext) -> VerificationResult:
    """Check the pins of an established connection; raise PinMismatchError to refuse it.

    Leaves the chain that was checked on ``conn.pin_chain`` (for HPKP noting).
    """
    checked = checked_chain(conn, context)
    if checked.resumable:
        # Kept for a resumption of this session, once the application takes
        # the session (see _take_session): the only way the ssl module resumes.
        conn._pin_resumable = (checked.hostname, checked.chain, checked.validated)
    conn.pin_chain = checked.chain
    port = getattr(conn, "pin_port", None)  # an SSLObject: set by whoever owns its transport
    if isinstance(conn, _ssl.SSLSocket):
        try:
            port = conn.getpeername()[1]
        except OSError:
            pass
    return context.pin_policy.verify(
        checked.hostname, checked.chain, verified=checked.validated, port=port, served_chain=checked.served
    )


def _take_session(conn: Any, session: Any) -> Any:
    """``conn.session`` is being read: remember the chain its pin check validated, for resuming it.

    A client resumes a session with the ssl module only by passing a session
    it read from an earlier connection (``wrap_socket(..., session=...)``);
    OpenSSL keeps no validated chain for a resumed session, so the chain of
    the full handshake is remembered then, per (leaf, host name), not on
    every handshake of clients that never resume.
    """
    pending = conn.__dict__.pop("_pin_resumable", None)
    if pending is not None:
        conn.context._remember_chain(*pending)
    return session


def _refusal(conn: Any, exc: BaseException) -> PinMismatchError:
    """The PinMismatchError that refuses ``conn`` after its pin check raised ``exc``.

    Any failure of the check refuses the connection (fail closed); a failure
    that is not already a PinMismatchError (a certificate the core cannot
    parse, a host name the policy cannot read) becomes one, so that every
    client sees a TLS error instead of a foreign exception in its I/O loop.
    """
    if isinstance(exc, PinMismatchError):
        return exc
    hostname = str(getattr(conn, "server_hostname", None) or "")
    return PinMismatchError(
        f"pinning: the pin check for {hostname or 'this connection'} failed, so the connection is refused: "
        f"{type(exc).__name__}: {exc}",
        hostname=hostname,
    )


def _refused_again(first: PinMismatchError) -> PinMismatchError:
    """A fresh error for a later I/O call on a refused connection (not the first one, re-raised)."""
    return PinMismatchError(
        f"pinning: this connection was refused by its pin check; nothing can be sent or read on it.\n{first}",
        hostname=first.hostname,
        result=first.result,
    )


class PinnedSSLSocket(_ssl.SSLSocket):
    """An SSLSocket that checks pins when its handshake completes, before any application byte moves.

    Every I/O method runs the handshake (and so the pin check) first if it has
    not happened yet: OpenSSL would otherwise run it implicitly inside
    ``SSL_read`` / ``SSL_write``, where no check can see it. A socket whose
    check failed stays refused: every later I/O call raises PinMismatchError.
    """

    pin_result: VerificationResult | None = None
    #: The chain the pins were checked against (validated, or as served when nothing was validated).
    pin_chain: list[bytes] | None = None
    _pin_passed: bool = False
    _pin_refused: PinMismatchError | None = None

    @property
    def session(self) -> _ssl.SSLSession | None:
        """The TLS session, to resume (``wrap_socket(..., session=...)``); taking it readies the resumed check."""
        return _take_session(self, _SOCKET_SESSION.__get__(self))  # type: ignore[no-any-return]

    @session.setter
    def session(self, session: _ssl.SSLSession | None) -> None:
        _SOCKET_SESSION.__set__(self, session)

    def _pin_gate(self) -> None:
        """Before application I/O: the pin check must have passed, running the handshake if needed."""
        if self._pin_passed or self.server_side:
            return
        if self._pin_refused is not None:
            raise _refused_again(self._pin_refused)
        if getattr(self, "_sslobj", None) is None:
            if getattr(self, "_connected", False):
                # shutdown() drops the TLS layer; the ssl module would then
                # send and receive in plaintext on a connection never checked.
                raise ValueError(
                    "pinning: the TLS layer of this socket was shut down before its pin check; "
                    "nothing is sent or read on it in plaintext"
                )
            return  # not connected (yet): the socket's own error follows
        self.do_handshake()

    def do_handshake(self, block: bool = False) -> None:
        if self._pin_refused is not None:
            raise _refused_again(self._pin_refused)
        super().do_handshake(block)
        if self.server_side or self._pin_passed:
            return
        try:
            self.pin_result = _check(self, self.context)  # type: ignore[arg-type]
        except BaseException as exc:
            refusal = self._pin_refused = _refusal(self, exc)
            # Refuse the connection: end the TCP connection now (even while a
            # makefile() still holds the socket open), then close it.
            try:
                _socket.socket.shutdown(self, _socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                self.close()
            except OSError:
                pass
            if refusal is exc or not isinstance(exc, Exception):
                raise
            raise refusal from exc
        self._pin_passed = True

    def read(self, len: int = 1024, buffer: Any = None) -> Any:
        self._pin_gate()
        return super().read(len, buffer)

    def write(self, data: Any) -> int:
        self._pin_gate()
        return super().write(data)

    def recv(self, buflen: int = 1024, flags: int = 0) -> bytes:
        self._pin_gate()
        return super().recv(buflen, flags)

    def recv_into(self, buffer: Any, nbytes: int | None = None, flags: int = 0) -> int:
        self._pin_gate()
        return super().recv_into(buffer, nbytes, flags)

    def recvfrom(self, buflen: int = 1024, flags: int = 0) -> tuple[bytes, Any]:
        self._pin_gate()
        return super().recvfrom(buflen, flags)

    def recvfrom_into(self, buffer: Any, nbytes: int | None = None, flags: int = 0) -> tuple[int, Any]:
        self._pin_gate()
        return super().recvfrom_into(buffer, nbytes, flags)

    def send(self, data: Any, flags: int = 0) -> int:
        self._pin_gate()
        return super().send(data, flags)

    def sendall(self, data: Any, flags: int = 0) -> None:
        self._pin_gate()
        super().sendall(data, flags)

    def sendto(self, data: Any, flags_or_addr: Any, addr: Any = None) -> int:
        self._pin_gate()
        return super().sendto(data, flags_or_addr, addr)

    def sendfile(self, file: Any, offset: int = 0, count: int | None = None) -> int:
        self._pin_gate()
        return super().sendfile(file, offset, count)

    def pending(self) -> int:
        if self._pin_refused is not None:
            raise _refused_again(self._pin_refused)
        return super().pending()

    def unwrap(self) -> _socket.socket:
        if self._pin_refused is not None:
            raise _refused_again(self._pin_refused)
        return super().unwrap()


class PinnedSSLObject(_ssl.SSLObject):
    """An SSLObject (memory BIOs, as asyncio uses) that checks pins when its handshake completes.

    ``read`` and ``write`` run the handshake (and so the pin check) first if it
    has not happened yet, so no application byte is produced or returned
    before the decision; after a refusal every call raises PinMismatchError.
    """

    pin_result: VerificationResult | None = None
    pin_chain: list[bytes] | None = None
    #: The peer's port, when the code that carries the bytes knows it (an
    #: SSLObject has no socket): violation reports and events then carry it.
    pin_port: int | None = None
    _pin_passed: bool = False
    _pin_refused: PinMismatchError | None = None

    @property
    def session(self) -> _ssl.SSLSession | None:
        """The TLS session, to resume (``wrap_socket(..., session=...)``); taking it readies the resumed check."""
        return _take_session(self, _OBJECT_SESSION.__get__(self))  # type: ignore[no-any-return]

    @session.setter
    def session(self, session: _ssl.SSLSession | None) -> None:
        _OBJECT_SESSION.__set__(self, session)

    def _pin_gate(self) -> None:
        if self._pin_passed or self.server_side:
            return
        self.do_handshake()

    def do_handshake(self) -> None:
        if self._pin_refused is not None:
            raise _refused_again(self._pin_refused)
        super().do_handshake()
        if self.server_side or self._pin_passed:
            return
        try:
            self.pin_result = _check(self, self.context)  # type: ignore[arg-type]
        except BaseException as exc:
            refusal = self._pin_refused = _refusal(self, exc)
            if refusal is exc or not isinstance(exc, Exception):
                raise
            raise refusal from exc
        self._pin_passed = True

    def read(self, len: int = 1024, buffer: Any = None) -> Any:
        self._pin_gate()
        return super().read(len, buffer)

    def write(self, data: Any) -> int:
        self._pin_gate()
        return super().write(data)

    def pending(self) -> int:
        if self._pin_refused is not None:
            raise _refused_again(self._pin_refused)
        return super().pending()

    def unwrap(self) -> None:
        if self._pin_refused is not None:
            raise _refused_again(self._pin_refused)
        super().unwrap()


class PinnedSSLContext(_ssl.SSLContext):
    """An ``ssl.SSLContext`` whose client connections are checked against ``pin_policy``.

    Safe to share between threads and connections; each context holds its own
    policy, so contexts built for different policies never see each other's pins.
    """

    sslsocket_class = PinnedSSLSocket
    sslobject_class = PinnedSSLObject
    pin_policy: PinPolicy
    _chains: OrderedDict[tuple[bytes, str], tuple[list[bytes], bool]]
    _chains_lock: threading.Lock

    def __new__(cls, protocol: int = _ssl.PROTOCOL_TLS_CLIENT, *args: Any, **kwargs: Any) -> PinnedSSLContext:
        self = super().__new__(cls, protocol, *args, **kwargs)
        self._chains = OrderedDict()
        self._chains_lock = threading.Lock()
        self.options |= _ssl.OP_NO_RENEGOTIATION
        return self

    # A renegotiation is a second full handshake run inside a read or a write,
    # after the pin check: its certificate would never be checked. Every
    # pinned context refuses it (as the gRPC contexts do; TLS 1.3 has none),
    # and the option stays set whatever is assigned to ``options`` later.
    @_ssl.SSLContext.options.setter  # type: ignore[attr-defined,untyped-decorator]
    def options(self, value: int) -> None:
        _SSL_OPTIONS.__set__(self, value | _ssl.OP_NO_RENEGOTIATION)

    def _remember_chain(self, hostname: str, chain: list[bytes], validated: bool) -> None:
        key = (chain[0], _chain_key(hostname))
        with self._chains_lock:
            self._chains[key] = (chain, validated)
            self._chains.move_to_end(key)
            while len(self._chains) > _CHAIN_CACHE_SIZE:
                self._chains.popitem(last=False)

    def _recall_chain(self, hostname: str, leaf: bytes) -> tuple[list[bytes], bool] | None:
        """``(chain, validated)``: what the last full handshake for (leaf, host name) was checked on, and
        whether it was validated for that name then (whatever this context's settings are now)."""
        with self._chains_lock:
            return self._chains.get((leaf, _chain_key(hostname)))


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
    on; renegotiation is refused (``OP_NO_RENEGOTIATION``: a second
    handshake after the pin check would bring a certificate no check sees). Pins are then matched against the chain that validation built. If
    the caller switches validation off (``verify_mode = CERT_NONE``), only
    pins on the leaf can match, and a blocked key anywhere in the chain the
    server sent refuses the connection. The same holds when only host-name
    checking is switched off (``check_hostname = False``): a chain validated
    for another name proves nothing about this one.
    """
    if not isinstance(policy, PinPolicy):
        raise TypeError(f"policy must be a PinPolicy, not {type(policy).__name__}")
    context = PinnedSSLContext(_ssl.PROTOCOL_TLS_CLIENT)
    context.pin_policy = policy
    # The same settings as ssl.create_default_context(Purpose.SERVER_AUTH).
    context.verify_mode = _ssl.CERT_REQUIRED
    context.check_hostname = True
    if sys.version_info >= (3, 13):
        # As create_default_context() does from 3.13: RFC 5280's rules enforced
        # strictly, and a CA in the trust store is an anchor even when it is an
        # intermediate. A caller moving from the default context keeps them.
        context.verify_flags |= _ssl.VERIFY_X509_STRICT | _ssl.VERIFY_X509_PARTIAL_CHAIN
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


def pin_context(context: _ssl.SSLContext, policy: PinPolicy) -> PinnedSSLContext:
    """Make a client context the caller built enforce ``policy`` too; returns the same object.

    For settings ``create_pinned_context`` does not take (a client
    certificate, ciphers, a trust store loaded some other way): build the
    ``ssl.SSLContext`` as usual, then pin it. The object itself changes: every
    connection made with it from then on checks the pins, wherever it is
    used. A context that already enforces another policy raises ValueError
    (two owners could not both have their pins checked); a subclass of
    ``ssl.SSLContext`` (its own behaviour) or a server context raises
    TypeError.
    """
    if not isinstance(policy, PinPolicy):
        raise TypeError(f"policy must be a PinPolicy, not {type(policy).__name__}")
    if type(context) is PinnedSSLContext:
        if context.pin_policy is not policy:
            raise ValueError("this context already enforces another pin policy; build a context per policy")
        return context
    if type(context) is not _ssl.SSLContext:
        raise TypeError(f"pin_context takes an ssl.SSLContext, not {type(context).__module__}.{type(context).__name__}")
    if context.protocol == _ssl.PROTOCOL_TLS_SERVER:
        raise TypeError("pin_context takes a client context (PROTOCOL_TLS_CLIENT), not a server one")
    # Same layout (both are Python subclasses of _ssl._SSLContext): the
    # object becomes a PinnedSSLContext, so its sockets and SSLObjects are the
    # pinned classes that check before any application byte moves.
    context.__class__ = PinnedSSLContext
    pinned = cast(PinnedSSLContext, context)
    pinned._chains = OrderedDict()
    pinned._chains_lock = threading.Lock()
    pinned.options |= _ssl.OP_NO_RENEGOTIATION  # as every pinned context (see PinnedSSLContext.options)
    pinned.pin_policy = policy
    return pinned
