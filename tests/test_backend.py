"""The backend selector: names bound once at import, and the tests' switch between cores."""

from __future__ import annotations

import importlib.machinery
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import pinengine
from pinengine import _backend, _dynamic, cli, pins, policy, rotation
from tests.certs import cached_chain

pytestmark = pytest.mark.both_cores


def test_library_modules_use_the_core_under_test(backend: str, core: ModuleType) -> None:
    assert pinengine.backend() == backend == core.BACKEND
    assert _backend.core is core
    assert policy.match_chain is core.match_chain and policy.PinSet is core.PinSet
    assert _dynamic.match_chain is core.match_chain and pins.spki_sha256 is core.spki_sha256
    assert pins.spki_digest is core.spki_digest and cli.parse_certificate is core.parse_certificate
    assert rotation.parse_certificate is core.parse_certificate
    der = cached_chain("p256").ders[0]
    assert pinengine.spki_sha256(der) == core.spki_sha256(der)


def test_use_switches_and_switches_back(core: ModuleType) -> None:
    other = sys.modules["pinengine._core_py" if core.BACKEND == "compiled" else "pinengine._core"] if (
        "pinengine._core" in sys.modules) else None
    if other is None:
        pytest.skip("only the pure-Python core is importable in this run")
    previous = _backend.use(other)
    try:
        assert previous is core
        assert policy.match_chain is other.match_chain and _backend.name() == other.BACKEND
    finally:
        assert _backend.use(previous) is other
    assert policy.match_chain is core.match_chain and _backend.name() == core.BACKEND


def test_the_environment_switch_picks_the_twin() -> None:
    code = "import pinengine, pinengine.policy as p, pinengine._core_py as t; print(pinengine.backend(), p.match_chain is t.match_chain)"
    out = subprocess.run(
        [sys.executable, "-c", code], env={"PINENGINE_NO_EXTENSIONS": "1", "PATH": ""}, capture_output=True,
        text=True, check=True,
    )
    assert out.stdout.split() == ["python", "True"]


def test_a_compiled_core_that_fails_to_import_is_said_not_hidden(tmp_path: Path) -> None:
    # An installed compiled core that cannot be loaded (a wheel for another libc, a truncated file):
    # the twin takes over, and the process says why, on stderr when logging is not set up.
    package = tmp_path / "pinengine"
    shutil.copytree(Path(pinengine.__file__).parent, package, ignore=shutil.ignore_patterns("*.so", "*.pyd", "*.c"))
    broken = package / ("_core" + importlib.machinery.EXTENSION_SUFFIXES[0])
    broken.write_bytes(b"\x7fELF not really a shared object")
    code = "import pinengine; print(pinengine.backend())"
    env = {"PYTHONPATH": str(tmp_path), "PATH": ""}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["python"]
    assert "compiled core" in out.stderr and "failed to import" in out.stderr and broken.name in out.stderr, out.stderr
    # With logging set up, it is one WARNING record instead.
    code = "import logging; logging.basicConfig(format='%(levelname)s %(name)s %(message)s'); " + code
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stderr.startswith("WARNING pinengine.backend ") and out.stderr.count("failed to import") == 1
    # No compiled core shipped at all (a pure build): nothing is said.
    broken.unlink()
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["python"] and out.stderr == "", out.stderr
