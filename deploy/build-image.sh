#!/usr/bin/env bash
# Build the collector image without a container daemon: a Debian bookworm root filesystem (mmdebstrap,
# from Debian's own packages) with python3 and dnsfleet's wheels (CLI runtime only: no streamlit or
# plotly), packed as an OCI image layout by umoci, user 65532, entrypoint dnsfleet. The same contents as
# deploy/Containerfile, on a Debian base instead of the python image (which needs a registry).
#
#   bash deploy/build-image.sh            # prints the OCI layout directory; tag dnsfleet:<version>
#   skopeo copy oci:DIR:dnsfleet:0.1.0 docker://registry.example/dnsfleet:0.1.0   # push it yourself
#
# Needs root (mmdebstrap --mode=root, umoci unpack) and: apt-get install mmdebstrap umoci.
# Cached by a hash of the sources, requirements and this script under ~/.cache/dnsfleet/image/.
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${DNSFLEET_CACHE:-$HOME/.cache/dnsfleet}
PY=${PYTHON:-$HERE/.venv/bin/python}
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' "$HERE/pyproject.toml")
KEY=$(cd "$HERE" && { cat deploy/build-image.sh requirements.txt pyproject.toml; find lib -type f -name '*.py' -o -type f -path '*/data/*' | sort | xargs cat; } | sha256sum | cut -c1-12)
OUT="$CACHE/image/$VERSION-$KEY"
say() { printf '[build-image] %s\n' "$*" >&2; }

if [ -f "$OUT/oci/index.json" ]; then say "cached at $OUT/oci"; echo "$OUT/oci"; exit 0; fi
for tool in mmdebstrap umoci; do
  command -v "$tool" >/dev/null || { say "ERROR: $tool missing: apt-get install -y mmdebstrap umoci"; exit 2; }
done
[ "$(id -u)" = 0 ] || { say "ERROR: run as root (mmdebstrap --mode=root, umoci unpack)"; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
say "wheels (CLI runtime)"
grep -vE '^(streamlit|plotly)==' "$HERE/requirements.txt" > "$work/runtime.txt"
"$PY" -m pip wheel -q --wheel-dir "$work/wheels" -r "$work/runtime.txt"
"$PY" -m pip wheel -q --no-deps --wheel-dir "$work/wheels" "$HERE"

say "root filesystem (Debian bookworm, python3)"
mmdebstrap --quiet --variant=apt --mode=root --format=directory \
  --include=python3,python3-pip,ca-certificates \
  --customize-hook="mkdir -p \"\$1/wheels\" && cp $work/wheels/*.whl \"\$1/wheels/\"" \
  --customize-hook='chroot "$1" sh -c "python3 -m pip install -q --no-index --no-deps --break-system-packages --no-compile /wheels/*.whl" && rm -rf "$1/wheels"' \
  --customize-hook='chroot "$1" python3 -m compileall -q /usr/local/lib/python3.11/dist-packages/dnsfleet' \
  --customize-hook='chroot "$1" python3 -m pip uninstall -q -y --break-system-packages pip || true' \
  --customize-hook='rm -rf "$1/var/cache/apt/"* "$1/var/lib/apt/lists/"*' \
  bookworm "$work/rootfs" "deb http://deb.debian.org/debian bookworm main"

say "OCI layout (umoci)"
mkdir -p "$OUT.tmp"
umoci init --layout "$OUT.tmp/oci"
umoci new --image "$OUT.tmp/oci:dnsfleet:$VERSION"
umoci unpack --image "$OUT.tmp/oci:dnsfleet:$VERSION" "$work/bundle" >/dev/null
rm -rf "$work/bundle/rootfs"
mv "$work/rootfs" "$work/bundle/rootfs"
umoci repack --image "$OUT.tmp/oci:dnsfleet:$VERSION" "$work/bundle"
umoci config --image "$OUT.tmp/oci:dnsfleet:$VERSION" --config.user 65532:65532 \
  --config.entrypoint dnsfleet --config.cmd --help --config.workingdir /tmp \
  --config.env HOME=/tmp --config.env PYTHONDONTWRITEBYTECODE=1 --config.env PYTHONUNBUFFERED=1 \
  --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --config.label "org.opencontainers.image.version=$VERSION" --config.label "org.opencontainers.image.title=dnsfleet"
umoci gc --layout "$OUT.tmp/oci"
rm -rf "$OUT"; mv "$OUT.tmp" "$OUT"
# Every change under lib/ is a new key (~190 MB each): keep this build and the one before it.
ls -1dt "$CACHE"/image/*/ 2>/dev/null | tail -n +3 | xargs -r rm -rf
say "built $OUT/oci (dnsfleet:$VERSION)"
echo "$OUT/oci"
