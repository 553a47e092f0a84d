"""What the sync and aio pinned channels share: starting the relay, and the channel's connection state."""

from __future__ import annotations

from typing import Any, Sequence

import grpc

from ...policy import PinPolicy, VerificationResult
from .._relay import ConnectFailure, TLSRelay
from ._credentials import as_pem, pinned_context
from ._errors import TRANSLATED
from ._targets import parse_target

__all__ = ["ChannelState", "open_relay"]

_OVERRIDE = "grpc.ssl_target_name_override"
_AUTHORITY = "grpc.default_authority"
#: Names the relay's thread, log lines and socket directory.
LABEL = "pinengine-grpc"


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
    """Start the relay; return it, the local target, the channel options and the credentials."""
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
    upstream, authority = parse_target(target, override)
    if not any(key == _AUTHORITY for key, _ in passed):
        # The :authority header names the real host, not the local socket.
        passed.append((_AUTHORITY, authority))
    context = pinned_context(
        policy,
        as_pem("root_certificates", root_certificates),
        as_pem("private_key", private_key),
        as_pem("certificate_chain", certificate_chain),
    )
    relay = TLSRelay(upstream, context, require_alpn="h2", connect_timeout=connect_timeout, label=LABEL)
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
