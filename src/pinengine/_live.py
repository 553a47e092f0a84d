"""Fetching a live server's chains, for ``pinengine verify HOST[:PORT]``."""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass

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
