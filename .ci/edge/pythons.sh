#!/bin/bash
# The whole test suite on every newer CPython the wheels claim (issue 17):
#
#   .ci/edge/pythons.sh SDIST WORKDIR [trixie] [sid]
#
# Debian trixie has CPython 3.13, sid 3.14. Each is bootstrapped natively
# (amd64, no emulation) into WORKDIR/SUITE, removed first, with redis-server
# and curl (the suite's own servers and curl comparison), and runs
# .ci/edge/inside-python.sh: the sdist installed with the test extra from
# PyPI, the compiled core required, the suite on both backends. On 3.13+
# ssl.create_default_context() verifies with VERIFY_X509_STRICT, which the
# generated test certificates satisfy (tests/certs.py). Prints "edge python
# X.Y.Z: ..." summary lines; results stay in WORKDIR/SUITE-out, the system is
# removed (EDGE_KEEP=1 keeps it); exit status 0 when every suite passed.
set -euo pipefail
cd "$(dirname "$0")/../.."
. .ci/edge/lib.sh

SDIST=$(readlink -f "$1")
WORK=$2
shift 2
SUITES=("$@")
[ ${#SUITES[@]} -gt 0 ] || SUITES=(trixie sid)

status=0
for suite in "${SUITES[@]}"; do
    root=$WORK/$suite
    t0=$SECONDS
    if ! nice -n 10 bash -c ". .ci/edge/lib.sh; edge_bootstrap \"\$@\"" _ "$root" amd64 "$suite" \
            python3 python3-venv python3-dev gcc libc6-dev ca-certificates redis-server curl; then
        echo "edge $suite: FAILED: debootstrap (log: $root.log)"; status=1; continue
    fi
    t_boot=$((SECONDS - t0))
    mkdir -p "$root/edge"
    cp "$SDIST" "$root/edge/"
    edge_copy_tests "$root/edge/run"
    cp .ci/edge/inside-python.sh "$root/edge/"
    echo "edge $suite: bootstrapped in $t_boot s"
    if nice -n 10 bash -c ". .ci/edge/lib.sh; edge_run \"\$@\"" _ "$root" /bin/bash /edge/inside-python.sh 2>&1 | tee "$WORK/$suite.txt"; then
        echo "edge $suite: passed in $((SECONDS - t0)) s (debootstrap $t_boot s)"
    else
        echo "edge $suite: FAILED (log: $WORK/$suite.txt, results: $WORK/$suite-out)"; status=1
    fi
    rm -rf "$WORK/$suite-out" && mv "$root/edge/out" "$WORK/$suite-out"
    [ -n "${EDGE_KEEP:-}" ] || rm -rf "$root"
done
exit $status
