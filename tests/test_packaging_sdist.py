"""The sdist, installed offline into a fresh venv without Cython (issue 15, item 12).

Real builds: the sdist is made from this checkout by the in-tree backend,
then installed by the fresh venv's own pip with ``--no-index``, from a
wheelhouse holding only setuptools and idna (rebuilt from the copies
installed in the running environment: the test needs no network). Each
install builds the pure-Python twin, so the whole module takes about 30 s.
Skipped where the checkout is not here (the wheel test runs copy tests/ only).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.metadata
import io
import os
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
NOTICE = "pinengine: this install has no compiled core"

pytestmark = pytest.mark.skipif(
    not (ROOT / "setup.py").is_file() or not (ROOT / "build_backend").is_dir(), reason="needs the source checkout"
)


def _run(cmd: list[str | Path], env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("PINENGINE_", "PIP_", "PYTHON"))}
    full_env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    full_env.update(env or {})
    proc = subprocess.run(
        [str(c) for c in cmd], env=full_env, cwd=cwd, capture_output=True, text=True, timeout=180, check=False
    )
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


def _wheel_of_installed(name: str, dest: Path) -> Path:
    """A wheel of the distribution installed here, rebuilt from its RECORD (offline)."""
    dist = importlib.metadata.distribution(name)
    files = [f for f in dist.files or [] if "__pycache__" not in f.parts and not str(f).startswith("..")]
    info = next(f.parts[0] for f in files if f.parts[0].endswith(".dist-info"))
    skip = {f"{info}/{n}" for n in ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json")}
    version = dist.version
    path = dest / f"{dist.metadata['Name'].replace('-', '_')}-{version}-py3-none-any.whl"
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in files:
            arc = f.as_posix()
            if arc in skip:
                continue
            data = Path(str(f.locate())).read_bytes()
            zf.writestr(arc, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            writer.writerow([arc, f"sha256={digest}", len(data)])
        writer.writerow([f"{info}/RECORD", "", ""])
        zf.writestr(f"{info}/RECORD", record.getvalue())
    return path


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sdist")
    code = "import sys; sys.path.insert(0, 'build_backend'); import pinengine_build as b; print(b.build_sdist(sys.argv[1]))"
    _run([sys.executable, "-c", code, out], cwd=ROOT)
    (path,) = out.glob("pinengine-*.tar.gz")
    return path


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        setuptools_version = importlib.metadata.version("setuptools")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("no setuptools installed here to rebuild a wheel from (the test extra has it)")
    if int(setuptools_version.split(".")[0]) < 77:
        pytest.skip(f"setuptools {setuptools_version} here; the build needs >= 77 (the test extra has it)")
    house = tmp_path_factory.mktemp("wheelhouse")
    for name in ("setuptools", "idna"):
        _wheel_of_installed(name, house)
    return house


def _fresh_venv(path: Path) -> Path:
    venv.EnvBuilder(with_pip=True).create(path)
    return path / "bin" / "python"


def _sdist_names(sdist: Path) -> list[str]:
    with tarfile.open(sdist) as tar:
        return [n.split("/", 1)[1] for n in tar.getnames() if "/" in n]


def test_build_requirements_leave_cython_to_the_backend() -> None:
    system = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]
    assert system["requires"] == ["setuptools>=77"]
    assert system["build-backend"] == "pinengine_build" and system["backend-path"] == ["build_backend"]
    code = (
        "import sys; sys.path.insert(0, 'build_backend'); import pinengine_build as b; "
        "print('asks for Cython:', any(r.startswith('Cython') for r in b.get_requires_for_build_wheel()))"
    )
    env = {"PATH": os.environ.get("PATH", "")}
    assert _run([sys.executable, "-c", code], env=env, cwd=ROOT).count("asks for Cython: True") == 1  # gcc is here
    for off in ({"PINENGINE_NO_EXTENSIONS": "1"}, {"CC": "/nonexistent/cc"}):
        assert _run([sys.executable, "-c", code], env={**env, **off}, cwd=ROOT).count("asks for Cython: False") == 1, off
    # Required: asked for even without a compiler (the build then fails, as it must).
    required = {"CC": "/nonexistent/cc", "PINENGINE_REQUIRE_EXTENSIONS": "1"}
    assert _run([sys.executable, "-c", code], env={**env, **required}, cwd=ROOT).count("asks for Cython: True") == 1


def test_sdist_holds_the_backend_and_leaves_the_tests_out(sdist: Path) -> None:
    names = _sdist_names(sdist)
    assert "build_backend/pinengine_build.py" in names
    assert "src/pinengine/_core.pyx" in names and "setup.py" in names
    # The tests need the repository (certificates, servers, docs, examples): not shipped half.
    assert not [n for n in names if n == "tests" or n.startswith("tests/")]


def test_offline_isolated_install_without_compiler_says_pure_once(
    sdist: Path, wheelhouse: Path, tmp_path: Path
) -> None:
    py = _fresh_venv(tmp_path / "venv")
    # No compiler: the backend asks for no Cython, so setuptools from the wheelhouse is enough.
    log = _run(
        [py, "-m", "pip", "install", "-v", "--no-index", "--find-links", wheelhouse, sdist],
        env={"CC": str(tmp_path / "no-such-cc")},
    )
    assert "pinengine: the compiled core could not be built (no C compiler found)" in log
    assert "Cython" not in log.split("Installing build dependencies", 1)[1].split("Getting requirements", 1)[0]
    assert "py3-none-any.whl" in log
    package = Path(_run([py, "-c", "import importlib.util as u; print(u.find_spec('pinengine').origin)"]).strip()).parent
    assert (package / "_fallback_notice.txt").is_file()
    assert not list(package.glob("_core.*.so"))

    # The first import says it once, into the application's logging where it set some up (not a
    # Python warning: -W error passes)...
    code = (
        "import logging; logging.basicConfig(format='LOG %(name)s %(levelname)s: %(message)s'); "
        "import pinengine; print(pinengine.backend())"
    )
    first = _run([py, "-W", "error", "-c", code], cwd=tmp_path)
    assert f"LOG pinengine.backend WARNING: {NOTICE} (its build said: no C compiler found)" in first
    assert "PINENGINE_NO_EXTENSIONS=1" in first and "python\n" in first
    assert first.count(NOTICE) == 1
    # ...and never again.
    assert not (package / "_fallback_notice.txt").exists()
    second = _run([py, "-W", "error", "-c", "import pinengine; print(pinengine.backend())"], cwd=tmp_path)
    assert second == "python\n"
    assert "(python backend)" in _run([tmp_path / "venv" / "bin" / "pinengine", "--version"])
    # pip still uninstalls it cleanly without the deleted file.
    _run([py, "-m", "pip", "uninstall", "-y", "pinengine"])
    assert not package.exists()


def test_offline_install_without_isolation_or_cython(sdist: Path, wheelhouse: Path, tmp_path: Path) -> None:
    py = _fresh_venv(tmp_path / "venv")
    _run([py, "-m", "pip", "install", "--no-index", "--find-links", wheelhouse, "setuptools>=77"])
    install = [py, "-m", "pip", "install", "-v", "--no-index", "--no-build-isolation", "--find-links", wheelhouse]
    # Asked for: the pure wheel, no notice.
    log = _run([*install, sdist], env={"PINENGINE_NO_EXTENSIONS": "1"})
    assert "py3-none-any.whl" in log
    quiet = _run([py, "-c", "import pinengine; print(pinengine.backend())"], cwd=tmp_path)
    assert quiet == "python\n"
    # A compiler but no Cython: falls back, and says so once.
    log = _run([*install, "--force-reinstall", "--no-deps", sdist])
    assert "pinengine: the compiled core could not be built (Cython is not installed)" in log
    # With no logging set up (and pinengine's NullHandler in place), the notice goes to stderr.
    first = _run([py, "-c", "import pinengine; print(pinengine.backend())"], cwd=tmp_path)
    assert first.count(f"{NOTICE} (its build said: Cython is not installed)") == 1
    assert _run([py, "-c", "import pinengine; print(pinengine.backend())"], cwd=tmp_path) == "python\n"
