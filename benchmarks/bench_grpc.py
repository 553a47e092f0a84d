"""4. gRPC: a pinned channel (``pinengine.hooks.grpc``) beside ``grpc.secure_channel``: every row of issue 14's table.

Run from the repository root (it is a script, not a pytest-benchmark file)::

    python benchmarks/bench_grpc.py                 # one to three minutes on 2 cores
    python benchmarks/bench_grpc.py --rounds 5      # a quick look
    python benchmarks/bench_grpc.py --json out.json # every sample, for later reading

Both channels talk to the same grpcio TLS servers, each in its own process
(``python -m tests.grpc_server``), with the same CA; the pinned channel's
policy pins the intermediate. Every timed row runs in interleaved rounds (one
sample of plain, one of pinned, the order swapped every round), so the
machine's load moves both alike; each row gives the ratio pinned/plain as the
median over rounds with its quartiles, and beside it the absolute time the
pinned channel adds (median over rounds), because loopback exaggerates the
share that a real network would hide.

Rows:

- round_robin over ``ipv4:127.0.0.1:A,127.0.0.1:B``: which backends 40 RPCs reached;
- ``grpc.http_proxy`` (a CONNECT proxy on loopback): whether each channel used it;
- unary RPC p50, 100-byte messages: the median of 200 sequential RPCs per round;
- unary RPC, 1 MiB messages each way: the median of 8 sequential RPCs per round;
- bidi stream, 64 KiB messages: one call per round streaming 32 messages each
  way (pipelined); the time per message;
- client CPU per MiB: this process's CPU time (every thread: grpc's and the
  relay's) over the 1 MiB and 64 KiB rows, per MiB of payload sent and received;
- new channel + first RPC: channel, TLS handshake and pin check, one RPC, close;
  the median of 4 per round.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402

from pinengine import Pin, PinPolicy, backend  # noqa: E402
from pinengine.hooks.grpc import secure_channel  # noqa: E402
from tests.grpc_server import BIDI_STREAM, UNARY, WHERE  # noqa: E402
from tests.proxy import ConnectProxy  # noqa: E402

SMALL = b"s" * 100
LARGE = b"L" * (1 << 20)
CHUNK = b"c" * (64 << 10)
MIB = float(1 << 20)
BIG_OPTIONS = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]
ROUND_ROBIN = [("grpc.service_config", json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})),
               ("grpc.ssl_target_name_override", "localhost")]


class Servers:
    """Two grpcio TLS servers, each in its own process, serving one chain for ``localhost``."""

    def __init__(self, workers: int = 4) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="pinengine-bench-grpc-")
        self.procs: list[subprocess.Popen[bytes]] = []
        self.ports: list[int] = []
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        for _ in range(2):
            proc = subprocess.Popen([sys.executable, "-m", "tests.grpc_server", self._dir.name, str(workers)],
                                    cwd=str(ROOT), stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
            assert proc.stdout is not None
            self.procs.append(proc)
            self.ports.append(int(proc.stdout.readline()))
        self.root = Path(self._dir.name, "root.pem").read_bytes()
        raw = Path(self._dir.name, "chain.der").read_bytes()
        self.ders = []
        i = 0
        while i < len(raw):
            n = int.from_bytes(raw[i:i + 4], "big")
            self.ders.append(raw[i + 4:i + 4 + n])
            i += 4 + n

    def close(self) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.close()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        self._dir.cleanup()


def _policy(servers: Servers) -> PinPolicy:
    backup = "sha256/" + "A" * 43 + "="
    return PinPolicy.from_mapping(
        {"domains": [{"host": "localhost", "pins": [str(Pin.from_certificate(servers.ders[1])), backup]}]}
    )


def _make(kind: str, servers: Servers, policy: PinPolicy, target: str, options: list[tuple[str, Any]]) -> Any:
    if kind == "plain":
        return grpc.secure_channel(target, grpc.ssl_channel_credentials(servers.root), options=options)
    return secure_channel(target, policy, root_certificates=servers.root, options=options)


# -- the rows -----------------------------------------------------------------------


def row_round_robin(servers: Servers, policy: PinPolicy) -> dict[str, Any]:
    a, b = servers.ports
    target = f"ipv4:127.0.0.1:{a},127.0.0.1:{b}"
    out: dict[str, Any] = {}
    for kind in ("plain", "pinned"):
        with _make(kind, servers, policy, target, ROUND_ROBIN) as channel:
            where = channel.unary_unary(WHERE)
            seen: dict[str, int] = {}
            for _ in range(40):
                name = where(b"", timeout=10, wait_for_ready=True).decode()
                seen[name] = seen.get(name, 0) + 1
            out[kind] = dict(sorted(seen.items()))
    return out


def row_proxy(servers: Servers, policy: PinPolicy) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with ConnectProxy() as proxy:
        for kind in ("plain", "pinned"):
            before = len(proxy.tunnels)
            options = [("grpc.http_proxy", proxy.url)]
            with _make(kind, servers, policy, f"localhost:{servers.ports[0]}", options) as channel:
                assert channel.unary_unary(UNARY)(SMALL, timeout=10) == SMALL
            out[kind] = "used" if len(proxy.tunnels) > before else "not used"
    return out


def _unary_sample(channel: Any, payload: bytes, count: int) -> tuple[float, float]:
    """(median seconds per RPC, CPU seconds) of ``count`` sequential RPCs."""
    call = channel.unary_unary(UNARY)
    times = []
    cpu = time.process_time()
    for _ in range(count):
        start = time.perf_counter()
        if call(payload, timeout=30) != payload:
            raise AssertionError("bad echo")
        times.append(time.perf_counter() - start)
    return statistics.median(times), time.process_time() - cpu


def _bidi_sample(channel: Any, count: int) -> tuple[float, float]:
    """(seconds per message, CPU seconds) of one bidi call streaming ``count`` 64 KiB messages each way."""
    call = channel.stream_stream(BIDI_STREAM)
    cpu = time.process_time()
    start = time.perf_counter()
    got = 0
    for message in call(iter([CHUNK] * count), timeout=60):
        got += len(message)
    elapsed = time.perf_counter() - start
    if got != count * len(CHUNK):
        raise AssertionError("bad echo")
    return elapsed / count, time.process_time() - cpu


def _setup_sample(servers: Servers, policy: PinPolicy, kind: str, count: int) -> tuple[float, float]:
    times = []
    for _ in range(count):
        start = time.perf_counter()
        channel = _make(kind, servers, policy, f"localhost:{servers.ports[0]}", [])
        try:
            if channel.unary_unary(UNARY)(SMALL, timeout=10) != SMALL:
                raise AssertionError("bad echo")
        finally:
            channel.close()
        times.append(time.perf_counter() - start)
    return statistics.median(times), 0.0


def interleaved(rounds: int, sample: Callable[[str, int], tuple[float, float]]) -> dict[str, list[float]]:
    """Per round, one sample of each kind, the order swapped every round: seconds and CPU seconds per kind."""
    out: dict[str, list[float]] = {"plain": [], "pinned": [], "plain_cpu": [], "pinned_cpu": []}
    for r in range(rounds):
        for kind in (("plain", "pinned") if r % 2 == 0 else ("pinned", "plain")):
            seconds, cpu = sample(kind, r)
            out[kind].append(seconds)
            out[f"{kind}_cpu"].append(cpu)
    return out


def _spread(values: list[float]) -> tuple[float, float, float]:
    if len(values) < 2:
        return values[0], values[0], values[0]
    q = statistics.quantiles(values, n=4)
    return statistics.median(values), q[0], q[2]


def summarize(samples: dict[str, list[float]], unit_scale: float, unit: str) -> dict[str, Any]:
    ratios = [p / q for p, q in zip(samples["pinned"], samples["plain"])]
    added = [(p - q) * unit_scale for p, q in zip(samples["pinned"], samples["plain"])]
    return {
        "plain": statistics.median(samples["plain"]) * unit_scale,
        "pinned": statistics.median(samples["pinned"]) * unit_scale,
        "ratio": _spread(ratios),
        "added": _spread(added),
        "unit": unit,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds per timed row (default 15)")
    parser.add_argument("--json", help="write every sample to this file")
    parser.add_argument("--only", help="comma-separated rows to run (rr,proxy,small,large,bidi,setup)")
    args = parser.parse_args(argv)
    only = set(args.only.split(",")) if args.only else {"rr", "proxy", "small", "large", "bidi", "setup"}
    servers = Servers()
    policy = _policy(servers)
    results: dict[str, Any] = {
        "machine": {"nproc": os.cpu_count(), "load_at_start": os.getloadavg(), "python": platform.python_version(),
                    "grpcio": grpc.__version__, "pinengine_backend": backend(), "rounds": args.rounds},
    }
    try:
        if "rr" in only:
            results["round_robin"] = row_round_robin(servers, policy)
        if "proxy" in only:
            results["proxy"] = row_proxy(servers, policy)
        target = f"localhost:{servers.ports[0]}"
        channels = {kind: _make(kind, servers, policy, target, BIG_OPTIONS) for kind in ("plain", "pinned")}
        try:
            for channel in channels.values():  # connected and warm
                _unary_sample(channel, SMALL, 300)
                _unary_sample(channel, LARGE, 3)
                _bidi_sample(channel, 8)
            if "small" in only:
                samples = interleaved(args.rounds, lambda kind, r: _unary_sample(channels[kind], SMALL, 200))
                results["unary_100B"] = {"samples": samples, **summarize(samples, 1e6, "µs")}
            cpu_mib: dict[str, list[float]] = {"plain": [], "pinned": []}
            if "large" in only:
                samples = interleaved(args.rounds, lambda kind, r: _unary_sample(channels[kind], LARGE, 8))
                results["unary_1MiB"] = {"samples": samples, **summarize(samples, 1e3, "ms")}
                for kind in cpu_mib:
                    cpu_mib[kind] += [c / (8 * 2) for c in samples[f"{kind}_cpu"]]  # 8 RPCs, 1 MiB each way
            if "bidi" in only:
                samples = interleaved(args.rounds, lambda kind, r: _bidi_sample(channels[kind], 32))
                results["bidi_64KiB"] = {"samples": samples, **summarize(samples, 1e6, "µs")}
                for kind in cpu_mib:
                    cpu_mib[kind] += [c / (32 * 2 / 16) for c in samples[f"{kind}_cpu"]]  # 32 x 64 KiB each way
            if cpu_mib["plain"]:
                results["cpu_per_MiB"] = {"samples": cpu_mib, **summarize(cpu_mib, 1e3, "ms CPU")}
        finally:
            for channel in channels.values():
                channel.close()
        if "setup" in only:
            samples = interleaved(args.rounds, lambda kind, r: _setup_sample(servers, policy, kind, 4))
            results["new_channel"] = {"samples": samples, **summarize(samples, 1e3, "ms")}
    finally:
        servers.close()
    results["machine"]["load_at_end"] = os.getloadavg()
    print(report(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    return 0


GOALS = {"unary_100B": 1.10, "unary_1MiB": 1.15, "bidi_64KiB": 1.10, "cpu_per_MiB": 1.25, "new_channel": 1.5}
TITLES = {
    "unary_100B": "unary RPC p50, 100-byte messages",
    "unary_1MiB": "unary RPC with 1 MiB messages",
    "bidi_64KiB": "bidi stream, 64 KiB messages (per message)",
    "cpu_per_MiB": "client CPU per MiB",
    "new_channel": "new channel + first RPC",
}


def report(results: dict[str, Any]) -> str:
    """The table of issue 14, with this run's figures."""
    m = results["machine"]
    lines = [
        f"gRPC, plain vs pinned: {m['rounds']} interleaved rounds, {m['nproc']} CPUs, load "
        f"{m['load_at_start'][0]:.1f} -> {m['load_at_end'][0]:.1f}, Python {m['python']}, grpcio {m['grpcio']}, "
        f"pinengine core {m['pinengine_backend']}",
        "",
        "| what | plain grpc | pinned | ratio pinned/plain: median (quartiles) | added by pinning: median (quartiles) | goal |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    if "round_robin" in results:
        rr = results["round_robin"]
        lines.append(f"| round_robin over 2 backends, 40 RPCs | {_counts(rr['plain'])} | {_counts(rr['pinned'])} "
                     "| | | both, as grpc does |")
    if "proxy" in results:
        px = results["proxy"]
        lines.append(f"| grpc.http_proxy (CONNECT proxy) | {px['plain']} | {px['pinned']} | | | used, as grpc does |")
    for key, title in TITLES.items():
        row = results.get(key)
        if not row:
            continue
        r, a, unit = row["ratio"], row["added"], row["unit"]
        met = "met" if r[0] <= GOALS[key] else "not met"
        lines.append(
            f"| {title} | {row['plain']:,.1f} {unit} | {row['pinned']:,.1f} {unit} | "
            f"x{r[0]:.3f} ({r[1]:.3f}-{r[2]:.3f}) | {a[0]:+,.1f} {unit} ({a[1]:+,.1f}…{a[2]:+,.1f}) "
            f"| <= x{GOALS[key]:.2f}: {met} |"
        )
    return "\n".join(lines)


def _counts(seen: dict[str, int]) -> str:
    return ", ".join(f"{port.rpartition(':')[2]}: {n}" for port, n in seen.items())


if __name__ == "__main__":
    raise SystemExit(main())
