#!/usr/bin/env bash
# Build the real servers of the test fleet (kube-apiserver, etcd, CoreDNS) from Go modules.
# Idempotent: binaries are cached per version under $DNSFLEET_CACHE/k8s/<version>/ (default
# ~/.cache/dnsfleet, outside any clone so CI's fresh clone reuses them); a second run is a no-op.
# Recipe: ../shared/docs/real-apiserver-recipe.md (wrapper modules with the staging replace list).
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.34.4}
ETCD_VERSION=${ETCD_VERSION:-v3.6.14}
# Every CoreDNS version a fleet cluster's image names (tests/fleet/spec.py; a test keeps them in step).
COREDNS_VERSIONS=${COREDNS_VERSIONS:-v1.8.7 v1.11.1 v1.11.3}
# Older CoreDNS releases pin a golang.org/x/net whose linkname into syscall current Go refuses; raise it
# to this floor (only when lower: never downgrade what a release requires).
XNET_FLOOR=v0.33.0
CACHE=${DNSFLEET_CACHE:-$HOME/.cache/dnsfleet}
HERE=$(cd "$(dirname "$0")" && pwd)
OUT_K8S="$CACHE/k8s/$K8S_VERSION"
OUT_ETCD="$CACHE/etcd/$ETCD_VERSION"
OUT_KUBECTL="$CACHE/kubectl/$K8S_VERSION"  # own dir: an apiserver rebuild replaces $OUT_K8S wholesale
# The S3-compatible server the snapshot-store tests write to (versitygw, Apache-2.0, its posix backend).
VERSITYGW_VERSION=${VERSITYGW_VERSION:-v1.8.0}
OUT_VERSITYGW="$CACHE/versitygw/$VERSITYGW_VERSION"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod

say() { printf '[test-fleet build] %s\n' "$*" >&2; }

if ! command -v go >/dev/null 2>&1; then
  say "ERROR: 'go' is not on PATH. Install Go >= 1.24 (this project builds kube-apiserver and etcd from source)."
  exit 2
fi

build_apiserver() {
  if [ -x "$OUT_K8S/kube-apiserver" ] && "$OUT_K8S/kube-apiserver" --version 2>/dev/null | grep -q "$K8S_VERSION"; then
    say "kube-apiserver $K8S_VERSION cached at $OUT_K8S"; return
  fi
  say "building kube-apiserver $K8S_VERSION (cold build takes several minutes)"
  local work; work=$(mktemp -d)
  cp "$HERE/go/kube-apiserver/go.mod" "$work/go.mod"
  [ -f "$HERE/go/kube-apiserver/go.sum" ] && cp "$HERE/go/kube-apiserver/go.sum" "$work/go.sum"
  (
    cd "$work"
    if ! go mod download -x k8s.io/kubernetes@"$K8S_VERSION" >/dev/null 2>"$work/dl.log"; then
      say "ERROR: the Go module proxy did not serve k8s.io/kubernetes@$K8S_VERSION ($(go env GOPROXY)):"
      tail -5 "$work/dl.log" >&2; exit 3
    fi
    go get k8s.io/kubernetes/cmd/kube-apiserver@"$K8S_VERSION"
    local minor; minor=$(echo "$K8S_VERSION" | cut -d. -f2)
    local ld="-s -w" pkg
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ld="$ld -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
    done
    mkdir -p "$OUT_K8S.tmp"
    go build -trimpath -ldflags "$ld" -o "$OUT_K8S.tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
  )
  rm -rf "$work" "$OUT_K8S"; mv "$OUT_K8S.tmp" "$OUT_K8S"
  say "kube-apiserver: $("$OUT_K8S/kube-apiserver" --version)"
}

build_etcd() {
  if [ -x "$OUT_ETCD/etcd" ]; then say "etcd $ETCD_VERSION cached at $OUT_ETCD"; return; fi
  say "building etcd $ETCD_VERSION"
  local work; work=$(mktemp -d)
  cp "$HERE/go/etcd/go.mod" "$HERE/go/etcd/main.go" "$work/"
  (
    cd "$work"
    go get go.etcd.io/etcd/server/v3@"$ETCD_VERSION"
    go mod tidy
    mkdir -p "$OUT_ETCD.tmp"
    go build -trimpath -ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$ETCD_VERSION" -o "$OUT_ETCD.tmp/etcd" .
  )
  rm -rf "$work" "$OUT_ETCD"; mv "$OUT_ETCD.tmp" "$OUT_ETCD"
  say "etcd: $("$OUT_ETCD/etcd" --version | head -1)"
}

# kubectl for the benchmarks (bench/): same wrapper module and replace list as kube-apiserver, so it is
# exactly the client of the server version under test. Not part of `all` (the tests never need it).
build_kubectl() {
  if [ -x "$OUT_KUBECTL/kubectl" ] && "$OUT_KUBECTL/kubectl" version --client 2>/dev/null | grep -q "$K8S_VERSION"; then
    say "kubectl $K8S_VERSION cached at $OUT_KUBECTL"; return
  fi
  say "building kubectl $K8S_VERSION"
  local work; work=$(mktemp -d)
  cp "$HERE/go/kube-apiserver/go.mod" "$work/go.mod"
  (
    cd "$work"
    go get k8s.io/kubernetes/cmd/kubectl@"$K8S_VERSION"
    local minor; minor=$(echo "$K8S_VERSION" | cut -d. -f2)
    local ld="-s -w" pkg
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ld="$ld -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
    done
    mkdir -p "$OUT_KUBECTL.tmp"
    go build -trimpath -ldflags "$ld" -o "$OUT_KUBECTL.tmp/kubectl" k8s.io/kubernetes/cmd/kubectl
  )
  rm -rf "$work" "$OUT_KUBECTL"; mv "$OUT_KUBECTL.tmp" "$OUT_KUBECTL"
  say "kubectl: $("$OUT_KUBECTL/kubectl" version --client 2>&1 | head -1)"
}

# CoreDNS with the few plugins the fleet's Corefiles use (tests/fleet/go/coredns/main.go), one binary per
# version so each CoreDNS pod serves the exposition of the release its image names.
build_coredns() {
  local v=$1 out="$CACHE/coredns/$1"
  if [ -x "$out/coredns" ] && "$out/coredns" -version 2>/dev/null | grep -q "CoreDNS-${v#v}\$"; then
    say "coredns $v cached at $out"; return
  fi
  say "building coredns $v"
  local work; work=$(mktemp -d)
  cp "$HERE/go/coredns/go.mod" "$HERE/go/coredns/main.go" "$work/"
  (
    cd "$work"
    go get github.com/coredns/coredns@"$v"
    local xnet; xnet=$(go list -m -f '{{.Version}}' golang.org/x/net)
    if [ "$(printf '%s\n%s\n' "$xnet" "$XNET_FLOOR" | sort -V | head -1)" != "$XNET_FLOOR" ]; then
      go get golang.org/x/net@"$XNET_FLOOR"
    fi
    go mod tidy
    mkdir -p "$out.tmp"
    go build -trimpath -ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$v" -o "$out.tmp/coredns" .
  )
  rm -rf "$work" "$out"; mv "$out.tmp" "$out"
  say "coredns: $("$out/coredns" -version | head -1)"
}

# versitygw: a real S3 gateway (SigV4, conditional writes, list v2) serving a local directory; the store
# tests (tests/store_server.py) start it on 127.0.0.1. Its own go.mod, built as released.
build_versitygw() {
  if [ -x "$OUT_VERSITYGW/versitygw" ] && "$OUT_VERSITYGW/versitygw" --version 2>/dev/null | grep -q "${VERSITYGW_VERSION#v}"; then
    say "versitygw $VERSITYGW_VERSION cached at $OUT_VERSITYGW"; return
  fi
  say "building versitygw $VERSITYGW_VERSION"
  local work; work=$(mktemp -d)
  (
    cd "$work"
    GOFLAGS= go mod download -x github.com/versity/versitygw@"$VERSITYGW_VERSION" >/dev/null 2>"$work/dl.log" || {
      say "ERROR: the Go module proxy did not serve github.com/versity/versitygw@$VERSITYGW_VERSION"; tail -5 "$work/dl.log" >&2; exit 3; }
    src=$(GOFLAGS= go mod download -json github.com/versity/versitygw@"$VERSITYGW_VERSION" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
    cd "$src"
    mkdir -p "$OUT_VERSITYGW.tmp"
    GOFLAGS=-mod=readonly go build -trimpath \
      -ldflags "-s -w -X main.Version=$VERSITYGW_VERSION -X main.Build=dnsfleet -X main.BuildTime=0" \
      -o "$OUT_VERSITYGW.tmp/versitygw" ./cmd/versitygw
  )
  rm -rf "$work" "$OUT_VERSITYGW"; mv "$OUT_VERSITYGW.tmp" "$OUT_VERSITYGW"
  say "versitygw: $("$OUT_VERSITYGW/versitygw" --version 2>&1 | head -1)"
}

build_corednses() { local v; for v in $COREDNS_VERSIONS; do build_coredns "$v"; done; }

case "${1:-all}" in
  apiserver) build_apiserver ;;
  etcd) build_etcd ;;
  kubectl) build_kubectl ;;
  print-kubectl) echo "$OUT_KUBECTL/kubectl" ;;
  coredns) build_corednses ;;
  versitygw) build_versitygw ;;
  print-versitygw) echo "$OUT_VERSITYGW/versitygw" ;;
  all) build_etcd; build_apiserver; build_corednses; build_versitygw ;;
  print-dirs) echo "$OUT_K8S $OUT_ETCD" ;;
  print-coredns) echo "$CACHE/coredns $COREDNS_VERSIONS" ;;
  *) say "usage: $0 [all|apiserver|etcd|coredns|kubectl|versitygw|print-dirs|print-coredns|print-kubectl|print-versitygw]"; exit 2 ;;
esac
