"""Build the compiled core; fall back to the pure-Python twin when that is impossible.

``PINENGINE_NO_EXTENSIONS=1`` at build time skips the extension on purpose
(a pure-Python ``py3-none-any`` wheel).
"""

from __future__ import annotations

import glob
import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

WARNING = (
    "\n*** pinengine: the compiled core could not be built ({}).\n"
    "*** Installing the pure-Python backend instead: same API and results, slower.\n"
)


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


class OptionalBuildExt(build_ext):
    """build_ext that turns a failed compile into a warning and a pure-Python install."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # compiler missing, headers missing, ...
            self._fallback(exc)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._fallback(exc)

    def _fallback(self, exc: BaseException) -> None:
        if _env_flag("PINENGINE_REQUIRE_EXTENSIONS"):
            raise exc
        sys.stderr.write(WARNING.format(exc))


def _extensions() -> list[Extension]:
    if _env_flag("PINENGINE_NO_EXTENSIONS"):
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        sys.stderr.write(WARNING.format("Cython is not installed"))
        return []
    compile_args: list[str] = []
    if sys.platform != "win32":
        # Portable flags only: CPU-specific code (SHA-NI, ARMv8 crypto) is chosen
        # at run time through function target attributes, never by -m flags.
        compile_args = ["-O2", "-std=c99", "-Wall", "-Wno-unused-function"]
        if _env_flag("PINENGINE_SANITIZE"):
            compile_args += ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined"]
    link_args = ["-fsanitize=address,undefined"] if _env_flag("PINENGINE_SANITIZE") else []
    ext = Extension(
        "pinengine._core",
        sources=["src/pinengine/_core.pyx", *sorted(glob.glob("ext/*.c"))],
        include_dirs=["ext"],
        extra_compile_args=compile_args,
        extra_link_args=link_args,
    )
    try:
        return list(cythonize([ext], language_level=3, compiler_directives={"binding": False}))
    except Exception as exc:  # Cython failed to translate the core
        if _env_flag("PINENGINE_REQUIRE_EXTENSIONS"):
            raise
        sys.stderr.write(WARNING.format(exc))
        return []


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
