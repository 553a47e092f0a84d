"""The decision path of issue 13, every row of its table in ONE run, as ratios.

    python benchmarks/bench_decision_path.py [--rounds 5] [--rows 1,2,...,8] [--json FILE] [--quick]

A plain script (not pytest-benchmark; nothing asserts a timing). Each row's
contestants run in interleaved rounds (the order alternates from round to
round), each round gives one figure, and the table shows the median with the
spread (min-max over the rounds), the issue's goal and whether the median
meets it. It measures whichever core is active (``PINENGINE_NO_EXTENSIONS=1``
for the twin), through the public API, so that the same script runs before
and after a change to the decision path.

 1. extra client CPU per TLS 1.3 handshake, pinned context vs plain context
    (same CA): real loopback handshakes, the server in its own process
    (multiprocessing, spawn), client process CPU time (``time.process_time``)
    per handshake; no session resumption, and the server presents a
    different leaf certificate (same intermediate) on every connection, so
    nothing the client remembers from one handshake serves the next.
 2. ``policy.verify(host, 3-cert chain)`` against a 1,000-entry policy,
    relative to ``pinengine.spki_sha256`` of the same 3 certificates.
 3. ``verify_batch`` over 4,000 distinct chains (4,000 hosts), 2 threads
    (2,000 each) vs 1 thread, counted only in rounds where a hashlib control
    (``hashlib.sha256`` over 1 MiB blocks, GIL released) reached >= 1.8x
    on 2 threads.
 4. ``verify_batch`` throughput relative to the core's ``match_chains`` over
    the same jobs (the same chains, one PinSet per entry, built by the core).
 5. bytes per entry of a 100,000-entry policy whose entries share two CA
    pins, after every host was verified once: the RSS delta
    (``/proc/self/statm``) in a fresh subprocess, the policy loaded from its
    JSON text (RSS, not tracemalloc: it counts memory the core allocates
    with malloc too).
 6. ``PinPolicy.from_mapping`` of that policy relative to ``json.loads`` of
    the same document.
 7. ``pinengine.spki_sha256`` per call over the certifi roots relative to
    bare C SHA-256 over the same SPKI bytes: the C figure comes from
    ``c_breakdown.c`` (compiled here, as ``c_breakdown.py`` does; needs cc),
    its "sha256(spki), dispatched" line, best of its batches; the Python
    figure is the best of as many batches of the same shape.
 8. ``pinengine check`` of a policy file of 100,000 entries (the generator of
    ``bench_check_overlap.py``), the real command in a subprocess, wall time
    (loading the file included); and of 25,000 entries for the growth (4x
    the entries: ~4x the time for n log n, ~16x for quadratic). The goal's
    "in seconds" is read as under 20 s, and n log n as under 6x the time.

Rounds: ``--rounds`` (default 5) for rows 1-4 (rows 1 and 2 run 8x and 4x as many
short rounds, rows 3 and 4 2x-4x), at most 3 for rows 6 and 7 and at most 2
for rows 5 and 8 (seconds each); the whole default run takes ~2-3 min.

``--quick`` is a smoke run (~30 s): 2 rounds and smaller sizes, which the
table says; its figures are not the issue's.
"""

from __future__ import annotations

import argparse
import base64
import datetime as _dt
import gc
import hashlib
import json
import logging
import multiprocessing
import os
import re
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for _p in (str(ROOT), str(HERE)):
    if _p not in sys.path:
        sys.path.insert(0, _p)  # tests.certs (certificate builders), bench_check_overlap

HOST = "handshake.decision.bench.example"
BACKUP = bytes(range(32))
ALL_ROWS = (1, 2, 3, 4, 5, 6, 7, 8)


# -- helpers ----------------------------------------------------------------------


class Sizes:
    """How much work each row does; --quick shrinks it (and the table says so)."""

    def __init__(self, rounds: int, quick: bool) -> None:
        self.quick = quick
        self.rounds = rounds
        self.handshake_rounds = rounds * 8  # short rounds, many of them: the median of many differences
        self.handshakes = 20 if quick else 50  # per context per round
        self.policy_entries = 1000
        self.verify_calls = 1000 if quick else 2000
        self.batch_chains = 1000 if quick else 4000
        self.batch_rounds = max(rounds * 4, 4)
        self.big_policy = 10_000 if quick else 100_000
        self.heavy_rounds = min(rounds, 3)  # rows 6 and 7: seconds per round
        self.memory_rounds = min(rounds, 2)  # row 5: a fresh process each, ~12 s
        self.check_rounds = 1 if quick else min(rounds, 2)  # row 8: ~14 s a round
        self.check_sizes = (2_500, 10_000) if quick else (25_000, 100_000)


def spread(xs: Sequence[float]) -> dict[str, float]:
    return {"min": min(xs), "median": statistics.median(xs), "max": max(xs)}


def fmt_spread(xs: Sequence[float], fmt: str, unit: str = "") -> str:
    s = spread(xs)
    return f"{s['median']:{fmt}}{unit} ({s['min']:{fmt}}-{s['max']:{fmt}}, {len(xs)} rounds)"


def pin_text(digest: bytes) -> str:
    return "sha256/" + base64.b64encode(digest).decode("ascii")


def row_result(row: int, what: str, figure: str, goal: str, verdict: str, **data: Any) -> dict[str, Any]:
    return {"row": row, "what": what, "figure": figure, "goal": goal, "verdict": verdict, **data}


def _der(cert: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(cert.public_bytes(serialization.Encoding.DER))


def quiet_logs() -> None:
    for name in ("pinengine", "pinengine.reports"):
        logging.getLogger(name).disabled = True


# -- row 1: TLS 1.3 handshakes, pinned vs plain -----------------------------------


def _handshake_server(cert_files: list[str], key_file: str, port_out: Any) -> None:
    """Server process: connection i presents cert_files[i % n]; handshake, wait for the close, next."""
    contexts = []
    for path in cert_files:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.num_tickets = 0  # no session tickets: every handshake is a full one
        ctx.load_cert_chain(path, key_file)
        contexts.append(ctx)
    sock = socket.create_server(("127.0.0.1", 0))
    port_out.send(sock.getsockname()[1])
    port_out.close()
    i = 0
    while True:
        conn, _ = sock.accept()
        try:
            with contexts[i % len(contexts)].wrap_socket(conn, server_side=True) as s:
                s.recv(1)  # the client's close
        except OSError:
            pass
        i += 1


def row1(sz: Sizes) -> dict[str, Any]:
    from pinengine import PinPolicy
    from pinengine.hooks import ssl as hooks_ssl
    from pinengine.hooks.ssl import create_pinned_context
    from tests.certs import key_pem, make_cert, make_chain, new_key, pem

    real_check = hooks_ssl._check
    check_ns: list[int] = []

    chain = make_chain("p256", HOST)
    warmup = 10
    total = 2 * (warmup + sz.handshake_rounds * sz.handshakes) + 2
    key = new_key("p256")
    with tempfile.TemporaryDirectory(prefix="pinengine-bench-hs-") as tmp:
        d = Path(tmp)
        files = []
        for i in range(total):
            # every leaf names HOST (as a SAN) and is distinct (serial, CN): one per connection
            leaf = make_cert(f"{HOST} {i}", key, chain.intermediate, chain.intermediate_key, ca=False, sans=(HOST,))
            path = d / f"chain{i}.pem"
            path.write_bytes(pem(leaf) + pem(chain.intermediate))
            files.append(str(path))
        (d / "key.pem").write_bytes(key_pem(key))
        (d / "ca.pem").write_bytes(pem(chain.root))
        mp = multiprocessing.get_context("spawn")
        recv, send = mp.Pipe(duplex=False)
        server = mp.Process(target=_handshake_server, args=(files, str(d / "key.pem"), send), daemon=True)
        server.start()
        try:
            if not recv.poll(120):
                raise RuntimeError("the handshake server did not start")
            port = recv.recv()
            cafile = str(d / "ca.pem")
            ders = chain.ders
            policy = PinPolicy.from_mapping(
                {"domains": [{"host": HOST, "pins": [pin_text(hashlib.sha256(_spki(ders[1])).digest()),
                                                     pin_text(hashlib.sha256(_spki(ders[2])).digest())]}]}
            )
            plain = ssl.create_default_context(cafile=cafile)
            pinned = create_pinned_context(policy, cafile=cafile)
            for ctx in (plain, pinned):
                ctx.minimum_version = ssl.TLSVersion.TLSv1_3

            def handshakes(ctx: ssl.SSLContext, n: int) -> tuple[float, float]:
                cpu0, wall0 = time.process_time(), time.perf_counter()
                for _ in range(n):
                    raw = socket.create_connection(("127.0.0.1", port))
                    s = ctx.wrap_socket(raw, server_hostname=HOST)
                    s.close()
                return (time.process_time() - cpu0) / n, (time.perf_counter() - wall0) / n

            raw = socket.create_connection(("127.0.0.1", port))
            s = pinned.wrap_socket(raw, server_hostname=HOST)
            status = s.pin_result.status  # type: ignore[attr-defined]
            assert s.version() == "TLSv1.3" and not s.session_reused, (s.version(), s.session_reused)
            s.close()
            assert status == "match", status
            handshakes(plain, warmup)
            handshakes(pinned, warmup)
            # The pin check's own time, inside each pinned handshake (cache-cold:
            # it runs right after OpenSSL's handshake work), beside the
            # process-CPU difference, which carries the machine's noise.
            def timed_check(conn: Any, context: Any) -> Any:
                t = time.perf_counter_ns()
                try:
                    return real_check(conn, context)
                finally:
                    check_ns.append(time.perf_counter_ns() - t)

            hooks_ssl._check = timed_check
            extra, pct, wall_ratio, plain_cpu = [], [], [], []
            for r in range(sz.handshake_rounds):
                order = (plain, pinned) if r % 2 == 0 else (pinned, plain)
                got = {id(ctx): handshakes(ctx, sz.handshakes) for ctx in order}
                (p_cpu, p_wall), (q_cpu, q_wall) = got[id(plain)], got[id(pinned)]
                extra.append((q_cpu - p_cpu) * 1e6)
                pct.append((q_cpu - p_cpu) / p_cpu * 100)
                wall_ratio.append(q_wall / p_wall)
                plain_cpu.append(p_cpu * 1e6)
        finally:
            hooks_ssl._check = real_check
            server.terminate()
            server.join(10)
    med = statistics.median(extra)
    check_us = sorted(ns / 1000 for ns in check_ns)
    figure = (
        f"+{fmt_spread(extra, '.1f', ' µs')}; {statistics.median(pct):.2f} % of a plain handshake's "
        f"{statistics.median(plain_cpu):.0f} µs client CPU; wall x{statistics.median(wall_ratio):.3f} "
        f"({sz.handshakes} handshakes per context per round); the pin check itself: median "
        f"{statistics.median(check_us):.1f} µs (p10 {check_us[len(check_us) // 10]:.1f}, "
        f"p90 {check_us[len(check_us) * 9 // 10]:.1f}) over {len(check_us)} handshakes"
    )
    return row_result(
        1, "extra client CPU per TLS 1.3 handshake, pinned context vs plain (same CA)", figure,
        "≤ 20 µs, i.e. ≤ 1 % of a handshake", "met" if med <= 20 else "missed",
        extra_us=extra, extra_pct=pct, wall_ratio=wall_ratio, plain_cpu_us=plain_cpu, check_us=spread(check_us),
    )


def _spki(der: bytes) -> bytes:
    """The SPKI bytes, re-encoded by cryptography (independent of pinengine's cores)."""
    from cryptography import x509

    from tests.certs import spki_der

    return bytes(spki_der(x509.load_der_x509_certificate(der)))


# -- row 2: verify vs spki_sha256 -------------------------------------------------


def row2(sz: Sizes) -> dict[str, Any]:
    import random

    import pinengine
    from pinengine import PinPolicy
    from tests.certs import cached_chain

    target = 617
    host = f"svc{target:04d}.policy.bench.example"
    chain = tuple(cached_chain("p256", host).ders)
    rng = random.Random(20240601)
    domains = []
    for i in range(sz.policy_entries):
        pins = [pin_text(rng.randbytes(32)), pin_text(rng.randbytes(32))]
        if i == target:
            pins[0] = pin_text(hashlib.sha256(_spki(chain[1])).digest())
        domains.append({"host": f"svc{i:04d}.policy.bench.example", "pins": pins})
    policy = PinPolicy.from_mapping({"version": 1, "domains": domains}, source="<bench>")
    first = policy.verify(host, chain)
    assert first.status == "match" and [m.index for m in first.matches] == [1], first
    spki_sha256 = pinengine.spki_sha256
    verify = policy.verify
    n = sz.verify_calls
    calls = range(n)
    a, b, c = chain

    def run_verify() -> float:
        t = time.perf_counter()
        for _ in calls:
            verify(host, chain)
        return (time.perf_counter() - t) / n

    def run_spki() -> float:
        t = time.perf_counter()
        for _ in calls:
            spki_sha256(a)
            spki_sha256(b)
            spki_sha256(c)
        return (time.perf_counter() - t) / n

    run_verify(), run_spki()
    ratios, v_us, s_us = [], [], []
    for r in range(sz.rounds * 4):
        if r % 2 == 0:
            tv, ts = run_verify(), run_spki()
        else:
            ts, tv = run_spki(), run_verify()
        ratios.append(tv / ts)
        v_us.append(tv * 1e6)
        s_us.append(ts * 1e6)
    figure = (
        f"{statistics.median(v_us):.2f} µs = {fmt_spread(ratios, '.2f', 'x')} "
        f"(3x spki_sha256: {statistics.median(s_us):.2f} µs; {n} calls per round)"
    )
    return row_result(
        2, f"`policy.verify(host, 3-cert chain)` against a {sz.policy_entries:,}-entry policy, relative to "
        "`spki_sha256` of the same 3 certificates", figure, "≤ 2.0x (≈ 1.2 µs)",
        "met" if statistics.median(ratios) <= 2.0 else "missed", ratio=ratios, verify_us=v_us, spki3_us=s_us,
    )


# -- rows 3 and 4: verify_batch ----------------------------------------------------


def _batch_setup(sz: Sizes) -> tuple[Any, list[tuple[str, tuple[bytes, ...]]], list[tuple[tuple[bytes, ...], Any]]]:
    from pinengine import PinPolicy, _backend
    from tests.certs import cached_chain, make_cert, new_key

    core = _backend.core
    chain = cached_chain("p256", "batch.decision.bench.example")
    inter, root = _der(chain.intermediate), _der(chain.root)
    inter_digest = hashlib.sha256(_spki(inter)).digest()
    key = new_key("p256")
    items: list[tuple[str, tuple[bytes, ...]]] = []
    for i in range(sz.batch_chains):
        host = f"h{i}.batch.decision.bench.example"
        leaf = make_cert(host, key, chain.intermediate, chain.intermediate_key, ca=False, sans=(host,))
        items.append((host, (_der(leaf), inter, root)))
    policy = PinPolicy.from_mapping(
        {"domains": [{"host": h, "pins": [pin_text(inter_digest), pin_text(BACKUP)]} for h, _ in items]}
    )
    jobs = [
        (ders, core.PinSet([(core.KIND_SPKI, "sha256", inter_digest, core.POS_ANY),
                            (core.KIND_SPKI, "sha256", BACKUP, core.POS_ANY)]))
        for _, ders in items
    ]
    out = policy.verify_batch(items)
    assert all(getattr(r, "status", None) == "match" for r in out), [r for r in out if getattr(r, "status", None) != "match"][:1]
    assert all(r == [(1, 0)] for r in core.match_chains(jobs, True))
    return policy, items, jobs


def _timed_threads(fn: Callable[[list[Any]], Any], work: list[Any], nthreads: int) -> float:
    """Wall time of nthreads threads each running fn on its share of work (started before the clock)."""
    parts = [work[i * len(work) // nthreads : (i + 1) * len(work) // nthreads] for i in range(nthreads)]
    barrier = threading.Barrier(nthreads + 1)
    errors: list[BaseException] = []

    def worker(part: list[Any]) -> None:
        barrier.wait()
        try:
            fn(part)
        except BaseException as exc:  # re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(p,)) for p in parts]
    for t in threads:
        t.start()
    start = time.perf_counter()
    barrier.wait()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return elapsed


def _control(blocks: list[bytes]) -> None:
    for b in blocks:
        hashlib.sha256(b).digest()


def row3(sz: Sizes, setup: Any) -> dict[str, Any]:
    policy, items, _ = setup
    blocks = [bytes([i]) * (1 << 20) for i in range(32)]
    controls, speedups = [], []
    def control() -> float:
        return _timed_threads(_control, blocks, 1) / _timed_threads(_control, blocks, 2)

    def batch() -> float:
        return _timed_threads(policy.verify_batch, items, 1) / _timed_threads(policy.verify_batch, items, 2)

    for r in range(sz.batch_rounds):
        if r % 2 == 0:
            c, v = control(), batch()
        else:
            v, c = batch(), control()
        controls.append(c)
        speedups.append(v)
    counted = [s for s, c in zip(speedups, controls) if c >= 1.8]
    n = len(items)
    if counted:
        figure = f"{fmt_spread(counted, '.2f', 'x')}; counted {len(counted)} of {len(speedups)} rounds"
        verdict = "met" if statistics.median(counted) >= 1.6 else "missed"
    else:
        figure = f"no round counted (control ≥ 1.8x in 0 of {len(speedups)} rounds; all rounds: {fmt_spread(speedups, '.2f', 'x')})"
        verdict = "not measured"
    figure += f"; control {fmt_spread(controls, '.2f', 'x')}"
    return row_result(
        3, f"`verify_batch` over {n:,} distinct chains, 2 threads vs 1 (only rounds where a second core was free)",
        figure, "≥ 1.6x", verdict, speedup=speedups, control=controls, counted=len(counted),
    )


def row4(sz: Sizes, setup: Any) -> dict[str, Any]:
    from pinengine import _backend

    policy, items, jobs = setup
    match_chains = _backend.core.match_chains

    def run_batch() -> float:
        t = time.perf_counter()
        policy.verify_batch(items)
        return time.perf_counter() - t

    def run_core() -> float:
        t = time.perf_counter()
        match_chains(jobs, True)
        return time.perf_counter() - t

    pct, vb_us, mc_us = [], [], []
    for r in range(sz.batch_rounds // 2):
        if r % 2 == 0:
            tb, tc = run_batch(), run_core()
        else:
            tc, tb = run_core(), run_batch()
        pct.append(tc / tb * 100)
        vb_us.append(tb / len(items) * 1e6)
        mc_us.append(tc / len(items) * 1e6)
    figure = (
        f"{fmt_spread(pct, '.1f', ' %')} (per chain: verify_batch {statistics.median(vb_us):.2f} µs, "
        f"match_chains {statistics.median(mc_us):.2f} µs; 1 thread, {len(items):,} chains)"
    )
    return row_result(
        4, "`verify_batch` throughput relative to the core's `match_chains`", figure, "≥ 70 %",
        "met" if statistics.median(pct) >= 70 else "missed", percent=pct, verify_batch_us=vb_us, match_chains_us=mc_us,
    )


# -- rows 5 and 6: a 100,000-entry policy sharing two CA pins --------------------


def big_policy_document(n: int) -> tuple[str, list[str], tuple[bytes, ...]]:
    """(JSON text, hosts, chain): n hosts, each pinned to the same intermediate and root keys."""
    from tests.certs import cached_chain

    chain = tuple(cached_chain("p256", "mem.decision.bench.example").ders)
    pins = [pin_text(hashlib.sha256(_spki(chain[1])).digest()), pin_text(hashlib.sha256(_spki(chain[2])).digest())]
    hosts = [f"h{i}.svc{i % 100}.mem.decision.bench.example" for i in range(n)]
    doc = json.dumps({"version": 1, "domains": [{"host": h, "pins": pins} for h in hosts]})
    return doc, hosts, chain


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_child(n: int) -> None:
    """Fresh process: RSS the policy adds, loaded from its JSON text, after every host was verified once.

    Only the document's text and the host list exist before the first
    sample; the mapping json.loads makes is garbage by the second, so what
    is counted is what the policy keeps (and what the allocator keeps of the
    garbage made on the way: RSS, not live objects). Printed as JSON.
    """
    from pinengine import PinPolicy

    quiet_logs()
    doc, hosts, chain = big_policy_document(n)
    gc.collect()
    before = rss_bytes()
    policy = PinPolicy.from_mapping(json.loads(doc))
    for h in hosts:
        assert policy.verify(h, chain).status == "match"
    gc.collect()
    after = rss_bytes()
    assert len(policy.entries) == n
    print(json.dumps({"method": "rss", "entries": n, "bytes": after - before}))


def row5(sz: Sizes) -> dict[str, Any]:
    n = sz.big_policy
    per: list[float] = []
    for _ in range(sz.memory_rounds):
        out = subprocess.run(
            [sys.executable, __file__, "--memory-child", str(n)], capture_output=True, text=True, check=True, timeout=900,
        ).stdout
        per.append(json.loads(out.strip().splitlines()[-1])["bytes"] / n)
    figure = f"{fmt_spread(per, ',.0f', ' B/entry')}: RSS delta in a fresh subprocess, the policy loaded from JSON text"
    return row_result(
        5, f"a {n:,}-entry policy sharing two CA pins, after every host was verified once", figure,
        "≤ 500 B/entry", "met" if statistics.median(per) <= 500 else "missed", rss_bytes_per_entry=per,
    )


def row6(sz: Sizes) -> dict[str, Any]:
    from pinengine import PinPolicy

    doc, _, _ = big_policy_document(sz.big_policy)
    ratios, fm_s, js_s = [], [], []
    for _ in range(sz.heavy_rounds):
        gc.collect()
        t = time.perf_counter()
        mapping = json.loads(doc)
        tj = time.perf_counter() - t
        gc.collect()
        t = time.perf_counter()
        policy = PinPolicy.from_mapping(mapping)
        tf = time.perf_counter() - t
        assert len(policy.entries) == sz.big_policy
        del policy, mapping
        ratios.append(tf / tj)
        fm_s.append(tf)
        js_s.append(tj)
    figure = (
        f"{fmt_spread(ratios, '.1f', 'x')} (from_mapping {statistics.median(fm_s):.2f} s, "
        f"json.loads {statistics.median(js_s) * 1e3:.0f} ms)"
    )
    return row_result(
        6, f"`PinPolicy.from_mapping` of that policy ({sz.big_policy:,} entries), relative to `json.loads` "
        "of the same document", figure, "≤ 10x", "met" if statistics.median(ratios) <= 10 else "missed",
        ratio=ratios, from_mapping_s=fm_s, json_loads_s=js_s,
    )


# -- row 7: spki_sha256 vs bare C SHA-256 ----------------------------------------

C_BATCHES = 30
C_REPS = 20  # c_breakdown.c's REPS: one batch is 20 passes over the list


def _build_c_breakdown(tmp: str, ders: Sequence[bytes]) -> tuple[str, str] | None:
    import glob

    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        return None
    data = os.path.join(tmp, "certs.bin")
    with open(data, "wb") as f:
        for der in ders:
            f.write(len(der).to_bytes(4, "little") + der)
    exe = os.path.join(tmp, "c_breakdown")
    sources = [str(HERE / "c_breakdown.c"), *sorted(glob.glob(str(ROOT / "ext" / "*.c")))]
    cmd = [cc, "-O2", "-std=c99", "-Wall", "-Wno-unused-function", "-I", str(ROOT / "ext"), "-o", exe, *sources]
    subprocess.run(cmd, check=True, capture_output=True)
    return exe, data


def _c_figures(exe: str, data: str) -> dict[str, float]:
    out = subprocess.run([exe, data], capture_output=True, text=True, check=True).stdout
    figures = {}
    for line in out.splitlines():
        m = re.match(r"\s+(.+?)\s+(\d+) ns/cert$", line)
        if m:
            figures[m.group(1)] = float(m.group(2))
    return figures


def row7(sz: Sizes) -> dict[str, Any]:
    import pinengine
    from pinengine import _backend
    from tests.certs import certifi_ders

    ders = list(certifi_ders())
    spki_sha256 = pinengine.spki_sha256
    core_spki = _backend.core.spki_sha256
    passes = range(C_REPS)

    def best(fn: Callable[[bytes], bytes]) -> float:
        b = float("inf")
        for _ in range(C_BATCHES):
            t = time.perf_counter()
            for _ in passes:
                for d in ders:
                    fn(d)
            b = min(b, time.perf_counter() - t)
        return b / (C_REPS * len(ders)) * 1e9

    with tempfile.TemporaryDirectory(prefix="pinengine-bench-c-") as tmp:
        built = _build_c_breakdown(tmp, ders)
        if built is None:
            return row_result(7, "`spki_sha256` per call over the certifi roots, relative to bare C SHA-256",
                              "no C compiler (cc)", "≤ 1.5x", "not measured")
        ratios, py_ns, core_ns, c_ns, c_walk_ns = [], [], [], [], []
        for r in range(sz.heavy_rounds):
            if r % 2 == 0:
                c = _c_figures(*built)
                p, k = best(spki_sha256), best(core_spki)
            else:
                p, k = best(spki_sha256), best(core_spki)
                c = _c_figures(*built)
            sha = c["sha256(spki), dispatched"]
            ratios.append(p / sha)
            py_ns.append(p)
            core_ns.append(k)
            c_ns.append(sha)
            c_walk_ns.append(c["pe_der_parse_cert_spki_sha256"])
    figure = (
        f"{fmt_spread(ratios, '.2f', 'x')} ({statistics.median(py_ns):.0f} ns vs {statistics.median(c_ns):.0f} ns "
        f"per certificate; C walk + SHA-256 (pe_der_parse_cert_spki_sha256) {statistics.median(c_walk_ns):.0f} ns; "
        f"core's own spki_sha256 {statistics.median(core_ns):.0f} ns; {len(ders)} roots; best of {C_BATCHES} batches, C: c_breakdown.c)"
    )
    return row_result(
        7, "`spki_sha256` per call over the certifi roots, relative to bare C SHA-256 over the same SPKI bytes",
        figure, "≤ 1.5x", "met" if statistics.median(ratios) <= 1.5 else "missed",
        ratio=ratios, spki_sha256_ns=py_ns, core_spki_sha256_ns=core_ns, c_sha256_ns=c_ns, c_parse_sha256_ns=c_walk_ns,
    )


# -- row 8: pinengine check -------------------------------------------------------


def row8(sz: Sizes) -> dict[str, Any]:
    from bench_check_overlap import policy as overlap_policy  # type: ignore[import-not-found]  # its generator

    small, big = sz.check_sizes
    times: dict[int, list[float]] = {small: [], big: []}
    with tempfile.TemporaryDirectory(prefix="pinengine-bench-check-") as tmp:
        files = {}
        for n in (small, big):
            path = Path(tmp) / f"policy{n}.json"
            path.write_text(json.dumps(overlap_policy(n).to_mapping()))
            files[n] = str(path)
        cmd = [sys.executable, "-c", "import sys; from pinengine.cli import main; sys.exit(main())", "check"]
        for r in range(sz.check_rounds):
            for n in (small, big) if r % 2 == 0 else (big, small):
                t = time.perf_counter()
                proc = subprocess.run([*cmd, files[n]], capture_output=True, text=True, timeout=900)
                times[n].append(time.perf_counter() - t)
                if proc.returncode not in (0, 1) or " entries, " not in proc.stdout.splitlines()[-1]:
                    raise RuntimeError(f"pinengine check failed ({proc.returncode}): {proc.stderr[-500:]}")
    growth = statistics.median(times[big]) / statistics.median(times[small])
    med = statistics.median(times[big])
    figure = (
        f"{big:,} entries {fmt_spread(times[big], '.2f', ' s')}; {small:,} entries "
        f"{statistics.median(times[small]):.2f} s: {big // small}x the entries, {growth:.1f}x the time "
        "(whole command, in a subprocess)"
    )
    return row_result(
        8, "`pinengine check` of a policy with n entries (overlap detection)", figure,
        "n log n (4x the entries: < 6x the time); 100k entries in seconds (< 20 s, loading included)",
        "met" if growth < 6 and med < 20 else "missed", seconds_small=times[small], seconds_big=times[big],
        sizes=[small, big],
    )


# -- the run ----------------------------------------------------------------------


def machine() -> dict[str, Any]:
    import pinengine
    from pinengine import _backend

    info: dict[str, Any] = {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "python": sys.version.split()[0],
        "openssl": ssl.OPENSSL_VERSION,
        "backend": pinengine.backend(),
        "pinengine": getattr(pinengine, "__version__", "?"),
    }
    impl = getattr(_backend.core, "sha256_implementation", None)
    info["sha256"] = impl() if impl else "n/a"
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "src", "ext"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        info["commit"] = commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        info["commit"] = "unknown"
    return info


def table(results: list[dict[str, Any]]) -> str:
    lines = ["| row | what | measured | goal | verdict |", "| --- | --- | --- | --- | --- |"]
    for r in results:
        lines.append(f"| {r['row']} | {r['what']} | {r['figure']} | {r['goal']} | {r['verdict']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=None, help="rounds per row (default 5; 2 with --quick)")
    parser.add_argument("--rows", default=",".join(map(str, ALL_ROWS)), help="rows to run, e.g. 2,5,6")
    parser.add_argument("--json", metavar="FILE", help="save the results (every round) as JSON")
    parser.add_argument("--quick", action="store_true", help="smoke run (~30 s): fewer rounds, smaller sizes")
    parser.add_argument("--memory-child", type=int, metavar="N", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        memory_child(args.memory_child)
        return 0
    try:
        rows = sorted({int(x) for x in args.rows.split(",") if x.strip()})
    except ValueError:
        parser.error(f"--rows: not a list of row numbers: {args.rows!r}")
    if not rows or any(r not in ALL_ROWS for r in rows):
        parser.error(f"--rows: rows are 1-8, got {args.rows!r}")
    rounds = args.rounds if args.rounds is not None else (2 if args.quick else 5)
    if rounds < 1:
        parser.error("--rounds must be at least 1")
    sz = Sizes(rounds, args.quick)
    quiet_logs()
    info = machine()
    print(f"# decision path (issue 13): backend {info['backend']} (sha256 {info['sha256']}), commit {info['commit']}, "
          f"{info['date_utc']}, python {info['python']}, {info['openssl']}, nproc {info['nproc']}, "
          f"load {info['loadavg']}, rounds {rounds}{', QUICK (smaller sizes, not the issue figures)' if sz.quick else ''}")
    started = time.perf_counter()
    results = []
    batch_setup = None
    for row in rows:
        t = time.perf_counter()
        if row in (3, 4) and batch_setup is None:
            batch_setup = _batch_setup(sz)
        if row == 1:
            res = row1(sz)
        elif row == 2:
            res = row2(sz)
        elif row == 3:
            res = row3(sz, batch_setup)
        elif row == 4:
            res = row4(sz, batch_setup)
        elif row == 5:
            res = row5(sz)
        elif row == 6:
            res = row6(sz)
        elif row == 7:
            res = row7(sz)
        else:
            res = row8(sz)
        res["seconds"] = round(time.perf_counter() - t, 1)
        print(f"row {row}: {res['figure']} [{res['verdict']}] ({res['seconds']} s)", flush=True)
        results.append(res)
    info["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    info["seconds"] = round(time.perf_counter() - started, 1)
    print()
    print(table(results))
    print(f"\n{info['seconds']} s; load average at end {info['loadavg_end']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "quick": sz.quick, "rounds": rounds, "rows": results},
                                              indent=1, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
