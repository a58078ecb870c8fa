"""Object references: which API path a kind, namespace and name live at."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from dnsfleet.kube.errors import ConfigError


@dataclass(frozen=True)
class ResourceInfo:
    kind: str
    group: str  # "" for the core group
    version: str
    plural: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def base(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"


# The kinds dnsfleet reads or writes by reference.
KINDS: dict[str, ResourceInfo] = {
    r.kind: r
    for r in (
        ResourceInfo("Deployment", "apps", "v1", "deployments"),
        ResourceInfo("StatefulSet", "apps", "v1", "statefulsets"),
        ResourceInfo("DaemonSet", "apps", "v1", "daemonsets"),
        ResourceInfo("ReplicaSet", "apps", "v1", "replicasets"),
        ResourceInfo("Job", "batch", "v1", "jobs"),
        ResourceInfo("CronJob", "batch", "v1", "cronjobs"),
        ResourceInfo("Pod", "", "v1", "pods"),
        ResourceInfo("ServiceAccount", "", "v1", "serviceaccounts"),
        ResourceInfo("Service", "", "v1", "services"),
        ResourceInfo("ConfigMap", "", "v1", "configmaps"),
        ResourceInfo("Role", "rbac.authorization.k8s.io", "v1", "roles"),
        ResourceInfo("RoleBinding", "rbac.authorization.k8s.io", "v1", "rolebindings"),
        # cluster-scoped: an ObjectRef to one has namespace ""
        ResourceInfo("Namespace", "", "v1", "namespaces", namespaced=False),
        ResourceInfo("ClusterRole", "rbac.authorization.k8s.io", "v1", "clusterroles", namespaced=False),
        ResourceInfo(
            "ClusterRoleBinding", "rbac.authorization.k8s.io", "v1", "clusterrolebindings", namespaced=False
        ),
    )
}


@dataclass(frozen=True)
class ObjectRef:
    """One API object: kind, namespace, name (namespace "" for a cluster-scoped kind)."""

    kind: str
    namespace: str
    name: str

    @property
    def info(self) -> ResourceInfo:
        try:
            return KINDS[self.kind]
        except KeyError:
            raise ConfigError(f"unsupported kind {self.kind!r}") from None

    def path(self) -> str:
        return f"{self.collection_path()}/{self.name}"

    def collection_path(self) -> str:
        i = self.info
        if not i.namespaced:
            return f"{i.base()}/{i.plural}"
        return f"{i.base()}/namespaces/{self.namespace}/{i.plural}"

    def label(self) -> str:
        info = KINDS.get(self.kind)
        if not self.namespace and info is not None and not info.namespaced:
            return f"{self.kind} {self.name}"
        return f"{self.kind} {self.namespace}/{self.name}"

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "namespace": self.namespace, "name": self.name}


def pod_proxy_path(namespace: str, pod: str, port: int, path: str) -> str:
    """The API server's proxy path to ``path`` on a pod's port."""
    return f"/api/v1/namespaces/{quote(namespace)}/pods/{quote(pod)}:{port}/proxy/{path.lstrip('/')}"
