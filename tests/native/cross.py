"""Cross-architecture check of the plain-C core (ext/*.c) under qemu user mode.

The wheels ship for aarch64 (SHA-256 on the ARMv8 SHA-2 instructions, chosen
at run time) and 32-bit armv7 (a 32-bit size_t), but CI runs on x86_64. This
script builds tests/native/core_vectors.c together with every ext/*.c file
(no Python) for the host, for aarch64 and for armv7, runs the foreign builds
under qemu user mode, feeds every build the same input and checks that:

- every digest (SHA-1/256/384/512 through pe_hash, and SHA-256 through every
  implementation the build says can run) equals hashlib's, for messages of
  every length 0..1024 (prefixes of one fixed pseudo-random pattern), a few
  large ones (64 KiB .. 1 MiB) and, on armv7, one longer than 2**29 bytes
  (its length in bits needs more than 32 bits);
- the run-time dispatch picks what it should: ARMv8 on an aarch64 CPU with
  SHA-2 (qemu -cpu max, and the ARMv8.0 Cortex-A53 model), the portable code
  when the kernel reports no SHA-2 (a build whose getauxval(AT_HWCAP) has the
  SHA2 bit masked: no qemu 7.2 CPU model lacks it), the portable code on armv7;
- the DER walker gives the same answer on every build -- the same SPKI
  digest and field offsets, or the same error code at the same offset -- for
  every certifi root, seeded mutants of them (tests/test_differential.py's
  mutator: byte and bit flips, insertions, deletions, length and tag
  rewrites, truncations, splices, structural edits), length fields set to
  values near 2**32 (which wrap a 32-bit size_t if added unchecked) and SPKI
  mutants through pe_der_validate_spki; and that answer is the compiled
  Python core's (pinengine._core, the same C built by setup.py), field by
  field; the fused walk-and-hash entry point agrees with pe_der_parse_cert.

Every input ends at an unreadable page in the driver, so an over-read faults
even under qemu. Prints one summary line per run; exits 1 on any
disagreement, with the first few inputs in hex and the command that replays
them (the input is kept as <work>/input.bin).

    python tests/native/cross.py [--mutants N] [--seed S] [--work DIR] [--no-huge] [--runs LIST]

``--runs musl`` runs the host's CPU with the musl C library instead (a
static musl-gcc build; Debian: musl-tools), as the musllinux wheels link it:
the same digests, dispatch and walker answers, line for line, as the glibc
build.

Needs gcc, aarch64-linux-gnu-gcc, arm-linux-gnueabihf-gcc (with their static
C libraries), qemu-aarch64 and qemu-arm (Debian: gcc-aarch64-linux-gnu
gcc-arm-linux-gnueabihf libc6-dev-arm64-cross libc6-dev-armhf-cross
qemu-user), and the test extras (certifi, cryptography, pytest: the mutator
lives in the test suite). Exit status: 0 all agree, 1 a disagreement, 2 a
tool is missing.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[2]
DRIVER = ROOT / "tests" / "native" / "core_vectors.c"
ALGORITHMS = ("sha1", "sha256", "sha384", "sha512")
IMPLEMENTATIONS = ("portable", "armv8", "sha-ni")
MAX_REPORTED = 3  # per run
# One message longer than 2**29 bytes for the 32-bit build: its length in
# bits, 8 * len, no longer fits in 32 bits (SHA-256 only: the padding code,
# ext/pe_hash.h's pe__md_tail, is the same source for every algorithm).
HUGE_LENGTH = (1 << 29) + 77

COMMON_FLAGS = ("-std=c99", "-O2", "-Wall", "-Werror", f"-I{ROOT / 'ext'}")


@dataclass(frozen=True)
class Build:
    name: str
    cc: str
    flags: Tuple[str, ...]
    note: str


@dataclass(frozen=True)
class Run:
    name: str  # short
    label: str  # in the summary line
    build: str
    runner: Tuple[str, ...]  # the emulator command (empty: run directly)
    arch: str  # the "arch=" the driver must report
    size_t: int
    available: frozenset[str]  # SHA-256 implementations that must say they can run
    huge: bool = False  # also hash the message longer than 2**29 bytes


BUILDS = (
    Build("host", "gcc", (), "gcc -O2"),
    # No -march: the ARMv8 SHA-2 code is enabled per function (target
    # attribute) and chosen at run time, as in the wheel.
    Build("aarch64", "aarch64-linux-gnu-gcc", ("-static",), "aarch64-linux-gnu-gcc -static -O2"),
    Build(
        "aarch64-nosha2",
        "aarch64-linux-gnu-gcc",
        ("-static", "-DCROSS_MASK_HWCAP_SHA2", "-Wl,--wrap=getauxval"),
        "aarch64-linux-gnu-gcc -static -O2, AT_HWCAP without SHA2",
    ),
    # The armhf baseline the manylinux armv7l wheels are built for: ARMv7-A,
    # VFPv3-D16, hard float; no NEON, no crypto extension.
    Build(
        "armv7",
        "arm-linux-gnueabihf-gcc",
        ("-static", "-march=armv7-a", "-mfpu=vfpv3-d16", "-mfloat-abi=hard"),
        "arm-linux-gnueabihf-gcc -static -O2 -march=armv7-a -mfpu=vfpv3-d16 -mfloat-abi=hard",
    ),
    # The C library of the musllinux wheels (Debian's musl-tools: musl 1.2.3,
    # static). Same CPU as the host, so the same dispatch; a different libc.
    Build("musl", "musl-gcc", ("-static",), "musl-gcc -static -O2"),
)


def host_run(core: ModuleType) -> Run:
    import platform

    machine = platform.machine()
    arch = {"x86_64": "x86_64", "AMD64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}.get(machine, machine)
    available = frozenset(name for name in IMPLEMENTATIONS if core._sha256_available(name))
    return Run(arch, f"{arch} (native)", "host", (), arch, 64, available)


def musl_run(host: Run) -> Run:
    """The host's CPU with musl instead of glibc: the same SHA-256 implementations must run."""
    return Run("musl", f"{host.arch} musl libc (static, native)", "musl", (), host.arch, 64, host.available)


# Run names for --runs; "musl" is not in the default set (it needs musl-tools).
DEFAULT_RUNS = ("aarch64", "aarch64/a53", "aarch64/no-sha2", "armv7")


def foreign_runs() -> List[Run]:
    armv8 = frozenset({"portable", "armv8"})
    portable = frozenset({"portable"})
    a64 = "qemu-aarch64"
    return [
        Run("aarch64", "aarch64 (qemu -cpu max)", "aarch64", (a64, "-cpu", "max"), "aarch64", 64, armv8),
        Run("aarch64/a53", "aarch64 (qemu -cpu cortex-a53)", "aarch64", (a64, "-cpu", "cortex-a53"), "aarch64", 64, armv8),
        Run(
            "aarch64/no-sha2",
            "aarch64 without SHA-2 (qemu -cpu cortex-a53, AT_HWCAP SHA2 bit masked)",
            "aarch64-nosha2",
            (a64, "-cpu", "cortex-a53"),
            "aarch64",
            64,
            portable,
        ),
        Run("armv7", "armv7 (qemu-arm -cpu cortex-a7)", "armv7", ("qemu-arm", "-cpu", "cortex-a7"), "arm", 32, portable, True),
    ]


def active_expected(run: Run) -> str:
    """The dispatch takes the fastest implementation that can run."""
    for name in ("sha-ni", "armv8", "portable"):
        if name in run.available:
            return name
    raise AssertionError(run)


# --------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------


@dataclass
class Inputs:
    messages: List[bytes] = field(default_factory=list)
    certs: List[bytes] = field(default_factory=list)
    must_refuse: List[bool] = field(default_factory=list)  # parallel to certs
    spkis: List[bytes] = field(default_factory=list)
    n_certifi: int = 0
    n_mutants: int = 0
    n_length_edges: int = 0


def record(kind: bytes, payload: bytes) -> bytes:
    return kind + len(payload).to_bytes(4, "big") + payload


def huge_pattern() -> bytes:
    return random.Random(29).randbytes(251)  # a prime period, not a multiple of any block size


def huge_sha256() -> str:
    """hashlib's SHA-256 of the huge message, without holding it in memory."""
    pattern = huge_pattern()
    chunk = pattern * 4096  # a whole number of periods
    h = hashlib.sha256()
    left = HUGE_LENGTH
    while left:
        h.update(chunk[: min(left, len(chunk))])
        left -= min(left, len(chunk))
    return h.hexdigest()


def huge_record() -> bytes:
    return record(b"G", HUGE_LENGTH.to_bytes(4, "big") + bytes([2]) + huge_pattern())


def length_edges(der: bytes, p: int, size: int) -> List[Tuple[bytes, bool]]:
    """The TLV at p (length field of `size` bytes) given lengths that cannot fit.

    4-byte lengths of at least 2**24 (so that the form is minimal), among them
    ones for which p + 6 + length wraps a 32-bit size_t around to the start
    of the input, to the TLV itself or to the end of the input: a walker that
    added before comparing would accept them there. Also, on the outermost
    TLV, the true length plus one: it exceeds the input by one byte. All must
    be refused.
    """
    head, rest = der[: p + 1], der[p + 1 + size :]
    total = len(head) + 5 + len(rest)
    values = {0xFFFFFFFF, 0xFFFFFFFE, 0x80000000, 0x7FFFFFFF, 0x01000000}
    for target in (0, 1, p, total):
        v = ((1 << 32) - (p + 6) + target) % (1 << 32)
        if v >= 1 << 24:
            values.add(v)
    out = [(head + b"\x84" + v.to_bytes(4, "big") + rest, True) for v in sorted(values)]
    if p == 0:
        n = len(rest) + 1
        field_ = bytes([n]) if n < 0x80 else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + n.to_bytes((n.bit_length() + 7) // 8, "big")
        out.append((head + field_ + rest, True))
    return out


def make_inputs(core: ModuleType, mutants: int, seed: int) -> Inputs:
    import certifi

    from pinengine._pem import load_certificates

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    diff = importlib.import_module("tests.test_differential")  # the suite's mutator

    rng = random.Random(seed)
    ins = Inputs()
    pattern = rng.randbytes(1024)
    ins.messages = [pattern[:n] for n in range(1025)]
    for n in (65536, 65536 + 55, 65536 + 56, 262143, rng.randrange(300_000, 900_000), 1 << 20):
        ins.messages.append(rng.randbytes(n))

    roots = load_certificates(Path(certifi.where()).read_bytes())
    ins.n_certifi = len(roots)
    ins.certs = list(roots)
    for _ in range(mutants):
        ins.certs.append(diff.mutant(rng, roots))
    ins.n_mutants = mutants
    ins.must_refuse = [False] * len(ins.certs)
    for der in roots:
        hs = diff.headers(der)
        picks = {0, 1} | {rng.randrange(len(hs)) for _ in range(2)}
        for i in sorted(picks):
            p, _tag, size, _length = hs[i]
            for edged, refuse in length_edges(der, p, size):
                ins.certs.append(edged)
                ins.must_refuse.append(refuse)
                ins.n_length_edges += 1

    root_spkis = [core.extract_spki(der) for der in roots]
    ins.spkis = list(root_spkis)
    for _ in range(max(200, mutants // 4)):
        ins.spkis.append(diff.mutant(rng, root_spkis))
    for spki in root_spkis[:20]:
        for edged, _refuse in length_edges(spki, 0, diff.headers(spki)[0][2]):
            ins.spkis.append(edged)
    return ins


def encode(ins: Inputs, huge: bool) -> bytes:
    parts = [record(b"H", m) for m in ins.messages]
    parts += [record(b"C", c) for c in ins.certs]
    parts += [record(b"S", s) for s in ins.spkis]
    if huge:
        parts.append(huge_record())
    return b"".join(parts)


# --------------------------------------------------------------------------
# Expected answers (hashlib, pinengine._core)
# --------------------------------------------------------------------------

MESSAGE_RE = re.compile(r"^malformed (?:certificate|subjectPublicKeyInfo): (.*) at offset (\d+)$")


@dataclass
class Expected:
    codes: Dict[str, int]  # pe_der_strerror message -> code (from the host build)
    certs: List[str] = field(default_factory=list)  # "ok <digest>" or "err <code> <off>"
    spkis: List[str] = field(default_factory=list)


def refusal(exc: Exception, codes: Dict[str, int]) -> str:
    m = MESSAGE_RE.match(str(exc))
    if not m or m.group(1) not in codes:
        return f"unparsed refusal {str(exc)!r}"
    return f"err {codes[m.group(1)]} {m.group(2)}"


def expected_answers(core: ModuleType, ins: Inputs, codes: Dict[str, int]) -> Expected:
    from pinengine._errors import CertificateParseError

    exp = Expected(codes)
    for der in ins.certs:
        try:
            exp.certs.append("ok " + core.spki_sha256(der).hex())
        except CertificateParseError as exc:
            exp.certs.append(refusal(exc, codes))
    for spki in ins.spkis:
        try:
            core.validate_spki(spki)
            exp.spkis.append("ok")
        except CertificateParseError as exc:
            exp.spkis.append(refusal(exc, codes))
    return exp


def spans(result: str) -> Dict[str, Tuple[int, int]]:
    """The field spans of an "ok <digest> v=.. tbs=off+len ..." result."""
    out = {}
    for token in result.split()[3:]:
        name, _, value = token.partition("=")
        off, _, length = value.partition("+")
        out[name] = (int(off), int(length))
    return out


def fields_problem(core: ModuleType, der: bytes, result: str) -> Optional[str]:
    """Compare the spans a build reported with what pinengine._core.parse_certificate reads."""
    from pinengine._types import time_from_tlv

    info = core.parse_certificate(der)
    version = int(result.split()[2].removeprefix("v="))
    s = spans(result)

    def part(name: str) -> bytes:
        off, length = s[name]
        return der[off : off + length]

    checks = [
        ("version", version + 1, info.version),
        ("serial", int.from_bytes(part("serial"), "big", signed=True), info.serial_number),
        ("issuer", part("issuer"), info.issuer_der),
        ("subject", part("subject"), info.subject_der),
        ("spki", part("spki"), info.spki),
        ("not_before", time_from_tlv(part("not_before")), info.not_before),
        ("not_after", time_from_tlv(part("not_after")), info.not_after),
        ("tbs", part("tbs")[:1], b"\x30"),
    ]
    for name, got, want in checks:
        if got != want:
            return f"{name}: the build's span gives {got!r}, pinengine._core {want!r}"
    if hashlib.sha256(part("spki")).hexdigest() != result.split()[1]:
        return "the SPKI digest is not the SHA-256 of the SPKI span"
    return None


# --------------------------------------------------------------------------
# Running and checking
# --------------------------------------------------------------------------


@dataclass
class Outcome:
    run: Run
    lines: List[str]
    returncode: int
    stderr: str
    seconds: float


def build(b: Build, work: Path) -> Path:
    out = work / b.name / "core_vectors"
    out.parent.mkdir(parents=True, exist_ok=True)
    sources = [str(DRIVER), *sorted(str(p) for p in (ROOT / "ext").glob("*.c"))]
    cmd = [b.cc, *COMMON_FLAGS, *b.flags, *sources, "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or proc.stderr.strip():
        raise SystemExit(f"cross: building for {b.name} failed:\n$ {' '.join(cmd)}\n{proc.stderr}")
    return out


def execute(run: Run, binary: Path, stdin: Path) -> Outcome:
    start = time.monotonic()
    with stdin.open("rb") as f:
        proc = subprocess.run([*run.runner, str(binary)], stdin=f, capture_output=True, timeout=900)
    return Outcome(
        run,
        proc.stdout.decode("utf-8", "replace").splitlines(),
        proc.returncode,
        proc.stderr.decode("utf-8", "replace"),
        time.monotonic() - start,
    )


def show(data: bytes, limit: int = 4096) -> str:
    if len(data) <= limit:
        return data.hex()
    return f"{data[:256].hex()}... ({len(data)} bytes)"


class Problems:
    def __init__(self) -> None:
        self.items: List[str] = []
        self.count = 0

    def add(self, text: str) -> None:
        self.count += 1
        if len(self.items) < MAX_REPORTED:
            self.items.append(text)


def check_run(
    out: Outcome,
    core: ModuleType,
    ins: Inputs,
    exp: Expected,
    host_lines: Optional[List[str]],
    problems: Problems,
) -> None:
    run, lines = out.run, out.lines
    where = run.label
    if out.returncode != 0:
        body = [ln for ln in lines if ln[:2] in ("H ", "C ", "S ")]
        problems.add(
            f"{where}: the driver exited with status {out.returncode} after {len(body)} records "
            f"(a negative status is a signal: SIGSEGV -11 is a read past an input)\n"
            f"stderr: {out.stderr.strip()[-2000:]}\n"
            f"next input: {describe_record(ins, len(body))}"
        )
        return
    header = [ln for ln in lines if ln[:2] not in ("H ", "C ", "S ")]
    body = [ln for ln in lines if ln[:2] in ("H ", "C ", "S ")]
    info = dict(tok.split("=", 1) for tok in header[0].split()[1:]) if header and header[0].startswith("info ") else {}
    if info.get("arch") != run.arch or info.get("size_t") != str(run.size_t):
        problems.add(f"{where}: expected arch={run.arch} size_t={run.size_t}, the driver says: {header[:1]}")
    impls = {ln.split()[1]: ln.split()[2] == "1" for ln in header if ln.startswith("impl ")}
    got_available = frozenset(name for name, ok in impls.items() if ok)
    if got_available != run.available:
        problems.add(f"{where}: SHA-256 implementations available {sorted(got_available)}, expected {sorted(run.available)}")
    active = next((ln.split()[1] for ln in header if ln.startswith("active ")), None)
    if active != active_expected(run):
        problems.add(f"{where}: the dispatch chose SHA-256 {active!r}, expected {active_expected(run)!r}")
    table = {ln.split(" ", 2)[2]: int(ln.split(" ", 2)[1]) for ln in header if ln.startswith("error ")}
    if table != exp.codes:
        problems.add(f"{where}: pe_der_strerror table differs from the host build's")
    want_records = len(ins.messages) + len(ins.certs) + len(ins.spkis) + (1 if run.huge else 0)
    if header[-1:] != [f"end {want_records}"] or len(body) != want_records:
        problems.add(f"{where}: {len(body)} result lines for {want_records} records ({header[-1:]})")
        return

    k = 0
    for msg in ins.messages:
        check_hash_line(where, body[k], msg, run, problems)
        k += 1
    for i, der in enumerate(ins.certs):
        line = body[k]
        k += 1
        fused, _, plain = line[2:].partition(" | ")
        if fused != plain:
            problems.add(
                f"{where}: pe_der_parse_cert_spki_sha256 and pe_der_parse_cert disagree on certificate input {i}:\n"
                f"  fused: {fused}\n  plain: {plain}\n  input hex: {show(der)}"
            )
            continue
        verdict = " ".join(fused.split()[:3]) if fused.startswith("err ") else " ".join(fused.split()[:2])
        if verdict != exp.certs[i]:
            problems.add(
                f"{where}: certificate input {i}: this build says {verdict}, pinengine._core says {exp.certs[i]}\n"
                f"  input hex: {show(der)}"
            )
            continue
        if ins.must_refuse[i] and not fused.startswith("err "):
            problems.add(f"{where}: certificate input {i} declares a length beyond the input and was accepted\n  input hex: {show(der)}")
            continue
        if host_lines is not None and line != host_lines[k - 1]:
            problems.add(f"{where}: certificate input {i}:\n  this build: {line}\n  host build: {host_lines[k - 1]}\n  input hex: {show(der)}")
            continue
        if host_lines is None and fused.startswith("ok "):
            problem = fields_problem(core, der, fused)
            if problem:
                problems.add(f"{where}: certificate input {i}: {problem}\n  input hex: {show(der)}")
    for i, spki in enumerate(ins.spkis):
        line = body[k]
        k += 1
        if line[2:] != exp.spkis[i]:
            problems.add(f"{where}: SPKI input {i}: this build says {line[2:]}, pinengine._core says {exp.spkis[i]}\n  input hex: {show(spki)}")
    if run.huge:
        want = {"sha256": huge_sha256()}
        check_digests(where, body[k], HUGE_LENGTH, want, describe_record(ins, k), problems)


def check_hash_line(where: str, line: str, msg: bytes, run: Run, problems: Problems) -> None:
    want = {alg: hashlib.new(alg, msg).hexdigest() for alg in ALGORITHMS}
    for name in sorted(run.available):
        want[f"sha256/{name}"] = want["sha256"]
    check_digests(where, line, len(msg), want, f"input hex: {show(msg)}", problems)


def check_digests(where: str, line: str, length: int, want: Dict[str, str], what: str, problems: Problems) -> None:
    tokens = line.split()
    got = dict(tok.split("=", 1) for tok in tokens[2:])
    if tokens[1] != str(length) or got != want:
        bad = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
        problems.add(
            f"{where}: message of {length} bytes (driver: {tokens[1]}): wrong or missing {', '.join(bad) or 'length'}\n"
            f"  got:  {got}\n  want: {want}\n  {what}"
        )


def describe_record(ins: Inputs, k: int) -> str:
    if k < len(ins.messages):
        return f"hash message {k}, {len(ins.messages[k])} bytes: {show(ins.messages[k])}"
    k -= len(ins.messages)
    if k < len(ins.certs):
        return f"certificate input {k}: {show(ins.certs[k])}"
    k -= len(ins.certs)
    if k < len(ins.spkis):
        return f"SPKI input {k}: {show(ins.spkis[k])}"
    return f"the {HUGE_LENGTH}-byte message (G record: length {HUGE_LENGTH}, the pattern {huge_pattern().hex()} repeated)"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mutants", type=int, default=10000, help="certificate mutants (default 10000; SPKI mutants: a quarter)")
    parser.add_argument("--seed", type=int, default=20240229)
    parser.add_argument("--work", type=Path, help="build and input directory (default: a temporary one, removed)")
    parser.add_argument("--no-huge", action="store_true", help=f"skip the {HUGE_LENGTH}-byte message on armv7 (about 15 s)")
    parser.add_argument("--host-only", action="store_true", help="only the host build (no cross compilers, no qemu)")
    parser.add_argument(
        "--runs",
        default=",".join(DEFAULT_RUNS),
        help=f"the runs besides the host's, comma-separated, from {', '.join(DEFAULT_RUNS)}, musl (default: all but musl)",
    )
    args = parser.parse_args(argv)

    started = time.monotonic()
    core = importlib.import_module("pinengine._core")
    host = host_run(core)
    known = {r.name: r for r in [*foreign_runs(), musl_run(host)]}
    wanted = [] if args.host_only else [name for name in args.runs.split(",") if name]
    unknown = [name for name in wanted if name not in known]
    if unknown:
        parser.error(f"unknown run(s) {', '.join(unknown)}; known: {', '.join(known)}")
    runs = [host] + [known[name] for name in wanted]
    needed = {r.build for r in runs}
    builds = [b for b in BUILDS if b.name in needed]
    tools = {b.cc for b in builds} | {r.runner[0] for r in runs if r.runner}
    missing = sorted(tool for tool in tools if shutil.which(tool) is None)
    if missing:
        print(f"cross: missing tools: {' '.join(missing)} (Debian: gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf libc6-dev-arm64-cross libc6-dev-armhf-cross qemu-user; musl-tools for musl)", file=sys.stderr)
        return 2

    tmp = None
    if args.work is None:
        tmp = tempfile.TemporaryDirectory(prefix="pinengine-cross.")
        work = Path(tmp.name)
    else:
        work = args.work
        work.mkdir(parents=True, exist_ok=True)
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            binaries = dict(zip([b.name for b in builds], pool.map(lambda b: build(b, work), builds)))
        built = time.monotonic()
        print(
            f"cross: built {len(builds)} drivers in {built - started:.1f} s ({' '.join(COMMON_FLAGS[:-1])} and: "
            + "; ".join(b.note for b in builds)
            + ")"
        )

        ins = make_inputs(core, args.mutants, args.seed)
        stdin = work / "input.bin"
        stdin.write_bytes(encode(ins, False))
        stdin_huge = work / "input-huge.bin"
        huge = not args.no_huge and any(r.huge for r in runs)
        if huge:
            stdin_huge.write_bytes(encode(ins, True))
        runs = [dataclasses.replace(r, huge=r.huge and huge) for r in runs]
        n_inputs = len(ins.messages) + len(ins.certs) + len(ins.spkis)
        print(
            f"cross: {n_inputs:,} inputs: {len(ins.messages):,} hash messages (0..1024 bytes, 64 KiB..1 MiB), "
            f"{len(ins.certs):,} certificates ({ins.n_certifi} certifi roots, {ins.n_mutants:,} mutants, seed {args.seed}, "
            f"{ins.n_length_edges:,} declaring a length past the input, most near 2**32), {len(ins.spkis):,} SPKIs"
            + (f"; armv7 also hashes a {HUGE_LENGTH:,}-byte message" if huge else "")
        )

        with ThreadPoolExecutor(max_workers=max(2, min(len(runs), 4))) as pool:
            futures = [
                pool.submit(execute, r, binaries[r.build], stdin_huge if r.huge else stdin) for r in runs
            ]
            # meanwhile: the expected answers from the compiled Python core
            host_out = futures[0].result()
            codes = {ln.split(" ", 2)[2]: int(ln.split(" ", 2)[1]) for ln in host_out.lines if ln.startswith("error ")}
            exp = expected_answers(core, ins, codes)
            outcomes = [host_out] + [f.result() for f in futures[1:]]

        all_problems: List[Problems] = []
        host_body: Optional[List[str]] = [ln for ln in host_out.lines if ln[:2] in ("H ", "C ", "S ")]
        if host_out.returncode != 0 or host_out.lines[-1:] != [f"end {len(host_body or ())}"]:
            host_body = None  # reported as the host run's problem; the others are checked against pinengine._core alone
        failed_runs = []
        for out in outcomes:
            problems = Problems()
            check_run(out, core, ins, exp, host_body if out is not host_out else None, problems)
            r = out.run
            impls = ", ".join(i for i in IMPLEMENTATIONS if i in r.available)
            status = "all agree" if not problems.count else f"{problems.count:,} DISAGREEMENT(S)"
            versus = "hashlib and pinengine._core" if out is host_out else f"hashlib, pinengine._core and the {host_out.run.arch} build"
            print(
                f"cross {r.label}, size_t {r.size_t} bits, sha256={active_expected(r)}: "
                f"{len(ins.messages) + (1 if r.huge else 0):,} hash messages x 4 algorithms (+ SHA-256 by {impls})"
                + (f" incl. {HUGE_LENGTH:,} bytes" if r.huge else "")
                + f", {len(ins.certs):,} certificates, {len(ins.spkis):,} SPKIs: {status} with {versus} ({out.seconds:.1f} s)"
            )
            if problems.count:
                all_problems.append(problems)
                failed_runs.append(out)
        total = time.monotonic() - started
        if failed_runs:
            for out, problems in zip(failed_runs, all_problems):
                print(
                    f"\ncross: {out.run.label}: {problems.count:,} disagreement(s); the first {len(problems.items)}:\n\n"
                    + "\n\n".join(problems.items),
                    file=sys.stderr,
                )
                cmd = " ".join([*out.run.runner, str(binaries[out.run.build]), "<", str(stdin_huge if out.run.huge else stdin)])
                kept = "" if args.work is not None else "  (rerun with --work DIR to keep the files)"
                print(f"replay: {cmd}{kept}", file=sys.stderr)
            print(f"cross total: FAILED ({len(failed_runs)} of {len(outcomes)} runs) in {total:.1f} s", file=sys.stderr)
            return 1
        print(
            f"cross total: {len(outcomes)} runs ({', '.join(o.run.name for o in outcomes)}) agree "
            f"on {n_inputs:,} inputs in {total:.1f} s"
        )
        return 0
    finally:
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
