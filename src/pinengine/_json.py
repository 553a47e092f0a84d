"""JSON as pinengine reads documents someone else wrote: an object may not name a key twice.

``json.loads`` keeps the last of two equal keys, while a person (or another
parser) reading the same text may take the first: ``"mode": "enforce"``
followed by ``"mode": "report-only"`` would load as report-only with nothing
said. TOML refuses such a document; so does this.
"""

from __future__ import annotations

import json
from typing import Any

from ._errors import quoted


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"the key {quoted(key)} is written twice in one object")
            seen.add(key)
    return obj


def loads(text: str | bytes) -> Any:
    """``json.loads`` that refuses an object naming a key twice (ValueError, as json's own errors are)."""
    return json.loads(text, object_pairs_hook=_object)
