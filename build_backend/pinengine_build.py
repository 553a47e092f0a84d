"""pinengine's PEP 517 build backend: setuptools', asking for Cython only when it will be used.

pyproject.toml names this module (``backend-path = ["build_backend"]``). Every
hook is setuptools.build_meta's; only the build requirements differ: Cython
is asked for when the compiled core will be built, so an install that makes
the pure-Python twin (``PINENGINE_NO_EXTENSIONS=1``, or no C compiler at all)
needs nothing but setuptools, and works offline with just that
(docs/backends.md, "Installing from source").
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import sysconfig
from typing import Any, Callable

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F403  (the hooks this module does not change)

CYTHON = "Cython>=3.0"


def env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


def c_compiler() -> str | None:
    """The C compiler a build would run, as a path or a name; None when there is none.

    What setuptools runs: ``$CC``, else the compiler this Python was built
    with. On Windows setuptools finds MSVC itself: assumed present.
    """
    if sys.platform == "win32":
        return "msvc"
    command = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    try:
        argv = shlex.split(command)
    except ValueError:
        return command  # let the build itself say what is wrong with it
    return shutil.which(argv[0]) if argv else None


def builds_compiled_core() -> bool:
    """Whether a wheel built now will try to compile the core (and so needs Cython)."""
    if env_flag("PINENGINE_NO_EXTENSIONS"):
        return False
    if env_flag("PINENGINE_REQUIRE_EXTENSIONS"):
        return True  # no compiler is then the build's error, not a quiet fallback
    return c_compiler() is not None


#: Set while setuptools runs setup.py only to list its own requirements:
#: setup.py then leaves the extension out (Cython may not be installed yet).
ASKING = "PINENGINE_BUILD_BACKEND_ASKING"


def _with_cython(hook: Callable[[Any], list[str]], config_settings: Any) -> list[str]:
    saved = os.environ.get(ASKING)
    os.environ[ASKING] = "1"
    try:
        requires = list(hook(config_settings))
    finally:
        if saved is None:
            del os.environ[ASKING]
        else:
            os.environ[ASKING] = saved
    return [*requires, CYTHON] if builds_compiled_core() else requires


def get_requires_for_build_wheel(config_settings: dict[str, str | list[str]] | None = None) -> list[str]:
    return _with_cython(_setuptools.get_requires_for_build_wheel, config_settings)


def get_requires_for_build_editable(config_settings: dict[str, str | list[str]] | None = None) -> list[str]:
    return _with_cython(_setuptools.get_requires_for_build_editable, config_settings)


def get_requires_for_build_sdist(config_settings: dict[str, str | list[str]] | None = None) -> list[str]:
    # setup.py cythonizes for the sdist too (today's behaviour): the same rule as for a wheel.
    return _with_cython(_setuptools.get_requires_for_build_sdist, config_settings)
