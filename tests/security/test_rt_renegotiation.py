"""Attack: a pinned TLS 1.2 connection that the server renegotiates after the pin check.

The pin check runs when the (first) handshake completes. A renegotiation is
a second, full handshake inside the connection, run by OpenSSL inside a read
or a write: a new certificate can come with it, and no pin check sees it.
``create_pinned_context`` refuses renegotiation (``OP_NO_RENEGOTIATION``, as
the gRPC contexts already did): the client answers the server's request with
a ``no_renegotiation`` alert, and no second ClientHello is ever sent. Against
a real ``openssl s_server`` that asks for the renegotiation, through the
ssl socket and through asyncio streams (an SSLObject over memory BIOs).
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from pinengine import Pin, PinPolicy
from pinengine.hooks.ssl import create_pinned_context
from tests.certs import Chain, cached_chain, key_pem, pem

HOST = "reneg.test"

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command (s_server)")


def until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


@pytest.fixture(scope="module")
def chain() -> Chain:
    return cached_chain("p256", HOST)


class SServer:
    """``openssl s_server -tls1_2 -msg`` on loopback; ``renegotiate()`` asks the client for a new handshake."""

    def __init__(self, chain: Chain, directory: Path) -> None:
        (directory / "leaf.pem").write_bytes(pem(chain.leaf))
        (directory / "inter.pem").write_bytes(pem(chain.intermediate))
        (directory / "key.pem").write_bytes(key_pem(chain.leaf_key))
        (directory / "root.pem").write_bytes(pem(chain.root))
        self.cafile = str(directory / "root.pem")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.process = subprocess.Popen(
            ["openssl", "s_server", "-accept", f"127.0.0.1:{self.port}", "-tls1_2", "-msg", "-naccept", "1",
             "-cert", str(directory / "leaf.pem"), "-cert_chain", str(directory / "inter.pem"),
             "-key", str(directory / "key.pem")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        self.lines: list[str] = []
        output = self.process.stdout
        assert output is not None
        self.reader = threading.Thread(
            target=lambda: self.lines.extend(raw.decode(errors="replace") for raw in output), daemon=True
        )
        self.reader.start()
        assert until(lambda: any("ACCEPT" in line for line in self.lines)), self.text

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def command(self, line: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line)
        self.process.stdin.flush()

    def renegotiate(self) -> None:
        """Ask for a renegotiation (s_server's "R": HelloRequest), then send b"after\\n"."""
        self.command(b"R\n")
        time.sleep(0.5)  # s_server reads its stdin line by line; its output is buffered, so wait instead
        try:
            self.command(b"after\n")
        except BrokenPipeError:
            pass  # s_server already ended: the client refused the renegotiation at once

    def finish(self) -> str:
        """Everything s_server said, once it ended (it serves one connection; its output is then flushed)."""
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self.reader.join(5)
        return self.text

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)


@pytest.fixture
def server(chain: Chain, tmp_path: Path) -> Iterator[SServer]:
    s = SServer(chain, tmp_path)
    yield s
    s.close()


def policy_for(chain: Chain) -> PinPolicy:
    pins = [str(Pin.from_certificate(chain.ders[1])), str(Pin.from_certificate(chain.ders[2]))]
    return PinPolicy.from_mapping({"domains": [{"host": HOST, "pins": pins}]})


def test_create_pinned_context_refuses_renegotiation_like_the_grpc_contexts(chain: Chain) -> None:
    context = create_pinned_context(policy_for(chain))
    assert context.options & ssl.OP_NO_RENEGOTIATION


def assert_refused(server: SServer) -> None:
    # One handshake only: the client's ClientHello; the server's HelloRequest
    # got the no_renegotiation alert, and the server ended the connection.
    text = server.finish()
    assert "no_renegotiation" in text or "no renegotiation" in text, text
    assert text.count("ClientHello") == 1, text


def test_socket_refuses_a_renegotiation_after_the_pin_check(chain: Chain, server: SServer) -> None:
    context = create_pinned_context(policy_for(chain), cafile=server.cafile)
    with context.wrap_socket(socket.create_connection(("127.0.0.1", server.port)), server_hostname=HOST) as conn:
        assert conn.pin_result is not None and conn.pin_result.status == "match"  # type: ignore[attr-defined]
        conn.settimeout(5)
        server.renegotiate()
        assert conn.recv(100) == b"after\n"  # the HelloRequest came first: it was answered with the alert
        conn.sendall(b"ping\n")
        with pytest.raises(ssl.SSLError):  # a renegotiated connection would time out here instead
            conn.recv(100)
    assert_refused(server)


def test_asyncio_stream_refuses_a_renegotiation_after_the_pin_check(chain: Chain, server: SServer) -> None:
    context = create_pinned_context(policy_for(chain), cafile=server.cafile)

    async def talk() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port, ssl=context, server_hostname=HOST)
        try:
            obj = writer.get_extra_info("ssl_object")
            assert obj.pin_result is not None and obj.pin_result.status == "match"
            await asyncio.get_running_loop().run_in_executor(None, server.renegotiate)
            # asyncio reads eagerly: the HelloRequest is answered (and the
            # connection ended by the server) at once. A renegotiated
            # connection would stay open, and this would time out.
            received = b""
            with pytest.raises((ssl.SSLError, ConnectionError)):
                while True:
                    data = await asyncio.wait_for(reader.read(100), 5)
                    if not data:
                        raise ConnectionError(f"closed by the server after {received!r}")
                    received += data
            assert received in (b"", b"after\n")
        finally:
            writer.close()

    asyncio.run(talk())
    assert_refused(server)
