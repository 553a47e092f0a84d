"""Fetching live servers' chains, for ``pinengine verify``, ``check --host`` and ``init``."""

from __future__ import annotations

import socket
import ssl
import sys
import time
from dataclasses import dataclass
from typing import Sequence, TextIO, Union

from .hooks.ssl import peer_chains


@dataclass
class LiveChains:
    """What a handshake with a live server showed."""

    verified: list[bytes]  # the chain the trust store validated (empty with --insecure)
    served: list[bytes]  # what the server sent, in its order
    version: str
    address: tuple[str, int]


def split_target(target: str, default_port: int = 443) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]``, ``[v6]:port``, a bare IPv6 literal or an https URL -> (host, port).

    Of a URL only the host and port are used; its path is ignored. Other
    schemes and URLs with user information are refused.
    """
    text = target.strip()
    if "://" in text:
        return _split_url(target, text, default_port)
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep:
            raise ValueError(f"{target!r}: missing ']'")
        if rest and not rest.startswith(":"):
            raise ValueError(f"{target!r}: expected ':PORT' after ']'")
        port_text = rest[1:]
    elif text.count(":") > 1:  # a bare IPv6 literal, no port
        host, port_text = text, ""
    else:
        host, _, port_text = text.partition(":")
    if not host:
        raise ValueError(f"{target!r}: no host")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{target!r}: bad port {port_text!r}")
    return host, int(port_text)


def fetch_chains(
    host: str,
    port: int,
    *,
    server_name: str,
    cafile: str | None = None,
    insecure: bool = False,
    timeout: float = 10.0,
) -> LiveChains:
    """Handshake with ``host:port`` sending SNI ``server_name``; return the chains.

    Validation (trust store and host name) is on unless ``insecure``; a
    validation failure raises ``ssl.SSLCertVerificationError``.
    """
    context = ssl.create_default_context(cafile=cafile)
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, port), timeout=timeout) as raw:
        with context.wrap_socket(raw, server_hostname=server_name) as conn:
            verified, served = peer_chains(conn)
            peer = conn.getpeername()
            return LiveChains(verified, served, conn.version() or "?", (peer[0], peer[1]))


def _split_url(target: str, text: str, default_port: int) -> tuple[str, int]:
    import urllib.parse

    try:
        parts = urllib.parse.urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{target!r}: not a URL: {exc}") from None
    if parts.scheme.lower() != "https":
        raise ValueError(f"{target!r}: only https URLs can be verified")
    if "@" in parts.netloc:
        raise ValueError(f"{target!r}: a URL with user information is refused")
    if not parts.hostname:
        raise ValueError(f"{target!r}: no host")
    if port == 0:
        raise ValueError(f"{target!r}: bad port 0")
    return parts.hostname, default_port if port is None else port


#: At most this many connections at once when several hosts are fetched:
#: enough to check a fleet quickly, few enough not to look like a scan.
MAX_CONCURRENT_CONNECTIONS = 8


def fetch_many(
    targets: Sequence[tuple[str, int]],
    *,
    cafile: str | None = None,
    timeout: float = 10.0,
    progress: TextIO | None = None,
    what: str = "hosts",
) -> list[Union[LiveChains, Exception]]:
    """``fetch_chains`` for every ``(host, port)``, concurrently; the results in order.

    A host that fails gives its exception in its place (``OSError``,
    ``ssl.SSLError``, ``ssl.SSLCertVerificationError``), so one dead host does
    not hide the others. Each connection is bounded by ``timeout``. With
    ``progress`` (a terminal), a count is shown once it takes over a second.
    """
    import concurrent.futures

    def fetch(host: str, port: int) -> LiveChains:
        return fetch_chains(host, port, server_name=host, cafile=cafile, timeout=timeout)

    results: dict[int, Union[LiveChains, Exception]] = {}
    started = time.monotonic()
    shown = False
    workers = max(1, min(MAX_CONCURRENT_CONNECTIONS, len(targets)))
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pinengine-fetch") as pool:
        futures = {pool.submit(fetch, host, port): i for i, (host, port) in enumerate(targets)}
        pending = set(futures)
        while pending:
            done, pending = concurrent.futures.wait(pending, timeout=0.25)
            for future in done:
                error = future.exception()
                results[futures[future]] = future.result() if error is None else _as_exception(error)
            if progress is not None and time.monotonic() - started > 1.0:
                print(f"\r{len(results)}/{len(targets)} {what}", end="", file=progress, flush=True)
                shown = True
    if shown and progress is not None:
        print(file=progress)
    return [results[i] for i in range(len(targets))]


def _as_exception(error: BaseException) -> Exception:
    if isinstance(error, Exception):
        return error
    raise error  # KeyboardInterrupt and the like are not a host's outcome


def terminal() -> TextIO | None:
    """Standard error when it is a terminal (progress goes there), else None."""
    return sys.stderr if sys.stderr.isatty() else None
