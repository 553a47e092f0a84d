"""A private redis-server for the store tests: 127.0.0.1, a free port, no persistence, its own directory."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pong(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """A running redis-server process; ``stop()`` ends it."""

    def __init__(self, binary: str, directory: Path, port: int) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.log = directory / f"redis-{port}.log"
        self.process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(directory), "--logfile", str(self.log), "--daemonize", "no"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float) -> bool:
        """True once the server answers PING; False if it exited or did not answer in time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            if _pong(self.port):
                return True
            time.sleep(0.02)
        return False

    def stop(self) -> None:
        """Terminate the server (kill it if it lingers) and reap it."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start(binary: str, directory: Path, attempts: int = 5) -> RedisServer:
    """Start redis-server on a free port (trying again if another process took the port first)."""
    log = ""
    for _ in range(attempts):
        server = RedisServer(binary, directory, free_port())
        if server.wait_ready(timeout=10):
            return server
        server.stop()
        log = server.log.read_text(errors="replace")[-2000:] if server.log.exists() else "(no log)"
    raise RuntimeError(f"redis-server did not start after {attempts} attempts; last log:\n{log}")
