"""The pinned ``grpc.aio.Channel``: ``aio_secure_channel`` and the call objects that name pin failures."""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any, Sequence

import grpc
import grpc.aio

from ...policy import PinPolicy
from .._relay import TLSRelay
from ._channel import ChannelState, open_relay
from ._errors import PinnedAioRpcError, details_for, map_exceptions

__all__ = ["PinnedAioChannel", "aio_secure_channel"]

if TYPE_CHECKING:
    _AioUnaryUnaryMultiCallable = grpc.aio.UnaryUnaryMultiCallable[Any, Any]
    _AioUnaryStreamMultiCallable = grpc.aio.UnaryStreamMultiCallable[Any, Any]
    _AioStreamUnaryMultiCallable = grpc.aio.StreamUnaryMultiCallable[Any, Any]
    _AioStreamStreamMultiCallable = grpc.aio.StreamStreamMultiCallable[Any, Any]
else:
    _AioUnaryUnaryMultiCallable = grpc.aio.UnaryUnaryMultiCallable
    _AioUnaryStreamMultiCallable = grpc.aio.UnaryStreamMultiCallable
    _AioStreamUnaryMultiCallable = grpc.aio.StreamUnaryMultiCallable
    _AioStreamStreamMultiCallable = grpc.aio.StreamStreamMultiCallable


def _translate(channel: ChannelState, exc: grpc.aio.AioRpcError) -> BaseException | None:
    """The PinnedAioRpcError for grpc's ``exc``, or None when no connection failure explains it."""
    if isinstance(exc, PinnedAioRpcError):
        return None
    failure = channel._failure_for(exc.code())
    if failure is None:
        return None
    return PinnedAioRpcError(failure, exc)


class _AioCallProxy:
    """A grpc.aio call whose failure names the pin failure."""

    __slots__ = ("_inner", "_channel", "_iter", "_error")

    def __init__(self, inner: Any, channel: ChannelState) -> None:
        self._inner = inner
        self._channel = channel
        self._iter: Any = None
        self._error: BaseException | None = None

    def _translated(self, exc: grpc.aio.AioRpcError) -> BaseException | None:
        if self._error is None:
            self._error = _translate(self._channel, exc)
        return self._error

    def _errors(self) -> map_exceptions:
        return map_exceptions(self._translated, grpc.aio.AioRpcError)

    def __await__(self) -> Any:
        return self._await().__await__()

    async def _await(self) -> Any:
        with self._errors():
            return await self._inner

    def __aiter__(self) -> _AioCallProxy:
        return self

    async def __anext__(self) -> Any:
        if self._iter is None:
            self._iter = self._inner.__aiter__()
        with self._errors():
            return await self._iter.__anext__()

    async def read(self) -> Any:
        with self._errors():
            return await self._inner.read()

    async def write(self, request: Any) -> None:
        with self._errors():
            await self._inner.write(request)

    async def done_writing(self) -> None:
        with self._errors():
            await self._inner.done_writing()

    async def code(self) -> grpc.StatusCode:
        code: grpc.StatusCode = await self._inner.code()
        return code

    async def details(self) -> str:
        details: str = await self._inner.details()
        if self._error is None:
            code = await self._inner.code()
            failure = self._channel._failure_for(code)
            if failure is not None:
                return details_for(failure, code, details)
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

    def __init__(self, inner: Any, channel: ChannelState) -> None:
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


class PinnedAioChannel(ChannelState, grpc.aio.Channel):
    """A ``grpc.aio.Channel`` whose every connection goes through a pinned TLS relay.

    ``await channel.close()`` (or ``async with``) closes the grpc channel and
    stops the relay; garbage collection stops the relay too.
    """

    def __init__(self, channel: grpc.aio.Channel, relay: TLSRelay, target: str) -> None:
        self._channel = channel
        self._relay = relay
        self._target = target
        self._finalizer = weakref.finalize(self, relay.close)

    async def __aenter__(self) -> PinnedAioChannel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close(None)

    async def close(self, grace: float | None = None) -> None:
        """Close the grpc channel (waiting ``grace`` seconds for RPCs), then stop the relay."""
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
        """Whether ``close()`` ran (or the channel was collected)."""
        return not self._finalizer.alive

    def __repr__(self) -> str:
        return f"<PinnedAioChannel {self._target} via {self._relay.local_target}>"


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
    relay, local, opts, credentials = open_relay(
        target, policy, root_certificates, private_key, certificate_chain, options, connect_timeout, call_credentials
    )
    try:
        channel = grpc.aio.secure_channel(
            local, credentials, options=opts, compression=compression, interceptors=interceptors
        )
    except BaseException:
        relay.close()
        raise
    return PinnedAioChannel(channel, relay, target)
