"""The HPKP glue of pinengine's HTTP hooks (internal API: ``pinengine.hooks`` calls it, applications do not).

The requests adapter and the httpx event hooks both call
``note_pinned_response``: it finds the pins of the connection a response
came over and hands the headers to ``note_response``.
"""

from __future__ import annotations

import urllib.parse
from typing import Any, Callable, Iterable

from ..policy import PinPolicy
from ._fields import HeadersLike
from ._header import HEADER, REPORT_ONLY_HEADER
from ._response import note_response

__all__ = ["note_pinned_response"]


def note_pinned_response(
    policy: PinPolicy,
    headers: HeadersLike,
    request: Callable[[], tuple[str | None, str]],
    connections: Iterable[Any],
) -> str:
    """The HPKP glue of pinengine's HTTP hooks (internal API: for ``pinengine.hooks``, not applications).

    ``headers`` are the response's. ``request()`` gives the request's host
    name and URL; ``connections`` the objects the response may have come
    over (a pinned socket or SSLObject, or something wrapping one). Both are
    looked at only when needed, ``connections`` in order: the first that
    carries a ``pin_result`` gives the pins the headers are judged against.
    Returns ``"hpkp off"`` or ``"ignored: ..."`` without looking further when
    the policy does not note headers, the response has none, or it did not
    come over HTTPS; otherwise what ``note_response`` says.
    """
    if not policy.hpkp:
        return "hpkp off"
    if headers is None or (HEADER not in headers and REPORT_ONLY_HEADER not in headers):
        return "ignored: no Public-Key-Pins header"
    hostname, url = request()
    if urllib.parse.urlsplit(url).scheme != "https" or not hostname:
        return "ignored: not an https response"
    state = None
    for connection in connections:
        state = _pin_state(connection)
        if state is not None:
            break
    pin_result, pin_chain = state if state is not None else (None, None)
    return note_response(policy, hostname, headers, pin_result=pin_result, pin_chain=pin_chain, url=url)


def _pin_state(obj: Any) -> tuple[Any, list[bytes] | None] | None:
    """``(pin_result, pin_chain)`` of a pinned socket or SSLObject, looking through wrappers; None if none."""
    seen: set[int] = set()
    todo = [obj]
    while todo:
        item = todo.pop(0)
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        result = getattr(item, "pin_result", None)
        if result is not None:
            return result, getattr(item, "pin_chain", None)
        # _ssl._SSLSocket.owner is the SSLSocket (httpcore's sync stream hands
        # out the inner object); urllib3's SSLTransport keeps its SSLObject in
        # .sslobj (TLS in TLS through an HTTPS proxy).
        for attr in ("owner", "sslobj", "_sslobj", "sock", "_sock"):
            try:
                todo.append(getattr(item, attr, None))
            except Exception:  # a property of a closed object may raise
                pass
    return None
