"""Shared fixtures for the pinengine benchmarks (pytest-benchmark).

Every benchmark compares contestants inside ONE run on the same machine;
nothing here asserts a timing. Results are checked for correctness only.

Each benchmark records ``extra_info["items"]`` (how many certificates, chains
or verifications one round processes) so that ``benchmarks/report.py`` can
turn round times into per-item times and ratios.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import os
import platform
import ssl
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # for tests.certs (certificate generation helpers)

from pinengine import _backend  # noqa: E402

_LOAD_AT_START = os.getloadavg()

#: The distinct generated chains that the chain benchmarks use: (key type, host name).
CHAIN_SPECS = (
    ("p256", "a.batch.bench.example"),
    ("p384", "b.batch.bench.example"),
    ("rsa2048", "c.batch.bench.example"),
    ("ed25519", "d.batch.bench.example"),
    ("p256", "e.batch.bench.example"),
)


def _compiled_or_fail() -> ModuleType:
    try:
        return importlib.import_module("pinengine._core")
    except ImportError as exc:
        pytest.fail(
            f"the compiled core pinengine._core is not importable ({exc}); build it first with "
            "`python setup.py build_ext --inplace` from the repository root",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def compiled() -> ModuleType:
    """The compiled core (a missing build is an error: the comparison needs it)."""
    return _compiled_or_fail()


@pytest.fixture(scope="session")
def twin() -> ModuleType:
    """The pure-Python twin."""
    return importlib.import_module("pinengine._core_py")


@pytest.fixture(scope="session")
def cores(compiled: ModuleType, twin: ModuleType) -> dict[str, ModuleType]:
    return {"compiled": compiled, "python": twin}


@pytest.fixture
def use_backend(request: pytest.FixtureRequest, cores: dict[str, ModuleType]) -> Iterator[ModuleType]:
    """Switch pinengine to the backend named by the test's parameter, as tests/conftest.py does."""
    module = cores[request.param]
    previous = _backend.use(module)
    yield module
    _backend.use(previous)


@pytest.fixture(scope="session")
def certifi_ders() -> tuple[bytes, ...]:
    from tests.certs import certifi_ders as _certifi_ders

    ders = _certifi_ders()
    assert len(ders) > 50, "the certifi bundle looks empty"
    return ders


@pytest.fixture(scope="session")
def bench_chains() -> list[tuple[bytes, ...]]:
    """A handful of distinct root -> intermediate -> leaf chains, as DER (leaf first)."""
    from tests.certs import cached_chain

    return [tuple(cached_chain(key, host).ders) for key, host in CHAIN_SPECS]


# -- machine description in the JSON ------------------------------------------


def _lscpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return platform.processor() or "unknown"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    info: dict[str, object] = {
        "nproc": os.cpu_count(),
        "cpu_model": _lscpu_model(),
        "loadavg_at_start": [round(x, 2) for x in _LOAD_AT_START],
        "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "openssl": ssl.OPENSSL_VERSION,
    }
    try:
        import cryptography

        info["cryptography"] = cryptography.__version__
    except ImportError:
        pass
    try:
        core = importlib.import_module("pinengine._core")
        info["compiled_sha256"] = core.sha256_implementation()
    except ImportError:
        info["compiled_sha256"] = "not built"
    machine_info["pinengine_bench"] = info
