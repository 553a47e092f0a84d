"""Real TLS servers on loopback for the hook tests."""

from __future__ import annotations

import http.server
import socket
import ssl
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterable

from cryptography import x509

from tests.certs import Chain, key_pem, pem


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Any

    def do_GET(self) -> None:  # http.server's naming
        body = self.server.body
        self.send_response(200)
        for name, value in self.server.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], family: int, context: ssl.SSLContext) -> None:
        self.address_family = family
        self.body = b"hello from pinengine tests\n"
        self.headers: dict[str, str] = {}
        self.context = context
        self.handshakes = 0
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        self.handshakes += 1  # connections accepted (each one a handshake)
        # The handshake runs in the handler thread (on first read), so a
        # client that stalls cannot block the accept loop.
        return self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def handle_error(self, request: Any, client_address: Any) -> None:  # refused handshakes are expected
        pass


class TLSServer:
    """An HTTPS server on 127.0.0.1 (or ::1) serving ``chain`` (leaf first) plus any ``extra`` certificates.

    ``cafile`` is a PEM file with the chain's root, for clients to trust.
    """

    def __init__(
        self,
        chain: Chain,
        *,
        extra: Iterable[x509.Certificate] = (),
        host: str = "127.0.0.1",
        send_intermediate: bool = True,
        max_version: ssl.TLSVersion | None = None,
        port: int = 0,
    ) -> None:
        self.chain = chain
        self._dir = tempfile.TemporaryDirectory(prefix="pinengine-tls-")
        d = Path(self._dir.name)
        served = [chain.leaf] + ([chain.intermediate] if send_intermediate else []) + list(extra)
        (d / "chain.pem").write_bytes(b"".join(pem(c) for c in served))
        (d / "key.pem").write_bytes(key_pem(chain.leaf_key))
        (d / "ca.pem").write_bytes(pem(chain.root))
        self.cafile = str(d / "ca.pem")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(d / "chain.pem"), str(d / "key.pem"))
        if max_version is not None:
            context.maximum_version = max_version
        self.context = context
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.httpd = _Server((host, port), family, context)
        self.host = host
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @property
    def netloc(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def connections(self) -> int:
        """TCP connections accepted so far (each begins a TLS handshake)."""
        return int(self.httpd.handshakes)

    def url(self, hostname: str = "localhost", path: str = "/") -> str:
        return f"https://{hostname}:{self.port}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)
        self._dir.cleanup()

    def __enter__(self) -> TLSServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
