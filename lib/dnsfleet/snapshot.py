"""The fleet snapshot: a versioned JSON (optionally gzip) file holding, per cluster, the projected subset
of API objects and metrics the engine needs. ``docs/snapshot.md`` documents it field by field.

Only what the rules read is stored: no Secrets, no env values, no ConfigMap data other than the
kube-proxy mode, cilium-config's load-balancer keys, a NodeLocal link-local IP and, of the CoreDNS
Corefile, its plugin names and cluster domain (``dnsfleet.corefile``; never the text: it can hold
credentials); other ConfigMaps: names and keys only. Container flag names but not their values (except
node-cache's ``-localip``), and of annotations only ``dnsfleet.io/resolver``. The collector records
facts; ``dnsfleet.rules.path`` decides from them. Every field's type is checked on load against
``dnsfleet.snapshot_schema``.

Top level::

    {"format": "dnsfleet.snapshot", "schema_version": 1, "tool_version": "0.1.0",
     "generated_at": "2026-11-25T20:00:00Z", "source": "live" | "demo" | "file",
     "clusters": [Cluster, ...]}

Cluster::

    {"name": str, "status": "ok" | "partial" | "failed", "reason": str | null,
     "missing": [resource, ...], "server_version": str | null, "collected_at": iso | null,
     "provider": str | null,
     "nodes": [{"name", "labels": {subset}, "kernel_version", "os_image", "container_runtime",
                "kubelet_version", "ready": bool | null}],
     "pods": [{"namespace", "name", "node": str | null, "owner_kind": str | null, "owner_name": str | null,
               "phase", "host_network": bool, "dns_policy": str | null,
               "dns_config": {"nameservers": [...], "searches": [...],
                              "options": [{"name": str, "value": str | null}]} | null,
               "images": [str, ...], "resolver_annotation": str | null}],
     "owners": {"ReplicaSet": {"ns/name": ["Deployment", "name"]}, "Job": {"ns/name": ["CronJob", "name"]}},
     "dns": {"service_ip": str | null, "ready_endpoints": int | null, "coredns_version": str | null,
             "coredns_replicas": int | null, "kube_proxy_mode": str | null,
             "corefile_facts": {"plugins": [plugin names], "cluster_domain": str | null} | null,
             "kube_proxy_present": bool | null, "service_ip_families": ["IPv4" | "IPv6", ...] | null,
             "daemonsets": [kube-system DaemonSet names] | null,
             "daemonset_facts": [{"name", "labels": {..}, "images": [..], "flags": [flag names],
                                  "localip": str | null, "configmaps": [..],
                                  "ready_nodes": [node, ...] | null}] | null,
             "configmap_facts": {name: {"keys": [..], "link_local": str | null}} | null,
             "cilium_config": {"kube-proxy-replacement": .., "bpf-lb-sock": .., "bpf-lb-sock-hostns-only": ..}
                              | null,
             "calico_bpf": bool | null,
             # written by older collectors, still read: "nodelocal_ip", "nodelocal_nodes", "nfqueue_agent",
             # "corefile" (the whole text: replaced by corefile_facts on load)
            },
     "metrics": {"source": "prometheus" | "scrape" | "demo" | null, "window_s": float | null, "note": str | null,
                 "coredns": {"qps": .., "p50_ms": .., "p99_ms": .., "share_over_1s": .., "servfail_share": ..,
                             "nxdomain_share": .., "forward_p99_ms": .., "version": str | null} | null,
                 "coredns_series": {"start": epoch_s, "step": s, "metrics": {name: [value | null, ...]}} | null,
                 "conntrack": {"reason": str | null, "start": epoch_s, "step": s,
                               "nodes": {node: {"insert_failed_increase": .., "drop_increase": ..,
                                                "entries": .., "entries_limit": ..,
                                                "insert_failed_rate": [value | null, ...]}}} | null}}

Unknown values are ``null`` (never 0 or false). A missing key reads as unknown too.
"""

from __future__ import annotations

import gzip
import io
import os
import zlib
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from dnsfleet import __version__, corefile, snapshot_schema

FORMAT = "dnsfleet.snapshot"
RESOLVER_ANNOTATION = "dnsfleet.io/resolver"  # the one pod annotation a snapshot keeps
SCHEMA_VERSION = 1
# Uncompressed size cap for a snapshot (a 100,000-pod snapshot is ~35 MB); DNSFLEET_SNAPSHOT_MAX_MB
# overrides it. Checked while unpacking, so a gzip bomb stops at the cap.
MAX_BYTES = 128 * 1024 * 1024
MAX_DEPTH = 32
MAX_STRING = 1 << 20  # a single string longer than 1 MiB is hostile, not a kernel version


class SnapshotError(ValueError):
    """A snapshot that cannot be used. ``str(err)`` is one line naming the problem."""


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_snapshot(clusters: Iterable[dict[str, Any]], source: str) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "tool_version": __version__,
        "generated_at": now_iso(),
        "source": source,
        "clusters": list(clusters),
    }


def dumps(snapshot: dict[str, Any], compress: bool = True) -> bytes:
    raw = orjson.dumps(snapshot)
    return gzip.compress(raw, compresslevel=6, mtime=0) if compress else raw


def save(snapshot: dict[str, Any], path: str | Path) -> Path:
    """Write the snapshot; gzip when the name ends in .gz. Written to a temp file then renamed."""
    path = Path(path)
    data = dumps(snapshot, compress=path.suffix == ".gz")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


def load(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SnapshotError(f"snapshot file not found: {path}") from None
    except OSError as e:
        raise SnapshotError(f"cannot read snapshot {path}: {e.strerror}") from None
    return loads(data, name=path.name)


def loads(data: bytes, name: str = "snapshot") -> dict[str, Any]:
    """Parse and validate snapshot bytes (gzip or plain JSON). Raises SnapshotError with one line."""
    if data[:2] == b"\x1f\x8b":
        try:
            data = _gunzip_capped(data, name)
        except (OSError, EOFError, zlib.error):
            raise SnapshotError(f"{name}: not a valid gzip file (truncated or corrupt)") from None
    if len(data) > max_bytes():
        raise SnapshotError(
            f"{name}: larger than the {_mib(max_bytes())} snapshot limit (DNSFLEET_SNAPSHOT_MAX_MB)"
        )
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise SnapshotError(f"{name}: not valid JSON ({str(e).splitlines()[0]})") from None
    validate(doc, name, raw=data)
    _forget_corefile_text(doc)
    return doc


def max_bytes() -> int:
    """The uncompressed snapshot cap: ``DNSFLEET_SNAPSHOT_MAX_MB`` when set to a positive number, else
    ``MAX_BYTES`` (128 MiB)."""
    raw = os.environ.get("DNSFLEET_SNAPSHOT_MAX_MB", "").strip()
    try:
        mb = float(raw) if raw else 0.0
    except ValueError:
        mb = 0.0
    return int(mb * (1 << 20)) if mb > 0 else MAX_BYTES


def _mib(n: int) -> str:
    return f"{n / (1 << 20):g} MiB"


def _forget_corefile_text(doc: dict[str, Any]) -> None:
    """An older snapshot's whole Corefile (it may hold etcd credentials, tsig secrets, route53 keys)
    becomes the facts a current one keeps (``dnsfleet.corefile``), so it is never shown or saved again."""
    for c in doc["clusters"]:
        dns = c.get("dns")
        if isinstance(dns, dict) and "corefile" in dns:
            text = dns.pop("corefile")
            if dns.get("corefile_facts") is None:
                dns["corefile_facts"] = corefile.facts(text)


def _gunzip_capped(data: bytes, name: str = "snapshot") -> bytes:
    cap = max_bytes()
    chunks: list[bytes] = []  # joined once at the end: a growing buffer would reallocate (2x) as it grows
    size = 0
    with gzip.GzipFile(fileobj=io.BytesIO(data)) as f:
        while chunk := f.read(1 << 20):
            size += len(chunk)
            if size > cap:
                raise SnapshotError(
                    f"{name}: larger than the {_mib(cap)} limit once unpacked (DNSFLEET_SNAPSHOT_MAX_MB)"
                )
            chunks.append(chunk)
    return b"".join(chunks)


def validate(doc: Any, name: str = "snapshot", raw: bytes | None = None) -> None:
    """Raise SnapshotError unless ``doc`` is a usable snapshot: the checks below, then every field's type
    against the one typed schema (``dnsfleet.snapshot_schema``). ``raw``: the JSON text ``doc`` was
    parsed from, which lets the nesting and string-length caps be checked on the bytes (fast) instead of
    by walking every object, and the schema decode it directly."""
    if not isinstance(doc, dict):
        raise SnapshotError(f"{name}: top level must be a JSON object")
    if doc.get("format") != FORMAT:
        raise SnapshotError(f"{name}: not a dnsfleet snapshot (format is {doc.get('format')!r})")
    ver = doc.get("schema_version")
    if not isinstance(ver, int) or isinstance(ver, bool):
        raise SnapshotError(f"{name}: schema_version missing or not an integer")
    if ver > SCHEMA_VERSION:
        raise SnapshotError(
            f"{name}: schema_version {ver} is newer than this dnsfleet ({__version__}) reads "
            f"(up to {SCHEMA_VERSION}); upgrade dnsfleet"
        )
    if ver < 1:
        raise SnapshotError(f"{name}: schema_version {ver} is not a valid version")
    if raw is None or not _shape_ok(raw):
        _check_shape(doc, name)
    clusters = doc.get("clusters")
    if not isinstance(clusters, list):
        raise SnapshotError(f"{name}: 'clusters' must be a list")
    if not clusters:
        raise SnapshotError(f"{name}: 'clusters' is empty: nothing to assess")
    seen = set()
    for i, c in enumerate(clusters):
        if not isinstance(c, dict) or not isinstance(c.get("name"), str) or not c["name"]:
            raise SnapshotError(f"{name}: clusters[{i}] has no name")
        if c["name"] in seen:
            raise SnapshotError(f"{name}: cluster {c['name']!r} appears twice")
        seen.add(c["name"])
        for key, typ in (("nodes", list), ("pods", list), ("owners", dict), ("dns", dict), ("metrics", dict)):
            if c.get(key) is not None and not isinstance(c[key], typ):
                raise SnapshotError(f"{name}: cluster {c['name']!r}: '{key}' must be a {typ.__name__}")
        for key in ("nodes", "pods"):
            for j, item in enumerate(c.get(key) or []):
                if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                    raise SnapshotError(f"{name}: cluster {c['name']!r}: {key}[{j}] has no name")
    snapshot_schema.check(raw if raw is not None else doc, name)  # every other field's type, one line


def _shape_ok(raw: bytes) -> bool:
    """True when valid JSON text ``raw`` certainly respects MAX_DEPTH and MAX_STRING; False means "walk
    the parsed document to find out" (``_check_shape``). Vectorised over the bytes: several times
    faster than the walk on a 100,000-pod snapshot.

    A quote is a string delimiter unless an odd run of backslashes precedes it; brackets between an
    opening and a closing delimiter are text. Nesting is the running sum of +1 per opening and -1 per
    closing bracket outside strings (the top-level object is 1, so depth d reads d + 1). A string's
    bytes between its quotes are at least its characters, so no span over MAX_STRING bytes means no
    string over MAX_STRING characters."""
    import numpy as np  # here, not at the top: the scan CLI imports this module before its first request

    a = np.frombuffer(raw, dtype=np.uint8)
    quotes = np.flatnonzero(a == ord('"'))
    bs = np.flatnonzero(a == ord("\\"))
    if len(bs):
        after = bs[bs + 1 < len(a)] + 1
        after_bs = after[a[after] == ord('"')]  # quotes right after a backslash
        starts = np.ones(len(bs), dtype=bool)
        starts[1:] = bs[1:] != bs[:-1] + 1
        run_start = np.maximum.accumulate(np.where(starts, bs, 0))
        run_len = after_bs - run_start[np.searchsorted(bs, after_bs - 1)]
        quotes = np.setdiff1d(quotes, after_bs[run_len % 2 == 1], assume_unique=True)
    if len(quotes) % 2:
        return False  # not the JSON the parser accepted: let the walk decide
    if len(quotes) and int((quotes[1::2] - quotes[0::2]).max()) - 1 > MAX_STRING:
        return False
    folded = a | 0x20  # "[" -> "{", "]" -> "}"; no other byte folds onto either
    opening = folded == ord("{")
    where = np.flatnonzero(opening | (folded == ord("}")))
    where = where[(np.searchsorted(quotes, where) & 1) == 0]  # outside strings
    steps = np.where(opening[where], 1, -1)
    return not len(steps) or int(np.cumsum(steps).max()) <= MAX_DEPTH + 1


def _check_shape(doc: Any, name: str) -> None:
    """Reject hostile nesting and huge strings without recursion."""
    stack: list[tuple[Any, int]] = [(doc, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise SnapshotError(f"{name}: nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, dict):
            for k, v in node.items():
                if len(k) > MAX_STRING:
                    raise SnapshotError(f"{name}: a key is longer than {MAX_STRING} characters")
                if isinstance(v, dict | list):
                    stack.append((v, depth + 1))
                elif isinstance(v, str) and len(v) > MAX_STRING:
                    raise SnapshotError(f"{name}: a string is longer than {MAX_STRING} characters")
        elif isinstance(node, list):
            for v in node:
                if isinstance(v, dict | list):
                    stack.append((v, depth + 1))
                elif isinstance(v, str) and len(v) > MAX_STRING:
                    raise SnapshotError(f"{name}: a string is longer than {MAX_STRING} characters")
