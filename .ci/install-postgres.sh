#!/bin/sh
# Make the PostgreSQL server binaries (initdb, pg_ctl) available to the tests,
# which start a throwaway cluster themselves (tests/postgres_server.py).
# Idempotent: does nothing when initdb is already found. Debian/Ubuntu only.
set -eu

found=""
for candidate in /usr/lib/postgresql/*/bin/initdb; do
    [ -x "$candidate" ] && found="$candidate"
done
if [ -z "$found" ] && command -v initdb >/dev/null 2>&1; then
    found="$(command -v initdb)"
fi

if [ -n "$found" ]; then
    echo "install-postgres: found $found; nothing to install"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    sudo=""
else
    sudo="sudo"
fi
echo "install-postgres: installing Debian's postgresql package"
$sudo apt-get update
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends postgresql
