# Helpers for the Debian systems the edge checks run pinengine in (issue 17):
# emulated arm64/armhf bookworm, native amd64 trixie (CPython 3.13) and sid
# (CPython 3.14). Sourced by the scripts beside it; needs root, debootstrap,
# and for the foreign architectures qemu-user-static with binfmt_misc.
#
# Every system is bootstrapped afresh into a directory of the caller's (under
# /tmp or a git-ignored build directory), from the Debian mirror this machine's
# apt already uses, with this machine's resolver and CA bundle copied in, and
# entered in a private mount namespace: its /proc, /dev and /dev/shm mounts go
# away with the namespace, whatever happens to the script.

# The Debian mirror of this machine's apt sources (deb822 or one-line format).
edge_mirror() {
    local uri
    uri=$(sed -n 's#^URIs:[[:space:]]*\([^[:space:]]*/debian\)/*[[:space:]]*$#\1#p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1)
    [ -n "$uri" ] || uri=$(sed -n 's#^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]*/debian\)/*[[:space:]].*#\2#p' \
        /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -n 1)
    echo "${uri:-http://deb.debian.org/debian}"
}

# edge_bootstrap DIR ARCH SUITE PACKAGE...: a minimal Debian with PACKAGE... in DIR
# (removed first). Output goes to DIR.log; the last lines are shown on failure.
#
# For this machine's own architecture, a plain debootstrap. For a foreign one,
# only debootstrap's first stage (download, unpack the essential packages; all
# native), then every other package downloaded is unpacked natively too, and
# the second stage -- every maintainer script, run under emulation -- is left
# out: it takes 10 minutes and more (byte-compiling the standard library,
# c_rehash of every CA, debconf and perl for each package) and builds nothing
# the checks use. What those scripts would have set up and the checks need is
# done here: /etc/passwd and /etc/group from base-passwd, the dynamic linker's
# cache (ldconfig, in the system). Python compiles what it imports, once.
edge_bootstrap() {
    local dir=$1 arch=$2 suite=$3; shift 3
    local include deb
    include=$(IFS=,; echo "$*")
    edge_umount "$dir"
    rm -rf "$dir"
    mkdir -p "$(dirname "$dir")"
    if [ "$arch" = "$(dpkg --print-architecture)" ]; then
        debootstrap --arch="$arch" --variant=minbase --include="$include" "$suite" "$dir" "$(edge_mirror)" >"$dir.log" 2>&1 \
            || { edge_bootstrap_failed "$dir"; return 1; }
    else
        debootstrap --foreign --arch="$arch" --variant=minbase --include="$include" "$suite" "$dir" "$(edge_mirror)" >"$dir.log" 2>&1 \
            || { edge_bootstrap_failed "$dir"; return 1; }
        for deb in "$dir"/var/cache/apt/archives/*.deb; do
            # --keep-directory-symlink: /bin, /lib, /sbin stay links into /usr (merged /usr).
            dpkg-deb --fsys-tarfile "$deb" | tar --keep-directory-symlink -xf - -C "$dir" \
                || { echo "edge: unpacking $deb failed" >&2; return 1; }
        done
        [ -e "$dir/etc/passwd" ] || cp "$dir/usr/share/base-passwd/passwd.master" "$dir/etc/passwd"
        [ -e "$dir/etc/group" ] || cp "$dir/usr/share/base-passwd/group.master" "$dir/etc/group"
        rm -f "$dir"/var/cache/apt/archives/*.deb
        edge_run "$dir" /sbin/ldconfig || { echo "edge: cannot run programs in $dir (binfmt_misc, qemu-user-static?)" >&2; return 1; }
    fi
    # apt inside (for a look around by hand): the same mirror; sid's Release
    # file may be past its Valid-Until on a snapshot mirror.
    mkdir -p "$dir/etc/apt/apt.conf.d"
    echo 'Acquire::Check-Valid-Until "false";' >"$dir/etc/apt/apt.conf.d/99pinengine-edge"
}

edge_bootstrap_failed() {
    tail -n 30 "$1.log" >&2
    [ -f "$1/debootstrap/debootstrap.log" ] && tail -n 30 "$1/debootstrap/debootstrap.log" >&2
    return 0
}

# edge_run DIR COMMAND...: COMMAND inside the system at DIR, as root, with a
# clean environment (only what is listed here, plus EDGE_ENV_* passed through
# without the prefix), /proc, the host's /dev and a private /dev/shm mounted.
# PIP_NO_COMPILE: pip does not byte-compile what it installs (slow under
# emulation); Python compiles what is imported, once, when it is imported.
edge_run() {
    local dir=$1; shift
    cp -L /etc/resolv.conf "$dir/etc/resolv.conf"
    # This machine's CA bundle: the one its pip and apt trust for the registries.
    if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
        mkdir -p "$dir/etc/ssl/certs"
        cp /etc/ssl/certs/ca-certificates.crt "$dir/etc/ssl/certs/ca-certificates.crt"
    fi
    local -a envs=(HOME=/root LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
                   PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_DEFAULT_TIMEOUT=180
                   PIP_NO_COMPILE=1)
    local name
    for name in $(compgen -e | grep '^EDGE_ENV_' || true); do
        envs+=("${name#EDGE_ENV_}=${!name}")
    done
    unshare --mount --propagation private /bin/sh -euc '
        dir=$1; shift
        mount -t proc proc "$dir/proc"
        mount --bind /dev "$dir/dev"
        mount -t tmpfs -o mode=1777 tmpfs "$dir/dev/shm"
        exec chroot "$dir" /usr/bin/env -i "$@"' sh "$dir" "${envs[@]}" "$@"
}

# Anything still mounted under DIR (left by a killed run of an older script): unmount it.
edge_umount() {
    local dir=$1 m
    [ -d "$dir" ] || return 0
    for m in $(awk -v d="$dir/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r); do
        umount -l "$m" 2>/dev/null || true
    done
}

# binfmt_misc with qemu-user-static's handlers for arm64 and armhf; returns 1
# (after saying why) where this machine cannot have them.
edge_binfmt() {
    if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null || {
            echo "binfmt_misc cannot be mounted here (no privilege, or no binfmt_misc in this kernel)"; return 1; }
    fi
    local arch entry interp
    for arch in aarch64 arm; do
        entry=/proc/sys/fs/binfmt_misc/qemu-$arch
        # The handler must be qemu-user-static's: a dynamically linked qemu
        # (qemu-user-binfmt's) cannot load its libraries inside a foreign chroot.
        # Registered afresh: with the F flag the kernel keeps the file that was
        # the interpreter when the handler was registered, whatever the path
        # points to now (qemu-user-static replacing qemu-user-binfmt keeps the path).
        [ -e "$entry" ] && { echo -1 >"$entry" || true; }
        update-binfmts --enable "qemu-$arch" >/dev/null 2>&1 || true
        [ -e "$entry" ] || { echo "the qemu-$arch binfmt_misc handler cannot be registered"; return 1; }
        interp=$(readlink -f "$(sed -n 's/^interpreter //p' "$entry")")
        [[ "$interp" == *-static ]] || { echo "the qemu-$arch handler is $interp, not qemu-user-static's"; return 1; }
        # F (fix binary): the kernel holds the interpreter open, so it need not exist inside the chroot.
        grep -q '^flags:.*F' "$entry" || { echo "the qemu-$arch handler lacks the F flag (Debian's qemu-user-static sets it)"; return 1; }
    done
    [ "$(cat /proc/sys/fs/binfmt_misc/status)" = enabled ] || { echo "binfmt_misc is disabled"; return 1; }
}

# copy_sources DEST: the files of the repository that the tests read (no
# build output, no .so): tests, examples, docs, fuzz, README.md, .ci, benchmarks,
# and the packaging files the tests read (pyproject.toml, LICENSE).
edge_copy_tests() {
    local dest=$1
    mkdir -p "$dest"
    cp -r tests examples docs fuzz README.md .ci benchmarks pyproject.toml LICENSE "$dest/"
    find "$dest" -name __pycache__ -prune -exec rm -rf {} +
}
