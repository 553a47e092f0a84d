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


class RecordingServer:
    """A raw TLS server on 127.0.0.1 that records every application byte it receives.

    Each connection: the TLS handshake, then ``greeting`` (if any) sent as soon
    as the handshake is done (a server that speaks first), then everything the
    client sends, recorded until the client closes. ``received`` is what all
    connections sent after their handshake; ``handshakes`` counts the
    handshakes that completed. ``wait(n)`` waits until ``n`` connections have
    ended, so a test can look at ``received`` once the client has gone. With
    ``hold=True`` the server answers no ClientHello until ``release()``, so a
    non-blocking client's first call surely finds the handshake unfinished.
    """

    def __init__(
        self,
        chain: Chain,
        *,
        greeting: bytes = b"",
        max_version: ssl.TLSVersion | None = None,
        extra: Iterable[x509.Certificate] = (),
        hold: bool = False,
    ) -> None:
        self.chain = chain
        self.greeting = greeting
        self._go = threading.Event()
        if not hold:
            self._go.set()
        self._dir = tempfile.TemporaryDirectory(prefix="pinengine-rec-")
        d = Path(self._dir.name)
        served = [chain.leaf, chain.intermediate, *extra]
        (d / "chain.pem").write_bytes(b"".join(pem(c) for c in served))
        (d / "key.pem").write_bytes(key_pem(chain.leaf_key))
        (d / "ca.pem").write_bytes(pem(chain.root))
        self.cafile = str(d / "ca.pem")
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(str(d / "chain.pem"), str(d / "key.pem"))
        if max_version is not None:
            self.context.maximum_version = max_version
        self.host = "127.0.0.1"
        self.sock = socket.create_server((self.host, 0))
        self.port = self.sock.getsockname()[1]
        self.handshakes = 0
        self.ended = 0
        self._chunks: list[bytes] = []
        self._lock = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def received(self) -> bytes:
        with self._lock:
            return b"".join(self._chunks)

    def _serve(self) -> None:
        self.sock.settimeout(0.05)
        while not self._stop.is_set():
            try:
                raw, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._handle, args=(raw,), daemon=True).start()

    def _handle(self, raw: socket.socket) -> None:
        try:
            raw.settimeout(10)
            self._go.wait(10)
            with self.context.wrap_socket(raw, server_side=True) as conn:
                with self._lock:
                    self.handshakes += 1
                if self.greeting:
                    conn.sendall(self.greeting)
                while True:
                    data = conn.recv(65536)
                    if not data:
                        break
                    with self._lock:
                        self._chunks.append(data)
        except (OSError, ValueError):  # a refused client just drops the connection
            pass
        finally:
            raw.close()
            with self._lock:
                self.ended += 1
                self._lock.notify_all()

    def release(self) -> None:
        """Let a ``hold=True`` server answer its clients."""
        self._go.set()

    def wait(self, connections: int = 1, timeout: float = 10.0) -> None:
        """Wait until ``connections`` connections have ended (AssertionError after ``timeout``)."""
        with self._lock:
            if not self._lock.wait_for(lambda: self.ended >= connections, timeout):
                raise AssertionError(f"{self.ended} of {connections} connections ended within {timeout}s")

    def close(self) -> None:
        self._stop.set()
        self._go.set()
        self._thread.join(5)
        self.sock.close()
        self._dir.cleanup()

    def __enter__(self) -> RecordingServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RawRecorder:
    """A plain TCP server on 127.0.0.1 that speaks no TLS and records every byte it receives."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.host = "127.0.0.1"
        self.port = self.sock.getsockname()[1]
        self._chunks: list[bytes] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def received(self) -> bytes:
        with self._lock:
            return b"".join(self._chunks)

    def _serve(self) -> None:
        self.sock.settimeout(0.05)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            try:
                while data := conn.recv(65536):
                    with self._lock:
                        self._chunks.append(data)
            except OSError:
                pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def __enter__(self) -> RawRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
