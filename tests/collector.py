"""A real HTTP report collector on loopback for the reporting tests.

``Collector()`` records every POSTed JSON document (``reports``) and answers
200. ``Collector(statuses=[503, 503])`` answers those first (then 200);
``Collector(tls=chain)`` serves HTTPS (as ``localhost``) with that chain;
``Collector(hang=6.0)`` reads each request and then says nothing for that
long (a collector that hangs); ``Collector.refusing()`` is a URL on which
nothing listens (connections are refused).
"""

from __future__ import annotations

import http.server
import json
import socket
import ssl
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterable

from tests.certs import Chain, key_pem, pem


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Any

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        collector: Collector = self.server.collector
        status = collector._record(self.path, dict(self.headers), body)
        if collector.hang:
            collector._release.wait(collector.hang)
        self.send_response(status)
        if status == 429:
            self.send_header("Retry-After", "0")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class Collector:
    """An HTTP server on 127.0.0.1 that records POSTed reports."""

    def __init__(
        self, *, statuses: Iterable[int] = (), hang: float = 0.0, path: str = "/pins", tls: Chain | None = None
    ) -> None:
        self.hang = hang
        self.path = path
        self._statuses = list(statuses)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._release = threading.Event()
        self.requests: list[tuple[str, dict[str, str], bytes, int]] = []  # path, headers, body, status sent
        self.httpd = _Server(("127.0.0.1", 0), _Handler)
        self.httpd.collector = self  # type: ignore[attr-defined]
        self.port = self.httpd.server_address[1]
        self.scheme = "http"
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        if tls is not None:  # HTTPS with tls's leaf and intermediate (clients trust tls.root)
            self._dir = tempfile.TemporaryDirectory(prefix="pinengine-collector-")
            d = Path(self._dir.name)
            (d / "chain.pem").write_bytes(pem(tls.leaf) + pem(tls.intermediate))
            (d / "key.pem").write_bytes(key_pem(tls.leaf_key))
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(d / "chain.pem"), str(d / "key.pem"))
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
            self.scheme = "https"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @staticmethod
    def refusing() -> str:
        """A URL on 127.0.0.1 where nothing listens."""
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        return f"http://127.0.0.1:{port}/pins"

    @property
    def url(self) -> str:
        host = "localhost" if self.scheme == "https" else "127.0.0.1"
        return f"{self.scheme}://{host}:{self.port}{self.path}"

    def _record(self, path: str, headers: dict[str, str], body: bytes) -> int:
        with self._cond:
            status = self._statuses.pop(0) if self._statuses else 200
            self.requests.append((path, headers, body, status))
            self._cond.notify_all()
            return status

    @property
    def reports(self) -> list[dict[str, Any]]:
        """Every POSTed body that was answered 2xx, parsed."""
        with self._lock:
            return [json.loads(body) for _, _, body, status in self.requests if 200 <= status < 300]

    @property
    def posts(self) -> int:
        with self._lock:
            return len(self.requests)

    def wait_for(self, count: int, timeout: float = 10.0) -> bool:
        """Wait until ``count`` requests have arrived."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def close(self) -> None:
        self._release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)
        if self._dir is not None:
            self._dir.cleanup()

    def __enter__(self) -> Collector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
