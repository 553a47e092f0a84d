"""HTTP CONNECT: the request the relay sends a proxy, and the proxy's answer, read within bounds.

The answer is everything up to its blank line; it is collected in one
buffer and scanned once (linear), bounded by ``MAX_ANSWER`` bytes (the relay
also bounds it in time). Only a 2xx status opens the tunnel. Nothing may
follow the blank line before the client's first TLS bytes (a TLS server
speaks second), so anything that does is refused instead of being taken
for the server's.
"""

from __future__ import annotations

import re

__all__ = ["MAX_ANSWER", "ConnectAnswer", "connect_request"]

#: The most of a proxy's answer (status line and headers) read before giving
#: up. Real answers are a status line and a few short headers (~100 bytes);
#: grpc's own parser takes lines of up to 4 KiB, so two of those fit.
MAX_ANSWER = 8 * 1024
#: The most of the status line's reason phrase quoted in an error.
_REASON_SHOWN = 80
_STATUS_RE = re.compile(rb"HTTP/1\.[01] ([0-9]{3})(?: ([^\r\n]*))?\r?\n")
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")


def connect_request(authority: str, headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    """``CONNECT authority HTTP/1.1`` with ``Host`` and ``headers``; no control characters allowed."""
    for text in (authority, *(part for header in headers for part in header)):
        if _UNSAFE.search(text):
            raise ValueError("a CONNECT request cannot carry control characters (CR, LF, NUL...)")
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class ConnectAnswer:
    """Collects a proxy's answer to CONNECT; ``feed`` says when it is complete and whether it is a 2xx."""

    __slots__ = ("_buf", "_scanned", "status")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._scanned = 0
        self.status = 0

    def room(self) -> int:
        """How many more bytes may be read (one more than the bound, to see it exceeded)."""
        return MAX_ANSWER + 1 - len(self._buf)

    def feed(self, data: bytes) -> bool:
        """Add received bytes; True when the answer is complete and opens the tunnel.

        Raises ConnectionRefusedError for a status other than 2xx, and
        ConnectionError for an answer over ``MAX_ANSWER`` bytes, a malformed
        status line, or bytes after the answer.
        """
        self._buf += data
        buf = self._buf
        start = max(0, self._scanned - 2)
        end = -1
        for marker in (b"\n\r\n", b"\n\n"):
            i = buf.find(marker, start)
            if i >= 0 and (end < 0 or i + len(marker) < end):
                end = i + len(marker)
        if end < 0:
            if len(buf) > MAX_ANSWER:
                raise ConnectionError(f"the proxy's answer to CONNECT is over {MAX_ANSWER} bytes")
            self._scanned = len(buf)
            return False
        if end > MAX_ANSWER:
            raise ConnectionError(f"the proxy's answer to CONNECT is over {MAX_ANSWER} bytes")
        match = _STATUS_RE.match(buf)
        if match is None:
            raise ConnectionError(f"the proxy's answer to CONNECT is not HTTP: {_shown(bytes(buf[:40]))}")
        self.status = int(match.group(1))
        if not 200 <= self.status < 300:
            raise ConnectionRefusedError(
                f"the proxy refused the tunnel: {self.status} {_shown(match.group(2) or b'')}".rstrip()
            )
        if end != len(buf):
            raise ConnectionError("the proxy sent data after its answer to CONNECT, before the TLS handshake")
        return True


def _shown(raw: bytes) -> str:
    text = raw.decode("latin-1")[:_REASON_SHOWN]
    return repr(text) if _UNSAFE.search(text) else text
