"""The frames dnsfleet works on: every column, its dtype and its meaning, in one place.

Every frame is a pandas DataFrame with exactly the columns below, in this order and with these
dtypes. Missing data is NA (``pd.NA`` in nullable dtypes) or the string ``"unknown"`` in status
columns, never 0 or False: "we could not see it" and "it is not there" are different answers.

Frames built from a snapshot (``dnsfleet.frames.build_frames``):

- ``clusters``: one row per cluster (scan status, versions, counts).
- ``nodes``: one row per node, with the kernel classification per race.
- ``workloads``: pods rolled up to their owner (Deployment via ReplicaSet, StatefulSet, DaemonSet,
  CronJob via Job, Job, bare Pod), with the inferred resolver and effective dnsConfig.
- ``placements``: pod counts per (workload, node): the grain the risk model scores on.
- ``dns_service``: per cluster, the DNS service path (kube-dns IP, endpoints, CoreDNS, kube-proxy mode,
  CNI, NodeLocal DNSCache).
- ``coredns_metrics``: per cluster summary of CoreDNS metrics; ``coredns_series`` the time series.
- ``conntrack``: per node conntrack counters, or ``available=False`` with the reason.

Added by the risk model (``dnsfleet.engine.analyze``): the risk columns on clusters, nodes and
workloads (plus ``recommended_fix`` on workloads), the long ``factors`` frame (one row per score
contribution, with its plain-language text) and ``recommendations``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

# Values of the status columns.
RACE_STATES = ("fixed", "open", "unknown", "not applicable")
LEVELS = ("high", "medium", "low", "unknown", "n/a")
RESOLVERS = ("glibc", "musl", "go", "go-cgo", "c-ares", "jvm", "unknown")
PROXY_MODES = ("iptables", "ipvs", "nftables", "none", "unknown")


@dataclass(frozen=True)
class Column:
    name: str
    dtype: str
    doc: str


def _cols(*rows: tuple[str, str, str]) -> tuple[Column, ...]:
    return tuple(Column(*r) for r in rows)


S, INT, F, B, T = "string", "Int64", "Float64", "boolean", "datetime64[ns, UTC]"

SCHEMAS: dict[str, tuple[Column, ...]] = {
    "clusters": _cols(
        ("cluster", S, "cluster name (kubeconfig context or snapshot name)"),
        ("provider", S, "aks | eks | gke | on-prem | other | unknown (from node labels / versions)"),
        ("status", S, "ok | partial (some resources unreadable) | failed (no usable data)"),
        ("reason", S, "why the scan failed or is partial, in plain words; NA when ok"),
        ("missing", S, "comma-separated resources that could not be read (their parts are unknown)"),
        ("server_version", S, "Kubernetes server gitVersion"),
        ("collected_at", T, "when this cluster was scanned (UTC)"),
        ("nodes", INT, "number of nodes"),
        ("pods", INT, "number of pods"),
        ("workloads", INT, "number of workloads (pods rolled up to owners)"),
    ),
    "nodes": _cols(
        ("cluster", S, "cluster name"),
        ("node", S, "node name"),
        ("pool", S, "node pool (agentpool / eks nodegroup / gke nodepool label), else instance type"),
        ("os_image", S, "status.nodeInfo.osImage"),
        ("kernel_version", S, "status.nodeInfo.kernelVersion"),
        ("distro", S, "kernel family recognised from osImage + kernelVersion (ubuntu, amzn2, cos...)"),
        ("kernel_base", S, "upstream base version parsed from the kernel string, e.g. 5.10.215"),
        ("race1", S, "race 1 (clash for matching conntracks): fixed | open | unknown | not applicable"),
        ("race2", S, "race 2 (same-origin NAT clash): fixed | open | unknown | not applicable"),
        ("race3", S, "race 3 (different DNAT endpoints): fixed | open | unknown | not applicable"),
        ("nfqueue", S, "NFQUEUE clash path (< 6.12): fixed | open | unknown | not applicable"),
        ("counters_exact", B, "kernel >= 5.10: insert_failed counts only unresolved clashes (K7)"),
        ("kernel_source", S, "sources of the classification (rule ids and fact-sheet sections)"),
        ("ready", B, "Ready condition"),
        ("nodelocal_ready", B, "a ready node-local-dns pod runs on this node (NA: not known)"),
        ("container_runtime", S, "status.nodeInfo.containerRuntimeVersion"),
        ("kubelet_version", S, "status.nodeInfo.kubeletVersion"),
        ("instance_type", S, "node.kubernetes.io/instance-type label"),
        ("zone", S, "topology.kubernetes.io/zone label"),
        ("pods", INT, "pods scheduled on this node"),
    ),
    "workloads": _cols(
        ("cluster", S, "cluster name"),
        ("namespace", S, "namespace"),
        (
            "kind",
            S,
            "Deployment | StatefulSet | DaemonSet | CronJob | Job | ReplicaSet | Pod | other owner kind",
        ),
        ("name", S, "owner name (the pod name for a bare Pod)"),
        ("workload_id", S, "cluster/namespace/kind/name, stable key"),
        ("pods", INT, "number of pods"),
        ("nodes", INT, "distinct nodes its pods run on"),
        ("image", S, "main image (first container of the first pod)"),
        ("images", S, "all distinct images, comma-separated"),
        ("resolver", S, "glibc | musl | go | go-cgo | c-ares | jvm | unknown"),
        ("resolver_source", S, "annotation | mapping | image rule id | unknown"),
        ("dns_policy", S, "ClusterFirst | ClusterFirstWithHostNet | Default | None"),
        ("host_network", B, "pods use the host network"),
        (
            "uses_cluster_dns",
            B,
            "queries go to the cluster DNS service (D8: dnsPolicy, hostNetwork, nameservers); False = not applicable",
        ),
        ("dns_via", S, "cluster-ip | link-local (NodeLocal DNSCache IP named by dnsPolicy None) | NA"),
        ("dns_options", S, "pod dnsConfig.options as name[:value], comma-separated"),
        ("nameservers", S, "pod dnsConfig.nameservers, comma-separated"),
        ("ndots", INT, "effective ndots (dnsConfig option, else 5 for cluster DNS)"),
        ("timeout_s", F, "effective resolver timeout in seconds (option, else the resolver default)"),
        ("attempts", INT, "effective attempts (option, else the resolver default)"),
        ("stall_s", F, "seconds one lost query costs this resolver (glibc: timeout; musl: timeout/attempts)"),
        ("sends_parallel_pair", S, "yes | no | unknown: sends A+AAAA in parallel from one socket (R1-R9)"),
    ),
    "placements": _cols(
        ("cluster", S, "cluster name"),
        ("workload_id", S, "workload key"),
        ("node", S, "node name (NA for unscheduled pods)"),
        ("pods", INT, "pods of the workload on the node"),
    ),
    "dns_service": _cols(
        ("cluster", S, "cluster name"),
        ("cluster_ip", S, "kube-dns Service ClusterIP"),
        ("ready_endpoints", INT, "ready kube-dns endpoints (EndpointSlices)"),
        ("coredns_version", S, "CoreDNS version (image tag or coredns_build_info)"),
        ("coredns_replicas", INT, "CoreDNS Deployment replicas"),
        ("corefile_plugins", S, "plugins of the Corefile's server blocks, comma-separated"),
        ("cluster_domain", S, "cluster domain (Corefile kubernetes plugin zone), default cluster.local"),
        ("kube_proxy_mode", S, "iptables | ipvs | nftables | none (replaced) | unknown"),
        ("cni", S, "cilium | calico | flannel | weave | aws-vpc-cni | azure-cni | gke | other | unknown"),
        (
            "ebpf_service_lb",
            S,
            "cilium-socket-lb | cilium-tc | cilium-no-socket-lb | calico-ebpf | none | unknown (P3/P4)",
        ),
        ("nodelocal", B, "NodeLocal DNSCache present (image, -localip, ConfigMap, GKE node label or name)"),
        ("nodelocal_how", S, "what recognised NodeLocal DNSCache"),
        ("nodelocal_ip", S, "NodeLocal DNSCache link-local IP"),
        ("nfqueue_agent", B, "an NFQUEUE-based policy agent is on the DNS path (K6)"),
        ("ipv4_only", B, "the kube-dns Service is IPv4 only (spec.ipFamilies); NA: not known"),
        ("path", S, "netfilter-dnat | nodelocal | socket-lb | unknown: how pod DNS reaches CoreDNS"),
        ("path_code", S, "reason code of the path decision (rules/data/codes.csv)"),
        ("path_note", S, "why the path was judged so (rendered from path_code)"),
    ),
    "coredns_metrics": _cols(
        ("cluster", S, "cluster name"),
        ("source", S, "prometheus | scrape (single point in time) | demo | not collected"),
        ("window_s", F, "length of the window the figures cover, seconds"),
        ("qps", F, "DNS requests per second (all CoreDNS pods)"),
        ("p50_ms", F, "server-side latency median, ms"),
        ("p99_ms", F, "server-side latency 99th percentile, ms"),
        ("share_over_1s", F, "share of requests slower than 1 s server-side"),
        ("servfail_share", F, "share of SERVFAIL responses"),
        ("nxdomain_share", F, "share of NXDOMAIN responses"),
        ("forward_p99_ms", F, "upstream (forward) latency 99th percentile, ms"),
        ("note", S, "what is missing and why"),
    ),
    "coredns_series": _cols(
        ("cluster", S, "cluster name"),
        ("ts", T, "sample time (UTC)"),
        ("metric", S, "qps | p50_ms | p99_ms | forward_p99_ms | rcode:<RCODE> (responses/s)"),
        ("value", F, "value"),
    ),
    "conntrack": _cols(
        ("cluster", S, "cluster name"),
        ("node", S, "node name"),
        ("available", B, "node conntrack stats were collected"),
        ("reason", S, "why not available (node_exporter absent, procfs stats off...)"),
        ("window_s", F, "window of the increases, seconds"),
        ("insert_failed_increase", F, "increase of node_nf_conntrack_stat_insert_failed over the window"),
        ("drop_increase", F, "increase of node_nf_conntrack_stat_drop over the window"),
        ("entries", F, "node_nf_conntrack_entries (latest)"),
        ("entries_limit", F, "node_nf_conntrack_entries_limit (latest)"),
    ),
    "conntrack_series": _cols(
        ("cluster", S, "cluster name"),
        ("node", S, "node name"),
        ("ts", T, "sample time (UTC)"),
        ("insert_failed_rate", F, "insert_failed per second"),
    ),
    # Outputs of the risk model.
    "factors": _cols(
        ("scope", S, "cluster | node | workload"),
        ("cluster", S, "cluster name"),
        ("key", S, "node name or workload_id; the cluster name for cluster scope"),
        ("factor", S, "kernel | service_path | resolver | ndots | query_rate | evidence | gate"),
        ("points", F, "contribution to the 0-100 score"),
        ("code", S, "reason code (rules/data/codes.csv)"),
        ("text", S, "plain-language reason, e.g. '3 of 4 nodes run 4.15.0-1029-azure: races 1-3 open'"),
        ("rule", S, "rule ids (K0..K8, P1..P5, R1..R11, D1..D8) behind it"),
    ),
    "recommendations": _cols(
        ("finding_id", S, "stable id: DNSF-<mitigation>-<hash of cluster/target>"),
        ("cluster", S, "cluster name"),
        ("finding_type", S, "mitigation | not-this-race (D7: flat counters, look elsewhere)"),
        ("scope", S, "cluster | workload | node_pool"),
        ("target", S, "workload_id, node pool or cluster name"),
        (
            "mitigation",
            S,
            "single-request-reopen | no-aaaa | godebug-netdns-go | nodelocal-dnscache | kernel-upgrade | "
            "lower-ndots | not-this-race",
        ),
        ("action", S, "what to do, in plain words"),
        ("risk_removed", F, "points of the cluster score this removes (pod-weighted), the ranking key"),
        ("pods", INT, "pods it protects"),
        ("rule", S, "rule ids behind it (M1..M6 and the exposure rules)"),
        ("note", S, "caveats: rollout triggered, work outside the API, CNI caveats"),
    ),
}

# Risk columns appended to clusters / nodes / workloads by the risk model.
RISK_COLUMNS = _cols(
    ("score", F, "risk score 0-100 (worst case where inputs are unknown); NA when not applicable (D8)"),
    ("level", S, "high | medium | low | unknown | n/a (no pod uses cluster DNS, D8)"),
    ("why", S, "the top reasons, plain language, '; '-separated"),
    ("exposed_pods", INT, "pods whose DNS path is exposed (all gate conditions true)"),
    ("unknown_pods", INT, "pods with at least one unknown gate condition"),
    ("kernel_pts", F, "points from the kernel factor"),
    ("service_path_pts", F, "points from the service path factor"),
    ("resolver_pts", F, "points from the resolver factor"),
    ("ndots_pts", F, "points from ndots amplification"),
    ("query_rate_pts", F, "points from the DNS query rate"),
    ("evidence_pts", F, "points from conntrack insert_failed evidence"),
)
WORKLOAD_RISK_COLUMNS = _cols(
    ("recommended_fix", S, "the mitigation that would work for this workload (see recommendations)"),
)
CLUSTER_RISK_COLUMNS = _cols(
    ("rank", INT, "1 = act first: clusters with known exposed pods, then unknown-only ones, by score"),
    ("applicable_pods", INT, "pods that use cluster DNS (D8); only these are scored"),
    ("unknown_resolve", S, "what would turn the unknown pods into a verdict"),
    ("findings", S, "other findings, e.g. D7 'probably not this race'"),
)
FACTOR_NAMES = ("kernel", "service_path", "resolver", "ndots", "query_rate", "evidence")


def columns(frame: str) -> list[str]:
    return [c.name for c in SCHEMAS[frame]]


def empty(frame: str) -> pd.DataFrame:
    """An empty frame with the documented columns and dtypes."""
    return conform(pd.DataFrame(), frame)


def conform(df: pd.DataFrame, frame: str, extra: tuple[Column, ...] = ()) -> pd.DataFrame:
    """Return ``df`` with exactly the documented columns (missing ones filled with NA) and dtypes."""
    cols = SCHEMAS[frame] + extra
    out = {}
    n = len(df)
    for c in cols:
        s = df[c.name] if c.name in df.columns else pd.Series([pd.NA] * n, index=df.index, dtype="object")
        out[c.name] = _as_dtype(s, c.dtype)
    return pd.DataFrame(out, index=df.index).reset_index(drop=True)


def _as_dtype(s: pd.Series, dtype: str) -> pd.Series:
    if dtype == T:
        return pd.to_datetime(s, utc=True, errors="coerce")
    if dtype == S:
        return s.astype("string")
    return s.astype(dtype)


def describe_markdown() -> str:
    """The schema as a Markdown document (written to docs/frames.md and checked by a test)."""
    lines = ["# Frames", "", (__doc__ or "").strip(), ""]
    sections = [
        *SCHEMAS.items(),
        ("risk columns (clusters, nodes, workloads)", RISK_COLUMNS),
        ("workloads: risk extras", WORKLOAD_RISK_COLUMNS),
        ("clusters: risk extras", CLUSTER_RISK_COLUMNS),
    ]
    for name, cols in sections:
        lines += [f"## `{name}`", "", "| column | dtype | meaning |", "|---|---|---|"]
        lines += [f"| `{c.name}` | {c.dtype} | {c.doc.replace('|', chr(92) + '|')} |" for c in cols]
        lines.append("")
    return "\n".join(lines)
