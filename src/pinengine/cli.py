"""The ``pinengine`` command: print pins, lint policies, verify chains.

Exit codes (every subcommand):
  0  success: pins printed, policy clean, chain accepted
  1  the check failed: lint findings, a pin mismatch
  2  usage error or unreadable input: bad arguments, a policy that does not
     load (for ``verify``), a malformed certificate or chain file
"""

from __future__ import annotations

import argparse
import base64
import datetime as _dt
import json
import os
import ssl
import sys
from typing import Any, Sequence, TextIO

from . import __version__, _backend
from ._backend import cert_digest, parse_certificate, spki_digest
from ._errors import CertificateParseError, PinFormatError, PinMismatchError, PolicyError
from ._hostnames import entry_spellings, normalize_hostname, to_unicode
from ._pem import load_certificates
from ._types import Status, chain_role
from .pins import SPKI, Pin, spki_pin
from .policy import REPORT_ONLY, DomainEntry, PinPolicy

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

EXPIRY_WARNING_DAYS = 30
TOO_MANY_PINS = 10

#: The most certificates ``verify`` reads from a chain file. Servers send 2-4;
#: cryptography's verifier builds paths of at most 8 intermediates (its
#: default depth). 16 leaves room for servers that send extras (cross-signs,
#: an old root) while keeping its path search small.
MAX_CHAIN_FILE_CERTIFICATES = 16


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _iso(t: _dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _read_chain(path: str) -> list[bytes]:
    """The certificates of a PEM or DER file, in file order (leaf first for a chain)."""
    if path == "-":
        data = sys.stdin.buffer.read()
    else:
        with open(path, "rb") as f:
            data = f.read()
    return load_certificates(data)


# -- pins ------------------------------------------------------------------------


def _cmd_pins(args: argparse.Namespace, out: TextIO) -> int:
    status = EXIT_OK
    for path in args.files:
        try:
            ders = _read_chain(path)
        except (OSError, CertificateParseError) as exc:
            print(f"pinengine pins: {path}: {getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
            status = EXIT_USAGE
            continue
        for index, der in enumerate(ders):
            try:
                info = parse_certificate(der)
            except CertificateParseError as exc:
                print(f"pinengine pins: {path}: certificate {index}: {exc}", file=sys.stderr)
                status = EXIT_USAGE
                continue
            spki = spki_digest(der, args.algorithm)
            cert = cert_digest(der, args.algorithm)
            spki_pin = str(Pin(args.algorithm, spki))
            cert_pin = str(Pin(args.algorithm, cert, "certificate"))
            if args.format == "json":
                record = {
                    "file": path,
                    "index": index,
                    "subject": info.subject,
                    "issuer": info.issuer,
                    "not_before": _iso(info.not_before),
                    "not_after": _iso(info.not_after),
                    "pin": spki_pin,
                    "certificate_pin": cert_pin,
                    f"spki_{args.algorithm}": _b64(spki),
                    f"cert_{args.algorithm}": _b64(cert),
                }
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
            else:
                out.write(
                    f"{path}[{index}] {spki_pin} {cert_pin} "
                    f"{_iso(info.not_before)}..{_iso(info.not_after)} "
                    f'subject="{info.subject}" issuer="{info.issuer}"\n'
                )
    return status


# -- check -----------------------------------------------------------------------


class _Findings:
    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def error(self, text: str) -> None:
        self.items.append(("error", text))

    def warning(self, text: str) -> None:
        self.items.append(("warning", text))

    def note(self, text: str) -> None:
        self.items.append(("note", text))


def _label_problem(host: str) -> str | None:
    for label in host.split("."):
        if label in ("*", "**"):
            continue
        if "_" in label:
            return f"label {label!r} has '_', which a certificate's DNS name cannot have"
        if label.startswith("-") or label.endswith("-"):
            return f"label {label!r} starts or ends with '-'"
    return None


def lint_policy(
    policy: PinPolicy, now: _dt.datetime | None = None, window_days: float = EXPIRY_WARNING_DAYS
) -> list[tuple[str, str]]:
    """Findings for a loaded policy, as ``(severity, message)`` pairs ("error" / "warning" / "note").

    Entries that expired, or expire within ``window_days``, are found as
    ``pinengine.rotation.entry_findings`` finds them. A note says which names
    an entry for a non-ASCII name covers (the form each kind of client sends).
    """
    from .rotation import _entry_finding

    now = now or _dt.datetime.now(_dt.timezone.utc)
    span = _dt.timedelta(days=window_days)
    found = _Findings()
    entries = policy.entries
    for entry in entries:
        where = f"entry {entry.host!r}"
        if len(set(entry.pins)) < 2:
            found.warning(f"{where}: only one pin and no backup pin (require_backup_pin = false)")
        for pin in entry.pins + entry.blocked_pins:
            if pin.algorithm == "sha1":
                found.warning(f"{where}: SHA-1 pin {pin}; pin with sha256")
        for pin in set(entry.pins) & set(entry.blocked_pins + policy.blocked_pins):
            found.error(f"{where}: {pin} is both pinned and blocked; it can never match")
        expiry = _entry_finding(entry, span, now)
        if expiry is not None:
            found.items.append((expiry.severity, expiry.message))
        problem = _label_problem(entry.host)
        if problem:
            found.error(f"{where}: can never match: {problem}")
        if entry.pattern != "exact" and "." not in entry.base:
            found.warning(f"{where}: covers every name under the top-level domain {entry.base!r}")
        if len(entry.pins) > TOO_MANY_PINS:
            found.warning(
                f"{where}: {len(entry.pins)} pins; with this many keys accepted, pinning means little"
            )
        if all(p.kind != SPKI for p in entry.pins):
            found.warning(f"{where}: only certificate pins; they break on every renewal (pin public keys)")
        if entry.mode == REPORT_ONLY:
            found.warning(f"{where}: report-only: mismatches are logged, not refused")
        _idna_findings(found, policy, entry)
    for a in entries:
        for b in entries:
            if a is b:
                continue
            probe = a.base if a.pattern != "one-label" else "x." + a.base
            if b.covers(probe) and _more_specific(a, b):
                found.warning(
                    f"entries {a.host!r} and {b.host!r} overlap: {a.host!r} takes precedence "
                    f"for the names it covers"
                )
    return found.items


def _idna_findings(found: _Findings, policy: PinPolicy, entry: DomainEntry) -> None:
    """What an entry for a non-ASCII name covers, and the forms of it another entry takes."""
    prefix = entry.host[: len(entry.host) - len(entry.base)]
    unicode = to_unicode(entry.base)
    if unicode == entry.base:
        return
    where = f"entry {entry.host!r} ({prefix}{unicode})"
    forms = entry_spellings(entry.base)
    if len(forms) == 1:
        found.note(f"{where} covers {entry.host}: every client sends this form")
        return
    found.note(f"{where} covers " + "; ".join(f"{prefix}{s.name}, sent by {s.senders}" for s in forms))
    table = policy._table(entry)
    for form in forms[1:]:
        other = table.get(form.name)
        if other is not None and other is not entry:
            found.warning(
                f"{where}: {prefix + form.name!r}, the form {form.senders} send for it, "
                f"is held to entry {other.host!r} instead"
            )


def _more_specific(a: DomainEntry, b: DomainEntry) -> bool:
    if a.pattern == "exact":
        return b.pattern != "exact"
    if len(a.base) != len(b.base):
        return len(a.base) > len(b.base)
    return a.pattern == "one-label" and b.pattern == "any-depth"


def _check_samples(args: argparse.Namespace, findings: list[tuple[str, str]]) -> list[Any] | None:
    """The chains to plan rotation with: ``--chain [HOST=]FILE`` and live ``--host HOST[:PORT]``.

    None after printing the reason when an input cannot be read (exit 2).
    Validation failures of live hosts become error findings.
    """
    from .rotation import ChainSample

    samples = []
    for spec in args.chains:
        host, path = None, spec
        if "=" in spec and not os.path.exists(spec):
            host, path = spec.split("=", 1)
        try:
            chain = _read_chain(path)
        except OSError as exc:
            print(f"pinengine check: {path}: {exc.strerror or exc}", file=sys.stderr)
            return None
        except CertificateParseError as exc:
            print(f"pinengine check: {path}: {exc}", file=sys.stderr)
            return None
        if not chain:
            print(f"pinengine check: {path}: no certificates", file=sys.stderr)
            return None
        samples.append(ChainSample(chain, host or None, path))
    if args.hosts:
        from ._live import fetch_chains, split_target

        for target in args.hosts:
            try:
                host, port = split_target(target)
            except ValueError as exc:
                print(f"pinengine check: {exc}", file=sys.stderr)
                return None
            label = f"{host}:{port}"
            try:
                live = fetch_chains(host, port, server_name=host, cafile=args.cafile, timeout=args.timeout)
            except ssl.SSLCertVerificationError as exc:
                findings.append(("error", f"{label}: certificate validation failed: {exc.verify_message or exc}"))
                continue
            except (OSError, ssl.SSLError) as exc:
                print(f"pinengine check: cannot connect to {label}: {exc}", file=sys.stderr)
                return None
            samples.append(ChainSample(live.verified, host, label))
    return samples


def _cmd_check(args: argparse.Namespace, out: TextIO) -> int:
    from .rotation import chain_findings

    if args.window < 0:
        print("pinengine check: --window must not be negative", file=sys.stderr)
        return EXIT_USAGE
    try:
        policy = PinPolicy.from_file(args.policy)
    except PolicyError as exc:
        out.write(f"error: {exc}\n")
        return EXIT_FAILED
    live_findings: list[tuple[str, str]] = []
    samples = _check_samples(args, live_findings)
    if samples is None:
        return EXIT_USAGE
    findings = lint_policy(policy, window_days=args.window) + live_findings
    try:
        findings += [(f.severity, f.message) for f in chain_findings(policy, samples, window=args.window)]
    except CertificateParseError as exc:
        print(f"pinengine check: malformed certificate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as exc:  # a host name of --chain / --host that cannot be used (HostnameError)
        print(f"pinengine check: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for severity, text in findings:
        out.write(f"{severity}: {text}\n")
    errors = sum(1 for s, _ in findings if s == "error")
    warnings = sum(1 for s, _ in findings if s == "warning")
    checked = len(samples) + len(live_findings)
    chains = f"{checked} chain{'s' if checked != 1 else ''}, " if checked else ""
    out.write(
        f"{args.policy}: {len(policy.entries)} entries, {chains}{errors} errors, {warnings} warnings\n"
    )
    if errors or (warnings and args.strict):
        return EXIT_FAILED
    return EXIT_OK


# -- verify ----------------------------------------------------------------------


def _load_verify_policy(args: argparse.Namespace, host: str) -> PinPolicy:
    if args.policy:
        return PinPolicy.from_file(args.policy)
    pins = [Pin.parse(p) for p in args.pin]
    return PinPolicy([DomainEntry(host, tuple(pins), require_backup_pin=False)])


def _print_chain(out: TextIO, title: str, chain: Sequence[bytes]) -> None:
    out.write(f"{title}:\n")
    for i, der in enumerate(chain):
        info = parse_certificate(der)
        out.write(f"  {i} {chain_role(i, len(chain))}: {spki_pin(der)} {info.subject}\n")


def _decide(out: TextIO, policy: PinPolicy, host: str, chain: list[bytes], verified: bool) -> int:
    try:
        result = policy.verify(host, chain, verified=verified)
    except PinMismatchError as exc:
        out.write(f"decision: REFUSED\n{exc}\n")
        return EXIT_FAILED
    if result.status == Status.MATCH:
        m = result.matches[0]
        out.write(f"decision: accepted: {m.pin} matched certificate {m.index} ({m.role})\n")
    elif result.status == Status.NOT_PINNED:
        out.write("decision: accepted: no policy entry covers this host (not pinned)\n")
    else:
        out.write(f"decision: accepted ({result.status}, NOT enforced)\n{result.message}\n")
    return EXIT_OK


def _cmd_verify(args: argparse.Namespace, out: TextIO) -> int:
    if bool(args.policy) == bool(args.pin):
        print("pinengine verify: give --policy POLICY or --pin PIN (one or more)", file=sys.stderr)
        return EXIT_USAGE
    if args.host:
        return _verify_offline(args, out)
    return _verify_live(args, out)


def _verify_offline(args: argparse.Namespace, out: TextIO) -> int:
    if args.cafile and args.insecure:
        print("pinengine verify: --insecure (no validation) and --cafile (validate) contradict each other",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        policy = _load_verify_policy(args, args.host)
        chain = _read_chain(args.target)
    except (PolicyError, PinFormatError, CertificateParseError) as exc:
        print(f"pinengine verify: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"pinengine verify: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    if len(chain) > MAX_CHAIN_FILE_CERTIFICATES:
        print(f"pinengine verify: {args.target}: {len(chain)} certificates; a chain file holds at most "
              f"{MAX_CHAIN_FILE_CERTIFICATES}", file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.cafile:
            return _verify_offline_validated(args, out, policy, chain)
        out.write(f"host: {args.host}\n")
        why = "--insecure" if args.insecure else "offline, no --cafile"
        out.write(f"chain: NOT validated ({why}): only the leaf can match a pin\n")
        _print_chain(out, "chain file", chain)
        # The whole file goes to the decision: a blocked key anywhere in it
        # still refuses, but only the leaf can match a pin (verified=False).
        return _decide(out, policy, args.host, chain, False)
    except CertificateParseError as exc:
        print(f"pinengine verify: {args.target}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as exc:
        print(f"pinengine verify: {exc}", file=sys.stderr)
        return EXIT_USAGE


class _ChainInvalid(Exception):
    """The chain file did not validate: the verifier's reason."""


def _x509_objects(ders: Sequence[bytes], where: str) -> list[Any]:
    from cryptography import x509

    certs = []
    for i, der in enumerate(ders):
        try:
            certs.append(x509.load_der_x509_certificate(der))
        except ValueError as exc:
            raise CertificateParseError(f"{where}: certificate {i}: {exc}") from None
    return certs


def _validate_chain_file(host: str, chain: Sequence[bytes], target: str, roots: Sequence[bytes], cafile: str) -> list[bytes]:
    """The chain cryptography's X.509 verifier builds from ``chain`` (leaf first) to one of ``roots``, for ``host``.

    Raises _ChainInvalid with the verifier's reason, ImportError without
    cryptography >= 42, CertificateParseError for a certificate it cannot
    read and ValueError for a host name it cannot check.
    """
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509 import verification

    anchors = _x509_objects(roots, cafile)
    certs = _x509_objects(chain, target)
    name = normalize_hostname(host)
    subject: verification.Subject
    # An address is checked as the client's TLS library reads what it was
    # given: ``::ffff:127.0.0.1`` is an IPv6 address there, although its pins
    # are 127.0.0.1's.
    literal = host.strip()
    if literal.startswith("[") and literal.endswith("]"):
        literal = literal[1:-1]
    try:
        subject = x509.IPAddress(ipaddress.ip_address(literal.partition("%")[0]))
    except ValueError:
        try:
            subject = x509.IPAddress(ipaddress.ip_address(name))
        except ValueError:
            subject = x509.DNSName(name)
    try:
        verifier = verification.PolicyBuilder().store(verification.Store(anchors)).build_server_verifier(subject)
    except ValueError as exc:  # a name no certificate can carry, such as a wildcard
        raise ValueError(f"--host {host!r}: a chain cannot be validated for this name ({exc})") from None
    try:
        built = verifier.verify(certs[0], certs[1:])
    except verification.VerificationError as exc:
        raise _ChainInvalid(str(exc)) from None
    return [c.public_bytes(Encoding.DER) for c in built]


def _verify_offline_validated(args: argparse.Namespace, out: TextIO, policy: PinPolicy, chain: list[bytes]) -> int:
    try:
        roots = _read_chain(args.cafile)
    except OSError as exc:
        print(f"pinengine verify: {args.cafile}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    except CertificateParseError as exc:
        print(f"pinengine verify: {args.cafile}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        validated = _validate_chain_file(args.host, chain, args.target, roots, args.cafile)
    except ImportError:
        print("pinengine verify: --cafile validates the chain file with cryptography (>= 42), which is not "
              "installed: pip install 'pinengine[cryptography]'", file=sys.stderr)
        return EXIT_USAGE
    except CertificateParseError as exc:
        print(f"pinengine verify: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except _ChainInvalid as exc:
        out.write(f"host: {args.host}\n")
        out.write(f"chain: NOT valid against {args.cafile} for {args.host}\n")
        _print_chain(out, "chain file", chain)
        out.write(f"decision: REFUSED: chain validation failed: {exc}\n")
        return EXIT_FAILED
    out.write(f"host: {args.host}\n")
    out.write(f"chain: validated against {args.cafile} for {args.host}\n")
    _print_chain(out, "validated chain", validated)
    if validated != chain:
        _print_chain(out, "chain file (differs from the validated chain)", chain)
    return _decide(out, policy, args.host, validated, True)


def _verify_live(args: argparse.Namespace, out: TextIO) -> int:
    from ._live import fetch_chains, split_target

    try:
        host, port = split_target(args.target)
        name = args.sni or host
        policy = _load_verify_policy(args, name)
    except (ValueError, PolicyError, PinFormatError) as exc:
        print(f"pinengine verify: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        live = fetch_chains(host, port, server_name=name, cafile=args.cafile, insecure=args.insecure,
                            timeout=args.timeout)
    except ssl.SSLCertVerificationError as exc:
        out.write(f"host: {name} ({host} port {port})\ndecision: REFUSED: certificate validation failed: "
                  f"{exc.verify_message or exc}\n")
        return EXIT_FAILED
    except (OSError, ssl.SSLError) as exc:
        print(f"pinengine verify: cannot connect to {host} port {port}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    out.write(f"host: {name} ({live.address[0]} port {live.address[1]}, {live.version})\n")
    try:
        if args.insecure:
            out.write("validation: OFF (--insecure): only the leaf can match a pin\n")
            _print_chain(out, "served chain", live.served)
            return _decide(out, policy, name, live.served[:1], False)
        _print_chain(out, "verified chain", live.verified)
        if live.served != live.verified:
            _print_chain(out, "served chain (differs from the verified chain)", live.served)
        return _decide(out, policy, name, live.verified, True)
    except CertificateParseError as exc:
        out.write(f"decision: REFUSED: the server sent a malformed certificate: {exc}\n")
        return EXIT_FAILED


# -- entry point -------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pinengine",
        description="TLS certificate and public-key pinning: print pins, lint policies, verify chains.",
        epilog="Exit codes: 0 success; 1 check failed (lint findings, pin mismatch); "
        "2 usage error or unreadable input.",
    )
    parser.add_argument(
        "--version", action="version",
        version=f"pinengine {__version__} ({_backend.name()} backend)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("pins", help="print the pins of certificates in PEM/DER files or bundles")
    p.add_argument("files", nargs="+", metavar="FILE", help="PEM or DER file ('-' for standard input)")
    p.add_argument("--format", choices=("text", "json"), default="text",
                   help="text (default) or JSON, one object per line")
    p.add_argument("--algorithm", choices=("sha256", "sha384", "sha512"), default="sha256",
                   help="digest algorithm of the pins (default sha256)")
    p.set_defaults(func=_cmd_pins)

    p = sub.add_parser("check", help="lint a policy file (TOML or JSON); plan rotations with --chain/--host",
                       description="Lint a policy: missing backup pins, SHA-1 pins, expired or soon-expiring "
                       "entries, patterns that can never match, overlapping entries, too many pins. "
                       "With --chain FILE or --host HOST: rotation planning: certificates carrying the pins "
                       "that expire within --window days, entries whose only matching pins are on such "
                       "certificates with no backup pin, chains matching no pin. "
                       "Exit 1 on errors (and on warnings with --strict), 2 when a chain or host cannot be read.")
    p.add_argument("policy", metavar="POLICY")
    p.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    p.add_argument("--chain", dest="chains", action="extend", nargs="+", default=[], metavar="[HOST=]FILE",
                   help="rotation planning: a chain (PEM/DER, leaf first) to check against the entries whose "
                   "pins it matches, or against HOST's entry; warns when certificates carrying pins expire "
                   "within the window without a backup pin")
    p.add_argument("--host", dest="hosts", action="append", default=[], metavar="HOST[:PORT]",
                   help="rotation planning against a live server's validated chain (repeatable)")
    p.add_argument("--window", type=float, default=EXPIRY_WARNING_DAYS, metavar="DAYS",
                   help=f"warn about expiry within this many days (default {EXPIRY_WARNING_DAYS})")
    p.add_argument("--cafile", help="--host: trust these CA certificates instead of the system store")
    p.add_argument("--timeout", type=float, default=10.0, help="--host: connect/handshake timeout in seconds")
    p.set_defaults(func=_cmd_check)

    p = sub.add_parser(
        "verify",
        help="verify a live server (HOST[:PORT]) or a chain file (--host HOST FILE) against a policy or pins",
        description="Live: connect to HOST[:PORT] (IPv6 as [::1]:443), validate the chain, check its pins "
        "and print the verified chain (and the served one where it differs). Offline: with --host HOST, "
        "the argument is a chain file (leaf first); it is validated only with --cafile (the pins are then "
        "checked on the chain that validated), otherwise only its leaf can match a pin. "
        "Exit 0 accepted, 1 refused (or not valid), 2 bad input or no connection.",
    )
    p.add_argument("target", metavar="HOST[:PORT] | CHAIN_FILE")
    p.add_argument("--host", help="offline mode: the host name the chain file was served for")
    p.add_argument("--policy", metavar="POLICY", help="policy file (TOML or JSON)")
    p.add_argument("--pin", action="append", metavar="PIN", help="a pin to require (repeatable)")
    p.add_argument("--cafile", help="live: trust these CA certificates instead of the system store; offline: "
                   "validate the chain file against these roots for --host (needs pinengine[cryptography]) "
                   "and check the pins on the chain that validated")
    p.add_argument("--insecure", "--unverified", action="store_true", dest="insecure",
                   help="no trust-store validation: only the leaf may match")
    p.add_argument("--timeout", type=float, default=10.0, help="live: connect/handshake timeout in seconds")
    p.add_argument("--sni", metavar="NAME", help="live: server name to send and to check pins for "
                   "(to test a server by IP address)")
    p.set_defaults(func=_cmd_verify)

    from ._store_cli import add_parser as add_store_parser

    add_store_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command; returns the exit code (the console script exits with it)."""
    parser = _parser()
    args: Any = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    return int(args.func(args, out or sys.stdout))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
