"""The backend selector: names bound once at import, and the tests' switch between cores."""

from __future__ import annotations

import subprocess
import sys
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
