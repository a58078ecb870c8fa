"""The in-cluster collector's manifests: plain Kubernetes objects a GitOps repository can take.

``collector_manifests`` returns, in apply order: the Namespace (Pod Security ``restricted`` enforced),
the ServiceAccount, a read-only ClusterRole + binding for the cluster-wide lists the scan makes, a
read-only Role + binding in ``kube-system`` for the DNS objects it reads there, and the CronJob that
runs ``dnsfleet scan --in-cluster --cluster-name NAME --store URL``. Store credentials come from a
Secret the operator creates (``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` keys); the manifests only
reference it, they never hold a credential.

The RBAC rules are exactly the reads ``collect.cluster`` and ``collect.scrape`` make (every verb is
``get`` or ``list``, most by resource name); ``tests/test_deploy_fleet.py`` runs the collector with
nothing but these rules against a real API server and requires a complete (``ok``) scan.
"""

from __future__ import annotations

import re
from typing import Any

from dnsfleet import __version__

NAMESPACE = "dnsfleet"
NAME = "dnsfleet-collector"
STORE_SECRET = "dnsfleet-store"
# The tag the Containerfile's build instructions give the image (docs/store.md); --image overrides.
DEFAULT_IMAGE = f"localhost/dnsfleet:{__version__}"
CLUSTER_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,99}$")
CRON_FIELD_RE = re.compile(r"^[A-Za-z0-9*/,\-?]+$")
IMAGE_RE = re.compile(r"^[a-z0-9][A-Za-z0-9._/:@-]{0,254}$")
NAMESPACE_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
SECRET_RE = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# Labelling one of these Pod Security restricted would stop the cluster's own pods.
SYSTEM_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease", "default"})
LABELS = {"app.kubernetes.io/name": "dnsfleet", "app.kubernetes.io/component": "collector"}

# What the scan reads cluster-wide (collect/cluster.py): the big lists, the kube-system namespace's
# UID (the collector's identity in the store) and the Calico eBPF switches when calico-node runs.
CLUSTER_RULES: list[dict[str, Any]] = [
    {"apiGroups": [""], "resources": ["nodes", "pods"], "verbs": ["list"]},
    {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": ["list"]},
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["list"]},
    {"apiGroups": [""], "resources": ["namespaces"], "resourceNames": ["kube-system"], "verbs": ["get"]},
    {
        "apiGroups": ["crd.projectcalico.org"],
        "resources": ["felixconfigurations"],
        "resourceNames": ["default"],
        "verbs": ["get"],
    },
    {
        "apiGroups": ["operator.tigera.io"],
        "resources": ["installations"],
        "resourceNames": ["default"],
        "verbs": ["get"],
    },
]
# What it reads in kube-system: the DNS Service, its EndpointSlices, the CoreDNS Deployment, the
# DaemonSets (kube-proxy, node-local-dns, CNIs), the ConfigMaps it names, and CoreDNS's metrics
# through the pod proxy (only when no Prometheus is given).
KUBE_SYSTEM_RULES: list[dict[str, Any]] = [
    {"apiGroups": [""], "resources": ["services"], "verbs": ["get", "list"]},
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list"]},
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list"]},
    {"apiGroups": ["apps"], "resources": ["daemonsets"], "verbs": ["list"]},
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["pods/proxy"], "verbs": ["get"]},
]


class DeployError(ValueError):
    """Bad collector settings; ``str(err)`` is one line."""


def collector_manifests(
    cluster_name: str,
    store_url: str,
    schedule: str,
    *,
    image: str | None = None,
    namespace: str = NAMESPACE,
    store_secret: str = STORE_SECRET,
    prometheus: str | None = None,
) -> list[dict[str, Any]]:
    """The collector's objects, in apply order. Raises DeployError for unusable settings."""
    if not CLUSTER_NAME_RE.match(cluster_name or ""):
        raise DeployError(f"--cluster-name {cluster_name!r}: 1-100 characters, letters, digits and ._:@/-")
    if not store_url.startswith("s3://"):
        raise DeployError(
            "the collector's --store must be reachable from inside the cluster (s3://BUCKET/PREFIX?endpoint=...); "
            "a local directory would vanish with the pod"
        )
    from dnsfleet.store.backend import Backend, StoreError

    try:
        Backend(store_url)  # validates the URL (no credentials in it, known options) without a request
    except StoreError as e:
        raise DeployError(str(e)) from None
    if not NAMESPACE_RE.match(namespace or "") or namespace in SYSTEM_NAMESPACES:
        raise DeployError(
            f"--namespace {namespace!r}: a namespace of its own (a DNS label, not "
            f"{', '.join(sorted(SYSTEM_NAMESPACES))}): it is labelled Pod Security restricted"
        )
    if not SECRET_RE.match(store_secret or ""):
        raise DeployError(f"--store-secret {store_secret!r} is not a Secret name")
    fields = schedule.split()
    if len(fields) != 5 or not all(CRON_FIELD_RE.match(f) for f in fields):
        raise DeployError(f"--schedule {schedule!r} is not a five-field cron expression")
    image = image or DEFAULT_IMAGE
    if not IMAGE_RE.match(image):
        raise DeployError(f"--image {image!r} is not an image reference")
    if prometheus is not None and not re.match(r"^https?://\S+$", prometheus):
        raise DeployError(f"--prometheus {prometheus!r} must be an http(s) URL")

    labels = dict(LABELS)
    meta = {"name": NAME, "namespace": namespace, "labels": labels}
    args = ["scan", "--in-cluster", "--cluster-name", cluster_name, "--store", store_url, "-o", "json"]
    if prometheus:
        args += ["--prometheus", prometheus]
    env = [{"name": "HOME", "value": "/tmp"}] + [
        {"name": k, "valueFrom": {"secretKeyRef": {"name": store_secret, "key": k}}}
        for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    ]
    pod_spec = {
        "serviceAccountName": NAME,
        "restartPolicy": "Never",
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 65532,
            "runAsGroup": 65532,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": "collector",
                "image": image,
                "args": args,
                "env": env,
                "resources": {
                    "requests": {"cpu": "100m", "memory": "256Mi"},
                    "limits": {"memory": "1Gi"},
                },
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "readOnlyRootFilesystem": True,
                    "runAsNonRoot": True,
                    "capabilities": {"drop": ["ALL"]},
                },
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
            }
        ],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": namespace,
                "labels": {
                    **labels,
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/warn": "restricted",
                },
            },
        },
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": NAME, "labels": labels},
            "rules": CLUSTER_RULES,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": NAME, "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": NAME},
            "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": namespace}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": NAME, "namespace": "kube-system", "labels": labels},
            "rules": KUBE_SYSTEM_RULES,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": NAME, "namespace": "kube-system", "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": NAME},
            "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": namespace}],
        },
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": meta,
            "spec": {
                "schedule": schedule,
                "concurrencyPolicy": "Forbid",
                "startingDeadlineSeconds": 600,
                "successfulJobsHistoryLimit": 1,
                "failedJobsHistoryLimit": 3,
                "jobTemplate": {
                    "spec": {
                        "backoffLimit": 1,
                        "activeDeadlineSeconds": 900,
                        "ttlSecondsAfterFinished": 86400,
                        "template": {"metadata": {"labels": labels}, "spec": pod_spec},
                    }
                },
            },
        },
    ]


def to_yaml(objects: list[dict[str, Any]]) -> str:
    """Plain multi-document YAML, keys in the order written above, without anchors: the CronJob's
    labels are one dict in two places, which PyYAML would write as ``&id001``/``*id001`` (valid YAML,
    but not what a reviewer of a GitOps repository expects, and not what ``kubectl get -o yaml`` writes)."""
    import yaml

    class _Plain(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:
            return True

    return yaml.dump_all(objects, Dumper=_Plain, sort_keys=False, default_flow_style=False)
