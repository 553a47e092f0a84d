"""Resident memory while verifying a million chains: it must stay flat.

    python benchmarks/bench_memory.py [--chains 1000000] [--policy-chains 200000]
                                      [--backend compiled|python] [--max-growth-mb 4]

Two runs, each in batches of 10,000 with the resident set size sampled after
every tenth of the run:

1. ``core.match_chains`` (the compiled core, GIL released) over ``--chains``
   chains: well-formed chains that match, that do not, malformed ones (error
   objects for their places), and unverified matching;
2. ``PinPolicy.verify_batch`` over ``--policy-chains`` (host, chain) pairs:
   the whole stack (host lookup, PinSet cache, decision, PinMismatchError and
   its message for mismatches, CertificateParseError for malformed chains).

Growth is measured from the sample after the first tenth (allocator arenas
and caches settle there) to the last; the script exits 1 when either run
grows by more than --max-growth-mb over those nine tenths. Linux
reads /proc/self/statm; elsewhere the peak RSS from getrusage is used.
A script, not a pytest-benchmark suite (nothing is collected from it);
tests/test_memory.py is the quick version that runs with the test suite.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pinengine
from pinengine import _backend
from pinengine.policy import PinPolicy

ROOT = Path(__file__).resolve().parent.parent
BATCH = 10_000


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak if sys.platform == "darwin" else peak * 1024)


def soak(name: str, total: int, run_batch: Callable[[], int]) -> float:
    """Run batches until ``total`` items; print RSS samples; return the steady growth in MB.

    The first tenth of the run settles allocator arenas and result lists; the
    growth that counts is from the sample after it to the last one (a leak of
    a few bytes per chain grows linearly there).
    """
    for _ in range(3):  # warm-up: caches, freelists, arenas
        run_batch()
    gc.collect()
    samples = [rss_bytes()]
    done = 0
    started = time.perf_counter()
    step = max(total // 10, BATCH)
    next_sample = step
    while done < total:
        done += run_batch()
        if done >= next_sample or done >= total:
            gc.collect()
            samples.append(rss_bytes())
            next_sample += step
    elapsed = time.perf_counter() - started
    settled = samples[1] if len(samples) > 2 else samples[0]
    growth = (samples[-1] - settled) / 1e6
    mb = " ".join(f"{s / 1e6:.1f}" for s in samples)
    print(f"memory {name}: {done} chains in {elapsed:.1f} s ({done / elapsed:,.0f}/s); RSS MB every tenth: {mb}")
    print(
        f"memory {name}: RSS {samples[0] / 1e6:.1f} MB at start, {settled / 1e6:.1f} MB after the first tenth, "
        f"{samples[-1] / 1e6:.1f} MB at the end: growth {growth:+.2f} MB over the last nine tenths "
        f"({(samples[-1] - samples[0]) / 1e6:+.2f} MB in all)"
    )
    return growth


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chains", type=int, default=1_000_000)
    parser.add_argument("--policy-chains", type=int, default=200_000)
    parser.add_argument("--backend", choices=("compiled", "python"), default="compiled")
    parser.add_argument("--max-growth-mb", type=float, default=4.0)
    args = parser.parse_args(argv)

    core: Any = importlib.import_module("pinengine._core" if args.backend == "compiled" else "pinengine._core_py")
    _backend.use(core)
    logging.getLogger("pinengine").disabled = True  # report-only violations would log every time
    logging.getLogger("pinengine.reports").disabled = True

    chain = pinengine.load_certificates((ROOT / "examples" / "chain.pem").read_bytes())
    leaf, inter, root = chain
    broken = [leaf, inter[: len(inter) // 2], root]
    match = core.PinSet([(core.KIND_SPKI, "sha256", core.spki_sha256(inter), core.POS_ANY)])
    miss = core.PinSet([(core.KIND_CERT, "sha384", b"\x01" * 48, core.POS_ANY)])
    jobs: list[tuple[list[bytes], Any]] = [(chain, match), (chain, miss), (broken, match), ([leaf], match)] * (BATCH // 4)

    def core_batch() -> int:
        results = core.match_chains(jobs, True)
        assert results[0] and not results[1] and isinstance(results[2], pinengine.CertificateParseError)
        return len(jobs)

    pins = [str(pinengine.Pin.from_certificate(der)) for der in chain]
    backup = "sha256/Jk/89oF70FMmSjqayyXnWUP4QunzgnOAYSXKU5Jakg4="
    policy = PinPolicy.from_mapping(
        {
            "domains": [
                {"host": "**.example.com", "pins": [pins[1], backup]},
                {"host": "api.example.org", "pins": [pins[2], backup], "position": "leaf", "mode": "report-only"},
            ]
        }
    )
    items = [
        ("www.example.com", chain),
        ("api.example.org", chain),
        ("www.example.com", [leaf]),
        ("www.example.com", broken),
        ("unpinned.example.net", chain),
    ] * (BATCH // 5)

    def policy_batch() -> int:
        results = policy.verify_batch(items)
        assert isinstance(results[2], pinengine.PinMismatchError)
        return len(items)

    print(f"memory: backend {core.BACKEND}, batches of {BATCH}, limit {args.max_growth_mb} MB growth per run")
    worst = 0.0
    if args.chains:
        worst = max(worst, soak("core.match_chains", args.chains, core_batch))
    if args.policy_chains:
        worst = max(worst, soak("PinPolicy.verify_batch", args.policy_chains, policy_batch))
    if worst > args.max_growth_mb:
        print(f"memory: FAILED: resident memory grew by {worst:.2f} MB (limit {args.max_growth_mb} MB)")
        return 1
    print("memory: flat")
    return 0


if __name__ == "__main__":
    sys.exit(main())
