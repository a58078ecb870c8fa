"""Mitigation 2: NodeLocal DNSCache (rule M6, facts §4).

Renders the upstream manifest (``cluster/addons/dns/nodelocaldns/nodelocaldns.yaml``: ServiceAccount,
Service ``kube-dns-upstream``, ConfigMap ``node-local-dns`` with the Corefile, DaemonSet
``node-local-dns``, headless metrics Service ``node-local-dns``) for one cluster, filling the template
variables the way the Kubernetes docs do for the cluster's kube-proxy mode:

- iptables (and nftables, which DNATs the same way): ``__PILLAR__LOCAL__DNS__`` = link-local IP,
  ``__PILLAR__DNS__DOMAIN__`` = cluster domain, ``__PILLAR__DNS__SERVER__`` = kube-dns ClusterIP; the
  cache listens on both IPs, kubelet ``clusterDNS`` stays as it is. ``__PILLAR__CLUSTER__DNS__`` and
  ``__PILLAR__UPSTREAM__SERVERS__`` are filled at run time by node-cache.
- ipvs: ``__PILLAR__DNS__SERVER__`` empty, ``__PILLAR__CLUSTER__DNS__`` = kube-dns ClusterIP; the cache
  listens only on the link-local IP, so kubelet ``clusterDNS`` must change (outside the API).

Every object carries ``app.kubernetes.io/managed-by: dnsfleet`` and is applied with server-side apply
(field manager ``dnsfleet``, ``force=false``). Undo deletes only objects with that label whose managed
fields show the ``dnsfleet`` manager.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from dnsfleet.kube import FIELD_MANAGER, Kube, KubeError, ObjectRef
from dnsfleet.kube.kubeproxy import CONFIGMAPS, kube_proxy_mode
from dnsfleet.mitigate.errors import MitigationError
from dnsfleet.mitigate.objects import clean, project, to_yaml_documents
from dnsfleet.mitigate.plan import Change, Plan, Skip

MITIGATION = "nodelocal-dnscache"
NAMESPACE = "kube-system"
DEFAULT_LOCAL_IP = "169.254.20.10"
DEFAULT_IMAGE = "registry.k8s.io/dns/k8s-dns-node-cache:1.26.4"  # tag of the stored upstream manifest (§4)
MANAGED_BY = {"app.kubernetes.io/managed-by": "dnsfleet"}
SELECTOR = "app.kubernetes.io/managed-by=dnsfleet"
MODES = ("iptables", "ipvs", "nftables")
# (kind, name) of everything the manifest creates, in apply order.
OBJECTS = (
    ("ServiceAccount", "node-local-dns"),
    ("Service", "kube-dns-upstream"),
    ("ConfigMap", "node-local-dns"),
    ("DaemonSet", "node-local-dns"),
    ("Service", "node-local-dns"),
)

_DOMAIN = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")

COREFILE = """\
__PILLAR__DNS__DOMAIN__:53 {
    errors
    cache {
            success 9984 30
            denial 9984 5
    }
    reload
    loop
    bind __PILLAR__LOCAL__DNS__ __PILLAR__DNS__SERVER__
    forward . __PILLAR__CLUSTER__DNS__ {
            force_tcp
    }
    prometheus :9253
    health __PILLAR__LOCAL__DNS__:8080
    }
in-addr.arpa:53 {
    errors
    cache 30
    reload
    loop
    bind __PILLAR__LOCAL__DNS__ __PILLAR__DNS__SERVER__
    forward . __PILLAR__CLUSTER__DNS__ {
            force_tcp
    }
    prometheus :9253
    }
ip6.arpa:53 {
    errors
    cache 30
    reload
    loop
    bind __PILLAR__LOCAL__DNS__ __PILLAR__DNS__SERVER__
    forward . __PILLAR__CLUSTER__DNS__ {
            force_tcp
    }
    prometheus :9253
    }
.:53 {
    errors
    cache 30
    reload
    loop
    bind __PILLAR__LOCAL__DNS__ __PILLAR__DNS__SERVER__
    forward . __PILLAR__UPSTREAM__SERVERS__
    prometheus :9253
    }
"""


def _ip(value: str, what: str) -> str:
    try:
        return str(ipaddress.ip_address(str(value).strip()))
    except ValueError:
        raise MitigationError(f"{what} {value!r} is not an IP address") from None


def _meta(name: str, labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None) -> dict:
    m: dict[str, Any] = {"name": name, "namespace": NAMESPACE, "labels": {**(labels or {}), **MANAGED_BY}}
    if annotations:
        m["annotations"] = annotations
    return m


def render(
    cluster_ip: str,
    proxy_mode: str,
    *,
    cluster_domain: str = "cluster.local",
    local_ip: str = DEFAULT_LOCAL_IP,
    upstream: list[str] | None = None,
    image: str = DEFAULT_IMAGE,
) -> list[dict[str, Any]]:
    """The NodeLocal DNSCache objects for one cluster, in apply order."""
    mode = (proxy_mode or "").strip().lower()
    if mode not in MODES:
        raise MitigationError(
            f"kube-proxy mode {proxy_mode!r}: NodeLocal DNSCache manifests exist for iptables, nftables and "
            "ipvs; with kube-proxy replaced (e.g. Cilium) use the CNI's local redirect instead"
        )
    kube_dns = _ip(cluster_ip, "kube-dns ClusterIP")
    local = _ip(local_ip, "local IP")
    if local == kube_dns:
        raise MitigationError("the local IP must differ from the kube-dns ClusterIP")
    domain = (cluster_domain or "").strip().rstrip(".").lower()
    if not _DOMAIN.match(domain):
        raise MitigationError(f"cluster domain {cluster_domain!r} is not a DNS name")
    if not image or any(c.isspace() for c in image):
        raise MitigationError(f"image {image!r} is not an image reference")
    ups = " ".join(_ip(u, "upstream server") for u in upstream) if upstream else None

    # Template variables as the docs' sed lines fill them (facts §4).
    if mode == "ipvs":
        server, cluster_dns = "", kube_dns
        localip_arg = local
    else:
        server, cluster_dns = kube_dns, None
        localip_arg = f"{local},{kube_dns}"
    corefile = COREFILE.replace("__PILLAR__DNS__DOMAIN__", domain).replace("__PILLAR__LOCAL__DNS__", local)
    corefile = corefile.replace(" __PILLAR__DNS__SERVER__", f" {server}" if server else "")
    if cluster_dns:
        corefile = corefile.replace("__PILLAR__CLUSTER__DNS__", cluster_dns)
    if ups:
        corefile = corefile.replace("__PILLAR__UPSTREAM__SERVERS__", ups)

    prom = {"prometheus.io/port": "9253", "prometheus.io/scrape": "true"}
    sa = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta("node-local-dns")}
    upstream_svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(
            "kube-dns-upstream", {"k8s-app": "kube-dns", "kubernetes.io/name": "KubeDNSUpstream"}
        ),
        "spec": {
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
            ],
            "selector": {"k8s-app": "kube-dns"},
        },
    }
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta("node-local-dns"),
        "data": {"Corefile": corefile},
    }
    ds = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": _meta("node-local-dns", {"k8s-app": "node-local-dns"}),
        "spec": {
            "updateStrategy": {"rollingUpdate": {"maxUnavailable": "10%"}},
            "selector": {"matchLabels": {"k8s-app": "node-local-dns"}},
            "template": {
                "metadata": {"labels": {"k8s-app": "node-local-dns"}, "annotations": prom},
                "spec": {
                    "priorityClassName": "system-node-critical",
                    "serviceAccountName": "node-local-dns",
                    "hostNetwork": True,
                    "dnsPolicy": "Default",
                    "tolerations": [
                        {"key": "CriticalAddonsOnly", "operator": "Exists"},
                        {"effect": "NoExecute", "operator": "Exists"},
                        {"effect": "NoSchedule", "operator": "Exists"},
                    ],
                    "containers": [
                        {
                            "name": "node-cache",
                            "image": image,
                            "resources": {"requests": {"cpu": "25m", "memory": "5Mi"}},
                            "args": [
                                "-localip",
                                localip_arg,
                                "-conf",
                                "/etc/Corefile",
                                "-upstreamsvc",
                                "kube-dns-upstream",
                                "-pidfile",
                                "/tmp/node-cache.pid",
                            ],
                            "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}},
                            "ports": [
                                {"containerPort": 53, "name": "dns", "protocol": "UDP"},
                                {"containerPort": 53, "name": "dns-tcp", "protocol": "TCP"},
                                {"containerPort": 9253, "name": "metrics", "protocol": "TCP"},
                            ],
                            "livenessProbe": {
                                "httpGet": {"host": local, "path": "/health", "port": 8080},
                                "initialDelaySeconds": 60,
                                "timeoutSeconds": 5,
                            },
                            "volumeMounts": [
                                {"mountPath": "/run/xtables.lock", "name": "xtables-lock"},
                                {"name": "config-volume", "mountPath": "/etc/coredns"},
                                {"name": "kube-dns-config", "mountPath": "/etc/kube-dns"},
                            ],
                        }
                    ],
                    "volumes": [
                        {
                            "name": "xtables-lock",
                            "hostPath": {"path": "/run/xtables.lock", "type": "FileOrCreate"},
                        },
                        {"name": "kube-dns-config", "configMap": {"name": "kube-dns", "optional": True}},
                        {
                            "name": "config-volume",
                            "configMap": {
                                "name": "node-local-dns",
                                "items": [{"key": "Corefile", "path": "Corefile.base"}],
                            },
                        },
                    ],
                },
            },
        },
    }
    metrics_svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta("node-local-dns", {"k8s-app": "node-local-dns"}, prom),
        "spec": {
            "clusterIP": "None",
            "ports": [{"name": "metrics", "port": 9253, "targetPort": 9253}],
            "selector": {"k8s-app": "node-local-dns"},
        },
    }
    return [sa, upstream_svc, cm, ds, metrics_svc]


def render_yaml(*args: Any, **kwargs: Any) -> str:
    """``render`` as one multi-document YAML file (the download)."""
    return to_yaml_documents(render(*args, **kwargs))


def outside_api_steps(proxy_mode: str, local_ip: str = DEFAULT_LOCAL_IP) -> list[str]:
    """What must still be done outside the Kubernetes API (M6, facts §4)."""
    steps = []
    if proxy_mode == "ipvs":
        steps.append(
            f"ipvs mode: set kubelet clusterDNS (--cluster-dns) to {local_ip} on every node and "
            "restart kubelet; pods get the new nameserver when they are recreated. Until then pods "
            "still query the kube-dns ClusterIP through IPVS and stay exposed (P2)."
        )
    if proxy_mode == "nftables":
        steps.append(
            "nftables mode: the upstream instructions cover iptables and ipvs only; node-cache installs "
            "its NOTRACK rules with iptables. Check on one node that queries to the local IP are not "
            "tracked (conntrack -L -p udp --dport 53) before relying on it."
        )
    steps.append(
        "Disabling later: delete the objects (dnsfleet undo does this for objects it created) and "
        "revert any kubelet clusterDNS change."
    )
    return steps


def cni_caveats(cni: str | None) -> list[str]:
    """CNI-specific caveats for NodeLocal DNSCache."""
    c = (cni or "unknown").lower()
    out = [
        "NetworkPolicy: node-local-dns runs with hostNetwork, so namespace/pod-selector egress rules "
        "may not match it; allow egress to the kube-dns ClusterIP (and the link-local IP) with an "
        "ipBlock (M6).",
    ]
    if c in ("calico", "unknown", "other"):
        out.append(
            "Calico: node-cache marks DNS to the local IP NOTRACK, while Calico's policy relies on "
            "connection tracking; with a policy that allows egress DNS but not ingress, the untracked "
            "replies are dropped (kubernetes/kubernetes#98758, projectcalico/calico#3795). Allow the "
            "DNS replies explicitly or use a doNotTrack policy."
        )
    if c in ("cilium", "unknown"):
        out.append(
            "Cilium: with kube-proxy replacement the DaemonSet alone is bypassed; Cilium needs its "
            "Local Redirect Policy for node-local-dns (cilium/cilium#13686)."
        )
    return out


def detect_proxy_mode(kube: Kube) -> str | None:
    """kube-proxy mode from its ConfigMaps (``kube.kubeproxy``, the same reading as the scan's). None
    when a ConfigMap cannot be read or none names a mode."""
    data: list[dict[str, str] | None] = []
    for name, _key in CONFIGMAPS:
        try:
            cm = kube.get(ObjectRef("ConfigMap", NAMESPACE, name))
        except KubeError:
            return None
        data.append(None if cm is None else (cm.get("data") or {}))
    return kube_proxy_mode(data[0], data[1])


def plan_nodelocal(
    kube: Kube,
    *,
    proxy_mode: str | None = None,
    cluster_ip: str | None = None,
    cluster_domain: str | None = None,
    local_ip: str = DEFAULT_LOCAL_IP,
    upstream: list[str] | None = None,
    image: str = DEFAULT_IMAGE,
    cni: str | None = None,
) -> Plan:
    """Plan installing NodeLocal DNSCache on the cluster ``kube`` talks to.

    Missing inputs are read from the cluster (kube-dns Service, kube-proxy ConfigMap). An existing object
    of the same name that dnsfleet did not create blocks that object: dnsfleet never takes it over.
    """
    if cluster_ip is None:
        svc = kube.get(ObjectRef("Service", NAMESPACE, "kube-dns"))
        cluster_ip = ((svc or {}).get("spec") or {}).get("clusterIP")
        if not cluster_ip:
            raise MitigationError(
                f"{kube.cluster}: Service kube-system/kube-dns not found: no ClusterIP to cache"
            )
    mode = (proxy_mode or "").lower()
    if mode in ("", "unknown"):
        mode = detect_proxy_mode(kube) or ""
        if not mode:
            raise MitigationError(
                f"{kube.cluster}: kube-proxy mode unknown; choose iptables or ipvs explicitly"
            )
    objs = render(
        cluster_ip,
        mode,
        cluster_domain=cluster_domain or "cluster.local",
        local_ip=local_ip,
        upstream=upstream,
        image=image,
    )
    plan = Plan(cluster=kube.cluster, mitigation=MITIGATION)
    for obj in objs:
        ref = ObjectRef(obj["kind"], NAMESPACE, obj["metadata"]["name"])
        live = kube.get(ref)
        ours = live is not None and _is_ours(live)
        body = obj
        blocked = None
        if live is not None and not ours:
            blocked = (
                f"{ref.label()} already exists and was not created by dnsfleet: not taken over "
                "(NodeLocal DNSCache may already be installed)"
            )
        elif live is not None and project(clean(live), obj) == obj:
            plan.skipped.append(Skip(ref.label(), "already applied by dnsfleet and unchanged"))
            continue
        elif live is not None:
            body = {
                **obj,
                "metadata": {**obj["metadata"], "resourceVersion": live["metadata"]["resourceVersion"]},
            }
        plan.changes.append(
            Change(
                ref=ref,
                action="apply",
                why=("create" if live is None else "update") + f" {ref.label()} ({mode} variant, M6)",
                before=project(clean(live), obj) if live is not None else None,
                after=obj,
                body=body,
                previous=project(clean(live), obj) if live is not None else None,
                applied=obj,
                blocked=blocked,
            )
        )
    foreign = [c.ref.label() for c in plan.changes if c.blocked]
    if foreign:
        # Never mix with an install dnsfleet did not make: a half-dnsfleet NodeLocal setup helps no one.
        for c in plan.changes:
            c.blocked = (
                c.blocked or f"not applied: {', '.join(foreign)} already exist(s), not created by dnsfleet"
            )
        plan.notes.append(
            "NodeLocal DNSCache objects not created by dnsfleet exist here: nothing will be sent"
        )
    plan.notes += outside_api_steps(mode, local_ip) + cni_caveats(cni)
    return plan


def _is_ours(obj: dict[str, Any]) -> bool:
    meta = obj.get("metadata") or {}
    if (meta.get("labels") or {}).get("app.kubernetes.io/managed-by") != "dnsfleet":
        return False
    return any(
        m.get("manager") == FIELD_MANAGER and m.get("operation") == "Apply"
        for m in meta.get("managedFields") or []
    )


def plan_undo_nodelocal(kube: Kube) -> Plan:
    """Plan deleting the NodeLocal DNSCache objects dnsfleet created, and only those (label + manager)."""
    plan = Plan(cluster=kube.cluster, mitigation="undo-" + MITIGATION)
    for kind in dict.fromkeys(k for k, _ in OBJECTS):
        for obj in kube.list(kind, NAMESPACE, SELECTOR):
            meta = obj.get("metadata") or {}
            ref = ObjectRef(kind, NAMESPACE, meta.get("name", ""))
            if (kind, ref.name) not in OBJECTS:
                plan.skipped.append(
                    Skip(ref.label(), "labelled managed-by dnsfleet but not a NodeLocal object")
                )
                continue
            if not _is_ours(obj):
                plan.skipped.append(
                    Skip(ref.label(), "labelled managed-by dnsfleet but not applied by dnsfleet")
                )
                continue
            plan.changes.append(
                Change(
                    ref=ref,
                    action="delete",
                    why=f"delete {ref.label()}, created by dnsfleet",
                    before=obj,
                    after=None,
                    body={"uid": meta["uid"], "resourceVersion": meta["resourceVersion"]},
                    previous=clean(obj),
                )
            )
    order = {k: i for i, k in enumerate(OBJECTS)}
    plan.changes.sort(key=lambda c: -order.get((c.ref.kind, c.ref.name), 0))
    if not plan.changes:
        plan.notes.append("no NodeLocal DNSCache objects created by dnsfleet in this cluster")
    plan.notes.append("revert any kubelet clusterDNS change made for ipvs mode (outside the API)")
    return plan
