#!/usr/bin/env bash
# Debian packages the test suite needs: Prometheus + promtool (metrics backfill), Chromium (real-browser
# tests), openssl (test PKI), and for the race lab (tests/lab/): iproute2 + iptables (namespaces, DNAT,
# NFQUEUE) and musl-tools + gcc (the musl lookup program is built at test time); mmdebstrap + umoci
# (the collector image, deploy/build-image.sh). Idempotent: installs only
# what is missing.
set -euo pipefail
need=()
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
command -v gcc >/dev/null 2>&1 || need+=(gcc)
command -v musl-gcc >/dev/null 2>&1 || need+=(musl-tools)
# the collector image is built without a daemon (deploy/build-image.sh, tests/test_image.py)
command -v mmdebstrap >/dev/null 2>&1 || need+=(mmdebstrap)
command -v umoci >/dev/null 2>&1 || need+=(umoci)
if [ ${#need[@]} -eq 0 ]; then echo "[system-deps] all present"; exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "[system-deps] ERROR: missing ${need[*]}; run as root or: sudo apt-get install -y --no-install-recommends ${need[*]}" >&2
  exit 2
fi
echo "[system-deps] installing: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "[system-deps] done"
