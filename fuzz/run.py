"""Run the atheris harnesses for a bounded time each and report what they did.

    python fuzz/run.py --seeds SEEDS_ROOT --work WORK_DIR [--time SECONDS] [--jobs N]
                       [--harness NAME ...] [-- extra libFuzzer flags]

For each harness (fuzz_der, fuzz_chain, fuzz_pins, fuzz_policy, fuzz_hpkp) the seeds
(fuzz/build_corpus.py's OUT/<harness>) are copied to WORK_DIR/corpus/<harness>,
which the fuzzer grows, and fuzz/crashers/<harness> is added as a read-only
corpus so every crasher found before is tried again first. Crash, timeout and
OOM inputs land in WORK_DIR/artifacts/<harness>/. Harnesses run --jobs at a
time, each in its own process with this process' environment (so the
sanitizer / libFuzzer preloads set by .ci/checks apply).

Prints, per harness: inputs executed, executions per second, corpus size
before and after, coverage, findings; exits 1 if anything was found (or a
fuzzer did not run).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
HARNESSES = ("der", "chain", "pins", "policy", "hpkp")
MAX_LEN = {"der": 16384, "chain": 16384, "pins": 1024, "policy": 4096, "hpkp": 2048}
DICTS = {"der": "der.dict", "chain": "der.dict", "pins": "pins.dict", "policy": "policy.dict", "hpkp": "hpkp.dict"}


@dataclass
class Result:
    harness: str
    seeds: int = 0
    corpus: int = 0
    runs: int = 0
    seconds: float = 0.0
    coverage: str = "?"
    findings: list[Path] = field(default_factory=list)
    returncode: int | None = None
    log: Path | None = None
    started: float = 0.0


def count(directory: Path) -> int:
    return sum(1 for p in directory.iterdir() if p.is_file()) if directory.is_dir() else 0


def start(harness: str, args: argparse.Namespace, extra: list[str]) -> tuple[subprocess.Popen[bytes], Result]:
    work: Path = args.work
    corpus = work / "corpus" / harness
    artifacts = work / "artifacts" / harness
    if corpus.exists():
        shutil.rmtree(corpus)
    corpus.mkdir(parents=True)
    artifacts.mkdir(parents=True, exist_ok=True)
    seeds = args.seeds / harness
    if seeds.is_dir():
        for p in seeds.iterdir():
            if p.is_file():
                shutil.copyfile(p, corpus / p.name)
    result = Result(harness, seeds=count(corpus), log=work / f"{harness}.log", started=time.monotonic())
    cmd = [
        sys.executable,
        str(HERE / f"fuzz_{harness}.py"),
        f"-max_total_time={args.time}",
        f"-max_len={MAX_LEN[harness]}",
        "-timeout=30",
        "-rss_limit_mb=6144",
        "-print_final_stats=1",
        # Comparison operands guide mutation: finds an off-by-one in a C
        # bound (a planted `> 8` for `> 7`) in seconds where plain coverage did not.
        "-use_value_profile=1",
        f"-dict={HERE / 'dicts' / DICTS[harness]}",
        f"-artifact_prefix={artifacts}/",
        *extra,
        str(corpus),
    ]
    crashers = HERE / "crashers" / harness
    if crashers.is_dir():
        cmd.append(str(crashers))
    assert result.log is not None
    with open(result.log, "wb") as log:  # the child keeps its own descriptor
        env = {**os.environ, "TMPDIR": str(work)}  # scratch files of the harnesses go away with the work dir
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=work, env=env)
    return proc, result


def finish(proc: subprocess.Popen[bytes], result: Result, work: Path) -> None:
    result.returncode = proc.wait()
    assert result.log is not None
    text = result.log.read_text(errors="replace")
    result.seconds = time.monotonic() - result.started
    m = re.search(r"Done (\d+) runs in (\d+) second", text)
    if m:
        result.runs = int(m.group(1))
    else:  # stopped by a finding: libFuzzer still prints its final stats
        m = re.search(r"stat::number_of_executed_units: (\d+)", text)
        result.runs = int(m.group(1)) if m else 0
    covs = re.findall(r"cov: (\d+) ft: (\d+)", text)
    if covs:
        result.coverage = f"cov {covs[-1][0]} ft {covs[-1][1]}"
    result.corpus = count(work / "corpus" / result.harness)
    result.findings = sorted(p for p in (work / "artifacts" / result.harness).iterdir() if p.is_file())


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in argv:
        extra = argv[argv.index("--") + 1 :]
        argv = argv[: argv.index("--")]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--time", type=int, default=45, help="seconds per harness (default 45)")
    parser.add_argument("--jobs", type=int, default=2, help="harnesses run at once (default 2)")
    parser.add_argument("--harness", action="append", choices=HARNESSES)
    args = parser.parse_args(argv)
    args.seeds = args.seeds.resolve()
    args.work = args.work.resolve()
    args.work.mkdir(parents=True, exist_ok=True)

    pending = list(args.harness or HARNESSES)
    running: list[tuple[subprocess.Popen[bytes], Result]] = []
    results: list[Result] = []
    started = time.monotonic()
    while pending or running:
        while pending and len(running) < args.jobs:
            running.append(start(pending.pop(0), args, extra))
        proc, result = running.pop(0)
        finish(proc, result, args.work)
        results.append(result)

    bad = 0
    for r in results:
        rate = r.runs / r.seconds if r.seconds else 0.0
        print(
            f"fuzz {r.harness}: {r.runs} inputs executed in {r.seconds:.0f} s ({rate:.0f}/s), "
            f"corpus {r.seeds} seeds -> {r.corpus}, {r.coverage}, {len(r.findings)} findings, exit {r.returncode}"
        )
        if r.findings or r.returncode != 0 or r.runs == 0:
            bad += 1
            assert r.log is not None
            tail = r.log.read_text(errors="replace").splitlines()[-60:]
            print(f"---- {r.harness}: last lines of {r.log}\n" + "\n".join(tail), file=sys.stderr)
            for f in r.findings[:5]:
                print(f"  finding {f} ({f.stat().st_size} bytes): {f.read_bytes()[:256].hex()}", file=sys.stderr)
                print(f"  reproduce: python {HERE / ('fuzz_' + r.harness + '.py')} {f}", file=sys.stderr)
    total_runs = sum(r.runs for r in results)
    total_findings = sum(len(r.findings) for r in results)
    print(
        f"fuzz total: {total_runs} inputs executed, corpus {sum(r.seeds for r in results)} seeds -> "
        f"{sum(r.corpus for r in results)}, {total_findings} findings, {time.monotonic() - started:.0f} s wall"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
