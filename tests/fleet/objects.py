"""Kubernetes API objects for one cluster spec, as plain dicts ready to POST (no client models).

``build(spec)`` returns ``Item``s grouped in waves: an item may name its owner (kind, namespace,
name); the seeder fills ``ownerReferences`` with the uid the owner got in an earlier wave. Items with a
``status`` are followed by a merge-patch of their ``/status`` subresource (creation resets status).
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.fleet import spec as S

# kind -> (api prefix, plural, namespaced)
RESOURCES: dict[str, tuple[str, str, bool]] = {
    "Namespace": ("/api/v1", "namespaces", False),
    "Node": ("/api/v1", "nodes", False),
    "Service": ("/api/v1", "services", True),
    "Endpoints": ("/api/v1", "endpoints", True),
    "ConfigMap": ("/api/v1", "configmaps", True),
    "Secret": ("/api/v1", "secrets", True),
    "Pod": ("/api/v1", "pods", True),
    "Deployment": ("/apis/apps/v1", "deployments", True),
    "ReplicaSet": ("/apis/apps/v1", "replicasets", True),
    "StatefulSet": ("/apis/apps/v1", "statefulsets", True),
    "DaemonSet": ("/apis/apps/v1", "daemonsets", True),
    "Job": ("/apis/batch/v1", "jobs", True),
    "CronJob": ("/apis/batch/v1", "cronjobs", True),
    "EndpointSlice": ("/apis/discovery.k8s.io/v1", "endpointslices", True),
    "Lease": ("/apis/coordination.k8s.io/v1", "leases", True),
    "ClusterRole": ("/apis/rbac.authorization.k8s.io/v1", "clusterroles", False),
    "ClusterRoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "clusterrolebindings", False),
}
API_VERSION = {
    k: (p.removeprefix("/api/").removeprefix("/apis/") if p != "/api/v1" else "v1")
    for k, (p, _, _) in RESOURCES.items()
}
BUILTIN_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
VIEWER_ROLE = "dnsfleet-viewer"


@dataclass
class Item:
    kind: str
    body: dict[str, Any]
    status: dict[str, Any] | None = None
    owner: tuple[str, str, str] | None = None  # (kind, namespace, name); namespace "" for cluster scope

    @property
    def name(self) -> str:
        return self.body["metadata"]["name"]

    @property
    def namespace(self) -> str:
        return self.body["metadata"].get("namespace", "")

    def collection_path(self) -> str:
        prefix, plural, namespaced = RESOURCES[self.kind]
        if namespaced:
            return f"{prefix}/namespaces/{self.namespace}/{plural}"
        return f"{prefix}/{plural}"

    def path(self) -> str:
        return f"{self.collection_path()}/{self.name}"


def _meta(
    name: str, namespace: str | None = None, labels: dict[str, str] | None = None, **extra: Any
) -> dict:
    m: dict[str, Any] = {"name": name}
    if namespace is not None:
        m["namespace"] = namespace
    if labels:
        m["labels"] = labels
    m.update(extra)
    return m


def _obj(kind: str, meta: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"apiVersion": API_VERSION[kind], "kind": kind, "metadata": meta, **fields}


def _ts(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _uid(text: str) -> str:
    return str(uuid.UUID(bytes=hashlib.sha256(text.encode()).digest()[:16], version=4))


# ---------------------------------------------------------------------------------------------------
# RBAC


def rbac_items() -> list[Item]:
    role = _obj(
        "ClusterRole",
        _meta(VIEWER_ROLE, labels={"app.kubernetes.io/part-of": "dnsfleet-test-fleet"}),
        rules=[
            {"apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "list", "watch"]},
            {"nonResourceURLs": ["*"], "verbs": ["get"]},
            {
                "apiGroups": ["authorization.k8s.io"],
                "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                "verbs": ["create"],
            },
        ],
    )
    binding = _obj(
        "ClusterRoleBinding",
        _meta(VIEWER_ROLE),
        roleRef={"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": VIEWER_ROLE},
        subjects=[{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "viewer"}],
    )
    return [Item("ClusterRole", role), Item("ClusterRoleBinding", binding)]


# ---------------------------------------------------------------------------------------------------
# Nodes


_POOL_EXTRA = {
    "aks": lambda c, n: {
        "kubernetes.azure.com/cluster": f"MC_rg-{c}_{c}_eastus",
        "kubernetes.azure.com/mode": "system" if n.index == 0 else "user",
        "kubernetes.azure.com/os-sku": "Ubuntu",
        "topology.kubernetes.io/region": "eastus",
    },
    "eks": lambda c, n: {
        "eks.amazonaws.com/capacityType": "ON_DEMAND",
        "eks.amazonaws.com/nodegroup-image": "ami-0c5b0bd5e8a8a3c1f",
        "topology.kubernetes.io/region": "us-east-1",
    },
    "gke": lambda c, n: {"topology.kubernetes.io/region": "europe-west1"},
}


def _provider_id(spec: S.ClusterSpec, n: S.NodeFacts) -> str:
    iid = hashlib.sha256(n.name.encode()).hexdigest()
    if spec.provider == "aks":
        return (
            f"azure:///subscriptions/{_uid('sub')}/resourceGroups/mc_rg-{spec.name}/providers/"
            f"Microsoft.Compute/virtualMachineScaleSets/aks-{n.pool.name}-vmss/virtualMachines/{n.index}"
        )
    if spec.provider == "eks":
        return f"aws:///{n.zone}/i-0{iid[:16]}"
    if spec.provider == "gke":
        return f"gce://dnsfleet-test/{n.zone}/{n.name}"
    return f"fake://{n.name}"


def node_item(spec: S.ClusterSpec, n: S.NodeFacts, now: datetime) -> Item:
    labels = {
        "kubernetes.io/hostname": n.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": n.pool.architecture,
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": n.pool.architecture,
        "node.kubernetes.io/instance-type": n.pool.instance_type,
        "beta.kubernetes.io/instance-type": n.pool.instance_type,
        "topology.kubernetes.io/zone": n.zone,
    }
    if n.pool.label_key:
        labels[n.pool.label_key] = n.pool.name
    extra = _POOL_EXTRA.get(spec.provider)
    if extra:
        labels.update(extra(spec.name, n))
    body = _obj(
        "Node",
        _meta(n.name, labels=labels, annotations={"node.alpha.kubernetes.io/ttl": "0"}),
        spec={"podCIDR": n.pod_cidr, "podCIDRs": [n.pod_cidr], "providerID": _provider_id(spec, n)},
    )
    ts = _ts(now)
    boot = _ts(now - timedelta(days=3 + n.index))
    mem_ki = _mem_ki(n.pool.memory)

    def cond(t: str, status: str, reason: str, msg: str) -> dict[str, str]:
        return {
            "type": t,
            "status": status,
            "reason": reason,
            "message": msg,
            "lastHeartbeatTime": ts,
            "lastTransitionTime": boot,
        }

    status = {
        "capacity": {
            "cpu": n.pool.cpu,
            "memory": f"{mem_ki}Ki",
            "pods": str(n.pool.max_pods),
            "ephemeral-storage": "129886128Ki",
        },
        "allocatable": {
            "cpu": n.pool.cpu,
            "memory": f"{mem_ki - 786432}Ki",
            "pods": str(n.pool.max_pods),
            "ephemeral-storage": "119703055367",
        },
        "conditions": [
            cond(
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            cond("Ready", "True", "KubeletReady", "kubelet is posting ready status")
            if n.pool.ready
            else cond("Ready", "Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status."),
        ],
        "addresses": [{"type": "InternalIP", "address": n.ip}, {"type": "Hostname", "address": n.name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "machineID": hashlib.md5(n.name.encode()).hexdigest(),
            "systemUUID": _uid(n.name + "/system"),
            "bootID": _uid(n.name + "/boot"),
            "kernelVersion": n.pool.kernel,
            "osImage": n.pool.os_image,
            "containerRuntimeVersion": n.pool.runtime,
            "kubeletVersion": n.pool.kubelet,
            "operatingSystem": "linux",
            "architecture": n.pool.architecture,
        },
    }
    return Item("Node", body, status=status)


def _mem_ki(mem: str) -> int:
    if mem.endswith("Gi"):
        return int(mem[:-2]) * 1024 * 1024
    raise ValueError(f"memory must be given in Gi, got {mem!r}")


def lease_item(n: S.NodeFacts, now: datetime) -> Item:
    body = _obj(
        "Lease",
        _meta(n.name, "kube-node-lease"),
        spec={
            "holderIdentity": n.name,
            "leaseDurationSeconds": 40,
            "renewTime": now.strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
        },
    )
    return Item("Lease", body, owner=("Node", "", n.name))


# ---------------------------------------------------------------------------------------------------
# kube-system: DNS service, config maps


def corefile(spec: S.ClusterSpec) -> str:
    custom_in = "    import custom/*.override\n" if spec.provider == "aks" else ""
    custom_out = "import custom/*.server\n" if spec.provider == "aks" else ""
    return (
        ".:53 {\n"
        "    errors\n"
        "    health {\n"
        "       lameduck 5s\n"
        "    }\n"
        "    ready\n"
        "    kubernetes cluster.local in-addr.arpa ip6.arpa {\n"
        "       pods insecure\n"
        "       fallthrough in-addr.arpa ip6.arpa\n"
        "       ttl 30\n"
        "    }\n"
        "    prometheus :9153\n"
        "    forward . /etc/resolv.conf {\n"
        "       max_concurrent 1000\n"
        "    }\n"
        "    cache 30\n"
        "    loop\n"
        "    reload\n"
        "    loadbalance\n"
        f"{custom_in}"
        "}\n"
        f"{custom_out}"
    )


def nodelocal_corefile(spec: S.ClusterSpec) -> str:
    ip = spec.nodelocal_ip
    # IPVS mode binds only the link-local IP (kube-dns IP is owned by IPVS); iptables binds both (§4).
    bind = ip if spec.kube_proxy_mode == "ipvs" else f"{ip} {spec.dns_service_ip}"
    block = (
        "{zone}:53 {{\n"
        "    errors\n"
        "    cache {cache}\n"
        "    reload\n"
        "    loop\n"
        f"    bind {bind}\n"
        "    forward . {upstream}\n"
        "    prometheus :9253\n"
        "{health}"
        "    }}\n"
    )
    tcp = "__PILLAR__CLUSTER__DNS__ {\n            force_tcp\n    }"
    cache_cluster = "{\n            success 9984 30\n            denial 9984 5\n    }"
    return "".join(
        [
            block.format(
                zone="cluster.local", cache=cache_cluster, upstream=tcp, health=f"    health {ip}:8080\n"
            ),
            block.format(zone="in-addr.arpa", cache="30", upstream=tcp, health=""),
            block.format(zone="ip6.arpa", cache="30", upstream=tcp, health=""),
            block.format(zone=".", cache="30", upstream="__PILLAR__UPSTREAM__SERVERS__", health=""),
        ]
    )


_KUBEADM_PROXY = """apiVersion: kubeproxy.config.k8s.io/v1alpha1
bindAddress: 0.0.0.0
bindAddressHardFail: false
clientConnection:
  acceptContentTypes: ""
  burst: 0
  contentType: ""
  kubeconfig: /var/lib/kube-proxy/kubeconfig.conf
  qps: 0
clusterCIDR: {cluster_cidr}
configSyncPeriod: 0s
conntrack:
  maxPerCore: null
  min: null
  tcpCloseWaitTimeout: null
  tcpEstablishedTimeout: null
detectLocalMode: ""
enableProfiling: false
healthzBindAddress: ""
hostnameOverride: ""
iptables:
  localhostNodePorts: null
  masqueradeAll: false
  masqueradeBit: null
  minSyncPeriod: 0s
  syncPeriod: 0s
ipvs:
  excludeCIDRs: null
  minSyncPeriod: 0s
  scheduler: ""
  strictARP: false
  syncPeriod: 0s
  tcpFinTimeout: 0s
  tcpTimeout: 0s
  udpTimeout: 0s
kind: KubeProxyConfiguration
metricsBindAddress: ""
mode: "{mode}"
nodePortAddresses: null
oomScoreAdj: null
portRange: ""
showHiddenMetricsForAlphaFeatures: null
"""

_KUBEADM_PROXY_KUBECONFIG = """apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority: /var/run/secrets/kubernetes.io/serviceaccount/ca.crt
    server: https://{server}:443
  name: default
contexts:
- context:
    cluster: default
    namespace: default
    user: default
  name: default
current-context: default
users:
- name: default
  user:
    tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token
"""

_EKS_PROXY = """apiVersion: kubeproxy.config.k8s.io/v1alpha1
bindAddress: 0.0.0.0
clientConnection:
  acceptContentTypes: ""
  burst: 10
  contentType: application/vnd.kubernetes.protobuf
  kubeconfig: /var/lib/kube-proxy/kubeconfig
  qps: 5
clusterCIDR: ""
configSyncPeriod: 15m0s
conntrack:
  maxPerCore: 32768
  min: 131072
  tcpCloseWaitTimeout: 1h0m0s
  tcpEstablishedTimeout: 24h0m0s
enableProfiling: false
healthzBindAddress: 0.0.0.0:10256
hostnameOverride: ""
iptables:
  masqueradeAll: false
  masqueradeBit: 14
  minSyncPeriod: 0s
  syncPeriod: 30s
ipvs:
  excludeCIDRs: null
  minSyncPeriod: 0s
  scheduler: "rr"
  syncPeriod: 30s
kind: KubeProxyConfiguration
metricsBindAddress: 0.0.0.0:10249
mode: "{mode}"
nodePortAddresses: null
oomScoreAdj: -998
portRange: ""
"""


def kube_system_items(spec: S.ClusterSpec) -> list[Item]:
    ks = "kube-system"
    dns_labels = {
        "k8s-app": "kube-dns",
        "kubernetes.io/cluster-service": "true",
        "kubernetes.io/name": "CoreDNS",
    }
    dns_ports = [
        {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
        {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
        {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153},
    ]
    items = [
        Item(
            "Service",
            _obj(
                "Service",
                _meta(
                    "kube-dns",
                    ks,
                    dns_labels,
                    annotations={"prometheus.io/port": "9153", "prometheus.io/scrape": "true"},
                ),
                spec={
                    "clusterIP": spec.dns_service_ip,
                    "clusterIPs": [spec.dns_service_ip],
                    "selector": {"k8s-app": "kube-dns"},
                    "ports": dns_ports,
                    "type": "ClusterIP",
                },
            ),
        ),
        Item(
            "ConfigMap",
            _obj(
                "ConfigMap",
                _meta("coredns", ks, {"addonmanager.kubernetes.io/mode": "Reconcile", "k8s-app": "kube-dns"}),
                data={"Corefile": corefile(spec)},
            ),
        ),
    ]
    if spec.kube_proxy == "kube-proxy":
        conf = _KUBEADM_PROXY.format(
            cluster_cidr=f"{spec.pod_prefix}.0.0/16", mode=spec.kube_proxy_mode_literal
        )
        data = {
            "config.conf": conf,
            "kubeconfig.conf": _KUBEADM_PROXY_KUBECONFIG.format(server=f"{spec.name}.hcp.example.com"),
        }
        items.append(
            Item("ConfigMap", _obj("ConfigMap", _meta("kube-proxy", ks, {"app": "kube-proxy"}), data=data))
        )
    elif spec.kube_proxy == "kube-proxy-config":
        data = {"config": _EKS_PROXY.format(mode=spec.kube_proxy_mode_literal)}
        labels = {"eks.amazonaws.com/component": "kube-proxy", "k8s-app": "kube-proxy"}
        items.append(Item("ConfigMap", _obj("ConfigMap", _meta("kube-proxy-config", ks, labels), data=data)))
    if spec.cni == "cilium":
        data = {
            "cluster-name": spec.name,
            "kube-proxy-replacement": "true" if spec.kube_proxy_replacement else "false",
            "bpf-lb-sock-hostns-only": "false",
            "enable-ipv4": "true",
            "enable-ipv6": "false",
            "ipam": "kubernetes",
            "routing-mode": "tunnel",
            "tunnel-protocol": "vxlan",
            "enable-bpf-masquerade": "true",
            "enable-policy": "default",
            "monitor-aggregation": "medium",
        }
        labels = {"app.kubernetes.io/managed-by": "Helm"}
        items.append(Item("ConfigMap", _obj("ConfigMap", _meta("cilium-config", ks, labels), data=data)))
    if spec.nodelocal:
        items += [
            Item(
                "ConfigMap",
                _obj(
                    "ConfigMap",
                    _meta(spec.nodelocal_name, ks, {"addonmanager.kubernetes.io/mode": "Reconcile"}),
                    data={"Corefile": nodelocal_corefile(spec)},
                ),
            ),
            Item(
                "Service",
                _obj(
                    "Service",
                    _meta(
                        "kube-dns-upstream",
                        ks,
                        {"k8s-app": "kube-dns", "kubernetes.io/name": "KubeDNSUpstream"},
                    ),
                    spec={"selector": {"k8s-app": "kube-dns"}, "ports": dns_ports[:2], "type": "ClusterIP"},
                ),
            ),
            Item(
                "Service",
                _obj(
                    "Service",
                    _meta(
                        "node-local-dns",
                        ks,
                        {"k8s-app": "node-local-dns"},
                        annotations={"prometheus.io/port": "9253", "prometheus.io/scrape": "true"},
                    ),
                    spec={
                        "clusterIP": "None",
                        "selector": {"k8s-app": "node-local-dns"},
                        "ports": [{"name": "metrics", "port": 9253, "targetPort": 9253}],
                    },
                ),
            ),
        ]
    return items


def dns_endpoint_items(spec: S.ClusterSpec, ips: dict[str, str | None]) -> list[Item]:
    """EndpointSlice + Endpoints for kube-dns: every CoreDNS pod, ready or not (as the controller does)."""
    ks = "kube-system"
    pods = [p for p in S.coredns_pods(spec) if ips.get(p.name)]
    slice_ports = [
        {"name": "dns", "port": 53, "protocol": "UDP"},
        {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
        {"name": "metrics", "port": 9153, "protocol": "TCP"},
    ]
    endpoints = [
        {
            "addresses": [S.endpoint_ip(ips[p.name])],
            "conditions": {"ready": p.ready, "serving": p.ready, "terminating": False},
            "nodeName": p.node,
            "targetRef": {"kind": "Pod", "name": p.name, "namespace": ks},
        }
        for p in pods
    ]
    name = f"kube-dns-{S.pod_suffix(spec.name + '/kube-dns', 0)}"
    eps = _obj(
        "EndpointSlice",
        _meta(
            name,
            ks,
            {
                "kubernetes.io/service-name": "kube-dns",
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                "k8s-app": "kube-dns",
            },
        ),
        addressType="IPv4",
        endpoints=endpoints,
        ports=slice_ports,
    )

    def addr(p: S.PodFacts) -> dict[str, Any]:
        return {
            "ip": S.endpoint_ip(ips[p.name]),
            "nodeName": p.node,
            "targetRef": {"kind": "Pod", "name": p.name, "namespace": ks},
        }

    subset: dict[str, Any] = {
        "ports": [{"name": pt["name"], "port": pt["port"], "protocol": pt["protocol"]} for pt in slice_ports]
    }
    ready = [addr(p) for p in pods if p.ready]
    not_ready = [addr(p) for p in pods if not p.ready]
    if ready:
        subset["addresses"] = ready
    if not_ready:
        subset["notReadyAddresses"] = not_ready
    ep = _obj("Endpoints", _meta("kube-dns", ks, {"k8s-app": "kube-dns"}), subsets=[subset] if pods else [])
    return [
        Item("EndpointSlice", eps, owner=("Service", ks, "kube-dns")),
        Item("Endpoints", ep),
    ]


# ---------------------------------------------------------------------------------------------------
# Workloads


def _container(spec: S.ClusterSpec, w: S.Workload, c: S.Container) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": c.name,
        "image": c.image,
        "imagePullPolicy": "IfNotPresent",
        "env": [
            {"name": S.FAKE_SECRET_NAME, "value": S.FAKE_SECRET_VALUE},
            {"name": "LOG_LEVEL", "value": "info"},
        ],
        "resources": {},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
    }
    if w.name == "coredns":
        out["args"] = ["-conf", "/etc/coredns/Corefile"]
        out["ports"] = [
            {"containerPort": 53, "name": "dns", "protocol": "UDP"},
            {"containerPort": 53, "name": "dns-tcp", "protocol": "TCP"},
            {"containerPort": 9153, "name": "metrics", "protocol": "TCP"},
        ]
        out.pop("env")
    elif c.image == S.NODE_CACHE_IMAGE:
        local = (
            spec.nodelocal_ip
            if spec.kube_proxy_mode == "ipvs"
            else f"{spec.nodelocal_ip},{spec.dns_service_ip}"
        )
        out["args"] = ["-localip", local, "-conf", "/etc/Corefile", "-upstreamsvc", "kube-dns-upstream"]
        out.pop("env")
    return out


def pod_spec(spec: S.ClusterSpec, w: S.Workload, restart: str = "Always") -> dict[str, Any]:
    ps: dict[str, Any] = {
        "containers": [_container(spec, w, c) for c in w.containers],
        "dnsPolicy": w.dns_policy,
        "restartPolicy": restart,
        "terminationGracePeriodSeconds": 30,
        "schedulerName": "default-scheduler",
        "enableServiceLinks": True,
    }
    if w.host_network:
        ps["hostNetwork"] = True
    if w.dns_options or w.nameservers:
        cfg: dict[str, Any] = {}
        if w.nameservers:
            cfg["nameservers"] = list(w.nameservers)
        if w.dns_options:
            cfg["options"] = [{"name": n} if v is None else {"name": n, "value": v} for n, v in w.dns_options]
        ps["dnsConfig"] = cfg
    if w.namespace == "kube-system":
        ps["priorityClassName"] = (
            "system-node-critical" if w.kind == "DaemonSet" else "system-cluster-critical"
        )
        ps["tolerations"] = [{"operator": "Exists"}]
    return ps


def _labels(w: S.Workload) -> dict[str, str]:
    base = {"app.kubernetes.io/name": w.name} if not w.labels else {}
    return {**base, **dict(w.labels)}


def _annotations(w: S.Workload) -> dict[str, str] | None:
    return {S.RESOLVER_ANNOTATION: w.resolver_annotation} if w.resolver_annotation else None


def _template(spec: S.ClusterSpec, w: S.Workload, labels: dict[str, str], restart: str = "Always") -> dict:
    meta: dict[str, Any] = {"labels": labels}
    if _annotations(w):
        meta["annotations"] = _annotations(w)
    return {"metadata": meta, "spec": pod_spec(spec, w, restart)}


def workload_items(
    spec: S.ClusterSpec, w: S.Workload, ips: dict[str, str | None], now: datetime
) -> list[Item]:
    """Controller objects (+ ReplicaSet/Jobs) and pods of one workload."""
    ns, labels = w.namespace, _labels(w)
    pods = S.workload_pods(spec, w)
    ready = sum(p.ready for p in pods)
    items: list[Item] = []
    pod_labels = dict(labels)
    restart = "Always"
    if w.kind == "Deployment":
        h = S.pod_template_hash(spec.name, w)
        rs = S.rs_name(spec.name, w)
        pod_labels = {**labels, "pod-template-hash": h}
        counts = {
            "replicas": len(pods),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "observedGeneration": 1,
        }
        dep = _obj(
            "Deployment",
            _meta(w.name, ns, labels, annotations={"deployment.kubernetes.io/revision": "1"}),
            spec={
                "replicas": w.replicas,
                "selector": {"matchLabels": labels},
                "template": _template(spec, w, labels),
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
                },
                "revisionHistoryLimit": 10,
                "progressDeadlineSeconds": 600,
            },
        )
        items.append(Item("Deployment", dep, status={**counts, "updatedReplicas": len(pods)}))
        rs_obj = _obj(
            "ReplicaSet",
            _meta(
                rs,
                ns,
                pod_labels,
                annotations={
                    "deployment.kubernetes.io/desired-replicas": str(w.replicas),
                    "deployment.kubernetes.io/max-replicas": str(w.replicas + max(1, w.replicas // 4)),
                    "deployment.kubernetes.io/revision": "1",
                },
            ),
            spec={
                "replicas": w.replicas,
                "selector": {"matchLabels": pod_labels},
                "template": _template(spec, w, pod_labels),
            },
        )
        items.append(
            Item(
                "ReplicaSet",
                rs_obj,
                status={**counts, "fullyLabeledReplicas": len(pods)},
                owner=("Deployment", ns, w.name),
            )
        )
    elif w.kind == "StatefulSet":
        rev = f"{w.name}-{S.pod_template_hash(spec.name, w)}"
        pod_labels = {**labels, "controller-revision-hash": rev}
        sts = _obj(
            "StatefulSet",
            _meta(w.name, ns, labels),
            spec={
                "replicas": w.replicas,
                "serviceName": w.name,
                "selector": {"matchLabels": labels},
                "template": _template(spec, w, labels),
                "podManagementPolicy": "OrderedReady",
                "updateStrategy": {"type": "RollingUpdate"},
            },
        )
        st = {
            "replicas": len(pods),
            "readyReplicas": ready,
            "currentReplicas": len(pods),
            "updatedReplicas": len(pods),
            "availableReplicas": ready,
            "currentRevision": rev,
            "updateRevision": rev,
            "observedGeneration": 1,
        }
        items.append(Item("StatefulSet", sts, status=st))
    elif w.kind == "DaemonSet":
        rev = S.pod_template_hash(spec.name, w)
        pod_labels = {**labels, "controller-revision-hash": rev, "pod-template-generation": "1"}
        ds = _obj(
            "DaemonSet",
            _meta(w.name, ns, labels, annotations={"deprecated.daemonset.template.generation": "1"}),
            spec={
                "selector": {"matchLabels": labels},
                "template": _template(spec, w, labels),
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            },
        )
        desired = len(S.eligible_nodes(spec, w))
        st = {
            "currentNumberScheduled": len(pods),
            "desiredNumberScheduled": desired,
            "numberMisscheduled": 0,
            "numberReady": ready,
            "updatedNumberScheduled": len(pods),
            "numberAvailable": ready,
            "observedGeneration": 1,
        }
        if desired - ready > 0:
            st["numberUnavailable"] = desired - ready
        items.append(Item("DaemonSet", ds, status=st))
    elif w.kind == "CronJob":
        restart = "Never"
        cj = _obj(
            "CronJob",
            _meta(w.name, ns, labels),
            spec={
                "schedule": "0 * * * *",
                "concurrencyPolicy": "Forbid",
                "successfulJobsHistoryLimit": 3,
                "failedJobsHistoryLimit": 1,
                "jobTemplate": {
                    "spec": {
                        "parallelism": w.replicas,
                        "completions": w.replicas,
                        "backoffLimit": 2,
                        "template": _template(spec, w, labels, restart),
                    }
                },
            },
        )
        items.append(Item("CronJob", cj))
        for j in range(w.jobs):
            items.append(_job_item(spec, w, S.job_name(w, j), labels, owner=("CronJob", ns, w.name)))
    elif w.kind == "Job":
        restart = "Never"
        items.append(_job_item(spec, w, w.name, labels, owner=None))
    elif w.kind != "Pod":
        raise ValueError(f"unknown workload kind {w.kind!r}")

    start = now - timedelta(hours=2)
    for p in pods:
        lbl = dict(pod_labels)
        if p.owner and p.owner[0] == "Job":
            lbl = {**labels, "batch.kubernetes.io/job-name": p.owner[1], "job-name": p.owner[1]}
        if w.kind == "StatefulSet":
            lbl["statefulset.kubernetes.io/pod-name"] = p.name
        meta = _meta(p.name, ns, lbl)
        if _annotations(w):
            meta["annotations"] = _annotations(w)
        ps = pod_spec(spec, w, restart)
        if p.node:
            ps["nodeName"] = p.node
        body = _obj("Pod", meta, spec=ps)
        owner = (p.owner[0], ns, p.owner[1]) if p.owner else None
        items.append(Item("Pod", body, status=pod_status(spec, w, p, ips.get(p.name), start), owner=owner))
    return items


def _job_item(
    spec: S.ClusterSpec, w: S.Workload, name: str, labels: dict[str, str], owner: tuple[str, str, str] | None
) -> Item:
    job = _obj(
        "Job",
        _meta(name, w.namespace, labels),
        spec={
            "parallelism": w.replicas,
            "completions": w.replicas,
            "backoffLimit": 2,
            "template": _template(spec, w, labels, "Never"),
        },
    )
    return Item("Job", job, owner=owner)


def pod_status(
    spec: S.ClusterSpec, w: S.Workload, p: S.PodFacts, ip: str | None, start: datetime
) -> dict[str, Any] | None:
    t = _ts(start)
    if p.node is None:
        return {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/1 nodes are available: no nodes match the pod's requirements.",
                    "lastTransitionTime": t,
                }
            ],
        }
    node = S.node_by_name(spec, p.node)
    done = p.phase == "Succeeded"

    def cond(kind: str, ok: bool, reason: str | None = None) -> dict[str, Any]:
        c: dict[str, Any] = {"type": kind, "status": "True" if ok else "False", "lastTransitionTime": t}
        if reason and not ok:
            c["reason"] = reason
        return c

    reason = "PodCompleted" if done else "ContainersNotReady"
    statuses = []
    for c in w.containers:
        image = c.image if "/" in c.image.split(":")[0] else f"docker.io/library/{c.image}"
        st: dict[str, Any] = {
            "name": c.name,
            "image": image,
            "imageID": f"{image.split(':')[0]}@sha256:{hashlib.sha256(c.image.encode()).hexdigest()}",
            "containerID": f"containerd://{hashlib.sha256((p.name + c.name).encode()).hexdigest()}",
            "ready": p.ready,
            "restartCount": 0,
            "started": not done,
        }
        if done:
            st["state"] = {
                "terminated": {
                    "exitCode": 0,
                    "reason": "Completed",
                    "startedAt": t,
                    "finishedAt": _ts(start + timedelta(minutes=3)),
                }
            }
        else:
            st["state"] = {"running": {"startedAt": t}}
        statuses.append(st)
    return {
        "phase": p.phase,
        "conditions": [
            cond("PodReadyToStartContainers", not done),
            cond("Initialized", True),
            cond("Ready", p.ready, reason),
            cond("ContainersReady", p.ready, reason),
            cond("PodScheduled", True),
        ],
        "hostIP": node.ip,
        "hostIPs": [{"ip": node.ip}],
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": t,
        "containerStatuses": statuses,
    }


def namespace_items(spec: S.ClusterSpec) -> list[Item]:
    names = sorted({w.namespace for w in spec.all_workloads()} - set(BUILTIN_NAMESPACES))
    return [
        Item("Namespace", _obj("Namespace", _meta(n, labels={"kubernetes.io/metadata.name": n})))
        for n in names
    ]


def secret_items(spec: S.ClusterSpec) -> list[Item]:
    """A Secret the collector must never read (the viewer could, but dnsfleet has no reason to)."""
    if not any(w.namespace == "shop" for w in spec.workloads):
        return []
    data = {"password": base64.b64encode(S.FAKE_SECRET_VALUE.encode()).decode()}
    return [Item("Secret", _obj("Secret", _meta("db-credentials", "shop"), type="Opaque", data=data))]


def build(spec: S.ClusterSpec, now: datetime | None = None) -> list[list[Item]]:
    """All objects of a cluster in creation waves (owners always in an earlier wave than their dependents)."""
    now = now or datetime.now(UTC)
    ips = S.pod_ips(spec)
    node_facts = S.nodes(spec)
    wave0 = namespace_items(spec) + rbac_items()
    wave1 = [node_item(spec, n, now) for n in node_facts] + kube_system_items(spec) + secret_items(spec)
    wave2: list[Item] = [lease_item(n, now) for n in node_facts]
    wave3: list[Item] = []
    wave4: list[Item] = []
    for w in spec.all_workloads():
        for it in workload_items(spec, w, ips, now):
            if it.kind == "Pod":
                wave4.append(it)
            elif it.owner is None:
                wave2.append(it)
            else:
                wave3.append(it)
    wave3 += dns_endpoint_items(spec, ips)
    # An owner must exist before its dependents: wave3 owners are all in wave2, pods' owners in 2 or 3.
    return [wave0, wave1, wave2, wave3, wave4]
