"""gRPC target strings: where the relay connects, and the ``:authority`` the channel sends."""

from __future__ import annotations

import re
import socket

from .._relay import Upstream, sockaddrs, split_host_port

__all__ = ["DEFAULT_PORT", "parse_target", "target_scheme"]

#: grpc's default port for a target without one (its DNS resolver's "https").
DEFAULT_PORT = 443
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):(.*)$", re.DOTALL)
#: Resolvers grpc registers that a pinned channel cannot stand in for.
_UNSUPPORTED = {
    "xds": "xDS",
    "google-c2p": "Google's direct path (xDS)",
    "google-c2p-experimental": "Google's direct path (xDS)",
    "vsock": "vsock",
}
#: Targets are names and address lists an application gives; none real comes near this.
MAX_TARGET = 4096


def target_scheme(target: str) -> str:
    """The resolver grpc would use for ``target``: ``dns`` (also for ``host:port``), ``ipv4``, ``unix``..."""
    match = _SCHEME_RE.match(target)
    scheme = match.group(1).lower() if match else ""
    if scheme in ("dns", "ipv4", "ipv6", "unix", "unix-abstract"):
        return scheme
    return "dns"


def parse_target(target: str, override: str | None) -> tuple[Upstream, str]:
    """A grpc target -> (where the relay connects, the channel's default :authority).

    Supported: ``host[:port]``, ``[v6][:port]``, ``dns:[//]/host[:port]``,
    ``ipv4:a:p[,a:p...]``, ``ipv6:[a]:p[,...]``, ``unix:path``,
    ``unix:///abs/path``, ``unix-abstract:name``. The port defaults to 443.
    """
    if not isinstance(target, str) or not target:
        raise ValueError(f"invalid gRPC target {target!r}")
    if len(target) > MAX_TARGET:
        raise ValueError(f"invalid gRPC target: over {MAX_TARGET} characters")
    match = _SCHEME_RE.match(target)
    scheme = match.group(1).lower() if match else ""
    rest = match.group(2) if match else ""
    if scheme in _UNSUPPORTED:
        raise ValueError(
            f"gRPC target {target!r}: the {scheme!r} resolver ({_UNSUPPORTED[scheme]}) is not supported by pinned "
            "channels (supported: host:port, dns:, ipv4:, ipv6:, unix:, unix-abstract:)"
        )
    if scheme == "dns":
        if rest.startswith("//"):
            authority, _, rest = rest[2:].partition("/")
            if authority:
                raise ValueError(
                    f"gRPC target {target!r}: a DNS server in the target is not supported by pinned channels; "
                    "the system resolver is used"
                )
        host, port = split_host_port(rest, DEFAULT_PORT)
        if not host:
            raise ValueError(f"invalid gRPC target {target!r}: no host")
        return Upstream(host, port, override or host), override or rest
    if scheme in ("ipv4", "ipv6"):
        if rest.startswith("//"):
            rest = rest[2:].partition("/")[2]
        family = socket.AF_INET if scheme == "ipv4" else socket.AF_INET6
        parts = [p for p in rest.split(",") if p.strip()]
        if not parts:
            raise ValueError(f"invalid gRPC target {target!r}: no address")
        addresses = sockaddrs(parts, DEFAULT_PORT, family)
        host, port = split_host_port(parts[0].strip(), DEFAULT_PORT)
        name = override or host
        authority = override or (f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
        return Upstream(host, port, name, addresses=addresses), authority
    if scheme in ("unix", "unix-abstract"):
        if scheme == "unix":
            path = rest[2:] if rest.startswith("///") else rest
            if rest.startswith("//") and not rest.startswith("///"):
                raise ValueError(f"invalid gRPC target {target!r}: unix:// needs an absolute path (unix:///path)")
        else:
            path = "\0" + rest
        name = override or "localhost"
        return Upstream("localhost", 0, name, unix_path=path), override or "localhost"
    if match and rest.startswith("/"):
        raise ValueError(
            f"gRPC target {target!r}: the {scheme!r} resolver is not supported by pinned channels "
            "(supported: host:port, dns:, ipv4:, ipv6:, unix:, unix-abstract:)"
        )
    # grpc's rule: a target whose scheme is not a registered resolver is dns:///target
    host, port = split_host_port(target, DEFAULT_PORT)
    if not host:
        raise ValueError(f"invalid gRPC target {target!r}: no host")
    return Upstream(host, port, override or host), override or target
