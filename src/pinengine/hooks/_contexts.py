"""Pinned contexts for clients that take verification settings per connection (requests, urllib3)."""

from __future__ import annotations

import os
import ssl
import threading
from typing import Any

from .._errors import PinMismatchError
from ..policy import PinPolicy
from .ssl import PinnedSSLContext, create_pinned_context


def context_for(
    policy: PinPolicy,
    *,
    verify: bool = True,
    cafile: str | None = None,
    capath: str | None = None,
    cadata: str | bytes | None = None,
    cert_file: str | None = None,
    key_file: str | None = None,
    key_password: str | None = None,
) -> PinnedSSLContext:
    """A pinned context whose settings already agree with what urllib3 will set on it.

    urllib3 writes ``verify_mode`` (and loads CA and client certificates) into
    the context it is given, on every connection. A context shared between
    ``verify=True`` and ``verify=False`` connections could be switched to
    ``CERT_NONE`` under another thread's handshake; so each combination of
    settings gets a context of its own, configured up front.
    """
    context = create_pinned_context(policy, cafile=cafile, capath=capath, cadata=cadata)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert_file:
        context.load_cert_chain(cert_file, key_file, key_password)
    return context


class ContextCache:
    """One pinned context per combination of verification settings, made on first use."""

    def __init__(self, policy: PinPolicy) -> None:
        self.policy = policy
        self._lock = threading.Lock()
        self._contexts: dict[tuple[Any, ...], PinnedSSLContext] = {}

    def get(self, **settings: Any) -> PinnedSSLContext:
        key = tuple(sorted(settings.items()))
        with self._lock:
            context = self._contexts.get(key)
            if context is None:
                context = context_for(self.policy, **settings)
                self._contexts[key] = context
            return context


def find_pin_error(exc: BaseException | None) -> PinMismatchError | None:
    """The PinMismatchError behind a client library's wrapped exception, if there is one."""
    seen: set[int] = set()
    todo: list[Any] = [exc]
    while todo:
        item = todo.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, PinMismatchError):
            return item
        if isinstance(item, BaseException):
            todo.extend([item.__cause__, item.__context__, getattr(item, "reason", None), *item.args])
    return None


def default_ca_bundle() -> str | None:
    """The CA bundle requests uses for ``verify=True`` (certifi's), if installed."""
    try:
        import certifi
    except ImportError:  # pragma: no cover - requests depends on certifi
        return None
    path: str = certifi.where()
    return path if os.path.exists(path) else None
