"""No silent drops: every channel option and target is honoured, passed on to grpc, or refused at creation.

A refused option or target raises ValueError (TypeError for a wrong type)
naming it and saying why, before any thread or socket exists. Options that
go to grpc are shown to reach it (an effect a server can see), and the
channel presents itself to servers as grpc's TLS channels do (``:scheme
https``, the target's ``:authority``).
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
from typing import Any, Iterator

import pytest

grpc = pytest.importorskip("grpc")

from pinengine import PinPolicy  # noqa: E402
from pinengine.hooks.grpc import secure_channel  # noqa: E402
from pinengine.hooks.grpc._options import REFUSED, read_options  # noqa: E402
from tests.certs import Chain, key_pem, pem  # noqa: E402
from tests.grpc_server import METADATA, UNARY, GrpcServer  # noqa: E402
from tests.grpc_support import HOST, TIMEOUT, pin, policy_for, roots, rpc_error  # noqa: E402


@pytest.fixture(scope="module")
def good(chain: Chain) -> PinPolicy:
    return policy_for(pin(chain.ders[1]), pin(chain.ders[0]))


@pytest.fixture(scope="module")
def server(chain: Chain) -> Iterator[GrpcServer]:
    with GrpcServer(chain) as srv:
        yield srv


def relay_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("pinengine-grpc")]


# -- refused ---------------------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(REFUSED))
def test_each_refused_option_is_an_error_naming_it(key: str, good: PinPolicy) -> None:
    before = len(relay_threads())
    with pytest.raises(ValueError, match=f"channel option '{key}' is not supported by pinned channels: "):
        secure_channel(f"{HOST}:1", good, options=[(key, 1)])
    assert len(relay_threads()) == before  # nothing was started


@pytest.mark.parametrize(
    ("option", "problem"),
    [
        (("grpc.dns_enable_srv_queries", 1), "SRV lookups"),
        (("grpc.service_config_disable_resolution", 0), "service configs from DNS TXT records"),
        (("grpc.lb_policy_name", "grpclb"), "load-balancing policy 'grpclb' is not supported"),
        (("grpc.service_config", json.dumps({"loadBalancingConfig": [{"xds_cluster_manager_experimental": {}}]})),
         "needs grpc's own resolver"),
        (("grpc.service_config", json.dumps({"loadBalancingConfig": [{"rls_experimental": {}}]})),
         "needs grpc's own resolver"),
        (("grpc.service_config", "{not json"), "not valid JSON"),
        (("grpc.service_config", "[]"), "must be a JSON object"),
        (("grpc.service_config", "[" * 100_000 + "]" * 100_000), "not valid JSON"),  # too deep for the parser
        (("grpc.service_config", " " * 300_000 + "{}"), "over 262144 characters"),
        (("grpc.dscp", 64), "between 0 and 63"),
        (("grpc.dns_min_time_between_resolutions_ms", -1), "between 0 and"),
    ],
)
def test_options_a_pinned_channel_cannot_honour(option: tuple[str, Any], problem: str, good: PinPolicy) -> None:
    with pytest.raises(ValueError, match=problem):
        secure_channel(f"{HOST}:1", good, options=[option])


def test_options_it_can_honour_with_those_values(good: PinPolicy) -> None:
    plan = read_options([("grpc.dns_enable_srv_queries", 0), ("grpc.service_config_disable_resolution", 1),
                         ("grpc.dscp", 46), ("grpc.tcp_receive_buffer_size", 1 << 20),
                         ("grpc.dns_min_time_between_resolutions_ms", 1500), ("grpc.dns_ares_query_timeout", 0)])
    assert (socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20) in plan.socket_options
    assert (socket.IPPROTO_IP, socket.IP_TOS, 46 << 2) in plan.socket_options
    assert plan.min_resolve_interval == 1.5 and plan.resolve_timeout == 120.0  # 0: grpc's "no overall timeout"


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ([("grpc.dscp", "46")], TypeError),
        ([("grpc.http_proxy", 3128)], TypeError),
        ([("grpc.ssl_target_name_override", 1)], TypeError),
        ([("grpc.max_receive_message_length",)], TypeError),
        (["grpc.enable_retries"], TypeError),
    ],
)
def test_malformed_options(options: Any, error: type[Exception], good: PinPolicy) -> None:
    with pytest.raises(error):
        secure_channel(f"{HOST}:1", good, options=options)


@pytest.mark.parametrize(
    ("target", "problem"),
    [
        ("xds:///svc.example", "the 'xds' resolver"),
        ("xds:svc.example", "the 'xds' resolver"),
        ("google-c2p:///svc.example", "Google's direct path"),
        ("vsock:3:50051", "the 'vsock' resolver"),
        ("dns://8.8.8.8/api.example.com", "a DNS server in the target"),
        ("custom:///name", "the 'custom' resolver is not supported"),
        ("ipv4:1.2.3.4:5,not-an-ip:6", "not a literal IP address"),
        ("", "invalid gRPC target"),
        ("a" * 5000, "over 4096 characters"),
        ("host:99999", "port out of range"),
    ],
)
def test_targets_a_pinned_channel_cannot_honour(target: str, problem: str, good: PinPolicy) -> None:
    with pytest.raises(ValueError, match=problem):
        secure_channel(target, good)


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), "5", True])
def test_connect_timeout_must_be_a_positive_number(timeout: Any, good: PinPolicy) -> None:
    with pytest.raises(ValueError, match="connect_timeout"):
        secure_channel(f"{HOST}:1", good, connect_timeout=timeout)


def test_grpc_ssl_cipher_suites(good: PinPolicy, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRPC_SSL_CIPHER_SUITES", "NO-SUCH-CIPHER")
    with pytest.raises(ValueError, match="GRPC_SSL_CIPHER_SUITES"):
        secure_channel(f"{HOST}:1", good)
    monkeypatch.setenv("GRPC_SSL_CIPHER_SUITES", "ECDHE-ECDSA-AES128-GCM-SHA256")
    with secure_channel(f"{HOST}:1", good) as channel:
        tls12 = {c["name"] for c in channel._relay.context.get_ciphers() if c["protocol"] == "TLSv1.2"}
        assert tls12 == {"ECDHE-ECDSA-AES128-GCM-SHA256"}


# -- passed to grpc, and seen to reach it -------------------------------------------------------


def test_options_passed_to_grpc_take_effect(server: GrpcServer, chain: Chain, good: PinPolicy) -> None:
    options = [("grpc.max_receive_message_length", 1000), ("grpc.primary_user_agent", "pinned-test-agent/1")]
    with secure_channel(f"{HOST}:{server.port}", good, root_certificates=roots(chain), options=options) as channel:
        err = rpc_error(lambda: channel.unary_unary(UNARY)(b"x" * 5000, timeout=TIMEOUT))
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # grpc's own limit, end to end
        metadata = channel.unary_unary(METADATA)(b"", timeout=TIMEOUT).decode()
    assert "user-agent=pinned-test-agent/1" in metadata


def test_bytes_override(server: GrpcServer, chain: Chain, good: PinPolicy) -> None:
    with secure_channel(f"127.0.0.1:{server.port}", good, root_certificates=roots(chain),
                        options=[("grpc.ssl_target_name_override", HOST.encode())]) as channel:
        assert channel.unary_unary(UNARY)(b"b", timeout=TIMEOUT) == b"b"


# -- what the server sees ------------------------------------------------------------------------


class _HeaderSniffer:
    """A TLS server (ALPN h2) that reads a client's first HTTP/2 HEADERS block, then hangs up."""

    def __init__(self, chain: Chain, tmp: Any) -> None:
        (tmp / "c.pem").write_bytes(pem(chain.leaf) + pem(chain.intermediate))
        (tmp / "k.pem").write_bytes(key_pem(chain.leaf_key))
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(str(tmp / "c.pem"), str(tmp / "k.pem"))
        self.context.set_alpn_protocols(["h2"])
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.blocks: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            try:
                self._read_headers(conn)
            except (OSError, ssl.SSLError):
                conn.close()

    def _read_headers(self, conn: socket.socket) -> None:
        with self.context.wrap_socket(conn, server_side=True) as tls:
            tls.settimeout(5)
            tls.sendall(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")  # SETTINGS (empty)
            data = b""
            while len(data) < 24:
                data += tls.recv(65536)
            data = data[24:]  # the client preface
            while True:
                while len(data) < 9:
                    data += tls.recv(65536)
                length = int.from_bytes(data[:3], "big")
                kind, flags = data[3], data[4]
                while len(data) < 9 + length:
                    data += tls.recv(65536)
                payload, data = data[9:9 + length], data[9 + length:]
                if kind == 4 and not flags & 1:
                    tls.sendall(b"\x00\x00\x00\x04\x01\x00\x00\x00\x00")  # SETTINGS ACK
                if kind == 1:
                    self.blocks.append(payload)
                    return

    def close(self) -> None:
        self.listener.close()


def test_the_server_sees_a_tls_channel(chain: Chain, good: PinPolicy, tmp_path: Any) -> None:
    # HPACK's static table: 0x83 is ":method: POST", 0x86 ":scheme: http", 0x87 ":scheme: https"
    # (grpc sends them indexed, one after the other).
    sniffer = _HeaderSniffer(chain, tmp_path)
    try:
        with grpc.secure_channel(f"{HOST}:{sniffer.port}", grpc.ssl_channel_credentials(roots(chain))) as plain:
            rpc_error(lambda: plain.unary_unary(UNARY)(b"", timeout=2))
        with secure_channel(f"{HOST}:{sniffer.port}", good, root_certificates=roots(chain)) as channel:
            rpc_error(lambda: channel.unary_unary(UNARY)(b"", timeout=2))
    finally:
        sniffer.close()
    assert len(sniffer.blocks) == 2
    reference, pinned = sniffer.blocks
    assert b"\x83\x87" in reference and b"\x83\x86" not in reference  # grpc's own TLS channel
    assert b"\x83\x87" in pinned and b"\x83\x86" not in pinned
    assert f"{HOST}:{sniffer.port}".encode() in pinned  # :authority: the target, not the local socket
