"""4. gRPC: unary RPCs over a plain ``grpc.secure_channel`` vs a pinned channel (``pinengine.hooks.grpc``).

Both channels talk to the same grpcio TLS server, which runs in its own
process (``python -m tests.grpc_server``) so that it does not share this
process's GIL. Both are established (connected and warmed up) before timing,
so the figures are the steady-state cost per RPC: for the pinned channel,
that is the local forwarder's relay (unix socket -> Python relay thread ->
TLS), since the pin check runs once per connection, not per RPC.

Groups:

- latency: 100 sequential unary RPCs per round (64-byte payload), one caller;
- throughput: 320 unary RPCs per round, 32 in flight at a time (futures);
- latency, 64 KiB payload: 20 sequential unary RPCs per round (the relay moving bulk data);
- connection set-up: a new channel and its first RPC (TLS handshake + pin check), per channel;
- grpc.aio latency: 100 sequential awaited unary RPCs per round on ``grpc.aio`` channels.

The latency test of the pinned channel also runs an interleaved
cross-check (one round of plain, one of pinned, back to back, 15 times) and
records the ratios in ``extra_info["interleaved_ratios"]``; on a shared
machine this is the fairer comparison, since pytest-benchmark runs one
contestant after the other. A summary is printed at the end of the run.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

grpc = pytest.importorskip("grpc")

from pinengine import Pin, PinPolicy  # noqa: E402
from pinengine.hooks.grpc import secure_channel  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
UNARY = "/pinengine.test.Echo/Unary"
LATENCY = "grpc-unary-latency: sequential unary RPCs, 64-byte payload, established channel"
THROUGHPUT = "grpc-unary-throughput: 32 RPCs in flight (futures), 64-byte payload, established channel"
BULK = "grpc-unary-latency-64k: sequential unary RPCs, 64 KiB payload each way"
SETUP = "grpc-connection-setup: new channel + first RPC (TLS handshake, pin check)"
AIO = "grpc-aio-unary-latency: sequential awaited unary RPCs, 64-byte payload, established grpc.aio channel"
SMALL = b"p" * 64
LARGE = b"L" * 65536
LATENCY_RPCS = 100
THROUGHPUT_RPCS, WINDOW = 320, 32
BULK_RPCS = 20

_summary: dict[str, Any] = {}


@pytest.fixture(scope="module")
def server() -> Iterator[dict[str, Any]]:
    """A grpcio TLS server in its own process: its port, root PEM and chain."""
    with tempfile.TemporaryDirectory(prefix="pinengine-bench-grpc-") as d:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.grpc_server", d, "4"],
            cwd=str(ROOT),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])},
        )
        try:
            assert proc.stdout is not None
            port = int(proc.stdout.readline())
            root = Path(d, "root.pem").read_bytes()
            raw = Path(d, "chain.der").read_bytes()
            ders = []
            i = 0
            while i < len(raw):
                n = int.from_bytes(raw[i:i + 4], "big")
                ders.append(raw[i + 4:i + 4 + n])
                i += 4 + n
            yield {"port": port, "root": root, "ders": ders, "target": f"localhost:{port}"}
        finally:
            assert proc.stdin is not None
            proc.stdin.close()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="module")
def policy(server: dict[str, Any]) -> PinPolicy:
    backup = "sha256/" + "A" * 43 + "="
    return PinPolicy.from_mapping(
        {"domains": [{"host": "localhost", "pins": [str(Pin.from_certificate(server["ders"][1])), backup]}]}
    )


@pytest.fixture(scope="module")
def channels(server: dict[str, Any], policy: PinPolicy) -> Iterator[dict[str, Any]]:
    """Both channels, established and warmed up."""
    plain = grpc.secure_channel(server["target"], grpc.ssl_channel_credentials(server["root"]))
    pinned = secure_channel(server["target"], policy, root_certificates=server["root"])
    for channel in (plain, pinned):
        unary = channel.unary_unary(UNARY)
        for _ in range(300):
            assert unary(SMALL, timeout=10) == SMALL
    assert pinned.connections_established == 1
    assert pinned.pin_result is not None and pinned.pin_result.status == "match"
    yield {"plain": plain, "pinned": pinned}
    pinned.close()
    plain.close()


def _sequential(channel: Any, payload: bytes, count: int) -> Callable[[], int]:
    unary = channel.unary_unary(UNARY)

    def run() -> int:
        for _ in range(count):
            if unary(payload, timeout=10) != payload:
                raise AssertionError("bad echo")
        return count

    return run


def _windowed(channel: Any, payload: bytes, count: int, window: int) -> Callable[[], int]:
    unary = channel.unary_unary(UNARY)

    def run() -> int:
        done = 0
        while done < count:
            futures = [unary.future(payload, timeout=10) for _ in range(window)]
            for f in futures:
                if f.result() != payload:
                    raise AssertionError("bad echo")
            done += window
        return done

    return run


def _interleaved(
    runs: dict[str, Callable[[], int]], base: str, pairs: int = 15
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """One round of each contestant back to back, ``pairs`` times.

    Returns (wall-time ratios other/base per pair, this process's CPU seconds
    per RPC for each contestant per pair). The CPU figure counts every thread
    of the client process (grpc's, and the pinned channel's relay), not the
    server's; it moves much less with the machine's load than wall time.
    """
    ratios: dict[str, list[float]] = {name: [] for name in runs if name != base}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(pairs):
        times = {}
        for name, run in runs.items():
            c0 = time.process_time()
            start = time.perf_counter()
            items = run()
            times[name] = time.perf_counter() - start
            cpu[name].append((time.process_time() - c0) / items)
        for name in ratios:
            ratios[name].append(round(times[name] / times[base], 4))
    return ratios, cpu


def _info(benchmark: Any, items: int, contestant: str) -> None:
    benchmark.extra_info.update(items=items, unit="RPC", contestant=contestant)


def _record(key: str, benchmark: Any, items: int) -> None:
    stats = benchmark.stats.stats
    _summary[key] = {"median": stats.median / items, "min": stats.min / items}


@pytest.mark.benchmark(group=LATENCY)
@pytest.mark.parametrize("kind", ["plain", "pinned"])
def test_grpc_latency(benchmark: Any, channels: dict[str, Any], kind: str) -> None:
    _info(benchmark, LATENCY_RPCS, f"{kind} channel")
    run = _sequential(channels[kind], SMALL, LATENCY_RPCS)
    assert benchmark.pedantic(run, rounds=30, warmup_rounds=2) == LATENCY_RPCS
    _record(f"latency/{kind}", benchmark, LATENCY_RPCS)
    if kind == "pinned":
        runs = {name: _sequential(channels[name], SMALL, LATENCY_RPCS) for name in ("plain", "pinned")}
        ratios, cpu = _interleaved(runs, "plain", pairs=31)
        benchmark.extra_info["interleaved_ratios"] = {"pinned/plain": ratios["pinned"]}
        benchmark.extra_info["client_cpu_per_rpc"] = cpu
        _summary["latency/interleaved"] = ratios["pinned"]
        _summary["latency/cpu"] = cpu


@pytest.mark.benchmark(group=THROUGHPUT)
@pytest.mark.parametrize("kind", ["plain", "pinned"])
def test_grpc_throughput(benchmark: Any, channels: dict[str, Any], kind: str) -> None:
    _info(benchmark, THROUGHPUT_RPCS, f"{kind} channel, {WINDOW} in flight")
    run = _windowed(channels[kind], SMALL, THROUGHPUT_RPCS, WINDOW)
    assert benchmark.pedantic(run, rounds=15, warmup_rounds=1) == THROUGHPUT_RPCS
    _record(f"throughput/{kind}", benchmark, THROUGHPUT_RPCS)
    if kind == "pinned":
        runs = {name: _windowed(channels[name], SMALL, THROUGHPUT_RPCS, WINDOW) for name in ("plain", "pinned")}
        ratios, cpu = _interleaved(runs, "plain", pairs=9)
        benchmark.extra_info["interleaved_ratios"] = {"pinned/plain": ratios["pinned"]}
        benchmark.extra_info["client_cpu_per_rpc"] = cpu
        _summary["throughput/interleaved"] = ratios["pinned"]
        _summary["throughput/cpu"] = cpu


@pytest.mark.benchmark(group=BULK)
@pytest.mark.parametrize("kind", ["plain", "pinned"])
def test_grpc_latency_64k(benchmark: Any, channels: dict[str, Any], kind: str) -> None:
    _info(benchmark, BULK_RPCS, f"{kind} channel, 64 KiB each way")
    run = _sequential(channels[kind], LARGE, BULK_RPCS)
    assert benchmark.pedantic(run, rounds=20, warmup_rounds=2) == BULK_RPCS
    _record(f"bulk/{kind}", benchmark, BULK_RPCS)
    if kind == "pinned":
        runs = {name: _sequential(channels[name], LARGE, BULK_RPCS) for name in ("plain", "pinned")}
        ratios, cpu = _interleaved(runs, "plain", pairs=9)
        benchmark.extra_info["interleaved_ratios"] = {"pinned/plain": ratios["pinned"]}
        benchmark.extra_info["client_cpu_per_rpc"] = cpu
        _summary["bulk/interleaved"] = ratios["pinned"]
        _summary["bulk/cpu"] = cpu


@pytest.mark.benchmark(group=SETUP)
@pytest.mark.parametrize("kind", ["plain", "pinned"])
def test_grpc_connection_setup(benchmark: Any, server: dict[str, Any], policy: PinPolicy, kind: str) -> None:
    benchmark.extra_info.update(items=1, unit="channel", contestant=f"{kind}: new channel, first RPC, close")

    def run() -> None:
        if kind == "plain":
            channel = grpc.secure_channel(server["target"], grpc.ssl_channel_credentials(server["root"]))
        else:
            channel = secure_channel(server["target"], policy, root_certificates=server["root"])
        try:
            assert channel.unary_unary(UNARY)(SMALL, timeout=10) == SMALL
        finally:
            channel.close()

    benchmark.pedantic(run, rounds=20, warmup_rounds=2)
    _record(f"setup/{kind}", benchmark, 1)


@pytest.mark.benchmark(group=AIO)
@pytest.mark.parametrize("kind", ["plain", "pinned"])
def test_grpc_aio_latency(benchmark: Any, server: dict[str, Any], policy: PinPolicy, kind: str) -> None:
    import asyncio

    from pinengine.hooks.grpc import aio_secure_channel

    _info(benchmark, LATENCY_RPCS, f"{kind} grpc.aio channel")
    loop = asyncio.new_event_loop()

    async def make() -> Any:
        if kind == "plain":
            return grpc.aio.secure_channel(server["target"], grpc.ssl_channel_credentials(server["root"]))
        return aio_secure_channel(server["target"], policy, root_certificates=server["root"])

    channel = loop.run_until_complete(make())
    unary = channel.unary_unary(UNARY)

    async def rounds(count: int) -> int:
        for _ in range(count):
            if await unary(SMALL, timeout=10) != SMALL:
                raise AssertionError("bad echo")
        return count

    try:
        loop.run_until_complete(rounds(300))
        result = benchmark.pedantic(lambda: loop.run_until_complete(rounds(LATENCY_RPCS)), rounds=20, warmup_rounds=1)
        assert result == LATENCY_RPCS
        _record(f"aio/{kind}", benchmark, LATENCY_RPCS)
    finally:
        loop.run_until_complete(channel.close())
        loop.close()


def _fmt(seconds: float) -> str:
    return f"{seconds * 1e6:,.1f} µs" if seconds < 1e-3 else f"{seconds * 1e3:,.3f} ms"


@pytest.fixture(scope="module", autouse=True)
def _print_summary(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if not _summary:
        return
    lines = ["", "gRPC plain vs pinned (per RPC; ratio pinned/plain):"]
    for group in ("latency", "throughput", "bulk", "setup", "aio"):
        plain, pinned = _summary.get(f"{group}/plain"), _summary.get(f"{group}/pinned")
        if plain and pinned:
            lines.append(
                f"  {group:<10} plain median {_fmt(plain['median'])} min {_fmt(plain['min'])} | "
                f"pinned median {_fmt(pinned['median'])} min {_fmt(pinned['min'])} | "
                f"ratio median {pinned['median'] / plain['median']:.3f} min {pinned['min'] / plain['min']:.3f}"
            )
        inter = _summary.get(f"{group}/interleaved")
        if inter:
            q = statistics.quantiles(inter, n=4) if len(inter) > 1 else [inter[0]] * 3
            lines.append(
                f"  {'':<10} interleaved pinned/plain: median {statistics.median(inter):.3f} "
                f"(quartiles {q[0]:.3f}-{q[2]:.3f}, min {min(inter):.3f}, max {max(inter):.3f}, {len(inter)} pairs)"
            )
        cpu = _summary.get(f"{group}/cpu")
        if cpu:
            plain_cpu, pinned_cpu = statistics.median(cpu["plain"]), statistics.median(cpu["pinned"])
            lines.append(
                f"  {'':<10} client process CPU per RPC (median of pairs): plain {_fmt(plain_cpu)}, "
                f"pinned {_fmt(pinned_cpu)} (+{_fmt(pinned_cpu - plain_cpu)})"
            )
    text = "\n".join(lines)
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if capture is not None and reporter is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(text)
    else:  # pragma: no cover
        print(text)
