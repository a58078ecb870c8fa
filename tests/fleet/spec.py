"""The test fleet as data: what each cluster contains, so tests compute their expectations from it.

``FLEET`` is the default three-cluster fleet. Every object the seeder creates and every series the
metrics generator writes is derived from these dataclasses (by ``tests.fleet.objects`` and
``tests.fleet.metrics``), and ``expected(spec)`` summarises what a correct collector must read back.

Conventions, relied on by the other modules:

- Nodes are numbered across the cluster's pools in order: ``<cluster>-<pool>-<i>`` (i from 0). A
  pool with ``label_key=None`` carries no pool label (the collector falls back to the instance type).
- Node ``k`` (0-based across the cluster) has InternalIP ``<node_cidr_prefix>.<k + 10>`` and pod CIDR
  ``<pod_prefix>.<k>.0/24``.
- Every address a server can be made to dial is loopback (127.0.0.0/8): pod IPs (pod proxy), node
  InternalIPs (node proxy, logs, exec; the API server prefers InternalIP). ``_check`` refuses anything
  else. The API server refuses loopback EndpointSlice addresses, and nothing dials those, so kube-dns
  endpoints list ``endpoint_ip(pod IP)`` (10.x.y.z) instead. Service ClusterIPs are never dialed.
  The running fleet moves the ready CoreDNS pods into a network namespace it creates, with a real
  CoreDNS behind them (``tests.fleet.coredns``): the API server will not proxy to loopback.
- Pods of a workload are spread round-robin over the nodes the workload may use (``pool`` restricts
  it to one pool; DaemonSets get one pod per eligible node).
- Every workload container carries ``env`` with ``FAKE_SECRET_ENV`` so tests can prove the collector
  never stores env values.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from typing import Any

FAKE_SECRET_NAME = "DB_PASSWORD"
FAKE_SECRET_VALUE = "hunter2-do-not-leak"
RESOLVER_ANNOTATION = "dnsfleet.io/resolver"
SERVER_VERSION = "v1.34.4"  # what the built kube-apiserver reports (tests/fleet/build.sh)

NODE_CACHE_IMAGE = "registry.k8s.io/dns/k8s-dns-node-cache:1.26.4"

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "CronJob", "Job", "Pod")


@dataclass(frozen=True)
class NodePool:
    name: str
    count: int
    kernel: str  # status.nodeInfo.kernelVersion
    os_image: str  # status.nodeInfo.osImage
    runtime: str  # status.nodeInfo.containerRuntimeVersion
    kubelet: str  # status.nodeInfo.kubeletVersion
    instance_type: str
    zones: tuple[str, ...]
    label_key: str | None  # agentpool | eks.amazonaws.com/nodegroup | cloud.google.com/gke-nodepool | None
    architecture: str = "amd64"
    cpu: str = "4"
    memory: str = "16Gi"
    max_pods: int = 110
    ready: bool = True
    insert_failed_per_min: float | None = None  # this pool's conntrack growth; None: the cluster's


@dataclass(frozen=True)
class Container:
    name: str
    image: str


@dataclass(frozen=True)
class Workload:
    """One owner of pods. ``replicas`` is pods per controller (per Job for a CronJob)."""

    kind: str  # Deployment | StatefulSet | DaemonSet | CronJob | Job | Pod
    namespace: str
    name: str
    containers: tuple[Container, ...]
    replicas: int = 1  # ignored for DaemonSet (one pod per eligible node) and Pod (always 1)
    jobs: int = 1  # CronJob only: Jobs created; all but the last have Succeeded pods
    dns_options: tuple[tuple[str, str | None], ...] = ()  # pod template dnsConfig.options
    nameservers: tuple[str, ...] = ()  # dnsConfig.nameservers (dnsPolicy None needs one)
    dns_policy: str = "ClusterFirst"
    host_network: bool = False
    resolver_annotation: str | None = None  # template annotation dnsfleet.io/resolver
    labels: tuple[tuple[str, str], ...] = ()
    pool: str | None = None  # restrict placement to one node pool
    scheduled: bool = True  # False: pods have no nodeName and stay Pending
    not_ready: int = 0  # this many pods are Running but not Ready (counted from the last pod)
    skip_nodes: int = 0  # DaemonSet only: the last N eligible nodes have no pod (rollout stuck)

    @property
    def images(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c.image for c in self.containers))

    def dns_options_text(self) -> str:
        return ",".join(n if v is None else f"{n}:{v}" for n, v in self.dns_options)


@dataclass(frozen=True)
class ClusterSpec:
    name: str  # also the kubeconfig context name and the Prometheus `cluster` label
    provider: str  # aks | eks | gke | on-prem
    pools: tuple[NodePool, ...]
    service_cidr: str
    dns_service_ip: str
    node_cidr_prefix: str  # first three octets of node InternalIPs (127.x.y: the API server dials them)
    pod_prefix: str  # first two octets of pod IPs (127.x: the API server's pod proxy dials them)
    coredns_image: str
    coredns_version: str  # as coredns_build_info reports it (no leading v)
    coredns_replicas: int
    coredns_ready: int  # ready kube-dns endpoints (<= replicas; the rest are Running, not Ready)
    kube_proxy: str | None  # "kube-proxy" (kubeadm/AKS ConfigMap) | "kube-proxy-config" (EKS) | None
    kube_proxy_mode_literal: str  # the `mode:` string written in the ConfigMap ("" means iptables)
    cni: str  # cilium | calico | aws-vpc-cni
    cni_daemonset: str  # cilium | calico-node | aws-node
    cni_image: str
    kube_proxy_replacement: bool = False  # cilium-config kube-proxy-replacement
    nodelocal: bool = False
    nodelocal_ip: str = "169.254.20.10"
    nodelocal_missing: int = 0  # the last N nodes have no node-local-dns pod
    nodelocal_name: str = "node-local-dns"  # DaemonSet + ConfigMap name (a Helm chart prefixes it)
    nodelocal_labels: tuple[tuple[str, str], ...] = (("k8s-app", "node-local-dns"),)
    cni_dns_policy: str = "ClusterFirstWithHostNet"  # the CNI agent's dnsPolicy (calico-node: ClusterFirst)
    coredns_dark: int = 0  # the last N ready CoreDNS pods have no CoreDNS behind their IP (scrape fails)
    conntrack_metrics: bool = True  # node-exporter conntrack series exist for every node
    insert_failed_per_min: float = 0.0  # per node; > 0 on the legacy-kernel cluster, 0 = flat
    qps: float = 100.0  # total CoreDNS requests per second across ready pods
    nxdomain_share: float = 0.2
    servfail_share: float = 0.001
    latency_median_ms: float = 1.0  # CoreDNS server-side latency median
    slow_share: float = 0.0005  # share of requests slower than 1 s server-side
    forward_share: float = 0.3  # share of requests forwarded upstream (cache misses, external names)
    upstream_dns: str = "10.0.0.2:53"  # the forward plugin's `to` label
    workloads: tuple[Workload, ...] = ()

    @property
    def node_count(self) -> int:
        return sum(p.count for p in self.pools)

    @property
    def kube_proxy_mode(self) -> str:
        """What a collector should report: iptables for an empty mode, none without kube-proxy."""
        if self.kube_proxy is None:
            return "none"
        return self.kube_proxy_mode_literal or "iptables"

    def all_workloads(self) -> tuple[Workload, ...]:
        """System workloads (CoreDNS, kube-proxy, CNI, NodeLocal DNSCache) plus the spec's own."""
        return system_workloads(self) + self.workloads


def _c(image: str, name: str = "app") -> tuple[Container, ...]:
    return (Container(name, image),)


def system_workloads(spec: ClusterSpec) -> tuple[Workload, ...]:
    ks = "kube-system"
    out = [
        Workload(
            "Deployment",
            ks,
            "coredns",
            _c(spec.coredns_image, "coredns"),
            replicas=spec.coredns_replicas,
            dns_policy="Default",
            labels=(("k8s-app", "kube-dns"),),
            not_ready=spec.coredns_replicas - spec.coredns_ready,
        ),
        Workload(
            "DaemonSet",
            ks,
            spec.cni_daemonset,
            _c(spec.cni_image, spec.cni_daemonset.split("-")[0]),
            host_network=True,
            dns_policy=spec.cni_dns_policy,
            labels=(("k8s-app", spec.cni_daemonset),),
        ),
    ]
    if spec.kube_proxy is not None:
        out.append(
            Workload(
                "DaemonSet",
                ks,
                "kube-proxy",
                _c(f"registry.k8s.io/kube-proxy:{SERVER_VERSION}", "kube-proxy"),
                host_network=True,
                labels=(("k8s-app", "kube-proxy"),),
            )
        )
    if spec.nodelocal:
        out.append(
            Workload(
                "DaemonSet",
                ks,
                spec.nodelocal_name,
                _c(NODE_CACHE_IMAGE, "node-cache"),
                host_network=True,
                dns_policy="Default",
                labels=spec.nodelocal_labels,
                skip_nodes=spec.nodelocal_missing,
            )
        )
    if spec.cni == "cilium":
        out.append(
            Workload(
                "Deployment",
                ks,
                "cilium-operator",
                _c("quay.io/cilium/operator-generic:v1.15.6", "cilium-operator"),
                host_network=True,
                labels=(("io.cilium/app", "operator"),),
            )
        )
    return tuple(out)


# ---------------------------------------------------------------------------------------------------
# The default fleet.

_AKS_KUBELET = "v1.34.4"
_EKS_KUBELET = "v1.34.4-eks-3025e55"
_GKE_KUBELET = "v1.34.4-gke.1193000"

_NDOTS2 = (("ndots", "2"),)

AKS_LEGACY = ClusterSpec(
    name="aks-legacy",
    provider="aks",
    pools=(
        NodePool(
            "nodepool1",
            3,
            kernel="4.15.0-1029-azure",
            os_image="Ubuntu 18.04.1 LTS",
            runtime="docker://3.0.4",
            kubelet=_AKS_KUBELET,
            instance_type="Standard_DS2_v2",
            zones=("eastus-1", "eastus-2", "eastus-3"),
            label_key="agentpool",
            cpu="2",
            memory="7Gi",
        ),
        NodePool(
            "nodepool2",
            1,
            kernel="4.15.0-1030-azure",
            os_image="Ubuntu 18.04.1 LTS",
            runtime="docker://3.0.4",
            kubelet=_AKS_KUBELET,
            instance_type="Standard_DS3_v2",
            zones=("eastus-1",),
            label_key="agentpool",
            cpu="4",
            memory="14Gi",
        ),
    ),
    service_cidr="10.0.0.0/16",
    dns_service_ip="10.0.0.10",
    node_cidr_prefix="127.240.0",
    pod_prefix="127.244",
    coredns_image="mcr.microsoft.com/oss/kubernetes/coredns:v1.8.7",
    coredns_version="1.8.7",
    coredns_replicas=2,
    coredns_ready=2,
    kube_proxy="kube-proxy",
    kube_proxy_mode_literal="",  # kubeadm-style empty mode: iptables
    cni="calico",
    cni_daemonset="calico-node",
    cni_image="mcr.microsoft.com/oss/calico/node:v3.8.9",
    conntrack_metrics=True,
    insert_failed_per_min=4.0,
    qps=180.0,
    nxdomain_share=0.35,
    servfail_share=0.004,
    latency_median_ms=2.0,
    slow_share=0.01,
    upstream_dns="168.63.129.16:53",
    workloads=(
        Workload("Deployment", "shop", "checkout", _c("debian:12-slim"), replicas=3, dns_options=_NDOTS2),
        Workload("Deployment", "shop", "storefront", _c("nginx:1.25"), replicas=6),
        Workload("Deployment", "shop", "cart", _c("alpine:3.19"), replicas=4),
        Workload(
            "Deployment",
            "shop",
            "catalog",
            _c("python:3.12-slim"),
            replicas=3,
            dns_options=(("single-request-reopen", None),),
        ),
        Workload("StatefulSet", "shop", "redis", _c("redis:7-alpine"), replicas=3),
        Workload("StatefulSet", "shop", "postgres", _c("postgres:16"), replicas=1),
        Workload(
            "Deployment",
            "legacy",
            "invoice",
            _c("registry.example.com/finance/invoice:2.3.1"),
            replicas=2,
            resolver_annotation="musl",
        ),
        Workload("CronJob", "batch", "nightly-report", _c("ubuntu:22.04"), replicas=1, jobs=2),
        Workload("Pod", "default", "debug-shell", _c("ubuntu:22.04", "shell"), dns_policy="Default"),
    ),
)

# The big cluster: > 1,000 pods so list pagination (limit/continue) is exercised.
EKS_PROD = ClusterSpec(
    name="eks-prod",
    provider="eks",
    pools=(
        NodePool(
            "ng-general",
            12,
            kernel="5.10.215-203.850.amzn2.x86_64",
            os_image="Amazon Linux 2",
            runtime="containerd://1.7.11",
            kubelet=_EKS_KUBELET,
            instance_type="m5.4xlarge",
            zones=("us-east-1a", "us-east-1b", "us-east-1c"),
            label_key="eks.amazonaws.com/nodegroup",
            cpu="16",
            memory="64Gi",
            max_pods=234,
        ),
        NodePool(
            "ng-batch",
            4,
            kernel="5.10.215-203.850.amzn2.x86_64",
            os_image="Amazon Linux 2",
            runtime="containerd://1.7.11",
            kubelet=_EKS_KUBELET,
            instance_type="c5.4xlarge",
            zones=("us-east-1a", "us-east-1b"),
            label_key="eks.amazonaws.com/nodegroup",
            cpu="16",
            memory="32Gi",
            max_pods=234,
        ),
    ),
    service_cidr="172.20.0.0/16",
    dns_service_ip="172.20.0.10",
    node_cidr_prefix="127.168.10",
    pod_prefix="127.169",
    coredns_image="602401143452.dkr.ecr.us-east-1.amazonaws.com/eks/coredns:v1.11.1-eksbuild.9",
    coredns_version="1.11.1",
    coredns_replicas=3,
    coredns_ready=2,
    coredns_dark=1,  # one ready pod with nothing listening: the scrape reads the other, names this one
    kube_proxy="kube-proxy-config",
    kube_proxy_mode_literal="ipvs",
    cni="aws-vpc-cni",
    cni_daemonset="aws-node",
    cni_image="602401143452.dkr.ecr.us-east-1.amazonaws.com/amazon-k8s-cni:v1.18.1-eksbuild.3",
    nodelocal=True,
    nodelocal_missing=1,
    conntrack_metrics=True,
    insert_failed_per_min=0.0,
    qps=2400.0,
    nxdomain_share=0.55,
    servfail_share=0.0005,
    latency_median_ms=0.8,
    upstream_dns="192.168.0.2:53",
    workloads=(
        Workload("Deployment", "shop", "checkout", _c("debian:12-slim"), replicas=40, dns_options=_NDOTS2),
        Workload("Deployment", "shop", "storefront", _c("nginx:1.25"), replicas=440, pool="ng-general"),
        Workload("Deployment", "shop", "cart", _c("node:20-alpine"), replicas=150),
        Workload(
            "Deployment",
            "shop",
            "catalog",
            _c("eclipse-temurin:21-jre"),
            replicas=120,
            dns_options=(("use-vc", None),),
        ),
        Workload("Deployment", "shop", "search", _c("golang:1.22"), replicas=100),
        Workload("Deployment", "shop", "payments", _c("gcr.io/distroless/static:nonroot"), replicas=80),
        Workload(
            "Deployment",
            "shop",
            "recommendations",
            (Container("app", "python:3.12-slim"), Container("envoy", "envoyproxy/envoy:v1.29.1")),
            replicas=100,
            dns_options=(("timeout", "2"), ("attempts", "3")),
        ),
        Workload(
            "Deployment",
            "shop",
            "reviews",
            _c("gcr.io/distroless/base-debian12"),
            replicas=60,
            dns_options=(("ndots", "2"), ("single-request-reopen", None)),
        ),
        Workload("StatefulSet", "data", "kafka", _c("eclipse-temurin:17-jre"), replicas=6),
        Workload("StatefulSet", "data", "redis", _c("redis:7-alpine"), replicas=6),
        Workload(
            "Deployment",
            "ingress",
            "ingress-nginx-controller",
            _c("registry.k8s.io/ingress-nginx/controller:v1.10.1"),
            replicas=4,
            host_network=True,
            dns_policy="ClusterFirstWithHostNet",
        ),
        Workload(
            "DaemonSet",
            "monitoring",
            "node-exporter",
            _c("quay.io/prometheus/node-exporter:v1.7.0", "node-exporter"),
            host_network=True,
        ),
        Workload(
            "StatefulSet", "monitoring", "prometheus", _c("quay.io/prometheus/prometheus:v2.51.0"), replicas=2
        ),
        Workload("CronJob", "batch", "etl-hourly", _c("ubuntu:22.04"), replicas=10, jobs=3, pool="ng-batch"),
        Workload(
            "CronJob",
            "batch",
            "report-daily",
            _c("registry.example.com/reports/daily:1.4"),
            resolver_annotation="musl",
            pool="ng-batch",
        ),
        Workload(
            "Pod",
            "default",
            "dns-probe",
            _c("alpine:3.19", "probe"),
            dns_policy="None",
            nameservers=("172.20.0.10",),
            dns_options=(("ndots", "1"),),
        ),
        Workload("Pod", "default", "pending-debug", _c("ubuntu:22.04", "shell"), scheduled=False),
    ),
)

CILIUM_EDGE = ClusterSpec(
    name="cilium-edge",
    provider="gke",
    pools=(
        NodePool(
            "default-pool",
            3,
            kernel="5.15.0-1057-gke",
            os_image="Ubuntu 22.04.4 LTS",
            runtime="containerd://1.7.12",
            kubelet=_GKE_KUBELET,
            instance_type="e2-standard-4",
            zones=("europe-west1-b", "europe-west1-c", "europe-west1-d"),
            label_key="cloud.google.com/gke-nodepool",
        ),
        NodePool(
            "edge",
            2,
            kernel="6.1.0-18-amd64",
            os_image="Debian GNU/Linux 12 (bookworm)",
            runtime="containerd://1.6.20",
            kubelet=_GKE_KUBELET,
            instance_type="n2-standard-2",
            zones=("europe-west1-b",),
            label_key=None,  # self-managed edge nodes: no pool label, pool falls back to instance type
            cpu="2",
            memory="8Gi",
        ),
    ),
    service_cidr="10.96.0.0/16",
    dns_service_ip="10.96.0.10",
    node_cidr_prefix="127.132.0",
    pod_prefix="127.60",
    coredns_image="registry.k8s.io/coredns/coredns:v1.11.3",
    coredns_version="1.11.3",
    coredns_replicas=1,
    coredns_ready=1,
    kube_proxy=None,
    kube_proxy_mode_literal="",
    cni="cilium",
    cni_daemonset="cilium",
    cni_image="quay.io/cilium/cilium:v1.15.6",
    kube_proxy_replacement=True,
    conntrack_metrics=False,  # "not collected" must be exercised
    qps=45.0,
    nxdomain_share=0.15,
    servfail_share=0.0,
    upstream_dns="169.254.169.254:53",
    workloads=(
        Workload("Deployment", "shop", "checkout", _c("debian:12-slim"), replicas=3, dns_options=_NDOTS2),
        Workload("Deployment", "shop", "storefront", _c("nginx:1.25"), replicas=4),
        Workload(
            "Deployment",
            "shop",
            "cart",
            _c("alpine:3.19"),
            replicas=2,
            dns_options=(("single-request-reopen", None),),  # a no-op on musl (R5)
        ),
        Workload("Deployment", "edge", "gateway", _c("gcr.io/distroless/base-debian12"), replicas=2),
        Workload("DaemonSet", "edge", "edge-agent", _c("alpine:3.19", "agent"), pool="edge"),
        Workload("Job", "edge", "migrate-db", _c("golang:1.22", "migrate")),
        Workload("Pod", "edge", "toolbox", _c("ubuntu:22.04", "toolbox")),
    ),
)

FLEET: tuple[ClusterSpec, ...] = (AKS_LEGACY, EKS_PROD, CILIUM_EDGE)


def small_cluster(name: str = "scratch") -> ClusterSpec:
    """A tiny cluster for destructive tests (stopping its apiserver never touches the shared fleet)."""
    return ClusterSpec(
        name=name,
        provider="on-prem",
        pools=(
            NodePool(
                "workers",
                2,
                kernel="6.1.0-18-amd64",
                os_image="Debian GNU/Linux 12 (bookworm)",
                runtime="containerd://1.6.20",
                kubelet=SERVER_VERSION,
                instance_type="vm-4c16g",
                zones=("dc1",),
                label_key=None,
            ),
        ),
        service_cidr="10.96.0.0/16",
        dns_service_ip="10.96.0.10",
        node_cidr_prefix="127.10.0",
        pod_prefix="127.61",
        coredns_image="registry.k8s.io/coredns/coredns:v1.11.1",
        coredns_version="1.11.1",
        coredns_replicas=2,
        coredns_ready=2,
        kube_proxy="kube-proxy",
        kube_proxy_mode_literal="iptables",
        cni="calico",
        cni_daemonset="calico-node",
        cni_image="docker.io/calico/node:v3.27.3",
        conntrack_metrics=True,
        qps=20.0,
        workloads=(
            Workload("Deployment", "shop", "checkout", _c("debian:12-slim"), replicas=2, dns_options=_NDOTS2),
            Workload("Deployment", "shop", "cart", _c("alpine:3.19"), replicas=2),
        ),
    )


# ---------------------------------------------------------------------------------------------------
# Evidence clusters (tests/test_evidence_fleet.py): who uses cluster DNS (D8), NodeLocal DNSCache under
# a chart prefix, conntrack evidence against the kernel table (D6, D7), IPVS on 5.15, Go on alpine.


def _ubuntu_pool(name: str, count: int, kernel: str, os_image: str, **kw: Any) -> NodePool:
    return NodePool(
        name,
        count,
        kernel=kernel,
        os_image=os_image,
        runtime="containerd://1.7.12",
        kubelet=SERVER_VERSION,
        instance_type="vm-8c32g",
        zones=("dc2",),
        label_key="node.kubernetes.io/pool",
        **kw,
    )


# Only kube-system hostNetwork DaemonSets (kube-proxy, calico-node with its default ClusterFirst,
# NodeLocal DNSCache installed by a Helm chart under a prefixed name and the chart's labels) plus a
# hostNetwork node-exporter: no pod uses cluster DNS, so the cluster is not applicable, not unknown.
DAEMONSETS_ONLY = ClusterSpec(
    name="daemonsets-only",
    provider="on-prem",
    pools=(_ubuntu_pool("workers", 3, "4.15.0-1029-azure", "Ubuntu 18.04.6 LTS"),),
    service_cidr="10.98.0.0/16",
    dns_service_ip="10.98.0.10",
    node_cidr_prefix="127.98.0",
    pod_prefix="127.99",
    coredns_image="registry.k8s.io/coredns/coredns:v1.11.1",
    coredns_version="1.11.1",
    coredns_replicas=2,
    coredns_ready=2,
    kube_proxy="kube-proxy",
    kube_proxy_mode_literal="iptables",
    cni="calico",
    cni_daemonset="calico-node",
    cni_image="docker.io/calico/node:v3.27.3",
    cni_dns_policy="ClusterFirst",
    nodelocal=True,
    nodelocal_name="dns-cache-node-local-dns",
    nodelocal_labels=(
        ("app.kubernetes.io/name", "node-local-dns"),
        ("app.kubernetes.io/instance", "dns-cache"),
    ),
    nodelocal_missing=1,
    conntrack_metrics=False,
    qps=20.0,
    workloads=(
        Workload(
            "DaemonSet",
            "monitoring",
            "node-exporter",
            _c("quay.io/prometheus/node-exporter:v1.7.0", "node-exporter"),
            host_network=True,
        ),
    ),
)

# IPVS; a 5.15 pool whose insert_failed/drop grow (D6: exposed by evidence although the table says
# fixed), a 5.15 pool with flat counters (IPVS on >= 5.6: race 3 unknown), a busy 5.4 pool with flat
# counters while CoreDNS answers 3 % SERVFAIL (D7); Go services on alpine, annotated and not.
EVIDENCE_MIX = ClusterSpec(
    name="evidence-mix",
    provider="on-prem",
    pools=(
        _ubuntu_pool("dropping", 2, "5.15.0-91-generic", "Ubuntu 22.04.3 LTS", insert_failed_per_min=3.0),
        _ubuntu_pool("ipvs-new", 2, "5.15.0-91-generic", "Ubuntu 22.04.3 LTS"),
        _ubuntu_pool("old", 2, "5.4.0-150-generic", "Ubuntu 20.04.6 LTS"),
    ),
    service_cidr="10.97.0.0/16",
    dns_service_ip="10.97.0.10",
    node_cidr_prefix="127.97.0",
    pod_prefix="127.96",
    coredns_image="registry.k8s.io/coredns/coredns:v1.11.1",
    coredns_version="1.11.1",
    coredns_replicas=2,
    coredns_ready=2,
    kube_proxy="kube-proxy",
    kube_proxy_mode_literal="ipvs",
    cni="calico",
    cni_daemonset="calico-node",
    cni_image="docker.io/calico/node:v3.27.3",
    cni_dns_policy="ClusterFirst",
    conntrack_metrics=True,
    qps=400.0,
    servfail_share=0.03,
    workloads=(
        Workload("Deployment", "shop", "api-dropping", _c("debian:12-slim"), replicas=2, pool="dropping"),
        Workload("Deployment", "shop", "api-ipvs", _c("debian:12-slim"), replicas=2, pool="ipvs-new"),
        Workload("Deployment", "shop", "api-old", _c("debian:12-slim"), replicas=4, pool="old"),
        Workload("Deployment", "go", "gw-annotated", _c("alpine:3.19"), replicas=2, resolver_annotation="go"),
        Workload("Deployment", "go", "gw-plain", _c("alpine:3.19"), replicas=2, pool="old"),
        Workload(
            "Deployment",
            "go",
            "gw-cgo",
            _c("alpine:3.19"),
            replicas=2,
            resolver_annotation="go-cgo",
            pool="old",
        ),
    ),
)

EVIDENCE_FLEET: tuple[ClusterSpec, ...] = (DAEMONSETS_ONLY, EVIDENCE_MIX)


# ---------------------------------------------------------------------------------------------------
# Derived facts (shared by the seeder, the metrics generator and expected()).


@dataclass(frozen=True)
class NodeFacts:
    name: str
    index: int
    pool: NodePool
    zone: str
    ip: str
    pod_cidr: str


def nodes(spec: ClusterSpec) -> list[NodeFacts]:
    out: list[NodeFacts] = []
    k = 0
    for pool in spec.pools:
        for i in range(pool.count):
            out.append(
                NodeFacts(
                    name=f"{spec.name}-{pool.name}-{i}",
                    index=k,
                    pool=pool,
                    zone=pool.zones[i % len(pool.zones)],
                    ip=f"{spec.node_cidr_prefix}.{k + 10}",
                    pod_cidr=f"{spec.pod_prefix}.{k}.0/24",
                )
            )
            k += 1
    return out


_NODE_INDEX: dict[int, tuple[ClusterSpec, dict[str, NodeFacts]]] = {}


def node_by_name(spec: ClusterSpec, name: str) -> NodeFacts:
    """One node's facts by name (an index, not a scan: bench-size specs have thousands of nodes).

    Keyed by identity: hashing a frozen spec walks all its workloads (ms for thousands of them)."""
    hit = _NODE_INDEX.get(id(spec))
    if hit is None or hit[0] is not spec:
        if len(_NODE_INDEX) >= 16:
            _NODE_INDEX.clear()
        hit = _NODE_INDEX[id(spec)] = (spec, {n.name: n for n in nodes(spec)})
    return hit[1][name]


def eligible_nodes(spec: ClusterSpec, w: Workload) -> list[NodeFacts]:
    ns = nodes(spec)
    return [n for n in ns if w.pool is None or n.pool.name == w.pool]


@dataclass(frozen=True)
class PodFacts:
    """One pod the seeder creates. ``owner`` is (kind, name) of the direct owner, or None."""

    workload: Workload
    name: str
    node: str | None
    phase: str  # Running | Succeeded | Pending
    ready: bool
    owner: tuple[str, str] | None


def workload_pods(spec: ClusterSpec, w: Workload) -> list[PodFacts]:
    """Every pod of a workload, with names, placement and phase (deterministic)."""
    elig = eligible_nodes(spec, w)
    out: list[PodFacts] = []

    def place(i: int) -> str | None:
        if not w.scheduled or not elig:
            return None
        return elig[(i + _offset(w)) % len(elig)].name

    if w.kind == "Deployment":
        rs = rs_name(spec.name, w)
        for i in range(w.replicas):
            out.append(
                PodFacts(w, f"{rs}-{pod_suffix(rs, i)}", place(i), "Running", True, ("ReplicaSet", rs))
            )
    elif w.kind == "StatefulSet":
        for i in range(w.replicas):
            out.append(PodFacts(w, f"{w.name}-{i}", place(i), "Running", True, ("StatefulSet", w.name)))
    elif w.kind == "DaemonSet":
        targets = elig[: len(elig) - w.skip_nodes] if w.skip_nodes else elig
        for i, n in enumerate(targets):
            out.append(
                PodFacts(
                    w, f"{w.name}-{pod_suffix(w.name, i)}", n.name, "Running", True, ("DaemonSet", w.name)
                )
            )
    elif w.kind == "CronJob":
        for j in range(w.jobs):
            job = job_name(w, j)
            last = j == w.jobs - 1
            for i in range(w.replicas):
                out.append(
                    PodFacts(
                        w,
                        f"{job}-{pod_suffix(job, i)}",
                        place(j * w.replicas + i),
                        "Running" if last else "Succeeded",
                        last,
                        ("Job", job),
                    )
                )
    elif w.kind == "Job":
        for i in range(w.replicas):
            out.append(
                PodFacts(w, f"{w.name}-{pod_suffix(w.name, i)}", place(i), "Running", True, ("Job", w.name))
            )
    elif w.kind == "Pod":
        scheduled = w.scheduled and bool(elig)
        out.append(PodFacts(w, w.name, place(0), "Running" if scheduled else "Pending", scheduled, None))
    else:
        raise ValueError(f"unknown workload kind {w.kind!r}")
    if w.not_ready:
        for k in range(len(out) - w.not_ready, len(out)):
            p = out[k]
            out[k] = PodFacts(p.workload, p.name, p.node, p.phase, False, p.owner)
    return out


_ALNUM = "bcdfghjklmnpqrstvwxz2456789"  # the alphabet Kubernetes uses for generated name suffixes


def _hash(text: str, n: int) -> str:
    digest = hashlib.sha256(text.encode()).digest()
    return "".join(_ALNUM[b % len(_ALNUM)] for b in digest[:n])


def rs_name(cluster: str, w: Workload) -> str:
    """ReplicaSet name of a Deployment: ``<deployment>-<pod-template-hash>``."""
    return f"{w.name}-{pod_template_hash(cluster, w)}"


def pod_template_hash(cluster: str, w: Workload) -> str:
    return _hash(f"{cluster}/{w.namespace}/{w.name}", 10)


def pod_suffix(owner: str, i: int) -> str:
    return _hash(f"{owner}#{i}", 5)


def job_name(w: Workload, j: int) -> str:
    """Job j of a CronJob, named like the controller does (scheduled minute since epoch)."""
    return f"{w.name}-{29390400 + 60 * j}"


def _offset(w: Workload) -> int:
    """Spread different workloads' first pods over different nodes (stable across runs)."""
    return sum(map(ord, f"{w.namespace}/{w.name}"))


def all_pods(spec: ClusterSpec) -> list[PodFacts]:
    return [p for w in spec.all_workloads() for p in workload_pods(spec, w)]


def workload_id(spec: ClusterSpec, w: Workload) -> str:
    return f"{spec.name}/{w.namespace}/{w.kind}/{w.name}"


def coredns_pods(spec: ClusterSpec) -> list[PodFacts]:
    w = system_workloads(spec)[0]
    return workload_pods(spec, w)


def pod_ip(spec: ClusterSpec, pod: PodFacts, seq: int) -> str | None:
    """IP of a pod: the node IP for hostNetwork pods, else from the node's pod CIDR."""
    if pod.node is None or pod.phase == "Pending":
        return None
    node = node_by_name(spec, pod.node)
    if pod.workload.host_network:
        return node.ip
    return f"{spec.pod_prefix}.{node.index}.{seq % 250 + 2}"


def endpoint_ip(pod_ip: str) -> str:
    """The address kube-dns EndpointSlices list for a pod: the API server refuses loopback endpoint
    addresses and nothing dials them, so the pod's 127.a.b.c becomes 10.a.b.c there."""
    if not pod_ip.startswith("127."):
        raise ValueError(f"pod IP {pod_ip!r} is not loopback")
    return "10." + pod_ip[4:]


def pod_ips(spec: ClusterSpec) -> dict[str, str | None]:
    """Pod name -> IP, assigning pod-network addresses per node in creation order."""
    per_node: Counter[str] = Counter()
    out: dict[str, str | None] = {}
    for p in all_pods(spec):
        if p.node is None or p.workload.host_network:
            out[p.name] = pod_ip(spec, p, 0)
            continue
        out[p.name] = pod_ip(spec, p, per_node[p.node])
        per_node[p.node] += 1
    return out


def expected(spec: ClusterSpec) -> dict[str, Any]:
    """What a correct read of this cluster finds. Keys are documented in tests/fleet/fleet.py."""
    node_list = nodes(spec)
    pods = all_pods(spec)
    workloads: dict[str, dict[str, Any]] = {}
    kinds: Counter[str] = Counter()
    for w in spec.all_workloads():
        wp = workload_pods(spec, w)
        if not wp:
            continue
        kinds[w.kind] += 1
        workloads[workload_id(spec, w)] = {
            "namespace": w.namespace,
            "kind": w.kind,
            "name": w.name,
            "pods": len(wp),
            "nodes": len({p.node for p in wp if p.node}),
            "image": w.containers[0].image,
            "images": list(w.images),
            "dns_options": w.dns_options_text(),
            "dns_policy": w.dns_policy,
            "host_network": w.host_network,
            "resolver_annotation": w.resolver_annotation,
        }
    nodelocal_nodes = None
    if spec.nodelocal:
        nl = next(w for w in system_workloads(spec) if w.name == spec.nodelocal_name)
        nodelocal_nodes = sorted(p.node for p in workload_pods(spec, nl) if p.node)
    pods_per_node = Counter(p.node for p in pods if p.node)
    pool_of = {n.name: (n.pool.name if n.pool.label_key else n.pool.instance_type) for n in node_list}
    return {
        "name": spec.name,
        "provider": spec.provider,
        "server_version": SERVER_VERSION,
        "nodes": len(node_list),
        "node_names": [n.name for n in node_list],
        "pools": dict(Counter(pool_of.values())),
        "node_pool": pool_of,
        "kernels": dict(Counter(n.pool.kernel for n in node_list)),
        "os_images": dict(Counter(n.pool.os_image for n in node_list)),
        "node_kernel": {n.name: n.pool.kernel for n in node_list},
        "pods": len(pods),
        "pods_by_phase": dict(Counter(p.phase for p in pods)),
        "pods_per_node": dict(pods_per_node),
        "workloads": len(workloads),
        "workloads_by_kind": {k: kinds[k] for k in WORKLOAD_KINDS if kinds[k]},
        "workload_detail": workloads,
        "proxy_mode": spec.kube_proxy_mode,
        "kube_proxy_configmap": spec.kube_proxy,
        "service_ip": spec.dns_service_ip,
        "endpoints": spec.coredns_ready,
        "coredns_replicas": spec.coredns_replicas,
        "coredns_version": spec.coredns_version,
        "coredns_image": spec.coredns_image,
        "cni": spec.cni,
        "kube_proxy_replacement": spec.kube_proxy_replacement,
        "nodelocal": spec.nodelocal,
        "nodelocal_ip": spec.nodelocal_ip if spec.nodelocal else None,
        "nodelocal_nodes": nodelocal_nodes,
        "conntrack_metrics": spec.conntrack_metrics,
        "insert_failed_grows": spec.conntrack_metrics
        and any(pool_insert_failed(spec, p) > 0 for p in spec.pools),
        "qps": spec.qps,
    }


def pool_insert_failed(spec: ClusterSpec, pool: NodePool) -> float:
    """insert_failed growth per minute on each node of ``pool``."""
    return spec.insert_failed_per_min if pool.insert_failed_per_min is None else pool.insert_failed_per_min


def _check(spec: ClusterSpec) -> None:
    """Reject specs the seeder cannot build (typos in hand-written data fail loudly, not silently)."""
    names = [(w.kind, w.namespace, w.name) for w in spec.all_workloads()]
    dupes = [k for k, v in Counter(names).items() if v > 1]
    if dupes:
        raise ValueError(f"{spec.name}: duplicate workloads {dupes}")
    pools = {p.name for p in spec.pools}
    for w in spec.all_workloads():
        if w.kind not in WORKLOAD_KINDS:
            raise ValueError(f"{spec.name}: {w.name}: unknown kind {w.kind!r}")
        if w.pool is not None and w.pool not in pools:
            raise ValueError(f"{spec.name}: {w.name}: unknown pool {w.pool!r}")
        if w.dns_policy == "None" and not w.nameservers:
            raise ValueError(f"{spec.name}: {w.name}: dnsPolicy None needs a nameserver")
    if not 0 <= spec.coredns_ready <= spec.coredns_replicas:
        raise ValueError(f"{spec.name}: coredns_ready must be within 0..replicas")
    if not 0 <= spec.coredns_dark <= spec.coredns_ready:
        raise ValueError(f"{spec.name}: coredns_dark must be within 0..coredns_ready")
    for what, prefix, parts in (
        ("node_cidr_prefix", spec.node_cidr_prefix, 3),
        ("pod_prefix", spec.pod_prefix, 2),
    ):
        if prefix.split(".")[0] != "127" or len(prefix.split(".")) != parts:
            raise ValueError(
                f"{spec.name}: {what} {prefix!r} must be {parts} octets in 127.0.0.0/8 (servers dial it)"
            )
    for n, c in Counter(p.node for p in all_pods(spec) if p.node).items():
        cap = node_by_name(spec, n).pool.max_pods
        if c > cap:
            raise ValueError(f"{spec.name}: node {n} would run {c} pods, more than its {cap} max")


def validate(specs: list[ClusterSpec] | tuple[ClusterSpec, ...]) -> None:
    seen: set[str] = set()
    for s in specs:
        if s.name in seen:
            raise ValueError(f"cluster {s.name!r} appears twice")
        seen.add(s.name)
        _check(s)
