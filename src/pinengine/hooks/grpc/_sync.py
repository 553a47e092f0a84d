"""The pinned ``grpc.Channel``: ``secure_channel`` and the call objects that name pin failures."""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any, Callable, Sequence

import grpc

from ...policy import PinPolicy
from .._relay import TLSRelay
from ._channel import ChannelState, open_relay
from ._errors import TRANSLATED, PinnedChannelError, call_or_none, map_exceptions

__all__ = ["PinnedChannel", "secure_channel"]

if TYPE_CHECKING:
    # The stubs make these generic (request and response message types: any,
    # here); grpcio's own classes are not subscriptable at run time.
    _UnaryUnaryMultiCallable = grpc.UnaryUnaryMultiCallable[Any, Any]
    _UnaryStreamMultiCallable = grpc.UnaryStreamMultiCallable[Any, Any]
    _StreamUnaryMultiCallable = grpc.StreamUnaryMultiCallable[Any, Any]
    _StreamStreamMultiCallable = grpc.StreamStreamMultiCallable[Any, Any]
else:
    _UnaryUnaryMultiCallable = grpc.UnaryUnaryMultiCallable
    _UnaryStreamMultiCallable = grpc.UnaryStreamMultiCallable
    _StreamUnaryMultiCallable = grpc.StreamUnaryMultiCallable
    _StreamStreamMultiCallable = grpc.StreamStreamMultiCallable


def _translate(channel: ChannelState, exc: BaseException) -> BaseException | None:
    """The PinnedChannelError for grpc's ``exc``, or None when no connection failure explains it."""
    if isinstance(exc, PinnedChannelError):
        return None
    code = call_or_none(exc, "code")
    failure = channel._failure_for(code)
    if failure is None:
        return None
    return PinnedChannelError(failure, exc, code)


class _CallProxy:
    """A grpc Call / Future / response iterator whose failure names the pin failure."""

    __slots__ = ("_inner", "_channel", "_error", "__weakref__")

    def __init__(self, inner: Any, channel: ChannelState) -> None:
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
        with map_exceptions(self._translated):
            return next(self._inner)

    next = __next__

    # future
    def result(self, timeout: float | None = None) -> Any:
        with map_exceptions(self._translated):
            return self._inner.result(timeout)

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
        if self._inner.code() in TRANSLATED:
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
    __slots__ = ("_inner", "_channel", "_errors")

    def __init__(self, inner: Any, channel: ChannelState) -> None:
        self._inner = inner
        self._channel = channel
        self._errors = map_exceptions(lambda exc: _translate(channel, exc))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self._errors:
            return self._inner(*args, **kwargs)

    def with_call(self, *args: Any, **kwargs: Any) -> Any:
        with self._errors:
            return self._inner.with_call(*args, **kwargs)

    def future(self, *args: Any, **kwargs: Any) -> Any:
        return _CallProxy(self._inner.future(*args, **kwargs), self._channel)


class _UnaryUnary(_Unary, _UnaryUnaryMultiCallable):
    __slots__ = ()


class _StreamUnary(_Unary, _StreamUnaryMultiCallable):
    __slots__ = ()


class _Streaming:
    __slots__ = ("_inner", "_channel")

    def __init__(self, inner: Any, channel: ChannelState) -> None:
        self._inner = inner
        self._channel = channel

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _CallProxy(self._inner(*args, **kwargs), self._channel)


class _UnaryStream(_Streaming, _UnaryStreamMultiCallable):
    __slots__ = ()


class _StreamStream(_Streaming, _StreamStreamMultiCallable):
    __slots__ = ()


def _shutdown(channel: grpc.Channel, relay: TLSRelay) -> None:
    try:
        channel.close()
    finally:
        relay.close()


class PinnedChannel(ChannelState, grpc.Channel):
    """A ``grpc.Channel`` whose every connection goes through a pinned TLS relay.

    Use it as any channel (stubs, ``grpc.intercept_channel``,
    ``grpc.channel_ready_future``). ``close()`` (or garbage collection)
    closes the grpc channel and stops the relay: its thread, its
    sockets and its socket directory.
    """

    def __init__(self, channel: grpc.Channel, relay: TLSRelay, target: str) -> None:
        self._channel = channel
        self._relay = relay
        self._target = target
        self._finalizer = weakref.finalize(self, _shutdown, channel, relay)

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
        """Close the grpc channel, then stop the relay (thread, sockets, directory)."""
        self._finalizer()

    @property
    def closed(self) -> bool:
        """Whether ``close()`` ran (or the channel was collected)."""
        return not self._finalizer.alive

    def __enter__(self) -> PinnedChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<PinnedChannel {self._target} via {self._relay.local_target}>"


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
    relay, local, opts, credentials = open_relay(
        target, policy, root_certificates, private_key, certificate_chain, options, connect_timeout, call_credentials
    )
    try:
        channel = grpc.secure_channel(local, credentials, options=opts, compression=compression)
    except BaseException:
        relay.close()
        raise
    return PinnedChannel(channel, relay, target)
