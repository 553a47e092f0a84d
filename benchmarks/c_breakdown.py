#!/usr/bin/env python3
"""Where the compiled core's time goes, without Python: build and run c_breakdown.c.

    python benchmarks/c_breakdown.py [--chains]

Compiles benchmarks/c_breakdown.c against the unchanged ext/*.c sources (same
portable flags as setup.py) in a temporary directory, feeds it every certifi
root (or, with --chains, the generated chains of the batch benchmark) and
prints ns per certificate for the DER walk and for SHA-256. Compare with the
per-certificate figures of bench_spki.py to see what the Python call adds.
Not a pytest benchmark (nothing is collected from this file).
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chains", action="store_true", help="use the batch benchmark's chains, not certifi")
    args = ap.parse_args()
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        print("no C compiler found", file=sys.stderr)
        return 2
    if args.chains:
        sys.path.insert(0, HERE)
        from conftest import CHAIN_SPECS  # type: ignore[import-not-found]

        from tests.certs import cached_chain

        ders = [d for key, host in CHAIN_SPECS for d in cached_chain(key, host).ders]
    else:
        from tests.certs import certifi_ders

        ders = list(certifi_ders())
    with tempfile.TemporaryDirectory(prefix="pinengine-cbench-") as tmp:
        data = os.path.join(tmp, "certs.bin")
        with open(data, "wb") as f:
            for der in ders:
                f.write(len(der).to_bytes(4, "little") + der)
        exe = os.path.join(tmp, "c_breakdown")
        sources = [os.path.join(HERE, "c_breakdown.c"), *sorted(glob.glob(os.path.join(ROOT, "ext", "*.c")))]
        cmd = [cc, "-O2", "-std=c99", "-Wall", "-Wno-unused-function", "-I", os.path.join(ROOT, "ext"), "-o", exe, *sources]
        subprocess.run(cmd, check=True)
        return subprocess.run([exe, data]).returncode


if __name__ == "__main__":
    sys.exit(main())
