"""Nothing heavy is imported until its feature is used (issue 17: small devices).

``python -X importtime`` in a fresh interpreter lists every module a program
imported. ``import pinengine``, and a program that builds a policy and a
pinned ``ssl`` context (what a device does), must import none of the optional
dependencies: each belongs to one feature (cryptography for certificate
helpers, grpc, the Redis store, Prometheus metrics, IDNA for non-ASCII host
names, the requests/urllib3/httpx/aiohttp hooks for their own client).
benchmarks/footprint.py measures the sizes and times; this is the check.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

HEAVY = ("cryptography", "grpc", "redis", "prometheus_client", "idna", "requests", "urllib3", "httpx", "aiohttp")

DEVICE = """
import pinengine
from pinengine.hooks.ssl import create_pinned_context
chain = pinengine.load_certificates(open(%r, "rb").read())
backup = "sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
policy = pinengine.PinPolicy.from_mapping({"domains": [
    {"host": "**.example.com", "pins": [str(pinengine.Pin.from_certificate(chain[1])), backup]}]})
context = create_pinned_context(policy)
policy.verify("www.example.com", chain)
"""


def _imported(code: str, backend: str) -> set[str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if backend == "python":
        env["PINENGINE_NO_EXTENSIONS"] = "1"
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    names = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "pinengine" in names, done.stderr[-2000:]
    return names


def _heavy(names: set[str]) -> list[str]:
    return sorted(n for n in names if n.split(".")[0] in HEAVY)


def test_import_pinengine_imports_nothing_heavy(backend: str) -> None:
    names = _imported("import pinengine", backend)
    assert ("pinengine._core" in names) == (backend == "compiled")
    assert _heavy(names) == []


def test_policy_and_pinned_context_import_nothing_heavy(backend: str) -> None:
    chain = os.path.join(os.path.dirname(__file__), os.pardir, "examples", "chain.pem")
    assert _heavy(_imported(DEVICE % chain, backend)) == []


@pytest.mark.parametrize("module", ["cryptography", "redis"])
def test_the_check_sees_a_heavy_import(backend: str, module: str) -> None:
    """The check can fail: a program that does import one is caught."""
    pytest.importorskip(module)
    assert module in _heavy(_imported(f"import pinengine, {module}", backend))
