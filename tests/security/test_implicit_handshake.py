"""Implicit handshakes: no application byte leaves or is returned before the pin decision.

OpenSSL runs a handshake that has not happened yet inside ``SSL_write`` /
``SSL_read``. A socket wrapped with ``do_handshake_on_connect=False`` and then
written to or read from, or an SSLObject used before ``do_handshake()``,
must still be checked before the first application byte moves, in both
directions: the unpinned server below records every byte it receives (and
must get none), and when it speaks first its greeting must never reach the
client. A refused connection stays refused on every later call.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import select
import socket
import ssl
import tempfile
from typing import Any, Callable

import pytest

from pinengine import Pin, PinMismatchError, PinPolicy
from pinengine.hooks.ssl import PinnedSSLContext, create_pinned_context
from tests.certs import Chain, cached_chain, make_chain
from tests.tls import RawRecorder, RecordingServer

HOST = "localhost"
SECRET = b"GET /account HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer s3cret-token\r\n\r\n"
GREETING = b"220 welcome: the server speaks first\r\n"
VERSIONS = [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3]


def pin(der: bytes) -> str:
    return str(Pin.from_certificate(der))


@pytest.fixture(scope="module")
def chain() -> Chain:
    return cached_chain("p256", HOST)


@pytest.fixture(scope="module")
def stranger() -> Chain:
    return make_chain("p256", HOST)


def context(srv: RecordingServer, keys: Chain) -> PinnedSSLContext:
    """A context trusting ``srv``'s CA that pins ``keys``: the server's own chain, or a stranger's (refused)."""
    pins = [pin(keys.ders[1]), pin(keys.ders[0])]
    policy = PinPolicy.from_mapping({"domains": [{"host": HOST, "pins": pins}]})
    return create_pinned_context(policy, cafile=srv.cafile)


def lazy_socket(ctx: ssl.SSLContext, srv: RecordingServer) -> ssl.SSLSocket:
    raw = socket.create_connection((srv.host, srv.port), timeout=10)
    return ctx.wrap_socket(raw, server_hostname=HOST, do_handshake_on_connect=False)


# -- the ways a socket sends and receives ------------------------------------


def _send_loop(s: ssl.SSLSocket) -> None:
    view = memoryview(SECRET)
    while view:
        view = view[s.send(view):]


def _sendfile(s: ssl.SSLSocket) -> None:
    with tempfile.TemporaryFile() as f:
        f.write(SECRET)
        f.seek(0)
        s.sendfile(f)


def _makefile_write(s: ssl.SSLSocket) -> None:
    with s.makefile("wb") as f:
        f.write(SECRET)
        f.flush()


SENDS: dict[str, Callable[[ssl.SSLSocket], Any]] = {
    "write": lambda s: s.write(SECRET),
    "send": _send_loop,
    "sendall": lambda s: s.sendall(SECRET),
    "sendfile": _sendfile,
    "makefile": _makefile_write,
}


def _recv_into(s: ssl.SSLSocket) -> bytes:
    buf = bytearray(200)
    return bytes(buf[: s.recv_into(buf)])


def _read_buffer(s: ssl.SSLSocket) -> bytes:
    buf = bytearray(200)
    return bytes(buf[: s.read(200, buf)])


RECEIVES: dict[str, Callable[[ssl.SSLSocket], bytes]] = {
    "read": lambda s: s.read(200),
    "read-buffer": _read_buffer,
    "recv": lambda s: s.recv(200),
    "recv_into": _recv_into,
    "makefile": lambda s: s.makefile("rb").readline(),
}


@pytest.mark.parametrize("version", VERSIONS, ids=["tls12", "tls13"])
@pytest.mark.parametrize("method", sorted(SENDS))
def test_send_before_handshake_reaches_no_unpinned_server(
    method: str, version: ssl.TLSVersion, chain: Chain, stranger: Chain
) -> None:
    with RecordingServer(chain, max_version=version) as srv:
        s = lazy_socket(context(srv, stranger), srv)
        with pytest.raises(PinMismatchError):
            SENDS[method](s)
        s.close()
        srv.wait(1)
        assert srv.received == b""


@pytest.mark.parametrize("version", VERSIONS, ids=["tls12", "tls13"])
@pytest.mark.parametrize("method", sorted(SENDS))
def test_send_before_handshake_reaches_the_pinned_server(
    method: str, version: ssl.TLSVersion, chain: Chain
) -> None:
    with RecordingServer(chain, max_version=version) as srv:
        s = lazy_socket(context(srv, chain), srv)
        SENDS[method](s)
        assert s.pin_result.status == "match"  # type: ignore[attr-defined]
        s.close()
        srv.wait(1)
        assert srv.received == SECRET


@pytest.mark.parametrize("version", VERSIONS, ids=["tls12", "tls13"])
@pytest.mark.parametrize("method", sorted(RECEIVES))
def test_unpinned_server_speaking_first_is_not_heard(
    method: str, version: ssl.TLSVersion, chain: Chain, stranger: Chain
) -> None:
    with RecordingServer(chain, greeting=GREETING, max_version=version) as srv:
        s = lazy_socket(context(srv, stranger), srv)
        got = b""
        with pytest.raises(PinMismatchError):
            got = RECEIVES[method](s)
        assert got == b""
        s.close()


@pytest.mark.parametrize("version", VERSIONS, ids=["tls12", "tls13"])
@pytest.mark.parametrize("method", sorted(RECEIVES))
def test_pinned_server_speaking_first_is_heard(method: str, version: ssl.TLSVersion, chain: Chain) -> None:
    with RecordingServer(chain, greeting=GREETING, max_version=version) as srv:
        s = lazy_socket(context(srv, chain), srv)
        assert GREETING.startswith(RECEIVES[method](s))
        assert s.pin_result.status == "match"  # type: ignore[attr-defined]
        s.close()


@pytest.mark.parametrize("mode", ["report-only", "expired", "not-pinned"])
def test_implicit_handshake_lets_allowed_connections_through(mode: str, chain: Chain, stranger: Chain) -> None:
    # the gate refuses only what the decision refuses: a report-only, expired or
    # unpinned host is decided on the first write and then goes on
    entry: dict[str, Any] = {"host": HOST if mode != "not-pinned" else "elsewhere.example",
                             "pins": [pin(stranger.ders[0]), pin(stranger.ders[1])]}
    if mode == "report-only":
        entry["mode"] = "report-only"
    if mode == "expired":
        entry["expires"] = "2020-01-01"
    with RecordingServer(chain) as srv:
        ctx = create_pinned_context(PinPolicy.from_mapping({"domains": [entry]}), cafile=srv.cafile)
        s = lazy_socket(ctx, srv)
        s.sendall(SECRET)
        assert s.pin_result.status == mode  # type: ignore[attr-defined]
        s.close()
        srv.wait(1)
        assert srv.received == SECRET


def test_connect_after_wrapping(chain: Chain, stranger: Chain) -> None:
    # wrap first, connect later (SSLSocket.connect), handshake left to the first write
    with RecordingServer(chain) as srv:
        s = context(srv, stranger).wrap_socket(
            socket.socket(), server_hostname=HOST, do_handshake_on_connect=False
        )
        s.settimeout(10)
        s.connect((srv.host, srv.port))
        with pytest.raises(PinMismatchError):
            s.sendall(SECRET)
        s.close()
        srv.wait(1)
        assert srv.received == b""


# -- a refused connection stays refused ----------------------------------------

LATER_CALLS: dict[str, Callable[[ssl.SSLSocket], Any]] = {
    **{f"send:{k}": v for k, v in SENDS.items() if k != "makefile"},
    **{f"recv:{k}": v for k, v in RECEIVES.items() if k != "makefile"},
    "do_handshake": lambda s: s.do_handshake(),
    "pending": lambda s: s.pending(),
    "unwrap": lambda s: s.unwrap(),
    "sendto": lambda s: s.sendto(SECRET, ("127.0.0.1", 9)),
    "recvfrom": lambda s: s.recvfrom(100),
    "recvfrom_into": lambda s: s.recvfrom_into(bytearray(100)),
}


@pytest.mark.parametrize("version", VERSIONS, ids=["tls12", "tls13"])
def test_refused_socket_stays_refused(version: ssl.TLSVersion, chain: Chain, stranger: Chain) -> None:
    with RecordingServer(chain, greeting=GREETING, max_version=version) as srv:
        s = lazy_socket(context(srv, stranger), srv)
        with pytest.raises(PinMismatchError):
            s.sendall(SECRET)
        for call in LATER_CALLS.values():
            with pytest.raises(PinMismatchError, match="refused by its pin check"):
                call(s)
        s.close()
        srv.wait(1)
        assert srv.received == b""


@pytest.mark.parametrize("version", VERSIONS, ids=["tls12", "tls13"])
def test_refusal_holds_while_a_makefile_keeps_the_socket_open(
    version: ssl.TLSVersion, chain: Chain, stranger: Chain
) -> None:
    # socket.close() does not close while a makefile() holds the socket, so
    # the SSL object lives on: the refusal must hold through the file too.
    with RecordingServer(chain, greeting=GREETING, max_version=version) as srv:
        s = lazy_socket(context(srv, stranger), srv)
        f = s.makefile("rwb")
        f.write(SECRET)
        with pytest.raises(PinMismatchError):
            f.flush()
        for _ in range(2):
            with pytest.raises(PinMismatchError):
                f.flush()
            with pytest.raises(PinMismatchError):
                f.read(10)
            with pytest.raises(PinMismatchError):
                s.sendall(SECRET)
            with pytest.raises(PinMismatchError):
                s.recv(10)
        srv.wait(1)  # the TCP connection ended although the file is still open
        assert srv.received == b""
        with contextlib.suppress(OSError):
            f.close()


def test_no_plaintext_after_shutting_down_an_unchecked_socket(stranger: Chain) -> None:
    # SSLSocket.shutdown() drops the TLS layer; the ssl module then sends and
    # receives in plaintext. On a connection never checked that must not happen.
    with RawRecorder() as rec:
        policy = PinPolicy.from_mapping(
            {"domains": [{"host": HOST, "pins": [pin(stranger.ders[0]), pin(stranger.ders[1])]}]}
        )
        ctx = create_pinned_context(policy)
        raw = socket.create_connection((rec.host, rec.port), timeout=10)
        s = ctx.wrap_socket(raw, server_hostname=HOST, do_handshake_on_connect=False)
        s.shutdown(socket.SHUT_RD)
        for call in (lambda: s.sendall(SECRET), lambda: s.send(SECRET), lambda: s.sendto(SECRET, ("127.0.0.1", 9)),
                     lambda: s.recv(10), lambda: s.recv_into(bytearray(10))):
            with pytest.raises(ValueError, match="shut down before its pin check"):
                call()
        s.close()
        assert b"s3cret" not in rec.received


# -- non-blocking sockets --------------------------------------------------------


def _drive(s: ssl.SSLSocket, call: Callable[[], Any]) -> Any:
    """Repeat a non-blocking call until it completes, waiting on the socket as OpenSSL asks."""
    for _ in range(1000):
        try:
            return call()
        except ssl.SSLWantReadError:
            select.select([s], [], [], 5)
        except ssl.SSLWantWriteError:
            select.select([], [s], [], 5)
    raise AssertionError("the non-blocking call never completed")


def _nonblocking(ctx: ssl.SSLContext, srv: RecordingServer) -> ssl.SSLSocket:
    raw = socket.create_connection((srv.host, srv.port), timeout=10)
    raw.setblocking(False)
    return ctx.wrap_socket(raw, server_hostname=HOST, do_handshake_on_connect=False)


@pytest.mark.parametrize("version", VERSIONS, ids=["tls12", "tls13"])
@pytest.mark.parametrize("pinned", [False, True], ids=["unpinned", "pinned"])
def test_nonblocking_handshake_started_by_send_completed_by_recv(
    pinned: bool, version: ssl.TLSVersion, chain: Chain, stranger: Chain
) -> None:
    with RecordingServer(chain, greeting=GREETING, max_version=version, hold=True) as srv:
        s = _nonblocking(context(srv, chain if pinned else stranger), srv)
        # the first send only starts the handshake (ClientHello out, the server holds its answer)
        with pytest.raises((ssl.SSLWantReadError, ssl.SSLWantWriteError)):
            s.send(SECRET)
        srv.release()
        if pinned:
            assert _drive(s, lambda: s.recv(200)) == GREETING
            _drive(s, lambda: s.sendall(SECRET))
        else:
            with pytest.raises(PinMismatchError):
                _drive(s, lambda: s.recv(200))
            with pytest.raises(PinMismatchError):
                s.send(SECRET)
        s.close()
        srv.wait(1)
        assert srv.received == (SECRET if pinned else b"")


@pytest.mark.parametrize("version", VERSIONS, ids=["tls12", "tls13"])
@pytest.mark.parametrize("pinned", [False, True], ids=["unpinned", "pinned"])
def test_nonblocking_handshake_by_send_alone(
    pinned: bool, version: ssl.TLSVersion, chain: Chain, stranger: Chain
) -> None:
    with RecordingServer(chain, max_version=version) as srv:
        s = _nonblocking(context(srv, chain if pinned else stranger), srv)
        if pinned:
            _drive(s, lambda: s.sendall(SECRET))
        else:
            with pytest.raises(PinMismatchError):
                _drive(s, lambda: s.sendall(SECRET))
        s.close()
        srv.wait(1)
        assert srv.received == (SECRET if pinned else b"")


# -- SSLObject over memory BIOs, driven by hand ---------------------------------


class BioClient:
    """A hand-made client: an SSLObject over memory BIOs, its bytes carried over a blocking socket.

    Like a careless relay it flushes the outgoing BIO after every call, even
    one that raised, so anything the SSLObject produced reaches the server.
    """

    def __init__(self, ctx: ssl.SSLContext, srv: RecordingServer) -> None:
        self.sock = socket.create_connection((srv.host, srv.port), timeout=10)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.incoming, self.outgoing, server_hostname=HOST)

    def call(self, fn: Callable[[], Any]) -> Any:
        while True:
            try:
                return fn()
            except ssl.SSLWantReadError:
                self._flush()
                chunk = self.sock.recv(65536)
                if not chunk:
                    self.incoming.write_eof()
                else:
                    self.incoming.write(chunk)
            finally:
                self._flush()

    def _flush(self) -> None:
        data = self.outgoing.read()
        if data:
            self.sock.sendall(data)

    def close(self) -> None:
        self.sock.close()


OBJECT_LATER_CALLS: dict[str, Callable[[ssl.SSLObject], Any]] = {
    "read": lambda t: t.read(100),
    "read-buffer": lambda t: t.read(100, bytearray(100)),
    "write": lambda t: t.write(SECRET),
    "do_handshake": lambda t: t.do_handshake(),
    "pending": lambda t: t.pending(),
    "unwrap": lambda t: t.unwrap(),
}


@pytest.mark.parametrize("version", VERSIONS, ids=["tls12", "tls13"])
@pytest.mark.parametrize("pinned", [False, True], ids=["unpinned", "pinned"])
def test_sslobject_write_before_handshake(
    pinned: bool, version: ssl.TLSVersion, chain: Chain, stranger: Chain
) -> None:
    with RecordingServer(chain, max_version=version) as srv:
        client = BioClient(context(srv, chain if pinned else stranger), srv)
        if pinned:
            assert client.call(lambda: client.tls.write(SECRET)) == len(SECRET)
        else:
            with pytest.raises(PinMismatchError):
                client.call(lambda: client.tls.write(SECRET))
            for later in OBJECT_LATER_CALLS.values():
                with pytest.raises(PinMismatchError, match="refused by its pin check"):
                    client.call(functools.partial(later, client.tls))
        client.close()
        srv.wait(1)
        assert srv.received == (SECRET if pinned else b"")


@pytest.mark.parametrize("version", VERSIONS, ids=["tls12", "tls13"])
@pytest.mark.parametrize("pinned", [False, True], ids=["unpinned", "pinned"])
def test_sslobject_read_before_handshake(
    pinned: bool, version: ssl.TLSVersion, chain: Chain, stranger: Chain
) -> None:
    with RecordingServer(chain, greeting=GREETING, max_version=version) as srv:
        client = BioClient(context(srv, chain if pinned else stranger), srv)
        if pinned:
            assert client.call(lambda: client.tls.read(200)) == GREETING
        else:
            got = b""
            with pytest.raises(PinMismatchError):
                got = client.call(lambda: client.tls.read(200))
            assert got == b""
            with pytest.raises(PinMismatchError):
                client.call(lambda: client.tls.read(200))
        client.close()


# -- asyncio ---------------------------------------------------------------------


class _Collect(asyncio.Protocol):
    def __init__(self) -> None:
        self.data = bytearray()
        self.more = asyncio.Event()

    def data_received(self, data: bytes) -> None:
        self.data += data
        self.more.set()


async def _open_connection(srv: RecordingServer, ctx: ssl.SSLContext) -> bytes:
    reader, writer = await asyncio.open_connection(srv.host, srv.port, ssl=ctx, server_hostname=HOST)
    try:
        greeting = await asyncio.wait_for(reader.readline(), 10)
        writer.write(SECRET)
        await writer.drain()
        return greeting
    finally:
        writer.close()


async def _start_tls(srv: RecordingServer, ctx: ssl.SSLContext) -> bytes:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_connection(_Collect, srv.host, srv.port)
    try:
        tls = await loop.start_tls(transport, proto, ctx, server_hostname=HOST)
    except BaseException:
        transport.close()
        raise
    assert tls is not None
    try:
        while not proto.data.endswith(b"\n"):
            proto.more.clear()
            await asyncio.wait_for(proto.more.wait(), 10)
        tls.write(SECRET)
        return bytes(proto.data)
    finally:
        tls.close()


async def _by_hand(srv: RecordingServer, ctx: ssl.SSLContext) -> bytes:
    # an SSLObject written to before its handshake, its bytes carried by asyncio streams
    reader, writer = await asyncio.open_connection(srv.host, srv.port)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=HOST)

    async def call(fn: Callable[[], Any]) -> Any:
        while True:
            try:
                return fn()
            except ssl.SSLWantReadError:
                writer.write(outgoing.read())
                await writer.drain()
                chunk = await asyncio.wait_for(reader.read(65536), 10)
                incoming.write(chunk) if chunk else incoming.write_eof()
            finally:
                writer.write(outgoing.read())  # careless: flushed even after an error

    try:
        await call(lambda: tls.write(SECRET))
        return bytes(await call(lambda: tls.read(200)))
    finally:
        await writer.drain()
        writer.close()


ASYNC_PATHS = {"open_connection": _open_connection, "start_tls": _start_tls, "wrap_bio": _by_hand}


@pytest.mark.parametrize("version", VERSIONS, ids=["tls12", "tls13"])
@pytest.mark.parametrize("path", sorted(ASYNC_PATHS))
def test_asyncio_unpinned_server(path: str, version: ssl.TLSVersion, chain: Chain, stranger: Chain) -> None:
    with RecordingServer(chain, greeting=GREETING, max_version=version) as srv:
        got = b""
        with pytest.raises(PinMismatchError):
            got = asyncio.run(ASYNC_PATHS[path](srv, context(srv, stranger)))
        assert got == b""
        srv.wait(1)
        assert srv.received == b""


@pytest.mark.parametrize("version", VERSIONS, ids=["tls12", "tls13"])
@pytest.mark.parametrize("path", sorted(ASYNC_PATHS))
def test_asyncio_pinned_server(path: str, version: ssl.TLSVersion, chain: Chain) -> None:
    with RecordingServer(chain, greeting=GREETING, max_version=version) as srv:
        assert asyncio.run(ASYNC_PATHS[path](srv, context(srv, chain))) == GREETING
        srv.wait(1)
        assert srv.received == SECRET


def test_a_check_that_cannot_run_refuses_in_asyncio_too(chain: Chain) -> None:
    # A failure inside the check that is not a pin mismatch (here a policy
    # whose lookup breaks) must still reach asyncio as a TLS error and refuse.
    class Broken(PinPolicy):
        def verify(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("the policy broke")

    with RecordingServer(chain, greeting=GREETING) as srv:
        ctx = create_pinned_context(Broken(), cafile=srv.cafile)
        with pytest.raises(PinMismatchError, match="the policy broke"):
            asyncio.run(_open_connection(srv, ctx))
        client = BioClient(ctx, srv)
        with pytest.raises(PinMismatchError, match="the policy broke"):
            client.call(lambda: client.tls.write(SECRET))
        client.close()
        s = lazy_socket(ctx, srv)
        with pytest.raises(PinMismatchError, match="the policy broke"):
            s.sendall(SECRET)
        s.close()
        srv.wait(3)
        assert srv.received == b""
