#!/usr/bin/env bash
# The servers the tests start, from Debian, installed once: Ceph RGW for the object-storage tests
# (tests/objectstores.py), redis-server for the crawls shared through Redis (tests/redis_server.py),
# and chromium, the headless browser that looks at the dataset card (tests/test_archive_tools.py).
set -euo pipefail
PACKAGES=(radosgw ceph-mon ceph-osd redis-server chromium)
if command -v radosgw >/dev/null && command -v ceph-mon >/dev/null && command -v ceph-osd >/dev/null \
    && command -v redis-server >/dev/null && command -v chromium >/dev/null; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "the tests start a Ceph RGW and Redis, and look at a page with chromium; install them first: sudo apt-get install -y --no-install-recommends ${PACKAGES[*]}" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" \
    || { apt-get update -q && apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"; }
