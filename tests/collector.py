"""A real HTTP report collector on loopback for the reporting tests.

``Collector()`` records every POSTed JSON document (``reports``) and answers
200. ``Collector(statuses=[503, 503])`` answers those first (then 200);
``Collector(tls=chain)`` serves HTTPS (as ``localhost``) with that chain;
``Collector(hang=6.0)`` reads each request and then says nothing for that
long (a collector that hangs); ``Collector(trickle=0.5)`` reads each request
and then answers one byte every 0.5 s, forever (a tarpit); ``Collector.refusing()``
is a URL on which nothing listens (connections are refused). ``connections``
counts the TCP connections accepted (``accepted``: when), ``hung_up`` the times
(``time.monotonic``) at which a trickled-to client went away. ``Collector(host="127.0.0.2", port=p)``
listens elsewhere on loopback.

``Recorder()`` is the in-process side: a policy's reporter that keeps every
``VerificationEvent`` it is handed (``events``), from any thread.

``Tarpit()`` is a bare TCP listener that, on each connection, sends ``data``
(by default a TLS record header announcing 16 KiB) one byte every ``interval``
seconds and never reads: a TLS handshake with it never completes.
"""

from __future__ import annotations

import http.server
import itertools
import json
import select
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
        if collector.trickle:
            self._trickle(collector)
            return
        self.send_response(status)
        if status == 429:
            self.send_header("Retry-After", "0")
        for name, value in collector.answer_headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _trickle(self, collector: Collector) -> None:
        # A status line, then a header that never ends: one byte per interval until the client hangs up.
        answer = itertools.chain(b"HTTP/1.1 200 OK\r\nX-Tarpit: ", itertools.repeat(ord("a")))
        try:
            for byte in answer:
                self.wfile.write(bytes((byte,)))
                self.wfile.flush()
                if collector._release.wait(collector.trickle):
                    break
        except OSError:
            collector._hung_up()
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    collector: Collector
    context: ssl.SSLContext | None = None

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        collector = self.collector
        with collector._cond:
            collector.connections += 1
            collector.accepted.append(time.monotonic())
            collector._cond.notify_all()
        if self.context is not None:
            # The handshake runs in the handler thread, so a stalled client cannot block the accept loop.
            return self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr
        return sock, addr

    def handle_error(self, request: Any, client_address: Any) -> None:  # failed handshakes are expected
        pass


class Collector:
    """An HTTP server on 127.0.0.1 that records POSTed reports."""

    def __init__(
        self, *, statuses: Iterable[int] = (), hang: float = 0.0, trickle: float = 0.0, path: str = "/pins",
        tls: Chain | None = None, host: str = "127.0.0.1", port: int = 0, answer_headers: dict[str, str] | None = None,
    ) -> None:
        self.hang = hang
        self.answer_headers = dict(answer_headers or {})  # sent with every (non-trickled) answer
        self.trickle = trickle
        self.host = host
        self.connections = 0  # TCP connections accepted
        self.accepted: list[float] = []  # when each was accepted (time.monotonic)
        self.hung_up: list[float] = []  # when trickled-to clients went away (time.monotonic)
        self.path = path
        self._statuses = list(statuses)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._release = threading.Event()
        self.requests: list[tuple[str, dict[str, str], bytes, int]] = []  # path, headers, body, status sent
        self.httpd = _Server((host, port), _Handler)
        self.httpd.collector = self
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
            self.httpd.context = context
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
        host = "localhost" if self.scheme == "https" and self.host == "127.0.0.1" else self.host
        return f"{self.scheme}://{host}:{self.port}{self.path}"

    def _hung_up(self) -> None:
        with self._cond:
            self.hung_up.append(time.monotonic())
            self._cond.notify_all()

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

    def wait_hung_up(self, count: int, timeout: float = 10.0) -> bool:
        """Wait until ``count`` trickled-to clients have gone away."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.hung_up) < count:
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


#: A TLS record header (handshake, TLS 1.2) announcing 16 KiB: a client waits for all of it.
TLS_RECORD_HEADER = b"\x16\x03\x03\x40\x00"


class Tarpit:
    """A TCP listener on loopback that trickles ``data`` (then zeros) one byte per ``interval`` s.

    It answers nothing the client says (what the client sends is read and thrown away).

    ``accepted`` holds when each connection came (``time.monotonic``), ``hung_up``
    when its client went away.
    """

    def __init__(self, *, interval: float = 0.5, data: bytes = TLS_RECORD_HEADER, host: str = "127.0.0.1") -> None:
        self.interval = interval
        self.host = host
        self.data = data
        self.accepted: list[float] = []
        self.hung_up: list[float] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._listener = socket.socket()
        self._listener.bind((host, 0))
        self._listener.listen(16)
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def url(self, scheme: str = "https", host: str = "localhost", path: str = "/pins") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    def wait_accepted(self, count: int, timeout: float = 10.0) -> bool:
        """Wait until ``count`` connections have been accepted."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.accepted) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._cond:
                self.accepted.append(time.monotonic())
                self._cond.notify_all()
            t = threading.Thread(target=self._trickle, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _trickle(self, conn: socket.socket) -> None:
        conn.setblocking(True)
        with conn:
            try:
                for byte in itertools.chain(self.data, itertools.repeat(0)):
                    conn.sendall(bytes((byte,)))
                    if self._stop.wait(self.interval):
                        break
                    # What the client sent is thrown away; a client that hung up reads as EOF (or an error).
                    ready, _, _ = select.select([conn], [], [], 0)
                    if ready and not conn.recv(65536):
                        break
            except OSError:
                pass
        with self._cond:
            self.hung_up.append(time.monotonic())
            self._cond.notify_all()

    def wait_hung_up(self, count: int, timeout: float = 10.0) -> bool:
        """Wait until ``count`` clients have gone away."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.hung_up) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        self._thread.join(5)
        for t in self._threads:
            t.join(5)

    def __enter__(self) -> Tarpit:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Recorder:
    """A reporter (``PinPolicy(reporter=...)``) that keeps every event it is handed, thread-safely."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.lock = threading.Lock()

    def report(self, event: Any) -> None:
        with self.lock:
            self.events.append(event)
