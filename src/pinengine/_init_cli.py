"""``pinengine init HOST[:PORT]...``: a starter policy from the chains live hosts validate.

Each entry pins the key of the CA that issued the host's certificate (the
intermediate; the root when the server's chain has none), as the docs
recommend: it survives leaf renewals. Entries start in report-only mode. A
backup pin (a key kept offline for the next certificate) comes from
``--backup`` (a pin, or a key, CSR or certificate file); without one the
TOML policy carries a placeholder line and does not load until it is filled
in, so nobody deploys a policy without a way out.

Everything the servers send is hostile: subjects only reach the output
inside TOML comments, reduced to printable ASCII on one line.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
from typing import Any, TextIO

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

#: The longest subject text written into a comment.
MAX_COMMENT = 100


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``init`` to the ``pinengine`` command's subparsers."""
    p = sub.add_parser(
        "init",
        help="write a starter policy from live hosts' validated chains",
        description="Connect to each HOST[:PORT] (concurrently), validate its chain, and write a policy with "
        "one report-only entry per host pinning the issuing CA's key. Give the backup pin with --backup "
        "(a pin, or a key/CSR file: see 'pinengine pins'); without it the TOML has a placeholder to fill "
        "in before the policy loads. Exit 0 written, 2 when a host cannot be checked (the others are "
        "still written) or an argument is bad.",
    )
    p.add_argument("hosts", nargs="+", metavar="HOST[:PORT]")
    p.add_argument("--backup", action="append", default=[], metavar="PIN|FILE",
                   help="a backup pin for every entry: a pin, or a file with a key, CSR or certificate (repeatable)")
    p.add_argument("--format", choices=("toml", "json"), help="policy format (default: from -o's suffix, else toml)")
    p.add_argument("-o", "--output", metavar="FILE", help="write here (must not exist) instead of standard output")
    p.add_argument("--cafile", help="trust these CA certificates instead of the system store")
    p.add_argument("--timeout", type=float, default=10.0, help="connect/handshake timeout per host in seconds")
    p.set_defaults(func=run)


def _comment(text: str) -> str:
    """Server-chosen text made safe for one TOML comment line."""
    safe = "".join(c if " " <= c <= "~" else "?" for c in text)
    return safe if len(safe) <= MAX_COMMENT else safe[: MAX_COMMENT - 3] + "..."


def _backups(values: list[str]) -> list[tuple[str, str]]:
    """(pin, where it came from) for each --backup."""
    from .pins import Pin

    found: list[tuple[str, str]] = []
    for value in values:
        if os.path.isfile(value):
            found.extend((str(pin), f"backup, from {os.path.basename(value)}") for pin in Pin.from_file(value))
        else:
            found.extend((str(pin), "backup") for pin in Pin.parse_list(value))
    return found


def _entry(host: str, chain: list[bytes], backups: list[tuple[str, str]]) -> dict[str, Any]:
    from ._backend import parse_certificate
    from ._types import chain_role
    from .pins import spki_pin

    index = 1 if len(chain) > 1 else 0
    der = chain[index]
    info = parse_certificate(der)
    role = chain_role(index, len(chain))
    pins = [(str(spki_pin(der)),
             f"{role} CA key: {info.subject}, valid until {info.not_after:%Y-%m-%d}" if index
             else f"leaf key (the chain has no CA): {info.subject}")]
    pins += [b for b in backups if b[0] != pins[0][0]]
    return {"host": host, "pins": pins}


def _toml(entries: list[dict[str, Any]], sources: list[str], have_backup: bool) -> str:
    today = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d")
    lines = [
        f"# Starter pin policy written by 'pinengine init' on {today} from the validated chains of",
        f"# {_comment(', '.join(sources))}.",
        "# Each entry pins the key of the CA that issued the host's certificate and starts in",
        "# report-only mode: read the reports, then set mode = \"enforce\".",
        "#",
        "# Every entry needs a backup pin: the pin of a key kept offline for the next certificate.",
        "#   openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out next-key.pem",
        "#   pinengine pins next-key.pem        (or the CSR made from it: pinengine pins next.csr)",
        "",
    ]
    for entry in entries:
        lines += ["[[domains]]", f'host = "{entry["host"]}"', "pins = ["]
        for pin, note in entry["pins"]:
            lines.append(f'    "{pin}",  # {_comment(note)}')
        if len(entry["pins"]) < 2:
            lines.append('    # "sha256/...",  # BACKUP PIN NEEDED: the policy does not load without one')
        lines += ["]", 'mode = "report-only"', ""]
    if not have_backup:
        lines.insert(0, "# NOT READY: add the backup pin of each entry where the placeholder line is.")
    return "\n".join(lines)


def run(args: argparse.Namespace, out: TextIO) -> int:
    from ._errors import CertificateParseError, PinFormatError, PolicyError
    from ._hostnames import normalize_hostname
    from ._live import fetch_many, split_target, terminal
    from .policy import PinPolicy

    form = args.format or ("json" if (args.output or "").lower().endswith(".json") else "toml")
    if args.output and os.path.exists(args.output):
        print(f"pinengine init: {args.output} exists; not overwriting it", file=sys.stderr)
        return EXIT_USAGE
    try:
        backups = _backups(args.backup)
        targets = [split_target(t) for t in args.hosts]
        names = [normalize_hostname(host) for host, _ in targets]
    except (OSError, CertificateParseError, PinFormatError, ValueError) as exc:
        print(f"pinengine init: {getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
        return EXIT_USAGE
    results = fetch_many(targets, cafile=args.cafile, timeout=args.timeout, progress=terminal(), what="hosts")
    status = EXIT_OK
    entries: list[dict[str, Any]] = []
    sources: list[str] = []
    for (host, port), name, live in zip(targets, names, results):
        if isinstance(live, Exception):
            reason = getattr(live, "verify_message", None) or live
            print(f"pinengine init: {host}:{port}: left out: {reason}", file=sys.stderr)
            status = EXIT_USAGE
            continue
        if any(e["host"] == name for e in entries):
            continue  # the same host on two ports: one entry
        try:
            entries.append(_entry(name, live.verified, backups))
        except CertificateParseError as exc:
            print(f"pinengine init: {host}:{port}: left out: malformed certificate: {exc}", file=sys.stderr)
            status = EXIT_USAGE
            continue
        sources.append(f"{host}:{port}")
    if not entries:
        print("pinengine init: no host could be checked; nothing written", file=sys.stderr)
        return EXIT_USAGE
    mapping = {"domains": [{"host": e["host"], "pins": [p for p, _ in e["pins"]], "mode": "report-only"}
                           for e in entries]}
    ready = all(len(e["pins"]) > 1 for e in entries)
    if ready:
        try:
            PinPolicy.from_mapping(mapping)  # what is written must load
        except PolicyError as exc:  # pragma: no cover - a bug here, not bad input
            print(f"pinengine init: the policy would not load: {exc}", file=sys.stderr)
            return EXIT_FAILED
    if form == "json":
        text = json.dumps(mapping, indent=2) + "\n"
    else:
        text = _toml(entries, sources, ready)
    if not ready:
        print("pinengine init: add a backup pin to each entry before using the policy (see --backup)",
              file=sys.stderr)
    if args.output:
        with open(args.output, "x", encoding="utf-8") as f:
            f.write(text)
    else:
        out.write(text)
    return status
