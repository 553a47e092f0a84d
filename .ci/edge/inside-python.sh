#!/bin/bash
# Runs INSIDE a native Debian trixie or sid system, called by .ci/edge/pythons.sh:
# installs the host's sdist with the test extra in a venv of that Debian's
# python3 (the compiled core built from the sdist, and required), then runs
# the whole test suite on both backends, with the redis-server and curl of
# that system.
#
#   /edge/pinengine-*.tar.gz   the sdist built on the host
#   /edge/run/                 tests, examples, docs, fuzz, README.md, .ci, benchmarks (copies)
#   $OUT/                 tests.txt, pip logs
set -euo pipefail
cd /edge
T0=$SECONDS
OUT=/edge/out
mkdir -p "$OUT"
SDIST=$(ls /edge/pinengine-*.tar.gz)
python3 -m venv /opt/venv
PY=/opt/venv/bin/python
say() { echo "edge python $("$PY" -c 'import sys; print(sys.version.split()[0])'): $* ($((SECONDS - T0)) s)"; }
PINENGINE_REQUIRE_EXTENSIONS=1 "$PY" -m pip install -q "pinengine[test] @ file://$SDIST" >$OUT/pip.log 2>&1 \
    || { tail -n 60 $OUT/pip.log; exit 1; }
say "installed from the sdist with the test extra"
cd /edge/run
"$PY" -c '
import pinengine, pinengine._core as c, ssl
assert pinengine.backend() == "compiled" and pinengine.__file__.startswith("/opt/venv/"), pinengine.__file__
strict = bool(ssl.create_default_context().verify_flags & ssl.VERIFY_X509_STRICT)
print(f"edge: pinengine {pinengine.__version__}, backend {pinengine.backend()}, SHA-256 path {c.sha256_implementation()}; "
      f"{ssl.OPENSSL_VERSION}; create_default_context() strict: {strict}")'
set +e
"$PY" -m pytest -q -ra -p no:cacheprovider tests >$OUT/tests.txt 2>&1
rc=$?
set -e
tail -n 12 $OUT/tests.txt
[ $rc -eq 0 ] || { grep -E '^(FAILED|ERROR)' $OUT/tests.txt | head -n 40; echo "edge: the suite failed"; exit 1; }
grep -qE '^[0-9]+ passed' $OUT/tests.txt || { echo "edge: no 'N passed' line"; exit 1; }
# CPython 3.12+ warns when a multi-threaded process forks (test_dynamic_race once did, 48 times).
if grep -q 'use of fork() may lead to deadlocks' $OUT/tests.txt; then
    grep -B2 -A2 'use of fork()' $OUT/tests.txt | head -n 20; echo "edge: a test forks a multi-threaded process"; exit 1
fi
say "suite: $(tail -n 1 $OUT/tests.txt | tr -d '=' | sed 's/^ *//')"
