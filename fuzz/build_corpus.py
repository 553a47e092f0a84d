"""Build the seed corpora of the fuzz harnesses from real certificates.

Sources, all read from installed packages at run time (nothing is committed):
the certifi bundle, the X.509 certificates and public keys of the
``cryptography-vectors`` package (valid, odd and deliberately malformed
ones), and the project's examples/. Writes one directory per harness:

    OUT/der     single certificates (DER), a few PEM files and bundles, SPKIs
    OUT/chain   chains in fuzz_chain.py's input layout
    OUT/pins    pin texts in every written form, good and bad, and public keys
    OUT/policy  TOML and JSON policies (fuzz_policy.py's layout)
    OUT/hpkp    Public-Key-Pins / -Report-Only header values (fuzz_hpkp.py's layout)

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


def hpkp_seeds(rng: random.Random, chain: list[bytes]) -> list[bytes]:
    """Public-Key-Pins header values made from certifi roots' SPKI pins (and the example chain's), in
    fuzz_hpkp.py's layout: byte 0 the options (bit 0 also notes the header; see the harness), then the value."""
    roots = [b.der for b in read_blocks(Path(certifi.where()).read_bytes())]
    roots = [d for d in roots if spki_of(d) is not None]
    b64 = [base64.b64encode(hashlib.sha256(spki_of(d) or d).digest()).decode() for d in rng.sample(roots, min(8, len(roots)))]
    ours = [base64.b64encode(hashlib.sha256(spki_of(d) or d).digest()).decode() for d in chain]
    a, b, c = b64[0], b64[1], b64[2]
    uri = "https://reports.example.com/hpkp"
    values = [
        # well-formed, as servers sent them
        f'pin-sha256="{a}"; pin-sha256="{b}"; max-age=5184000; includeSubDomains; report-uri="{uri}"',
        f'pin-sha256="{a}"; pin-sha256="{b}"; pin-sha256="{c}"; max-age=2592000',
        f'pin-sha256="{ours[1]}"; pin-sha256="{a}"; max-age=600; includeSubDomains',
        f'pin-sha256="{ours[0]}"; pin-sha256="{ours[2]}"; pin-sha256="{b}"; max-age=86400; report-uri="/hpkp-report"',
        f'pin-sha256="{a}"; pin-sha256="{b}"; report-uri="{uri}"',  # report-only: no max-age
        'max-age=0',
        f'max-age=0; pin-sha256="{a}"',
        # quoting, whitespace, case, empty directives
        f'  pin-sha256 = "{a}" ;pin-sha256="{b}";\tmax-age = 600 ; ; ',
        f'PIN-SHA256="{a}"; Pin-Sha256="{b}"; MAX-AGE="3600"; INCLUDESUBDOMAINS; Report-URI="{uri}"',
        f'pin-sha256="\\{a[0]}{a[1:]}"; pin-sha256="{b}"; max-age="0000060"',
        f'pin-sha256="{a}";;;pin-sha256="{b}";max-age=99999999999999999999;',
        f'report-uri="https://r.example/\\"x"; pin-sha256="{a}"; max-age=1',
        # duplicate and unknown directives, other algorithms
        f'pin-sha256="{a}"; pin-sha256="{a}"; pin-sha256="{b}"; max-age=60',
        f'pin-sha256="{a}"; max-age=1; max-age=2',
        f'pin-sha256="{a}"; max-age=1; includeSubDomains; includesubdomains',
        f'pin-sha256="{a}"; max-age=1; report-uri="{uri}"; report-uri="{uri}"',
        f'pin-sha256="{a}"; pin-sha1="3yX8GFIXaSjvhBgBaZFBBj1cYA0="; pin-sha384="x"; foo=bar; x="y;z"; max-age=60',
        f'strict; preload; pin-sha256="{a}"; pin-sha256="{b}"; max-age=60; enforce="yes"',
        # several fields joined into one value (only the first counts when noting)
        f'pin-sha256="{ours[1]}"; pin-sha256="{a}"; max-age=600, pin-sha256="{b}"; max-age=1',
        f'pin-sha256="{a}"; report-uri="https://r.example/a,b"; max-age=60, max-age=0',
        # malformed
        f'pin-sha256={a}; max-age=60',
        f'pin-sha256="{a.replace("+", "-").replace("/", "_")}"; max-age=60',
        f'pin-sha256="{a.rstrip("=")}"; max-age=60',
        f'pin-sha256="{a[:-2]}B="; max-age=60',
        f'pin-sha256="{a[:20]}"; max-age=60',
        f'pin-sha256="{a}"; max-age=-1',
        f'pin-sha256="{a}"; max-age=',
        f'pin-sha256="{a}"; max-age=1e3',
        f'pin-sha256="{a}"; max-age=60; includeSubDomains=1',
        f'pin-sha256="{a}"; max-age=60; report-uri={uri}',
        f'pin-sha256="{a}; max-age=60',
        f'pin-sha256="{a}"; max-age=60; report-uri="ht tp://x"',
        '=; ;',
        '',
    ]
    options = (0x00, 0x01, 0x03, 0x05, 0x09, 0x19, 0x23, 0x29, 0x41, 0x89, 0x8B, 0xA9)
    out: list[bytes] = []
    for value in values:
        for opt in {0x01, 0x09, rng.choice(options), rng.choice(options)}:
            out.append(bytes([opt]) + value.encode())
    # report-uri forms collectors used, in headers that get noted (bit 3: the chain's pin comes first) or
    # that fail report-only validation (bits 1 and 0), with and without a request URL to resolve against
    uris = [
        "https://[2001:db8::1]:8443/hpkp", "http://192.0.2.7/r", "https://user@reports.example.com:443/a?b=c#d",
        "//reports.example.com/hpkp", "/hpkp-report", "hpkp?x=1", "../r", "mailto:hpkp@example.com",
        "https://xn--bcher-kva.example/r", "HTTPS://Reports.Example.COM", "https://r.example/%7E/%2F",
    ]
    for u in uris:
        for opt in (0x09, 0x89, 0x0B, 0x83):
            value = f'pin-sha256="{a}"; max-age=600; report-uri="{u}"'
            out.append(bytes([opt]) + value.encode())
    # obs-text: bytes 0x80-0xFF, read as latin-1 from the wire, or as UTF-8
    out.append(b"\x41" + f'pin-sha256="{a}"; max-age=60; x="caf\xe9 \xff"'.encode("latin-1"))
    out.append(b"\x09" + 'max-age=60; report-uri="https://r.example/caf\xc3\xa9"'.encode("latin-1"))
    out.append(b"\x29" + f'max-age=600; report-uri="{uri}"; x="\x80\\\x85"'.encode("latin-1"))
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
    headers = hpkp_seeds(rng, example_chain)

    counts = {
        "der": write(args.out / "der", der),
        "chain": write(args.out / "chain", chains),
        "pins": write(args.out / "pins", pins),
        "policy": write(args.out / "policy", policies),
        "hpkp": write(args.out / "hpkp", headers),
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
