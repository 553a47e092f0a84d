"""Where the relay connects: the upstream, an optional HTTP CONNECT proxy, and the address book.

The address book holds the latest resolution of the upstream (or of the
proxy, when there is one), resolves again no sooner than the minimum interval
after the previous resolution (as grpc's DNS resolver does with
``grpc.dns_min_time_between_resolutions_ms``), and maps each local endpoint
("slot") to one address when the relay spreads connections over every
address (one endpoint per address, for grpc's load-balancing policies).
"""

from __future__ import annotations

import logging
import random
import socket
import time
from dataclasses import dataclass
from typing import Any, Sequence

__all__ = ["AddressBook", "Proxy", "Upstream", "format_addr", "sockaddrs", "split_host_port"]

log = logging.getLogger("pinengine")

#: Addresses kept from one resolution. Each can become a local endpoint and a
#: TLS connection (round_robin connects to all of them): 128 keeps a channel
#: under ~400 file descriptors, inside the usual soft limit of 1024, while no
#: real service publishes that many addresses under one name.
MAX_ADDRESSES = 128

Address = tuple[int, Any]  # (family, sockaddr)


@dataclass(frozen=True)
class Proxy:
    """An HTTP CONNECT proxy: where it listens and the headers of the CONNECT request.

    ``headers`` (e.g. ``Proxy-Authorization``) go to this proxy only: they are
    never logged (``describe()`` leaves them out) and never reach the upstream.
    """

    host: str
    port: int
    headers: tuple[tuple[str, str], ...] = ()

    def describe(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def __repr__(self) -> str:  # no header values: they may hold credentials
        return f"Proxy({self.describe()!r}, headers={[name for name, _ in self.headers]!r})"


@dataclass(frozen=True)
class Upstream:
    """Where the relay connects: ``addresses`` (literal) or a ``host``/``port`` to resolve.

    ``server_hostname`` is the name sent as SNI, checked against the
    certificate and used to choose the pin entry. ``unix_path`` makes the
    upstream a unix domain socket (TLS over it). With a ``proxy``, the relay
    connects to the proxy and asks it for a tunnel to ``host:port``; the
    pins still apply to the upstream's certificate, never the proxy's.
    """

    host: str
    port: int
    server_hostname: str
    addresses: tuple[Address, ...] = ()  # empty: resolve host (or the proxy's host)
    unix_path: str | None = None
    proxy: Proxy | None = None

    def describe(self) -> str:
        if self.unix_path is not None:
            return f"unix:{self.unix_path}"
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def needs_resolution(self) -> bool:
        """Whether the addresses come from the resolver (else they are literal and never change)."""
        if self.proxy is not None:
            return not _is_literal(self.proxy.host)
        return self.unix_path is None and not self.addresses

    def resolve(self) -> list[Address]:
        """Every address to try, in order (the proxy's, with a proxy): resolves when needed."""
        if self.proxy is not None:
            return _lookup(self.proxy.host, self.proxy.port)
        if self.unix_path is not None:
            return [(socket.AF_UNIX, self.unix_path)]
        if self.addresses:
            return list(self.addresses)
        return _lookup(self.host, self.port)


def _is_literal(host: str) -> bool:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
            return True
        except (OSError, ValueError):
            pass
    return False


def _lookup(host: str, port: int) -> list[Address]:
    infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    seen: list[Address] = []
    for family, _type, _proto, _name, sockaddr in infos:
        item = (family, sockaddr)
        if item not in seen:
            seen.append(item)
    if len(seen) > MAX_ADDRESSES:
        log.warning("%s resolved to %d addresses; the first %d are used", host, len(seen), MAX_ADDRESSES)
        del seen[MAX_ADDRESSES:]
    return seen


class AddressBook:
    """The latest resolution, when to resolve again, and which address each local endpoint stands for.

    ``slots`` is the number of local endpoints when spreading (one per
    address of the first resolution), or 0: one endpoint whose connections
    try every address in order. A slot keeps its address while the address
    is still resolved; a slot whose address went away takes one no slot
    holds, or none (its connections are then refused until a resolution
    gives it one). Used by the relay's loop thread only (and by its
    resolver thread through ``update``, under the relay's lock).
    """

    def __init__(self, upstream: Upstream, *, min_interval: float, shuffle: bool = False) -> None:
        self.upstream = upstream
        self.min_interval = min_interval
        self.shuffle = shuffle
        self.addresses: list[Address] = []
        self.resolved_at: float | None = None
        self.assigned: list[Address | None] = []
        self.resolutions = 0
        self.unused = False  # no connection has used the latest resolution yet

    def spread(self, addresses: Sequence[Address]) -> int:
        """Start spreading over ``addresses`` (the first resolution): one slot each. Returns the slot count."""
        self.update(list(addresses))
        self.assigned = list(self.addresses)
        return len(self.assigned)

    @property
    def spreading(self) -> bool:
        return bool(self.assigned)

    def stale(self, now: float | None = None) -> bool:
        """Whether a new connection should resolve again first."""
        if not self.upstream.needs_resolution:
            if self.resolved_at is None:
                self.update(self.upstream.resolve())  # literal: no lookup, nothing can block
            return False
        if self.resolved_at is None:
            return True
        if self.unused:
            return False  # made ahead of the first connection (or for it): not resolved twice
        return (time.monotonic() if now is None else now) - self.resolved_at >= self.min_interval

    def update(self, addresses: list[Address]) -> None:
        """Take a new resolution; re-map the slots."""
        if self.shuffle:
            random.shuffle(addresses)
        self.addresses = addresses[:MAX_ADDRESSES]
        self.resolved_at = time.monotonic()
        self.unused = True
        self.resolutions += 1
        if not self.assigned:
            return
        kept = set(self.addresses)
        slots: list[Address | None] = [a if a in kept else None for a in self.assigned]
        taken = set(slots)
        free = [a for a in self.addresses if a not in taken]
        for i, a in enumerate(slots):
            if a is None and free:
                slots[i] = free.pop(0)
        if free:
            log.info(
                "%s now resolves to %d addresses; %d are not used until the channel is made again "
                "(it has %d local endpoints)",
                self.upstream.describe(), len(self.addresses), len(free), len(slots),
            )
        self.assigned = slots

    def candidates(self, slot: int) -> list[Address]:
        """The addresses a connection on ``slot`` tries, in order (none: refuse it)."""
        self.unused = False
        if not self.assigned:
            return list(self.addresses)
        address = self.assigned[slot] if slot < len(self.assigned) else None
        return [] if address is None else [address]


def format_addr(family: int, sockaddr: Any) -> str:
    """``host:port``, ``[v6]:port`` or ``unix:path`` for log lines and errors."""
    if family == getattr(socket, "AF_UNIX", None):
        return f"unix:{sockaddr}"
    if family == socket.AF_INET6:
        return f"[{sockaddr[0]}]:{sockaddr[1]}"
    return f"{sockaddr[0]}:{sockaddr[1]}"


def split_host_port(text: str, default_port: int) -> tuple[str, int]:
    """``host:port``, ``[v6]:port``, ``host`` or ``v6`` -> (host, port)."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"invalid address {text!r}: missing ']'")
        host, rest = text[1:end], text[end + 1:]
        if not rest:
            return host, default_port
        if not rest.startswith(":"):
            raise ValueError(f"invalid address {text!r}")
        return host, _port(text, rest[1:])
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, _port(text, port)
    return text, default_port  # a bare name, or an IPv6 address without brackets and port


def _port(text: str, port: str) -> int:
    if not port.isascii() or not port.isdigit() or len(port) > 5:
        raise ValueError(f"invalid port in {text!r}")
    value = int(port)
    if not 0 < value < 65536:
        raise ValueError(f"port out of range in {text!r}")
    return value


def sockaddrs(addresses: Sequence[str], default_port: int, family: int) -> tuple[Address, ...]:
    """Literal addresses (``1.2.3.4:80``, ``[::1]:80``) -> (family, sockaddr) pairs."""
    out = []
    for text in addresses:
        host, port = split_host_port(text.strip(), default_port)
        try:
            infos = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST)
        except socket.gaierror:
            raise ValueError(f"invalid address {text.strip()!r}: not a literal IP address of that family") from None
        out.append((infos[0][0], infos[0][4]))
    return tuple(out)
