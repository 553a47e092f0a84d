"""Run fuzz harnesses' checks over corpus files, without atheris.

    python fuzz/replay.py CORPUS_ROOT [CORPUS_ROOT ...] [--harness NAME ...]

Each CORPUS_ROOT holds one directory per harness (der, chain, pins, policy, hpkp,
as fuzz/build_corpus.py and fuzz/run.py write them; fuzz/crashers/ has the
same layout). Every file is fed to that harness's ``check``; a finding or an
unexpected exception is reported with the file name. Used for the sanitizer
run (the corpus through an ASan/UBSan build of the compiled core) and as a
quick self-test of a wheel (``--certifi-mutants N`` adds N seeded mutants of
certifi's certificates to the DER harness, for places without a corpus).

Prints the inputs run per harness and the findings; exits 1 on any finding.
"""

from __future__ import annotations

import argparse
import importlib
import os
import random
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

HARNESSES = ("der", "chain", "pins", "policy", "hpkp")


def files(roots: list[Path], harness: str) -> Iterator[Path]:
    for root in roots:
        directory = root / harness
        if directory.is_dir():
            yield from sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith("."))


def certifi_mutants(count: int, seed: int = 1) -> Iterator[tuple[str, bytes]]:
    import certifi

    from pinengine._pem import load_certificates

    ders = load_certificates(Path(certifi.where()).read_bytes())
    rng = random.Random(seed)
    for der in ders:
        yield "certifi", der
    for k in range(count):
        b = bytearray(rng.choice(ders))
        for _ in range(rng.randint(1, 4)):
            op = rng.randrange(4)
            i = rng.randrange(len(b))
            if op == 0:
                b[i] ^= 1 << rng.randrange(8)
            elif op == 1:
                b[i] = rng.choice((0x00, 0x7F, 0x80, 0x81, 0x82, 0x84, 0x85, 0xFF))
            elif op == 2:
                del b[i : i + rng.randint(1, 8)]
            else:
                b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
        yield f"mutant {k}", bytes(b)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("roots", nargs="*", type=Path)
    parser.add_argument("--harness", action="append", choices=HARNESSES)
    parser.add_argument("--certifi-mutants", type=int, default=0, metavar="N")
    args = parser.parse_args(argv)

    findings = 0
    total = 0
    for name in args.harness or HARNESSES:
        module = importlib.import_module(f"fuzz_{name}")
        check: Callable[[bytes], None] = module.check
        inputs: Iterator[tuple[str, bytes]] = ((str(p), p.read_bytes()) for p in files(args.roots, name))
        runs = 0
        found = 0
        started = time.monotonic()
        extra = certifi_mutants(args.certifi_mutants) if name == "der" and args.certifi_mutants else iter(())
        for label, data in (*inputs, *extra):
            runs += 1
            try:
                check(data)
            except Exception:
                found += 1
                if found <= 5:
                    print(f"FINDING in {name} on {label}:\n{traceback.format_exc()}", file=sys.stderr)
        total += runs
        findings += found
        print(f"replay {name}: {runs} inputs, {found} findings, {time.monotonic() - started:.1f} s")
    print(f"replay total: {total} inputs, {findings} findings")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
