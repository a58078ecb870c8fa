"""Service-path rules P1-P5, K4, K6 and D8: how a pod's DNS reaches CoreDNS, decided once.

The collector records facts (kube-system DaemonSets with their labels, images, flag names, ``-localip``
value and ready nodes; ConfigMap names and keys; node labels; kube-proxy's configured mode; Cilium's
load-balancer keys; the kube-dns Service's IP families). This module turns them into decisions that
frames, risk, recommend and mitigate all use:

- ``decide(cluster)``: provider, CNI, kube-proxy mode, eBPF service load-balancing, NodeLocal DNSCache
  (recognised by what it is: its image, its ``-localip`` flag, its ConfigMap, GKE's node label, a
  chart-prefixed name), the NFQUEUE agent, the cluster's path and the reason code for it.
- ``uses_cluster_dns``: D8, who queries the kube-dns Service at all.
- ``placement_path_gate``: P1-P3 per placement (node and workload).
- ``race3_relevant`` (K4: race 3 needs two or more ready endpoints; 0 and 1 cannot trigger it),
  ``nfqueue_relevant`` (K6) and ``effective_race3`` (IPVS on a 5.6+ kernel is unknown, not fixed).

What the facts leave open is *unknown*: IPVS-scheduled UDP on 5.6+, NodeLocal DNSCache with nftables
kube-proxy, Cilium kube-proxy replacement with ``bpf-lb-sock: false`` or ``hostNamespaceOnly``, Calico
eBPF. Recognisers and their sources are data (``data/path.json``); the messages are reason codes
(``data/codes.csv``).

Snapshots written before the collector recorded facts carry the old decided fields (``daemonsets``
names, ``nodelocal_nodes``, ``nodelocal_ip``, ``nfqueue_agent``); they are read as facts of lower
resolution.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd

PATHS = ("netfilter-dnat", "nodelocal", "socket-lb", "unknown")


@lru_cache(maxsize=1)
def notes() -> dict[str, Any]:
    """The recognisers of ``data/path.json`` (with their sources)."""
    with resources.files("dnsfleet.rules").joinpath("data", "path.json").open(encoding="utf-8") as f:
        return json.load(f)


@lru_cache(maxsize=1)
def _compiled() -> dict[str, Any]:
    n = notes()
    nl = n["nodelocal"]
    return {
        "nl_images": [re.compile(x["pattern"], re.IGNORECASE) for x in nl["images"]],
        "nl_flags": {x["flag"].lstrip("-") for x in nl["flags"]},
        "nl_names": [re.compile(x["pattern"]) for x in nl["names"]],
        "nl_labels": [(x["key"], x["value"]) for x in nl["labels"]],
        "nfq": [re.compile(x["pattern"], re.IGNORECASE) for x in n["nfqueue_agents"]],
        "cni": [(x["cni"], re.compile(x["daemonset"])) for x in n["cni"]],
        "true": set(n["true_values"]),
    }


@dataclass(frozen=True)
class NodeLocal:
    present: bool | None
    how: str | None  # what recognised it, in words
    ip: str | None  # link-local IP pods can name
    ready_nodes: frozenset[str] | None  # nodes with a ready cache pod; None: not known


@dataclass(frozen=True)
class ClusterPath:
    provider: str
    kube_proxy_mode: str  # iptables | ipvs | nftables | none | unknown
    cni: str
    ebpf_service_lb: str  # cilium-socket-lb | cilium-tc | cilium-no-socket-lb | calico-ebpf | none | unknown
    nodelocal: NodeLocal
    nfqueue_agent: bool | None
    path: str  # netfilter-dnat | nodelocal | socket-lb | unknown
    code: str  # reason code for the path (data/codes.csv)
    ipv4_only: bool | None


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _strs(v: Any) -> list[str]:
    return [str(x) for x in v if x is not None] if isinstance(v, list) else []


def _truthy(v: Any) -> bool | None:
    if v is None:
        return None
    return str(v).strip().lower() in _compiled()["true"]


def provider(cluster: dict[str, Any]) -> str:
    """The recorded provider, else one inferred from node labels, kernels and the server version."""
    if cluster.get("provider"):
        return str(cluster["provider"])
    nodes = [n for n in cluster.get("nodes") or [] if isinstance(n, dict)]
    sv = str(cluster.get("server_version") or "")
    for p in notes()["providers"]:
        for n in nodes:
            labels = _d(n.get("labels"))
            kv = str(n.get("kernel_version") or "").lower()
            if any(k.startswith(p["label_prefix"]) or k in p["labels"] for k in labels):
                return p["provider"]
            if p.get("kernel_suffix") and kv.endswith(p["kernel_suffix"]):
                return p["provider"]
            if p.get("kernel_contains") and p["kernel_contains"] in kv:
                return p["provider"]
        if p.get("server_version") and p["server_version"] in sv:
            return p["provider"]
    return "unknown" if not nodes else "other"


def _daemonsets(dns: dict[str, Any]) -> list[dict[str, Any]] | None:
    """DaemonSet facts; old snapshots give names only."""
    facts = dns.get("daemonset_facts")
    if isinstance(facts, list):
        return [d for d in facts if isinstance(d, dict) and d.get("name")]
    names = dns.get("daemonsets")
    if isinstance(names, list):
        return [{"name": str(n)} for n in names if n]
    return None


def _is_nodelocal(d: dict[str, Any]) -> str | None:
    """How a DaemonSet is recognised as NodeLocal DNSCache, or None."""
    c = _compiled()
    for img in _strs(d.get("images")):
        if any(rx.search(img) for rx in c["nl_images"]):
            return f"DaemonSet {d['name']} runs image {img}"
    flags = {f.lstrip("-") for f in _strs(d.get("flags"))}
    if d.get("localip") or flags & c["nl_flags"]:
        return f"DaemonSet {d['name']} runs node-cache with -localip"
    labels = _d(d.get("labels"))
    for k, v in c["nl_labels"]:
        if labels.get(k) == v:
            return f"DaemonSet {d['name']} is labelled {k}={v}"
    if any(rx.search(str(d["name"])) for rx in c["nl_names"]):
        return f"DaemonSet {d['name']}"
    return None


def _first_ip(text: Any) -> str | None:
    for part in str(text or "").split(","):
        try:
            return str(ipaddress.ip_address(part.strip()))
        except ValueError:
            continue
    return None


def nodelocal(dns: dict[str, Any], nodes: list[dict[str, Any]] | None) -> NodeLocal:
    """NodeLocal DNSCache: present?, how recognised, its link-local IP and its ready nodes."""
    c = _compiled()
    ds = _daemonsets(dns)
    gke = notes()["nodelocal"]["node_label"]
    labelled = frozenset(
        str(n["name"])
        for n in nodes or []
        if isinstance(n, dict) and n.get("name") and _d(n.get("labels")).get(gke["key"]) == gke["value"]
    )
    hits = [(d, how) for d in ds or [] if (how := _is_nodelocal(d))]
    cms = _d(dns.get("configmap_facts"))
    cm_hit = next(
        (name for name in sorted(cms) if any(rx.search(name) for rx in c["nl_names"])),
        None,
    )
    old_ip = dns.get("nodelocal_ip")
    ip = next((_first_ip(d.get("localip")) for d, _ in hits if _first_ip(d.get("localip"))), None)
    if ip is None and cm_hit:
        ip = _first_ip(_d(cms.get(cm_hit)).get("link_local"))
    if ip is None:
        ip = _first_ip(old_ip)
    if hits:
        how = "; ".join(h for _, h in hits)
        ready: set[str] | None = set(labelled)
        for d, _ in hits:
            rn = d.get("ready_nodes")
            if isinstance(rn, list):
                ready |= {str(x) for x in rn}
            elif "daemonset_facts" in dns:
                ready = None
                break
            else:  # old snapshot: the collector's own list
                old = dns.get("nodelocal_nodes")
                if isinstance(old, list):
                    ready |= {str(x) for x in old}
                else:
                    ready = None
                    break
        return NodeLocal(True, how, ip, frozenset(ready) if ready is not None else None)
    if labelled:
        return NodeLocal(True, f"GKE node label {gke['key']}={gke['value']}", ip, labelled)
    if cm_hit:
        return NodeLocal(True, f"ConfigMap {cm_hit}", ip, None)
    if ds is None:
        return NodeLocal(None, None, None, None)
    if (
        "daemonset_facts" not in dns
        and isinstance(dns.get("nodelocal_nodes"), list)
        and dns["nodelocal_nodes"]
    ):
        # Old snapshots recorded ready pods labelled k8s-app=node-local-dns under any DaemonSet name.
        return NodeLocal(True, "pods labelled k8s-app=node-local-dns", ip, frozenset(dns["nodelocal_nodes"]))
    return NodeLocal(False, None, None, frozenset())


def _nfqueue(dns: dict[str, Any], ds: list[dict[str, Any]] | None) -> bool | None:
    if "daemonset_facts" not in dns and dns.get("nfqueue_agent") is not None:
        return bool(dns["nfqueue_agent"])
    if ds is None:
        return None
    rxs = _compiled()["nfq"]
    return any(
        rx.search(str(d["name"])) or any(rx.search(i) for i in _strs(d.get("images")))
        for d in ds
        for rx in rxs
    )


def _cni(ds: list[dict[str, Any]] | None) -> str:
    if ds is None:
        return "unknown"
    names = [str(d["name"]) for d in ds]
    return next((cni for cni, rx in _compiled()["cni"] if any(rx.search(n) for n in names)), "other")


def _ipv4_only(dns: dict[str, Any]) -> bool | None:
    fam = dns.get("service_ip_families")
    if isinstance(fam, list) and fam:
        return [str(f) for f in fam] == ["IPv4"]
    return None


def decide(cluster: dict[str, Any]) -> ClusterPath:
    """Every DNS-path decision for one snapshot cluster."""
    dns = _d(cluster.get("dns"))
    nodes = cluster.get("nodes") if isinstance(cluster.get("nodes"), list) else None
    ds = _daemonsets(dns)
    cni = _cni(ds)
    mode = dns.get("kube_proxy_mode")
    if mode not in ("iptables", "ipvs", "nftables", "none"):
        mode = "none" if dns.get("kube_proxy_present") is False else None
    cilium = _d(dns.get("cilium_config")) or None
    kpr = _truthy(cilium.get("kube-proxy-replacement")) if cilium else None
    hostns_only = _truthy(cilium.get("bpf-lb-sock-hostns-only")) if cilium else None
    sock = cilium.get("bpf-lb-sock") if cilium else None
    if cni == "cilium" and kpr:
        if sock is not None and _truthy(sock) is False:
            ebpf = "cilium-no-socket-lb"
        else:
            ebpf = "cilium-tc" if hostns_only else "cilium-socket-lb"
    elif dns.get("calico_bpf"):
        ebpf = "calico-ebpf"
    elif ds is None:
        ebpf = "unknown"
    else:
        ebpf = "none"
    nl = nodelocal(dns, nodes)
    path, code = _path(mode, ebpf, nl.present)
    if cluster.get("status") == "failed":
        path, code = "unknown", "P-FAILED"
    return ClusterPath(
        provider=provider(cluster),
        kube_proxy_mode=mode or "unknown",
        cni=cni,
        ebpf_service_lb=ebpf,
        nodelocal=nl,
        nfqueue_agent=_nfqueue(dns, ds),
        path=path,
        code=code,
        ipv4_only=_ipv4_only(dns),
    )


def _path(mode: str | None, ebpf: str, nodelocal_present: bool | None) -> tuple[str, str]:
    if ebpf == "cilium-socket-lb":
        return "socket-lb", "P3"
    if ebpf == "cilium-tc":
        return "unknown", "P3-TC"
    if ebpf == "cilium-no-socket-lb":
        return "unknown", "P3-NOSOCK"
    if ebpf == "calico-ebpf":
        return "unknown", "P4"
    if mode in ("iptables", "nftables", "ipvs"):
        if nodelocal_present and mode == "iptables":
            return "nodelocal", "P2"
        if nodelocal_present and mode == "ipvs":
            return "unknown", "P2-IPVS"
        if nodelocal_present:
            return "unknown", "P2-NFT"
        return "netfilter-dnat", "P1"
    if mode == "none":
        return "unknown", "P-NONE"
    return "unknown", "P-UNREAD"


def node_nodelocal_ready(nl: NodeLocal, node: str) -> bool | None:
    """A ready NodeLocal DNSCache pod runs on ``node`` (None: not known)."""
    if nl.present is False:
        return False
    if nl.ready_nodes is None:
        return None
    return node in nl.ready_nodes


def uses_cluster_dns(
    policy: str | None,
    host_network: bool,
    nameservers: list[str],
    cluster_ip: str | None,
    nodelocal_ip: str | None,
) -> tuple[bool | None, str | None]:
    """D8: (does the pod query the cluster DNS service, through what: ``cluster-ip`` | ``link-local``).

    hostNetwork without ClusterFirstWithHostNet and dnsPolicy Default use the node's resolv.conf;
    dnsPolicy None uses its own nameservers (cluster DNS only when they name the kube-dns or the
    NodeLocal DNSCache IP). None: a None-policy pod while neither IP is known.
    """
    policy = policy or "ClusterFirst"
    if policy == "ClusterFirstWithHostNet" or (policy == "ClusterFirst" and not host_network):
        return True, "cluster-ip"
    if policy == "None":
        if cluster_ip and cluster_ip in nameservers:
            return True, "cluster-ip"
        if nodelocal_ip and nodelocal_ip in nameservers:
            return True, "link-local"
        if not cluster_ip and not nodelocal_ip:
            return None, None
        return False, None
    return False, None  # Default, or ClusterFirst on hostNetwork (P5)


def race3_relevant(endpoints: Any) -> bool | None:
    """K4: race 3 needs two or more ready kube-dns endpoints (0 and 1 cannot trigger it)."""
    if endpoints is None or pd.isna(endpoints):
        return None
    return int(endpoints) >= 2


def nfqueue_relevant(agent: Any) -> bool | None:
    """K6: the NFQUEUE clash path matters only with an NFQUEUE-based agent on the DNS path."""
    if agent is None or pd.isna(agent):
        return None
    return bool(agent)


def race3_relevance(endpoints: pd.Series) -> np.ndarray:
    """``race3_relevant`` over a column: 1.0, 0.0 or NaN."""
    ep = endpoints.astype("Float64")
    yes = (ep >= 2).fillna(False).to_numpy(dtype=bool)
    no = (ep < 2).fillna(False).to_numpy(dtype=bool)
    return np.where(yes, 1.0, np.where(no, 0.0, np.nan))


def effective_race3(race3: pd.Series, mode: pd.Series) -> pd.Series:
    """Race 3 as the service path sees it: a mainline-fixed race 3 under IPVS is unknown (whether the
    v5.6 clash insertion covers IPVS-scheduled UDP is not established)."""
    ipvs_fixed = (mode.astype("string") == "ipvs").fillna(False) & (race3.astype("string") == "fixed").fillna(
        False
    )
    return race3.astype("string").where(~ipvs_fixed, "unknown")


def placement_path_gate(
    path: pd.Series, code: pd.Series, nodelocal_ready: pd.Series, via: pd.Series
) -> np.ndarray:
    """P1-P3 per placement: 1.0 (DNAT'd through conntrack), 0.0 (bypassed) or NaN (unknown).

    ``path``/``code`` are the cluster's, ``nodelocal_ready`` the node's, ``via`` the workload's
    (``cluster-ip`` | ``link-local``, D8)."""
    p = path.astype("string").fillna("unknown")
    cd = code.astype("string").fillna("")
    nl = nodelocal_ready.astype("boolean")
    ready = (nl == True).fillna(False).to_numpy(dtype=bool)  # noqa: E712
    not_ready = (nl == False).fillna(False).to_numpy(dtype=bool)  # noqa: E712
    link = (via.astype("string") == "link-local").fillna(False).to_numpy(dtype=bool)
    return np.select(
        [
            (p == "netfilter-dnat").to_numpy(dtype=bool),
            (p == "socket-lb").to_numpy(dtype=bool),
            (p == "nodelocal").to_numpy(dtype=bool) & ready,
            (p == "nodelocal").to_numpy(dtype=bool) & not_ready & ~link,
            (cd == "P2-IPVS").to_numpy(dtype=bool) & link & ready,
        ],
        [1.0, 0.0, 0.0, 1.0, 0.0],
        default=np.nan,
    )
