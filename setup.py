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

try:  # setuptools >= 70.1 (pyproject.toml asks for >= 77)
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # an older setuptools in a build without isolation
    from wheel.bdist_wheel import bdist_wheel  # type: ignore[no-redef]

WARNING = (
    "\n*** pinengine: the compiled core could not be built ({}).\n"
    "*** Installing the pure-Python backend instead: same API and results, slower.\n"
)


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


# Set when the compiled core was given up during this build: the wheel then
# holds only Python and is tagged as such (py3-none-any), not for this platform.
_fell_back = False


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
        global _fell_back
        if _env_flag("PINENGINE_REQUIRE_EXTENSIONS"):
            raise exc
        _fell_back = True
        sys.stderr.write(WARNING.format(exc))


class PureIfFellBack(bdist_wheel):
    """bdist_wheel that tags the wheel pure when the compiled core was not built.

    The tag is chosen after the build ran (``get_tag`` is called once the files
    are in place); the files sit at the root of the wheel either way.
    """

    def get_tag(self) -> tuple[str, str, str]:
        if _fell_back:
            self.root_is_pure = True
        return super().get_tag()


def _extensions() -> list[Extension]:
    if _env_flag("PINENGINE_NO_EXTENSIONS"):
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        if _env_flag("PINENGINE_REQUIRE_EXTENSIONS"):
            raise SystemExit("pinengine: PINENGINE_REQUIRE_EXTENSIONS is set and Cython is not installed") from None
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


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt, "bdist_wheel": PureIfFellBack})
