"""``pinengine policy ...``: sign policy bundles, check them, publish policies to a fleet's Redis."""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
import time
from typing import Any, Sequence, TextIO

from . import bundles as _bundles
from ._errors import BundleError, PolicyError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

#: The Redis key ``publish`` writes and ``LivePolicy.from_redis`` follows by default in the docs.
DEFAULT_KEY = "pinengine:policy"


def _is_bundle(data: bytes) -> bool:
    head = data[:200].lstrip()
    return head.startswith(b"{") and b'"format"' in data[:400] and _bundles.FORMAT.encode() in data[:400]


def load_policy_or_bundle(path: str, trusted_keys: Sequence[str] = ()) -> Any:
    """A PinPolicy from a policy file or, with ``trusted_keys``, from a signed bundle (for ``check``)."""
    from .live_policy import parse_policy_document
    from .policy import PinPolicy

    try:
        with open(path, "rb") as f:
            data = f.read(_bundles.MAX_BUNDLE_BYTES + 1)
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read policy: {exc.strerror or exc}") from None
    if not _is_bundle(data):
        if trusted_keys:
            raise PolicyError(f"{path}: --trusted-key was given but this is not a signed bundle")
        if len(data) > _bundles.MAX_BUNDLE_BYTES:
            return PinPolicy.from_file(path)
        mapping, _ = parse_policy_document(data, path)
        return PinPolicy.from_mapping(mapping, source=path)
    if not trusted_keys:
        raise PolicyError(f"{path}: a signed policy bundle; give --trusted-key PUBLIC_KEY.pem to check its signature")
    bundle = _bundles.read_bundle(data, trusted_keys, source=path)
    return PinPolicy.from_mapping(bundle.policy, source=f"{path} (serial {bundle.serial})")


def _parse_time(value: str) -> _dt.datetime:
    try:
        if len(value) == 10:  # the end of that day (UTC)
            day = _dt.date.fromisoformat(value)
            if day == _dt.date.max:
                return _dt.datetime.max.replace(tzinfo=_dt.timezone.utc)
            return _dt.datetime(day.year, day.month, day.day, tzinfo=_dt.timezone.utc) + _dt.timedelta(days=1)
        parsed = _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date (YYYY-MM-DD) or ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{value!r} has no timezone (add Z or +00:00)")
    return parsed


def _serial(value: str) -> int:
    if not value.isdigit() or len(value) > 20 or not 1 <= int(value) <= _bundles.MAX_SERIAL:
        raise argparse.ArgumentTypeError(f"{value!r}: a serial is a whole number from 1 to 2**64-1")
    return int(value)


def add_parser(sub: Any) -> None:
    """Register ``pinengine policy`` and its actions."""
    p = sub.add_parser(
        "policy",
        help="signed policy bundles and fleet publishing (sign, verify-bundle, publish, keygen)",
        description="Live policies (docs/live-policies.md): sign a policy into a bundle that devices accept only "
        "from a trusted Ed25519 key with a higher serial, check a bundle by hand, publish a policy or bundle to "
        "the Redis key gateways follow. Exit 0 success, 1 refused, 2 usage error or unreadable input.",
    )
    p.set_defaults(func=_run, policy_command=None)
    actions = p.add_subparsers(dest="policy_command", metavar="ACTION")

    a = actions.add_parser("keygen", help="make an Ed25519 signing key (KEY) and its public key (KEY.pub)")
    a.add_argument("-o", "--output", required=True, metavar="KEY", help="private key file to create (mode 0600)")

    a = actions.add_parser("sign", help="sign a policy file (TOML/JSON) into a bundle")
    a.add_argument("policy", metavar="POLICY")
    a.add_argument("--key", required=True, metavar="KEY.pem", help="Ed25519 private key (PKCS#8 PEM)")
    a.add_argument("-o", "--output", required=True, metavar="BUNDLE", help="bundle file to write ('-': stdout)")
    a.add_argument("--serial", type=_serial, metavar="N",
                   help="the bundle's serial, higher than every earlier one (default: the policy's own "
                   "'serial', else the current Unix time)")
    a.add_argument("--not-after", type=_parse_time, metavar="WHEN",
                   help="refuse the bundle after this date (through that day, UTC) or ISO 8601 time")

    a = actions.add_parser("verify-bundle", help="check a bundle's signature, serial and expiry")
    a.add_argument("bundle", metavar="BUNDLE")
    a.add_argument("--trusted-key", dest="trusted_keys", action="append", required=True, metavar="PUB.pem",
                   help="a trusted Ed25519 public key (repeatable)")
    a.add_argument("--min-serial", type=int, default=0, metavar="N",
                   help="the last serial accepted: the bundle's must be higher")
    a.add_argument("--format", choices=("text", "json"), default="text")

    a = actions.add_parser("publish", help="publish a policy file or bundle to the Redis key gateways follow")
    a.add_argument("policy", metavar="POLICY_OR_BUNDLE")
    a.add_argument("--store", required=True, metavar="redis://HOST:PORT/DB")
    a.add_argument("--key", default=DEFAULT_KEY, help=f"the Redis key (default {DEFAULT_KEY})")
    a.add_argument("--serial", type=_serial, metavar="N",
                   help="policy files: the serial to publish (default: the file's 'serial', else the "
                   "published one plus 1)")
    a.add_argument("--timeout", type=float, default=5.0, help="Redis socket timeout in seconds")


def _run(args: argparse.Namespace, out: TextIO) -> int:
    command = args.policy_command
    try:
        if command == "keygen":
            return _keygen(args, out)
        if command == "sign":
            return _sign(args, out)
        if command == "verify-bundle":
            return _verify(args, out)
        if command == "publish":
            return _publish(args, out)
    except (PolicyError, OSError) as exc:  # BundleError is a PolicyError
        print(f"pinengine policy {command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as exc:  # e.g. --store is not a redis:// URL
        print(f"pinengine policy {command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print("pinengine policy: give an action: keygen, sign, verify-bundle or publish", file=sys.stderr)
    return EXIT_USAGE


def _keygen(args: argparse.Namespace, out: TextIO) -> int:
    private, public = _bundles.generate_key()
    fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private)
    with open(args.output + ".pub", "xb") as f:
        f.write(public)
    key = _bundles.load_public_key(public)
    out.write(f"wrote {args.output} (keep it offline) and {args.output}.pub; key id {_bundles.key_id(key)}\n")
    return EXIT_OK


def _read_policy(path: str) -> tuple[dict[str, Any], int | None]:
    from ._schema import read_policy_bytes
    from .live_policy import parse_policy_document
    from .policy import PinPolicy

    mapping, serial = parse_policy_document(read_policy_bytes(path), path)
    PinPolicy.from_mapping(mapping, source=path)  # never sign or publish a policy that does not load
    return mapping, serial


def _sign(args: argparse.Namespace, out: TextIO) -> int:
    mapping, own = _read_policy(args.policy)
    serial = args.serial or own or int(time.time())
    data = _bundles.sign_bundle(mapping, args.key, serial=serial, not_after=args.not_after)
    if args.output == "-":
        out.write(data.decode("ascii"))
    else:
        tmp = args.output + ".tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, args.output)
        out.write(f"wrote {args.output}: serial {serial}"
                  + (f", not after {args.not_after.isoformat()}" if args.not_after else "") + "\n")
    return EXIT_OK


def _verify(args: argparse.Namespace, out: TextIO) -> int:
    try:
        data = _bundles.read_bundle_file(args.bundle)
        bundle = _bundles.read_bundle(data, args.trusted_keys, min_serial=args.min_serial, source=args.bundle)
    except PolicyError as exc:
        if args.format == "json":
            out.write(json.dumps({"bundle": args.bundle, "valid": False, "error": type(exc).__name__,
                                  "message": str(exc)}) + "\n")
        else:
            out.write(f"refused: {type(exc).__name__}: {exc}\n")
        return EXIT_FAILED
    doc = {
        "bundle": args.bundle,
        "valid": True,
        "serial": bundle.serial,
        "key_id": bundle.key_id,
        "issued_at": bundle.issued_at.isoformat() if bundle.issued_at else None,
        "not_after": bundle.not_after.isoformat() if bundle.not_after else None,
        "domains": len(bundle.policy.get("domains", [])),
        "sha256": bundle.digest,
    }
    if args.format == "json":
        out.write(json.dumps(doc) + "\n")
    else:
        out.write(f"valid: serial {bundle.serial}, signed by {bundle.key_id}, {doc['domains']} domain entries, "
                  f"not after {doc['not_after'] or 'never'}\n")
    return EXIT_OK


def _published_serial(value: bytes | str | None) -> int:
    """The serial of what a Redis key holds now (a bundle's is read without checking it: only to count up)."""
    if value is None:
        return 0
    try:
        doc = json.loads(value)
        if isinstance(doc, dict) and doc.get("format") == _bundles.FORMAT:
            import base64

            doc = json.loads(base64.b64decode(doc["payload"]))
        serial = doc.get("serial") if isinstance(doc, dict) else None
        return serial if type(serial) is int and 0 < serial <= _bundles.MAX_SERIAL else 0
    except (ValueError, TypeError, KeyError):
        return 0


def _publish(args: argparse.Namespace, out: TextIO) -> int:
    import redis

    with open(args.policy, "rb") as f:
        raw = f.read(_bundles.MAX_BUNDLE_BYTES + 1)
    client = redis.Redis.from_url(args.store, socket_timeout=args.timeout, socket_connect_timeout=args.timeout)
    channel = f"{args.key}:published"
    try:
        with client.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(args.key)  # type: ignore[no-untyped-call]
                    current = _published_serial(pipe.get(args.key))
                    if _is_bundle(raw):
                        if len(raw) > _bundles.MAX_BUNDLE_BYTES:
                            raise BundleError(f"{args.policy}: larger than a bundle may be")
                        value, serial = raw, _published_serial(raw)
                    else:
                        mapping, own = _read_policy(args.policy)
                        serial = args.serial or own or current + 1
                        value = json.dumps({"serial": serial, **mapping}, sort_keys=True).encode("utf-8")
                    if serial <= current:
                        print(f"pinengine policy publish: serial {serial} is not higher than serial {current}, "
                              f"published at {args.key}: gateways would refuse it", file=sys.stderr)
                        return EXIT_FAILED
                    pipe.multi()
                    pipe.set(args.key, value)
                    pipe.publish(channel, str(serial))
                    pipe.execute()
                    break
                except redis.WatchError:
                    continue
    except redis.RedisError as exc:
        from .stores.redis_store import _redact

        print(f"pinengine policy publish: {_redact(args.store)}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        client.close()
    out.write(f"published serial {serial} to {args.key}\n")
    return EXIT_OK
