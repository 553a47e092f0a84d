"""HPKP for httpx: event hooks that note ``Public-Key-Pins`` headers (see ``pinengine.hpkp``).

Pin the client with a pinned context and add the hook for responses:

>>> ctx = create_pinned_context(policy)            # policy = PinPolicy(..., hpkp=True)
>>> client = httpx.Client(verify=ctx, event_hooks={"response": [hpkp_event_hook(policy)]})
>>> aclient = httpx.AsyncClient(verify=ctx, event_hooks={"response": [async_hpkp_event_hook(policy)]})

The hook reads the TLS object of the connection the response came on
(``response.extensions["network_stream"].get_extra_info("ssl_object")``,
whose handshake left ``pin_result`` and ``pin_chain`` on it) and hands the
headers to ``pinengine.hpkp.note_response``. It never raises into the
request: problems are logged (logger ``pinengine``). httpx itself is not
imported here.
"""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable, Iterator

from ..hpkp import note_pinned_response
from ..policy import PinPolicy

__all__ = ["async_hpkp_event_hook", "hpkp_event_hook", "note_httpx_response"]

log = logging.getLogger("pinengine")


def note_httpx_response(policy: PinPolicy, response: Any) -> str:
    """Note the HPKP headers of an ``httpx.Response``; return what ``note_response`` said.

    Returns ``"hpkp off"`` or ``"ignored: ..."`` without looking further when
    the policy does not note headers, the response has none, or it did not
    come over HTTPS.
    """

    def request() -> tuple[str | None, str]:
        url = response.request.url
        return url.raw_host.decode("ascii"), str(url)

    return note_pinned_response(policy, response.headers, request, _connections(response))


def _connections(response: Any) -> Iterator[Any]:
    """What the response came over, best first (looked at lazily)."""
    stream = response.extensions.get("network_stream")
    if stream is not None:
        # anyio / TLS-in-TLS give the PinnedSSLObject itself; httpcore's sync
        # stream gives the SSLSocket's inner _ssl object, whose .owner is the
        # PinnedSSLSocket; "socket" is tried last.
        yield stream.get_extra_info("ssl_object")
        yield stream.get_extra_info("socket")


def _safe_note(policy: PinPolicy, response: Any) -> None:
    try:
        note_httpx_response(policy, response)
    except Exception:  # noting is best effort: never break the response
        log.exception("HPKP: could not process the headers of %s", getattr(response, "url", "a response"))


def hpkp_event_hook(policy: PinPolicy) -> Callable[[Any], None]:
    """A response hook for ``httpx.Client(event_hooks={"response": [hook]})`` that notes HPKP headers.

    The client must connect with a pinned context for ``policy``
    (``verify=create_pinned_context(policy)``): only connections whose pins
    were checked can note anything. ``policy.hpkp`` must be on.
    """
    if not isinstance(policy, PinPolicy):
        raise TypeError(f"policy must be a PinPolicy, not {type(policy).__name__}")

    def hook(response: Any) -> None:
        _safe_note(policy, response)

    return hook


def async_hpkp_event_hook(policy: PinPolicy) -> Callable[[Any], Awaitable[None]]:
    """The ``httpx.AsyncClient`` form of ``hpkp_event_hook`` (a coroutine function).

    Noting writes to ``policy.store``; with a store that does network or disk
    I/O this runs in the event loop's thread, as the pin check itself does.
    """
    if not isinstance(policy, PinPolicy):
        raise TypeError(f"policy must be a PinPolicy, not {type(policy).__name__}")

    async def hook(response: Any) -> None:
        _safe_note(policy, response)

    return hook
