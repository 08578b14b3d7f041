#!/usr/bin/env bash
# A throw-away one-node Ceph cluster on 127.0.0.1: mon, mgr, a RAM-backed (memstore)
# OSD and radosgw (S3), for development and tests. Nothing listens beyond loopback.
#
#   scripts/ceph-dev.sh start     install the Debian packages if missing (root), start the
#                                 daemons on free ports, create a pool and an S3 user
#   scripts/ceph-dev.sh stop      stop exactly the daemons this script started (by pid) and
#                                 remove the run directory
#   scripts/ceph-dev.sh status    which daemons run, where, on which ports
#   scripts/ceph-dev.sh env       the environment a client needs, S3 key included:
#                                 eval "$(scripts/ceph-dev.sh env)"  (never log it)
#
# Each checkout has its own cluster: the run directory is ${TMPDIR:-/tmp}/dosna-ceph-<id>,
# <id> a hash of the checkout's path, and the monitor and radosgw take free ports, so two
# checkouts (or two CI runs) on one machine never share a cluster. The run directory is
# readable by its owner only; the S3 key and secret are written nowhere else.
# Environment: DOSNA_CEPH_RUN (run directory), DOSNA_CEPH_POOL (default dosna),
# DOSNA_CEPH_MON_PORT, DOSNA_CEPH_MON_V1_PORT, DOSNA_RGW_PORT (fixed ports instead of free
# ones), DOSNA_CEPH_MEMSTORE_BYTES (OSD capacity, default 4 GiB).
set -euo pipefail
umask 077   # keyrings, the config and the env file (S3 secret) are for this user only

TOP=$(cd "$(dirname "$0")/.." && pwd -P)
RUN=${DOSNA_CEPH_RUN:-${TMPDIR:-/tmp}/dosna-ceph-$(printf %s "$TOP" | sha256sum | cut -c1-10)}
CONF=$RUN/ceph.conf
MARK=$RUN/.dosna-ceph-run   # what makes a directory one of ours (and safe to remove)
POOL=${DOSNA_CEPH_POOL:-dosna}
MEMSTORE_BYTES=${DOSNA_CEPH_MEMSTORE_BYTES:-4294967296}
DAEMONS="rgw.x mgr.x osd.0 mon.a"   # stop order
PACKAGES="ceph-mon ceph-osd ceph-mgr radosgw python3-rados ceph-common"

log() { echo "ceph-dev: $*" >&2; }
die() { log "$*"; exit 1; }
ceph_cli() { timeout 30 ceph -c "$CONF" --connect-timeout 10 "$@"; }

install_packages() {
    local missing=0 cmd
    for cmd in ceph-mon ceph-osd ceph-mgr radosgw ceph-authtool monmaptool; do
        command -v "$cmd" >/dev/null 2>&1 || missing=1
    done
    [ -f /usr/lib/python3/dist-packages/rados.cpython-311-x86_64-linux-gnu.so ] || missing=1
    [ "$missing" = 0 ] && return 0
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        log "Ceph packages are missing and cannot be installed here (needs root and apt-get): $PACKAGES"
        exit 3
    fi
    log "installing $PACKAGES"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    # postinst scripts complain that there is no systemd; nothing auto-starts, which is what we want
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $PACKAGES >/dev/null
}

pid_of() {  # the pid in a daemon's pid file, if that process still runs with our config
    local file=$RUN/$1.pid pid
    [ -f "$file" ] || return 1
    pid=$(cat "$file")
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q -- "$CONF" || return 1
    echo "$pid"
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_ports() {  # free_ports N: N distinct TCP ports on 127.0.0.1 that nothing uses now
    python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"
}

mon_addr() { echo "[v2:127.0.0.1:$MON_PORT,v1:127.0.0.1:$MON_V1_PORT]"; }

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local limit=$1 what=$2 waited=0
    shift 2
    until "$@" >/dev/null 2>&1; do
        sleep 0.5
        waited=$((waited + 1))
        if [ "$waited" -ge $((limit * 2)) ]; then
            die "timed out after ${limit}s waiting for $what (logs in $RUN)"
        fi
    done
    return 0
}

write_conf() {
    local fsid=$1
    cat > "$CONF" <<EOF
[global]
fsid = $fsid
mon host = $(mon_addr)
mon initial members = a
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv6 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
keyring = $RUN/\$cluster.\$name.keyring
run dir = $RUN
admin socket = $RUN/\$name.asok
log file = $RUN/\$name.log
pid file = $RUN/\$id.pid.tmp
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon max pg per osd = 1000
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon data avail warn = 2
mon data avail crit = 1
mgr initial modules = iostat
paxos propose interval = 0.1

[mon]
mon data = $RUN/mon.\$id
pid file = $RUN/mon.\$id.pid
keyring = $RUN/mon.\$id/keyring

[mgr]
mgr data = $RUN/mgr.\$id
pid file = $RUN/mgr.\$id.pid

[osd]
osd data = $RUN/osd.\$id
osd objectstore = memstore
memstore device bytes = $MEMSTORE_BYTES
pid file = $RUN/osd.\$id.pid

[client]
admin socket =
log file =
pid file =

[client.rgw.x]
rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT
rgw thread pool size = 64
rgw data = $RUN/rgw.x
admin socket = $RUN/rgw.x.asok
log file = $RUN/rgw.x.log
pid file = $RUN/rgw.x.pid
EOF
}

write_env() {
    cat > "$RUN/env" <<EOF
export DOSNA_CEPH_CONF=$CONF
export DOSNA_CEPH_POOL=$POOL
export DOSNA_S3_ENDPOINT=http://127.0.0.1:$RGW_PORT
export DOSNA_S3_BUCKET=dosna-test
export AWS_ACCESS_KEY_ID=$1
export AWS_SECRET_ACCESS_KEY=$2
export AWS_DEFAULT_REGION=us-east-1
EOF
    chmod 600 "$RUN/env"
}

status() {
    local d up=0
    echo "run directory $RUN: $(cat "$RUN/ports" 2>/dev/null || echo "no cluster")"
    for d in $DAEMONS; do
        if pid=$(pid_of "$d"); then echo "$d running (pid $pid)"; up=$((up + 1)); else echo "$d stopped"; fi
    done
    [ "$up" = 4 ]
}

stop() {
    local d pid i alive=0
    for d in $DAEMONS; do   # one at a time: stopping all at once can make radosgw hang
        pid=$(pid_of "$d") || continue
        kill -TERM "$pid" 2>/dev/null || true
        for i in $(seq 1 40); do [ -d "/proc/$pid" ] || break; sleep 0.25; done
        if [ -d "/proc/$pid" ]; then
            kill -KILL "$pid" 2>/dev/null || true
            for i in $(seq 1 20); do [ -d "/proc/$pid" ] || break; sleep 0.25; done
        fi
        if [ -d "/proc/$pid" ]; then
            log "$d (pid $pid) did not stop"; alive=1
        else
            rm -f "$RUN/$d.pid"
            log "stopped $d (pid $pid)"
        fi
    done
    [ "$alive" = 0 ] || die "left $RUN in place: a daemon still runs"
    if [ -f "$MARK" ]; then
        rm -rf "$RUN"
        log "removed $RUN"
    fi
}

start() {
    install_packages
    if status >/dev/null 2>&1; then
        log "already running in $RUN: $(cat "$RUN/ports" 2>/dev/null)"
        return 0
    fi
    stop 2>/dev/null || true
    if [ -e "$RUN" ]; then
        [ -f "$MARK" ] || die "$RUN exists and is not a run directory of this script: not touching it"
        rm -rf "$RUN"
    fi
    local free
    read -r -a free <<< "$(free_ports 3)"
    MON_PORT=${DOSNA_CEPH_MON_PORT:-${free[0]}}
    MON_V1_PORT=${DOSNA_CEPH_MON_V1_PORT:-${free[1]}}
    RGW_PORT=${DOSNA_RGW_PORT:-${free[2]}}
    for port in "$MON_PORT" "$MON_V1_PORT" "$RGW_PORT"; do
        port_busy "$port" && die "port $port on 127.0.0.1 is in use (choose another with DOSNA_CEPH_MON_PORT, DOSNA_CEPH_MON_V1_PORT, DOSNA_RGW_PORT)"
    done
    mkdir -p -m 700 "$RUN"
    touch "$MARK"
    mkdir "$RUN/mon.a" "$RUN/mgr.x" "$RUN/osd.0" "$RUN/rgw.x"
    local fsid osd_uuid osd_secret access secret
    fsid=$(cat /proc/sys/kernel/random/uuid)
    write_conf "$fsid"

    ceph-authtool --create-keyring "$RUN/ceph.mon..keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
    ceph-authtool --create-keyring "$RUN/ceph.client.admin.keyring" --gen-key -n client.admin \
        --cap mon 'allow *' --cap osd 'allow *' --cap mds 'allow *' --cap mgr 'allow *' >/dev/null
    ceph-authtool "$RUN/ceph.mon..keyring" --import-keyring "$RUN/ceph.client.admin.keyring" >/dev/null
    monmaptool --create --addv a "$(mon_addr)" --fsid "$fsid" "$RUN/monmap" >/dev/null
    ceph-mon -c "$CONF" --mkfs -i a --monmap "$RUN/monmap" --keyring "$RUN/ceph.mon..keyring"
    ceph-mon -c "$CONF" -i a
    wait_for 30 "the monitor" ceph_cli mon stat

    ceph_cli auth get-or-create mgr.x mon 'allow profile mgr' osd 'allow *' mds 'allow *' \
        -o "$RUN/ceph.mgr.x.keyring"
    ceph-mgr -c "$CONF" -i x

    osd_uuid=$(cat /proc/sys/kernel/random/uuid)
    osd_secret=$(ceph-authtool --gen-print-key)
    echo "{\"cephx_secret\": \"$osd_secret\"}" | ceph_cli osd new "$osd_uuid" -i - >/dev/null
    ceph-authtool --create-keyring "$RUN/ceph.osd.0.keyring" --name osd.0 --add-key "$osd_secret" >/dev/null
    ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$osd_uuid" >/dev/null 2>&1
    ceph-osd -c "$CONF" -i 0
    wait_for 60 "the OSD" sh -c "ceph -c '$CONF' --connect-timeout 10 osd stat -f json | grep -q '\"num_up_osds\":1'"

    ceph_cli osd pool create "$POOL" 8 8 >/dev/null 2>&1
    ceph_cli osd pool application enable "$POOL" rados >/dev/null 2>&1
    wait_for 60 "the pool to become active" timeout 10 rados -c "$CONF" -p "$POOL" put dosna-ready /dev/null

    ceph_cli auth get-or-create client.rgw.x mon 'allow rw' osd 'allow rwx' mgr 'allow rw' \
        -o "$RUN/ceph.client.rgw.x.keyring"
    radosgw -c "$CONF" -n client.rgw.x
    access="DOSNA$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' | tr a-f A-F)"
    secret=$(head -c 30 /dev/urandom | base64 | tr -d '/+=\n')
    wait_for 60 "radosgw" sh -c "curl -sf http://127.0.0.1:$RGW_PORT/ | grep -q ListAllMyBucketsResult"
    timeout 60 radosgw-admin -c "$CONF" user create --uid=dosna --display-name=dosna \
        --access-key="$access" --secret-key="$secret" >/dev/null
    write_env "$access" "$secret"
    for d in $DAEMONS; do pid_of "$d" >/dev/null || die "$d did not stay up (logs in $RUN)"; done
    echo "monitor $(mon_addr), S3 http://127.0.0.1:$RGW_PORT" > "$RUN/ports"
    log "running in $RUN: pool '$POOL', monitor $(mon_addr), S3 at http://127.0.0.1:$RGW_PORT"
    log "client environment (S3 key included): eval \"\$(scripts/ceph-dev.sh env)\""
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    env) [ -f "$RUN/env" ] && cat "$RUN/env" || die "no cluster in $RUN (scripts/ceph-dev.sh start)" ;;
    *) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 2 ;;
esac
