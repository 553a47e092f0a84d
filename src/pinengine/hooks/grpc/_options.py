"""Channel options: what the relay honours itself, what goes to grpc, and what a pinned channel refuses.

grpc ignores an option it does not know; a pinned channel must not ignore
one it cannot honour. Every option either

- is honoured by the relay (it makes the TLS connections, so the options about
  them are its business): ``ssl_target_name_override``, ``http_proxy``,
  ``enable_http_proxy``, ``dns_min_time_between_resolutions_ms``,
  ``dns_ares_query_timeout``, ``tcp_receive_buffer_size``, ``dscp``; the
  load-balancing policy (``lb_policy_name``, the service config's
  ``loadBalancingConfig``) is read to shape the local endpoints and also goes
  to grpc, which does the balancing;
- is refused with a ValueError naming it (``REFUSED``): it concerns grpc's own
  TLS, grpc's own resolver or proxy, or the socket grpc opens, none of which a
  pinned channel's connections go through;
- or goes to grpc unchanged: everything else (message sizes, keepalive,
  HTTP/2 settings, retries, backoff, user agents, compression, ...). Those act
  end to end through the relay.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, field
from typing import Any, Sequence

__all__ = ["REFUSED", "ChannelPlan", "read_options"]

#: The option names a pinned channel refuses, and why.
REFUSED: dict[str, str] = {
    "grpc.ssl_session_cache": "TLS session resumption through grpc's cache: the relay, not grpc, makes the TLS "
    "connections of a pinned channel",
    "grpc.tsi.max_frame_size": "it sizes grpc's own TLS frames; a pinned channel's TLS runs in the relay",
    "grpc.address_http_proxy": "per-address HTTP proxies are not supported by pinned channels "
    "(grpc.http_proxy and the grpc_proxy/https_proxy variables are)",
    "grpc.address_http_proxy_enabled_addresses": "per-address HTTP proxies are not supported by pinned channels",
    "grpc.http_connect_server": "an internal grpc option; use grpc.http_proxy",
    "grpc.http_connect_headers": "an internal grpc option; proxy credentials go in the grpc.http_proxy URL",
    "grpc.socket_mutator": "it would change the local socket to the relay, not the connection to the server",
    "grpc.socket_factory": "it would make the local socket to the relay, not the connection to the server",
    "grpc.happy_eyeballs_connection_attempt_delay_ms": "the relay tries a name's addresses one after the other "
    "(pick_first) or gives grpc one endpoint per address (other policies); it races no connection attempts",
    "grpc.TEST_ONLY_DO_NOT_USE_IN_PROD.xds_bootstrap_config": "xDS is not supported by pinned channels",
}
#: Refused when true (SRV lookups) or false (service config from DNS TXT records).
_REFUSED_IF_TRUE = {"grpc.dns_enable_srv_queries": "SRV lookups (grpclb): a pinned channel resolves with the "
                    "system resolver, which has none"}
_REFUSED_IF_FALSE = {"grpc.service_config_disable_resolution": "service configs from DNS TXT records: a pinned "
                     "channel resolves with the system resolver, which reads none"}
#: Load-balancing policies that need grpc's own resolver (xDS, grpclb balancers, RLS).
_NEEDS_GRPC_RESOLVER = ("grpclb", "rls_experimental", "xds", "cds_experimental")
#: Policies that keep one connection: one local endpoint, whose connections try the addresses in order.
_ONE_CONNECTION = "pick_first"
#: Service configs are JSON text; no real one comes near this size.
MAX_SERVICE_CONFIG = 256 * 1024
#: grpc's defaults: 30 s between resolutions, 120 s for a query.
_DEFAULT_MIN_RESOLVE_MS = 30_000
_DEFAULT_QUERY_TIMEOUT_MS = 120_000


@dataclass
class ChannelPlan:
    """What the options ask of the relay, and the options that go to grpc."""

    override: str | None = None
    policy: str = "pick_first"  # the load-balancing policy grpc will use
    spread: bool = False  # one local endpoint per address (a balancing policy other than pick_first)
    shuffle: bool = False  # pick_first's shuffleAddressList
    min_resolve_interval: float = _DEFAULT_MIN_RESOLVE_MS / 1000
    resolve_timeout: float | None = None
    http_proxy: str | None = None  # the grpc.http_proxy option, if given ("" = no proxy)
    proxy_enabled: bool = True
    socket_options: list[tuple[int, int, int]] = field(default_factory=list)
    passed: list[tuple[str, Any]] = field(default_factory=list)


def _text(key: str, value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, str):
        return value
    raise TypeError(f"channel option {key!r} takes a string, not {type(value).__name__}")


def _integer(key: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"channel option {key!r} takes an integer, not {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"channel option {key!r} must be between {low} and {high}, not {value}")
    return value


def read_options(options: Sequence[tuple[str, Any]] | None) -> ChannelPlan:
    """Sort the channel options; raise ValueError for one a pinned channel cannot honour."""
    plan = ChannelPlan()
    lb_name: str | None = None
    service_config: Any = None
    for item in options or ():
        if not isinstance(item, tuple) or len(item) != 2 or not isinstance(item[0], str):
            raise TypeError(f"channel options are (name, value) pairs, not {item!r}")
        key, value = item
        if key in REFUSED:
            raise ValueError(f"channel option {key!r} is not supported by pinned channels: {REFUSED[key]}")
        if key in _REFUSED_IF_TRUE and value:
            raise ValueError(f"channel option {key!r} is not supported by pinned channels: {_REFUSED_IF_TRUE[key]}")
        if key in _REFUSED_IF_FALSE and not value:
            raise ValueError(
                f"channel option {key!r}=0 is not supported by pinned channels: {_REFUSED_IF_FALSE[key]}"
            )
        if key == "grpc.ssl_target_name_override":
            plan.override = _text(key, value)
        elif key == "grpc.http_proxy":
            plan.http_proxy = _text(key, value)
        elif key == "grpc.enable_http_proxy":
            plan.proxy_enabled = bool(value)
        elif key == "grpc.dns_min_time_between_resolutions_ms":
            plan.min_resolve_interval = _integer(key, value, 0, 2**31 - 1) / 1000
        elif key == "grpc.dns_ares_query_timeout":
            ms = _integer(key, value, 0, 2**31 - 1)
            plan.resolve_timeout = (ms or _DEFAULT_QUERY_TIMEOUT_MS) / 1000  # 0: grpc's "no overall timeout"
        elif key == "grpc.tcp_receive_buffer_size":
            size = _integer(key, value, -1, 2**31 - 1)
            if size > 0:
                plan.socket_options.append((socket.SOL_SOCKET, socket.SO_RCVBUF, size))
        elif key == "grpc.dscp":
            dscp = _integer(key, value, 0, 63)
            plan.socket_options.append((socket.IPPROTO_IP, socket.IP_TOS, dscp << 2))
            if hasattr(socket, "IPV6_TCLASS"):
                plan.socket_options.append((socket.IPPROTO_IPV6, socket.IPV6_TCLASS, dscp << 2))
        else:
            if key == "grpc.lb_policy_name":
                lb_name = _text(key, value)
            elif key == "grpc.service_config":
                service_config = _service_config(_text(key, value))
            plan.passed.append((key, value))
    policy, config = _lb_policy(service_config, lb_name)
    if policy.startswith(_NEEDS_GRPC_RESOLVER):
        raise ValueError(
            f"load-balancing policy {policy!r} is not supported by pinned channels: it needs grpc's own resolver "
            "(xDS, grpclb or RLS), and a pinned channel resolves its target itself"
        )
    plan.policy = policy
    plan.spread = policy != _ONE_CONNECTION
    plan.shuffle = policy == _ONE_CONNECTION and isinstance(config, dict) and config.get("shuffleAddressList") is True
    return plan


def _service_config(text: str) -> Any:
    if len(text) > MAX_SERVICE_CONFIG:
        raise ValueError(f"channel option 'grpc.service_config' is over {MAX_SERVICE_CONFIG} characters")
    try:
        config = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"channel option 'grpc.service_config' is not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise ValueError("channel option 'grpc.service_config' must be a JSON object")
    return config


def _lb_policy(service_config: Any, lb_name: str | None) -> tuple[str, Any]:
    """The policy grpc will use, as grpc chooses it: the service config's, else lb_policy_name, else pick_first."""
    if isinstance(service_config, dict):
        configs = service_config.get("loadBalancingConfig")
        if isinstance(configs, list):
            for entry in configs:
                if isinstance(entry, dict) and len(entry) == 1:
                    name, config = next(iter(entry.items()))
                    return str(name), config
        policy = service_config.get("loadBalancingPolicy")
        if isinstance(policy, str) and policy:
            return policy.lower(), None
    if lb_name:
        return lb_name.lower(), None
    return _ONE_CONNECTION, None
