"""A real grpcio server on loopback with TLS, for the gRPC hook tests and benchmarks.

The service is defined with generic handlers (no generated stubs); messages
are raw bytes (no serializers):

- ``/pinengine.test.Echo/Unary``: returns the request;
- ``/pinengine.test.Echo/ServerStream``: request ``b"<n>:<payload>"``, returns the payload n times;
- ``/pinengine.test.Echo/ClientStream``: returns the requests joined;
- ``/pinengine.test.Echo/BidiStream``: returns each request as it comes;
- ``/pinengine.test.Echo/Whoami``: returns the client certificate's common name (mutual TLS), or ``b""``;
- ``/pinengine.test.Echo/Metadata``: returns the request metadata, ``key=value`` lines;
- ``/pinengine.test.Echo/Where``: returns the server's ``host:port`` (which backend served the RPC).

Run as a script (``python -m tests.grpc_server CERTDIR``) it serves in its own
process until stdin closes (the benchmark does this); several such servers
given the same CERTDIR serve the same certificate chain.
"""

from __future__ import annotations

import sys
from concurrent import futures
from typing import Any, Iterator

import grpc

from tests.certs import Chain, key_pem, pem

SERVICE = "pinengine.test.Echo"
UNARY = f"/{SERVICE}/Unary"
SERVER_STREAM = f"/{SERVICE}/ServerStream"
CLIENT_STREAM = f"/{SERVICE}/ClientStream"
BIDI_STREAM = f"/{SERVICE}/BidiStream"
WHOAMI = f"/{SERVICE}/Whoami"
METADATA = f"/{SERVICE}/Metadata"
WHERE = f"/{SERVICE}/Where"


def make_handlers(counter: list[int], where: list[bytes] | None = None) -> grpc.GenericRpcHandler:
    """The Echo service; every call adds one to ``counter[0]`` (so tests can see what reached a server).

    ``where[0]`` is what ``Where`` answers (the server's address, once known).
    """
    place = where if where is not None else [b""]

    def _unary(request: bytes, context: grpc.ServicerContext) -> bytes:
        counter[0] += 1
        return request

    def _server_stream(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        counter[0] += 1
        count, _, payload = request.partition(b":")
        for _ in range(int(count)):
            yield payload

    def _client_stream(requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        counter[0] += 1
        return b"".join(requests)

    def _bidi(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        counter[0] += 1
        yield from requests

    def _whoami(request: bytes, context: grpc.ServicerContext) -> bytes:
        counter[0] += 1
        names = context.auth_context().get("x509_common_name", [])
        return names[0] if names else b""

    def _metadata(request: bytes, context: grpc.ServicerContext) -> bytes:
        counter[0] += 1
        return "\n".join(f"{k}={v}" for k, v in context.invocation_metadata()).encode()

    def _where(request: bytes, context: grpc.ServicerContext) -> bytes:
        counter[0] += 1
        return place[0]

    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Unary": grpc.unary_unary_rpc_method_handler(_unary),
            "ServerStream": grpc.unary_stream_rpc_method_handler(_server_stream),
            "ClientStream": grpc.stream_unary_rpc_method_handler(_client_stream),
            "BidiStream": grpc.stream_stream_rpc_method_handler(_bidi),
            "Whoami": grpc.unary_unary_rpc_method_handler(_whoami),
            "Metadata": grpc.unary_unary_rpc_method_handler(_metadata),
            "Where": grpc.unary_unary_rpc_method_handler(_where),
        },
    )


class GrpcServer:
    """A TLS grpc server on ``host`` serving ``chain`` (leaf + intermediate).

    ``client_ca``: a PEM root; when given, client certificates are required
    and must chain to it. ``port=0`` picks a free port; ``restart(chain)``
    stops the server and serves a new certificate on the same port.
    """

    def __init__(
        self, chain: Chain, *, host: str = "127.0.0.1", port: int = 0, client_ca: bytes | None = None, workers: int = 8
    ) -> None:
        self.host = host
        self.client_ca = client_ca
        self.workers = workers
        self.port = port
        self.server: Any = None
        self.chain = chain
        self._calls = [0]
        self._where = [b""]
        self.start(chain)

    def start(self, chain: Chain) -> None:
        self.chain = chain
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self.workers),
            handlers=[make_handlers(self._calls, self._where)],
            options=[("grpc.so_reuseport", 1)],
        )
        creds = grpc.ssl_server_credentials(
            [(key_pem(chain.leaf_key), pem(chain.leaf) + pem(chain.intermediate))],
            root_certificates=self.client_ca,
            require_client_auth=self.client_ca is not None,
        )
        address = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        port = server.add_secure_port(address, creds)
        if not port:
            raise RuntimeError(f"cannot bind {address}")
        self.port = port
        self._where[0] = self.target.encode()
        server.start()
        self.server = server

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(None).wait(10)
            self.server = None

    def restart(self, chain: Chain) -> None:
        """Stop, then serve ``chain`` on the same port (a key rotation)."""
        self.stop()
        self.start(chain)

    @property
    def calls(self) -> int:
        """RPCs that reached a handler (since the first start)."""
        return self._calls[0]

    @property
    def target(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def __enter__(self) -> GrpcServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str]) -> int:
    """Serve a chain for ``localhost`` from CERTDIR until stdin closes; print the port.

    A CERTDIR without a chain gets a fresh one: ``root.pem``, ``chain.der``
    (length-prefixed DERs: leaf, intermediate, root), ``server.pem`` and
    ``key.pem``.
    """
    import os
    from pathlib import Path

    from tests.certs import make_chain

    certdir = Path(argv[1])
    workers = int(argv[2]) if len(argv) > 2 else 4
    if not (certdir / "key.pem").exists():
        chain = make_chain("p256", "localhost")
        (certdir / "root.pem").write_bytes(pem(chain.root))
        (certdir / "chain.der").write_bytes(b"".join(len(d).to_bytes(4, "big") + d for d in chain.ders))
        (certdir / "server.pem").write_bytes(pem(chain.leaf) + pem(chain.intermediate))
        fd = os.open(certdir / "key.pem", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key_pem(chain.leaf_key))
    calls, where = [0], [b""]
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers), handlers=[make_handlers(calls, where)],
        options=[("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)],
    )
    creds = grpc.ssl_server_credentials([((certdir / "key.pem").read_bytes(), (certdir / "server.pem").read_bytes())])
    port = server.add_secure_port("127.0.0.1:0", creds)
    where[0] = f"127.0.0.1:{port}".encode()
    server.start()
    print(port, flush=True)
    sys.stdin.read()
    server.stop(None).wait(10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
