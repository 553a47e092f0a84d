"""The HTTP sink's own small HTTP client: one POST to one collector, bounded in time and bytes.

Every step (name lookup, connect, TLS, request, answer) runs against one
deadline, however slowly the peer trickles bytes; at most
``MAX_RESPONSE_HEAD`` bytes of the answer are read and its body never is;
redirects are not followed. Name lookups run in threads of two bounded
pools (the operator's destinations, server-chosen ones).
"""

from __future__ import annotations

import os
import re
import socket
import ssl
import threading
import time
from typing import Any, Callable, Mapping

from ._destinations import Target, check_addresses, ip

__all__ = ["MAX_LOOKUPS", "MAX_RESPONSE_HEAD", "check_headers", "post"]

#: The most bytes of a collector's answer that are read: its status line and
#: headers (the body is never read). Only the status and ``Retry-After``
#: matter; 16 KiB holds any real header block and bounds what a peer can make
#: the sender buffer.
MAX_RESPONSE_HEAD = 16 * 1024
#: Name lookups of report destinations running at once, across all sinks, for
#: the operator's destinations and (apart) for server-chosen ones.
#: ``getaddrinfo`` cannot be interrupted: a lookup that outlives its attempt's
#: deadline runs on in its own thread until the resolver gives up, and this
#: bounds how many threads a slow DNS server can hold that way. Two pools, so
#: that a hostile server's slow names never hold up the operator's lookups.
MAX_LOOKUPS = 8
_RECV_SIZE = 4096

_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
# Headers the client writes itself: an operator header may not replace them.
_FRAMING_HEADERS = frozenset(("content-length", "transfer-encoding", "connection"))
_STATUS_LINE = re.compile(rb"HTTP/[0-9]\.[0-9] ([0-9]{3})(?:[ \t][^\r\n]*)?\r?")

# One pool of lookups for the operator's destinations (False), one for server-chosen ones (True).
_lookups = {False: threading.BoundedSemaphore(MAX_LOOKUPS), True: threading.BoundedSemaphore(MAX_LOOKUPS)}


def _reset_lookups() -> None:  # pragma: no cover - runs in a forked child
    # The parent's lookup threads did not come along: their permits would be lost.
    for server in (False, True):
        _lookups[server] = threading.BoundedSemaphore(MAX_LOOKUPS)


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_reset_lookups)


class _BadAnswer(Exception):
    """A collector's answer that is not HTTP, or is too long."""


def check_headers(headers: Mapping[str, str]) -> None:
    """Raise ValueError unless ``headers`` (the operator's) can be sent as they are."""
    for name, value in headers.items():
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise ValueError(f"header name {name!r} is not a valid HTTP header name")
        if not isinstance(value, str) or not _HEADER_VALUE.fullmatch(value):
            raise ValueError(f"header {name!r}: the value holds a line break or a control character")
        if name.lower() in _FRAMING_HEADERS:
            raise ValueError(f"header {name!r} is written by the sink itself")


def post(
    target: Target, body: bytes, *, timeout: float, headers: Mapping[str, str],
    tls_context: Callable[[], ssl.SSLContext],
) -> tuple[str, float | None, str]:
    """POST once, within ``timeout`` seconds in all: ``("sent" | "retry" | "fail", retry-after, detail)``.

    ``headers`` (the operator's) are sent to the operator's destinations only;
    ``tls_context()`` gives the context of an https destination. Raises
    ``_Refused`` for a server-chosen destination that resolves to a
    non-public address.
    """
    deadline = time.monotonic() + timeout
    request = _request(target, body, headers)
    try:
        sock = _connect(target, deadline, tls_context)
        try:
            _send_all(sock, request, deadline)
            status, retry_after = _read_answer(sock, deadline)
        finally:
            sock.close()
    except OSError as exc:
        return "retry", None, f"{type(exc).__name__}: {exc}"
    except _BadAnswer as exc:
        return "fail", None, str(exc)
    if 200 <= status < 300:
        return "sent", None, str(status)
    if status in (408, 429) or status >= 500:
        return "retry", retry_after, f"HTTP {status}"
    return "fail", None, f"HTTP {status}"


def _request(target: Target, body: bytes, operator_headers: Mapping[str, str]) -> bytes:
    from .. import __version__

    headers = {
        "Host": target.host_header,
        "Content-Type": "application/json",
        "User-Agent": f"pinengine/{__version__}",
    }
    if not target.server:  # the operator's headers (credentials) go to the operator's collectors only
        for name, value in operator_headers.items():
            for standard in [h for h in headers if h.lower() == name.lower()]:
                del headers[standard]
            headers[name] = value
    lines = [f"POST {target.request_target} HTTP/1.1"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines += [f"Content-Length: {len(body)}", "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _connect(target: Target, deadline: float, tls_context: Callable[[], ssl.SSLContext]) -> socket.socket:
    """A connection (TLS done, for https) to ``target``; raise ``_Refused`` for a non-public server-chosen one."""
    infos = _resolve(target.host, target.port, deadline, target.server)
    if not infos:
        raise OSError(f"{target.host} has no address")
    check_addresses(target, infos)
    error: OSError | None = None
    for family, kind, proto, _, sockaddr in infos:  # the addresses checked above, no second lookup
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(_left(deadline))
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            error = exc
            if isinstance(exc, TimeoutError):
                break
            continue
        if target.scheme != "https":
            return sock
        context = tls_context()
        try:
            tls = context.wrap_socket(sock, server_hostname=target.host, do_handshake_on_connect=False)
        except BaseException:
            sock.close()
            raise
        try:
            tls.settimeout(_left(deadline))
            tls.do_handshake()
        except BaseException:
            tls.close()
            raise
        return tls
    assert error is not None
    raise error


def _left(deadline: float) -> float:
    """Seconds left before ``deadline`` (``time.monotonic``); TimeoutError when none are."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the attempt's deadline passed")
    return left


def _resolve(host: str, port: int, deadline: float, server: bool) -> list[tuple[Any, ...]]:
    """``getaddrinfo`` for a TCP connection to ``host``, given up on at ``deadline``."""
    if ip(host) is not None:  # an IP literal: no lookup, nothing to wait for
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP,
                                  flags=socket.AI_NUMERICHOST)
    lookups = _lookups[server]
    if not lookups.acquire(timeout=_left(deadline)):
        raise TimeoutError("too many report destination name lookups in progress")
    box: list[Any] = []
    done = threading.Event()

    def lookup() -> None:
        try:
            box.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP))
        except BaseException as exc:
            box.append(exc)
        finally:
            lookups.release()
            done.set()

    try:
        threading.Thread(target=lookup, name="pinengine-report-lookup", daemon=True).start()
    except BaseException:
        lookups.release()
        raise
    if not done.wait(max(0.0, deadline - time.monotonic())):
        raise TimeoutError(f"looking up {host} took longer than the attempt's deadline")
    result = box[0]
    if isinstance(result, BaseException):
        raise result
    return result  # type: ignore[no-any-return]


def _send_all(sock: socket.socket, data: bytes, deadline: float) -> None:
    view = memoryview(data)
    while view:
        sock.settimeout(_left(deadline))
        sent = sock.send(view)
        view = view[sent:]


def _read_answer(sock: socket.socket, deadline: float) -> tuple[int, float | None]:
    """Read the answer's head (skipping 1xx ones): its status and ``Retry-After`` seconds.

    At most MAX_RESPONSE_HEAD bytes are read in all, each read with the time
    left before ``deadline``: a peer that trickles bytes cannot hold it longer.
    """
    buf = bytearray()
    scanned = 0
    total = 0
    while True:
        end = -1
        crlf = buf.find(b"\r\n\r\n", max(0, scanned - 3))
        lf = buf.find(b"\n\n", max(0, scanned - 1))
        if crlf >= 0:
            end = crlf + 4
        if lf >= 0 and (end < 0 or lf + 2 < end):
            end = lf + 2
        scanned = len(buf)
        if end >= 0:
            status, retry_after = _parse_head(bytes(buf[:end]))
            if status >= 200:
                return status, retry_after
            del buf[:end]  # an interim answer (100 Continue): the real one follows
            scanned = 0
            continue
        if total >= MAX_RESPONSE_HEAD:
            raise _BadAnswer(f"the answer's head is longer than {MAX_RESPONSE_HEAD} bytes")
        sock.settimeout(_left(deadline))
        chunk = sock.recv(min(_RECV_SIZE, MAX_RESPONSE_HEAD - total))
        if not chunk:
            raise ConnectionError("the collector closed the connection before answering")
        total += len(chunk)
        buf += chunk


def _parse_head(head: bytes) -> tuple[int, float | None]:
    lines = head.split(b"\n")
    match = _STATUS_LINE.fullmatch(lines[0])
    if match is None:
        raise _BadAnswer(f"the answer is not HTTP: {lines[0][:80]!r}")
    retry_after = None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"retry-after":
            value = value.strip()
            if value.isdigit() and len(value) <= 9:
                retry_after = float(value)
    return int(match.group(1)), retry_after
