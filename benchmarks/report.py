#!/usr/bin/env python3
"""Print per-item times and the ratios from a pytest-benchmark JSON file.

    python -m pytest benchmarks/ --benchmark-json=benchmarks/results.json
    python benchmarks/report.py benchmarks/results.json [--markdown] [--strip-to OUT.json]

Per-item time = round time / extra_info["items"] (certificates, chains or
verifications per round). Ratios are given on medians (the headline) and on
minimums (the least-disturbed round: on a shared, noisy machine this is often
the better estimate of what the code itself costs). Nothing is re-measured.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from typing import Any

# Short labels for the report, by pytest-benchmark name.
LABELS = {
    "test_spki_compiled": "compiled core",
    "test_spki_python_twin": "python twin",
    "test_spki_cryptography": "cryptography + hashlib",
    "test_spki_hashlib_precut": "hashlib on pre-cut SPKI",
    "test_breakdown_compiled_extract_spki": "compiled extract_spki (parse+slice)",
    "test_breakdown_compiled_hash_precut": "compiled hash_bytes(spki) (hash only)",
    "test_breakdown_compiled_hash_empty": "compiled hash_bytes(b'') (call floor)",
    "test_breakdown_hashlib_empty": "hashlib.sha256(b'') (call floor)",
    "test_breakdown_compiled_noop_call": "compiled empty call",
    "test_policy_verify[compiled]": "verify, compiled core",
    "test_policy_verify[python]": "verify, python twin",
    "test_policy_core_only[compiled]": "core.match_chain only, compiled",
    "test_policy_core_only[python]": "core.match_chain only, python twin",
    "test_batch_compiled[1thread]": "compiled, 1 thread",
    "test_batch_compiled[2threads]": "compiled, 2 threads",
    "test_batch_python_twin": "python twin, 1 thread",
    "test_control_hashlib[1thread]": "hashlib over 1 MiB blocks, 1 thread",
    "test_control_hashlib[2threads]": "hashlib over 1 MiB blocks, 2 threads",
    "test_handshake_plain": "TLS handshake, plain context",
    "test_handshake_pinned[compiled]": "TLS handshake, pinned context",
    "test_handshake_cryptography_check": "TLS handshake, check on cryptography",
    "test_pin_check_alone[compiled]": "pin check alone (policy.verify)",
    **{f"test_dynamic_verify[{k}-{c}-compiled]": f"dynamic host, {k} store, {c}"
       for k in ("memory", "sqlite", "redis") for c in ("cached", "uncached")},
}

# (numerator, denominator, description, target) : ratio = numerator time / denominator time,
# i.e. "how many times faster the denominator is". target: None, or (">=", x) / (">", x).
RATIOS = [
    ("test_spki_cryptography", "test_spki_compiled", "SPKI: compiled vs cryptography", (">=", 50.0)),
    ("test_spki_hashlib_precut", "test_spki_compiled", "SPKI: compiled vs hashlib on pre-cut bytes", (">", 1.0)),
    ("test_spki_python_twin", "test_spki_compiled", "SPKI: compiled vs python twin", None),
    ("test_policy_verify[python]", "test_policy_verify[compiled]", "verify: compiled vs python twin", None),
    ("test_policy_core_only[python]", "test_policy_core_only[compiled]", "verify's core part only (match_chain): compiled vs twin", None),
    ("test_batch_compiled[1thread]", "test_batch_compiled[2threads]", "batch: 2 threads vs 1 thread (speedup, ideal 2.0)", None),
    ("test_batch_python_twin", "test_batch_compiled[1thread]", "batch: compiled vs python twin, 1 thread", None),
    ("test_control_hashlib[1thread]", "test_control_hashlib[2threads]", "control: hashlib 2 threads vs 1 (machine's parallelism)", None),
    ("test_handshake_pinned[compiled]", "test_handshake_plain", "handshake: pinned / plain (target <= 1.005)", ("<=", 1.005)),
    ("test_handshake_cryptography_check", "test_handshake_plain", "handshake: cryptography check / plain", None),
    ("test_pin_check_alone[compiled]", "test_handshake_plain", "pin check alone / plain handshake (share added)", None),
    ("test_dynamic_verify[sqlite-uncached-compiled]", "test_dynamic_verify[sqlite-cached-compiled]", "dynamic: SQLite uncached vs cached", None),
    ("test_dynamic_verify[redis-uncached-compiled]", "test_dynamic_verify[redis-cached-compiled]", "dynamic: Redis uncached vs cached", None),
]


def fmt_time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.3f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3f} ms"
    if seconds >= 1e-6:
        return f"{seconds * 1e6:.3f} µs"
    return f"{seconds * 1e9:.1f} ns"


def load(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def per_item(bench: dict[str, Any]) -> dict[str, float]:
    items = bench.get("extra_info", {}).get("items", 1) or 1
    stats = bench["stats"]
    return {k: stats[k] / items for k in ("min", "median", "mean", "stddev", "iqr")}


def table(rows: list[list[str]], markdown: bool) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, r in enumerate(rows):
        if markdown:
            lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")
            if n == 0:
                lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        else:
            lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
            if n == 0:
                lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def verdict(ratio: float, target: tuple[str, float] | None) -> str:
    if target is None:
        return ""
    op, x = target
    ok = {">=": ratio >= x, ">": ratio > x, "<=": ratio <= x}[op]
    return f"{'MET' if ok else 'NOT MET'} (target {op} {x:g}x)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("json", help="file written by pytest --benchmark-json")
    ap.add_argument("--markdown", action="store_true", help="print Markdown tables")
    ap.add_argument(
        "--strip-to",
        metavar="OUT",
        help="also write OUT: the same JSON without the per-round timings (stats.data), small enough to keep",
    )
    args = ap.parse_args(argv)
    data = load(args.json)
    if args.strip_to:
        for b in data["benchmarks"]:
            b.get("stats", {}).pop("data", None)
        with open(args.strip_to, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)
            f.write("\n")
    md = args.markdown
    by_name = {b["name"]: b for b in data["benchmarks"]}

    mi = data.get("machine_info", {})
    extra = mi.get("pinengine_bench", {})
    print(("### " if md else "") + "Machine")
    print(
        f"{'- ' if md else ''}{extra.get('cpu_model', mi.get('processor', '?'))}, nproc={extra.get('nproc', '?')}, "
        f"Python {extra.get('python', mi.get('python_version', '?'))} ({mi.get('python_implementation', '')}), "
        f"{extra.get('openssl', '')}, cryptography {extra.get('cryptography', '?')}, "
        f"compiled SHA-256: {extra.get('compiled_sha256', '?')}"
    )
    def loads(key: str) -> str:
        value = extra.get(key)
        return " ".join(f"{x:.2f}" for x in value) if isinstance(value, list) else "?"

    print(
        f"{'- ' if md else ''}run at {extra.get('date_utc', data.get('datetime', '?'))}; load average (1/5/15 min) "
        f"at start {loads('loadavg_at_start')}, at end {loads('loadavg_at_end')}"
    )
    print()

    groups: dict[str, list[dict[str, Any]]] = {}
    for b in data["benchmarks"]:
        groups.setdefault(b.get("group") or "(no group)", []).append(b)
    for group, benches in groups.items():
        print(("### " if md else "== ") + group)
        fastest = min(per_item(b)["median"] for b in benches)
        rows = [["contestant", "unit", "rounds", "median/item", "min/item", "IQR/item", "x fastest (median)"]]
        for b in sorted(benches, key=lambda b: per_item(b)["median"]):
            p = per_item(b)
            rows.append(
                [
                    LABELS.get(b["name"], b["name"]),
                    str(b.get("extra_info", {}).get("unit", "round")),
                    str(b["stats"]["rounds"]),
                    fmt_time(p["median"]),
                    fmt_time(p["min"]),
                    fmt_time(p["iqr"]),
                    f"{p['median'] / fastest:.2f}",
                ]
            )
        print(table(rows, md))
        print()

    print(("### " if md else "== ") + "Ratios (how many times faster)")
    rows = [["comparison", "median ratio", "min ratio", "target"]]
    for num, den, desc, target in RATIOS:
        if num not in by_name or den not in by_name:
            rows.append([desc, "n/a", "n/a", "not in this run"])
            continue
        a, b = per_item(by_name[num]), per_item(by_name[den])
        r_med, r_min = a["median"] / b["median"], a["min"] / b["min"]
        v = verdict(r_med, target)
        if target is not None and verdict(r_min, target) != v:
            v += f"; on minimums: {verdict(r_min, target).split(' (')[0]}"
        rows.append([desc, f"{r_med:.2f}x", f"{r_min:.2f}x", v])
    print(table(rows, md))

    comp = by_name.get("test_spki_compiled")
    spki_inter = comp.get("extra_info", {}).get("interleaved_ratios") if comp else None
    if spki_inter:
        print()
        print(("### " if md else "== ") + "Cross-check: SPKI contestants' rounds interleaved (time / compiled time, per round)")
        for key, xs in spki_inter.items():
            if xs:
                print(
                    f"{'- ' if md else ''}{key} vs compiled: median {statistics.median(xs):.2f}x "
                    f"(range {min(xs):.2f}-{max(xs):.2f} over {len(xs)} interleaved rounds)"
                )

    two = by_name.get("test_batch_compiled[2threads]")
    inter = two.get("extra_info", {}).get("interleaved_speedups") if two else None
    if inter:
        print()
        print(("### " if md else "== ") + "Cross-check: 1-thread and 2-thread rounds alternating (speedup per pair)")
        for key, label in (("match_chains", "compiled match_chains"), ("control_hashlib", "hashlib control")):
            xs = inter.get(key) or []
            if xs:
                print(
                    f"{'- ' if md else ''}{label}: {', '.join(f'{x:.2f}' for x in xs)} "
                    f"(median {statistics.median(xs):.2f}x, best {max(xs):.2f}x)"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
