"""Which core each test runs on.

Core, policy and differential test modules carry ``pytestmark =
pytest.mark.both_cores``: each of their tests runs once per core, compiled
and pure Python, in the same run (as multidict's tests take
``multidict_implementation``). Every other test (hooks, stores, CLI, gRPC,
Redis, ...) runs once, on the core pinengine chose at import.

With ``PINENGINE_NO_EXTENSIONS=1`` only the pure-Python core runs, so the
second CI pass runs everything on the twin. Without it, the compiled core
must be importable: a missing extension is an error, not a skip, so a broken
build can never pass as green.
"""

from __future__ import annotations

import importlib
import os
import shutil
from types import ModuleType
from typing import TYPE_CHECKING, Iterator

import pytest

from pinengine import _backend

if TYPE_CHECKING:
    from tests.certs import Chain
    from tests.tls import TLSServer

_FORCE_PYTHON = os.environ.get("PINENGINE_NO_EXTENSIONS", "") not in ("", "0")
BACKENDS = ["python"] if _FORCE_PYTHON else ["compiled", "python"]
#: The core of every test that is not marked ``both_cores``.
ACTIVE = BACKENDS[0]


def _module(name: str) -> ModuleType:
    return importlib.import_module("pinengine._core" if name == "compiled" else "pinengine._core_py")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "both_cores: run each test of the module once per core (core, policy and differential tests)"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.get_closest_marker("both_cores") is not None and "backend" in metafunc.fixturenames:
        metafunc.parametrize("backend", BACKENDS, indirect=True)


@pytest.fixture(autouse=True)
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """The core this test runs on; ``pinengine`` itself uses it while the test runs.

    Set up before the test's other function-scoped fixtures (it is autouse),
    so a policy a fixture builds already holds this core's pin sets.
    """
    name = getattr(request, "param", ACTIVE)
    previous = _backend.use(_module(name))
    yield name
    _backend.use(previous)


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


# -- certificates and servers shared by the modules ------------------------------
# A module that needs another name or key type overrides ``host`` or
# ``key_type``; one that needs another kind of server overrides ``server``.


@pytest.fixture(scope="module")
def host() -> str:
    """The name the test certificates are issued for: loopback servers answer as ``localhost``."""
    return "localhost"


@pytest.fixture(scope="module")
def key_type() -> str:
    """The key type of ``chain`` (see tests.certs.KEY_TYPES)."""
    return "p256"


@pytest.fixture(scope="module")
def chain(key_type: str, host: str) -> Chain:
    """Leaf, intermediate and root for ``host``, the chain ``server`` presents."""
    from tests.certs import cached_chain

    return cached_chain(key_type, host)


@pytest.fixture(scope="module")
def other(host: str) -> Chain:
    """Another hierarchy for ``host``: keys the server does not have, so pins on them never match."""
    from tests.certs import make_chain

    return make_chain("p256", host)


@pytest.fixture(scope="module")
def server(chain: Chain) -> Iterator[TLSServer]:
    """A real TLS server on 127.0.0.1 presenting ``chain``."""
    from tests.tls import TLSServer

    with TLSServer(chain) as srv:
        yield srv


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
