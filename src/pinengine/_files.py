"""Reading a file whose size someone else controls: never more than a bound."""

from __future__ import annotations

import os
from typing import BinaryIO, Union


def read_at_most(source: Union[str, os.PathLike[str], BinaryIO], cap: int) -> bytes | None:
    """The bytes of a file (a path, or an open binary stream such as ``sys.stdin.buffer``), or None when it
    holds more than ``cap`` bytes: at most ``cap + 1`` bytes are ever read. OSError propagates."""
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            data = f.read(cap + 1)
    else:
        data = source.read(cap + 1)
    return None if len(data) > cap else data
