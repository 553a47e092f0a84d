"""``pinengine store ...``: look after the dynamic pins a store holds."""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from .stores import PinRecord

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _when(t: float | None) -> str:
    if t is None:
        return "never"
    return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _document(record: PinRecord) -> dict[str, object]:
    """The record as shown by ``list``/``show --format json``: ``to_dict`` with ISO 8601 times."""
    doc = record.to_dict()
    for key in ("first_seen", "last_seen", "expires_at"):
        value = doc[key]
        doc[key] = None if value is None else _when(float(value))
    return doc


def _line(record: PinRecord) -> str:
    return (
        f"{record.host} {','.join(record.pins)} source={record.source} first_seen={_when(record.first_seen)} "
        f"last_seen={_when(record.last_seen)} expires={_when(record.expires_at)}"
        + (" include_subdomains" if record.include_subdomains else "")
    )


def _store_options(parser: argparse.ArgumentParser, top: bool = False) -> None:
    """--store and --namespace, before the action or after it (``store list --store X``).

    The action's copies default to SUPPRESS so they override the top-level
    value only when given.
    """
    default = os.environ.get("PINENGINE_STORE") if top else argparse.SUPPRESS
    parser.add_argument("--store", default=default, metavar="STORE",
                        help="a path (SQLite, or JSON for *.json), redis://HOST:PORT/DB, or memory:")
    parser.add_argument("--namespace", default="pinengine" if top else argparse.SUPPRESS,
                        help="Redis key namespace (default pinengine)")


#: Actions that only read (or remove what exists): on a store file that does
#: not exist they fail and create nothing, so a mistyped --store is noticed.
_NEEDS_EXISTING = ("list", "show", "forget", "export")


def _missing_store(spec: str | None) -> str | None:
    """The path of a file store that does not exist, or None (present, or not a file)."""
    from .stores import default_path

    if spec in ("memory:",) or (spec and spec.startswith(("redis://", "rediss://", "unix://"))):
        return None
    path = os.fspath(spec) if spec else os.fspath(default_path())
    return None if os.path.exists(path) else path


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``store`` and its subcommands to the ``pinengine`` command's subparsers."""
    p = sub.add_parser(
        "store",
        help="list, show, accept, forget, export or import dynamic pins",
        description="Manage the dynamic pins (trust on first use, HPKP) a store holds. --store is a path "
        "(SQLite, or JSON for *.json), redis://HOST:PORT/DB, or memory:; default: $PINENGINE_STORE, "
        "else the SQLite file in the user's data directory. Exit 0 done, 1 nothing to do (no such host), "
        "2 bad input or the store cannot be used.",
    )
    _store_options(p, top=True)
    ops = p.add_subparsers(dest="store_command", metavar="ACTION")
    o = ops.add_parser("list", help="one line per live record")
    o.add_argument("--format", choices=("text", "json"), default="text",
                   help="text (default) or JSON lines: one object per record, times in ISO 8601")
    _store_options(o)
    o = ops.add_parser("show", help="one host's record as JSON (times in ISO 8601)")
    o.add_argument("host")
    o.add_argument("--format", choices=("text", "json"), default="text",
                   help="text (default: indented JSON) or json (one line)")
    _store_options(o)
    o = ops.add_parser("accept", help="trust more keys for a host (pre-announce or accept the next key)")
    _store_options(o)
    o.add_argument("host")
    o.add_argument("pins", nargs="+", metavar="PIN")
    o.add_argument("--replace", action="store_true", help="trust only these keys from now on")
    o.add_argument("--ttl", type=float,
                   help="seconds the record stays valid (new or replaced records; above 0, at most ten years)")
    o = ops.add_parser("forget", help="remove a host's record (its next validated connection records anew)")
    o.add_argument("host")
    _store_options(o)
    o = ops.add_parser("export", help="write every live record as a JSON document")
    o.add_argument("file", nargs="?", default="-", help="output file (default: standard output)")
    _store_options(o)
    o = ops.add_parser("import", help="add the records of a JSON document made by export")
    _store_options(o)
    o.add_argument("file", help="input file ('-' for standard input)")
    o.add_argument("--replace", action="store_true", help="replace records of hosts already in the store")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, out: TextIO) -> int:
    from ._files import read_at_most
    from .pins import Pin
    from .stores import (
        MAX_STORE_FILE_BYTES,
        NoRecordError,
        PinRecord,
        StoreError,
        export_records,
        import_records,
        open_store,
    )

    if not args.store_command:
        print("pinengine store: give an action: list, show, accept, forget, export, import", file=sys.stderr)
        return EXIT_USAGE
    if args.store_command in _NEEDS_EXISTING:
        missing = _missing_store(args.store)
        if missing is not None:
            print(f"pinengine store {args.store_command}: no store at {missing} (nothing was created; "
                  "accept or import make one)", file=sys.stderr)
            return EXIT_USAGE
    try:
        store = open_store(args.store, namespace=args.namespace)
    except (StoreError, ValueError, OSError) as exc:
        print(f"pinengine store: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        action = args.store_command
        if action == "list":
            records = store.list()
            for record in records:
                out.write((json.dumps(_document(record)) if args.format == "json" else _line(record)) + "\n")
            if not records:
                print("pinengine store list: the store holds no live records", file=sys.stderr)
        elif action == "show":
            found = store.get(args.host)
            if found is None:
                out.write(f"no live record for {args.host}\n")
                return EXIT_FAILED
            out.write(json.dumps(_document(found), indent=None if args.format == "json" else 2) + "\n")
        elif action == "accept":
            if args.ttl is not None:
                from ._schema import _check_ttl

                _check_ttl("--ttl", args.ttl)  # the bound a policy's ttl has (PolicyError, a ValueError)
            pins = [str(Pin.parse(p)) for p in args.pins]
            current = store.get(args.host)
            if current is None or args.replace:
                record = PinRecord.create(args.host, pins, source="accepted", ttl=args.ttl)
                if current is not None:
                    record = PinRecord(record.host, record.pins, current.first_seen, record.last_seen,
                                       record.expires_at, "accepted", current.include_subdomains, current.report_uri)
                store.put(record)
            else:
                record = store.add_pins(args.host, pins)
            out.write(_line(record) + "\n")
        elif action == "forget":
            if not store.delete(args.host):
                out.write(f"no record for {args.host}\n")
                return EXIT_FAILED
            out.write(f"forgot {args.host}\n")
        elif action == "export":
            text = export_records(store)
            if args.file == "-":
                out.write(text if text.endswith("\n") else text + "\n")
            else:
                with open(args.file, "w", encoding="utf-8") as f:
                    f.write(text)
        elif action == "import":
            data = read_at_most(sys.stdin.buffer if args.file == "-" else args.file, MAX_STORE_FILE_BYTES)
            if data is None:
                raise StoreError(f"{args.file}: larger than {MAX_STORE_FILE_BYTES} bytes (MAX_STORE_FILE_BYTES)")
            count = import_records(store, data, replace=args.replace)
            out.write(f"imported {_plural(count, 'record')}\n")
        return EXIT_OK
    except (StoreError, NoRecordError, ValueError, OSError) as exc:
        print(f"pinengine store {args.store_command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        store.close()
