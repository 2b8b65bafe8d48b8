#!/usr/bin/env bash
# The README's promise, checked: on a Debian 12 machine that has only
# Python 3.11, Node.js 20 and make, `make test` and then `make dev` work. Not
# part of `make test`: it needs root and Debian's debootstrap, downloads a
# base system and every package the tests need (a few minutes).
#
#   sudo tests/ops/fresh-machine.sh NODEJS_20_DEB [WORKDIR]
#
# NODEJS_20_DEB is a Debian package of Node.js 20 with npm (NodeSource's
# nodejs 20.x; Debian 12 itself ships 18). In WORKDIR (default a new folder
# in /tmp) it makes a minimal bookworm with debootstrap, with the host's apt
# sources and local CA certificates (so that it reaches the archives as the
# host does), installs python3 and make from Debian and that Node.js, clones
# this checkout's HEAD into /root/repo, and runs, as root:
#   1. `make test` (scripts/system-deps installs the rest with apt-get);
#   2. `make dev` in a network namespace of its own with only loopback: it
#      waits for the URL, asks /healthz and /, then sends Ctrl-C.
# It prints the closing lines of each and leaves WORKDIR for a look.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
NODE_DEB=${1:?usage: fresh-machine.sh NODEJS_20_DEB [WORKDIR]}
WORK=${2:-$(mktemp -d /tmp/ffcloud-fresh.XXXXXX)}
ROOT=$WORK/root
mkdir -p "$WORK"

[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 2; }
command -v debootstrap >/dev/null || { echo "install debootstrap" >&2; exit 2; }
command -v ip >/dev/null || { echo "install iproute2" >&2; exit 2; }

if [ ! -x "$ROOT/usr/bin/python3" ]; then
    debootstrap --variant=minbase bookworm "$ROOT" >"$WORK/debootstrap.log"
    # The host's archives and trust: what a machine on this network has.
    rm -f "$ROOT/etc/apt/sources.list"
    cp -a /etc/apt/sources.list /etc/apt/sources.list.d "$ROOT/etc/apt/" 2>/dev/null || true
    cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
    # No service starts inside (nginx's package would try to).
    printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
    chmod +x "$ROOT/usr/sbin/policy-rc.d"
    cp "$NODE_DEB" "$ROOT/tmp/nodejs.deb"
    chroot "$ROOT" sh -c '
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends python3 make ca-certificates >/dev/null
        dpkg -i /tmp/nodejs.deb >/dev/null 2>&1 || apt-get install -y -qq -f >/dev/null
        rm /tmp/nodejs.deb'
    if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
        cp /usr/local/share/ca-certificates/*.crt "$ROOT/usr/local/share/ca-certificates/"
        chroot "$ROOT" update-ca-certificates >/dev/null
    fi
fi
rm -rf "$ROOT/root/repo"
git clone -q "$REPO" "$ROOT/root/repo"

mounts=(proc sys dev dev/pts)
for m in "${mounts[@]}"; do mount --bind "/$m" "$ROOT/$m"; done
mount -t tmpfs tmpfs "$ROOT/dev/shm"
cleanup() {
    umount "$ROOT/dev/shm" || true
    for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount "$ROOT/${mounts[i]}" || true; done
}
trap cleanup EXIT

# What the machine has, before: only Python, Node.js and make.
chroot "$ROOT" sh -c 'python3 --version; node --version; npm --version; make --version | head -1
    for c in git chromium nginx sqlite3 systemd-analyze uv; do command -v $c >/dev/null && echo "has $c"; done; true'

# TLS clients told to use the system's CA bundle (pip, uv and Node.js carry their own).
ENV=(env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt PIP_CERT=/etc/ssl/certs/ca-certificates.crt
    NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt)

status=0
echo "== make test"
chroot "$ROOT" "${ENV[@]}" sh -c 'cd /root/repo && make test' >"$WORK/make-test.log" 2>&1 || status=$?
tail -n 4 "$WORK/make-test.log"
echo "make test: exit $status (log: $WORK/make-test.log)"
[ "$status" = 0 ] || exit "$status"

echo "== make dev (loopback only)"
unshare -n sh -c 'ip link set lo up && exec "$@"' sh chroot "$ROOT" "${ENV[@]}" sh -c '
    cd /root/repo
    setsid make dev >/root/dev.log 2>&1 &
    pid=$!
    for _ in $(seq 180); do grep -q "FF Cloud is running at" /root/dev.log && break; sleep 1; done
    url=$(grep -o "FF Cloud is running at [^ ]*" /root/dev.log | awk "{print \$NF}")
    python3 - "$url" <<EOF
import sys, urllib.request
for path in ("/healthz", "/"):
    with urllib.request.urlopen(sys.argv[1] + path, timeout=10) as r:
        print(path, r.status, r.headers.get("content-type"))
EOF
    kill -INT -"$pid"  # Ctrl-C: the whole group
    wait "$pid"
    echo "make dev: exit $?"
    grep -E "FF Cloud (is running|stopped)" /root/dev.log'
