"""Pinned gRPC channels: every TLS connection the channel makes is pin-checked before any RPC uses it.

grpcio does its TLS inside its C core and gives Python no certificate
callback, so pins cannot be checked inside grpc's own handshake. Instead a
pinned channel owns a private local TLS forwarder
(``pinengine.hooks._forwarder``): the grpc channel speaks plaintext HTTP/2
to a unix domain socket in a fresh 0700 directory (``grpc.local_channel_credentials``,
so per-call credentials still work), and for every connection grpc opens
there, the forwarder resolves the real target, connects, performs TLS with a
pinned ``ssl.SSLContext`` (ALPN ``h2``, SNI = the target host or
``grpc.ssl_target_name_override``, the client key pair for mutual TLS) and
starts relaying only after the pin check passed. A refused connection is
closed before a byte of HTTP/2 crosses it, so grpc sees a failed transport
and RPCs fail with ``UNAVAILABLE``; the channel then rewrites their details to
name the pin failure and the host (``PinnedChannelError``), and the full
``PinMismatchError`` message (the chain's pins and the configured pins) goes
to the ``pinengine`` logger.

``secure_channel`` / ``aio_secure_channel`` are drop-ins for
``grpc.secure_channel(target, grpc.ssl_channel_credentials(...))`` and
``grpc.aio.secure_channel``.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import ssl
import tempfile
import weakref
from typing import TYPE_CHECKING, Any, Callable, Sequence

import grpc
import grpc.aio

from .._errors import PinMismatchError
from ..policy import PinPolicy, VerificationResult
from ._forwarder import ConnectFailure, TLSForwarder, Upstream, sockaddrs, split_host_port
from .ssl import create_pinned_context

__all__ = [
    "PinnedAioChannel",
    "PinnedAioRpcError",
    "PinnedChannel",
    "PinnedChannelError",
    "aio_secure_channel",
    "secure_channel",
]

DEFAULT_PORT = 443
_UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
_DEADLINE_EXCEEDED = grpc.StatusCode.DEADLINE_EXCEEDED
_TRANSLATED = (_UNAVAILABLE, _DEADLINE_EXCEEDED)
_OVERRIDE = "grpc.ssl_target_name_override"
_AUTHORITY = "grpc.default_authority"
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):(.*)$", re.DOTALL)

if TYPE_CHECKING:
    # The stubs make these generic (request and response message types: any,
    # here); grpcio's own classes are not subscriptable at run time.
    _Future = grpc.Future[Any]
    _UnaryUnaryMultiCallable = grpc.UnaryUnaryMultiCallable[Any, Any]
    _UnaryStreamMultiCallable = grpc.UnaryStreamMultiCallable[Any, Any]
    _StreamUnaryMultiCallable = grpc.StreamUnaryMultiCallable[Any, Any]
    _StreamStreamMultiCallable = grpc.StreamStreamMultiCallable[Any, Any]
    _AioUnaryUnaryMultiCallable = grpc.aio.UnaryUnaryMultiCallable[Any, Any]
    _AioUnaryStreamMultiCallable = grpc.aio.UnaryStreamMultiCallable[Any, Any]
    _AioStreamUnaryMultiCallable = grpc.aio.StreamUnaryMultiCallable[Any, Any]
    _AioStreamStreamMultiCallable = grpc.aio.StreamStreamMultiCallable[Any, Any]
else:
    _Future = grpc.Future
    _UnaryUnaryMultiCallable = grpc.UnaryUnaryMultiCallable
    _UnaryStreamMultiCallable = grpc.UnaryStreamMultiCallable
    _StreamUnaryMultiCallable = grpc.StreamUnaryMultiCallable
    _StreamStreamMultiCallable = grpc.StreamStreamMultiCallable
    _AioUnaryUnaryMultiCallable = grpc.aio.UnaryUnaryMultiCallable
    _AioUnaryStreamMultiCallable = grpc.aio.UnaryStreamMultiCallable
    _AioStreamUnaryMultiCallable = grpc.aio.StreamUnaryMultiCallable
    _AioStreamStreamMultiCallable = grpc.aio.StreamStreamMultiCallable


# -- targets -------------------------------------------------------------------


def _parse_target(target: str, override: str | None) -> tuple[Upstream, str]:
    """A grpc target -> (where the forwarder connects, the channel's default :authority).

    Supported: ``host[:port]``, ``[v6][:port]``, ``dns:[//]/host[:port]``,
    ``ipv4:a:p[,a:p...]``, ``ipv6:[a]:p[,...]``, ``unix:path``,
    ``unix:///abs/path``, ``unix-abstract:name``. The port defaults to 443.
    """
    if not isinstance(target, str) or not target:
        raise ValueError(f"invalid gRPC target {target!r}")
    match = _SCHEME_RE.match(target)
    scheme = match.group(1).lower() if match else ""
    rest = match.group(2) if match else ""
    if scheme == "dns":
        if rest.startswith("//"):
            authority, _, rest = rest[2:].partition("/")
            if authority:
                raise ValueError(
                    f"gRPC target {target!r}: a DNS server in the target is not supported by pinned channels; "
                    "the system resolver is used"
                )
        host, port = split_host_port(rest, DEFAULT_PORT)
        if not host:
            raise ValueError(f"invalid gRPC target {target!r}: no host")
        return Upstream(host, port, override or host), override or rest
    if scheme in ("ipv4", "ipv6"):
        if rest.startswith("//"):
            rest = rest[2:].partition("/")[2]
        family = socket.AF_INET if scheme == "ipv4" else socket.AF_INET6
        parts = [p for p in rest.split(",") if p.strip()]
        if not parts:
            raise ValueError(f"invalid gRPC target {target!r}: no address")
        addresses = sockaddrs(parts, DEFAULT_PORT, family)
        host, port = split_host_port(parts[0].strip(), DEFAULT_PORT)
        name = override or host
        authority = override or (f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
        return Upstream(host, port, name, addresses=addresses), authority
    if scheme in ("unix", "unix-abstract"):
        if scheme == "unix":
            path = rest[2:] if rest.startswith("///") else rest
            if rest.startswith("//") and not rest.startswith("///"):
                raise ValueError(f"invalid gRPC target {target!r}: unix:// needs an absolute path (unix:///path)")
        else:
            path = "\0" + rest
        name = override or "localhost"
        return Upstream("localhost", 0, name, unix_path=path), override or "localhost"
    if match and rest.startswith("/"):
        raise ValueError(
            f"gRPC target {target!r}: the {scheme!r} resolver is not supported by pinned channels "
            "(supported: host:port, dns:, ipv4:, ipv6:, unix:, unix-abstract:)"
        )
    # grpc's rule: a target whose scheme is not a registered resolver is dns:///target
    host, port = split_host_port(target, DEFAULT_PORT)
    if not host:
        raise ValueError(f"invalid gRPC target {target!r}: no host")
    return Upstream(host, port, override or host), override or target


def _default_cafile() -> str | None:
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


def _as_bytes(name: str, value: Any) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode("ascii")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"{name} must be PEM bytes, not {type(value).__name__}")


def _pinned_context(
    policy: PinPolicy,
    root_certificates: bytes | None,
    private_key: bytes | None,
    certificate_chain: bytes | None,
) -> ssl.SSLContext:
    if root_certificates is not None:
        context = create_pinned_context(policy, cadata=root_certificates.decode("ascii"))
    else:
        context = create_pinned_context(policy, cafile=_default_cafile())
    context.set_alpn_protocols(["h2"])
    if (private_key is None) != (certificate_chain is None):
        raise ValueError("mutual TLS needs both private_key and certificate_chain")
    if private_key is not None and certificate_chain is not None:
        _load_client_pair(context, private_key, certificate_chain)
    return context


def _prepare(
    target: str,
    policy: PinPolicy,
    root_certificates: Any,
    private_key: Any,
    certificate_chain: Any,
    options: Sequence[tuple[str, Any]] | None,
    connect_timeout: float,
    call_credentials: grpc.CallCredentials | None = None,
) -> tuple[TLSForwarder, str, list[tuple[str, Any]], Any]:
    """Start the forwarder; return it, the local target, the channel options and credentials."""
    if not isinstance(policy, PinPolicy):
        raise TypeError(f"policy must be a PinPolicy, not {type(policy).__name__}")
    opts = list(options or ())
    override = None
    passed: list[tuple[str, Any]] = []
    for key, value in opts:
        if key == _OVERRIDE:
            override = value.decode() if isinstance(value, bytes) else str(value)
        else:
            passed.append((key, value))
    upstream, authority = _parse_target(target, override)
    if not any(key == _AUTHORITY for key, _ in passed):
        # The :authority header names the real host, not the local socket.
        passed.append((_AUTHORITY, authority))
    context = _pinned_context(
        policy,
        _as_bytes("root_certificates", root_certificates),
        _as_bytes("private_key", private_key),
        _as_bytes("certificate_chain", certificate_chain),
    )
    forwarder = TLSForwarder(
        upstream,
        context,
        require_alpn="h2",
        connect_timeout=connect_timeout,
        name=f"pinengine-grpc {upstream.describe()}",
    )
    try:
        # Local-connection credentials rather than an insecure channel: grpc
        # then treats the channel as secure (PRIVACY_AND_INTEGRITY over a unix
        # socket), so call credentials (access tokens, metadata plugins) are
        # still sent.
        kind = grpc.LocalConnectionType.UDS if forwarder.is_unix else grpc.LocalConnectionType.LOCAL_TCP
        credentials = grpc.local_channel_credentials(kind)
        if call_credentials is not None:
            credentials = grpc.composite_channel_credentials(credentials, call_credentials)
    except BaseException:
        forwarder.close()
        raise
    return forwarder, forwarder.local_target, passed, credentials


# -- errors ----------------------------------------------------------------------


def _details_for(failure: ConnectFailure, code: Any = None, grpc_details: Any = None) -> str:
    if code == _DEADLINE_EXCEEDED:
        return (
            f"{grpc_details or 'Deadline Exceeded'} while waiting for a connection; "
            f"the latest connection attempt failed: {failure.summary}"
        )
    return failure.summary


class PinnedChannelError(grpc.RpcError, grpc.Call, _Future):
    """An RPC failed because the pinned channel could not make a connection it trusts.

    ``code()`` is UNAVAILABLE, as grpc reports TLS failures (DEADLINE_EXCEEDED
    for a ``wait_for_ready`` RPC whose deadline passed while connections kept
    failing); ``details()`` names the failure and the host. ``failure`` says
    what happened (``failure.kind`` is ``"pin"``, ``"certificate"``,
    ``"tls"`` or ``"connect"``); ``pin_error`` is the PinMismatchError of a
    pin failure (its message lists the chain's pins and the configured
    pins); ``grpc_error`` is the error grpc raised.
    """

    def __init__(self, failure: ConnectFailure, grpc_error: Any, code: grpc.StatusCode = _UNAVAILABLE) -> None:
        self._code = code
        self._details = _details_for(failure, code, _call_or_none(grpc_error, "details"))
        super().__init__(self._details)
        self.failure = failure
        self.hostname = failure.hostname
        self.pin_error = failure.error if isinstance(failure.error, PinMismatchError) else None
        self.grpc_error = grpc_error

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def initial_metadata(self) -> Any:
        return _call_or_none(self.grpc_error, "initial_metadata")

    def trailing_metadata(self) -> Any:
        return _call_or_none(self.grpc_error, "trailing_metadata")

    def debug_error_string(self) -> str:
        return str(_call_or_none(self.grpc_error, "debug_error_string") or "")

    # grpc.Call / grpc.RpcContext
    def is_active(self) -> bool:
        return False

    # grpc documents None for "no deadline" (the stub says float): a finished RPC has none.
    def time_remaining(self) -> float | None:  # type: ignore[override]
        return None

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: Callable[[], None]) -> bool:
        return False

    # grpc.Future (as grpc's own errors: the finished, failed RPC; interceptors rely on it)
    def cancelled(self) -> bool:
        return False

    def running(self) -> bool:
        return False

    def done(self) -> bool:
        return True

    def result(self, timeout: float | None = None) -> Any:
        raise self

    def exception(self, timeout: float | None = None) -> Exception:
        return self

    def traceback(self, timeout: float | None = None) -> Any:
        return self.__traceback__

    def add_done_callback(self, fn: Callable[[Any], None]) -> None:
        fn(self)

    def __str__(self) -> str:
        return (
            f"<{type(self).__name__} of RPC that terminated with:\n"
            f"\tstatus = {self._code}\n\tdetails = \"{self._details}\"\n"
            f"\tgrpc details = \"{_call_or_none(self.grpc_error, 'details')}\"\n>"
        )

    __repr__ = __str__


class PinnedAioRpcError(grpc.aio.AioRpcError):
    """The grpc.aio form of PinnedChannelError: a ``grpc.aio.AioRpcError`` with the same attributes."""

    def __init__(self, failure: ConnectFailure, grpc_error: grpc.aio.AioRpcError) -> None:
        code = grpc_error.code()
        super().__init__(
            code,
            grpc_error.initial_metadata(),
            grpc_error.trailing_metadata(),
            details=_details_for(failure, code, grpc_error.details()),
            debug_error_string=grpc_error.debug_error_string(),
        )
        self.failure = failure
        self.hostname = failure.hostname
        self.pin_error = failure.error if isinstance(failure.error, PinMismatchError) else None
        self.grpc_error = grpc_error


def _call_or_none(obj: Any, name: str) -> Any:
    method = getattr(obj, name, None)
    if method is None:
        return None
    try:
        return method()
    except Exception:
        return None


class _Base:
    """What the sync and aio channels share: the forwarder, its state, the error translation."""

    _forwarder: TLSForwarder

    @property
    def pin_failure(self) -> ConnectFailure | None:
        """Why the latest connection attempt failed, or None if it succeeded (or none was made)."""
        return self._forwarder.last_failure

    @property
    def pin_result(self) -> VerificationResult | None:
        """The VerificationResult of the latest connection that passed the pin check."""
        return self._forwarder.last_result

    @property
    def connection_attempts(self) -> int:
        """Transport connections grpc opened through this channel (each one pin-checked)."""
        return self._forwarder.accepted

    @property
    def connections_established(self) -> int:
        """Connections that passed TLS validation and the pin check."""
        return self._forwarder.established

    @property
    def connections_refused(self) -> int:
        """Connections refused: pin mismatch, certificate or TLS failure, or no connection to the server."""
        return self._forwarder.refused

    @property
    def target(self) -> str:
        return self._target

    _target: str

    def _failure_for(self, code: Any) -> ConnectFailure | None:
        """The connection failure to report for an RPC that ended with ``code``, if any."""
        if code not in _TRANSLATED:
            return None
        return self._forwarder.last_failure


# -- sync channel ------------------------------------------------------------------


def _translate(channel: PinnedChannel, exc: BaseException) -> BaseException | None:
    if isinstance(exc, PinnedChannelError):
        return None
    code = _call_or_none(exc, "code")
    failure = channel._failure_for(code)
    if failure is None:
        return None
    return PinnedChannelError(failure, exc, code)


class _CallProxy:
    """A grpc Call / Future / response iterator whose failure names the pin failure."""

    __slots__ = ("_inner", "_channel", "_error", "__weakref__")

    def __init__(self, inner: Any, channel: PinnedChannel) -> None:
        self._inner = inner
        self._channel = channel
        self._error: BaseException | None = None

    def _translated(self, exc: BaseException) -> BaseException | None:
        if self._error is None:
            self._error = _translate(self._channel, exc)
        return self._error

    # iterator (unary-stream, stream-stream)
    def __iter__(self) -> _CallProxy:
        return self

    def __next__(self) -> Any:
        try:
            return next(self._inner)
        except grpc.RpcError as exc:
            new = self._translated(exc)
            if new is None:
                raise
            raise new from exc

    next = __next__

    # future
    def result(self, timeout: float | None = None) -> Any:
        try:
            return self._inner.result(timeout)
        except grpc.RpcError as exc:
            new = self._translated(exc)
            if new is None:
                raise
            raise new from exc

    def exception(self, timeout: float | None = None) -> Any:
        exc = self._inner.exception(timeout)
        if exc is None:
            return None
        return self._translated(exc) or exc

    def add_done_callback(self, fn: Callable[[Any], None]) -> None:
        self._inner.add_done_callback(lambda _inner: fn(self))

    # call
    def code(self) -> Any:
        return self._inner.code()

    def details(self) -> Any:
        details = self._inner.details()
        if self._inner.code() in _TRANSLATED:
            new = self._translated(self._inner)
            if new is not None:
                return new.details()  # type: ignore[attr-defined]
        return details

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __repr__(self) -> str:
        return f"<pinned {self._inner!r}>"


grpc.Call.register(_CallProxy)
grpc.Future.register(_CallProxy)


class _Unary:
    __slots__ = ("_inner", "_channel")

    def __init__(self, inner: Any, channel: PinnedChannel) -> None:
        self._inner = inner
        self._channel = channel

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return self._inner(*args, **kwargs)
        except grpc.RpcError as exc:
            new = _translate(self._channel, exc)
            if new is None:
                raise
            raise new from exc

    def with_call(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return self._inner.with_call(*args, **kwargs)
        except grpc.RpcError as exc:
            new = _translate(self._channel, exc)
            if new is None:
                raise
            raise new from exc

    def future(self, *args: Any, **kwargs: Any) -> Any:
        return _CallProxy(self._inner.future(*args, **kwargs), self._channel)


class _UnaryUnary(_Unary, _UnaryUnaryMultiCallable):
    __slots__ = ()


class _StreamUnary(_Unary, _StreamUnaryMultiCallable):
    __slots__ = ()


class _Streaming:
    __slots__ = ("_inner", "_channel")

    def __init__(self, inner: Any, channel: PinnedChannel) -> None:
        self._inner = inner
        self._channel = channel

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _CallProxy(self._inner(*args, **kwargs), self._channel)


class _UnaryStream(_Streaming, _UnaryStreamMultiCallable):
    __slots__ = ()


class _StreamStream(_Streaming, _StreamStreamMultiCallable):
    __slots__ = ()


def _shutdown_sync(channel: grpc.Channel, forwarder: TLSForwarder) -> None:
    try:
        channel.close()
    finally:
        forwarder.close()


class PinnedChannel(_Base, grpc.Channel):
    """A ``grpc.Channel`` whose every connection goes through a pinned TLS forwarder.

    Use it as any channel (stubs, ``grpc.intercept_channel``,
    ``grpc.channel_ready_future``). ``close()`` (or garbage collection)
    closes the grpc channel and stops the forwarder: its thread, its
    sockets and its socket directory.
    """

    def __init__(self, channel: grpc.Channel, forwarder: TLSForwarder, target: str) -> None:
        self._channel = channel
        self._forwarder = forwarder
        self._target = target
        self._finalizer = weakref.finalize(self, _shutdown_sync, channel, forwarder)

    def subscribe(self, callback: Callable[[grpc.ChannelConnectivity], None], try_to_connect: bool = False) -> None:
        self._channel.subscribe(callback, try_to_connect=try_to_connect)

    def unsubscribe(self, callback: Callable[[grpc.ChannelConnectivity], None]) -> None:
        self._channel.unsubscribe(callback)

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> grpc.UnaryUnaryMultiCallable[Any, Any]:
        return _UnaryUnary(self._channel.unary_unary(method, *args, **kwargs), self)

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> grpc.UnaryStreamMultiCallable[Any, Any]:
        return _UnaryStream(self._channel.unary_stream(method, *args, **kwargs), self)

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> grpc.StreamUnaryMultiCallable[Any, Any]:
        return _StreamUnary(self._channel.stream_unary(method, *args, **kwargs), self)

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> grpc.StreamStreamMultiCallable[Any, Any]:
        return _StreamStream(self._channel.stream_stream(method, *args, **kwargs), self)

    def close(self) -> None:
        """Close the grpc channel, then stop the forwarder (thread, sockets, directory)."""
        self._finalizer()

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def __enter__(self) -> PinnedChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<PinnedChannel {self._target} via {self._forwarder.local_target}>"


def secure_channel(
    target: str,
    policy: PinPolicy,
    *,
    root_certificates: bytes | None = None,
    private_key: bytes | None = None,
    certificate_chain: bytes | None = None,
    options: Sequence[tuple[str, Any]] | None = None,
    compression: grpc.Compression | None = None,
    call_credentials: grpc.CallCredentials | None = None,
    connect_timeout: float = 20.0,
) -> PinnedChannel:
    """A pinned drop-in for ``grpc.secure_channel(target, grpc.ssl_channel_credentials(...))``.

    ``root_certificates``, ``private_key`` and ``certificate_chain`` are the
    PEM bytes ``grpc.ssl_channel_credentials`` takes (without roots: grpc's
    own root bundle, or ``GRPC_DEFAULT_SSL_ROOTS_FILE_PATH``). Every
    transport connection the channel makes is validated and checked against
    ``policy`` before an RPC can use it; ``connect_timeout`` bounds each
    TCP connect and TLS handshake step. ``call_credentials`` (optional) are
    attached to every RPC, as ``grpc.composite_channel_credentials`` would.
    """
    forwarder, local, opts, credentials = _prepare(
        target, policy, root_certificates, private_key, certificate_chain, options, connect_timeout, call_credentials
    )
    try:
        channel = grpc.secure_channel(local, credentials, options=opts, compression=compression)
    except BaseException:
        forwarder.close()
        raise
    return PinnedChannel(channel, forwarder, target)


# -- grpc.aio ------------------------------------------------------------------------


def _translate_aio(channel: PinnedAioChannel, exc: grpc.aio.AioRpcError) -> BaseException | None:
    if isinstance(exc, PinnedAioRpcError):
        return None
    failure = channel._failure_for(exc.code())
    if failure is None:
        return None
    return PinnedAioRpcError(failure, exc)


class _AioCallProxy:
    """A grpc.aio call whose failure names the pin failure."""

    __slots__ = ("_inner", "_channel", "_iter", "_error")

    def __init__(self, inner: Any, channel: PinnedAioChannel) -> None:
        self._inner = inner
        self._channel = channel
        self._iter: Any = None
        self._error: BaseException | None = None

    def _translated(self, exc: grpc.aio.AioRpcError) -> BaseException | None:
        if self._error is None:
            self._error = _translate_aio(self._channel, exc)
        return self._error

    def __await__(self) -> Any:
        return self._await().__await__()

    async def _await(self) -> Any:
        try:
            return await self._inner
        except grpc.aio.AioRpcError as exc:
            new = self._translated(exc)
            if new is None:
                raise
            raise new from exc

    def __aiter__(self) -> _AioCallProxy:
        return self

    async def __anext__(self) -> Any:
        if self._iter is None:
            self._iter = self._inner.__aiter__()
        try:
            return await self._iter.__anext__()
        except grpc.aio.AioRpcError as exc:
            new = self._translated(exc)
            if new is None:
                raise
            raise new from exc

    async def read(self) -> Any:
        try:
            return await self._inner.read()
        except grpc.aio.AioRpcError as exc:
            new = self._translated(exc)
            if new is None:
                raise
            raise new from exc

    async def write(self, request: Any) -> None:
        try:
            await self._inner.write(request)
        except grpc.aio.AioRpcError as exc:
            new = self._translated(exc)
            if new is None:
                raise
            raise new from exc

    async def done_writing(self) -> None:
        try:
            await self._inner.done_writing()
        except grpc.aio.AioRpcError as exc:
            new = self._translated(exc)
            if new is None:
                raise
            raise new from exc

    async def code(self) -> grpc.StatusCode:
        code: grpc.StatusCode = await self._inner.code()
        return code

    async def details(self) -> str:
        details: str = await self._inner.details()
        if self._error is None:
            code = await self._inner.code()
            failure = self._channel._failure_for(code)
            if failure is not None:
                return _details_for(failure, code, details)
        elif isinstance(self._error, PinnedAioRpcError):
            return self._error.details() or details
        return details

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __repr__(self) -> str:
        return f"<pinned {self._inner!r}>"


grpc.aio.Call.register(_AioCallProxy)


class _AioMultiCallable:
    __slots__ = ("_inner", "_channel")

    def __init__(self, inner: Any, channel: PinnedAioChannel) -> None:
        self._inner = inner
        self._channel = channel

    def __call__(self, *args: Any, **kwargs: Any) -> _AioCallProxy:
        return _AioCallProxy(self._inner(*args, **kwargs), self._channel)


# The stubs type __call__ as returning grpc.aio's call classes; these return an
# _AioCallProxy, which stands in for them by delegation (and is registered as a
# grpc.aio.Call), not by inheritance: hence the [misc] ignores below.
class _AioUnaryUnary(_AioMultiCallable, _AioUnaryUnaryMultiCallable):  # type: ignore[misc]
    __slots__ = ()


class _AioUnaryStream(_AioMultiCallable, _AioUnaryStreamMultiCallable):  # type: ignore[misc]
    __slots__ = ()


class _AioStreamUnary(_AioMultiCallable, _AioStreamUnaryMultiCallable):  # type: ignore[misc]
    __slots__ = ()


class _AioStreamStream(_AioMultiCallable, _AioStreamStreamMultiCallable):  # type: ignore[misc]
    __slots__ = ()


class PinnedAioChannel(_Base, grpc.aio.Channel):
    """A ``grpc.aio.Channel`` whose every connection goes through a pinned TLS forwarder.

    ``await channel.close()`` (or ``async with``) closes the grpc channel and
    stops the forwarder; garbage collection stops the forwarder too.
    """

    def __init__(self, channel: grpc.aio.Channel, forwarder: TLSForwarder, target: str) -> None:
        self._channel = channel
        self._forwarder = forwarder
        self._target = target
        self._finalizer = weakref.finalize(self, forwarder.close)

    async def __aenter__(self) -> PinnedAioChannel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close(None)

    async def close(self, grace: float | None = None) -> None:
        """Close the grpc channel (waiting ``grace`` seconds for RPCs), then stop the forwarder."""
        try:
            await self._channel.close(grace)
        finally:
            self._finalizer()

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        return self._channel.get_state(try_to_connect)

    async def wait_for_state_change(self, last_observed_state: grpc.ChannelConnectivity) -> None:
        await self._channel.wait_for_state_change(last_observed_state)

    async def channel_ready(self) -> None:
        await self._channel.channel_ready()

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _AioUnaryUnary(self._channel.unary_unary(method, *args, **kwargs), self)

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _AioUnaryStream(self._channel.unary_stream(method, *args, **kwargs), self)

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _AioStreamUnary(self._channel.stream_unary(method, *args, **kwargs), self)

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _AioStreamStream(self._channel.stream_stream(method, *args, **kwargs), self)

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def __repr__(self) -> str:
        return f"<PinnedAioChannel {self._target} via {self._forwarder.local_target}>"


def aio_secure_channel(
    target: str,
    policy: PinPolicy,
    *,
    root_certificates: bytes | None = None,
    private_key: bytes | None = None,
    certificate_chain: bytes | None = None,
    options: Sequence[tuple[str, Any]] | None = None,
    compression: grpc.Compression | None = None,
    interceptors: Sequence[grpc.aio.ClientInterceptor] | None = None,
    call_credentials: grpc.CallCredentials | None = None,
    connect_timeout: float = 20.0,
) -> PinnedAioChannel:
    """A pinned drop-in for ``grpc.aio.secure_channel(target, grpc.ssl_channel_credentials(...))``.

    Same arguments and checks as ``secure_channel``; ``interceptors`` are
    passed to grpc.aio (they see grpc's own error details; the pin failure
    is named on the error the application gets).
    """
    forwarder, local, opts, credentials = _prepare(
        target, policy, root_certificates, private_key, certificate_chain, options, connect_timeout, call_credentials
    )
    try:
        channel = grpc.aio.secure_channel(
            local, credentials, options=opts, compression=compression, interceptors=interceptors
        )
    except BaseException:
        forwarder.close()
        raise
    return PinnedAioChannel(channel, forwarder, target)
