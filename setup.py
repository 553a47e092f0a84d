"""Build the compiled core; fall back to the pure-Python twin when that is impossible.

``PINENGINE_NO_EXTENSIONS=1`` at build time skips the extension on purpose
(a pure-Python ``py3-none-any`` wheel). A wheel that falls back on its own
carries ``pinengine/_fallback_notice.txt`` (why); the first ``import pinengine``
says so once and deletes it (``_backend.py``): pip does not show this build's
warnings.
"""

from __future__ import annotations

import glob
import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

# The in-tree build backend (pyproject.toml): the same decision about the compiler.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "build_backend"))
from pinengine_build import c_compiler, env_flag

try:  # setuptools >= 70.1 (pyproject.toml asks for >= 77)
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # an older setuptools in a build without isolation
    from wheel.bdist_wheel import bdist_wheel  # type: ignore[no-redef]

WARNING = (
    "\n*** pinengine: the compiled core could not be built ({}).\n"
    "*** Installing the pure-Python backend instead: same API and results, slower.\n"
)


# Set when the compiled core was given up during this build: the wheel then
# holds only Python and is tagged as such (py3-none-any), not for this platform.
_fell_back = False
# Why the core was given up before any compiling (no compiler, no Cython); None otherwise.
_configure_reason: str | None = None
NOTICE_FILE = "_fallback_notice.txt"


def _write_notice(build_lib: str, reason: object) -> None:
    """Leave the one-time notice in the wheel (not in a source tree: editable installs stay quiet)."""
    package = os.path.join(build_lib, "pinengine")
    os.makedirs(package, exist_ok=True)
    text = " ".join(str(reason).split())
    if len(text) > 200:  # a compiler's whole command line says little to a reader
        text = text[:197] + "..."
    with open(os.path.join(package, NOTICE_FILE), "w", encoding="utf-8") as f:
        f.write(text + "\n")


def _give_up(reason: str) -> list[Extension]:
    global _configure_reason
    sys.stderr.write(WARNING.format(reason))
    _configure_reason = reason
    return []


class NoticeBuildPy(build_py):
    """build_py that adds the notice when the core was given up before compiling."""

    def run(self) -> None:
        super().run()
        if _configure_reason is not None and not self.editable_mode:
            _write_notice(self.build_lib, _configure_reason)


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
        if env_flag("PINENGINE_REQUIRE_EXTENSIONS"):
            raise exc
        if not _fell_back and not self.inplace:
            _write_notice(self.build_lib, exc)
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
    if env_flag("PINENGINE_NO_EXTENSIONS"):
        return []
    if env_flag("PINENGINE_BUILD_BACKEND_ASKING"):
        return []  # the backend only asks setuptools what it needs; nothing is built now
    require = env_flag("PINENGINE_REQUIRE_EXTENSIONS")
    if not require and c_compiler() is None:
        # The build backend asked for no Cython either (an offline build needs none).
        return _give_up("no C compiler found")
    try:
        from Cython.Build import cythonize
    except ImportError:
        if require:
            raise SystemExit("pinengine: PINENGINE_REQUIRE_EXTENSIONS is set and Cython is not installed") from None
        return _give_up("Cython is not installed")
    compile_args: list[str] = []
    if sys.platform != "win32":
        # Portable flags only: CPU-specific code (SHA-NI, ARMv8 crypto) is chosen
        # at run time through function target attributes, never by -m flags.
        compile_args = ["-O2", "-std=c99", "-Wall", "-Wno-unused-function"]
        if env_flag("PINENGINE_SANITIZE"):
            compile_args += ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined"]
    link_args = ["-fsanitize=address,undefined"] if env_flag("PINENGINE_SANITIZE") else []
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
        if require:
            raise
        return _give_up(f"Cython failed: {exc}")


setup(
    ext_modules=_extensions(),
    cmdclass={"build_ext": OptionalBuildExt, "build_py": NoticeBuildPy, "bdist_wheel": PureIfFellBack},
)
