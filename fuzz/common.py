"""Shared pieces of the fuzz harnesses (fuzz_*.py): backends, outcomes, the atheris driver.

Every harness module defines ``check(data: bytes) -> None``, which raises on a
finding (a disagreement between the compiled core and its pure-Python twin,
an exception of a type the API does not document, a broken invariant) and
returns otherwise. ``check`` needs only pinengine, so the same function
replays corpora (fuzz/replay.py, the sanitizer run) and crashers
(tests/test_regressions.py) without atheris.

Run as a script, a harness first calls :func:`instrument_if_main` so that
atheris instruments pinengine's Python modules (the pure-Python twin above
all) for coverage before anything imports them; the compiled core gets native
coverage when it was built with clang's ``-fsanitize-coverage`` flags and
libFuzzer is preloaded (see fuzz/README.md and .ci/checks).
"""

from __future__ import annotations

import ctypes
import importlib
import inspect
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import ModuleType
from typing import Any

# pinengine's own Python modules.
ALL_MODULES = (
    "pinengine",
    "pinengine._errors",
    "pinengine._types",
    "pinengine._core_py",
    "pinengine._pem",
    "pinengine.pins",
    "pinengine._entries",
    "pinengine._schema",
    "pinengine._dynamic",
    "pinengine.policy",
)


class Finding(AssertionError):
    """A bug found by a harness: the message says what and shows the input."""


def instrument_if_main(name: str, modules: Sequence[str]) -> None:
    """When the harness runs as a fuzzer, import ``modules`` under atheris' instrumentation.

    Must run before the harness imports pinengine. Instrumented Python code
    runs many times slower, so each harness names only the modules whose
    coverage guides it (the compiled core has native coverage of its own when
    built for it). ``PINENGINE_FUZZ_INSTRUMENT`` (comma-separated module names,
    ``all`` for every pinengine module, or ``none``) overrides the choice.
    A module that is already imported (``urllib.parse``: atheris itself
    imports it) gets its module-level functions (and what ``lru_cache``
    wraps) instrumented in place.
    """
    if name != "__main__":
        return
    import atheris

    chosen = os.environ.get("PINENGINE_FUZZ_INSTRUMENT", "")
    if chosen == "all":
        modules = (*ALL_MODULES, *(m for m in modules if m not in ALL_MODULES))
    elif chosen == "none":
        modules = ()
    elif chosen:
        modules = tuple(m.strip() for m in chosen.split(",") if m.strip())
    if not modules:
        return
    loaded = [sys.modules[m] for m in modules if m in sys.modules]
    with atheris.instrument_imports(include=list(modules)):
        for module in modules:
            importlib.import_module(module)
    for mod in loaded:
        for obj in list(vars(mod).values()):
            func = getattr(obj, "__wrapped__", obj)
            if inspect.isfunction(func) and func.__module__ == mod.__name__:
                atheris.instrument_func(func)


def run(check: Callable[[bytes], None]) -> None:
    """Hand ``check`` to libFuzzer (via atheris) with the command-line arguments."""
    import atheris

    atheris.Setup(sys.argv, check)
    atheris.Fuzz()


def cores() -> tuple[ModuleType, ModuleType]:
    """(compiled, python): both cores. A missing compiled core is an error, not a skip."""
    compiled = importlib.import_module("pinengine._core")
    python = importlib.import_module("pinengine._core_py")
    if compiled.BACKEND != "compiled" or python.BACKEND != "python":
        raise RuntimeError("pinengine._core is not the compiled core")
    return compiled, python


Outcome = tuple[str, Any]


def outcome(fn: Callable[..., Any], *args: Any, refusals: tuple[type[BaseException], ...] = ()) -> Outcome:
    """("ok", value) or ("refused", exception) for the documented refusals.

    Any other exception propagates: for a fuzzer that is a crash, and a finding.
    """
    try:
        return ("ok", fn(*args))
    except refusals as exc:
        return ("refused", exc)


def show(data: bytes, limit: int = 512) -> str:
    text = data[:limit].hex()
    return text + ("..." if len(data) > limit else "")


def describe(what: str, data: bytes, compiled: object, python: object) -> str:
    return f"{what}: backends disagree on input ({len(data)} bytes) {show(data)}\n  compiled: {compiled!r}\n  python:   {python!r}"


@contextmanager
def quiet(logger: str = "pinengine") -> Iterator[None]:
    """Silence ``logger`` while the block runs (a log line per input slows a fuzzer down).

    Only while it runs: tests/test_regressions.py imports the harnesses in the
    test process, next to tests that read pinengine's log.
    """
    log = logging.getLogger(logger)
    was = log.disabled
    log.disabled = True
    try:
        yield
    finally:
        log.disabled = was


def _libc() -> Any:
    try:
        libc = ctypes.CDLL(None)  # the process' own symbols: ASan's malloc when it is preloaded
        libc.malloc.restype = ctypes.c_void_p
        libc.malloc.argtypes = [ctypes.c_size_t]
        libc.free.argtypes = [ctypes.c_void_p]
    except (OSError, AttributeError, TypeError):  # Windows
        return None
    return libc


_LIBC = _libc()


@contextmanager
def exact_buffer(data: bytes) -> Iterator[Any]:
    """A writable buffer holding exactly ``data`` in a heap block of its own (malloc).

    Under ASan, reading even one byte past its end is reported; bytes and
    bytearray always have a NUL byte after their contents, which hides such
    reads. Where there is no C library to call, a plain bytearray.
    """
    if _LIBC is None or not data:
        yield bytearray(data)
        return
    address = _LIBC.malloc(len(data))
    if not address:
        raise MemoryError
    try:
        ctypes.memmove(address, data, len(data))
        yield (ctypes.c_char * len(data)).from_address(address)
    finally:
        _LIBC.free(address)
