"""The relay: local endpoints in, pinned TLS out, one thread, no thread per connection.

``TLSRelay`` listens on local endpoints: on Linux abstract unix sockets that
take connections from this process only (SO_PEERCRED), elsewhere unix domain
sockets in a fresh 0700 directory (loopback TCP where unix sockets are
unavailable; refused when the context holds a client key pair): one endpoint, whose
connections try the upstream's addresses in order, or one endpoint per
address (``spread=True``), so that a client's own load balancing sees every
address. For each local connection it accepts, it resolves again when the
latest resolution is older than ``min_resolve_interval``, connects (through
an HTTP CONNECT proxy if the upstream names one), performs TLS with a pinned
context (``create_pinned_context``: its SSL objects check the pins inside
``do_handshake``) and only when that succeeded starts relaying bytes both
ways. A connection whose upstream cannot be made (refused, proxy refusal,
TLS failure, pin mismatch) is closed before a single byte of it is read, so
the client on the local side sees a dead transport.

Everything runs in one thread per relay, on non-blocking sockets: connects,
the proxy's CONNECT exchange, TLS handshakes (each step bounded by
``connect_timeout``) and the relaying. Only name resolution, which the
standard library offers as a blocking call, runs in a short-lived thread,
at most once per ``min_resolve_interval``.

TLS runs over memory BIOs (``ssl.MemoryBIO`` / ``SSLObject``): one ``recv``
per readiness event however many TLS records arrived, one ``send`` for
however many records a write produced, and nothing the handshake produced is
sent unless the pin check passed: under TLS 1.3 a client certificate (mutual
TLS) and the Finished message never leave the process when it fails. (TLS
over the socket itself saves one copy per direction, but Python leaves
OpenSSL's read-ahead off, so it costs two ``read`` calls per record and one
``write`` per record; measured, it did not pay.)

The relay knows no protocol above TLS: ``label`` names its thread, log lines
and socket directory, and ``require_alpn`` the protocol the server must
select.
"""

from __future__ import annotations

import errno
import functools
import logging
import mmap
import os
import queue
import secrets
import shutil
import socket
import ssl
import struct
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ..._errors import PinMismatchError
from ...policy import VerificationResult
from ..ssl import PinnedSSLObject
from ._addresses import Address, AddressBook, Upstream, format_addr
from ._connect import ConnectAnswer, connect_request
from ._pair import Buffers, Pair
from ._poller import Poller

__all__ = ["ConnectFailure", "TLSRelay"]

log = logging.getLogger("pinengine")

# Per relay: one receive buffer and one plaintext buffer, reused by its loop.
# 256 KiB moves bulk data in few system calls (it measured clearly better
# than 64 KiB for 64 KiB messages); the buffers are anonymous memory maps, so
# only the pages a channel's traffic touches become resident.
_BUFFER = 256 * 1024
_HAS_UNIX = hasattr(socket, "AF_UNIX") and sys.platform != "win32"
#: Linux: abstract unix sockets (no file to make or remove) whose every
#: connection must come from this very process (SO_PEERCRED): an abstract name
#: has no permission bits, and /proc/net/unix lists it to every local user.
_ABSTRACT = _HAS_UNIX and sys.platform.startswith("linux") and hasattr(socket, "SO_PEERCRED")
_PEERCRED = struct.Struct("3i")  # pid, uid, gid
#: Local endpoints of one relay at most (one per resolved address; see _addresses.MAX_ADDRESSES).
MAX_ENDPOINTS = 128
#: Characters a socket directory may hold: grpc splits a ``unix:`` target on
#: commas and decodes ``%`` escapes, so a TMPDIR with anything else is not used.
_PATH_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-")
_IN_PROGRESS = (errno.EINPROGRESS, errno.EALREADY, getattr(errno, "WSAEWOULDBLOCK", -1))


@dataclass(frozen=True)
class ConnectFailure:
    """Why the latest upstream connection could not be made.

    ``kind`` is ``"pin"`` (PinMismatchError), ``"certificate"`` (validation
    failed: untrusted, expired, wrong name), ``"tls"`` (another handshake
    failure, e.g. no ALPN h2), ``"proxy"`` (the proxy refused the tunnel or
    answered badly) or ``"connect"`` (resolution or TCP).
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
        if self.kind == "proxy":
            return f"no tunnel to {self.hostname} ({self.peer}): {self.error}"
        return f"connection to {self.hostname} ({self.peer}) failed: {self.error}"


def _close_quietly(sock: Any) -> None:
    try:
        sock.close()
    except OSError:
        pass


class _Resolvers:
    """A few daemon threads, shared by every relay of the process, that run the blocking name lookups.

    Lookups are rare (at most one per relay per ``min_resolve_interval``),
    so the threads are kept rather than started per lookup (a thread start
    is a good part of a new channel's cost). A lookup that hangs holds one
    thread; the connections waiting for it give up at their own deadline.
    Daemon threads: a hung lookup never holds up the interpreter's exit.
    """

    MAX = 4  # lookups running at once, process-wide; more wait for a free thread

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = self._idle = 0
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._forget_threads)

    def _forget_threads(self) -> None:  # a forked child has none of them
        self._lock = threading.Lock()
        self._threads = self._idle = 0

    def submit(self, fn: Callable[[], None]) -> None:
        with self._lock:
            if self._idle == 0 and self._threads < self.MAX:
                self._threads += 1
                self._idle += 1
                threading.Thread(target=self._work, name="pinengine-relay resolve", daemon=True).start()
        self._queue.put(fn)

    def _work(self) -> None:
        while True:
            fn = self._queue.get()
            with self._lock:
                self._idle -= 1
            try:
                fn()
            except Exception:  # pragma: no cover - the job reports its own errors
                log.exception("pinengine relay: a name lookup failed unexpectedly")
            with self._lock:
                self._idle += 1


_RESOLVERS = _Resolvers()


class _Final(Exception):
    """Wraps a failure that ends a connection attempt: no other address is tried."""


# Phases of an attempt.
_RESOLVE, _CONNECT, _PROXY_SEND, _PROXY_READ, _TLS = range(5)


class _Attempt:
    """One local connection waiting for its upstream: resolution, connect, CONNECT, TLS, pin check."""

    __slots__ = ("local", "slot", "candidates", "index", "phase", "deadline", "sock", "peer", "tls",
                 "incoming", "outgoing", "out", "answer", "done")

    def __init__(self, local: socket.socket, slot: int) -> None:
        self.local = local
        self.slot = slot
        self.candidates: list[Address] = []
        self.index = -1
        self.phase = _RESOLVE
        self.deadline = 0.0
        self.sock: socket.socket | None = None
        self.peer = ""
        self.tls: Any = None
        self.incoming: ssl.MemoryBIO | None = None
        self.outgoing: ssl.MemoryBIO | None = None
        self.out = b""  # bytes for the upstream not sent yet (CONNECT request, handshake records)
        self.answer: ConnectAnswer | None = None
        self.done = False


class TLSRelay:
    """Listens locally; each accepted connection becomes a pinned TLS connection to ``upstream``.

    ``context`` is a pinned ``ssl.SSLContext`` (from ``create_pinned_context``,
    with ALPN and any client certificate already set). ``require_alpn``: the
    protocol the server must select (None: no requirement). ``spread``: one
    local endpoint per address of the upstream (resolved now), instead of
    one endpoint trying them in order. ``min_resolve_interval``: seconds
    before a new connection resolves the upstream again;
    ``resolve_timeout``: how long a connection waits for a resolution
    (default ``connect_timeout``). ``socket_options``: ``(level, option,
    value)`` set on every TCP socket to the upstream. ``client_certificate``:
    the context holds a client key pair, so the local endpoints must be
    private to this user (unix sockets in a 0700 directory): loopback TCP,
    which any local user can reach, is refused. Every attempt's
    outcome is counted (``accepted``, ``established``, ``refused``); the
    latest failure is ``last_failure`` until an attempt succeeds.
    """

    local_target: str = ""
    local_address: Any = None
    local_addresses: list[Any] = []  # noqa: RUF012 (replaced per instance)

    def __init__(
        self,
        upstream: Upstream,
        context: ssl.SSLContext,
        *,
        require_alpn: str | None = None,
        connect_timeout: float = 20.0,
        label: str = "pinengine-relay",
        spread: bool = False,
        min_resolve_interval: float = 30.0,
        resolve_timeout: float | None = None,
        shuffle: bool = False,
        socket_options: Sequence[tuple[int, int, int]] = (),
        client_certificate: bool = False,
    ) -> None:
        self.upstream = upstream
        self.context = context
        self.require_alpn = require_alpn
        self.connect_timeout = connect_timeout
        self.resolve_timeout = connect_timeout if resolve_timeout is None else resolve_timeout
        self.label = label
        self.socket_options = tuple(socket_options)
        self.accepted = 0  # local connections accepted (each one an upstream attempt)
        self.established = 0  # upstream connections that passed TLS and the pin check
        self.refused = 0  # attempts that failed (any reason)
        self.last_failure: ConnectFailure | None = None  # cleared by the next success
        self.last_result: VerificationResult | None = None

        if client_certificate and not _HAS_UNIX:
            raise ValueError(
                "mutual TLS through a pinned relay needs unix domain sockets for its local endpoints; here they "
                "would be loopback TCP ports, which any local user could use to connect with this client certificate"
            )
        self.book = AddressBook(upstream, min_interval=min_resolve_interval, shuffle=shuffle)
        slots = 1
        if spread:
            addresses = upstream.resolve()  # the slots are fixed now: grpc takes the address list once
            if not addresses:
                raise OSError(f"{upstream.describe()} resolved to no address")
            slots = self.book.spread(addresses[:MAX_ENDPOINTS])
        self._lock = threading.Lock()
        self._closed = False
        self._attempts: set[_Attempt] = set()
        self._pairs: set[Pair] = set()
        self._waiting: list[_Attempt] = []  # attempts waiting for the resolution under way
        self._resolving = False
        self._resolved: tuple[list[Address] | None, BaseException | None] | None = None
        self._dir: str | None = None
        self._abstract = False
        self._listeners: list[socket.socket] = []
        self._poller = Poller()
        self._buffers = Buffers(mmap.mmap(-1, _BUFFER), mmap.mmap(-1, _BUFFER))
        self._view = self._buffers.raw_view
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread = threading.Thread(target=self._run, name=f"{label} {upstream.describe()}", daemon=True)
        try:
            self._wake_r.setblocking(False)
            self._wake_w.setblocking(False)
            self._listen(slots)
            self._poller.register(self._wake_r, self._on_wake, self._poller.IN)
            for slot, listener in enumerate(self._listeners):
                listener.setblocking(False)
                self._poller.register(listener, functools.partial(self._accept, slot), self._poller.IN)
            self._thread.start()
        except BaseException:
            self._closed = True
            self._cleanup()
            raise

    # -- local endpoints ---------------------------------------------------

    def _listen(self, count: int) -> None:
        if _ABSTRACT:
            base = f"{_safe(self.label)}-{secrets.token_hex(12)}"
            names = [f"{base}-{i}" for i in range(count)]
            for name in names:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self._listeners.append(sock)
                sock.bind("\0" + name)
                sock.listen(64)
            self._abstract = True
            self.local_target = "unix-abstract:" + ",".join(names)
            self.local_addresses = ["\0" + name for name in names]
            self.local_address = self.local_addresses[0]
            return
        if _HAS_UNIX:
            # A fresh directory only this user can enter: no other local user
            # can connect to the relay (and borrow a client certificate).
            d = tempfile.mkdtemp(prefix=f"{_safe(self.label)}-")
            if len(d.encode()) > 90 or not set(d) <= _PATH_SAFE:  # sun_path holds 104-108 bytes
                shutil.rmtree(d, ignore_errors=True)
                d = tempfile.mkdtemp(prefix="pe-", dir="/tmp")
            self._dir = d
            os.chmod(d, 0o700)
            paths = []
            for i in range(count):
                path = os.path.join(d, str(i))
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self._listeners.append(sock)
                sock.bind(path)
                sock.listen(64)
                paths.append(path)
            self.local_target = "unix:" + ",".join(paths)
            self.local_address = paths[0]
            self.local_addresses = paths
            return
        addresses = []
        for _ in range(count):
            sock = socket.create_server(("127.0.0.1", 0), backlog=64)
            self._listeners.append(sock)
            addresses.append(("127.0.0.1", sock.getsockname()[1]))
        self.local_target = "ipv4:" + ",".join(f"{h}:{p}" for h, p in addresses)
        self.local_address = addresses[0]
        self.local_addresses = addresses

    @property
    def is_unix(self) -> bool:
        """Whether the local endpoints are unix sockets (else loopback TCP)."""
        return self._abstract or self._dir is not None

    @property
    def endpoints(self) -> int:
        """How many local endpoints the relay listens on."""
        return len(self._listeners)

    # -- public -----------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def active_connections(self) -> int:
        """Relayed connection pairs currently open."""
        return len(self._pairs)

    @property
    def pending_attempts(self) -> int:
        """Local connections whose upstream is being made (resolution, connect, CONNECT, TLS)."""
        return len(self._attempts)

    def close(self, timeout: float = 5.0) -> None:
        """Stop accepting, close every connection and the listeners, end the thread. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._wake()
        if threading.current_thread() is not self._thread and self._thread.is_alive():
            self._thread.join(timeout)

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
        if self.upstream.needs_resolution and self.book.resolved_at is None:
            # Resolve ahead of the first connection, while grpc sets its channel up.
            self._resolving = True
            _RESOLVERS.submit(self._resolve_worker)
        poll = self._poller.poll
        handlers = self._poller.handlers
        attempts = self._attempts
        while not self._closed:
            timeout = None
            if attempts:
                now = time.monotonic()
                timeout = max(0.0, min(a.deadline for a in attempts) - now)
            for fd, events in poll(timeout):
                handler = handlers.get(fd)
                if handler is not None:
                    handler(events)
            if attempts:
                now = time.monotonic()
                for attempt in [a for a in attempts if a.deadline <= now]:
                    self._timed_out(attempt)

    def _on_wake(self, events: int) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass
        with self._lock:
            resolved, self._resolved = self._resolved, None
        if resolved is not None:
            self._apply_resolution(*resolved)

    # -- accepting ---------------------------------------------------------

    def _accept(self, slot: int, events: int) -> None:
        listener = self._listeners[slot]
        while not self._closed:
            try:
                local, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM, errno.ECONNABORTED):
                    log.error("%s: cannot accept a connection: %s", self.label, exc)
                    return
                raise
            if self._abstract and not self._from_this_process(local):
                continue
            local.setblocking(False)
            if not self.is_unix:
                local.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.accepted += 1
            attempt = _Attempt(local, slot)
            self._attempts.add(attempt)
            # Nothing is read from the local side until the upstream passed
            # its pin check; the client's bytes wait in the socket buffer. Its
            # readiness is watched only to notice a client that gave up.
            self._poller.register(local, functools.partial(self._local_during_attempt, attempt), 0)
            if self.book.stale():
                self._await_resolution(attempt)
            else:
                self._start(attempt)

    def _from_this_process(self, local: socket.socket) -> bool:
        """Whether the peer of an accepted abstract-socket connection is this process; if not, refuse it."""
        try:
            pid, uid, _gid = _PEERCRED.unpack(local.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
        except OSError:
            pid = uid = -1
        if pid == os.getpid():
            return True
        log.warning("%s: refused a local connection from another process (pid %d, uid %d)", self.label, pid, uid)
        _close_quietly(local)
        return False

    def _local_during_attempt(self, attempt: _Attempt, events: int) -> None:
        if events & self._poller.BROKEN and not attempt.done:
            self._end_attempt(attempt)  # the client gave up: no failure to report

    # -- resolving (a short-lived thread; everything else stays in the loop) -----

    def _await_resolution(self, attempt: _Attempt) -> None:
        attempt.phase = _RESOLVE
        attempt.deadline = time.monotonic() + self.resolve_timeout
        self._waiting.append(attempt)
        if self._resolving:
            return
        self._resolving = True
        _RESOLVERS.submit(self._resolve_worker)

    def _resolve_worker(self) -> None:
        try:
            result: tuple[list[Address] | None, BaseException | None] = (self.upstream.resolve(), None)
        except Exception as exc:
            result = (None, exc)
        with self._lock:
            self._resolved = result
        self._wake()

    def _apply_resolution(self, addresses: list[Address] | None, error: BaseException | None) -> None:
        self._resolving = False
        if addresses is not None:
            self.book.update(addresses)
        waiting, self._waiting = self._waiting, []
        for attempt in waiting:
            if attempt.done:
                continue
            if error is not None:
                self._fail(attempt, error, self.upstream.describe(), final=True)
            else:
                self._start(attempt)

    # -- connecting ---------------------------------------------------------

    def _start(self, attempt: _Attempt) -> None:
        attempt.candidates = self.book.candidates(attempt.slot)
        if attempt.candidates:
            self._next_address(attempt)
        elif self.book.spreading:
            # An endpoint whose address went away with the latest resolution:
            # no attempt, nothing to report (the others serve the channel).
            log.debug("%s: endpoint %d has no address now; connection refused", self.label, attempt.slot)
            self.accepted -= 1
            self._end_attempt(attempt)
        else:
            err = OSError(f"{self.upstream.describe()} resolved to no address")
            self._fail(attempt, err, self.upstream.describe(), final=True)

    def _next_address(self, attempt: _Attempt) -> None:
        attempt.index += 1
        if attempt.index >= len(attempt.candidates):
            return  # _fail recorded the last error
        family, sockaddr = attempt.candidates[attempt.index]
        up = self.upstream
        peer = format_addr(family, sockaddr)
        attempt.peer = peer if up.proxy is None else f"{up.describe()} via proxy {up.proxy.describe()} at {peer}"
        attempt.phase = _CONNECT
        attempt.deadline = time.monotonic() + self.connect_timeout
        attempt.out = b""
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError as exc:
            self._fail(attempt, exc, attempt.peer)
            return
        attempt.sock = sock
        try:
            sock.setblocking(False)
            if family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                for level, option, value in self.socket_options:
                    sock.setsockopt(level, option, value)
            self._poller.register(sock, functools.partial(self._step, attempt), self._poller.OUT)
            err = sock.connect_ex(sockaddr)
        except OSError as exc:
            self._fail(attempt, exc, attempt.peer)
            return
        if err and err not in _IN_PROGRESS:
            self._fail(attempt, OSError(err, os.strerror(err)), attempt.peer)
        elif not err:
            self._step(attempt, self._poller.OUT)

    def _step(self, attempt: _Attempt, events: int) -> None:
        """Advance ``attempt`` as far as its socket allows."""
        if attempt.done:
            return
        try:
            if attempt.phase == _CONNECT:
                if not events & (self._poller.OUT | self._poller.BROKEN):
                    return
                assert attempt.sock is not None
                err = attempt.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    raise OSError(err, os.strerror(err))
                self._connected(attempt)
            if attempt.phase in (_PROXY_SEND, _PROXY_READ):
                self._proxy_step(attempt)
            if attempt.phase == _TLS:
                self._tls_step(attempt)
        except _Final as exc:
            self._fail(attempt, exc.args[0], attempt.peer, final=True)
        except (OSError, ssl.SSLError, ValueError) as exc:
            self._fail(attempt, exc, attempt.peer, final=isinstance(exc, ssl.SSLCertVerificationError))

    def _connected(self, attempt: _Attempt) -> None:
        attempt.deadline = time.monotonic() + self.connect_timeout
        proxy = self.upstream.proxy
        if proxy is not None:
            attempt.phase = _PROXY_SEND
            attempt.out = connect_request(f"{_host_for_authority(self.upstream.host)}:{self.upstream.port}",
                                          proxy.headers)
            attempt.answer = ConnectAnswer()
            return
        self._begin_tls(attempt)

    def _proxy_step(self, attempt: _Attempt) -> None:
        sock = attempt.sock
        assert sock is not None and attempt.answer is not None
        if attempt.phase == _PROXY_SEND:
            if not self._send_pending(attempt):
                return
            attempt.phase = _PROXY_READ
            self._poller.set_mask(sock, self._poller.IN)
        try:
            while True:
                room = attempt.answer.room()
                chunk = sock.recv(min(room, 4096))
                if not chunk:
                    raise _Final(ConnectionError("the proxy closed the connection before answering CONNECT"))
                try:
                    done = attempt.answer.feed(chunk)
                except ConnectionError as exc:
                    raise _Final(exc) from None
                if done:
                    break
        except (BlockingIOError, InterruptedError):
            return
        self._begin_tls(attempt)

    def _begin_tls(self, attempt: _Attempt) -> None:
        attempt.phase = _TLS
        attempt.deadline = time.monotonic() + self.connect_timeout
        attempt.incoming, attempt.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = self.context.wrap_bio(attempt.incoming, attempt.outgoing, server_hostname=self.upstream.server_hostname)
        if isinstance(tls, PinnedSSLObject):  # for the reports: an SSLObject knows no peer
            family, sockaddr = attempt.candidates[attempt.index]
            if self.upstream.proxy is not None:
                tls.pin_port = self.upstream.port
            elif family in (socket.AF_INET, socket.AF_INET6):
                tls.pin_port = sockaddr[1]
        attempt.tls = tls

    def _send_pending(self, attempt: _Attempt) -> bool:
        """Send ``attempt.out``; True when all of it went."""
        sock = attempt.sock
        assert sock is not None
        while attempt.out:
            try:
                sent = sock.send(attempt.out)
            except (BlockingIOError, InterruptedError):
                self._poller.set_mask(sock, self._poller.OUT)
                return False
            attempt.out = attempt.out[sent:]
        return True

    def _tls_step(self, attempt: _Attempt) -> None:
        """Drive the handshake as far as the socket allows.

        What a handshake step produced is sent only once ``do_handshake``
        returned: when the pin check inside its last step raises, the
        client's last flight (its Finished and, under TLS 1.3, its
        certificate) stays in the memory BIO and is thrown away.
        """
        sock, tls = attempt.sock, attempt.tls
        incoming, outgoing = attempt.incoming, attempt.outgoing
        assert sock is not None and incoming is not None and outgoing is not None
        while True:
            if attempt.out and not self._send_pending(attempt):
                return
            try:
                tls.do_handshake()
            except ssl.SSLWantReadError:
                attempt.out = outgoing.read()
                if attempt.out and not self._send_pending(attempt):
                    return
                try:
                    n = sock.recv_into(self._view)
                except (BlockingIOError, InterruptedError):
                    self._poller.set_mask(sock, self._poller.IN)
                    return
                if not n:
                    raise ConnectionResetError(
                        errno.ECONNRESET, "the server closed the connection during the TLS handshake"
                    ) from None
                incoming.write(self._view[:n])
                continue
            except (PinMismatchError, ssl.SSLCertVerificationError) as exc:
                # A pin or certificate failure is final: do not shop for an
                # address that passes (OkHttp does not retry these either).
                raise _Final(exc) from None
            break
        if self.require_alpn is not None and tls.selected_alpn_protocol() != self.require_alpn:
            raise ssl.SSLError(
                f"the server did not select ALPN {self.require_alpn!r} (it selected {tls.selected_alpn_protocol()!r})"
            )
        self._established(attempt, outgoing.read())

    def _timed_out(self, attempt: _Attempt) -> None:
        what = {
            _RESOLVE: f"resolving {self.upstream.describe()}",
            _CONNECT: "connecting",
            _PROXY_SEND: "sending CONNECT to the proxy",
            _PROXY_READ: "waiting for the proxy's answer to CONNECT",
            _TLS: "the TLS handshake",
        }[attempt.phase]
        err = TimeoutError(errno.ETIMEDOUT, f"timed out {what}")
        if attempt.phase == _RESOLVE:
            if attempt in self._waiting:
                self._waiting.remove(attempt)
            self._fail(attempt, err, self.upstream.describe(), final=True)
        else:
            self._fail(attempt, err, attempt.peer)

    # -- outcomes -----------------------------------------------------------

    def _fail(self, attempt: _Attempt, exc: BaseException, peer: str, *, final: bool = False) -> None:
        """Record a failed address; try the next one unless the failure is final or none is left."""
        if attempt.sock is not None:
            self._poller.unregister(attempt.sock)
            _close_quietly(attempt.sock)
            attempt.sock = None
        attempt.tls = attempt.incoming = attempt.outgoing = attempt.answer = None
        if self._closed:
            self._end_attempt(attempt)
            return
        last = final or attempt.index + 1 >= len(attempt.candidates)
        if not last:
            log.debug("%s %s: %s failed (%s); trying the next address", self.label,
                      self.upstream.server_hostname, peer, exc)
            self._next_address(attempt)
            return
        self._record_failure(exc, peer, attempt.phase)
        self._end_attempt(attempt)

    def _end_attempt(self, attempt: _Attempt) -> None:
        attempt.done = True
        self._attempts.discard(attempt)
        if attempt in self._waiting:
            self._waiting.remove(attempt)
        if attempt.sock is not None:
            self._poller.unregister(attempt.sock)
            _close_quietly(attempt.sock)
            attempt.sock = None
        self._poller.unregister(attempt.local)
        _close_quietly(attempt.local)

    def _record_failure(self, exc: BaseException, peer: str, phase: int) -> None:
        up = self.upstream
        if isinstance(exc, PinMismatchError):
            kind = "pin"
            log.error("%s %s: connection to %s refused by the pin check:\n%s", self.label, up.server_hostname, peer, exc)
        elif isinstance(exc, ssl.SSLCertVerificationError):
            kind = "certificate"
            log.error("%s %s: certificate of %s refused: %s", self.label, up.server_hostname, peer, exc)
        elif isinstance(exc, ssl.SSLError):
            kind = "tls"
            log.warning("%s %s: TLS handshake with %s failed: %s", self.label, up.server_hostname, peer, exc)
        elif phase in (_PROXY_SEND, _PROXY_READ) and up.proxy is not None:
            kind = "proxy"
            log.warning("%s %s: no tunnel through %s: %s", self.label, up.server_hostname, peer, exc)
        else:
            kind = "connect"
            log.warning("%s %s: cannot connect to %s: %s", self.label, up.server_hostname, peer, exc)
        self.refused += 1
        self.last_failure = ConnectFailure(kind, up.server_hostname, peer, exc, time.time())

    def _established(self, attempt: _Attempt, last_flight: bytes) -> None:
        attempt.done = True
        self._attempts.discard(attempt)
        sock = attempt.sock
        assert sock is not None and attempt.incoming is not None and attempt.outgoing is not None
        self.established += 1
        self.last_failure = None
        self.last_result = getattr(attempt.tls, "pin_result", None)
        pair = Pair(attempt.local, sock, attempt.tls, attempt.incoming, attempt.outgoing, attempt.out + last_flight,
                    self._buffers, self._poller, self._pair_closed)
        attempt.sock = None
        self._pairs.add(pair)
        self._poller.set_handler(pair.local, pair.local_event)
        self._poller.set_handler(pair.sock, pair.remote_event)
        pair.pump()

    def _pair_closed(self, pair: Pair) -> None:
        self._pairs.discard(pair)

    def _cleanup(self) -> None:
        """Close everything the loop owns and remove the socket directory (the loop has ended)."""
        for pair in list(self._pairs):
            pair.close()
        for attempt in list(self._attempts):
            self._end_attempt(attempt)
        for listener in self._listeners:
            _close_quietly(listener)
        for s in (self._wake_r, self._wake_w):
            _close_quietly(s)
        self._poller.close()
        self._buffers.release()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


def _host_for_authority(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _safe(label: str) -> str:
    """``label`` as a file name prefix: letters, digits, ``-`` and ``_`` only."""
    return "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "-" for c in label)[:32] or "relay"
