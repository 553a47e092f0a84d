"""Every test runs once per core backend: compiled and pure Python.

With ``PINENGINE_NO_EXTENSIONS=1`` only the pure-Python backend runs. Without
it, the compiled core must be importable: a missing extension is an error,
not a skip, so a broken build can never pass as green.
"""

from __future__ import annotations

import importlib
import os
import shutil
from types import ModuleType
from typing import Iterator

import pytest

from pinengine import _backend

_FORCE_PYTHON = os.environ.get("PINENGINE_NO_EXTENSIONS", "") not in ("", "0")
BACKENDS = ["python"] if _FORCE_PYTHON else ["compiled", "python"]


def _module(name: str) -> ModuleType:
    return importlib.import_module("pinengine._core" if name == "compiled" else "pinengine._core_py")


@pytest.fixture(params=BACKENDS, autouse=True)
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The backend this test runs on; ``pinengine`` itself uses it while the test runs."""
    module = _module(request.param)
    monkeypatch.setattr(_backend, "core", module)
    yield request.param


@pytest.fixture
def core(backend: str) -> ModuleType:
    """The core module of the backend under test."""
    return _module(backend)


@pytest.fixture(scope="session", autouse=True)
def reports_stay_in_the_process() -> Iterator[None]:
    """Policies without a reporter POST to their entries' report_uri by default;
    the suite's policies name collectors that do not exist, so the default
    here only logs. Tests of the default itself set it back (None) and use a
    local collector."""
    from pinengine.reporting import LoggingSink, Reporter, set_default_reporter

    previous = set_default_reporter(Reporter(LoggingSink(dedupe_interval=0, host_limit=None)))
    yield
    set_default_reporter(previous)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server of this test session's own on 127.0.0.1 (installed by .ci/programs)."""
    if os.environ.get("PINENGINE_SKIP_REDIS", "") not in ("", "0"):
        pytest.skip("PINENGINE_SKIP_REDIS=1: Redis tests skipped")
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed: run .ci/programs (apt-get install redis-server), "
                    "or set PINENGINE_SKIP_REDIS=1 to skip the Redis tests", pytrace=False)
    from tests import redis_server

    server = redis_server.start(binary, tmp_path_factory.mktemp("redis"))
    yield server.url
    server.stop()
