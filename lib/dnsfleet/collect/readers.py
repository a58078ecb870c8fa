"""Resource readers: project API objects (JSON dicts) into the snapshot's node and pod rows.

Objects are read defensively (a proxy, an aggregated API or a broken server can send any JSON): a
field of the wrong type is absent, never an exception. Only the fields the snapshot keeps are read:
no Secrets, no env values, and of annotations only ``dnsfleet.io/resolver``.
"""

from __future__ import annotations

import re
from typing import Any

from dnsfleet.snapshot import RESOLVER_ANNOTATION

# Node labels kept in the snapshot: pool, instance type, zone, OS/arch and provider hints.
NODE_LABELS = (
    "agentpool",
    "kubernetes.azure.com/agentpool",
    "kubernetes.azure.com/cluster",
    "kubernetes.azure.com/mode",
    "eks.amazonaws.com/nodegroup",
    "eks.amazonaws.com/compute-type",
    "alpha.eksctl.io/nodegroup-name",
    "karpenter.sh/nodepool",
    "cloud.google.com/gke-nodepool",
    "cloud.google.com/gke-os-distribution",
    "node.kubernetes.io/instance-type",
    "beta.kubernetes.io/instance-type",
    "topology.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "kubernetes.io/os",
    "kubernetes.io/arch",
    "node-role.kubernetes.io/control-plane",
    "addon.gke.io/node-local-dns-ds-ready",  # GKE marks nodes where its NodeLocal DNSCache runs
)


def _d(v: Any) -> dict[str, Any]:
    """``v`` when it is a mapping, else empty: API objects are read defensively (a proxy, an
    aggregated API or a broken server can send any JSON), never trusted to match the schema."""
    return v if isinstance(v, dict) else {}


def _ds(v: Any) -> list[dict[str, Any]]:
    """The mappings in ``v`` when it is a list, else nothing."""
    return [x for x in v if isinstance(x, dict)] if isinstance(v, list) else []


def _s(v: Any) -> str | None:
    return v if isinstance(v, str) and v else None


def project_node(obj: dict[str, Any]) -> dict[str, Any]:
    meta = _d(obj.get("metadata"))
    status = _d(obj.get("status"))
    info = _d(status.get("nodeInfo"))
    labels = _d(meta.get("labels"))
    ready: bool | None = None
    for cond in _ds(status.get("conditions")):
        if cond.get("type") == "Ready":
            ready = {"True": True, "False": False}.get(cond.get("status"))  # type: ignore[arg-type]
    return {
        "name": _s(meta.get("name")),
        "labels": {k: str(labels[k]) for k in NODE_LABELS if k in labels},
        "kernel_version": _s(info.get("kernelVersion")),
        "os_image": _s(info.get("osImage")),
        "container_runtime": _s(info.get("containerRuntimeVersion")),
        "kubelet_version": _s(info.get("kubeletVersion")),
        "ready": ready,
    }


def _controller_ref(meta: dict[str, Any]) -> dict[str, Any] | None:
    refs = _ds(meta.get("ownerReferences"))
    for ref in refs:
        if ref.get("controller"):
            return ref
    return refs[0] if refs else None


def _pod_ready(status: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in _ds(status.get("conditions")))


def project_pod(obj: dict[str, Any]) -> dict[str, Any]:
    meta = _d(obj.get("metadata"))
    spec = _d(obj.get("spec"))
    ref = _controller_ref(meta)
    dns_config: Any = spec.get("dnsConfig")
    if isinstance(dns_config, dict):
        names = dns_config.get("nameservers")
        searches = dns_config.get("searches")
        dns_config = {
            "nameservers": [str(x) for x in names] if isinstance(names, list) else [],
            "searches": [str(x) for x in searches] if isinstance(searches, list) else [],
            "options": [
                {"name": o.get("name"), "value": o.get("value")} for o in _ds(dns_config.get("options"))
            ],
        }
    else:
        dns_config = None
    return {
        "namespace": _s(meta.get("namespace")),
        "name": _s(meta.get("name")),
        "node": _s(spec.get("nodeName")),
        "owner_kind": _s(ref.get("kind")) if ref else None,
        "owner_name": _s(ref.get("name")) if ref else None,
        "phase": _s(_d(obj.get("status")).get("phase")),
        "host_network": spec.get("hostNetwork") is True,
        "dns_policy": _s(spec.get("dnsPolicy")),
        "dns_config": dns_config,
        "images": [c["image"] for c in _ds(spec.get("containers")) if _s(c.get("image"))],
        "resolver_annotation": _s(_d(meta.get("annotations")).get(RESOLVER_ANNOTATION)),
    }


_VERSION_RE = re.compile(r"v?(\d+\.\d+\.\d+)")


def image_version(image: str | None) -> str | None:
    """'registry.k8s.io/coredns/coredns:v1.11.1' -> '1.11.1'; EKS '-eksbuild.4' and AKS hotfix suffixes ok."""
    if not image:
        return None
    ref = image.split("@", 1)[0]
    tail = ref.rsplit("/", 1)[-1]
    if ":" not in tail:
        return None
    m = _VERSION_RE.match(tail.split(":", 1)[1])
    return m.group(1) if m else None


def provider_hint(nodes: list[dict[str, Any]] | None, server_version: str | None) -> str | None:
    labels: set[str] = set()
    for n in nodes or []:
        labels.update((n.get("labels") or {}).keys())
    sv = server_version or ""
    if any(k.startswith("eks.amazonaws.com/") for k in labels) or "-eks-" in sv:
        return "eks"
    if "cloud.google.com/gke-nodepool" in labels or "-gke." in sv:
        return "gke"
    if any(k.startswith("kubernetes.azure.com/") for k in labels) or "agentpool" in labels:
        return "aks"
    return None
