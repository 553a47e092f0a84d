"""Pinning for ``urllib3``: a pool manager and a proxy manager.

>>> http = PinnedPoolManager(policy)
>>> http.request("GET", "https://api.example.com/")

Verification settings (``cert_reqs``, ``ca_certs``, ``ca_cert_dir``,
``ca_cert_data``, ``cert_file``, ``key_file``) are given to the manager; it
builds one pinned context from them. A pin failure raises
``urllib3.exceptions.SSLError`` (inside ``MaxRetryError`` when retries are
exhausted) whose cause chain holds the ``PinMismatchError``.
"""

from __future__ import annotations

import ssl
from typing import Any

import urllib3

from ..policy import PinPolicy
from ._contexts import context_for

__all__ = ["PinnedPoolManager", "PinnedProxyManager"]

_CONTEXT_KEYS = ("cert_reqs", "ca_certs", "ca_cert_dir", "ca_cert_data", "cert_file", "key_file", "key_password")


def _pinned_kwargs(policy: PinPolicy, kwargs: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(policy, PinPolicy):
        raise TypeError(f"policy must be a PinPolicy, not {type(policy).__name__}")
    if "ssl_context" in kwargs:
        raise TypeError("a pinned manager makes its own ssl_context; pass verification settings instead")
    settings = {k: kwargs.pop(k) for k in _CONTEXT_KEYS if k in kwargs}
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


class PinnedPoolManager(urllib3.PoolManager):
    """A ``urllib3.PoolManager`` whose HTTPS connections enforce ``policy``."""

    def __init__(self, policy: PinPolicy, num_pools: int = 10, headers: Any = None, **kwargs: Any) -> None:
        self.policy = policy
        super().__init__(num_pools, headers, **_pinned_kwargs(policy, kwargs))


class PinnedProxyManager(urllib3.ProxyManager):
    """A ``urllib3.ProxyManager`` whose HTTPS connections to targets enforce ``policy``.

    HTTPS targets are reached through a CONNECT tunnel; the pins are checked on
    the TLS connection to the target inside it, by the target's host name.
    """

    def __init__(self, proxy_url: str, policy: PinPolicy, **kwargs: Any) -> None:
        self.policy = policy
        super().__init__(proxy_url, **_pinned_kwargs(policy, kwargs))
