"""Choose the core: the compiled ``_core``, or the pure-Python ``_core_py``.

``PINENGINE_NO_EXTENSIONS=1`` forces the pure-Python twin; so does a missing
extension (an install on a platform with no wheel and no compiler).
"""

from __future__ import annotations

import os
from types import ModuleType


def _load() -> ModuleType:
    if os.environ.get("PINENGINE_NO_EXTENSIONS", "") not in ("", "0"):
        from . import _core_py

        return _core_py
    try:
        from . import _core
    except ImportError:
        from . import _core_py

        return _core_py
    return _core


#: The active core module. Library code reads ``_backend.core`` at call time
#: (never binds it at import), so the tests can run everything on both cores.
core: ModuleType = _load()


def name() -> str:
    """``"compiled"`` or ``"python"``: which core is doing the work."""
    return str(core.BACKEND)
