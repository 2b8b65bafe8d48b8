#!/usr/bin/env bash
# Boot the three units under a real systemd, as docs/operations.md installs
# them, and drive them end to end. Not part of `make test`: it needs root and
# Debian's systemd-container (systemd-nspawn), and builds an environment.
#
#   sudo tests/ops/boot-units.sh
#
# A throwaway container: tmpfs root with the host's /usr, loopback-only
# network, the checkout's systemd/ and examples/ bound read-only. Inside it:
# the users (sysusers.d), the socket directory (tmpfiles.d), the env files,
# the units; a user and a VM registered with the control plane's commands;
# the vmagent with the demo engine; then examples/client.py sends a message
# through relayd, the signing key is rotated (cpctl keys rotate, both units
# reloaded) and the client sends another with a token from the new key;
# then relayd is switched to socket activation (relayd.socket) and the client
# sends a third. It
# prints each unit's state, the health checks and the live security scores,
# then powers the container off.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
VENV=${VENV:-/srv/ffcloud-boot-check}
NAME=ffcloud-boot-check
WORK=$(mktemp -d /tmp/ffcloud-boot.XXXXXX)

[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 2; }
command -v systemd-nspawn >/dev/null || { echo "install systemd-container" >&2; exit 2; }

# The Python environment, as the guide builds it (Debian's python3: the
# container sees the host's /usr and nothing of /root).
UV=$(command -v uv || echo "$REPO/.tools/bin/uv")
[ -x "$UV" ] || make .tools/bin/uv
UV_PROJECT_ENVIRONMENT=$VENV UV_PYTHON_DOWNLOADS=never \
    "$UV" sync --frozen --no-dev --no-editable --python /usr/bin/python3 >/dev/null

# nspawn without a host systemd: give it a cgroup of its own.
for h in systemd unified; do
    if [ -d /sys/fs/cgroup/$h ]; then mkdir -p /sys/fs/cgroup/$h/$NAME; fi
done
(
    for h in systemd unified; do
        if [ -d /sys/fs/cgroup/$h/$NAME ]; then echo $BASHPID > /sys/fs/cgroup/$h/$NAME/cgroup.procs; fi
    done
    exec systemd-nspawn -D / --volatile=yes --private-network --register=no --keep-unit \
        --machine=$NAME --console=passive --bind-ro="$VENV" \
        --bind-ro="$REPO/systemd:/srv/units" --bind-ro="$REPO/examples:/srv/examples" -b
) >"$WORK/boot.log" 2>&1 &
NSPAWN=$!
cleanup() {
    kill $NSPAWN 2>/dev/null || true
    wait $NSPAWN 2>/dev/null || true
    for h in systemd unified; do
        [ -d /sys/fs/cgroup/$h/$NAME ] && find /sys/fs/cgroup/$h/$NAME -depth -type d -exec rmdir {} + 2>/dev/null
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

# Wait for the container's systemd (nspawn's child) to answer.
LEADER=
for _ in $(seq 150); do
    LEADER=$(pgrep -P $NSPAWN | head -n 1 || true)
    if [ -n "$LEADER" ]; then
        case $(nsenter -t "$LEADER" -a systemctl is-system-running 2>/dev/null || true) in
            initializing|starting|running|degraded) break ;;
        esac
    fi
    sleep 0.2
done
inside() { nsenter -t "$LEADER" -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin bash -s -- "$@"; }

# An empty /etc makes the first-boot wizard wait for a keyboard, and there
# is no network to wait for: skip both.
for _ in $(seq 100); do
    state=$(inside <<<'systemctl is-system-running' || true)
    case $state in
        running|degraded) break ;;
    esac
    inside <<<'systemctl kill systemd-firstboot.service systemd-networkd-wait-online.service 2>/dev/null' || true
    sleep 0.5
done
echo "container: $state"

inside "$VENV" <<'EOF'
set -euo pipefail
VENV=$1
mkdir -p /opt/ffcloud/share/webui
ln -sfn "$VENV/bin" /opt/ffcloud/bin
echo '<!doctype html><title>FF Cloud</title>' > /opt/ffcloud/share/webui/index.html
cd /srv/units
install -D -m 0644 sysusers.d/ffcloud.conf /etc/sysusers.d/ffcloud.conf
systemd-sysusers /etc/sysusers.d/ffcloud.conf
install -D -m 0644 tmpfiles.d/ffcloud.conf /etc/tmpfiles.d/ffcloud.conf
systemd-tmpfiles --create /etc/tmpfiles.d/ffcloud.conf
install -d -m 0755 /etc/ffcloud
install -m 0644 relayd.env.example /etc/ffcloud/relayd.env
install -m 0600 controlplane.env.example /etc/ffcloud/controlplane.env
# No TLS proxy in here: clients and the VM use relayd directly.
sed -i 's|^CONTROLPLANE_RELAY_URL=.*|CONTROLPLANE_RELAY_URL=ws://127.0.0.1:8765|; s|^CONTROLPLANE_TRUSTED_PROXIES=.*|CONTROLPLANE_TRUSTED_PROXIES=|' /etc/ffcloud/controlplane.env
install -m 0644 relayd.service controlplane.service /etc/systemd/system/
systemctl daemon-reload
systemctl enable --now controlplane.service relayd.service

cpctl() {
    (set -a && . /etc/ffcloud/controlplane.env && set +a && umask 077 &&
     setpriv --reuid=ffcloud-controlplane --regid=ffcloud --clear-groups -- \
        /opt/ffcloud/bin/controlplane "$@" --state-dir /var/lib/ffcloud-controlplane)
}
printf '%s\n' 'a long passphrase' | cpctl user add alice --password-stdin 2>/dev/null
install -m 0600 /dev/null /etc/ffcloud/vmagent.token
cpctl vm add local-01 2>/dev/null | sed -n 's/^token: //p' > /etc/ffcloud/vmagent.token
install -m 0600 vmagent.env.example /etc/ffcloud/vmagent.env
sed -i 's|^VMAGENT_RELAY_URL=.*|VMAGENT_RELAY_URL=ws://127.0.0.1:8765|; s|^VMAGENT_ENGINE=.*|VMAGENT_ENGINE=demo|' /etc/ffcloud/vmagent.env
install -m 0644 vmagent.service /etc/systemd/system/
systemctl daemon-reload
systemctl enable --now vmagent.service

TOKEN=$(curl -sf -X POST -H 'content-type: application/json' \
    -d '{"username":"alice","password":"a long passphrase"}' http://127.0.0.1:8080/api/auth/login |
    "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["accessToken"])')
ID=$(curl -sf -X POST -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    -d '{"issueUrl":"https://github.com/octo/hello/issues/7"}' http://127.0.0.1:8080/api/workspaces |
    "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["id"])')
for _ in $(seq 100); do
    curl -sf -H "authorization: Bearer $TOKEN" "http://127.0.0.1:8080/api/workspaces/$ID" | grep -q '"status": "idle"' && break
    sleep 0.2
done
echo "--- examples/client.py"
FFCLOUD_PASSWORD='a long passphrase' timeout 60 "$VENV/bin/python" /srv/examples/client.py \
    --user alice --workspace "$ID" --send "Hello from systemd"
echo "--- key rotation, as the guide does it; new tokens must open the relay"
cpctl keys rotate 2>/dev/null
systemctl reload relayd
systemctl reload controlplane
FFCLOUD_PASSWORD='a long passphrase' timeout 60 "$VENV/bin/python" /srv/examples/client.py \
    --user alice --workspace "$ID" --send "After the key rotation" | tail -n 2
echo "--- socket activation: systemd owns relayd's port (systemd/relayd.socket)"
install -m 0644 relayd.socket /etc/systemd/system/
systemctl daemon-reload
systemctl stop relayd.service
systemctl enable --now relayd.socket
systemctl start relayd.service
journalctl -u relayd.service -o cat | grep -c '"socketActivation": true' | sed 's/^/listening on the passed socket: /'
for _ in $(seq 100); do
    curl -sf -H "authorization: Bearer $TOKEN" "http://127.0.0.1:8080/api/workspaces/$ID" | grep -q '"status": "idle"' && break
    sleep 0.2
done
FFCLOUD_PASSWORD='a long passphrase' timeout 60 "$VENV/bin/python" /srv/examples/client.py \
    --user alice --workspace "$ID" --send "Through the passed socket" | tail -n 2
echo "--- units"
printf '%-13s %s\n' relayd.socket "$(systemctl is-active relayd.socket)"
for u in relayd controlplane vmagent; do
    printf '%-13s %s restarts=%s %s\n' "$u" "$(systemctl is-active $u)" \
        "$(systemctl show $u -p NRestarts --value)" "$(systemctl show $u -p StatusText --value)"
done
echo "--- health"
curl -s http://127.0.0.1:8080/healthz; echo
curl -s http://127.0.0.1:9765/healthz; echo
ls -l /run/ffcloud /var/lib/ffcloud-controlplane
echo "--- live security scores"
for u in relayd controlplane vmagent; do systemd-analyze security $u | tail -1; done
EOF
inside <<<'systemctl poweroff' || true
wait $NSPAWN || true
