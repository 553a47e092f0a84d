"""Pinned gRPC channels: every TLS connection the channel makes is pin-checked before any RPC uses it.

grpcio does its TLS inside its C core and gives Python no certificate
callback (see ``_native`` for the seam kept for grpc/proposal#546), so pins
cannot be checked inside grpc's own handshake. Instead a pinned channel owns
a private local TLS relay (``pinengine.hooks._relay``): the grpc channel
speaks plaintext HTTP/2 to local unix sockets that only this process can
use (``grpc.local_channel_credentials``, so per-call credentials still
work), and for every connection grpc opens there, the relay connects to the
real target (through an HTTP CONNECT proxy when grpc would use one),
performs TLS with a pinned ``ssl.SSLContext`` (ALPN ``h2``, SNI = the target
host or ``grpc.ssl_target_name_override``, the client key pair for mutual
TLS) and starts relaying only after the pin check of the target's validated
chain passed. A refused connection is closed before a byte of HTTP/2 crosses
it, so grpc sees a failed transport and RPCs fail with ``UNAVAILABLE``; the
channel then rewrites their details to name the pin failure and the host
(``PinnedChannelError``), and the full ``PinMismatchError`` message (the
chain's pins and the configured pins) goes to the ``pinengine`` logger.

grpc keeps doing what it does: with a load-balancing policy other than
pick_first the relay gives grpc one local endpoint per address of the target,
so grpc balances over every backend (each one pin-checked alone); names are
resolved again on a new connection once
``grpc.dns_min_time_between_resolutions_ms`` has passed. Options and targets
a pinned channel cannot honour raise ValueError when the channel is made
(``_options.REFUSED``).

``secure_channel`` / ``aio_secure_channel`` are drop-ins for
``grpc.secure_channel(target, grpc.ssl_channel_credentials(...))`` and
``grpc.aio.secure_channel``.

The package: ``_targets`` (target strings), ``_options`` (what each channel
option means for a pinned channel), ``_proxy`` (which proxy, as grpc decides),
``_credentials`` (the pinned TLS context), ``_errors`` (the errors, and
``map_exceptions``, the one place grpc's errors become ours), ``_channel``
(what both channels share), ``_sync`` and ``_aio`` (the channels),
``_native`` (the seam for grpc's own certificate hook).
"""

from __future__ import annotations

from ._aio import PinnedAioChannel, aio_secure_channel
from ._errors import PinnedAioRpcError, PinnedChannelError
from ._sync import PinnedChannel, secure_channel

__all__ = [
    "PinnedAioChannel",
    "PinnedAioRpcError",
    "PinnedChannel",
    "PinnedChannelError",
    "aio_secure_channel",
    "secure_channel",
]
