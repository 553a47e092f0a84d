#!/bin/bash
# Runs INSIDE an emulated Debian bookworm (arm64 or armhf), called by
# .ci/edge/emulated.sh: builds a wheel from the host's sdist, audits it,
# installs that wheel (never the source tree), reports the SHA-256 path the
# compiled core picked, runs the bounded test subset on both backends, the
# CLI's pins/verify, and the footprint figures.
#
#   /edge/pinengine-*.tar.gz   the sdist built on the host
#   /edge/run/                 tests, examples, docs, fuzz, README.md, .ci, benchmarks (copies)
#   /edge/out/                 results: the wheel, auditwheel.txt, tests.txt, footprint.json
#
# EDGE_TEST_DEPS=pypi: pytest, cryptography, trustme, certifi all come from
# PyPI (arm64: each has a wheel). EDGE_TEST_DEPS=debian: cryptography is
# Debian's python3-cryptography, seen through --system-site-packages, the
# others (pure Python) come from PyPI (armhf: PyPI has no armv7 wheel of
# cryptography, nor of cffi it needs, nor of grpcio, and building
# cryptography from source needs Rust and takes far too long emulated).
set -euo pipefail
cd /edge
T0=$SECONDS
say() { echo "edge $(uname -m): $* ($((SECONDS - T0)) s)"; }
arch=$(uname -m)
SDIST=$(ls /edge/pinengine-*.tar.gz)
OUT=/edge/out
mkdir -p "$OUT"

venv_flags=()
[ "$EDGE_TEST_DEPS" = debian ] && venv_flags=(--system-site-packages)
python3 -m venv "${venv_flags[@]}" /opt/venv
PY=/opt/venv/bin/python
"$PY" -m pip install -q auditwheel >$OUT/pip-tools.log 2>&1 || { cat $OUT/pip-tools.log; exit 1; }
say "Python $("$PY" -c 'import sys; print(sys.version.split()[0])'), $(gcc --version | head -n 1)"

# The wheel, built from the sdist (Cython and setuptools from PyPI in pip's
# isolated build environment; on armv7 Cython is its pure-Python wheel).
CFLAGS=-g0 PINENGINE_REQUIRE_EXTENSIONS=1 "$PY" -m pip wheel -v --no-deps -w $OUT/dist "$SDIST" >$OUT/build.log 2>&1 \
    || { tail -n 60 $OUT/build.log; exit 1; }
WHEEL=$(ls $OUT/dist/pinengine-*.whl)
say "built $(basename "$WHEEL") ($(( ($(stat -c %s "$WHEEL") + 1023) / 1024 )) KiB)"

/opt/venv/bin/auditwheel show "$WHEEL" >$OUT/auditwheel.txt 2>&1 || { cat $OUT/auditwheel.txt; exit 1; }
AUDIT=$(tr -s ' \n' '  ' <$OUT/auditwheel.txt)
case $arch in aarch64) plat=aarch64 ;; armv7l|armv8l) plat=armv7l ;; *) echo "unexpected machine $arch"; exit 1 ;; esac
TAG=$(grep -oE "platform tag: \"manylinux_[0-9]+_[0-9]+_$plat\"" <<<"$AUDIT" | head -n 1 | cut -d'"' -f2 || true)
[ -n "$TAG" ] || { cat $OUT/auditwheel.txt; echo "auditwheel: not consistent with a manylinux $plat tag"; exit 1; }
if grep -qi 'external shared libraries are required' <<<"$AUDIT"; then cat $OUT/auditwheel.txt; exit 1; fi
say "auditwheel: consistent with $TAG; $(grep -oE 'shared libraries: [^{]*' <<<"$AUDIT" | head -n 1 | sed 's/ with versions//')"

# Install THAT wheel; then what the tests need.
"$PY" -m pip install -q "$WHEEL" >$OUT/pip-wheel.log 2>&1 || { cat $OUT/pip-wheel.log; exit 1; }
# --only-binary: nothing is compiled here; on armhf pip sees Debian's cryptography.
"$PY" -m pip install -q --only-binary=:all: pytest cryptography trustme certifi >$OUT/pip-test.log 2>&1 \
    || { cat $OUT/pip-test.log; exit 1; }
# Where the test dependencies come from, and what armv7 cannot have from PyPI.
"$PY" - <<'EOF' | tee $OUT/deps.txt
import importlib.metadata as m
for name in ("pytest", "cryptography", "trustme", "certifi"):
    dist = m.distribution(name)
    where = "Debian" if "/usr/lib/python3/" in str(dist.locate_file("")) else "PyPI"
    print(f"test dependency: {name} {dist.version} ({where})")
EOF
# What PyPI offers this machine for the test extra's compiled dependencies
# (the reason armhf takes cryptography from Debian): wheel names or "none".
for dist in cryptography cffi grpcio; do
    rm -rf /tmp/probe
    if "$PY" -m pip download -q --no-deps --only-binary=:all: -d /tmp/probe "$dist" >/dev/null 2>&1; then
        echo "PyPI wheel for $arch: $(ls /tmp/probe)" | tee -a $OUT/deps.txt
    else
        echo "PyPI wheel for $arch: none of $dist" | tee -a $OUT/deps.txt
    fi
done

cd /edge/run
# Not importable from here: the installed wheel is what runs.
"$PY" -c '
import pinengine, pinengine._core as c, sys
assert pinengine.backend() == "compiled", pinengine.backend()
assert pinengine.__file__.startswith("/opt/venv/"), pinengine.__file__
print(f"edge: pinengine {pinengine.__version__} from the wheel, backend {pinengine.backend()}, "
      f"SHA-256 path: {c.sha256_implementation()} (can run: "
      + ", ".join(n for n in ("portable", "armv8", "sha-ni") if c._sha256_available(n)) + ")")' | tee $OUT/core.txt

# The CLI, as a user runs it.
/opt/venv/bin/pinengine --version
/opt/venv/bin/pinengine pins "$("$PY" -m certifi)" | tail -n 1
# The README's main job validates the chain file with --cafile, which needs
# cryptography >= 42 (x509.verification); where the test dependencies are
# Debian's older one, the offline check pins the leaf instead (no validation
# needed for a leaf pin).
if "$PY" -c 'import cryptography.x509.verification' 2>/dev/null; then
    VERIFY=(--policy examples/policy.toml --host www.example.com --cafile examples/root.pem examples/chain.pem)
else
    VERIFY=(--pin "$(/opt/venv/bin/pinengine pins --format json examples/chain.pem | head -n 1 | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["pin"])')"
            --host www.example.com examples/chain.pem)
fi
/opt/venv/bin/pinengine verify "${VERIFY[@]}"
PINENGINE_NO_EXTENSIONS=1 /opt/venv/bin/pinengine verify "${VERIFY[@]}" >/dev/null
say "CLI pins/verify: ok on both backends"

# The bounded subset: the core and policy modules (marked both_cores) run on
# the compiled core and on the pure-Python twin in one run; the rest on the
# compiled core (tests/conftest.py).
TESTS=(tests/test_core_api.py tests/test_core_x509.py tests/test_core_tlv.py tests/test_core_match.py tests/test_compiled_core.py tests/test_hashes.py tests/test_differential.py
       tests/test_pins.py tests/test_policy.py tests/test_hooks_ssl.py tests/test_strict_verify.py
       tests/test_cli.py tests/test_footprint.py)
set +e
"$PY" -m pytest -q -ra --durations=12 -p no:cacheprovider "${TESTS[@]}" >$OUT/tests.txt 2>&1
rc=$?
set -e
grep -A 13 'slowest 12 durations' $OUT/tests.txt || true
tail -n 3 $OUT/tests.txt
[ $rc -eq 0 ] || { grep -E '^(FAILED|ERROR)' $OUT/tests.txt | head -n 30; echo "edge $arch: tests failed"; exit 1; }
say "tests: $(tail -n 1 $OUT/tests.txt | tr -d '=' | sed 's/^ *//')"

# One run of each figure: under emulation the times are qemu's, and the RSS
# differences are what the budget is about (benchmarks/README.md).
"$PY" benchmarks/footprint.py --wheel "$WHEEL" --runs 1 --label "$arch (qemu)" --json $OUT/footprint.json --check \
    --wheel-ceiling 360
say "done"
