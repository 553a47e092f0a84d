"""Dynamic pin stores: where trust-on-first-use and HPKP pins are remembered.

``MemoryStore`` (one process, forgotten at exit), ``SQLiteStore`` (the
default: a file in the user's data directory, shared by the processes of one
machine), ``JSONFileStore`` (one readable JSON file) and ``RedisStore``
(shared by a fleet; needs redis-py) all implement ``PinStore``: one
``PinRecord`` per host, with an atomic ``record_first`` so that racing
connections can never record two different first keys for a host.
``export_records`` / ``import_records`` move records between stores as JSON.
"""

from __future__ import annotations

import os
from typing import Union

from ._base import (
    FORMAT,
    FORMAT_VERSION,
    MAX_RECORD_BYTES,
    MAX_RECORD_PINS,
    MAX_STORE_FILE_BYTES,
    SOURCES,
    NoRecordError,
    PinRecord,
    PinStore,
    StoreError,
    export_records,
    import_records,
)
from .jsonfile import JSONFileStore
from .memory import MemoryStore
from .redis_store import RedisStore
from .sqlite import SQLiteStore, default_path


def open_store(spec: Union[str, os.PathLike[str], None] = None, *, namespace: str = "pinengine") -> PinStore:
    """The store a configuration string names.

    ``None`` or ``""``: ``SQLiteStore()`` at ``default_path()``; ``"memory:"``;
    ``redis://...``, ``rediss://...`` or ``unix://...``: ``RedisStore`` (with
    ``namespace``); a path ending in ``.json``: ``JSONFileStore``; any other
    path: ``SQLiteStore``.
    """
    text = "" if spec is None else os.fspath(spec)
    if not text:
        return SQLiteStore()
    if text == "memory:":
        return MemoryStore()
    if text.startswith(("redis://", "rediss://", "unix://")):
        return RedisStore(text, namespace)
    if text.lower().endswith(".json"):
        return JSONFileStore(text)
    return SQLiteStore(text)


__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MAX_RECORD_BYTES",
    "MAX_RECORD_PINS",
    "MAX_STORE_FILE_BYTES",
    "SOURCES",
    "JSONFileStore",
    "MemoryStore",
    "NoRecordError",
    "PinRecord",
    "PinStore",
    "RedisStore",
    "SQLiteStore",
    "StoreError",
    "default_path",
    "export_records",
    "import_records",
    "open_store",
]
