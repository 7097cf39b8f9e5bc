#!/usr/bin/env bash
# Ceph RGW for the object-storage tests (tests/objectstores.py): Debian packages, installed once.
set -euo pipefail
PACKAGES=(radosgw ceph-mon ceph-osd)
if command -v radosgw >/dev/null && command -v ceph-mon >/dev/null && command -v ceph-osd >/dev/null; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "the tests start a Ceph RGW; install it first: sudo apt-get install -y --no-install-recommends ${PACKAGES[*]}" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" \
    || { apt-get update -q && apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"; }
