"""A private local TLS relay: plaintext in on a local socket, pinned TLS out to the real server.

``TLSRelay`` listens on a unix domain socket in a fresh 0700 directory
(loopback TCP where unix sockets are unavailable). For every local connection
it accepts, it resolves the upstream target again, connects (trying each
address in turn), performs TLS with a pinned context (``create_pinned_context``:
its SSL objects check the pins inside ``do_handshake``) and only when that
succeeded starts relaying bytes both ways. A connection whose upstream cannot
be made (refused, TLS failure, pin mismatch) is closed before a single byte
of it is read, so the client on the local side sees a dead transport.

TLS runs over memory BIOs (``ssl.MemoryBIO`` / ``SSLObject``): the relay
does the socket I/O itself, one ``recv`` per readiness event however many
TLS records arrived, and nothing it produced is sent unless it decides so. A
refused handshake sends nothing after the pin check: under TLS 1.3 the
client's certificate (mutual TLS) and Finished never leave the process.

The relay runs in one thread per ``TLSRelay`` (a level-triggered epoll loop over
every connection pair); connects and handshakes run in short-lived worker
threads so a slow server never stalls established connections. ``close()``
stops everything and removes the socket and its directory.

This module knows no protocol above TLS: the caller gives a ``label`` that
names its log lines, threads and socket directory, and the ALPN protocol the
server must select (``pinengine.hooks.grpc`` builds on it).
"""

from __future__ import annotations

import errno
import logging
import mmap
import os
import select
import selectors
import shutil
import socket
import ssl
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Sequence

from .._errors import PinMismatchError
from ..policy import VerificationResult
from .ssl import PinnedSSLObject

__all__ = ["ConnectFailure", "TLSRelay", "Upstream"]

log = logging.getLogger("pinengine")

# Per relay: one receive buffer and one plaintext buffer, reused by its
# loop. 256 KiB moves bulk data in few system calls (it measured clearly
# better than 64 KiB for 64 KiB messages); the buffers are anonymous memory
# maps, so only the pages a channel's traffic touches become resident.
_BUFFER = 256 * 1024
_HAS_UNIX = hasattr(socket, "AF_UNIX") and sys.platform != "win32"


@dataclass(frozen=True)
class Upstream:
    """Where the relay connects: ``addresses`` (tried in order) or a ``host``/``port`` to resolve.

    ``server_hostname`` is the name sent as SNI, checked against the
    certificate and used to choose the pin entry. ``unix_path`` makes the
    upstream a unix domain socket (TLS over it).
    """

    host: str
    port: int
    server_hostname: str
    addresses: tuple[tuple[Any, ...], ...] = ()  # (family, sockaddr) pairs; empty: resolve host
    unix_path: str | None = None

    def describe(self) -> str:
        if self.unix_path is not None:
            return f"unix:{self.unix_path}"
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def resolve(self) -> list[tuple[int, Any]]:
        """Every address to try, in order: (family, sockaddr)."""
        if self.unix_path is not None:
            return [(socket.AF_UNIX, self.unix_path)]
        if self.addresses:
            return list(self.addresses)
        infos = socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        seen: list[tuple[int, Any]] = []
        for family, _type, _proto, _name, sockaddr in infos:
            item = (family, sockaddr)
            if item not in seen:
                seen.append(item)
        return seen


@dataclass(frozen=True)
class ConnectFailure:
    """Why the latest upstream connection could not be made.

    ``kind`` is ``"pin"`` (PinMismatchError), ``"certificate"`` (validation
    failed: untrusted, expired, wrong name), ``"tls"`` (another handshake
    failure, e.g. no ALPN h2) or ``"connect"`` (resolution or TCP).
    """

    kind: str
    hostname: str
    peer: str
    error: BaseException
    when: float

    @property
    def summary(self) -> str:
        """One line naming the failure and the host."""
        if self.kind == "pin":
            lines = [line.strip() for line in str(self.error).splitlines() if line.strip()]
            reason = lines[1] if len(lines) > 1 else (lines[0] if lines else "no pin matched")
            return (
                f"pin verification failed for {self.hostname} ({self.peer}): {reason} "
                "The chain's pins and the configured pins are in the 'pinengine' log."
            )
        if self.kind == "certificate":
            return f"TLS certificate verification failed for {self.hostname} ({self.peer}): {self.error}"
        if self.kind == "tls":
            return f"TLS handshake with {self.hostname} ({self.peer}) failed: {self.error}"
        return f"connection to {self.hostname} ({self.peer}) failed: {self.error}"


class _Poller:
    """Level-triggered readiness for the relay loop: epoll where there is one, else ``selectors``.

    ``targets`` maps each registered fd to its data; ``poll()`` returns
    ``(fd, events)`` pairs with READ / WRITE / ERROR bits.
    """

    def __init__(self) -> None:
        self.targets: dict[int, Any] = {}
        epoll = getattr(select, "epoll", None)
        if epoll is not None:
            self._epoll = epoll()
            self.READ, self.WRITE = select.EPOLLIN, select.EPOLLOUT
            self.ERROR = select.EPOLLERR | select.EPOLLHUP
            self.poll = self._epoll.poll  # type: ignore[method-assign]
            self._sel = None
        else:  # pragma: no cover - not Linux
            self._epoll = None
            self._sel = selectors.DefaultSelector()
            self.READ, self.WRITE, self.ERROR = selectors.EVENT_READ, selectors.EVENT_WRITE, 0

    def poll(self) -> list[tuple[int, int]]:  # pragma: no cover - not Linux
        assert self._sel is not None
        return [(key.fd, events) for key, events in self._sel.select()]

    def register(self, sock: Any, mask: int, data: Any) -> None:
        fd = sock.fileno()
        if self._epoll is not None:
            self._epoll.register(fd, mask)
        else:  # pragma: no cover
            self._sel.register(fd, mask)  # type: ignore[union-attr]
        self.targets[fd] = data

    def unregister(self, sock: Any) -> None:
        fd = sock.fileno()
        if fd < 0 or self.targets.pop(fd, _MISSING) is _MISSING:
            return
        try:
            if self._epoll is not None:
                self._epoll.unregister(fd)
            else:  # pragma: no cover
                self._sel.unregister(fd)  # type: ignore[union-attr]
        except (KeyError, OSError, ValueError):
            pass

    def set_mask(self, sock: Any, old: int, new: int, data: Any) -> None:
        """Change what ``sock`` waits for; a socket waiting for nothing is unregistered."""
        if not new:
            self.unregister(sock)
        elif not old:
            self.register(sock, new, data)
        elif self._epoll is not None:
            self._epoll.modify(sock.fileno(), new)
        else:  # pragma: no cover
            self._sel.modify(sock.fileno(), new)  # type: ignore[union-attr]

    def close(self) -> None:
        self.targets.clear()
        try:
            (self._epoll or self._sel).close()  # type: ignore[union-attr]
        except (OSError, ValueError, RuntimeError):
            pass


_MISSING = object()


def _close_quietly(sock: Any) -> None:
    try:
        sock.close()
    except OSError:
        pass


class _Pair:
    """One relayed connection: the local plaintext socket and the upstream TLS connection."""

    __slots__ = ("local", "sock", "tls", "incoming", "outgoing", "fd", "to_local", "to_remote",
                 "remote_eof", "local_mask", "remote_mask", "closed")

    def __init__(self, local: socket.socket, upstream: _TLSConnection) -> None:
        self.local = local
        self.sock = upstream.sock  # the TCP (or unix) socket to the server, non-blocking
        # The SSLObject over memory BIOs; its ``_sslobj`` (the C object the
        # public read/write wrap) where there is one: one Python frame less
        # per call on the relay's hot path.
        self.tls = getattr(upstream.tls, "_sslobj", None) or upstream.tls
        self.incoming = upstream.incoming
        self.outgoing = upstream.outgoing
        self.fd = local.fileno()
        self.to_local = b""  # decrypted, not yet taken by the local socket
        self.to_remote = b""  # encrypted, not yet taken by the upstream socket
        self.remote_eof = False
        self.local_mask = 0
        self.remote_mask = 0
        self.closed = False


class _TLSConnection:
    """An upstream connection whose handshake (and pin check) passed."""

    __slots__ = ("sock", "tls", "incoming", "outgoing")

    def __init__(self, sock: socket.socket, tls: ssl.SSLObject, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO):
        self.sock = sock
        self.tls = tls
        self.incoming = incoming
        self.outgoing = outgoing

    def close(self) -> None:
        _close_quietly(self.sock)


def _handshake(sock: socket.socket, tls: ssl.SSLObject, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO) -> None:
    """Drive a client handshake over a blocking socket (its timeout bounds each step).

    What the last step produced (the client's Finished, and under TLS 1.3
    its certificate) is sent only if ``do_handshake`` returned: when the pin
    check inside it raises, it stays in the BIO and is thrown away.
    """
    while True:
        try:
            tls.do_handshake()
        except ssl.SSLWantReadError:
            data = outgoing.read()
            if data:
                sock.sendall(data)
            chunk = sock.recv(_BUFFER)
            if not chunk:
                raise ConnectionResetError(
                    errno.ECONNRESET, "the server closed the connection during the TLS handshake"
                ) from None
            incoming.write(chunk)
            continue
        data = outgoing.read()
        if data:
            sock.sendall(data)
        return


class TLSRelay:
    """Listens locally; each accepted connection becomes a pinned TLS connection to ``upstream``.

    ``label`` names the relay's thread, log lines and socket directory.
    ``context`` is a pinned ``ssl.SSLContext`` (from ``create_pinned_context``,
    with ALPN and any client certificate already set). ``require_alpn``: the
    protocol the server must select (None: no requirement). Every attempt's
    outcome is counted (``accepted``, ``established``, ``refused``); the
    latest failure is ``last_failure`` until an attempt succeeds.
    """

    def __init__(
        self,
        upstream: Upstream,
        context: ssl.SSLContext,
        *,
        require_alpn: str | None = None,
        connect_timeout: float = 20.0,
        label: str = "pinengine-relay",
    ) -> None:
        self.upstream = upstream
        self.context = context
        self.require_alpn = require_alpn
        self.connect_timeout = connect_timeout
        self.label = label
        self.accepted = 0  # local connections accepted (each one an upstream attempt)
        self.established = 0  # upstream connections that passed TLS and the pin check
        self.refused = 0  # attempts that failed (any reason)
        self.last_failure: ConnectFailure | None = None  # cleared by the next success
        self.last_result: VerificationResult | None = None

        self._lock = threading.Lock()
        self._closed = False
        self._pending: deque[tuple[socket.socket, _TLSConnection | None]] = deque()
        self._workers: dict[threading.Thread, list[Any]] = {}  # worker -> [socket in progress or None]
        self._pairs: dict[int, _Pair] = {}  # by local fd
        self._waiting: set[socket.socket] = set()  # accepted, upstream handshake in progress
        self._dir: str | None = None
        self._listener: socket.socket | None = None
        self._poller = _Poller()
        self._buf = mmap.mmap(-1, _BUFFER)
        self._view = memoryview(self._buf)
        self._plain = mmap.mmap(-1, _BUFFER)
        self._plain_view = memoryview(self._plain)
        self._wake_r, self._wake_w = socket.socketpair()
        try:
            self._wake_r.setblocking(False)
            self._wake_w.setblocking(False)
            self._listener, self.local_target, self.local_address = self._listen()
            self._listener.setblocking(False)
            self._poller.register(self._wake_r, self._poller.READ, None)
            self._poller.register(self._listener, self._poller.READ, None)
            self._thread = threading.Thread(target=self._run, name=f"{label} {upstream.describe()}", daemon=True)
            self._thread.start()
        except BaseException:
            self._closed = True
            self._cleanup()
            raise

    # -- local endpoint ---------------------------------------------------

    def _listen(self) -> tuple[socket.socket, str, Any]:
        if _HAS_UNIX:
            # A fresh directory only this user can enter: no other local user
            # can connect to the tunnel (and borrow a client certificate).
            d = tempfile.mkdtemp(prefix=f"{_safe(self.label)}-")
            path = os.path.join(d, "s")
            if len(path.encode()) >= 100:  # sun_path holds 104-108 bytes; TMPDIR may be long
                shutil.rmtree(d, ignore_errors=True)
                d = tempfile.mkdtemp(prefix="pe-", dir="/tmp")
                path = os.path.join(d, "s")
            self._dir = d
            os.chmod(d, 0o700)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.bind(path)
                sock.listen(64)
            except BaseException:
                sock.close()
                raise
            return sock, f"unix:{path}", path
        sock = socket.create_server(("127.0.0.1", 0), backlog=64)
        port = sock.getsockname()[1]
        return sock, f"127.0.0.1:{port}", ("127.0.0.1", port)

    @property
    def is_unix(self) -> bool:
        """Whether the local endpoint is a unix socket (else loopback TCP)."""
        return self._dir is not None or (self.local_target or "").startswith("unix:")

    local_target: str = ""
    local_address: Any = None

    # -- public -----------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def active_connections(self) -> int:
        """Relayed connection pairs currently open."""
        return len(self._pairs)

    def close(self, timeout: float = 5.0) -> None:
        """Stop accepting, close every connection and the listener, end the threads. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            workers = list(self._workers.items())
        self._wake()
        # Abort handshakes in progress: shutting the socket down wakes a
        # blocked connect, send or recv at once. (Name resolution cannot be
        # interrupted; its worker ends when the resolver returns.)
        for _thread, slot in workers:
            sock = slot[0]
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except (OSError, ValueError):
                    pass
        me = threading.current_thread()
        if me is not self._thread:
            self._thread.join(timeout)
        deadline = time.monotonic() + timeout
        for thread, _slot in workers:
            if thread is not me:
                thread.join(max(0.0, deadline - time.monotonic()))

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass  # a wake-up is already pending, or the loop has ended

    # -- the loop ---------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except Exception:  # pragma: no cover - a bug; never leave connections hanging
            log.exception("%s: the relay to %s crashed", self.label, self.upstream.describe())
        finally:
            with self._lock:
                self._closed = True
            self._cleanup()

    def _loop(self) -> None:
        poller = self._poller
        poll = poller.poll
        targets = poller.targets
        wake_fd = self._wake_r.fileno()
        assert self._listener is not None
        listen_fd = self._listener.fileno()
        read_err = poller.READ | poller.ERROR
        write_err = poller.WRITE | poller.ERROR
        while not self._closed:
            for fd, events in poll():
                if fd == wake_fd:
                    self._drain_wake()
                    continue
                if fd == listen_fd:
                    self._accept()
                    continue
                target = targets.get(fd)
                if target is None:
                    continue
                pair, is_local = target
                if pair.closed:
                    continue
                try:
                    if is_local:
                        if events & write_err:
                            self._flush_local(pair)
                        if events & read_err and not pair.closed:
                            self._local_readable(pair)
                    else:
                        if events & write_err:
                            self._flush_remote(pair)
                        if events & read_err and not pair.closed:
                            self._remote_readable(pair)
                except (OSError, ssl.SSLError, ValueError):
                    self._close_pair(pair)
                    continue
                if not pair.closed:
                    self._update(pair)

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass
        while self._pending:
            local, upstream = self._pending.popleft()
            self._waiting.discard(local)
            if upstream is None or self._closed:
                _close_quietly(local)
                if upstream is not None:
                    upstream.close()
                continue
            self._start_pair(local, upstream)

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                local, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.error("%s: cannot accept a connection: %s", self.label, exc)
                    return
                raise
            with self._lock:
                self.accepted += 1
            if not self.is_unix:
                local.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # Nothing is read from the local side until the upstream passed
            # its pin check; the client's bytes wait in the socket buffer.
            self._waiting.add(local)
            slot: list[Any] = [None]
            worker = threading.Thread(
                target=self._connect_worker, args=(local, slot), name=f"{self._thread.name} connect", daemon=True
            )
            with self._lock:
                self._workers[worker] = slot
            worker.start()

    # -- connecting (worker threads) -----------------------------------------

    def _connect_worker(self, local: socket.socket, slot: list[Any]) -> None:
        upstream: _TLSConnection | None = None
        try:
            upstream = self._open_upstream(slot)
        except BaseException as exc:  # every failure refuses the connection
            self._record_failure(exc)
        else:
            with self._lock:
                self.established += 1
                self.last_failure = None
                self.last_result = getattr(upstream.tls, "pin_result", None)
        finally:
            with self._lock:
                self._workers.pop(threading.current_thread(), None)
                closed = self._closed
                if not closed:
                    self._pending.append((local, upstream))
            if closed:
                _close_quietly(local)
                if upstream is not None:
                    upstream.close()
            else:
                self._wake()

    def _record_failure(self, exc: BaseException) -> None:
        up = self.upstream
        peer = getattr(exc, "_pinengine_peer", up.describe())
        if isinstance(exc, PinMismatchError):
            kind = "pin"
            log.error(
                "%s %s: connection to %s refused by the pin check:\n%s",
                self.label, up.server_hostname, peer, exc,
            )
        elif isinstance(exc, ssl.SSLCertVerificationError):
            kind = "certificate"
            log.error("%s %s: certificate of %s refused: %s", self.label, up.server_hostname, peer, exc)
        elif isinstance(exc, ssl.SSLError) or getattr(exc, "_pinengine_tls", False):
            kind = "tls"
            log.warning("%s %s: TLS handshake with %s failed: %s", self.label, up.server_hostname, peer, exc)
        else:
            kind = "connect"
            log.warning("%s %s: cannot connect to %s: %s", self.label, up.server_hostname, peer, exc)
        failure = ConnectFailure(kind, up.server_hostname, peer, exc, time.time())
        with self._lock:
            self.refused += 1
            self.last_failure = failure

    def _open_upstream(self, slot: list[Any]) -> _TLSConnection:
        up = self.upstream
        try:
            addresses = up.resolve()
        except OSError as exc:
            exc._pinengine_peer = up.describe()  # type: ignore[attr-defined]
            raise
        if not addresses:
            raise OSError(f"no addresses for {up.describe()}")
        last: BaseException | None = None
        for family, sockaddr in addresses:
            if self._closed:
                raise OSError("relay closed")
            peer = _format_addr(family, sockaddr)
            sock = socket.socket(family, socket.SOCK_STREAM)
            slot[0] = sock
            try:
                sock.settimeout(self.connect_timeout)
                if self._closed:
                    raise OSError("relay closed")
                sock.connect(sockaddr)
                if family in (socket.AF_INET, socket.AF_INET6):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError as exc:
                slot[0] = None
                sock.close()
                exc._pinengine_peer = peer  # type: ignore[attr-defined]
                last = exc
                continue  # a connection error: try the next address
            try:
                incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
                tls = self.context.wrap_bio(incoming, outgoing, server_hostname=up.server_hostname)
                if isinstance(tls, PinnedSSLObject) and family in (socket.AF_INET, socket.AF_INET6):
                    tls.pin_port = sockaddr[1]  # for the reports: an SSLObject knows no peer
                _handshake(sock, tls, incoming, outgoing)  # the pinned SSLObject checks the pins in here
                if self.require_alpn is not None and tls.selected_alpn_protocol() != self.require_alpn:
                    err = ssl.SSLError(
                        f"the server did not select ALPN {self.require_alpn!r} "
                        f"(it selected {tls.selected_alpn_protocol()!r})"
                    )
                    err._pinengine_tls = True  # type: ignore[attr-defined]
                    raise err
                sock.setblocking(False)
                slot[0] = None
                return _TLSConnection(sock, tls, incoming, outgoing)
            except BaseException as exc:
                slot[0] = None
                _close_quietly(sock)
                if isinstance(exc, (ssl.SSLError, OSError)):
                    exc._pinengine_peer = peer  # type: ignore[attr-defined]
                if isinstance(exc, (PinMismatchError, ssl.SSLCertVerificationError)):
                    # A pin or certificate failure is final: do not shop for
                    # an address that passes (OkHttp does not retry these either).
                    raise
                if isinstance(exc, (ssl.SSLError, OSError)) and not self._closed:
                    last = exc
                    continue  # other handshake failures: try the next address
                raise
        assert last is not None
        raise last

    # -- relaying ---------------------------------------------------------

    def _start_pair(self, local: socket.socket, upstream: _TLSConnection) -> None:
        pair = _Pair(local, upstream)
        self._pairs[pair.fd] = pair
        try:
            local.setblocking(False)
            # The server's first bytes (SETTINGS, session tickets) may already
            # be in the incoming BIO.
            self._pump_to_local(pair)
            if not pair.closed:
                self._update(pair)
        except (OSError, ssl.SSLError, ValueError):
            self._close_pair(pair)

    def _local_readable(self, pair: _Pair) -> None:
        if pair.to_remote:
            return  # back-pressure: the server has not taken the previous bytes yet
        n = pair.local.recv_into(self._buf)
        if not n:
            self._close_pair(pair)  # the client is gone; nothing it sent is still owed
            return
        pair.tls.write(self._view[:n])  # into the outgoing BIO: never blocks
        self._flush_remote(pair)

    def _flush_remote(self, pair: _Pair) -> None:
        """Send what TLS produced (and what an earlier send left) to the server."""
        data = pair.outgoing.read()
        if pair.to_remote:
            data = pair.to_remote + data
        if not data:
            return
        try:
            sent = pair.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        pair.to_remote = data[sent:] if sent < len(data) else b""

    def _remote_readable(self, pair: _Pair) -> None:
        if pair.to_local:
            return  # back-pressure: the client has not taken the previous bytes yet
        n = pair.sock.recv_into(self._buf)
        if not n:
            pair.remote_eof = True
            pair.incoming.write_eof()
        else:
            pair.incoming.write(self._view[:n])
        self._pump_to_local(pair)

    def _pump_to_local(self, pair: _Pair) -> None:
        """Decrypt what the incoming BIO holds and give it to the client, until it blocks or the BIO is dry."""
        tls = pair.tls
        incoming = pair.incoming
        view = self._plain_view
        size = len(view)
        while not pair.to_local:
            filled = 0
            dry = False
            while filled < size:
                try:
                    n: int = tls.read(size - filled, view[filled:])  # type: ignore[assignment]
                except ssl.SSLWantReadError:
                    dry = True
                    break
                except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    pair.remote_eof = True
                    dry = True
                    break
                if not n:
                    pair.remote_eof = True
                    dry = True
                    break
                filled += n
                if not incoming.pending and not tls.pending():
                    # Everything received has been decrypted; skip the read
                    # that would only raise SSLWantReadError.
                    dry = True
                    break
            if pair.outgoing.pending:
                self._flush_remote(pair)  # e.g. a TLS 1.3 key update answered while reading
            if filled:
                try:
                    sent = pair.local.send(view[:filled])
                except (BlockingIOError, InterruptedError):
                    sent = 0
                if sent < filled:
                    pair.to_local = bytes(view[sent:filled])
            if dry:
                break
        if pair.remote_eof and not pair.to_local:
            self._close_pair(pair)

    def _flush_local(self, pair: _Pair) -> None:
        if not pair.to_local:
            return
        try:
            sent = pair.local.send(pair.to_local)
        except (BlockingIOError, InterruptedError):
            return
        pair.to_local = pair.to_local[sent:]
        if not pair.to_local:
            self._pump_to_local(pair)  # the BIO may hold more that waited for room

    def _update(self, pair: _Pair) -> None:
        """Register each socket for what it is waiting on (a socket waiting for nothing is unregistered)."""
        poller = self._poller
        read, write = poller.READ, poller.WRITE
        local_mask = (0 if pair.to_remote else read) | (write if pair.to_local else 0)
        remote_mask = (0 if (pair.to_local or pair.remote_eof) else read) | (write if pair.to_remote else 0)
        if local_mask != pair.local_mask:
            poller.set_mask(pair.local, pair.local_mask, local_mask, (pair, True))
            pair.local_mask = local_mask
        if remote_mask != pair.remote_mask:
            poller.set_mask(pair.sock, pair.remote_mask, remote_mask, (pair, False))
            pair.remote_mask = remote_mask

    def _close_pair(self, pair: _Pair) -> None:
        if pair.closed:
            return
        pair.closed = True
        if pair.local_mask:
            self._poller.unregister(pair.local)
        if pair.remote_mask:
            self._poller.unregister(pair.sock)
        pair.local_mask = pair.remote_mask = 0
        self._pairs.pop(pair.fd, None)
        _close_quietly(pair.sock)
        _close_quietly(pair.local)

    def _cleanup(self) -> None:
        """Close everything the loop owns and remove the socket directory (the loop has ended)."""
        for pair in list(self._pairs.values()):
            self._close_pair(pair)
        self._pairs.clear()
        for local in list(self._waiting):
            _close_quietly(local)
        self._waiting.clear()
        with self._lock:
            pending = list(self._pending)
            self._pending.clear()
        for local, upstream in pending:
            _close_quietly(local)
            if upstream is not None:
                upstream.close()
        if self._listener is not None:
            _close_quietly(self._listener)
        for s in (self._wake_r, self._wake_w):
            _close_quietly(s)
        self._poller.close()
        for view, buf in ((self._view, self._buf), (self._plain_view, self._plain)):
            try:
                view.release()
                buf.close()
            except BufferError:  # pragma: no cover - a slice still alive; the GC unmaps it
                pass
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


def _safe(label: str) -> str:
    """``label`` as a file name prefix: letters, digits, ``-`` and ``_`` only."""
    return "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "-" for c in label)[:32] or "relay"


def _format_addr(family: int, sockaddr: Any) -> str:
    if family == getattr(socket, "AF_UNIX", None):
        return f"unix:{sockaddr}"
    if family == socket.AF_INET6:
        return f"[{sockaddr[0]}]:{sockaddr[1]}"
    return f"{sockaddr[0]}:{sockaddr[1]}"


def split_host_port(text: str, default_port: int) -> tuple[str, int]:
    """``host:port``, ``[v6]:port``, ``host`` or ``v6`` -> (host, port)."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"invalid address {text!r}: missing ']'")
        host, rest = text[1:end], text[end + 1:]
        if not rest:
            return host, default_port
        if not rest.startswith(":"):
            raise ValueError(f"invalid address {text!r}")
        return host, _port(text, rest[1:])
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, _port(text, port)
    return text, default_port  # a bare name, or an IPv6 address without brackets and port


def _port(text: str, port: str) -> int:
    try:
        value = int(port)
    except ValueError:
        raise ValueError(f"invalid port in {text!r}") from None
    if not 0 < value < 65536:
        raise ValueError(f"port out of range in {text!r}")
    return value


def sockaddrs(addresses: Sequence[str], default_port: int, family: int) -> tuple[tuple[int, Any], ...]:
    """Literal addresses (``1.2.3.4:80``, ``[::1]:80``) -> (family, sockaddr) pairs."""
    out = []
    for text in addresses:
        host, port = split_host_port(text.strip(), default_port)
        infos = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST)
        out.append((infos[0][0], infos[0][4]))
    return tuple(out)
