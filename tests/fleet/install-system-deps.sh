#!/usr/bin/env bash
# Debian packages the test suite needs: Prometheus + promtool (metrics backfill), Chromium (real-browser
# tests), openssl (test PKI). Idempotent: installs only what is missing.
set -euo pipefail
need=()
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
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
