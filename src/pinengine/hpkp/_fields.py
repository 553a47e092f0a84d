"""The HPKP header fields of a response: the first of each, from any client's headers object."""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Union

from ._header import MAX_HEADER_LENGTH

__all__ = ["HeadersLike", "first_field", "header_field"]

HeadersLike = Union[Mapping[str, Any], Iterable[tuple[str, str]], Any]


def first_field(value: str) -> str:
    """The first header field of a value several fields were joined into with ``,``.

    RFC 7469 §2.3.1: only the first PKP (and the first PKP-RO) header field
    of a response is processed. A ``,`` cannot appear outside a quoted string
    in a single field, so the first one there is where the first field ends.
    At most ``MAX_HEADER_LENGTH + 1`` characters are looked at: a longer
    first field comes back cut there, and is refused as too long.
    """
    value = value[:MAX_HEADER_LENGTH + 1]
    in_quotes = False
    i = 0
    while i < len(value):
        c = value[i]
        if in_quotes:
            if c == "\\":
                i += 1
            elif c == '"':
                in_quotes = False
        elif c == '"':
            in_quotes = True
        elif c == ",":
            return value[:i]
        i += 1
    return value


def header_field(headers: HeadersLike, name: str) -> str | None:
    """The first ``name`` header field in ``headers`` (httpx, urllib3, requests, a dict, or pairs)."""
    if headers is None:
        return None
    values: list[str] | None = None
    for method in ("get_list", "getlist"):  # httpx.Headers; urllib3's HTTPHeaderDict
        getter = getattr(headers, method, None)
        if callable(getter):
            try:
                values = list(getter(name))
            except TypeError:
                values = None
            if values is not None:
                break
    if values is None:
        if isinstance(headers, Mapping):
            value = headers.get(name)
            if value is None:
                lowered = name.lower()
                value = next((v for k, v in headers.items() if isinstance(k, str) and k.lower() == lowered), None)
            values = [] if value is None else [value]
        else:
            lowered = name.lower()
            values = [v for k, v in headers if isinstance(k, str) and k.lower() == lowered]
    for value in values:
        if isinstance(value, bytes):
            value = value[:MAX_HEADER_LENGTH + 1].decode("latin-1")
        if isinstance(value, str):
            return first_field(value)
    return None
