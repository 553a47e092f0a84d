"""A small HTTP CONNECT proxy on loopback, for testing pinning through tunnels.

``ConnectProxy()`` tunnels ``CONNECT host:port`` to a loopback target and
records every request head it read (``heads``) and tunnel it opened
(``tunnels``). For attacks on the client, it can also:

- ``answer=b"..."``: send these bytes instead of ``200 Connection
  established`` (a refusal, an oversized or malformed answer), then close
  (or, with ``tunnel=True``, open the tunnel after them), and
  ``trickle=seconds``: send them one byte at a time, this far apart;
- ``forge=(cert_pem, key_pem)``: answer 200, then terminate the client's TLS
  itself with this certificate (a proxy that forges the target's
  certificate) and, if the client goes on, relay what it decrypts to the real
  target over a TLS connection of its own (``forged_bytes`` counts what the
  client sent it after the handshake).
"""

from __future__ import annotations

import os
import select
import socket
import ssl
import tempfile
import threading
import time


class ConnectProxy:
    """Accepts ``CONNECT host:port``, tunnels bytes to a loopback target, counts tunnels."""

    def __init__(
        self,
        *,
        answer: bytes | None = None,
        tunnel: bool = False,
        trickle: float = 0.0,
        forge: tuple[bytes, bytes] | None = None,
        target_cafile: str | None = None,
    ) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.tunnels: list[str] = []
        self.heads: list[bytes] = []
        self.forged_handshakes = 0
        self.forged_bytes = 0
        self.answer = answer
        self.tunnel_after_answer = tunnel
        self.trickle = trickle
        self._forge_ctx: ssl.SSLContext | None = None
        self._upstream_ctx: ssl.SSLContext | None = None
        if forge is not None:
            self._forge_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._forge_ctx.set_alpn_protocols(["h2"])
            with tempfile.TemporaryDirectory() as d:
                cert, key = os.path.join(d, "c.pem"), os.path.join(d, "k.pem")
                with open(cert, "wb") as f:
                    f.write(forge[0])
                with open(key, "wb") as f:
                    f.write(forge[1])
                self._forge_ctx.load_cert_chain(cert, key)
            self._upstream_ctx = ssl.create_default_context(cafile=target_cafile)
            self._upstream_ctx.set_alpn_protocols(["h2"])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                client, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._tunnel, args=(client,), daemon=True).start()

    def _tunnel(self, client: socket.socket) -> None:
        try:
            self._relay(client)
        except (OSError, ValueError):  # a peer reset the tunnel (a refused handshake does that)
            pass

    def _relay(self, client: socket.socket) -> None:
        with client:
            client.settimeout(10)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(4096)
                if not chunk:
                    return
                head += chunk
            self.heads.append(head)
            method, target = head.split(b" ", 2)[:2]
            host, _, port = target.decode().rpartition(":")
            if self.answer is not None and not self.tunnel_after_answer:
                self._send_answer(client, self.answer)
                time.sleep(0.5)  # let the client read it before the close
                return
            if method != b"CONNECT" or host.strip("[]") not in ("localhost", "127.0.0.1", "::1"):
                client.sendall(b"HTTP/1.1 403 Forbidden\r\n\r\n")
                return
            self.tunnels.append(target.decode())
            with socket.create_connection(("127.0.0.1", int(port)), timeout=10) as upstream:
                if self.answer is not None:
                    self._send_answer(client, self.answer)
                else:
                    client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                if self._forge_ctx is not None:
                    self._forge(client, upstream, host.strip("[]"))
                    return
                self._pipe(client, upstream)

    def _send_answer(self, client: socket.socket, answer: bytes) -> None:
        if not self.trickle:
            client.sendall(answer)
            return
        for i in range(len(answer)):
            if self._stop.is_set():
                return
            client.sendall(answer[i:i + 1])
            time.sleep(self.trickle)

    def _forge(self, client: socket.socket, upstream: socket.socket, host: str) -> None:
        """Terminate the client's TLS with the forged certificate; relay what it then sends to the target."""
        assert self._forge_ctx is not None and self._upstream_ctx is not None
        tls_client = self._forge_ctx.wrap_socket(client, server_side=True)
        self.forged_handshakes += 1
        tls_upstream = self._upstream_ctx.wrap_socket(upstream, server_hostname=host)
        self._pipe(tls_client, tls_upstream, count_from_client=True)

    def _pipe(self, a: socket.socket, b: socket.socket, count_from_client: bool = False) -> None:
        pair = {a: b, b: a}
        while True:
            ready, _, _ = select.select(list(pair), [], [], 10)
            if not ready:
                return
            for s in ready:
                data = s.recv(65536)
                if not data:
                    return
                if count_from_client and s is a:
                    self.forged_bytes += len(data)
                pair[s].sendall(data)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()

    def __enter__(self) -> ConnectProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
