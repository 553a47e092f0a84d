"""The errors a pinned channel raises, and the one place grpc's errors are turned into them."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable, Literal

import grpc
import grpc.aio

from ..._errors import PinMismatchError
from .._relay import ConnectFailure

__all__ = ["PinnedAioRpcError", "PinnedChannelError", "details_for", "map_exceptions"]

_UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
_DEADLINE_EXCEEDED = grpc.StatusCode.DEADLINE_EXCEEDED
#: The status codes of an RPC that may have failed for want of a trusted connection.
TRANSLATED = (_UNAVAILABLE, _DEADLINE_EXCEEDED)

if TYPE_CHECKING:
    # The stubs make grpc.Future generic; grpcio's own class is not subscriptable at run time.
    _Future = grpc.Future[Any]
else:
    _Future = grpc.Future


def details_for(failure: ConnectFailure, code: Any = None, grpc_details: Any = None) -> str:
    """The ``details()`` of an RPC that ended with ``code`` because of ``failure``."""
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
        self._details = details_for(failure, code, call_or_none(grpc_error, "details"))
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
        return call_or_none(self.grpc_error, "initial_metadata")

    def trailing_metadata(self) -> Any:
        return call_or_none(self.grpc_error, "trailing_metadata")

    def debug_error_string(self) -> str:
        return str(call_or_none(self.grpc_error, "debug_error_string") or "")

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
            f"\tgrpc details = \"{call_or_none(self.grpc_error, 'details')}\"\n>"
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
            details=details_for(failure, code, grpc_error.details()),
            debug_error_string=grpc_error.debug_error_string(),
        )
        self.failure = failure
        self.hostname = failure.hostname
        self.pin_error = failure.error if isinstance(failure.error, PinMismatchError) else None
        self.grpc_error = grpc_error


def call_or_none(obj: Any, name: str) -> Any:
    """``obj.name()``, or None if it has no such method or the call fails."""
    method = getattr(obj, name, None)
    if method is None:
        return None
    try:
        return method()
    except Exception:
        return None


class map_exceptions:  # lower case: used as a function, as httpcore names its own
    """``with map_exceptions(translate):`` re-raises a grpc error as ``translate(error)``.

    ``translate`` returns the pinned error that names the connection failure
    behind the RPC's failure, or None to let grpc's error through unchanged.
    The one place where every call path (sync and aio, unary and streaming,
    futures) turns grpc's errors into ours; instances hold no state, so one
    can serve many calls.
    """

    __slots__ = ("_translate", "_catch")

    def __init__(
        self, translate: Callable[[Any], BaseException | None], catch: type[BaseException] = grpc.RpcError
    ) -> None:
        self._translate = translate
        self._catch = catch

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Literal[False]:
        if exc is None or not isinstance(exc, self._catch):
            return False
        new = self._translate(exc)
        if new is None:
            return False
        raise new from exc
