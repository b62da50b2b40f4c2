#!/usr/bin/env bash
# s3rver (npm, a Node S3 on the filesystem) on loopback, from compat/node_modules.
#
#   compat/s3rver.sh start DIR   wipe DIR, start s3rver on a free 127.0.0.1
#                                port, wait for the first answer, write DIR/env
#   compat/s3rver.sh env DIR     print the SRIBLOB_TEST_S3_* variables
#   compat/s3rver.sh stop DIR    stop it (SIGTERM, then SIGKILL after 10 s)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)

(($# == 2)) || { echo "usage: $0 start|stop|env DIR" >&2; exit 2; }
action=$1
dir=$(realpath -m "$2")

stop() {
    [[ -f $dir/s3rver.pid ]] || return 0
    local pid
    pid=$(<"$dir/s3rver.pid")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$dir/s3rver.pid"
}

start() {
    [[ ! -f $dir/s3rver.pid ]] || stop
    rm -rf "$dir"
    mkdir -p "$dir/data"
    local port endpoint version
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    endpoint=http://127.0.0.1:$port
    # --openssl-legacy-provider: s3rver's ListObjectsV2 continuation tokens
    # use DES, which OpenSSL 3 (Node >= 17) only has in its legacy provider.
    # --service-endpoint localhost: virtual-hosted requests go to
    # <bucket>.s3.localhost (s3rver wants an `s3` label before the endpoint).
    setsid node --openssl-legacy-provider "$here/node_modules/s3rver/bin/s3rver.js" \
        --directory "$dir/data" --address 127.0.0.1 --port "$port" --silent \
        --service-endpoint localhost \
        </dev/null >"$dir/s3rver.log" 2>&1 &
    echo $! >"$dir/s3rver.pid"
    for ((i = 0; i < 300; i++)); do
        curl -s -o /dev/null --max-time 2 "$endpoint" && break
        kill -0 "$(<"$dir/s3rver.pid")" 2>/dev/null || break
        sleep 0.1
    done
    curl -s -o /dev/null --max-time 5 "$endpoint" || {
        echo "s3rver: never answered on $endpoint" >&2
        cat "$dir/s3rver.log" >&2
        exit 1
    }
    version=$(node -p "require('$here/node_modules/s3rver/package.json').version")
    cat >"$dir/env" <<ENV
export SRIBLOB_TEST_S3_TARGET=s3rver
export SRIBLOB_TEST_S3_ENDPOINT=$endpoint
export SRIBLOB_TEST_S3_ACCESS_KEY_ID=S3RVER
export SRIBLOB_TEST_S3_SECRET_ACCESS_KEY=S3RVER
export SRIBLOB_TEST_S3_VERSION="s3rver $version (node $(node --version))"
ENV
    echo "s3rver: $endpoint up ($dir)"
}

case $action in
start)
    trap 'status=$?; ((status == 0)) || stop; exit $status' EXIT
    start
    ;;
stop) stop ;;
env) [[ -f $dir/env ]] && cat "$dir/env" || { echo "s3rver: start it first" >&2; exit 1; } ;;
*) echo "usage: $0 start|stop|env DIR" >&2; exit 2 ;;
esac
