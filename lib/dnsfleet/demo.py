"""The bundled demo fleet: a deterministic (seeded) snapshot of seven clusters across providers, so the
dashboard and reports work with no cluster at all. Always labelled ``source: "demo"``.

Clusters (kernel strings are real-world forms):

- ``aks-legacy-weu``: AKS, Ubuntu 18.04 ``4.15.0-1029-azure`` (+ a pool on ``-1030``), iptables, 2 CoreDNS
  endpoints, CoreDNS 1.6.2 (pre-1.7 metric names): races open, insert_failed growing.
- ``eks-prod-use1``: EKS, Amazon Linux 2 ``5.10.215-...amzn2`` plus a legacy pool on ``4.14.209``,
  iptables via ``kube-proxy-config``, aws-node.
- ``gke-analytics``: GKE, COS ``5.15.133+``, no node-exporter conntrack stats ("not collected").
- ``onprem-dc1``: CentOS 7 ``3.10.0-1160.el7``, kube-proxy ipvs, Calico, 3 endpoints.
- ``cilium-edge``: Ubuntu 20.04 ``5.4.0-150-generic`` (race 3 open), but Cilium kube-proxy replacement with
  socket-LB takes DNS off the netfilter path.
- ``aks-nodelocal-neu``: Ubuntu 20.04 ``5.4.0-1109-azure`` (race 3 open) with NodeLocal DNSCache, which is
  not ready on one node: only that node's pods are exposed. Its conntrack counters stay flat while
  CoreDNS answers 3 % SERVFAIL: the D7 "probably not this race" finding.

Every cluster also runs its kube-system DaemonSets (kube-proxy, CNI agents, node-local-dns) as
``hostNetwork`` pods on every node: they do not use cluster DNS (D8) and are not scored. The ``dns``
part carries the facts a collector records (DaemonSets with labels, images, flags and ready nodes,
ConfigMap keys, the kube-dns Service's IP families).
- ``eks-dr-usw2``: a cluster whose scan failed (unreachable), to show how failures look.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

from dnsfleet import corefile
from dnsfleet.snapshot import new_snapshot
from dnsfleet.snapshot_schema import cluster_record, metrics_record

NAMESPACES = ("shop", "payments", "search", "data", "platform", "identity", "notifications", "ml")
APPS = (
    "api",
    "web",
    "worker",
    "checkout",
    "cart",
    "catalog",
    "gateway",
    "auth",
    "indexer",
    "ingest",
    "scheduler",
    "mailer",
    "reports",
    "billing",
    "ledger",
    "feed",
    "recommender",
    "pricing",
    "inventory",
    "search-api",
)
IMAGES = (  # (image template, weight)
    ("nginx:1.25-alpine", 6),
    ("python:3.12-alpine", 5),
    ("node:20-alpine", 6),
    ("alpine:3.18", 3),
    ("python:3.12-slim", 7),
    ("debian:12-slim", 3),
    ("ubuntu:22.04", 3),
    ("eclipse-temurin:21-jre-jammy", 5),
    ("nginx:1.25-bookworm", 3),
    ("gcr.io/distroless/static-debian12:nonroot", 7),
    ("gcr.io/distroless/base-debian12:nonroot", 4),
    ("registry.access.redhat.com/ubi9/ubi-minimal:9.3", 2),
    ("ghcr.io/acme/{app}:{ver}", 8),
)
DNS_VARIANTS = (  # (options, weight)
    ((), 55),
    ((("ndots", "2"),), 14),
    ((("single-request-reopen", None),), 12),
    ((("use-vc", None),), 4),
    ((("timeout", "2"), ("attempts", "3")), 6),
    ((("ndots", "2"), ("single-request-reopen", None)), 6),
    ((("no-aaaa", None),), 3),
)
KINDS = (("Deployment", 68), ("StatefulSet", 10), ("DaemonSet", 5), ("CronJob", 10), ("Pod", 7))


@dataclass(frozen=True)
class Pool:
    name: str
    count: int
    kernel: str
    os_image: str
    instance_type: str


@dataclass(frozen=True)
class DemoCluster:
    name: str
    provider: str
    server_version: str
    pools: tuple[Pool, ...]
    proxy_mode: str | None
    daemonsets: tuple[str, ...]
    endpoints: int
    coredns_version: str
    workloads: int
    qps: float
    pool_label: str
    cilium: dict | None = None
    nodelocal_missing: int = 0
    conntrack: bool = True
    insert_failed_per_node: float = 0.0
    servfail_share: float | None = None  # None: a small random share
    failed: str | None = None


CLUSTERS = (
    DemoCluster(
        "aks-legacy-weu",
        "aks",
        "v1.24.15",
        (
            Pool("system", 3, "4.15.0-1029-azure", "Ubuntu 18.04.6 LTS", "Standard_D4s_v3"),
            Pool("apps", 9, "4.15.0-1029-azure", "Ubuntu 18.04.6 LTS", "Standard_D8s_v3"),
            Pool("batch", 4, "4.15.0-1030-azure", "Ubuntu 18.04.6 LTS", "Standard_F8s_v2"),
        ),
        "iptables",
        ("kube-proxy", "azure-cns", "azure-ip-masq-agent"),
        2,
        "1.6.2",
        90,
        1450.0,
        "agentpool",
        insert_failed_per_node=180.0,
    ),
    DemoCluster(
        "eks-prod-use1",
        "eks",
        "v1.29.6-eks-1de2ab1",
        (
            Pool("general", 14, "5.10.215-203.850.amzn2.x86_64", "Amazon Linux 2", "m6i.2xlarge"),
            Pool("legacy-ng", 6, "4.14.209-160.339.amzn2.x86_64", "Amazon Linux 2", "m5.xlarge"),
        ),
        "iptables",
        ("kube-proxy", "aws-node", "ebs-csi-node"),
        2,
        "1.10.1",
        110,
        2600.0,
        "eks.amazonaws.com/nodegroup",
        insert_failed_per_node=25.0,
    ),
    DemoCluster(
        "gke-analytics",
        "gke",
        "v1.30.3-gke.1639000",
        (Pool("default-pool", 8, "5.15.133+", "Container-Optimized OS from Google", "e2-standard-8"),),
        "iptables",
        ("kube-proxy", "netd", "gke-metadata-server", "fluentbit-gke"),
        2,
        "1.11.1",
        60,
        700.0,
        "cloud.google.com/gke-nodepool",
        conntrack=False,
    ),
    DemoCluster(
        "onprem-dc1",
        "on-prem",
        "v1.26.9",
        (
            Pool("workers", 12, "3.10.0-1160.el7.x86_64", "CentOS Linux 7 (Core)", "bare-metal"),
            Pool(
                "gpu", 2, "4.18.0-513.5.1.el8_9.x86_64", "Red Hat Enterprise Linux 8.9 (Ootpa)", "bare-metal"
            ),
        ),
        "ipvs",
        ("kube-proxy", "calico-node"),
        3,
        "1.8.0",
        80,
        900.0,
        "node.kubernetes.io/pool",
        insert_failed_per_node=240.0,
    ),
    DemoCluster(
        "cilium-edge",
        "other",
        "v1.31.1",
        (Pool("edge", 6, "5.4.0-150-generic", "Ubuntu 20.04.6 LTS", "edge-small"),),
        None,
        ("cilium", "cilium-envoy"),
        2,
        "1.11.3",
        35,
        180.0,
        "node.kubernetes.io/pool",
        cilium={"kube-proxy-replacement": "true", "bpf-lb-sock-hostns-only": "false"},
    ),
    DemoCluster(
        "aks-nodelocal-neu",
        "aks",
        "v1.28.9",
        (
            Pool("system", 3, "5.4.0-1109-azure", "Ubuntu 20.04.6 LTS", "Standard_D4ds_v5"),
            Pool("apps", 10, "5.4.0-1109-azure", "Ubuntu 20.04.6 LTS", "Standard_D8ds_v5"),
        ),
        "iptables",
        ("kube-proxy", "azure-cns", "node-local-dns"),
        2,
        "1.11.1",
        75,
        1100.0,
        "agentpool",
        nodelocal_missing=1,
        servfail_share=0.03,
    ),
    DemoCluster(
        "eks-dr-usw2",
        "eks",
        "",
        (),
        None,
        (),
        0,
        "",
        0,
        0.0,
        "eks.amazonaws.com/nodegroup",
        failed="unreachable: timed out after 10 s connecting to the API server",
    ),
)

GENERATED_AT = "2026-11-25T12:00:00Z"
END_EPOCH = 1795608000.0  # 2026-11-25T12:00:00Z
WINDOW_S = 6 * 3600.0
STEP_S = 300.0


def _weighted(rng: random.Random, items: tuple) -> Any:
    return rng.choices([i[0] for i in items], weights=[i[1] for i in items], k=1)[0]


def _nodes(c: DemoCluster, rng: random.Random) -> list[dict]:
    nodes = []
    for pool in c.pools:
        for i in range(pool.count):
            name = f"{pool.name}-{rng.getrandbits(20):05x}-{i}"
            nodes.append(
                {
                    "name": name,
                    "labels": {
                        c.pool_label: pool.name,
                        "node.kubernetes.io/instance-type": pool.instance_type,
                        "topology.kubernetes.io/zone": f"zone-{1 + i % 3}",
                        "kubernetes.io/os": "linux",
                    },
                    "kernel_version": pool.kernel,
                    "os_image": pool.os_image,
                    "container_runtime": "containerd://1.7.13",
                    "kubelet_version": c.server_version.split("-")[0],
                    "ready": True,
                }
            )
    return nodes


def _pods(c: DemoCluster, nodes: list[dict], rng: random.Random) -> tuple[list[dict], dict]:
    pods: list[dict] = []
    owners: dict[str, dict] = {"ReplicaSet": {}, "Job": {}}
    names = [n["name"] for n in nodes]
    used: set[str] = set()
    for _ in range(c.workloads):
        ns = rng.choice(NAMESPACES)
        app = rng.choice(APPS)
        wname = app if f"{ns}/{app}" not in used else f"{app}-{rng.randint(2, 9)}"
        if f"{ns}/{wname}" in used:
            continue
        used.add(f"{ns}/{wname}")
        kind = _weighted(rng, KINDS)
        image = _weighted(rng, IMAGES).format(
            app=app, ver=f"{rng.randint(1, 4)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}"
        )
        images = [image] + (["envoyproxy/envoy:v1.29.1"] if rng.random() < 0.1 else [])
        opts = _weighted(rng, DNS_VARIANTS)
        annotation = "go" if image.startswith("ghcr.io/acme/") and rng.random() < 0.3 else None
        dns_config = {"options": [{"name": n, "value": v} for n, v in opts]} if opts else None
        if kind == "DaemonSet":
            placement = names
        else:
            reps = 1 if kind == "Pod" else max(1, int(rng.lognormvariate(1.1, 0.8)))
            placement = [rng.choice(names) for _ in range(min(reps, 40))]
        if kind == "Deployment":
            rs = f"{wname}-{rng.getrandbits(32):08x}"[:40]
            owners["ReplicaSet"][f"{ns}/{rs}"] = ["Deployment", wname]
            okind, oname = "ReplicaSet", rs
        elif kind == "CronJob":
            job = f"{wname}-{29000000 + rng.randint(0, 99999)}"
            owners["Job"][f"{ns}/{job}"] = ["CronJob", wname]
            okind, oname = "Job", job
        elif kind == "Pod":
            okind, oname = None, None
        else:
            okind, oname = kind, wname
        for i, node in enumerate(placement):
            pods.append(
                {
                    "namespace": ns,
                    "name": wname if kind == "Pod" else f"{oname}-{i}-{rng.getrandbits(20):05x}",
                    "node": node,
                    "owner_kind": okind,
                    "owner_name": oname,
                    "phase": "Running",
                    "host_network": False,
                    "dns_policy": "ClusterFirst",
                    "dns_config": dns_config,
                    "images": images,
                    "resolver_annotation": annotation,
                }
            )
    # CoreDNS itself (kube-system, dnsPolicy Default, Go resolver).
    rs = "coredns-5d78c9869d"
    owners["ReplicaSet"][f"kube-system/{rs}"] = ["Deployment", "coredns"]
    for i in range(c.endpoints):
        pods.append(
            {
                "namespace": "kube-system",
                "name": f"{rs}-{i}",
                "node": names[i % len(names)],
                "owner_kind": "ReplicaSet",
                "owner_name": rs,
                "phase": "Running",
                "host_network": False,
                "dns_policy": "Default",
                "dns_config": None,
                "images": [f"registry.k8s.io/coredns/coredns:v{c.coredns_version}"],
                "resolver_annotation": "go",
            }
        )
    # The kube-system DaemonSets: one hostNetwork pod per node (node-local-dns: not on the missing ones).
    for ds in c.daemonsets:
        for i, node in enumerate(_ds_nodes(c, names, ds)):
            pods.append(
                {
                    "namespace": "kube-system",
                    "name": f"{ds}-{i:04d}",
                    "node": node,
                    "owner_kind": "DaemonSet",
                    "owner_name": ds,
                    "phase": "Running",
                    "host_network": True,
                    "dns_policy": "Default" if ds == "node-local-dns" else "ClusterFirst",
                    "dns_config": None,
                    "images": [_ds_image(ds)],
                    "resolver_annotation": None,
                }
            )
    return pods, owners


DS_IMAGES = {
    "kube-proxy": "registry.k8s.io/kube-proxy:v1.29.4",
    "node-local-dns": "registry.k8s.io/dns/k8s-dns-node-cache:1.26.4",
    "cilium": "quay.io/cilium/cilium:v1.15.6",
    "calico-node": "docker.io/calico/node:v3.27.3",
    "aws-node": "602401143452.dkr.ecr.us-east-1.amazonaws.com/amazon-k8s-cni:v1.18.1",
}


def _ds_image(ds: str) -> str:
    return DS_IMAGES.get(ds, f"registry.example.com/kube-system/{ds}:1.0")


def _ds_nodes(c: DemoCluster, names: list[str], ds: str) -> list[str]:
    return names[c.nodelocal_missing :] if ds == "node-local-dns" else names


def _daemonset_facts(c: DemoCluster, names: list[str]) -> list[dict]:
    """What the collector records per kube-system DaemonSet."""
    out = []
    for ds in c.daemonsets:
        nodelocal = ds == "node-local-dns"
        out.append(
            {
                "name": ds,
                "labels": {"k8s-app": ds},
                "images": [_ds_image(ds)],
                "flags": ["-localip", "-conf", "-upstreamsvc"] if nodelocal else [],
                "localip": "169.254.20.10,10.0.0.10" if nodelocal else None,
                "configmaps": ["node-local-dns"] if nodelocal else [],
                "ready_nodes": _ds_nodes(c, names, ds),
            }
        )
    return out


def _series(rng: random.Random, base: float, noise: float, n: int) -> list[float]:
    return [
        round(max(0.0, base * (1 + 0.25 * math.sin(i / 11.0)) + rng.gauss(0, noise)), 3) for i in range(n)
    ]


def _metrics(c: DemoCluster, nodes: list[dict], rng: random.Random) -> dict:
    n = int(WINDOW_S / STEP_S)
    start = END_EPOCH - WINDOW_S
    qps = _series(rng, c.qps, c.qps * 0.05, n)
    nx_share, sf_share = 0.08 + rng.random() * 0.1, 0.002 + rng.random() * 0.004
    if c.servfail_share is not None:
        sf_share = c.servfail_share
    metrics = metrics_record(
        source="demo",
        window_s=WINDOW_S,
        note="demo data",
        coredns={
            "qps": round(sum(qps) / n, 1),
            "p50_ms": round(0.4 + rng.random() * 0.4, 2),
            "p99_ms": round(8 + rng.random() * 20, 1),
            "share_over_1s": round(rng.random() * 0.0008, 5),
            "servfail_share": round(sf_share, 4),
            "nxdomain_share": round(nx_share, 3),
            "forward_p99_ms": round(25 + rng.random() * 40, 1),
            "version": c.coredns_version,
        },
        coredns_series={
            "start": start,
            "step": STEP_S,
            "metrics": {
                "qps": qps,
                "p50_ms": _series(rng, 0.6, 0.05, n),
                "p99_ms": _series(rng, 15.0, 2.0, n),
                "forward_p99_ms": _series(rng, 40.0, 6.0, n),
                "rcode:NOERROR": [round(q * (1 - nx_share - sf_share), 2) for q in qps],
                "rcode:NXDOMAIN": [round(q * nx_share, 2) for q in qps],
                "rcode:SERVFAIL": [round(q * sf_share, 3) for q in qps],
            },
        },
    )
    if not c.conntrack:
        metrics["conntrack"] = {
            "reason": "node-exporter conntrack stats not found for this cluster",
            "nodes": {},
        }
        return metrics
    per_node = {}
    for node in nodes:
        old = node["kernel_version"].startswith(("3.", "4."))
        per = c.insert_failed_per_node if old else 0.0
        inc = round(max(0.0, rng.gauss(per, per * 0.3))) if per else 0.0
        rate = (
            [
                round(
                    max(
                        0.0,
                        inc / WINDOW_S * (1 + 0.6 * math.sin(i / 7.0)) + rng.gauss(0, inc / WINDOW_S * 0.2),
                    ),
                    5,
                )
                for i in range(n)
            ]
            if inc
            else [0.0] * n
        )
        per_node[node["name"]] = {
            "insert_failed_increase": inc,
            "drop_increase": round(inc * 0.7) if old and inc else 0.0,
            "entries": float(rng.randint(8000, 60000)),
            "entries_limit": 262144.0,
            "insert_failed_rate": rate,
        }
    metrics["conntrack"] = {"reason": None, "start": start, "step": STEP_S, "nodes": per_node}
    return metrics


def _cluster(c: DemoCluster, rng: random.Random) -> dict:
    if c.failed:
        return cluster_record(
            c.name,
            provider=c.provider,
            reason=c.failed,
            collected_at=GENERATED_AT,
            metrics=metrics_record(note="not collected: the cluster could not be read"),
        )
    nodes = _nodes(c, rng)
    pods, owners = _pods(c, nodes, rng)
    names = [n["name"] for n in nodes]
    configmaps = {"coredns": {"keys": ["Corefile"], "link_local": None}}
    if c.proxy_mode:
        configmaps["kube-proxy"] = {"keys": ["config.conf", "kubeconfig.conf"], "link_local": None}
    if "node-local-dns" in c.daemonsets:
        configmaps["node-local-dns"] = {"keys": ["Corefile"], "link_local": "169.254.20.10"}
    return cluster_record(
        c.name,
        status="ok",
        provider=c.provider,
        server_version=c.server_version,
        collected_at=GENERATED_AT,
        nodes=nodes,
        pods=pods,
        owners=owners,
        dns={
            "service_ip": "10.0.0.10",
            "ready_endpoints": c.endpoints,
            "coredns_version": c.coredns_version,
            "coredns_replicas": c.endpoints,
            "corefile_facts": corefile.facts(COREFILE),
            "kube_proxy_mode": c.proxy_mode,
            "kube_proxy_present": "kube-proxy" in c.daemonsets,
            "service_ip_families": ["IPv4"],
            "daemonsets": list(c.daemonsets),
            "daemonset_facts": _daemonset_facts(c, names),
            "configmap_facts": configmaps,
            "cilium_config": c.cilium,
            "calico_bpf": False if "calico-node" in c.daemonsets else None,
        },
        metrics=_metrics(c, nodes, rng),
    )


COREFILE = """.:53 {
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    prometheus :9153
    forward . /etc/resolv.conf {
       max_concurrent 1000
    }
    cache 30
    loop
    reload
    loadbalance
}
"""


def demo_snapshot(seed: int = 7) -> dict[str, Any]:
    """The demo fleet as a snapshot (same seed, same bytes)."""
    rng = random.Random(seed)
    snap = new_snapshot((_cluster(c, rng) for c in CLUSTERS), source="demo")
    snap["generated_at"] = GENERATED_AT
    return snap
