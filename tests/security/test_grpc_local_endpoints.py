"""No other process can use a pinned channel's relay (and the client certificate it holds).

On Linux the relay's local endpoints are abstract unix sockets: no file, but
also no permission bits, and their names are listed in /proc/net/unix for
every local user to read. So the relay checks every connection's peer
(SO_PEERCRED) and takes only connections from its own process; any other
process, of this user or another, is refused before anything is read or any
upstream connection is made. Elsewhere the endpoints are unix sockets in one
fresh directory that only this user can enter (0700). Where unix sockets are
not available they would be loopback TCP ports, which any local user can
reach: a channel holding a client key pair (mutual TLS) is then refused
rather than opened to every local user.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from typing import Iterator

import pytest

grpc = pytest.importorskip("grpc")

from pinengine import PinPolicy  # noqa: E402
from pinengine.hooks._relay import _loop  # noqa: E402
from pinengine.hooks.grpc import secure_channel  # noqa: E402
from tests.certs import Chain, cached_chain, key_pem, pem  # noqa: E402
from tests.grpc_server import UNARY, WHOAMI, GrpcServer  # noqa: E402
from tests.grpc_support import HOST, OVERRIDE, ROUND_ROBIN, TIMEOUT, pin, policy_for, roots  # noqa: E402


@pytest.fixture(scope="module")
def chain() -> Chain:
    return cached_chain("p256", HOST)


@pytest.fixture(scope="module")
def client() -> Chain:
    return cached_chain("p256", "pinned-client")


@pytest.fixture(scope="module")
def good(chain: Chain) -> PinPolicy:
    return policy_for(pin(chain.ders[1]), pin(chain.ders[0]))


@pytest.fixture(scope="module")
def mtls_server(chain: Chain, client: Chain) -> Iterator[GrpcServer]:
    with GrpcServer(chain, client_ca=pem(client.root)) as srv:
        yield srv


def mtls_channel(server: GrpcServer, chain: Chain, client: Chain, good: PinPolicy, **kwargs: object) -> object:
    return secure_channel(
        f"ipv4:127.0.0.1:{server.port},127.0.0.1:{server.port}", good, root_certificates=roots(chain),
        private_key=key_pem(client.leaf_key), certificate_chain=pem(client.leaf) + pem(client.intermediate),
        options=[ROUND_ROBIN, OVERRIDE], **kwargs,  # type: ignore[arg-type]
    )


CONNECT_FROM_ELSEWHERE = (
    "import os, socket, sys\n"
    "if sys.argv[2] == 'other-user':\n    os.setgid(65534); os.setuid(65534)\n"
    "s = socket.socket(socket.AF_UNIX)\n"
    "try:\n    s.connect(sys.argv[1].replace('@', '\\0', 1))\n"
    "except OSError as exc:\n    print('refused', type(exc).__name__); sys.exit()\n"
    "s.settimeout(10)\n"
    "try:\n    s.sendall(b'PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n')\n    data = s.recv(100)\n"
    "except (BrokenPipeError, ConnectionResetError):\n    data = b''\n"
    "print('closed' if data == b'' else 'answered')\n"
)


@pytest.mark.skipif(not _loop._ABSTRACT, reason="abstract unix sockets are Linux's")
@pytest.mark.parametrize("who", ["same-user", "other-user"])
def test_another_process_is_refused(
    mtls_server: GrpcServer, chain: Chain, client: Chain, good: PinPolicy, who: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    if who == "other-user" and (not hasattr(os, "setuid") or os.getuid() != 0):
        pytest.skip("needs root to act as another user")
    with mtls_channel(mtls_server, chain, client, good) as channel:  # type: ignore[attr-defined]
        relay = channel._relay
        assert relay.local_target.startswith("unix-abstract:")
        address = relay.local_address.replace("\0", "@", 1)
        out = subprocess.run([sys.executable, "-c", CONNECT_FROM_ELSEWHERE, address, who],
                             capture_output=True, text=True, timeout=30)
        assert out.stdout.strip() == "closed", out  # accepted by the kernel, closed by the relay unread
        assert channel.connection_attempts == 0  # no upstream connection was started for it
        assert "refused a local connection from another process" in caplog.text
        # this process is served (the control)
        assert channel.unary_unary(WHOAMI)(b"", timeout=TIMEOUT) == b"pinned-client"


def test_every_endpoint_is_in_one_private_directory(
    mtls_server: GrpcServer, chain: Chain, client: Chain, good: PinPolicy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_loop, "_ABSTRACT", False)  # as where there are no abstract sockets
    with mtls_channel(mtls_server, chain, client, good) as channel:  # type: ignore[attr-defined]
        relay = channel._relay
        assert relay.endpoints == 2 and relay.local_target == "unix:" + ",".join(relay.local_addresses)
        directories = {os.path.dirname(path) for path in relay.local_addresses}
        assert len(directories) == 1
        info = os.stat(directories.pop())
        assert stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid == os.getuid()
        assert channel.unary_unary(WHOAMI)(b"", timeout=TIMEOUT) == b"pinned-client"


@pytest.mark.skipif(not hasattr(os, "setuid") or os.getuid() != 0, reason="needs root to act as another user")
def test_another_user_cannot_enter_the_directory(
    mtls_server: GrpcServer, chain: Chain, client: Chain, good: PinPolicy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_loop, "_ABSTRACT", False)
    with mtls_channel(mtls_server, chain, client, good) as channel:  # type: ignore[attr-defined]
        path = channel._relay.local_address
        script = (
            "import os, socket, sys\n"
            "os.setgid(65534); os.setuid(65534)\n"
            "s = socket.socket(socket.AF_UNIX)\n"
            "try:\n    s.connect(sys.argv[1])\nexcept PermissionError:\n    print('refused')\n"
            "else:\n    print('connected')\n"
        )
        out = subprocess.run([sys.executable, "-c", script, path], capture_output=True, text=True, timeout=30)
        assert out.stdout.strip() == "refused", out
        # the same from this user works (the control)
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(path)
        assert channel.connections_refused == 0


def test_loopback_tcp_endpoints_refuse_a_client_certificate(
    mtls_server: GrpcServer, chain: Chain, client: Chain, good: PinPolicy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_loop, "_HAS_UNIX", False)  # as on a platform without unix sockets
    monkeypatch.setattr(_loop, "_ABSTRACT", False)
    with pytest.raises(ValueError, match="mutual TLS through a pinned relay needs unix domain sockets"):
        mtls_channel(mtls_server, chain, client, good)


def test_loopback_tcp_endpoints_without_a_client_certificate(
    chain: Chain, good: PinPolicy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_loop, "_HAS_UNIX", False)
    monkeypatch.setattr(_loop, "_ABSTRACT", False)
    with GrpcServer(chain) as srv:
        with secure_channel(f"{HOST}:{srv.port}", good, root_certificates=roots(chain)) as channel:
            assert channel._relay.local_target.startswith("ipv4:127.0.0.1:")
            assert channel.unary_unary(UNARY)(b"tcp", timeout=TIMEOUT) == b"tcp"
            host, port = channel._relay.local_address
            assert host == "127.0.0.1" and isinstance(port, int)  # loopback only
