#!/usr/bin/env bash
# Installs what `nox -s compat` needs, idempotently, from the project's own
# files: Ceph (mon, OSD, radosgw), and Node, npm and curl where missing, from
# Debian's packages; s3rver and Bun from compat/package-lock.json into
# compat/node_modules (never globally). moto comes with the tests group.
set -euo pipefail
cd "$(dirname "$0")"

packages=()
command -v radosgw >/dev/null 2>&1 ||
    packages+=(ceph-mon ceph-osd ceph-mgr radosgw ceph-common)
command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)
command -v curl >/dev/null 2>&1 || packages+=(curl)
if ((${#packages[@]})); then
    echo "compat: installing ${packages[*]} from Debian's packages"
    sudo=()
    ((EUID == 0)) || sudo=(sudo)
    export DEBIAN_FRONTEND=noninteractive
    timeout 600 "${sudo[@]}" apt-get update -qq
    timeout 900 "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
        "${packages[@]}" >/dev/null
fi

if [[ ! -x node_modules/.bin/bun || ! -f node_modules/s3rver/package.json ]]; then
    echo "compat: installing s3rver and bun into compat/node_modules"
    # npm ci: exactly the committed lock file; bun's postinstall puts its
    # binary (shipped in the npm package) under node_modules/.bin.
    timeout 600 npm ci --no-audit --no-fund --loglevel=error
fi

radosgw --version | head -n 1
node --version
echo "s3rver $(node -p 'require("./node_modules/s3rver/package.json").version')"
echo "bun $(node_modules/.bin/bun --version)"
