#!/bin/sh
# Make the Prometheus server binary available to the tests, which start a
# throwaway server themselves (tests/prometheus_server.py) to scrape
# `sriblob serve`'s /metrics.
# Idempotent: does nothing when prometheus is already found. Debian/Ubuntu only.
set -eu

if command -v prometheus >/dev/null 2>&1; then
    echo "install-prometheus: found $(command -v prometheus); nothing to install"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    sudo=""
else
    sudo="sudo"
fi
echo "install-prometheus: installing Debian's prometheus package"
$sudo apt-get update
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends prometheus
