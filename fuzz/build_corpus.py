"""Build the seed corpora of the fuzz harnesses from real certificates.

Sources, all read from installed packages at run time (nothing is committed):
the certifi bundle, the X.509 certificates and public keys of the
``cryptography-vectors`` package (valid, odd and deliberately malformed
ones), and the project's examples/. Writes one directory per harness:

    OUT/der     single certificates (DER), a few PEM files and bundles, SPKIs
    OUT/chain   chains in fuzz_chain.py's input layout
    OUT/pins    pin texts in every written form, good and bad, and public keys
    OUT/policy  TOML and JSON policies (fuzz_policy.py's layout)

    python fuzz/build_corpus.py OUT [--max-der N]

Prints how many seeds each directory got. Needs pinengine, certifi and
cryptography-vectors (pip install certifi cryptography-vectors).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import random
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import certifi

from pinengine import _core_py as core
from pinengine._errors import CertificateParseError
from pinengine._pem import read_blocks

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fuzz_chain import join

ROOT = Path(__file__).resolve().parent.parent
MAX_SEED = 16384  # bytes; larger files only slow the fuzzer down


def _vectors_dir() -> Path | None:
    try:
        import cryptography_vectors
    except ImportError:
        return None
    return Path(cryptography_vectors.__file__).resolve().parent


def vector_files(subdir: str) -> Iterator[Path]:
    base = _vectors_dir()
    if base is None:
        return
    for path in sorted((base / subdir).rglob("*")):
        if path.is_file() and path.suffix.lower() in (".der", ".pem", ".crt", ".cer") and path.stat().st_size <= 262144:
            yield path


def blocks_of(data: bytes) -> list[tuple[str, bytes]]:
    try:
        return [(b.label, b.der) for b in read_blocks(data)]
    except CertificateParseError:
        return [("CERTIFICATE", data)] if data[:1] == b"\x30" else []


def gather() -> tuple[list[bytes], list[bytes], list[bytes]]:
    """(certificates, raw PEM files, public keys) from every source, deduplicated, in a fixed order."""
    certs: dict[bytes, None] = {}
    pems: dict[bytes, None] = {}
    keys: dict[bytes, None] = {}
    sources = [Path(certifi.where()), ROOT / "examples" / "chain.pem", *vector_files("x509")]
    sources += list(vector_files("asymmetric"))
    for path in sources:
        data = path.read_bytes()
        if b"-----BEGIN " in data and len(data) <= MAX_SEED and len(pems) < 200:
            pems[data] = None
        for label, der in blocks_of(data):
            if len(der) > MAX_SEED:
                continue
            if label == "CERTIFICATE" or label == "X509 CERTIFICATE":
                certs[der] = None
            elif label == "PUBLIC KEY":
                keys[der] = None
    return list(certs), list(pems), list(keys)


def spki_of(der: bytes) -> bytes | None:
    try:
        spki: bytes = core.extract_spki(der)
    except CertificateParseError:
        return None
    return spki


def write(directory: Path, items: list[bytes]) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    for item in items:
        (directory / hashlib.sha1(item).hexdigest()).write_bytes(item)
    return len({hashlib.sha1(i).digest() for i in items})


def pin_texts(rng: random.Random, certs: list[bytes]) -> list[bytes]:
    out: list[bytes] = []
    chosen = rng.sample(certs, min(15, len(certs)))
    for der in chosen:
        spki = spki_of(der) or der
        for alg in ("sha256", "sha384", "sha512", "sha1"):
            d = hashlib.new(alg, spki).digest()
            c = hashlib.new(alg, der).digest()
            b64 = base64.b64encode(d).decode()
            forms = [
                f"{alg}/{b64}",
                f"cert-{alg}/{base64.b64encode(c).decode()}",
                f"spki-{alg}/{b64}",
                f"{alg}//{b64}",
                f'pin-{alg}="{b64}"',
                f"PIN-{alg.upper()} = {b64}",
                ":".join(f"{x:02X}" for x in d),
                d.hex(),
                f"  {alg}/{b64}\n",
                f"{alg}/{base64.urlsafe_b64encode(d).decode()}",
                f"{alg}/{b64.rstrip('=')}",
                f"{alg}/{b64[:-2]}A=",
                f"sha999/{b64}",
            ]
            for text in forms:
                out.append(bytes([rng.choice((0, 1, 2, 4, 6))]) + text.encode())
    for junk in ("", "/", "sha256/", 'pin-sha256="', "pin-sha256=\"abc", "AB:CD", "zz", "sha256/====", "é/ü"):
        out.append(b"\x00" + junk.encode())
    return out


def policy_seeds(rng: random.Random, chain: list[bytes]) -> list[bytes]:
    pins = [f"sha256/{base64.b64encode(hashlib.sha256(spki_of(d) or d).digest()).decode()}" for d in chain]
    other = "sha256/" + base64.b64encode(hashlib.sha256(b"backup").digest()).decode()
    sha1 = "sha1/" + base64.b64encode(hashlib.sha1(b"legacy").digest()).decode()
    cert_pin = "cert-sha256/" + base64.b64encode(hashlib.sha256(chain[0]).digest()).decode()
    mappings: list[dict[str, Any]] = [
        {"domains": [{"host": "www.example.com", "pins": [pins[0], other]}]},
        {"version": 1, "domains": [{"host": "**.example.com", "pins": [pins[1], other], "mode": "report-only"}]},
        {"domains": [{"host": "*.example.com", "pins": [{"pin": pins[2], "position": "root"}, other]}]},
        {"domains": [{"host": "example.com", "include_subdomains": True, "pins": [pins[0]], "require_backup_pin": False}]},
        {"blocked_pins": [pins[1]], "domains": [{"host": "www.example.com", "pins": [pins[0], other]}]},
        {"domains": [{"host": "www.example.com", "pins": [pins[0], other], "blocked_pins": [pins[2]]}]},
        {"domains": [{"host": "www.example.com", "pins": [pins[0], other], "expires": "2025-06-30"}]},
        {"domains": [{"host": "www.example.com", "pins": [pins[0], other], "expires": "2027-01-01T00:00:00+00:00"}]},
        {"allow_sha1": True, "domains": [{"host": "www.example.com", "pins": [sha1, pins[0]]}]},
        {"domains": [{"host": "192.0.2.1", "pins": [pins[0], other]}, {"host": "[::1]", "pins": [pins[0], other]}]},
        {"domains": [{"host": "bücher.example", "pins": [cert_pin, other], "position": "leaf"}]},
        {"domains": [{"host": "www.example.com", "pins": [pins[0], other], "report_uri": ["https://r.example/"]}]},
        {"domains": [{"host": "www.example.com", "pins": [pins[0], other], "hsot": "typo"}]},
        {"domains": [{"host": "*.*.example.com", "pins": [pins[0], other]}]},
        {"domains": []},
        {"version": 2, "domains": []},
    ]
    out: list[bytes] = []
    for m in mappings:
        out.append(b"\x01" + json.dumps(m, ensure_ascii=False).encode())
        out.append(b"\x00" + _to_toml(m).encode())
    out.append(b"\x00" + (ROOT / "examples" / "policy.toml").read_bytes())
    for expires in ("2025-06-30", "2030-01-01T12:00:00Z", "2030-01-01T12:00:00+02:00", "12:00:00", "2030-01-01T12:00:00"):
        entry = f'[[domains]]\nhost = "www.example.com"\npins = ["{pins[0]}", "{other}"]\nexpires = {expires}\n'
        out.append(b"\x00" + entry.encode())
    out += [b"\x00", b"\x01{", b"\x00[[domains]]\nhost = 1\n", b"\x01\xff\xfe"]
    # Structured mode (fuzz_policy.py): the bytes drive a generator of policy mappings.
    out += [bytes([2 | (k & 1)]) + bytes(rng.randrange(256) for _ in range(96)) for k in range(48)]
    return out


def _toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(type(v))


def _to_toml(mapping: dict[str, Any]) -> str:
    lines = [f"{k} = {_toml_value(v)}" for k, v in mapping.items() if k != "domains"]
    for entry in mapping.get("domains", []):
        lines.append("\n[[domains]]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in entry.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--max-der", type=int, default=3000, help="at most this many certificates (default 3000)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)

    certs, pems, keys = gather()
    if _vectors_dir() is None:
        print("build_corpus: cryptography-vectors is not installed; only certifi and examples/ are used", file=sys.stderr)
    certs = certs[: args.max_der]
    good = [c for c in certs if spki_of(c) is not None]
    spkis = [s for s in (spki_of(c) for c in good) if s is not None]
    chain = list(read_blocks((ROOT / "examples" / "chain.pem").read_bytes()))
    example_chain = [b.der for b in chain]

    der = certs + pems + rng.sample(spkis, min(200, len(spkis))) + keys
    der.append(b"".join(rng.sample(good, min(3, len(good)))))  # a DER bundle

    chains = [join(flags, 0x5A, example_chain) for flags in (0, 1, 3, 0x1F, 0x21, 0x41)]
    chains.append(join(1, 0, example_chain[::-1]))
    for _ in range(150):
        n = rng.randint(1, 4)
        chains.append(join(rng.randrange(256), rng.randrange(256), rng.sample(good, min(n, len(good)))))
    for _ in range(50):  # chains with one certificate that may not parse
        picked = rng.sample(good, min(2, len(good))) + [rng.choice(certs)]
        chains.append(join(rng.randrange(256), rng.randrange(256), picked))

    pins = pin_texts(rng, good) + [b"\x08" + k for k in (keys + rng.sample(spkis, min(100, len(spkis))))]
    policies = policy_seeds(rng, example_chain)

    counts = {
        "der": write(args.out / "der", der),
        "chain": write(args.out / "chain", chains),
        "pins": write(args.out / "pins", pins),
        "policy": write(args.out / "policy", policies),
    }
    total = sum(counts.values())
    print(
        f"seed corpus in {args.out}: {total} inputs ("
        + ", ".join(f"{k} {v}" for k, v in counts.items())
        + f"); from {len(certs)} certificates ({len(good)} accepted by the walker), {len(keys)} public keys"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
