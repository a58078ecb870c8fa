"""The typed schema of a snapshot: one definition, checked on every load (CLI and dashboard upload).

``check(raw_or_doc, name)`` decodes the whole document against these types with msgspec and raises
``SnapshotError`` with one line naming the first field of the wrong type, e.g.
``fleet.json: clusters[0].nodes[3].kernel_version: expected a string or null, got an integer``.

Every field but a cluster's and a node's ``name`` may be missing or ``null`` (= unknown). Keys this
schema does not name are allowed (older and newer writers of the same schema version add facts); their
values are only bounded by the nesting and string-length caps of ``dnsfleet.snapshot``. Numbers that
the engine divides by or counts with are bounded (no negative endpoint counts, no window of 1e308
seconds). ``docs/snapshot.md`` explains each field.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

# Bounds: far above anything real, low enough that sums and products stay finite.
Count = Annotated[int, Meta(ge=0, le=10_000_000)]
Amount = Annotated[float, Meta(ge=0, le=1e15)]
Epoch = Annotated[float, Meta(ge=-1e11, le=1e11)]  # seconds since 1970, within +-3,000 years
Step = Annotated[float, Meta(gt=0, le=1e8)]
Name = Annotated[str, Meta(min_length=1)]


class _S(Struct, forbid_unknown_fields=False, omit_defaults=True, gc=False):
    """Base: unknown keys allowed, every field optional."""


class Node(_S):
    name: str
    labels: dict[str, str] | None = None
    kernel_version: str | None = None
    os_image: str | None = None
    container_runtime: str | None = None
    kubelet_version: str | None = None
    ready: bool | None = None


class DnsOption(_S):
    name: str | None = None
    value: str | None = None


class DnsConfig(_S):
    nameservers: list[str] | None = None
    searches: list[str] | None = None
    options: list[DnsOption] | None = None


class Pod(_S):
    name: str | None = None
    namespace: str | None = None
    node: str | None = None
    owner_kind: str | None = None
    owner_name: str | None = None
    phase: str | None = None
    host_network: bool | None = None
    dns_policy: str | None = None
    dns_config: DnsConfig | None = None
    images: list[str] | None = None
    resolver_annotation: str | None = None


class Owners(_S):
    ReplicaSet: dict[str, tuple[str | None, str | None]] | None = None
    Job: dict[str, tuple[str | None, str | None]] | None = None


class DaemonSetFact(_S):
    name: str | None = None
    labels: dict[str, str] | None = None
    images: list[str] | None = None
    flags: list[str] | None = None
    localip: str | None = None
    configmaps: list[str] | None = None
    ready_nodes: list[str] | None = None


class ConfigMapFact(_S):
    keys: list[str] | None = None
    link_local: str | None = None


class CorefileFacts(_S):
    plugins: list[str] | None = None
    cluster_domain: str | None = None


class Dns(_S):
    service_ip: str | None = None
    service_ip_families: list[str] | None = None
    ready_endpoints: Count | None = None
    coredns_version: str | None = None
    coredns_replicas: Count | None = None
    corefile_facts: CorefileFacts | None = None
    corefile: str | None = None  # older snapshots: the whole Corefile (read as corefile_facts)
    kube_proxy_mode: str | None = None
    kube_proxy_present: bool | None = None
    daemonsets: list[str] | None = None
    daemonset_facts: list[DaemonSetFact] | None = None
    configmap_facts: dict[str, ConfigMapFact] | None = None
    cilium_config: dict[str, str | None] | None = None
    calico_bpf: bool | None = None
    nodelocal_ip: str | None = None  # older snapshots
    nodelocal_nodes: list[str] | None = None  # older snapshots
    nfqueue_agent: bool | None = None  # older snapshots


class CorednsSummary(_S):
    qps: Amount | None = None
    p50_ms: Amount | None = None
    p99_ms: Amount | None = None
    share_over_1s: Amount | None = None
    servfail_share: Amount | None = None
    nxdomain_share: Amount | None = None
    forward_p99_ms: Amount | None = None
    version: str | None = None


class Series(_S):
    start: Epoch | None = None
    step: Step | None = None
    metrics: dict[str, list[Amount | None]] | None = None


class ConntrackNode(_S):
    insert_failed_increase: Amount | None = None
    drop_increase: Amount | None = None
    entries: Amount | None = None
    entries_limit: Amount | None = None
    insert_failed_rate: list[Amount | None] | None = None


class Conntrack(_S):
    reason: str | None = None
    start: Epoch | None = None
    step: Step | None = None
    nodes: dict[str, ConntrackNode] | None = None


class Metrics(_S):
    source: str | None = None
    window_s: Amount | None = None
    note: str | None = None
    coredns: CorednsSummary | None = None
    coredns_series: Series | None = None
    conntrack: Conntrack | None = None


class Cluster(_S):
    name: Name
    provider: str | None = None
    status: str | None = None
    reason: str | None = None
    missing: list[str] | None = None
    server_version: str | None = None
    collected_at: str | None = None
    nodes: list[Node] | None = None
    pods: list[Pod] | None = None
    owners: Owners | None = None
    dns: Dns | None = None
    metrics: Metrics | None = None


class Snapshot(_S):
    format: str
    schema_version: int
    clusters: list[Cluster]
    tool_version: str | None = None
    generated_at: str | None = None
    source: str | None = None


# --- building a cluster record -------------------------------------------------------------------
# The scan, the CoreDNS scraper, the Prometheus reader and the demo build the dicts a snapshot holds
# through these two functions, so every writer emits the same keys (unknown = None, never absent) and a
# new field is added in one place, next to its type above.

Status = Literal["ok", "partial", "failed"]
MetricsSource = Literal["prometheus", "scrape", "demo"]


def metrics_record(
    *,
    source: MetricsSource | None = None,
    window_s: float | None = None,
    note: str | None = None,
    coredns: dict[str, Any] | None = None,
    coredns_series: dict[str, Any] | None = None,
    conntrack: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A cluster's ``metrics`` section (``Metrics``); what was not collected stays None."""
    return {
        "source": source,
        "window_s": window_s,
        "note": note,
        "coredns": coredns,
        "coredns_series": coredns_series,
        "conntrack": conntrack,
    }


def cluster_record(
    name: str,
    *,
    status: Status = "failed",
    reason: str | None = None,
    missing: list[str] | None = None,
    server_version: str | None = None,
    collected_at: str | None = None,
    provider: str | None = None,
    nodes: list[dict[str, Any]] | None = None,
    pods: list[dict[str, Any]] | None = None,
    owners: dict[str, Any] | None = None,
    dns: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One cluster of a snapshot (``Cluster``): every part unknown unless given. A record starts as
    ``failed`` and the scan raises it to ``partial`` or ``ok`` once it has read the cluster."""
    if not name:
        raise ValueError("a cluster record needs a name")
    return {
        "name": name,
        "status": status,
        "reason": reason,
        "missing": list(missing or []),
        "server_version": server_version,
        "collected_at": collected_at,
        "provider": provider,
        "nodes": nodes,
        "pods": pods,
        "owners": owners if owners is not None else {"ReplicaSet": None, "Job": None},
        "dns": dns,
        "metrics": metrics if metrics is not None else metrics_record(),
    }


_DECODER = msgspec.json.Decoder(Snapshot)
_PATH = re.compile(r" - at `\$(.*)`$")
_WORDS = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "null": "null",
    "array": "a list",
    "object": "an object",
}


def check(data: bytes | Any, name: str = "snapshot") -> None:
    """Raise ``SnapshotError`` (one line) unless ``data`` (JSON bytes, or the parsed document) fits the
    schema."""
    from dnsfleet.perf import gc_paused
    from dnsfleet.snapshot import SnapshotError

    try:
        with gc_paused():  # the typed copy is dropped at once: nothing for the cyclic GC to find
            if isinstance(data, bytes | bytearray | memoryview):
                _DECODER.decode(data)
            else:
                msgspec.convert(data, Snapshot)
    except msgspec.ValidationError as e:
        raise SnapshotError(f"{name}: {_plain(str(e))}") from None
    except msgspec.DecodeError as e:  # JSON orjson accepted but msgspec does not (never seen): one line
        raise SnapshotError(f"{name}: not valid JSON ({' '.join(str(e).split())})") from None


def _plain(message: str) -> str:
    """msgspec's "Expected `str | null`, got `int` - at `$.clusters[0].x`" as
    "clusters[0].x: expected a string or null, got an integer"."""
    message = " ".join(message.split())
    where = ""
    m = _PATH.search(message)
    if m:
        where = m.group(1).lstrip(".")
        message = message[: m.start()]

    def words(types: str) -> str:
        names = [t.strip().strip("`") for t in types.split("|")]
        return " or ".join(_WORDS.get(t, t) for t in names)

    m2 = re.fullmatch(r"Expected `([^`]*)`, got `([^`]*)`", message)
    if m2:
        message = f"expected {words(m2.group(1))}, got {words(m2.group(2))}"
    else:
        message = message[:1].lower() + message[1:]
    return f"{where}: {message}" if where else message
