"""Small hand-made snapshots for engine tests (the demo fleet and the real test fleet cover the rest), and
the small files other tests write: audit log lines, kubeconfig exec credential plugins."""

from __future__ import annotations

import copy
import stat
from pathlib import Path
from typing import Any

from dnsfleet.snapshot import new_snapshot


def node(
    name: str, kernel: str = "4.15.0-1029-azure", os_image: str = "Ubuntu 18.04.6 LTS", pool: str = "p1"
) -> dict:
    return {
        "name": name,
        "labels": {"agentpool": pool, "node.kubernetes.io/instance-type": "Standard_D4s_v3"},
        "kernel_version": kernel,
        "os_image": os_image,
        "container_runtime": "containerd://1.7.13",
        "kubelet_version": "v1.29.4",
        "ready": True,
    }


def pod(name: str, node_name: str | None, image: str, options: list[dict] | None = None, **kw: Any) -> dict:
    p = {
        "namespace": kw.pop("namespace", "shop"),
        "name": name,
        "node": node_name,
        "owner_kind": kw.pop("owner_kind", None),
        "owner_name": kw.pop("owner_name", None),
        "phase": "Running",
        "host_network": kw.pop("host_network", False),
        "dns_policy": kw.pop("dns_policy", "ClusterFirst"),
        "dns_config": {"options": options} if options is not None else None,
        "images": [image],
        "resolver_annotation": kw.pop("resolver_annotation", None),
    }
    assert not kw, kw
    return p


def cluster(
    name: str = "c1", nodes: list[dict] | None = None, pods: list[dict] | None = None, **dns: Any
) -> dict:
    base_dns = {
        "service_ip": "10.0.0.10",
        "ready_endpoints": 2,
        "coredns_version": "1.11.1",
        "coredns_replicas": 2,
        "corefile": ".:53 {\n    errors\n    kubernetes cluster.local in-addr.arpa ip6.arpa {\n    }\n    forward . /etc/resolv.conf\n    cache 30\n}\n",
        "kube_proxy_mode": "iptables",
        "kube_proxy_present": True,
        "daemonsets": ["kube-proxy", "calico-node"],
        "cilium_config": None,
        "calico_bpf": False,
        "nodelocal_ip": None,
        "nodelocal_nodes": None,
        "nfqueue_agent": None,
    }
    base_dns.update(dns)
    return {
        "name": name,
        "status": "ok",
        "reason": None,
        "missing": [],
        "server_version": "v1.29.4",
        "collected_at": "2026-11-25T10:00:00Z",
        "nodes": nodes if nodes is not None else [node("n1")],
        "pods": pods if pods is not None else [],
        "owners": {"ReplicaSet": {}, "Job": {}},
        "dns": base_dns,
        "metrics": {},
    }


def snapshot(*clusters: dict) -> dict:
    return new_snapshot([copy.deepcopy(c) for c in clusters], source="file")


def audit_record(cluster: str, time: str, batch: str) -> dict[str, Any]:
    """An audit log line (``dnsfleet.mitigate.audit``): NodeLocal DNSCache created in ``cluster``."""
    return {
        "time": time,
        "identity": "alice",
        "cluster": cluster,
        "object": {"kind": "DaemonSet", "namespace": "kube-system", "name": "node-local-dns"},
        "mitigation": "nodelocal",
        "action": "create",
        "patch": {},
        "previous": None,
        "applied": None,
        "result": "ok",
        "message": "created",
        "batch": batch,
    }


def shell_script(path: Path, body: str) -> Path:
    """An executable ``/bin/sh`` script at ``path`` (a kubeconfig exec credential plugin, say)."""
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def exec_user(cmd: Path) -> dict[str, Any]:
    """A kubeconfig user whose credentials come from the exec plugin ``cmd``."""
    return {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": str(cmd)}}
