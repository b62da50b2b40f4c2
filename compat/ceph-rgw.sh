#!/usr/bin/env bash
# A throwaway single-node Ceph cluster with an S3 gateway, on loopback:
# one mon, one OSD on the in-memory memstore, radosgw (beast) on 127.0.0.1.
#
#   compat/ceph-rgw.sh start DIR   wipe DIR, bootstrap, create an S3 user,
#                                  wait for the first HTTP answer, write DIR/env
#   compat/ceph-rgw.sh env DIR     print the SRIBLOB_TEST_S3_* variables
#   compat/ceph-rgw.sh stop DIR    stop radosgw, then the OSD, then the mon
#
# Installs nothing (compat/install.sh does). Everything lives under DIR and
# every call gets `-c DIR/ceph.conf`, so /etc/ceph and /var/lib/ceph are never
# touched. Settings and pitfalls: ../shared/CEPH-RGW.md.
set -euo pipefail

ACCESS_KEY=sriblob-compat
SECRET_KEY=sriblob-compat-secret

usage() {
    echo "usage: $0 start|stop|env DIR" >&2
    exit 2
}

(($# == 2)) || usage
action=$1
dir=$(realpath -m "$2")
conf=$dir/ceph.conf

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

ceph_() {
    timeout 60 ceph -c "$conf" --connect-timeout 30 "$@"
}

# Stop the daemon whose pid file is $1: SIGTERM, up to $2 seconds, then SIGKILL.
stop_daemon() {
    local pidfile=$1 grace=$2 pid
    [[ -f $pidfile ]] || return 0
    pid=$(<"$pidfile")
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < grace * 10; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "ceph-rgw: $(basename "$pidfile" .pid) ignored SIGTERM for ${grace}s; killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$pidfile"
}

stop() {
    # radosgw first: once the mon is gone it may ignore SIGTERM.
    stop_daemon "$dir/run/client.rgw.a.pid" 15
    for pidfile in "$dir"/run/osd.*.pid; do
        [[ -e $pidfile ]] && stop_daemon "$pidfile" 15
    done
    stop_daemon "$dir/run/mon.a.pid" 15
}

print_env() {
    [[ -f $dir/env ]] || { echo "ceph-rgw: $dir/env missing; start it first" >&2; exit 1; }
    cat "$dir/env"
}

start() {
    [[ ! -f $dir/run/mon.a.pid ]] || stop
    rm -rf "$dir"
    mkdir -p "$dir"/{run,log,mon,osd,rgw,crash}
    local fsid mon_port rgw_port osd_uuid osd_id
    fsid=$(</proc/sys/kernel/random/uuid)
    mon_port=$(free_port)
    rgw_port=$(free_port)

    cat >"$conf" <<CONF
[global]
fsid = $fsid
mon_host = v2:127.0.0.1:$mon_port
ms_bind_msgr1 = false
public_addr = 127.0.0.1
cluster_addr = 127.0.0.1
# No cephx: a throwaway cluster on loopback. radosgw's default
# ms_mon_client_mode (secure) can't work without it and hangs 300 s.
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
ms_mon_client_mode = crc secure
run_dir = $dir/run
admin_socket = $dir/run/\$name.asok
pid_file = $dir/run/\$name.pid
log_file = $dir/log/\$name.log
crash_dir = $dir/crash
keyring = $dir/keyring
# One OSD: pools of size 1, few PGs (8 RGW pools x 32 PGs would exceed 250).
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_crush_chooseleaf_type = 0
mon_allow_pool_size_one = true
mon_max_pg_per_osd = 1000
mon_data_avail_warn = 10
mon_warn_on_pool_no_redundancy = false

[mon]
mon_data = $dir/mon/\$name

[osd]
osd_data = $dir/osd/\$name
osd_objectstore = memstore
memstore_device_bytes = 8589934592
osd_fast_shutdown = false

[client.rgw.a]
rgw_data = $dir/rgw
rgw_frontends = beast endpoint=127.0.0.1:$rgw_port
# Virtual-hosted requests to <bucket>.localhost.
rgw_dns_name = localhost
# Free overwritten tails after 5 minutes, not 2 hours (memstore is RAM).
rgw_gc_obj_min_wait = 300
CONF

    local t0=$SECONDS
    timeout 60 monmaptool --create --clobber --fsid "$fsid" \
        --addv a "[v2:127.0.0.1:$mon_port]" "$dir/monmap" >/dev/null
    timeout 60 ceph-mon -c "$conf" --mkfs -i a --monmap "$dir/monmap"
    timeout 60 ceph-mon -c "$conf" -i a
    ceph_ status >/dev/null

    osd_uuid=$(</proc/sys/kernel/random/uuid)
    osd_id=$(ceph_ osd new "$osd_uuid")
    mkdir -p "$dir/osd/osd.$osd_id"
    timeout 120 ceph-osd -c "$conf" -i "$osd_id" --mkfs --osd-uuid "$osd_uuid" 2>>"$dir/log/mkfs.log"
    timeout 60 ceph-osd -c "$conf" -i "$osd_id" 2>>"$dir/log/daemons.log"
    for ((i = 0; i < 600; i++)); do
        ceph_ osd dump 2>/dev/null | grep -q "^osd.$osd_id up" && break
        sleep 0.1
    done
    ceph_ osd dump | grep -q "^osd.$osd_id up" || { echo "ceph-rgw: osd.$osd_id never came up" >&2; exit 1; }

    timeout 60 radosgw -c "$conf" -n client.rgw.a 2>>"$dir/log/daemons.log"
    local endpoint=http://127.0.0.1:$rgw_port
    # radosgw creates its pools before it answers: ~9 s here.
    for ((i = 0; i < 1200; i++)); do
        curl -s -o /dev/null --max-time 2 "$endpoint" && break
        sleep 0.1
    done
    curl -s -o /dev/null --max-time 5 "$endpoint" || { echo "ceph-rgw: radosgw never answered on $endpoint" >&2; exit 1; }

    # As client.admin: radosgw-admin as client.rgw.a would fight the
    # gateway for its admin socket.
    timeout 120 radosgw-admin -c "$conf" user create \
        --uid=sriblob --display-name=sriblob \
        --access-key="$ACCESS_KEY" --secret="$SECRET_KEY" >/dev/null

    cat >"$dir/env" <<ENV
export SRIBLOB_TEST_S3_TARGET=ceph
export SRIBLOB_TEST_S3_ENDPOINT=$endpoint
export SRIBLOB_TEST_S3_ACCESS_KEY_ID=$ACCESS_KEY
export SRIBLOB_TEST_S3_SECRET_ACCESS_KEY=$SECRET_KEY
export SRIBLOB_TEST_S3_VERSION="$(radosgw --version | head -n 1 | cut -d' ' -f1-3)"
ENV
    echo "ceph-rgw: $endpoint up in $((SECONDS - t0)) s ($dir)"
}

case $action in
start)
    # A failed start leaves nothing running.
    trap 'status=$?; ((status == 0)) || stop; exit $status' EXIT
    start
    ;;
stop) stop ;;
env) print_env ;;
*) usage ;;
esac
