"""The relay's address book: which address each local endpoint stands for, and when to resolve again.

(The relay itself is tested through pinned gRPC channels against real
servers: tests/test_hooks_grpc.py, tests/test_grpc_*.py, tests/security/.)
"""

from __future__ import annotations

import socket
from typing import Any

import pytest

from pinengine.hooks._relay import MAX_ADDRESSES, Proxy, Upstream
from pinengine.hooks._relay._addresses import AddressBook


def v4(port: int, host: str = "127.0.0.1") -> tuple[int, Any]:
    return (socket.AF_INET, (host, port))


def dns(name: str = "svc.example") -> Upstream:
    return Upstream(name, 443, name)


def test_one_endpoint_tries_every_address_in_order() -> None:
    book = AddressBook(dns(), min_interval=30)
    assert book.stale() and not book.spreading
    book.update([v4(1), v4(2)])
    assert not book.stale() and book.candidates(0) == [v4(1), v4(2)]


def test_spread_keeps_each_endpoints_address_while_it_resolves() -> None:
    book = AddressBook(dns(), min_interval=0)
    assert book.spread([v4(1), v4(2), v4(3)]) == 3
    book.update([v4(3), v4(2), v4(1)])  # same set, another order: nothing moves
    assert [book.candidates(i) for i in range(3)] == [[v4(1)], [v4(2)], [v4(3)]]
    book.update([v4(1), v4(4), v4(3)])  # 2 went away: its endpoint takes 4
    assert [book.candidates(i) for i in range(3)] == [[v4(1)], [v4(4)], [v4(3)]]
    book.update([v4(3)])  # the pool shrinks: the emptied endpoints stand for nothing
    assert [book.candidates(i) for i in range(3)] == [[], [], [v4(3)]]
    book.update([v4(5), v4(6), v4(3), v4(7)])  # it grows: the free endpoints fill, in order; 7 waits
    assert [book.candidates(i) for i in range(3)] == [[v4(5)], [v4(6)], [v4(3)]]
    assert book.candidates(99) == []


def test_stale_after_the_minimum_interval() -> None:
    book = AddressBook(dns(), min_interval=30)
    book.update([v4(1)])
    assert book.resolved_at is not None
    assert not book.stale(book.resolved_at + 3600)  # no connection used it yet (resolved ahead of one)
    book.candidates(0)
    assert not book.stale(book.resolved_at + 29.9)
    assert book.stale(book.resolved_at + 30)


def test_literal_addresses_are_never_resolved() -> None:
    book = AddressBook(Upstream("10.0.0.1", 5, "svc", addresses=(v4(5, "10.0.0.1"),)), min_interval=0)
    assert not book.stale() and book.candidates(0) == [v4(5, "10.0.0.1")]
    proxied = Upstream("svc.example", 443, "svc.example", proxy=Proxy("127.0.0.1", 3128))
    assert not proxied.needs_resolution and proxied.resolve() == [(socket.AF_INET, ("127.0.0.1", 3128))]
    assert Upstream("svc.example", 443, "svc.example", proxy=Proxy("proxy.example", 3128)).needs_resolution


def test_a_resolution_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    answer = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (f"10.0.{i // 256}.{i % 256}", 443)) for i in range(1000)]
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: answer + answer)  # duplicates too
    addresses = dns().resolve()
    assert len(addresses) == MAX_ADDRESSES and len(set(addresses)) == MAX_ADDRESSES


def test_shuffle_keeps_the_set() -> None:
    book = AddressBook(dns(), min_interval=0, shuffle=True)
    addresses = [v4(i) for i in range(1, 50)]
    book.update(list(addresses))
    assert sorted(book.candidates(0)) == addresses


def test_proxy_repr_hides_its_headers() -> None:
    proxy = Proxy("127.0.0.1", 3128, (("Proxy-Authorization", "Basic c2VjcmV0"),))
    assert "c2VjcmV0" not in repr(proxy) and "Proxy-Authorization" in repr(proxy)
    assert "c2VjcmV0" not in repr(Upstream("h", 1, "h", proxy=proxy))
