"""What the sync and aio pinned channels share: starting the relay, and the channel's connection state."""

from __future__ import annotations

import functools
import logging
import socket
from dataclasses import replace
from typing import Any, Sequence

import grpc

from ...policy import PinPolicy, VerificationResult
from .._relay import ConnectFailure, TLSRelay
from ._credentials import as_pem, pinned_context
from ._errors import TRANSLATED
from ._native import native_support
from ._options import read_options
from ._proxy import choose_proxy
from ._targets import parse_target, target_scheme

__all__ = ["ChannelState", "open_relay"]

log = logging.getLogger("pinengine")

_AUTHORITY = "grpc.default_authority"
_SCHEME = "grpc.http2_scheme"
#: Names the relay's thread, log lines and socket directory.
LABEL = "pinengine-grpc"


@functools.cache
def _note_native_support() -> None:
    support = native_support()
    if support.callback:
        log.debug("pinned gRPC channels keep their relay: %s", support.reason)


def open_relay(
    target: str,
    policy: PinPolicy,
    root_certificates: Any,
    private_key: Any,
    certificate_chain: Any,
    options: Sequence[tuple[str, Any]] | None,
    connect_timeout: float,
    call_credentials: grpc.CallCredentials | None = None,
) -> tuple[TLSRelay, str, list[tuple[str, Any]], Any]:
    """Start the relay; return it, the local target, the options for grpc and the credentials.

    Raises ValueError (TypeError for a wrong type) for a target or an option
    the channel cannot honour, before anything is started.
    """
    if not isinstance(policy, PinPolicy):
        raise TypeError(f"policy must be a PinPolicy, not {type(policy).__name__}")
    if isinstance(connect_timeout, bool) or not isinstance(connect_timeout, (int, float)) or not connect_timeout > 0:
        raise ValueError(f"connect_timeout must be a positive number of seconds, not {connect_timeout!r}")
    _note_native_support()
    plan = read_options(options)
    upstream, authority = parse_target(target, plan.override)
    scheme = target_scheme(target)
    if scheme not in ("unix", "unix-abstract"):
        proxy = choose_proxy(plan.http_proxy, plan.proxy_enabled, upstream.host)
        if proxy is not None:
            if len(upstream.addresses) > 1:
                raise ValueError(
                    f"gRPC target {target!r}: an address list cannot go through the proxy {proxy.describe()} "
                    "(grpc would ask it for a tunnel to the whole list); set grpc.enable_http_proxy=0 or no_proxy"
                )
            upstream = replace(upstream, addresses=(), proxy=proxy)
    passed = list(plan.passed)
    if not any(key == _AUTHORITY for key, _ in passed):
        # The :authority header names the real host, not the local socket.
        passed.append((_AUTHORITY, authority))
    if not any(key == _SCHEME for key, _ in passed):
        passed.append((_SCHEME, "https"))  # as grpc's TLS credentials set it: the server sees a TLS channel
    # The relay applies the proxy; grpc must not send the local hop to one.
    passed.append(("grpc.enable_http_proxy", 0))
    key = as_pem("private_key", private_key)
    context = pinned_context(
        policy, as_pem("root_certificates", root_certificates), key, as_pem("certificate_chain", certificate_chain)
    )
    try:
        relay = TLSRelay(
            upstream,
            context,
            require_alpn="h2",
            connect_timeout=float(connect_timeout),
            label=LABEL,
            spread=plan.spread,
            min_resolve_interval=plan.min_resolve_interval,
            resolve_timeout=plan.resolve_timeout,
            shuffle=plan.shuffle,
            socket_options=plan.socket_options,
            client_certificate=key is not None,
        )
    except socket.gaierror as exc:
        raise OSError(
            exc.errno,
            f"cannot resolve {upstream.describe()}: {exc.strerror}; the {plan.policy} policy needs the target's "
            "addresses when the channel is made (a pinned channel gives grpc one local endpoint per address)",
        ) from exc
    try:
        # Local-connection credentials rather than an insecure channel: grpc
        # then treats the channel as secure (PRIVACY_AND_INTEGRITY over a unix
        # socket), so call credentials (access tokens, metadata plugins) are
        # still sent.
        kind = grpc.LocalConnectionType.UDS if relay.is_unix else grpc.LocalConnectionType.LOCAL_TCP
        credentials = grpc.local_channel_credentials(kind)
        if call_credentials is not None:
            credentials = grpc.composite_channel_credentials(credentials, call_credentials)
    except BaseException:
        relay.close()
        raise
    return relay, relay.local_target, passed, credentials


class ChannelState:
    """The relay behind a pinned channel: its connection counts, latest result and latest failure."""

    _relay: TLSRelay
    _target: str

    @property
    def pin_failure(self) -> ConnectFailure | None:
        """Why the latest connection attempt failed, or None if it succeeded (or none was made)."""
        return self._relay.last_failure

    @property
    def pin_result(self) -> VerificationResult | None:
        """The VerificationResult of the latest connection that passed the pin check."""
        return self._relay.last_result

    @property
    def connection_attempts(self) -> int:
        """Transport connections grpc opened through this channel (each one pin-checked)."""
        return self._relay.accepted

    @property
    def connections_established(self) -> int:
        """Connections that passed TLS validation and the pin check."""
        return self._relay.established

    @property
    def connections_refused(self) -> int:
        """Connections refused: pin mismatch, certificate or TLS failure, or no connection to the server."""
        return self._relay.refused

    @property
    def target(self) -> str:
        """The target the channel was made for."""
        return self._target

    def _failure_for(self, code: Any) -> ConnectFailure | None:
        """The connection failure to report for an RPC that ended with ``code``, if any."""
        if code not in TRANSLATED:
            return None
        return self._relay.last_failure
