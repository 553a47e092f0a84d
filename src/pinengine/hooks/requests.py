"""Pinning for ``requests``: a transport adapter and a ready-made session.

>>> session = pinned_session(policy)
>>> session.get("https://api.example.com/")

Pins are checked on every new connection (pooled connections were checked
when they were made), through HTTPS proxies too: the pinned context is the
one used for the TLS connection to the target inside the CONNECT tunnel. A
pin failure raises ``requests.exceptions.SSLError`` whose ``__cause__`` is the
``PinMismatchError``.
"""

from __future__ import annotations

import logging
import os
import urllib.parse
from typing import Any, Iterator

import requests
from requests.adapters import HTTPAdapter

from ..policy import PinPolicy
from ._contexts import ContextCache, default_ca_bundle, find_pin_error

__all__ = ["PinnedAdapter", "pinned_session"]

log = logging.getLogger("pinengine")


class PinnedAdapter(HTTPAdapter):
    """An ``HTTPAdapter`` whose HTTPS connections enforce ``policy``.

    ``verify=True`` trusts requests' CA bundle (certifi, or ``REQUESTS_CA_BUNDLE``
    through the session's environment handling), ``verify=<path>`` trusts that
    bundle or directory only, ``verify=False`` skips validation — and then only
    pins on the leaf certificate can match.
    """

    def __init__(self, policy: PinPolicy, **adapter_kwargs: Any) -> None:
        if not isinstance(policy, PinPolicy):
            raise TypeError(f"policy must be a PinPolicy, not {type(policy).__name__}")
        self.policy = policy
        self._contexts = ContextCache(policy)
        super().__init__(**adapter_kwargs)

    def _default_context(self) -> Any:
        return self._contexts.get(verify=True, cafile=default_ca_bundle())

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        # HTTPS pools made without requests' per-request settings (the
        # deprecated get_connection, self.poolmanager used directly) are
        # pinned too: with verify=True's context.
        pool_kwargs.setdefault("ssl_context", self._default_context())
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        """requests' proxy manager for ``proxy``, its HTTPS pools pinned by default (as the adapter's own)."""
        proxy_kwargs.setdefault("ssl_context", self._default_context())
        return super().proxy_manager_for(proxy, **proxy_kwargs)

    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: Any, cert: Any = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        if host_params.get("scheme") != "https":
            return host_params, pool_kwargs
        settings: dict[str, Any] = {"verify": verify is not False}
        if isinstance(verify, str):
            if os.path.isdir(verify):
                settings["capath"] = verify
            else:
                settings["cafile"] = verify
        elif verify is not False:
            settings["cafile"] = default_ca_bundle()
        if cert:
            cert_file, key_file = (cert[0], cert[1]) if isinstance(cert, tuple) else (cert, None)
            settings.update(cert_file=cert_file, key_file=key_file)
        # The pool key includes the context: pools with different settings
        # never share a context, and urllib3's writes into it are no-ops.
        pool_kwargs["ssl_context"] = self._contexts.get(**settings)
        for name in ("ca_certs", "ca_cert_dir", "cert_file", "key_file"):
            pool_kwargs.pop(name, None)
        return host_params, pool_kwargs

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        try:
            return super().send(request, *args, **kwargs)
        except requests.exceptions.SSLError as exc:
            pin_error = find_pin_error(exc)
            if pin_error is None or exc.__cause__ is pin_error:
                raise
            raise requests.exceptions.SSLError(pin_error, request=request) from pin_error

    def build_response(self, req: requests.PreparedRequest, resp: Any) -> requests.Response:
        """The requests Response; with ``policy.hpkp`` on, its HPKP headers are noted first.

        The headers are judged against the pins of the socket the response
        came on (a pooled connection keeps the result of its handshake); see
        ``pinengine.hpkp.note_response``. Nothing here can fail the response.
        """
        response = super().build_response(req, resp)
        if not self.policy.hpkp:
            return response
        from ..hpkp import note_pinned_response  # imported when HPKP is used

        try:
            url = req.url or ""
            note_pinned_response(
                self.policy, getattr(resp, "headers", None), lambda: (urllib.parse.urlsplit(url).hostname, url),
                _connections(resp),
            )
        except Exception:  # noting is best effort: never break the response
            log.exception("HPKP: could not process the headers of %s", req.url)
        return response


def _connections(resp: Any) -> Iterator[Any]:
    """The pinned socket a urllib3 response came over (looked at lazily)."""
    # urllib3 2.x: the response holds its connection until the body is read
    # (requests asks for preload_content=False); conn.sock is the pinned
    # socket (an SSLTransport through an HTTPS proxy).
    conn = getattr(resp, "_connection", None) or getattr(resp, "connection", None)
    yield getattr(conn, "sock", None)


class _PinnedSession(requests.Session):
    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any) -> Any:
        # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override a
        # session's verify setting; a bundle (or False) given to
        # pinned_session explicitly is what the caller meant to trust.
        if verify is None and self.verify is not True:
            verify = self.verify
        return super().merge_environment_settings(url, proxies, stream, verify, cert)


def pinned_session(policy: PinPolicy, *, verify: bool | str = True, **adapter_kwargs: Any) -> requests.Session:
    """A ``requests.Session`` whose HTTPS requests enforce ``policy``.

    ``verify`` is the session's trust setting (``True``: requests' CA bundle;
    a path: that bundle only; ``False``: no validation, leaf pins only). Unlike
    a plain session, an explicit bundle or ``False`` is not overridden by the
    ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE`` environment variables.
    """
    session = _PinnedSession()
    session.verify = verify
    session.mount("https://", PinnedAdapter(policy, **adapter_kwargs))
    return session
