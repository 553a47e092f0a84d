#!/bin/bash
# pinengine on emulated aarch64 and armv7 (issue 17), one after the other:
#
#   .ci/edge/emulated.sh SDIST WORKDIR [arm64] [armhf]
#
# For each architecture: debootstrap a minimal Debian bookworm into
# WORKDIR/ARCH (removed first: nothing is cached between runs), copy in the
# sdist and the tests, and run .ci/edge/inside-emulated.sh there under
# qemu-user-static (binfmt_misc): the wheel built from the sdist, auditwheel,
# that wheel installed, the SHA-256 path, the test subset on both backends,
# the CLI and the footprint. Prints "edge ARCH: ..." summary lines; results
# stay in WORKDIR/ARCH-out, the system is removed (EDGE_KEEP=1 keeps it). Exit status 0 when every architecture passed,
# 3 when binfmt_misc or qemu cannot be had here (nothing was run), 1 otherwise.
#
# arm64 takes its test dependencies from PyPI (every one has an aarch64 wheel);
# armhf uses Debian's python3-cryptography (38) in a --system-site-packages
# venv, and pytest, trustme, certifi from PyPI (pure Python): PyPI has no armv7
# wheel of cryptography (nor of cffi it needs, nor of grpcio). Left out on both: the
# tests needing grpcio, redis, requests, httpx, aiohttp or a redis-server
# (hooks for other clients, stores, reporting: pure Python, identical on every
# architecture, run natively by .ci/run and on 3.13/3.14 by .ci/edge/pythons.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
. .ci/edge/lib.sh

SDIST=$(readlink -f "$1")
WORK=$2
shift 2
ARCHS=("$@")
[ ${#ARCHS[@]} -gt 0 ] || ARCHS=(arm64 armhf)

if ! why=$(edge_binfmt); then
    echo "edge: SKIPPED the emulated architectures: $why"
    exit 3
fi

# No ca-certificates: this machine's bundle is copied in (edge_run), and its
# configuration (a c_rehash of every root) is minutes under emulation.
BASE=(python3 python3-venv python3-dev gcc libc6-dev)
status=0
for arch in "${ARCHS[@]}"; do
    root=$WORK/$arch
    t0=$SECONDS
    case $arch in
        arm64) pkgs=("${BASE[@]}"); deps=pypi ;;
        # python3-cffi-backend by name: debootstrap does not resolve the
        # virtual package python3-cryptography depends on it through.
        armhf) pkgs=("${BASE[@]}" python3-cryptography python3-cffi-backend); deps=debian ;;
        *) echo "edge: unknown architecture $arch"; exit 2 ;;
    esac
    echo "edge $arch: debootstrap bookworm from $(edge_mirror)"
    if ! nice -n 10 bash -c ". .ci/edge/lib.sh; edge_bootstrap \"\$@\"" _ "$root" "$arch" bookworm "${pkgs[@]}"; then
        echo "edge $arch: FAILED: debootstrap (log: $root.log)"; status=1; continue
    fi
    t_boot=$((SECONDS - t0))
    mkdir -p "$root/edge"
    cp "$SDIST" "$root/edge/"
    edge_copy_tests "$root/edge/run"
    cp .ci/edge/inside-emulated.sh "$root/edge/"
    echo "edge $arch: bootstrapped in $t_boot s ($(du -sm "$root" | cut -f1) MiB)"
    if EDGE_ENV_EDGE_TEST_DEPS=$deps nice -n 10 bash -c ". .ci/edge/lib.sh; edge_run \"\$@\"" _ "$root" /bin/bash /edge/inside-emulated.sh \
            2>&1 | tee "$WORK/$arch.txt"; then
        echo "edge $arch: passed in $((SECONDS - t0)) s (debootstrap $t_boot s)"
    else
        echo "edge $arch: FAILED (log: $WORK/$arch.txt, results: $WORK/$arch-out)"; status=1
    fi
    # The results stay; the system goes (hundreds of MiB; rebuilt every run anyway).
    rm -rf "$WORK/$arch-out" && mv "$root/edge/out" "$WORK/$arch-out"
    [ -n "${EDGE_KEEP:-}" ] || rm -rf "$root"
done
exit $status
