"""A pin store in an SQLite database: the default store, shared by the processes of one machine."""

from __future__ import annotations

import contextlib
import json
import os
import random
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Iterator, Union

from .._errors import named, quoted
from ._base import Change, CountedChange, PinRecord, PinStore, StoreError, check_record_size, noted_domain

__all__ = ["SQLiteStore", "default_path"]

# Version 2 added the noted_hosts table (an index of the HPKP records); version 1 files are upgraded on open.
SCHEMA_VERSION = 2
_TABLE = "pin_records"
_SCHEMA = f"""CREATE TABLE {_TABLE} (
    host TEXT PRIMARY KEY NOT NULL,
    pins TEXT NOT NULL,                 -- JSON list of canonical pin strings
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    expires_at REAL,                    -- NULL: never
    source TEXT NOT NULL,
    include_subdomains INTEGER NOT NULL,
    report_uri TEXT
)"""
# One row per record of source 'hpkp' in pin_records, written in the same
# transaction: the caps on noting count here, per domain, through an index.
_NOTED = "noted_hosts"
_NOTED_SCHEMA = (
    f"""CREATE TABLE {_NOTED} (
    host TEXT PRIMARY KEY NOT NULL,     -- a host whose record has source 'hpkp'
    domain TEXT NOT NULL,               -- its registrable domain (pinengine.stores._base.noted_domain)
    expires_at REAL                     -- as in pin_records (NULL: never)
)""",
    f"CREATE INDEX {_NOTED}_domain ON {_NOTED} (domain)",
    f"CREATE INDEX {_NOTED}_expiry ON {_NOTED} (expires_at)",
)
_COLUMNS = "host, pins, first_seen, last_seen, expires_at, source, include_subdomains, report_uri"
_SELECT = f"SELECT {_COLUMNS} FROM {_TABLE}"

Row = tuple[object, ...]


def default_path() -> Path:
    """Where ``SQLiteStore()`` keeps its database: ``pinengine/pins.sqlite3`` in the user's data directory.

    That is ``$XDG_DATA_HOME`` (if set to an absolute path) or
    ``~/.local/share`` on Linux and other POSIX systems,
    ``~/Library/Application Support`` on macOS and ``%LOCALAPPDATA%`` on Windows.
    """
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        xdg = os.environ.get("XDG_DATA_HOME", "")
        base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".local" / "share"
    return base / "pinengine" / "pins.sqlite3"


class SQLiteStore(PinStore):
    """Records in an SQLite database file (WAL mode, synchronous=FULL).

    Safe for threads (one connection behind a lock) and for processes on one
    machine (SQLite's file locks; a write waits up to ``timeout`` seconds for
    another). Every read-modify-write is one ``BEGIN IMMEDIATE`` transaction.
    Without ``path`` the database is ``default_path()`` (its directory is
    created). A file that is not a pinengine store, or is corrupt, raises
    StoreError and is left as it is. Do not put the file on a network file
    system (SQLite's locks are not reliable there): share with Redis instead.
    """

    def __init__(self, path: Union[str, os.PathLike[str], None] = None, *, timeout: float = 30.0) -> None:
        super().__init__()
        if path is None:
            path = default_path()
            try:
                path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"{path.parent}: cannot create the data directory: {exc}") from None
        self.path = Path(os.fspath(path))
        self._lock = threading.Lock()
        self._timeout = timeout
        with self._errors("cannot open"):
            self._db = sqlite3.connect(
                self.path, timeout=timeout, isolation_level=None, check_same_thread=False
            )
        try:
            self._setup()
        except BaseException:
            self._db.close()
            raise

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {action}: {exc}") from None

    def _setup(self) -> None:
        db = self._db
        # Look before writing anything: a foreign or corrupt file stays untouched.
        with self._errors("cannot open"):
            db.execute("PRAGMA synchronous=FULL")
            problems = [str(row[0]) for row in db.execute("PRAGMA quick_check")]
            if problems != ["ok"]:
                raise StoreError(f"{self.path}: corrupt database: {'; '.join(problems)[:500]}")
            if self._schema() == SCHEMA_VERSION:
                self._enable_wal()
                return
            self._enable_wal()
            db.execute("BEGIN IMMEDIATE")
            try:
                version = self._schema()  # another process may have been first
                if version == 0:
                    db.execute(_SCHEMA)
                if version < SCHEMA_VERSION:
                    self._add_noted_hosts()
                    db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                db.execute("COMMIT")
            except BaseException:
                db.rollback()
                raise

    def _schema(self) -> int:
        """The schema version of a pinengine store, 0 for an empty database; StoreError for anything else."""
        # One statement, so one snapshot: another process may be creating the schema.
        version, names = self._db.execute(
            "SELECT (SELECT user_version FROM pragma_user_version), "
            "(SELECT group_concat(name, ', ') FROM (SELECT name FROM sqlite_master ORDER BY name))"
        ).fetchone()
        tables = str(names or "").split(", ")
        if version == SCHEMA_VERSION and _TABLE in tables and _NOTED in tables:
            return SCHEMA_VERSION
        if version == 1 and _TABLE in tables:
            return 1
        if version == 0 and tables == [""]:
            return 0
        if isinstance(version, int) and version > SCHEMA_VERSION:
            raise StoreError(f"{self.path}: written by a newer pinengine (schema version {version})")
        raise StoreError(
            f"{self.path}: not a pinengine pin store (schema version {version}, tables: {', '.join(tables) or 'none'})"
        )

    def _add_noted_hosts(self) -> None:
        """Create the noted_hosts table from the HPKP records there are (in the caller's transaction)."""
        db = self._db
        for statement in _NOTED_SCHEMA:
            db.execute(statement)
        rows = db.execute(f"SELECT host, expires_at FROM {_TABLE} WHERE source = 'hpkp'").fetchall()
        db.executemany(
            f"INSERT OR REPLACE INTO {_NOTED} (host, domain, expires_at) VALUES (?, ?, ?)",
            [(host, noted_domain(str(host)), expires if isinstance(expires, (int, float)) else None)
             for host, expires in rows],
        )

    def _enable_wal(self) -> None:
        # Switching the journal mode takes an exclusive lock while holding a
        # shared one; waiting in SQLite's busy handler there can deadlock with
        # another process's commit. So: no busy handler, drop out and retry.
        deadline = time.monotonic() + self._timeout
        self._db.execute("PRAGMA busy_timeout=0")
        try:
            while True:
                try:
                    self._db.execute("PRAGMA journal_mode=WAL").fetchone()
                    return
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) or time.monotonic() > deadline:
                        raise
                    time.sleep(random.uniform(0.001, 0.01))
        finally:
            self._db.execute(f"PRAGMA busy_timeout={int(self._timeout * 1000)}")

    def _record(self, row: Row) -> PinRecord:
        host = row[0]
        where = f"{self.path}: row"
        shown = named(host) if isinstance(host, str) else quoted(host)  # whatever was written there
        if isinstance(row[1], str):
            check_record_size(row[1], f"{where} ({shown})")
        try:
            pins = json.loads(row[1]) if isinstance(row[1], str) else None
        except ValueError:
            pins = None
        except RecursionError:
            raise StoreError(f"{where} ({shown}): pins column is nested too deeply to be a list of pins") from None
        if not isinstance(pins, list):
            raise StoreError(f"{where} ({shown}): pins column is not a JSON list: {quoted(row[1])}")
        include = row[6]
        data = dict(zip(_COLUMNS.split(", "), row, strict=True))
        data["pins"] = pins
        data["include_subdomains"] = bool(include) if include in (0, 1) and isinstance(include, int) else include
        record = PinRecord.from_dict(data, where=where)
        if record.host != host:
            raise StoreError(f"{where} ({shown}): host is not in normalised form ({record.host})")
        return record

    @staticmethod
    def _row(record: PinRecord) -> Row:
        return (
            record.host, json.dumps(list(record.pins)), record.first_seen, record.last_seen,
            record.expires_at, record.source, int(record.include_subdomains), record.report_uri,
        )

    def _read(self, host: str) -> PinRecord | None:
        with self._lock, self._errors("cannot read"):
            row = self._db.execute(f"{_SELECT} WHERE host = ?", (host,)).fetchone()
        return None if row is None else self._record(row)

    def _read_all(self) -> list[PinRecord]:
        with self._lock, self._errors("cannot read"):
            rows = self._db.execute(_SELECT).fetchall()
        return [self._record(row) for row in rows]

    def _transact(self, host: str, change: Change) -> PinRecord | None:
        return self._change(host, change)

    def _transact_counted(self, host: str, change: CountedChange, now: float) -> PinRecord | None:
        def counted(current: PinRecord | None) -> PinRecord | None:
            # Expired HPKP records go first (found through the index on expires_at), then two indexed counts.
            db = self._db
            db.execute(
                f"DELETE FROM {_TABLE} WHERE source = 'hpkp' AND expires_at <= ? "
                f"AND host IN (SELECT host FROM {_NOTED} WHERE expires_at <= ?)", (now, now),
            )
            db.execute(f"DELETE FROM {_NOTED} WHERE expires_at <= ?", (now,))
            in_domain, total, own = db.execute(
                f"SELECT (SELECT count(*) FROM {_NOTED} WHERE domain = ?), (SELECT count(*) FROM {_NOTED}), "
                f"(SELECT count(*) FROM {_NOTED} WHERE host = ?)", (noted_domain(host), host),
            ).fetchone()
            return change(current, in_domain - own, total - own)

        return self._change(host, counted)

    def _change(self, host: str, change: Change) -> PinRecord | None:
        """One read-modify-write transaction; noted_hosts follows pin_records."""
        db = self._db
        with self._lock, self._errors("cannot write"):
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute(f"{_SELECT} WHERE host = ?", (host,)).fetchone()
                current = None if row is None else self._record(row)
                new = change(current)
                if new is not current:
                    if new is None:
                        db.execute(f"DELETE FROM {_TABLE} WHERE host = ?", (host,))
                    else:
                        db.execute(f"INSERT OR REPLACE INTO {_TABLE} ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                   self._row(new))
                    if new is not None and new.source == "hpkp":
                        db.execute(f"INSERT OR REPLACE INTO {_NOTED} (host, domain, expires_at) VALUES (?, ?, ?)",
                                   (host, noted_domain(host), new.expires_at))
                    else:
                        db.execute(f"DELETE FROM {_NOTED} WHERE host = ?", (host,))
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.rollback()
                raise
            return new

    def _noted_hosts(self, limit: int, now: float) -> list[tuple[str, bool]]:
        with self._lock, self._errors("cannot read"):
            rows = self._db.execute(
                f"SELECT p.host, p.include_subdomains FROM {_NOTED} AS n JOIN {_TABLE} AS p ON p.host = n.host "
                "WHERE p.source = 'hpkp' AND (n.expires_at IS NULL OR n.expires_at > ?) LIMIT ?", (now, limit),
            ).fetchall()
        return [(str(host), bool(include)) for host, include in rows]

    def _close(self) -> None:
        with self._lock:
            self._db.close()
