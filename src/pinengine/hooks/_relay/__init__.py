"""A private local TLS relay: plaintext in on local sockets, pinned TLS out to the real server.

``_addresses`` (the upstream, a proxy, resolution and endpoints), ``_connect``
(HTTP CONNECT), ``_poller`` (readiness) and ``_loop`` (the relay). It knows no
protocol above TLS; ``pinengine.hooks.grpc`` builds on it.
"""

from __future__ import annotations

from ._addresses import MAX_ADDRESSES, Proxy, Upstream, format_addr, sockaddrs, split_host_port
from ._loop import MAX_ENDPOINTS, ConnectFailure, TLSRelay

__all__ = [
    "MAX_ADDRESSES",
    "MAX_ENDPOINTS",
    "ConnectFailure",
    "Proxy",
    "TLSRelay",
    "Upstream",
    "format_addr",
    "sockaddrs",
    "split_host_port",
]
