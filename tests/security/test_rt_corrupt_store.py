"""Attack: write the dynamic-pin store yourself (SQLite file, JSON file, Redis key) and see what the client does.

Someone who can write the store (a shared Redis, a file on a shared volume)
writes records the library never would: times far past what a date can
show (``1e300``), negative times, pins nested thousands of levels deep. And
an operator types ``pinengine store accept --ttl 1e300``. Before, these
raised OverflowError, OSError or RecursionError: tracebacks from
``pinengine store list``, and foreign exceptions inside handshakes. Now a
record's times must lie between 0 and the year 9999 (``LAST_TIME``), JSON
nested too deeply is corrupt data, and ``--ttl`` has the bound a policy's
``ttl`` has (``MAX_TTL``). Nor is a record's size left to the writer: at
most ``MAX_RECORD_PINS`` pins, ``MAX_RECORD_BYTES`` of stored text (checked
before it is decoded), a report-uri of the length reports accept, and a
store file of ``MAX_STORE_FILE_BYTES``. A corrupt record is a StoreError: the dynamic
entry's connection is refused (fail closed, even when the corrupt record
names the server's own key), and the command exits 2 naming the problem.
Against a real TLS server, real SQLite and JSON files, a real redis-server.
"""

from __future__ import annotations

import hashlib
import io
import json
import socket
import sqlite3
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from pinengine import Pin, PinMismatchError, PinPolicy
from pinengine.cli import main
from pinengine.hooks.ssl import create_pinned_context
from pinengine.stores import JSONFileStore, PinRecord, RedisStore, SQLiteStore
from tests.certs import Chain, cached_chain, make_chain
from tests.tls import TLSServer

HOST = "localhost"
# Deep enough for any JSON decoder's recursion limit, and under MAX_RECORD_BYTES, so that it is the
# nesting that is refused, not the size.
DEEP = "[" * 30_000 + "]" * 30_000


def many_pins(n: int) -> list[str]:
    """n distinct, well-formed SHA-256 pins (of no key anyone holds)."""
    return [str(Pin("sha256", hashlib.sha256(b"%d" % i).digest())) for i in range(n)]


@pytest.fixture(scope="module")
def chain() -> Chain:
    return cached_chain("p256", HOST)


@pytest.fixture(scope="module")
def server(chain: Chain) -> Iterator[TLSServer]:
    with TLSServer(chain) as srv:
        yield srv


def cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


def fields(chain: Chain, **changes: Any) -> dict[str, Any]:
    """A record for HOST naming the server's own key, then the attacker's changes (a list of pins
    comes after the server's own)."""
    own = str(Pin.from_certificate(chain.ders[0]))
    record = PinRecord.create(HOST, [own], source="tofu").to_dict()
    record.update(changes)
    if isinstance(record["pins"], list):
        record["pins"] = [own, *record["pins"]]
    return record


# What the attacker writes (the record's fields, or "pins" as raw JSON text), and what the refusal must say.
CORRUPTIONS = {
    "first_seen=1e300": ({"first_seen": 1e300, "last_seen": 1e300}, "first_seen"),
    "expires_at=1e300": ({"expires_at": 1e300}, "expires_at"),
    "expires_at=1e18": ({"expires_at": 1e18}, "expires_at"),
    "last_seen=-1e300": ({"last_seen": -1e300}, "last_seen"),
    "first_seen=-1": ({"first_seen": -1.0}, "first_seen"),
    # (A Python whose JSON decoder reads 30000 levels, 3.13.5 and later, refuses the list's contents.)
    "pins nested 30000 deep": ({"pins": DEEP}, ("nested too deeply", "must be a list of strings")),
    # Each verify of a dynamic entry reads the record: its pin count is bounded like a pin list's,
    # checked before any pin is parsed; a Redis value or an SQLite column that large is refused for
    # its size (MAX_RECORD_BYTES) before it is decoded. (fields() puts the server's own pin first.)
    "65 pins": ({"pins": many_pins(64)}, "more than 64 pins (MAX_RECORD_PINS)"),
    "100000 pins": ({"pins": many_pins(99_999)}, "(MAX_RECORD_"),
    "report_uri of 4 KiB": ({"report_uri": "https://report.example/" + "a" * 4096}, "report_uri"),
}


class Writer:
    """A store of one kind, and a way to write raw data into it behind its back."""

    def __init__(self, kind: str, tmp_path: Path, redis_url: Callable[[], str]) -> None:
        self.kind = kind
        if kind == "sqlite":
            self.location = str(tmp_path / "pins.sqlite3")
            SQLiteStore(self.location).close()  # the schema
        elif kind == "json":
            self.location = str(tmp_path / "pins.json")
        else:
            self.namespace = f"rt-{uuid.uuid4().hex}"
            self.location = redis_url()

    def store(self) -> Any:
        if self.kind == "sqlite":
            return SQLiteStore(self.location)
        if self.kind == "json":
            return JSONFileStore(self.location)
        return RedisStore(self.location, namespace=self.namespace)

    def cli_store(self) -> list[str]:
        return ["--store", self.location] + (["--namespace", self.namespace] if self.kind == "redis" else [])

    def write(self, record: dict[str, Any]) -> None:
        pins_text = record["pins"] if isinstance(record["pins"], str) else json.dumps(record["pins"])
        if self.kind == "sqlite":
            db = sqlite3.connect(self.location)
            db.execute(
                "INSERT OR REPLACE INTO pin_records VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (record["host"], pins_text, record["first_seen"], record["last_seen"], record["expires_at"],
                 record["source"], int(record["include_subdomains"]), record["report_uri"]),
            )
            db.commit()
            db.close()
            return
        body = json.dumps({**record, "pins": "@PINS@"}).replace('"@PINS@"', pins_text)
        if self.kind == "json":
            Path(self.location).write_text(
                '{"format": "pinengine-pin-store", "version": 1, "records": [' + body + "]}"
            )
            return
        import redis

        client = redis.Redis.from_url(self.location)
        client.set(f"{self.namespace}:pin:{record['host']}", body)
        client.close()


@pytest.fixture(params=["sqlite", "json", "redis"])
def writer(request: pytest.FixtureRequest, tmp_path: Path) -> Writer:
    return Writer(request.param, tmp_path, lambda: str(request.getfixturevalue("redis_url")))


def handshake(policy: PinPolicy, server: TLSServer) -> None:
    context = create_pinned_context(policy, cafile=server.cafile)
    with context.wrap_socket(socket.create_connection(("127.0.0.1", server.port)), server_hostname=HOST):
        pass


@pytest.mark.parametrize("corruption", list(CORRUPTIONS), ids=list(CORRUPTIONS))
def test_a_corrupt_record_refuses_the_connection_with_a_store_error(
    writer: Writer, chain: Chain, server: TLSServer, corruption: str
) -> None:
    changes, said = CORRUPTIONS[corruption]
    writer.write(fields(chain, **changes))
    store = writer.store()
    try:
        policy = PinPolicy.from_mapping({"domains": [{"host": HOST, "dynamic": True}]}, store=store, cache_ttl=0)
        # The record names the server's own key, but it cannot be read: refused, never a pass.
        with pytest.raises(PinMismatchError) as info:
            handshake(policy, server)
        message = str(info.value)
        assert "pin store cannot be used" in message, message
        assert any(s in message for s in ((said,) if isinstance(said, str) else said)), message
        assert "Overflow" not in message and "Recursion" not in message and "Errno" not in message, message
    finally:
        store.close()


@pytest.mark.parametrize("corruption", list(CORRUPTIONS), ids=list(CORRUPTIONS))
def test_store_list_names_a_corrupt_record_instead_of_crashing(
    writer: Writer, chain: Chain, corruption: str, capsys: pytest.CaptureFixture[str]
) -> None:
    changes, said = CORRUPTIONS[corruption]
    writer.write(fields(chain, **changes))
    for action in (["list"], ["show", HOST], ["export"]):
        code, _ = cli("store", *writer.cli_store(), *action)
        err = capsys.readouterr().err
        assert code == 2, (action, err)
        assert any(s in err for s in ((said,) if isinstance(said, str) else said)), (action, err)
        assert "Traceback" not in err, (action, err)


def test_a_deeply_nested_import_document_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    document = tmp_path / "deep.json"
    document.write_text("[" * 100_000 + "]" * 100_000)  # a document file has no per-record bound
    code, _ = cli("store", "--store", str(tmp_path / "pins.sqlite3"), "import", str(document))
    assert code == 2
    assert "nested too deeply" in capsys.readouterr().err


@pytest.mark.parametrize("ttl", ["1e300", "1e18", "315360001", "inf", "nan", "-5", "0"])
def test_store_accept_bounds_ttl_like_a_policy(
    tmp_path: Path, chain: Chain, ttl: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store = str(tmp_path / "pins.sqlite3")
    pin = str(Pin.from_certificate(chain.ders[0]))
    code, _ = cli("store", "--store", store, "accept", HOST, pin, "--ttl", ttl)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "--ttl" in err and "at most 315360000" in err, err
    # Nothing was written (an accepted key that is already expired would vanish silently), and the
    # store still lists.
    assert cli("store", "--store", store, "list") == (0, "")
    code, out = cli("store", "--store", store, "accept", HOST, pin, "--ttl", "315360000")
    assert code == 0 and "expires=20" in out, out


def test_a_stranger_key_with_a_readable_record_is_still_refused(
    tmp_path: Path, chain: Chain, server: TLSServer
) -> None:
    # The control: the same store, written correctly, pins another key; the server's key is refused
    # for not matching (not for a store problem), and the correct record still reads.
    other = make_chain("p256", HOST)
    with SQLiteStore(tmp_path / "pins.sqlite3") as store:
        store.put(PinRecord.create(HOST, [str(Pin.from_certificate(other.ders[0]))], source="tofu", ttl=3600))
        policy = PinPolicy.from_mapping({"domains": [{"host": HOST, "dynamic": True}]}, store=store, cache_ttl=0)
        with pytest.raises(PinMismatchError) as info:
            handshake(policy, server)
        assert "Keys recorded for localhost" in str(info.value)


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_a_record_larger_than_the_bound_is_refused_before_it_is_decoded(
    kind: str, tmp_path: Path, chain: Chain, server: TLSServer, request: pytest.FixtureRequest
) -> None:
    # 4 MiB of JSON whitespace around the server's own pin: valid JSON, one pin, and far more text than
    # any record needs. Refused for its size (MAX_RECORD_BYTES), before json.loads reads it.
    writer = Writer(kind, tmp_path, lambda: str(request.getfixturevalue("redis_url")))
    padded = "[" + " " * (4 << 20) + json.dumps(str(Pin.from_certificate(chain.ders[0]))) + "]"
    writer.write(fields(chain, pins=padded))
    store = writer.store()
    try:
        policy = PinPolicy.from_mapping({"domains": [{"host": HOST, "dynamic": True}]}, store=store, cache_ttl=0)
        with pytest.raises(PinMismatchError) as info:
            handshake(policy, server)
        assert "pin store cannot be used" in str(info.value) and "(MAX_RECORD_BYTES)" in str(info.value)
    finally:
        store.close()


def test_a_json_store_file_larger_than_the_bound_is_refused(tmp_path: Path, chain: Chain, server: TLSServer) -> None:
    from pinengine.stores import MAX_STORE_FILE_BYTES

    path = tmp_path / "pins.json"
    record = fields(chain)
    body = json.dumps({"format": "pinengine-pin-store", "version": 1, "records": [record]})
    path.write_text(body[:-1] + " " * (MAX_STORE_FILE_BYTES - len(body) + 1) + "}")
    assert path.stat().st_size == MAX_STORE_FILE_BYTES + 1
    store = JSONFileStore(path)
    policy = PinPolicy.from_mapping({"domains": [{"host": HOST, "dynamic": True}]}, store=store, cache_ttl=0)
    with pytest.raises(PinMismatchError) as info:
        handshake(policy, server)
    assert "(MAX_STORE_FILE_BYTES)" in str(info.value), str(info.value)
    # One byte less is read, and the record works.
    path.write_text(body[:-1] + " " * (MAX_STORE_FILE_BYTES - len(body)) + "}")
    handshake(policy, server)


def test_add_pins_past_the_bound_is_refused_and_the_record_kept(tmp_path: Path) -> None:
    from pinengine.stores import MAX_RECORD_PINS

    with SQLiteStore(tmp_path / "pins.sqlite3") as store:
        pins = many_pins(MAX_RECORD_PINS + 1)
        store.put(PinRecord.create(HOST, pins[:MAX_RECORD_PINS], source="accepted"))
        with pytest.raises(ValueError, match="more than 64 pins"):
            store.add_pins(HOST, pins[MAX_RECORD_PINS:])
        record = store.get(HOST)
        assert record is not None and record.pins == tuple(pins[:MAX_RECORD_PINS])
        with pytest.raises(ValueError, match="more than 64 pins"):
            PinRecord.create(HOST, pins, source="accepted")


def test_store_import_reads_no_more_than_the_bound(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pinengine.stores import MAX_STORE_FILE_BYTES

    document = tmp_path / "big.json"
    with open(document, "wb") as f:
        f.truncate(MAX_STORE_FILE_BYTES + 1)  # sparse: NUL bytes, never decoded
    code, _ = cli("store", "--store", str(tmp_path / "pins.sqlite3"), "import", str(document))
    err = capsys.readouterr().err
    assert code == 2 and "(MAX_STORE_FILE_BYTES)" in err and "Traceback" not in err, err
