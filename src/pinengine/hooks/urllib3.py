"""Pinning for ``urllib3``: a pool manager and a proxy manager.

>>> http = PinnedPoolManager(policy)
>>> http.request("GET", "https://api.example.com/")

Verification settings (``cert_reqs``, ``ca_certs``, ``ca_cert_dir``,
``ca_cert_data``, ``cert_file``, ``key_file``) are given to the manager; it
builds one pinned context from them. Or give ``ssl_context=`` a client
``ssl.SSLContext`` you built, as with urllib3 itself: it is pinned in place
(``pinengine.hooks.ssl.pin_context``) and enforces the policy from then on. A pin failure raises
``urllib3.exceptions.SSLError`` (inside ``MaxRetryError`` when retries are
exhausted) whose cause chain holds the ``PinMismatchError``.

Every HTTPS pool a pinned manager makes uses that context: per-request
``pool_kwargs`` (or an edited ``connection_pool_kw``) that would remove or
replace it, or change ``cert_reqs`` (urllib3 writes it into the shared
context), raise TypeError. ``PinnedProxyManager`` always tunnels HTTPS with
CONNECT; ``use_forwarding_for_https=True`` (the request handed to the proxy,
no TLS to the pinned host) raises ValueError.
"""

from __future__ import annotations

import ssl
from typing import Any

import urllib3
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.util.ssl_ import resolve_cert_reqs

from ..policy import PinPolicy
from ._contexts import context_for
from .ssl import PinnedSSLContext, pin_context

__all__ = ["PinnedPoolManager", "PinnedProxyManager"]

_CONTEXT_KEYS = ("cert_reqs", "ca_certs", "ca_cert_dir", "ca_cert_data", "cert_file", "key_file", "key_password")

_FORWARDING_REFUSED = (
    "use_forwarding_for_https=True hands HTTPS requests to the proxy instead of making a TLS connection "
    "to the host through it, so the host's pins could never be checked; a pinned proxy manager always "
    "tunnels HTTPS with CONNECT (leave use_forwarding_for_https out)"
)


def _pinned_kwargs(policy: PinPolicy, kwargs: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(policy, PinPolicy):
        raise TypeError(f"policy must be a PinPolicy, not {type(policy).__name__}")
    settings = {k: kwargs.pop(k) for k in _CONTEXT_KEYS if k in kwargs}
    if kwargs.get("ssl_context") is not None:
        # A context the caller built: it is pinned in place (see pin_context),
        # and its own verify_mode decides cert_reqs.
        if settings:
            raise TypeError(f"give ssl_context or verification settings ({', '.join(settings)}), not both: "
                            "load CA and client certificates into the context itself")
        context = pin_context(kwargs["ssl_context"], policy)
        kwargs["cert_reqs"] = "CERT_NONE" if context.verify_mode == ssl.CERT_NONE else "CERT_REQUIRED"
        return kwargs
    kwargs.pop("ssl_context", None)
    cert_reqs = settings.get("cert_reqs", ssl.CERT_REQUIRED)
    verify = cert_reqs not in (ssl.CERT_NONE, "CERT_NONE", "NONE")
    kwargs["ssl_context"] = context_for(
        policy,
        verify=verify,
        cafile=settings.get("ca_certs"),
        capath=settings.get("ca_cert_dir"),
        cadata=settings.get("ca_cert_data"),
        cert_file=settings.get("cert_file"),
        key_file=settings.get("key_file"),
        key_password=settings.get("key_password"),
    )
    kwargs["cert_reqs"] = "CERT_REQUIRED" if verify else "CERT_NONE"
    return kwargs


def _check_pool(context: PinnedSSLContext, scheme: str, request_context: dict[str, Any]) -> None:
    """Refuse an HTTPS pool that would not use the manager's pinned context as it was made."""
    if scheme != "https":
        return
    if request_context.get("ssl_context") is not context:
        raise TypeError(
            "a pinned manager's HTTPS connections use its own pinned ssl_context; "
            "it cannot be removed or replaced per request (pool_kwargs) or in connection_pool_kw"
        )
    wanted = ssl.CERT_NONE if context.verify_mode == ssl.CERT_NONE else ssl.CERT_REQUIRED
    if resolve_cert_reqs(request_context.get("cert_reqs")) != wanted:
        raise TypeError(
            "a pinned manager's cert_reqs is fixed when it is made (urllib3 writes it into the shared "
            "pinned context); make another manager for other verification settings"
        )
    proxy_config = request_context.get("_proxy_config")
    if proxy_config is not None and proxy_config.use_forwarding_for_https:
        raise ValueError(_FORWARDING_REFUSED)


class PinnedPoolManager(urllib3.PoolManager):
    """A ``urllib3.PoolManager`` whose HTTPS connections enforce ``policy``."""

    def __init__(self, policy: PinPolicy, num_pools: int = 10, headers: Any = None, **kwargs: Any) -> None:
        self.policy = policy
        kwargs = _pinned_kwargs(policy, kwargs)
        self._pinned_context: PinnedSSLContext = kwargs["ssl_context"]
        super().__init__(num_pools, headers, **kwargs)

    def _new_pool(
        self, scheme: str, host: str, port: int, request_context: dict[str, Any] | None = None
    ) -> HTTPConnectionPool:
        _check_pool(self._pinned_context, scheme, self.connection_pool_kw if request_context is None else request_context)
        return super()._new_pool(scheme, host, port, request_context)


class PinnedProxyManager(urllib3.ProxyManager):
    """A ``urllib3.ProxyManager`` whose HTTPS connections to targets enforce ``policy``.

    HTTPS targets are reached through a CONNECT tunnel; the pins are checked on
    the TLS connection to the target inside it, by the target's host name.
    ``use_forwarding_for_https=True`` is refused (ValueError): it would send
    the request to the proxy with no TLS connection to the target at all.
    """

    def __init__(self, proxy_url: str, policy: PinPolicy, **kwargs: Any) -> None:
        if kwargs.get("use_forwarding_for_https"):
            raise ValueError(_FORWARDING_REFUSED)
        self.policy = policy
        kwargs = _pinned_kwargs(policy, kwargs)
        self._pinned_context: PinnedSSLContext = kwargs["ssl_context"]
        super().__init__(proxy_url, **kwargs)

    def _new_pool(
        self, scheme: str, host: str, port: int, request_context: dict[str, Any] | None = None
    ) -> HTTPConnectionPool:
        _check_pool(self._pinned_context, scheme, self.connection_pool_kw if request_context is None else request_context)
        return super()._new_pool(scheme, host, port, request_context)
