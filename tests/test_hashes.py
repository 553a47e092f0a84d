"""The digests of the core against hashlib, on both backends.

The compiled core has its own SHA-1/SHA-256/SHA-384/SHA-512 in C and, for
SHA-256, up to three implementations chosen at run time (portable C, x86
SHA-NI, ARMv8 crypto); each one that can run on this CPU is checked here
through ``_sha256_with``. Lengths 0..1024 cover every position of the
padding in one and two trailing blocks for both block sizes (64 and 128).
"""

from __future__ import annotations

import hashlib
import os
import platform
import random
import subprocess
import sys
from types import ModuleType
from typing import Callable, Dict, List

import pytest

# Core and policy behaviour: every test here runs on both cores (tests/conftest.py).
pytestmark = pytest.mark.both_cores

ALGORITHMS = ("sha1", "sha256", "sha384", "sha512")
SHA256_IMPLEMENTATIONS = ("portable", "sha-ni", "armv8")

_RNG = random.Random(0x5EED)
#: One random buffer; messages are its prefixes, so a length sweep costs no
#: extra random data.
_DATA = _RNG.randbytes(1 << 20)


def _boundary_lengths() -> List[int]:
    """Lengths around multiples of both block sizes, well past the short sweep."""
    out: set[int] = set()
    for blocks in (16, 17, 31, 100, 1000):
        for block in (64, 128):
            base = blocks * block
            out.update(base + d for d in (-9, -8, -1, 0, 1, 55, 56, 111, 112))
    return sorted(n for n in out if 1024 < n <= len(_DATA))


#: Every length 0..1024, then the boundary lengths, a few random ones, 1 MiB.
SHORT_LENGTHS = list(range(0, 1025))
LARGE_LENGTHS = _boundary_lengths() + sorted(_RNG.sample(range(1025, len(_DATA)), 6)) + [len(_DATA)]


def _messages(lengths: List[int]) -> List[bytes]:
    return [_DATA[:n] for n in lengths]


def _check_all(digest: Callable[[bytes], bytes], algorithm: str, lengths: List[int]) -> None:
    # Compared as a dict so a failure names the first wrong lengths, not a
    # 1 MiB repr.
    want: Dict[int, str] = {}
    got: Dict[int, str] = {}
    for n, msg in zip(lengths, _messages(lengths)):
        want[n] = hashlib.new(algorithm, msg).hexdigest()
        got[n] = digest(msg).hex()
    bad = [n for n in lengths if want[n] != got[n]]
    assert not bad, f"{algorithm}: wrong digest for lengths {bad[:20]}"


@pytest.fixture
def compiled(backend: str, core: ModuleType) -> ModuleType:
    """The compiled core; skips on the pure-Python backend."""
    if backend == "python":
        pytest.skip("compiled-core only")
    return core


# ------------------------------------------------------------ hash_bytes


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_hash_bytes_every_short_length(core: ModuleType, algorithm: str) -> None:
    _check_all(lambda m: core.hash_bytes(m, algorithm), algorithm, SHORT_LENGTHS)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_hash_bytes_large_and_block_boundaries(core: ModuleType, algorithm: str) -> None:
    _check_all(lambda m: core.hash_bytes(m, algorithm), algorithm, LARGE_LENGTHS)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_hash_bytes_known_answers(core: ModuleType, algorithm: str) -> None:
    """FIPS 180 examples ("abc" and the two-block messages) and the empty message."""
    for msg in (
        b"",
        b"abc",
        b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
        b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopq"
        b"klmnopqrlmnopqrsmnopqrstnopqrstu",
        b"a" * 1000,
    ):
        assert core.hash_bytes(msg, algorithm) == hashlib.new(algorithm, msg).digest()


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_hash_bytes_length(core: ModuleType, algorithm: str) -> None:
    assert len(core.hash_bytes(b"x", algorithm)) == hashlib.new(algorithm).digest_size


def test_hash_bytes_other_buffers(core: ModuleType) -> None:
    """bytearray, memoryview and an offset slice (unaligned start) hash like bytes."""
    msg = _DATA[:777]
    for algorithm in ALGORITHMS:
        want = hashlib.new(algorithm, msg).digest()
        assert core.hash_bytes(bytearray(msg), algorithm) == want
        assert core.hash_bytes(memoryview(msg), algorithm) == want
        for offset in range(1, 9):
            sliced = memoryview(_DATA)[offset : offset + 777]
            assert core.hash_bytes(sliced, algorithm) == hashlib.new(algorithm, sliced).digest()


@pytest.mark.parametrize("bad", ["md5", "SHA256", "sha-256", "", "sha224", "sha3_256"])
def test_unknown_algorithm(core: ModuleType, bad: str) -> None:
    with pytest.raises(ValueError):
        core.hash_bytes(b"abc", bad)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_str_input_is_refused(core: ModuleType, algorithm: str) -> None:
    with pytest.raises(TypeError):
        core.hash_bytes("abc", algorithm)


# ------------------------------------------------------- SHA-256 dispatch


def _available(core: ModuleType) -> List[str]:
    return [name for name in SHA256_IMPLEMENTATIONS if core._sha256_available(name)]


def test_sha256_implementation_name(core: ModuleType, backend: str) -> None:
    name = core.sha256_implementation()
    if backend == "python":
        assert name == "hashlib"
    else:
        assert name in SHA256_IMPLEMENTATIONS
        assert core._sha256_available(name)


def test_sha256_available_here(compiled: ModuleType) -> None:
    names = _available(compiled)
    assert "portable" in names  # always, on every platform
    if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86"):
        assert "armv8" not in names
    if platform.machine().lower() in ("arm64", "aarch64"):
        assert "sha-ni" not in names
    # The dispatcher picks the fastest path the CPU has, unless told otherwise.
    if os.environ.get("PINENGINE_SHA256") != "portable":
        accelerated = [n for n in names if n != "portable"]
        assert compiled.sha256_implementation() == (accelerated[0] if accelerated else "portable")


@pytest.mark.parametrize("name", SHA256_IMPLEMENTATIONS)
def test_sha256_with_every_short_length(compiled: ModuleType, name: str) -> None:
    if not compiled._sha256_available(name):
        pytest.skip(f"{name} cannot run on this CPU")
    _check_all(lambda m: compiled._sha256_with(name, m), "sha256", SHORT_LENGTHS)


@pytest.mark.parametrize("name", SHA256_IMPLEMENTATIONS)
def test_sha256_with_large_and_block_boundaries(compiled: ModuleType, name: str) -> None:
    if not compiled._sha256_available(name):
        pytest.skip(f"{name} cannot run on this CPU")
    _check_all(lambda m: compiled._sha256_with(name, m), "sha256", LARGE_LENGTHS)
    # Unaligned starts: the accelerated paths use unaligned loads.
    for offset in range(1, 17):
        sliced = memoryview(_DATA)[offset : offset + 4099]
        assert compiled._sha256_with(name, sliced) == hashlib.sha256(sliced).digest()


def test_sha256_with_unavailable_or_unknown(compiled: ModuleType) -> None:
    for name in ("bogus", "", "PORTABLE", "sha_ni", "portable "):
        assert compiled._sha256_available(name) is False
        with pytest.raises(ValueError):
            compiled._sha256_with(name, b"abc")
    for name in SHA256_IMPLEMENTATIONS:
        if not compiled._sha256_available(name):
            with pytest.raises(ValueError):
                compiled._sha256_with(name, b"abc")


_CHILD = """
import hashlib, sys
import pinengine._core as c
print(c.sha256_implementation())
for n in (0, 1, 55, 56, 63, 64, 65, 119, 120, 1000, 100003):
    m = bytes(range(256)) * (n // 256) + bytes(range(n % 256))
    assert c.hash_bytes(m, "sha256") == hashlib.sha256(m).digest(), n
    assert c._sha256_with("portable", m) == hashlib.sha256(m).digest(), n
print("ok")
"""


def test_env_forces_portable(compiled: ModuleType) -> None:
    """PINENGINE_SHA256=portable when the module is imported selects portable C."""
    env = dict(os.environ, PINENGINE_SHA256="portable")
    env.pop("PINENGINE_NO_EXTENSIONS", None)
    # The child must import the very package under test, installed or not.
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(str(compiled.__file__))))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["portable", "ok"]
