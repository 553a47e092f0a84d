"""One relayed connection: the local plaintext socket and the upstream TLS connection, after the pin check.

This is the relay's hot path, written for few Python frames per readiness
event: the event handler, ``pump``, and one function per direction. Flags
say what the last system calls showed (``*_in``: data may be waiting;
``*_out``: there may be room); they are cleared on ``EAGAIN`` or a short
read (a stream socket that returned less than asked for is drained for now,
and the next arrival is a new edge) and set again by readiness events. After
each pump the pair tells the poller what each socket waits for, when that
changed (only when a direction blocks or unblocks).
"""

from __future__ import annotations

import socket
import ssl
from typing import Any, Callable

from ._poller import Poller

__all__ = ["Buffers", "Pair"]


class Buffers:
    """The relay's receive buffer and plaintext buffer, shared by its pairs (one loop thread)."""

    __slots__ = ("raw", "raw_view", "plain", "plain_view", "size")

    def __init__(self, raw: Any, plain: Any) -> None:
        self.raw = raw
        self.raw_view = memoryview(raw)
        self.plain = plain
        self.plain_view = memoryview(plain)
        self.size = len(raw)

    def release(self) -> None:
        for view, buf in ((self.raw_view, self.raw), (self.plain_view, self.plain)):
            try:
                view.release()
                buf.close()
            except BufferError:  # pragma: no cover - a slice still alive; the GC unmaps it
                pass


class Pair:
    """Relays bytes both ways between ``local`` (plaintext) and ``sock`` (TLS through memory BIOs)."""

    __slots__ = ("local", "sock", "tls", "incoming", "outgoing", "to_local", "to_remote", "local_in", "local_out",
                 "remote_in", "remote_out", "remote_eof", "closed", "local_mask", "remote_mask", "_buffers", "_poller",
                 "_on_close", "_in", "_out")

    def __init__(self, local: socket.socket, sock: socket.socket, tls: Any, incoming: ssl.MemoryBIO,
                 outgoing: ssl.MemoryBIO, pending: bytes, buffers: Buffers, poller: Poller,
                 on_close: Callable[[Pair], None]) -> None:
        self.local = local
        self.sock = sock
        # The C object the SSLObject's read/write wrap, where there is one:
        # one Python frame less per call. The pin check passed already:
        # nothing here runs before it.
        self.tls = getattr(tls, "_sslobj", None) or tls
        self.incoming = incoming
        self.outgoing = outgoing
        self.to_local: bytes | memoryview = b""  # decrypted, not yet taken by the local socket
        self.to_remote: bytes | memoryview = pending  # encrypted, not yet taken by the upstream socket
        self.local_in = self.remote_in = True  # unknown: try
        self.local_out = self.remote_out = True
        self.remote_eof = False
        self.closed = False
        self.local_mask = -1  # unknown: set by the first pump
        self.remote_mask = -1
        self._buffers = buffers
        self._poller = poller
        self._on_close = on_close
        self._in = poller.IN | poller.BROKEN  # an error or a hang-up shows on the next call
        self._out = poller.OUT | poller.BROKEN

    def local_event(self, events: int) -> None:
        if events & self._in:
            self.local_in = True
        if events & self._out:
            self.local_out = True
        self.pump()

    def remote_event(self, events: int) -> None:
        if events & self._in:
            self.remote_in = not self.remote_eof
        if events & self._out:
            self.remote_out = True
        self.pump()

    def pump(self) -> None:
        """Move bytes both ways until every direction waits on the system, or the pair ends."""
        try:
            while not self.closed:
                moved = False
                # server -> client
                if self.to_local:
                    if self.local_out:
                        moved = self._send_local()
                elif self.remote_in or self.incoming.pending or self.tls.pending():
                    moved = self._receive_remote()
                elif self.remote_eof:
                    self.close()  # everything the server sent was delivered
                    return
                # client -> server
                if self.to_remote:
                    if self.remote_out:
                        moved = self._send_remote() or moved
                elif self.local_in:
                    moved = self._receive_local() or moved
                if not moved:
                    break
        except (OSError, ssl.SSLError, ValueError):
            self.close()
            return
        if self.closed:
            return
        # What each socket waits for: room to write only while a send is
        # blocked; under level-triggered readiness, data to read only while
        # it can be moved on (edge-triggered: always, no change per message).
        poller = self._poller
        if poller.edge:
            local_mask = poller.IN | (poller.OUT if self.to_local else 0)
            remote_mask = poller.IN | (poller.OUT if self.to_remote else 0)
        else:
            local_mask = (0 if self.to_remote else poller.IN) | (poller.OUT if self.to_local else 0)
            remote_mask = (0 if (self.to_local or self.remote_eof) else poller.IN) | (poller.OUT if self.to_remote else 0)
        if local_mask != self.local_mask:
            poller.set_mask(self.local, local_mask)
            self.local_mask = local_mask
        if remote_mask != self.remote_mask:
            poller.set_mask(self.sock, remote_mask)
            self.remote_mask = remote_mask

    def _receive_local(self) -> bool:
        buffers = self._buffers
        try:
            n = self.local.recv_into(buffers.raw)
        except (BlockingIOError, InterruptedError):
            self.local_in = False
            return False
        if not n:
            self.close()  # the client is gone; nothing it sent is still owed
            return False
        if n < buffers.size:
            self.local_in = False
        self.tls.write(buffers.raw_view[:n])  # into the outgoing BIO: never blocks
        self.to_remote = self.outgoing.read()
        if self.remote_out:
            self._send_remote()
        return True

    def _send_remote(self) -> bool:
        """Send what TLS produced to the server, until it is all gone or the socket is full."""
        data = self.to_remote
        sock = self.sock
        sent_any = False
        while data:
            try:
                sent = sock.send(data)
            except (BlockingIOError, InterruptedError):
                self.remote_out = False
                break
            sent_any = True
            data = memoryview(data)[sent:] if sent < len(data) else b""
        self.to_remote = data
        return sent_any

    def _receive_remote(self) -> bool:
        """Receive from the server, decrypt what arrived, and give the plaintext to the client."""
        buffers = self._buffers
        incoming = self.incoming
        received = False
        if self.remote_in:
            try:
                n = self.sock.recv_into(buffers.raw)
            except (BlockingIOError, InterruptedError):
                self.remote_in = False
                n = -1
            if not n:
                self.remote_eof = received = True
                self.remote_in = False
                incoming.write_eof()
            elif n > 0:
                received = True
                if n < buffers.size:
                    self.remote_in = False
                incoming.write(buffers.raw_view[:n])
        tls = self.tls
        view = buffers.plain_view
        size = buffers.size
        filled = 0
        while filled < size:
            try:
                got: int = tls.read(size - filled, view[filled:])
            except ssl.SSLWantReadError:
                break
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                self.remote_eof, self.remote_in = True, False
                break
            if not got:
                self.remote_eof, self.remote_in = True, False
                break
            filled += got
            if not incoming.pending and not tls.pending():
                break  # everything received is decrypted: skip the read that would only raise
        if self.outgoing.pending:  # e.g. a TLS 1.3 key update answered while reading
            self.to_remote = bytes(self.to_remote) + self.outgoing.read()
            if self.remote_out:
                self._send_remote()
        if filled:
            self.to_local = view[:filled]
            self._send_local()
            if self.to_local:
                self.to_local = bytes(self.to_local)  # the plaintext buffer is reused
        return received or filled > 0

    def _send_local(self) -> bool:
        data = self.to_local
        local = self.local
        sent_any = False
        while data:
            try:
                sent = local.send(data)
            except (BlockingIOError, InterruptedError):
                self.local_out = False
                break
            sent_any = True
            data = memoryview(data)[sent:] if sent < len(data) else b""
        self.to_local = data
        return sent_any

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._poller.unregister(self.local)
        self._poller.unregister(self.sock)
        for s in (self.sock, self.local):
            try:
                s.close()
            except OSError:
                pass
        self._on_close(self)
