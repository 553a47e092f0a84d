"""What the HPKP attack tests share: loopback names, wildcard-certificate servers, header values, counters."""

from __future__ import annotations

import base64
import hashlib
import socket
from typing import Any

import pytest

import pinengine
from pinengine import Pin
from tests.certs import Chain, make_chain

#: Names under these suffixes resolve to 127.0.0.1 while ``resolve_to_loopback`` is in force.
LOOPBACK_SUFFIX = ".test"


def resolve_to_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every ``*.test`` name resolve to 127.0.0.1 (the stand-in for DNS an attacker controls).

    The clients (requests through urllib3, httpx through httpcore) look names
    up with ``socket.getaddrinfo`` at connect time; the TLS servers are real.
    """
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, bytes):
            host = host.decode("ascii")
        if isinstance(host, str) and host.rstrip(".").endswith(LOOPBACK_SUFFIX):
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", int(port)))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def wildcard_chain(*domains: str) -> Chain:
    """A chain whose leaf is valid for ``*.<domain>`` of every domain given (the first also as CN)."""
    first, *rest = domains
    return make_chain("p256", f"*.{first}", extra_sans=tuple(f"*.{d}" for d in rest))


def fake_pin(i: int) -> Pin:
    """A SHA-256 pin of no key in any chain (a backup key kept offline)."""
    return Pin("sha256", hashlib.sha256(b"security hpkp pin %d" % i).digest())


def b64(pin: Pin) -> str:
    return base64.b64encode(pin.digest).decode()


def header(*pins: Pin, extra: str = "; max-age=600") -> str:
    """A Public-Key-Pins value with ``pins`` then ``extra``."""
    return "; ".join(p.hpkp for p in pins) + extra


def counters() -> dict[str, int]:
    """pinengine's counter totals now (tests compare before and after: other tests count too)."""
    totals: dict[str, int] = pinengine.stats()["totals"]
    return totals


def grew(before: dict[str, int], name: str) -> int:
    """How much the counter ``name`` went up since ``before``."""
    return counters()[name] - before.get(name, 0)
