"""Choose the core: the compiled ``_core``, or the pure-Python ``_core_py``.

``PINENGINE_NO_EXTENSIONS=1`` forces the pure-Python twin; so does a missing
extension (an install on a platform with no wheel and no compiler), and one
that fails to import, which is said (see ``_load``).

As yarl's ``_quoting`` does, the chosen core's names are bound here once, at
import, and the rest of pinengine imports them from here
(``from ._backend import match_chain``): no lookup per call. For type
checkers the names are the twin's, which carry full annotations.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType
from typing import TYPE_CHECKING

__all__ = [
    "BACKEND",
    "PinSet",
    "cert_digest",
    "cert_sha256",
    "core",
    "extract_spki",
    "hash_bytes",
    "match_chain",
    "match_chains",
    "name",
    "outcome_code",
    "parse_certificate",
    "recall_outcome",
    "recall_outcomes",
    "spki_digest",
    "spki_sha256",
    "use",
    "validate_spki",
]


def _load() -> ModuleType:
    if os.environ.get("PINENGINE_NO_EXTENSIONS", "") not in ("", "0"):
        from . import _core_py

        return _core_py
    try:
        from . import _core
    except ImportError as exc:
        from . import _core_py

        shipped = _shipped_core()
        if shipped is not None:
            _say(
                f"pinengine: the compiled core in this install ({shipped}) failed to import "
                f"({type(exc).__name__}: {' '.join(str(exc).split())[:300]}), so it uses the pure-Python "
                "backend: same API and results, slower. Reinstall pinengine for this platform; "
                "PINENGINE_NO_EXTENSIONS=1 chooses the pure-Python backend on purpose."
            )
        else:
            _fallback_notice()
        return _core_py
    return _core


def _shipped_core() -> str | None:
    """The file name of a compiled ``_core`` next to this module, if the install has one."""
    import importlib.machinery

    here = os.path.dirname(os.path.abspath(__file__))
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        if os.path.exists(os.path.join(here, "_core" + suffix)):
            return "_core" + suffix
    return None


#: Left in the package by a build that fell back on its own (setup.py).
NOTICE_FILE = "_fallback_notice.txt"


def _fallback_notice() -> None:
    """Say once that this install has no compiled core, when its build fell back on its own.

    pip hides the build's own warning, so the first import says it: one
    WARNING record on the ``pinengine.backend`` logger where the application
    set up logging, else a line on stderr (pinengine's own NullHandler would
    swallow the record). Not a Python warning: ``-W error`` runs do not fail
    on it. The build's notice file is deleted first, so one process at most
    says it. No file (a pure build asked for with PINENGINE_NO_EXTENSIONS, a
    source tree, already said) or one that cannot be deleted (a read-only
    install): nothing is said; ``pinengine --version`` and
    ``pinengine.backend()`` tell the backend all the same.
    """
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), NOTICE_FILE)
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            reason = " ".join(f.read(400).split())
        os.unlink(path)
    except OSError:
        return
    _say(
        f"pinengine: this install has no compiled core (its build said: {reason or 'it fell back'}), so it "
        "uses the pure-Python backend: same API and results, slower. For the compiled core, install a C "
        "compiler and reinstall pinengine; PINENGINE_NO_EXTENSIONS=1 chooses the pure-Python backend on "
        "purpose. This is said once."
    )


def _say(message: str) -> None:
    """One WARNING record on ``pinengine.backend`` where the application set up logging, else a stderr line."""
    import logging

    logger: logging.Logger | None = logging.getLogger("pinengine.backend")
    while logger is not None:
        if any(not isinstance(h, logging.NullHandler) for h in logger.handlers):
            logging.getLogger("pinengine.backend").warning("%s", message)
            return
        logger = logger.parent if logger.propagate else None
    sys.stderr.write(message + "\n")


if TYPE_CHECKING:
    from . import _core_py as core
else:
    #: The active core module.
    core = _load()

BACKEND: str = core.BACKEND
PinSet = core.PinSet
cert_digest = core.cert_digest
cert_sha256 = core.cert_sha256
extract_spki = core.extract_spki
hash_bytes = core.hash_bytes
match_chain = core.match_chain
match_chains = core.match_chains
outcome_code = core.outcome_code
parse_certificate = core.parse_certificate
recall_outcome = core.recall_outcome
recall_outcomes = core.recall_outcomes
spki_digest = core.spki_digest
spki_sha256 = core.spki_sha256
validate_spki = core.validate_spki


def name() -> str:
    """``"compiled"`` or ``"python"``: which core is doing the work."""
    return BACKEND


def use(new: ModuleType) -> ModuleType:
    """Tests, fuzz harnesses and benchmarks only: from now on, pinengine works with core ``new``.

    Every core name a pinengine module bound at import (found by identity,
    whatever it is called there) is rebound to ``new``'s object of the same
    name, and so are ``core`` and ``BACKEND`` here. Returns the core that was
    in use, to switch back with. A policy built before the switch keeps the
    pin sets of the old core: build policies after switching. Not thread-safe;
    applications choose with ``PINENGINE_NO_EXTENSIONS`` and never call this.
    """
    global BACKEND
    old = core
    if new is old:
        return old
    swap = {}
    for attr in old.__all__:
        value = getattr(old, attr)
        if callable(value):
            swap[id(value)] = (value, getattr(new, attr))
    for module_name, module in list(sys.modules.items()):
        if module is None or module_name in ("pinengine._core", "pinengine._core_py"):
            continue
        if module_name != "pinengine" and not module_name.startswith("pinengine."):
            continue
        namespace = vars(module)
        for attr, value in list(namespace.items()):
            found = swap.get(id(value))
            if found is not None and found[0] is value:
                namespace[attr] = found[1]
    globals()["core"] = new
    BACKEND = new.BACKEND
    return old
