"""The ``pinengine`` command: print pins, lint policies, verify chains.

Exit codes (every subcommand):
  0  success: pins printed, policy clean, chain accepted
  1  the check failed: lint findings, a pin mismatch
  2  usage error or unreadable input: bad arguments, a policy that does not
     load (for ``verify``), a malformed certificate or chain file
  141  standard output was closed by its reader (a pipe into ``head``)
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
from ._backend import cert_digest, hash_bytes, parse_certificate, spki_digest
from ._errors import CertificateParseError, PinFormatError, PinMismatchError, PolicyError
from ._files import read_at_most
from ._hostnames import entry_spellings, normalize_hostname, to_unicode
from ._keys import public_keys
from ._pem import load_certificates
from ._types import Status, chain_role
from .pins import SPKI, Pin, spki_pin
from .policy import REPORT_ONLY, DomainEntry, PinPolicy

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_BROKEN_PIPE = 128 + 13  # 128 + SIGPIPE, what a shell reports for `cmd | head`

EXPIRY_WARNING_DAYS = 30
TOO_MANY_PINS = 10

#: The most certificates ``verify`` reads from a chain file. Servers send 2-4;
#: cryptography's verifier builds paths of at most 8 intermediates (its
#: default depth). 16 leaves room for servers that send extras (cross-signs,
#: an old root) while keeping its path search small.
MAX_CHAIN_FILE_CERTIFICATES = 16

#: The most bytes read from a certificate, key or chain file argument: a PEM
#: bundle of every public root CA is well under 1 MiB.
MAX_INPUT_BYTES = 16 << 20


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _plural(count: int, noun: str, nouns: str = "") -> str:
    """``1 chain``, ``2 chains``: output people read says it right."""
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"


def _iso(t: _dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _read_chain(path: str) -> list[bytes]:
    """The certificates of a PEM or DER file, in file order (leaf first for a chain)."""
    return load_certificates(_read_input(path))


def _read_input(path: str) -> bytes:
    """The bytes of a file argument ('-' is standard input), of which at most ``MAX_INPUT_BYTES`` are read."""
    data = read_at_most(sys.stdin.buffer if path == "-" else path, MAX_INPUT_BYTES)
    if data is None:
        raise CertificateParseError(f"larger than {MAX_INPUT_BYTES} bytes, more than any certificate, key or "
                                    "chain file holds (MAX_INPUT_BYTES)")
    return data


# -- pins ------------------------------------------------------------------------


def _passphrase(args: argparse.Namespace) -> bytes | None:
    """The first line of --passphrase-file: a passphrase never goes on the command line."""
    if not args.passphrase_file:
        return None
    with open(args.passphrase_file, "rb") as f:
        return f.readline().rstrip(b"\r\n")


def _cmd_pins(args: argparse.Namespace, out: TextIO) -> int:
    status = EXIT_OK
    try:
        password = _passphrase(args)
    except OSError as exc:
        print(f"pinengine pins: --passphrase-file: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    for path in args.files:
        try:
            keys = public_keys(_read_input(path), password=password)
        except (OSError, CertificateParseError) as exc:
            print(f"pinengine pins: {path}: {getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
            status = EXIT_USAGE
            continue
        for index, key in enumerate(keys):
            if key.certificate is None:
                # A key or a CSR: only an SPKI pin exists. Nothing of a private
                # key but its public half is printed.
                spki = hash_bytes(key.spki, args.algorithm)
                pin = str(Pin(args.algorithm, spki))
                if args.format == "json":
                    doc = {"file": path, "index": index, "kind": key.kind, "pin": pin,
                           f"spki_{args.algorithm}": _b64(spki)}
                    out.write(json.dumps(doc) + "\n")
                else:
                    out.write(f'{path}[{index}] {pin} kind="{key.kind}"\n')
                continue
            der = key.certificate
            try:
                info = parse_certificate(der)
            except CertificateParseError as exc:
                print(f"pinengine pins: {path}: certificate {index}: {exc}", file=sys.stderr)
                status = EXIT_USAGE
                continue
            spki = spki_digest(der, args.algorithm)
            cert = cert_digest(der, args.algorithm)
            key_pin = str(Pin(args.algorithm, spki))
            cert_pin = str(Pin(args.algorithm, cert, "certificate"))
            if args.format == "json":
                record = {
                    "file": path,
                    "index": index,
                    "kind": key.kind,
                    "subject": info.subject,
                    "issuer": info.issuer,
                    "not_before": _iso(info.not_before),
                    "not_after": _iso(info.not_after),
                    "pin": key_pin,
                    "certificate_pin": cert_pin,
                    f"spki_{args.algorithm}": _b64(spki),
                    f"cert_{args.algorithm}": _b64(cert),
                }
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
            else:
                out.write(
                    f"{path}[{index}] {key_pin} {cert_pin} "
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
    for a, b in _overlaps(entries):
        found.warning(
            f"entries {a.host!r} and {b.host!r} overlap: {a.host!r} takes precedence "
            f"for the names it covers"
        )
    return found.items


def _overlaps(entries: Sequence[DomainEntry]) -> list[tuple[DomainEntry, DomainEntry]]:
    """Pairs (a, b) where ``b`` covers a name of ``a`` and ``a`` takes precedence, in entry order.

    A name ``a`` covers (its base; for ``*.`` one name below it) is probed
    against the entries that could cover it, found through one index per
    pattern keyed by every spelling of their base: an exact entry by the
    name, a ``*.`` entry by the name minus its first label, a ``**.`` entry
    by the name or any of its suffixes. So the cost grows with entries times
    labels, not entries squared, and a policy of 100k hosts is checked in
    seconds. The answer is the all-pairs one (``DomainEntry.covers``).
    """
    index: dict[str, dict[str, list[int]]] = {"exact": {}, "one-label": {}, "any-depth": {}}
    for position, entry in enumerate(entries):
        by_name = index.get(entry.pattern, index["any-depth"])
        for spelling in entry_spellings(entry.base):
            by_name.setdefault(spelling.name, []).append(position)
    pairs = []
    for position, a in enumerate(entries):
        probe = a.base if a.pattern != "one-label" else "x." + a.base
        head, _, parent = probe.partition(".")
        found = set(index["exact"].get(probe, ()))
        if head:
            found.update(index["one-label"].get(parent, ()))
        name = probe
        while True:
            found.update(index["any-depth"].get(name, ()))
            _, dot, name = name.partition(".")
            if not dot:
                break
        found.discard(position)
        for other in sorted(found):
            b = entries[other]
            if b.covers(probe) and _more_specific(a, b):
                pairs.append((a, b))
    return pairs


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
    Live hosts that fail validation or cannot be reached become findings.
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
        live = _fetch_hosts(args, findings)
        if live is None:
            return None
        samples.extend(live)
    return samples


def _fetch_hosts(args: argparse.Namespace, findings: list[tuple[str, str]]) -> list[Any] | None:
    """The validated chain of every ``--host``, fetched concurrently.

    A host that cannot be reached or does not validate becomes a finding
    (``unreachable`` or ``error``) and the others are still checked. None
    after printing why when a target is not HOST[:PORT].
    """
    from ._live import fetch_many, split_target, terminal
    from .rotation import ChainSample

    targets = []
    for target in args.hosts:
        try:
            targets.append(split_target(target))
        except ValueError as exc:
            print(f"pinengine check: {exc}", file=sys.stderr)
            return None
    results = fetch_many(targets, cafile=args.cafile, timeout=args.timeout, progress=terminal(),
                         what="hosts checked")
    samples = []
    for (host, port), live in zip(targets, results):
        label = f"{host}:{port}"
        if isinstance(live, ssl.SSLCertVerificationError):
            findings.append(("error", f"{label}: certificate validation failed: {live.verify_message or live}"))
        elif isinstance(live, (OSError, ssl.SSLError)):
            findings.append(("unreachable", f"{label}: cannot connect: {live}"))
        elif isinstance(live, Exception):
            raise live
        else:
            samples.append(ChainSample(live.verified, host, label))
    return samples


def _cmd_check(args: argparse.Namespace, out: TextIO) -> int:
    from .rotation import chain_findings

    if args.window < 0:
        print("pinengine check: --window must not be negative", file=sys.stderr)
        return EXIT_USAGE
    try:
        from ._policy_cli import load_policy_or_bundle

        policy = load_policy_or_bundle(args.policy, args.trusted_keys)
    except PolicyError as exc:
        if args.format == "json":
            doc = {"policy": args.policy, "entries": 0, "chains": 0,
                   "findings": [{"severity": "error", "message": str(exc)}], "errors": 1, "warnings": 0,
                   "unreachable": 0}
            out.write(json.dumps(doc, ensure_ascii=False) + "\n")
        else:
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
    errors = sum(1 for s, _ in findings if s == "error")
    warnings = sum(1 for s, _ in findings if s == "warning")
    unreachable = sum(1 for s, _ in findings if s == "unreachable")
    checked = len(samples) + len(live_findings) - unreachable
    if args.format == "json":
        doc = {"policy": args.policy, "entries": len(policy.entries), "chains": checked,
               "findings": [{"severity": sev, "message": text} for sev, text in findings],
               "errors": errors, "warnings": warnings, "unreachable": unreachable}
        out.write(json.dumps(doc, ensure_ascii=False) + "\n")
    else:
        for severity, text in findings:
            out.write(f"{severity}: {text}\n")
        chains = f"{_plural(checked, 'chain')}, " if checked else ""
        lost = f", {unreachable} unreachable" if unreachable else ""
        out.write(f"{args.policy}: {_plural(len(policy.entries), 'entry', 'entries')}, {chains}"
                  f"{_plural(errors, 'error')}, {_plural(warnings, 'warning')}{lost}\n")
    # The exit status is the worst outcome: a host that could not be checked
    # (2) outranks findings (1).
    if unreachable:
        return EXIT_USAGE
    if errors or (warnings and args.strict):
        return EXIT_FAILED
    return EXIT_OK


# -- verify ----------------------------------------------------------------------


def _load_verify_policy(args: argparse.Namespace, host: str) -> PinPolicy:
    from .reporting import Reporter

    # The command prints the violation itself, once: no log record, and no
    # report POSTed to the policy's collectors by a manual check.
    quiet = Reporter()
    if args.policy:
        return PinPolicy.from_file(args.policy, reporter=quiet)
    # Each --pin is one pin or a curl pin list (sha256//A;sha256//B).
    pins = [pin for text in args.pin for pin in Pin.parse_list(text)]
    return PinPolicy([DomainEntry(host, tuple(pins), require_backup_pin=False)], reporter=quiet)


class _VerifyOutput:
    """What ``verify`` prints: text lines as it goes, or (``--format json``) one JSON document at the end.

    Each call carries both forms: the text line and the document's fields.
    Errors that end the command with exit 2 go to standard error in both.
    """

    def __init__(self, out: TextIO, form: str) -> None:
        self.out = out
        self.json = form == "json"
        self.doc: dict[str, Any] = {}

    def say(self, line: str, **fields: Any) -> None:
        self.doc.update(fields)
        if not self.json:
            self.out.write(line + "\n")

    def chain(self, title: str, key: str, chain: Sequence[bytes]) -> None:
        rows = []
        for i, der in enumerate(chain):
            info = parse_certificate(der)
            role = chain_role(i, len(chain))
            if role == "root" and info.subject != info.issuer:
                role = "intermediate"  # the last a server sent, or a trust anchor that is not a root
            rows.append({"index": i, "role": role, "pin": str(spki_pin(der)), "subject": info.subject})
        self.doc.setdefault("chains", {})[key] = rows
        if not self.json:
            self.out.write(f"{title}:\n")
            for row in rows:
                self.out.write(f"  {row['index']} {row['role']}: {row['pin']} {row['subject']}\n")

    def finish(self, code: int) -> int:
        if self.json:
            self.out.write(json.dumps(self.doc, ensure_ascii=False) + "\n")
        return code


def _decide(rep: _VerifyOutput, policy: PinPolicy, host: str, chain: list[bytes], verified: bool) -> int:
    try:
        result = policy.verify(host, chain, verified=verified)
    except PinMismatchError as exc:
        rep.say(f"decision: REFUSED\n{exc}", decision="refused", status="mismatch", message=str(exc))
        return rep.finish(EXIT_FAILED)
    if result.status == Status.MATCH:
        m = result.matches[0]
        rep.say(f"decision: accepted: {m.pin} matched certificate {m.index} ({m.role})",
                decision="accepted", status=result.status, match={"pin": str(m.pin), "index": m.index, "role": m.role})
    elif result.status == Status.NOT_PINNED:
        rep.say("decision: accepted: no policy entry covers this host (not pinned)",
                decision="accepted", status=result.status)
    else:
        rep.say(f"decision: accepted ({result.status}, NOT enforced)\n{result.message}",
                decision="accepted", status=result.status, message=result.message)
    return rep.finish(EXIT_OK)


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
    rep = _VerifyOutput(out, args.format)
    try:
        if args.cafile:
            return _verify_offline_validated(args, rep, policy, chain)
        why = "--insecure" if args.insecure else "offline, no --cafile"
        rep.say(f"host: {args.host}", host=args.host)
        rep.say(f"chain: NOT validated ({why}): only the leaf can match a pin", validated=False)
        rep.chain("chain file", "file", chain)
        # The whole file goes to the decision: a blocked key anywhere in it
        # still refuses, but only the leaf can match a pin (verified=False).
        return _decide(rep, policy, args.host, chain, False)
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


def _verify_offline_validated(args: argparse.Namespace, rep: _VerifyOutput, policy: PinPolicy,
                              chain: list[bytes]) -> int:
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
        rep.say(f"host: {args.host}", host=args.host)
        rep.say(f"chain: NOT valid against {args.cafile} for {args.host}", validated=False)
        rep.chain("chain file", "file", chain)
        rep.say(f"decision: REFUSED: chain validation failed: {exc}", decision="refused", status="invalid-chain",
                message=f"chain validation failed: {exc}")
        return rep.finish(EXIT_FAILED)
    rep.say(f"host: {args.host}", host=args.host)
    rep.say(f"chain: validated against {args.cafile} for {args.host}", validated=True)
    rep.chain("validated chain", "verified", validated)
    if validated != chain:
        rep.chain("chain file (differs from the validated chain)", "file", chain)
    return _decide(rep, policy, args.host, validated, True)


def _verify_live(args: argparse.Namespace, out: TextIO) -> int:
    from ._live import fetch_chains, split_target

    if os.path.isfile(args.target):
        print(f"pinengine verify: {args.target} is a file: to check a chain file, give the host it was served "
              f"for: pinengine verify --host HOST ... {args.target}", file=sys.stderr)
        return EXIT_USAGE
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
        rep = _VerifyOutput(out, args.format)
        rep.say(f"host: {name} ({host} port {port})", host=name, port=port, validated=False)
        reason = f"certificate validation failed: {exc.verify_message or exc}"
        rep.say(f"decision: REFUSED: {reason}", decision="refused", status="invalid-chain", message=reason)
        return rep.finish(EXIT_FAILED)
    except (OSError, ssl.SSLError) as exc:
        print(f"pinengine verify: cannot connect to {host} port {port}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    rep = _VerifyOutput(out, args.format)
    rep.say(f"host: {name} ({live.address[0]} port {live.address[1]}, {live.version})",
            host=name, address=live.address[0], port=live.address[1], tls_version=live.version)
    try:
        if args.insecure:
            rep.say("validation: OFF (--insecure): only the leaf can match a pin", validated=False)
            rep.chain("served chain", "served", live.served)
            # The whole served chain, unvalidated, as every hook under CERT_NONE gives it: only the
            # leaf can match, and a blocked key anywhere in it refuses.
            return _decide(rep, policy, name, live.served, False)
        rep.doc["validated"] = True
        rep.chain("verified chain", "verified", live.verified)
        if live.served != live.verified:
            rep.chain("served chain (differs from the verified chain)", "served", live.served)
        return _decide(rep, policy, name, live.verified, True)
    except CertificateParseError as exc:
        rep.say(f"decision: REFUSED: the server sent a malformed certificate: {exc}", decision="refused",
                status="malformed-certificate", message=str(exc))
        return rep.finish(EXIT_FAILED)


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

    p = sub.add_parser(
        "pins",
        help="print the pins of certificates, public keys, private keys and CSRs in PEM/DER files",
        description="Print the SPKI pin (and for certificates the certificate pin) of every certificate, "
        "public key (PUBLIC KEY, RSA PUBLIC KEY), private key (PKCS#8, PKCS#1 RSA, SEC1 EC; only the "
        "public key's pin is printed) and certificate signing request (PKCS#10) in each file, saying which "
        "kind each one was. A backup pin is the pin of a key or CSR kept offline for the next certificate.",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="PEM or DER file ('-' for standard input)")
    p.add_argument("--passphrase-file", metavar="FILE",
                   help="first line: the passphrase of an ENCRYPTED PRIVATE KEY (needs pinengine[cryptography])")
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
    p.add_argument("--format", choices=("text", "json"), default="text",
                   help="text (default) or json: one document with the findings and their counts")
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
    p.add_argument("--trusted-key", dest="trusted_keys", action="append", default=[], metavar="PUB.pem",
                   help="POLICY is a signed bundle: check its signature with this Ed25519 key (repeatable)")
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
    p.add_argument("target", metavar="HOST[:PORT] | https://URL | CHAIN_FILE")
    p.add_argument("--host", help="offline mode: the host name the chain file was served for")
    p.add_argument("--policy", metavar="POLICY", help="policy file (TOML or JSON)")
    p.add_argument("--pin", action="append", metavar="PIN",
                   help="a pin to require (repeatable; a curl list sha256//A;sha256//B also works)")
    p.add_argument("--cafile", help="live: trust these CA certificates instead of the system store; offline: "
                   "validate the chain file against these roots for --host (needs pinengine[cryptography]) "
                   "and check the pins on the chain that validated")
    p.add_argument("--insecure", "--unverified", action="store_true", dest="insecure",
                   help="no trust-store validation: only the leaf may match")
    p.add_argument("--timeout", type=float, default=10.0, help="live: connect/handshake timeout in seconds")
    p.add_argument("--format", choices=("text", "json"), default="text",
                   help="text (default) or json: one document with host, validated, chains, decision, status")
    p.add_argument("--sni", metavar="NAME", help="live: server name to send and to check pins for "
                   "(to test a server by IP address)")
    p.set_defaults(func=_cmd_verify)

    from ._init_cli import add_parser as add_init_parser
    from ._policy_cli import add_parser as add_policy_parser
    from ._store_cli import add_parser as add_store_parser

    add_init_parser(sub)
    add_store_parser(sub)
    add_policy_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command; returns the exit code (the console script exits with it)."""
    parser = _parser()
    args: Any = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args, out or sys.stdout))
    except BrokenPipeError:
        # The reader went away (``pinengine pins ... | head -1``): stop quietly
        # with the status a shell gives a process SIGPIPE killed. Standard output
        # points at /dev/null from here on, so the interpreter's final flush
        # cannot raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
