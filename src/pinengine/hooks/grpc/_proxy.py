"""Which HTTP CONNECT proxy a channel uses, decided as grpc decides it.

grpc's rules (``http_proxy_mapper.cc``), followed here:

- ``grpc.enable_http_proxy=0`` turns proxies off;
- the proxy URL is the ``grpc.http_proxy`` option, else the first *set* of the
  ``grpc_proxy``, ``https_proxy``, ``http_proxy`` environment variables (lower
  case only, as grpc reads them); an empty value means no proxy;
- its scheme must be ``http``; ``user:password@`` becomes a
  ``Proxy-Authorization: Basic`` header of the CONNECT request (and goes
  nowhere else); a proxy without a port is on 443, as grpc resolves it;
- ``no_grpc_proxy``, else ``no_proxy``: comma-separated entries; the target's
  host is not proxied when it is an entry or a subdomain of one
  (case-insensitively; a leading dot is optional, and the match is on a
  label boundary: ``example.com`` covers ``api.example.com``, not
  ``badexample.com``; ``*`` means nothing special), or, for an IP literal,
  when it falls in an entry's CIDR range. (grpc's source once matched a plain
  suffix; grpcio as released matches on the boundary, and the tests compare
  with it.)
- ``unix:`` (and ``unix-abstract:``) targets are never proxied.

Where grpc would log an error and connect directly (a URL it cannot parse,
a scheme other than http), a pinned channel raises ValueError when the URL
came from the ``grpc.http_proxy`` option, and logs the same error and
connects directly when it came from the environment, as grpc does.
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import os
from typing import Mapping
from urllib.parse import unquote

from .._relay import Proxy, split_host_port

__all__ = ["choose_proxy"]

log = logging.getLogger("pinengine")

_PROXY_VARIABLES = ("grpc_proxy", "https_proxy", "http_proxy")
_NO_PROXY_VARIABLES = ("no_grpc_proxy", "no_proxy")
#: grpc resolves a proxy name without a port with its DNS resolver's default: 443.
_DEFAULT_PROXY_PORT = 443
#: Proxy URLs and no_proxy lists come from the environment or the application;
#: none real comes near these sizes.
MAX_PROXY_URL = 2048
MAX_NO_PROXY = 16 * 1024


def choose_proxy(
    option: str | None,
    enabled: bool,
    host: str,
    *,
    environ: Mapping[str, str] | None = None,
) -> Proxy | None:
    """The proxy for a channel to ``host`` (the target's host), or None for a direct connection."""
    if not enabled:
        return None
    env = os.environ if environ is None else environ
    source = "channel option 'grpc.http_proxy'"
    url = option
    if url is None:
        for name in _PROXY_VARIABLES:
            if name in env:
                url, source = env[name], f"environment variable {name}"
                break
    if not url:
        return None
    try:
        proxy = _parse(url)
    except ValueError as exc:
        if option is not None:
            raise ValueError(f"{source}: {exc}") from None
        log.error("%s: %s; connecting directly, as grpc does", source, exc)
        return None
    for name in _NO_PROXY_VARIABLES:
        if name in env:
            if _excluded(host, env[name]):
                return None
            break
    return proxy


def _parse(url: str) -> Proxy:
    if len(url) > MAX_PROXY_URL:
        raise ValueError(f"the proxy URL is over {MAX_PROXY_URL} characters")
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError("the proxy URL has no scheme and authority (http://host:port)")
    if scheme.lower() != "http":
        raise ValueError(f"the proxy URL's scheme {scheme!r} is not supported (grpc proxies speak http://)")
    authority = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    userinfo, at, hostport = authority.rpartition("@")
    hostport = unquote(hostport)
    if not hostport:
        raise ValueError("the proxy URL names no host")
    host, port = split_host_port(hostport, _DEFAULT_PROXY_PORT)
    if not host:
        raise ValueError("the proxy URL names no host")
    headers: tuple[tuple[str, str], ...] = ()
    if at:
        credentials = base64.b64encode(unquote(userinfo).encode("utf-8")).decode("ascii")
        headers = (("Proxy-Authorization", f"Basic {credentials}"),)
    return Proxy(host, port, headers)


def _excluded(host: str, no_proxy: str) -> bool:
    """grpc's no_proxy test: the host or a subdomain of it, or a CIDR range holding the IP literal."""
    if len(no_proxy) > MAX_NO_PROXY:
        log.error("no_proxy is over %d characters; it is not used", MAX_NO_PROXY)
        return False
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
    lowered = host.lower()
    for raw in no_proxy.split(","):
        entry = raw.strip()
        if not entry:
            continue
        name = entry.lower().lstrip(".")
        if name and (lowered == name or lowered.endswith("." + name)):
            return True
        if address is not None and "/" in entry:
            try:
                network = ipaddress.ip_network(entry, strict=False)
            except ValueError:
                continue
            if address.version == network.version and address in network:
                return True
    return False
