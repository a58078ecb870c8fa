"""Plans and diffs from a snapshot's own objects, for data that is not a live cluster (the demo fleet, a
snapshot file): the same planners as a live cluster, reading a snapshot instead of the API server.

``SnapshotObjects`` answers ``get(ref)`` from one snapshot cluster as the planners ask a ``Kube``:

- a Deployment, StatefulSet, DaemonSet or CronJob is rebuilt from its pods (rolled up through the
  snapshot's ``owners`` as the frames do): the pod template's containers' images, ``dnsPolicy``,
  ``dnsConfig``, ``hostNetwork`` and the ``dnsfleet.io/resolver`` annotation, and its pod count;
- the kube-dns Service from ``dns.service_ip``; kube-system DaemonSets and ConfigMaps the snapshot
  names exist (with the fields the snapshot kept), every other object is absent.

A snapshot is not the cluster: objects it does not record are taken as absent and fields it does not
keep are missing, so each plan says so in a note. Dry runs, permission checks and writes need the
live cluster and are never offered on these plans.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from dnsfleet.frames import _owner
from dnsfleet.kube import ObjectRef
from dnsfleet.mitigate import nodelocal
from dnsfleet.mitigate.plan import Plan

API_VERSION = {
    "Deployment": "apps/v1",
    "StatefulSet": "apps/v1",
    "DaemonSet": "apps/v1",
    "CronJob": "batch/v1",
    "Service": "v1",
    "ConfigMap": "v1",
}
RESOLVER_ANNOTATION = "dnsfleet.io/resolver"


class SnapshotObjects:
    """A read-only stand-in for ``dnsfleet.kube.Kube`` answering ``get`` from one snapshot cluster."""

    def __init__(self, cluster: Mapping[str, Any], generated_at: str | None = None) -> None:
        self.cluster = str(cluster.get("name") or "")
        self.generated_at = generated_at or "unknown time"
        self._dns: Mapping[str, Any] = cluster.get("dns") or {}
        self._pods: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        owners = cluster.get("owners") or {}
        for pod in cluster.get("pods") or []:
            if not isinstance(pod, dict) or not pod.get("name"):
                continue
            kind, name = _owner(pod, owners)
            self._pods.setdefault((kind, str(pod.get("namespace") or ""), name), []).append(pod)

    def get(self, ref: ObjectRef) -> dict[str, Any] | None:
        if ref.kind in ("Deployment", "StatefulSet", "DaemonSet", "CronJob"):
            pods = self._pods.get((ref.kind, ref.namespace, ref.name))
            if pods:
                return self._workload(ref, pods)
            if ref.kind == "DaemonSet" and ref.namespace == "kube-system":
                return self._system_daemonset(ref)
            return None
        if ref.kind == "Service" and (ref.namespace, ref.name) == ("kube-system", "kube-dns"):
            ip = self._dns.get("service_ip")
            return self._object(ref, {"spec": {"clusterIP": ip}}) if ip else None
        if ref.kind == "ConfigMap" and ref.namespace == "kube-system":
            facts = self._dns.get("configmap_facts") or {}
            if ref.name in facts:
                keys = (facts[ref.name] or {}).get("keys") or []
                # the snapshot keeps the keys, not the data (never more than the rules read)
                return self._object(ref, {"data": dict.fromkeys(keys, "")})
        return None

    def _object(self, ref: ObjectRef, body: dict[str, Any], labels: Mapping[str, str] | None = None) -> dict:
        meta: dict[str, Any] = {
            "name": ref.name,
            "namespace": ref.namespace,
            "resourceVersion": f"snapshot {self.generated_at}",
        }
        if labels:
            meta["labels"] = dict(labels)
        return {"apiVersion": API_VERSION.get(ref.kind, "v1"), "kind": ref.kind, "metadata": meta, **body}

    def _workload(self, ref: ObjectRef, pods: list[dict[str, Any]]) -> dict[str, Any]:
        pod = pods[0]
        spec: dict[str, Any] = {
            "containers": [
                {"name": f"container-{i}", "image": image} for i, image in enumerate(pod.get("images") or [])
            ],
        }
        if pod.get("dns_policy"):
            spec["dnsPolicy"] = pod["dns_policy"]
        if isinstance(pod.get("dns_config"), dict):
            spec["dnsConfig"] = _as_api(pod["dns_config"])
        if pod.get("host_network"):
            spec["hostNetwork"] = True
        template: dict[str, Any] = {"spec": spec}
        if pod.get("resolver_annotation"):
            template["metadata"] = {"annotations": {RESOLVER_ANNOTATION: pod["resolver_annotation"]}}
        if ref.kind == "CronJob":
            return self._object(ref, {"spec": {"jobTemplate": {"spec": {"template": template}}}})
        body: dict[str, Any] = {"template": template}
        if ref.kind in ("Deployment", "StatefulSet"):
            body["replicas"] = len(pods)
        return self._object(ref, {"spec": body})

    def _system_daemonset(self, ref: ObjectRef) -> dict[str, Any] | None:
        for ds in self._dns.get("daemonset_facts") or []:
            if isinstance(ds, dict) and ds.get("name") == ref.name:
                return self._object(ref, {"spec": {}}, ds.get("labels") or {})
        if ref.name in (self._dns.get("daemonsets") or []):
            return self._object(ref, {"spec": {}})
        return None


def _as_api(dns_config: Mapping[str, Any]) -> dict[str, Any]:
    """A snapshot's dnsConfig as the API server returns it: a flag option has no ``value`` key."""
    out = {k: v for k, v in dns_config.items() if v is not None}
    if isinstance(out.get("options"), list):
        out["options"] = [
            {k: v for k, v in o.items() if v is not None} if isinstance(o, dict) else o
            for o in out["options"]
        ]
    return out


def _note(objs: SnapshotObjects) -> str:
    return (
        f"planned from the snapshot taken at {objs.generated_at}, not from the live objects: objects the "
        "snapshot does not record are taken as absent and the diff shows only the fields it keeps; "
        "a dry run and apply need the live cluster (a kubeconfig scan)"
    )


def plan_resolver_options(
    snapshot: Mapping[str, Any], cluster: str, targets: Iterable[Any], options: Mapping[str, str | None]
) -> Plan:
    """``resolver_options.plan_resolver_options`` against the snapshot's objects of ``cluster``."""
    from dnsfleet.mitigate import resolver_options

    objs = _objects(snapshot, cluster)
    plan = resolver_options.plan_resolver_options(objs, targets, options)  # type: ignore[arg-type]
    plan.notes.insert(0, _note(objs))
    return plan


def plan_nodelocal(snapshot: Mapping[str, Any], cluster: str, **kwargs: Any) -> Plan:
    """``nodelocal.plan_nodelocal`` against the snapshot's objects of ``cluster``."""
    objs = _objects(snapshot, cluster)
    plan = nodelocal.plan_nodelocal(objs, **kwargs)  # type: ignore[arg-type]
    plan.notes.insert(0, _note(objs))
    return plan


def _objects(snapshot: Mapping[str, Any], cluster: str) -> SnapshotObjects:
    from dnsfleet.mitigate.errors import MitigationError

    for c in snapshot.get("clusters") or []:
        if isinstance(c, dict) and c.get("name") == cluster:
            if c.get("status") == "failed":
                raise MitigationError(
                    f"{cluster}: the scan failed, the snapshot holds no objects to plan from"
                )
            return SnapshotObjects(c, snapshot.get("generated_at"))
    raise MitigationError(f"{cluster}: not in this snapshot")
