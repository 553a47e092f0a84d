"""`pinengine check` overlap detection: indexed search vs the all-pairs definition (issue 13, last row).

Plain script (not pytest-benchmark): for policies of n entries (a realistic
mix of exact hosts, ``*.`` and ``**.`` entries under a few hundred zones)
it times ``cli._overlaps`` and, where it finishes in reasonable time, the
all-pairs loop it replaced, interleaved in rounds. Prints median and spread
per n and the growth factor between sizes (4x the entries: ~4x the time for
n log n-like growth, ~16x for quadratic).

    python benchmarks/bench_check_overlap.py [--rounds 5] [--sizes 1000,4000,16000,100000]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time

from pinengine import PinPolicy
from pinengine.cli import _more_specific, _overlaps

PINS = ["sha256/" + "A" * 43 + "=", "sha256/" + "B" * 42 + "A="]
ALL_PAIRS_LIMIT = 4000


def policy(n: int, seed: int = 1) -> PinPolicy:
    rng = random.Random(seed)
    zones = [f"zone{i}.example" for i in range(max(1, n // 50))]
    hosts: set[str] = set()
    while len(hosts) < n:
        zone = rng.choice(zones)
        kind = rng.random()
        if kind < 0.05:
            hosts.add(f"**.{zone}")
        elif kind < 0.15:
            hosts.add(f"*.svc{rng.randrange(100)}.{zone}")
        else:
            hosts.add(f"h{rng.randrange(10 * n)}.svc{rng.randrange(100)}.{zone}")
    return PinPolicy.from_mapping({"domains": [{"host": h, "pins": PINS} for h in sorted(hosts)]})


def all_pairs(entries: list) -> int:  # type: ignore[type-arg]
    count = 0
    for a in entries:
        probe = a.base if a.pattern != "one-label" else "x." + a.base
        for b in entries:
            if a is not b and b.covers(probe) and _more_specific(a, b):
                count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sizes", default="1000,4000,16000,100000")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    policies = {n: policy(n).entries for n in sizes}
    times: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.rounds):
        for n in sizes:
            entries = policies[n]
            start = time.perf_counter()
            found = len(_overlaps(entries))
            times.setdefault(("indexed", n), []).append(time.perf_counter() - start)
            if n <= ALL_PAIRS_LIMIT:
                start = time.perf_counter()
                assert all_pairs(entries) == found
                times.setdefault(("all pairs", n), []).append(time.perf_counter() - start)
    print(f"rounds: {args.rounds}; python {sys.version.split()[0]}")
    print(f"{'method':<10} {'entries':>8} {'median s':>10} {'min s':>9} {'max s':>9}")
    for (method, n), ts in sorted(times.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        print(f"{method:<10} {n:>8} {statistics.median(ts):>10.4f} {min(ts):>9.4f} {max(ts):>9.4f}")
    indexed = [statistics.median(times[("indexed", n)]) for n in sizes]
    for (n0, t0), (n1, t1) in zip(zip(sizes, indexed), zip(sizes[1:], indexed[1:])):
        print(f"indexed: {n1 / n0:.0f}x the entries ({n0} -> {n1}): {t1 / t0:.1f}x the time")
    for n in sizes:
        if ("all pairs", n) in times:
            ratio = statistics.median(times[("all pairs", n)]) / statistics.median(times[("indexed", n)])
            print(f"all pairs / indexed at {n}: {ratio:.0f}x")


if __name__ == "__main__":
    main()
