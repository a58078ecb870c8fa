"""Read one cluster through the Kubernetes API into a snapshot cluster dict (format: ``dnsfleet.snapshot``).

``ClusterScan`` asks ``kube.Api`` (the one request class) for the big lists page by page, in protobuf
where the server speaks it, and keeps only the projected fields (``collect.readers``), so memory grows
with the projected rows, not with the raw responses. No kubernetes model objects, no Secrets, no env
values, and of annotations only ``dnsfleet.io/resolver``.

Failures stay inside the cluster they happen in: an unreachable, timed-out, TLS-broken or unauthorized
cluster comes back as ``status: "failed"`` with a one-line ``reason``; a 403 on some resources gives
``status: "partial"`` with those resources in ``missing`` and the parts they feed left ``null``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dnsfleet import corefile
from dnsfleet.collect import dnsfacts
from dnsfleet.collect.readers import (
    _controller_ref,
    _d,
    _ds,
    _pod_ready,
    image_version,
    project_node,
    project_pod,
    provider_hint,
)
from dnsfleet.kube import proto, typed
from dnsfleet.kube.errors import ClusterFailed, ResourceError, one_line
from dnsfleet.kube.kubeproxy import kube_proxy_mode
from dnsfleet.kube.lists import (
    METADATA_ONLY,
    METADATA_ONLY_PROTOBUF,
    PAGE_LIMIT,
    PROTOBUF,
    list_all,
    list_pages,
)
from dnsfleet.kube.request import Api
from dnsfleet.snapshot import now_iso
from dnsfleet.snapshot_schema import cluster_record

Progress = Callable[[str, str, str], None]

KUBE_SYSTEM = "kube-system"

NODELOCAL_CONFIGMAPS = ("node-local-dns", "nodelocaldns")
_SHARED_POD_FIELDS = ("namespace", "node", "owner_kind", "owner_name", "phase", "dns_policy")

_FORBIDDEN_RE = re.compile(r'User "([^"]*)" cannot (\w+) resource "([^"]+)"')


def forbidden_reason(err: ResourceError, resource: str) -> str:
    m = _FORBIDDEN_RE.search(err.message())
    if m:
        user, verb, res = m.groups()
        return f'forbidden: user "{user}" cannot {verb} {res}'
    return f"forbidden: cannot read {resource}"


# --------------------------------------------------------------------------------------------------
# One cluster
# --------------------------------------------------------------------------------------------------


@dataclass
class ClusterScan:
    """Reads one cluster. ``result()`` is the snapshot cluster dict; ``coredns_pods`` feeds the scrape."""

    name: str
    api: Api
    progress: Progress | None = None
    page_limit: int = PAGE_LIMIT
    protobuf: bool = True  # ask for the big lists in protobuf (JSON when False, or when not offered)
    missing: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    coredns_pods: list[dict[str, Any]] = field(default_factory=list)
    node_addresses: dict[str, str] = field(default_factory=dict)
    _ds_pod_ready_nodes: dict[str, set[str]] = field(default_factory=dict)
    _kube_proxy_static: bool = False

    def _accept(self) -> str:
        return PROTOBUF if self.protobuf else "application/json"

    def _done(self, resource: str, detail: str = "") -> None:
        if self.progress:
            self.progress("resource_done", self.name, f"{resource} {detail}".strip())

    def _forbidden(self, resource: str, err: ResourceError) -> None:
        if resource not in self.missing:
            self.missing.append(resource)
        if err.status == 403:
            self.errors[resource] = forbidden_reason(err, resource)
        else:
            self.errors[resource] = f"{resource}: HTTP {err.status} {one_line(err.message())[:200]}"

    def _get_optional(self, resource: str, path: str, query: dict[str, Any] | None = None) -> Any:
        """GET one object; 404 -> None (absent); other errors mark ``resource`` missing."""
        try:
            return self.api.get(path, query)
        except ResourceError as e:
            if e.status == 404:
                return None
            self._forbidden(resource, e)
            raise

    def _named_or_labelled(self, resource: str, collection: str, name: str) -> Any:
        """The object called ``name`` in ``collection``, else the first labelled ``k8s-app=kube-dns``
        (distributions rename the CoreDNS Service and Deployment but keep the label); None if neither."""
        obj = self._get_optional(resource, f"{collection}/{name}")
        if obj is None:
            items = self.api.get(collection, {"labelSelector": "k8s-app=kube-dns"}).get("items") or []
            obj = items[0] if items else None
        return obj

    def run(self) -> dict[str, Any]:
        out = base_cluster(self.name)
        out["collected_at"] = now_iso()
        version = self.api.version()  # an error status there fails the cluster, named
        out["server_version"] = version.get("gitVersion") if isinstance(version, dict) else None
        self._done("version", out["server_version"] or "")
        try:
            return self._read(out)
        except ClusterFailed as e:  # the server answered /version, then went away (or etcd did)
            if e.reason.startswith(("unreachable:", "timed out", "TLS error", "bad response")):
                raise ClusterFailed(f"{e.reason} while reading {self.api.last_path}") from None
            raise

    def _read(self, out: dict[str, Any]) -> dict[str, Any]:
        nodes = self._nodes()
        pods = self._pods()
        if nodes is None and pods is None:
            raise ClusterFailed(self.errors.get("nodes") or self.errors.get("pods") or "forbidden")
        out["nodes"], out["pods"] = nodes, pods
        out["owners"] = {"ReplicaSet": self._owners("replicasets", "/apis/apps/v1/replicasets", "Deployment")}
        out["owners"]["Job"] = self._owners("jobs", "/apis/batch/v1/jobs", "CronJob")
        out["dns"] = self._dns(pods)
        out["provider"] = provider_hint(nodes, out["server_version"])
        out["missing"] = list(self.missing)
        if self.missing:
            out["status"] = "partial"
            out["reason"] = "could not read " + "; ".join(self.errors[m] for m in self.missing)
        else:
            out["status"] = "ok"
        return out

    # -- workloads ---------------------------------------------------------------------------------

    def _nodes(self) -> list[dict[str, Any]] | None:
        def project(obj: dict[str, Any]) -> dict[str, Any]:
            row = project_node(obj)
            for addr in (obj.get("status") or {}).get("addresses") or []:
                if addr.get("type") == "InternalIP" and addr.get("address"):
                    self.node_addresses[addr["address"]] = row["name"]
            return row

        try:
            nodes = list_all(
                self.api,
                "/api/v1/nodes",
                project,
                limit=self.page_limit,
                accept=self._accept(),
                decode=typed.nodes_page,
            )
        except ResourceError as e:
            self._forbidden("nodes", e)
            return None
        self._done("nodes", f"({len(nodes)})")
        return nodes

    def _pods(self) -> list[dict[str, Any]] | None:
        def reset() -> None:
            self.coredns_pods.clear()
            self._ds_pod_ready_nodes.clear()
            self._kube_proxy_static = False

        # Pods repeat the same few strings (namespace, node, owner, phase, images): keep one copy each.
        strings: dict[str, str] = {}
        same = strings.setdefault

        def project(obj: dict[str, Any]) -> dict[str, Any]:
            if type(obj) is proto.PodRow:  # decoded from protobuf straight into its row, strings shared
                row, system = dict(obj), obj.system
            else:
                row, system = project_pod(obj), obj
                for k in _SHARED_POD_FIELDS:
                    if (v := row[k]) is not None:
                        row[k] = same(v, v)
                row["images"] = [same(x, x) for x in row["images"]]
            if row["namespace"] == KUBE_SYSTEM and system is not None:
                self._note_system_pod(system, row)
            return row

        pods: list[dict[str, Any]] = []
        try:
            for items in list_pages(
                self.api,
                "/api/v1/pods",
                limit=self.page_limit,
                accept=self._accept(),
                on_restart=lambda: (pods.clear(), reset()),
                decode=lambda data: typed.pods_page(data, strings),
            ):
                pods.extend(project(it) for it in items)
        except ResourceError as e:
            reset()
            self._forbidden("pods", e)
            return None
        self._done("pods", f"({len(pods)})")
        return pods

    def _note_system_pod(self, obj: dict[str, Any], row: dict[str, Any]) -> None:
        meta = _d(obj.get("metadata"))
        status = _d(obj.get("status"))
        labels = _d(meta.get("labels"))
        ready = row["phase"] == "Running" and _pod_ready(status)
        if labels.get("k8s-app") == "kube-dns":
            self.coredns_pods.append({"name": row["name"], "ready": ready, "node": row["node"]})
        if row["owner_kind"] == "DaemonSet" and row["owner_name"]:
            nodes = self._ds_pod_ready_nodes.setdefault(row["owner_name"], set())
            if ready and row["node"]:
                nodes.add(row["node"])
        if (row["name"] or "").startswith("kube-proxy") and row["owner_kind"] in (None, "Node"):
            self._kube_proxy_static = True

    def _owners(self, resource: str, path: str, wanted_kind: str) -> dict[str, list[str]] | None:
        def project(obj: dict[str, Any]) -> tuple[str, list[str]] | None:
            meta = _d(obj.get("metadata"))
            ref = _controller_ref(meta)
            if not ref or ref.get("kind") != wanted_kind:
                return None
            return f"{meta.get('namespace')}/{meta.get('name')}", [wanted_kind, ref.get("name")]

        try:
            rows = list_all(
                self.api,
                path,
                project,
                limit=self.page_limit,
                accept=METADATA_ONLY_PROTOBUF if self.protobuf else METADATA_ONLY,
                decode=typed.metadata_page,
            )
        except ResourceError as e:
            self._forbidden(resource, e)
            return None
        self._done(resource, f"({len(rows)})")
        return dict(rows)

    # -- DNS service path --------------------------------------------------------------------------

    def _dns(self, pods: list[dict[str, Any]] | None) -> dict[str, Any]:
        dns: dict[str, Any] = {
            "service_ip": None,
            "ready_endpoints": None,
            "coredns_version": None,
            "coredns_replicas": None,
            "corefile_facts": None,
            "kube_proxy_mode": None,
            "kube_proxy_present": None,
            "service_ip_families": None,
            "daemonsets": None,
            "daemonset_facts": None,
            "configmap_facts": None,
            "cilium_config": None,
            "calico_bpf": None,
        }
        ks = f"/api/v1/namespaces/{KUBE_SYSTEM}"
        svc_name = "kube-dns"
        try:
            svc = self._named_or_labelled("services", f"{ks}/services", "kube-dns")
            if svc is not None:
                svc_name = (svc.get("metadata") or {}).get("name") or svc_name
                ip = (svc.get("spec") or {}).get("clusterIP")
                dns["service_ip"] = ip if ip and ip != "None" else None
                fams = (svc.get("spec") or {}).get("ipFamilies")
                dns["service_ip_families"] = (
                    [str(f) for f in fams] if isinstance(fams, list) and fams else None
                )
            self._done("services")
        except ResourceError as e:
            self._forbidden("services", e)

        try:
            slices = self.api.get(
                f"/apis/discovery.k8s.io/v1/namespaces/{KUBE_SYSTEM}/endpointslices",
                {"labelSelector": f"kubernetes.io/service-name={svc_name}"},
            )
            dns["ready_endpoints"] = count_ready_endpoints(slices.get("items") or [])
            self._done("endpointslices", f"({dns['ready_endpoints']} ready)")
        except ResourceError as e:
            self._forbidden("endpointslices", e)

        apps = f"/apis/apps/v1/namespaces/{KUBE_SYSTEM}"
        try:
            dep = self._named_or_labelled("deployments", f"{apps}/deployments", "coredns")
            if dep is not None:
                spec = dep.get("spec") or {}
                dns["coredns_replicas"] = spec.get("replicas")
                containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
                main = next((c for c in containers if "coredns" in (c.get("image") or "")), None)
                main = main or (containers[0] if containers else {})
                dns["coredns_version"] = image_version(main.get("image"))
            self._done("deployments")
        except ResourceError as e:
            self._forbidden("deployments", e)

        daemonsets: list[dict[str, Any]] | None
        try:
            daemonsets = list_all(
                self.api, f"{apps}/daemonsets", dnsfacts.project_daemonset, limit=self.page_limit
            )
            daemonsets = [d for d in daemonsets if d["name"]]
            dns["daemonsets"] = sorted(d["name"] for d in daemonsets)
            for d in daemonsets:  # nodes with a ready pod of each DaemonSet (None: pods unreadable)
                d["ready_nodes"] = (
                    sorted(self._ds_pod_ready_nodes.get(d["name"], set())) if pods is not None else None
                )
            dns["daemonset_facts"] = sorted(daemonsets, key=lambda d: d["name"])
            self._done("daemonsets", f"({len(daemonsets)})")
        except ResourceError as e:
            self._forbidden("daemonsets", e)
            daemonsets = None
        names = set(dns["daemonsets"] or [])

        configmaps: dict[str, dict[str, Any] | None] = {}
        cm_ok = True
        mounted = [c for d in daemonsets or [] for c in d["configmaps"]]
        wanted = (
            "coredns",
            "kube-proxy",
            "kube-proxy-config",
            "cilium-config",
            *NODELOCAL_CONFIGMAPS,
            *mounted,
        )
        for cm in dict.fromkeys(wanted):
            try:
                doc = self._get_optional("configmaps", f"{ks}/configmaps/{cm}")
            except ResourceError:
                cm_ok = False
                break
            configmaps[cm] = (doc or {}).get("data") if doc is not None else None
        if cm_ok:
            self._done("configmaps")
            core = configmaps.get("coredns")
            dns["corefile_facts"] = corefile.facts(core.get("Corefile")) if core else None  # never the text
            dns["configmap_facts"] = {
                name: dnsfacts.configmap_fact(data) for name, data in configmaps.items() if data is not None
            }
            cilium = configmaps.get("cilium-config")
            if cilium is not None:
                dns["cilium_config"] = {
                    k: cilium.get(k)
                    for k in ("kube-proxy-replacement", "bpf-lb-sock", "bpf-lb-sock-hostns-only")
                }

        # kube-proxy: DaemonSet or static pods; mode from config.conf (kubeadm) or kube-proxy-config (EKS).
        if daemonsets is not None:
            dns["kube_proxy_present"] = "kube-proxy" in names or self._kube_proxy_static
        elif self._kube_proxy_static:
            dns["kube_proxy_present"] = True
        if cm_ok:
            dns["kube_proxy_mode"] = kube_proxy_mode(
                configmaps.get("kube-proxy"), configmaps.get("kube-proxy-config"), dns["kube_proxy_present"]
            )

        if daemonsets is not None and "calico-node" in names:
            dns["calico_bpf"] = self._calico_bpf()
        return dns

    def _calico_bpf(self) -> bool | None:
        """Calico eBPF dataplane on? FelixConfiguration ``default`` or the operator's Installation."""
        checks = (
            ("/apis/crd.projectcalico.org/v1/felixconfigurations/default", ("spec", "bpfEnabled"), True),
            (
                "/apis/operator.tigera.io/v1/installations/default",
                ("spec", "calicoNetwork", "linuxDataplane"),
                "BPF",
            ),
        )
        seen_any = False
        for path, keys, on in checks:
            try:
                doc = self.api.get(path)
            except ResourceError as e:
                if e.status == 404:
                    continue
                return None
            seen_any = True
            val: Any = doc
            for k in keys:
                val = val.get(k) if isinstance(val, dict) else None
            if val == on:
                return True
        return False if seen_any else None


def count_ready_endpoints(slices: list[dict[str, Any]]) -> int:
    """Ready kube-dns endpoints over all EndpointSlices (ready unset counts as ready, per the API).

    Dual-stack services have one slice family per address type; the larger family is the count.
    """
    per_family: dict[str, set[str]] = {}
    for sl in _ds(slices):
        fam = per_family.setdefault(str(sl.get("addressType") or "IPv4"), set())
        for ep in _ds(sl.get("endpoints")):
            if _d(ep.get("conditions")).get("ready") is False:
                continue
            ref = _d(ep.get("targetRef"))
            addrs = ep.get("addresses")
            key = (
                ref.get("uid")
                or ref.get("name")
                or (",".join(map(str, addrs)) if isinstance(addrs, list) else "")
            )
            if key:
                fam.add(str(key))
    return max((len(s) for s in per_family.values()), default=0)


def base_cluster(name: str) -> dict[str, Any]:
    """A cluster dict with every part unknown."""
    return cluster_record(name)


def failed_cluster(name: str, reason: str) -> dict[str, Any]:
    out = base_cluster(name)
    out["collected_at"] = now_iso()
    out["reason"] = reason
    out["metrics"]["note"] = "not collected: the cluster could not be read"
    return out
