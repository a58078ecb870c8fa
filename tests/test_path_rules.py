"""rules/path.py: every DNS-path decision from recorded facts, and the codes registry it speaks with."""

from __future__ import annotations

import pandas as pd
import pytest

from dnsfleet.rules import codes
from dnsfleet.rules import path as P
from dnsfleet.rules.codes import UnknownCode
from dnsfleet.rules.kubeproxy import mode_from_config

NODE_CACHE = "registry.k8s.io/dns/k8s-dns-node-cache:1.26.4"


def ds(name: str, **kw) -> dict:
    return {"name": name, "labels": {}, "images": [], "flags": [], "localip": None, "configmaps": [], **kw}


def cluster(dns: dict, nodes: list[dict] | None = None, **kw) -> dict:
    base = {"service_ip": "10.0.0.10", "ready_endpoints": 2, "kube_proxy_mode": "iptables"}
    return {"name": "c", "status": "ok", "nodes": nodes or [], "dns": {**base, **dns}, **kw}


@pytest.mark.parametrize(
    "facts, how",
    [
        # chart-prefixed install: recognised by its image and -localip, not its name
        (ds("dns-cache-node-local-dns", images=[NODE_CACHE], flags=["-localip", "-conf"], localip="169.254.20.10"), "image"),
        (ds("cache", images=["example.com/mirror/k8s-dns-node-cache:1.23.0"]), "image"),
        (ds("cache", flags=["-localip"], localip="169.254.25.10,10.0.0.10"), "-localip"),
        (ds("cache", labels={"k8s-app": "node-local-dns"}), "labelled"),
        (ds("platform-nodelocaldns"), "DaemonSet platform-nodelocaldns"),
    ],
)  # fmt: skip
def test_nodelocal_is_recognised_by_what_it_is(facts: dict, how: str) -> None:
    facts["ready_nodes"] = ["n1"]
    d = P.decide(cluster({"daemonset_facts": [ds("kube-proxy"), facts]}))
    assert d.nodelocal.present is True and how in d.nodelocal.how
    assert d.path == "nodelocal" and d.code == "P2"
    assert d.nodelocal.ready_nodes == frozenset({"n1"})
    if facts.get("localip"):
        assert d.nodelocal.ip == facts["localip"].split(",")[0]


def test_nodelocal_from_configmap_and_gke_node_label() -> None:
    d = P.decide(cluster({"daemonset_facts": [ds("kube-proxy")], "configmap_facts": {"x-node-local-dns": {
        "keys": ["Corefile"], "link_local": "169.254.20.10"}}}))  # fmt: skip
    assert d.nodelocal.present and d.nodelocal.ip == "169.254.20.10" and d.nodelocal.ready_nodes is None
    label = {"addon.gke.io/node-local-dns-ds-ready": "true"}
    nodes = [{"name": "a", "labels": label}, {"name": "b", "labels": {}}]
    d = P.decide(cluster({"daemonset_facts": [ds("kube-proxy")]}, nodes))
    assert d.nodelocal.present and d.nodelocal.ready_nodes == frozenset({"a"})
    assert P.node_nodelocal_ready(d.nodelocal, "a") is True
    assert P.node_nodelocal_ready(d.nodelocal, "b") is False


def test_no_nodelocal_and_unreadable_daemonsets() -> None:
    d = P.decide(cluster({"daemonset_facts": [ds("kube-proxy"), ds("calico-node")]}))
    assert d.nodelocal.present is False and d.path == "netfilter-dnat" and d.cni == "calico"
    assert P.node_nodelocal_ready(d.nodelocal, "x") is False
    d = P.decide(cluster({"daemonset_facts": None, "daemonsets": None}))
    assert d.nodelocal.present is None and d.cni == "unknown" and d.nfqueue_agent is None


def test_old_snapshot_fields_still_read() -> None:
    d = P.decide(cluster({"daemonsets": ["kube-proxy", "node-local-dns"], "nodelocal_nodes": ["n1"],
                          "nodelocal_ip": "169.254.20.10", "nfqueue_agent": False}))  # fmt: skip
    assert d.nodelocal.present and d.nodelocal.ready_nodes == frozenset({"n1"}) and d.nfqueue_agent is False
    assert d.nodelocal.ip == "169.254.20.10"


@pytest.mark.parametrize(
    "dns, path, code",
    [
        ({"kube_proxy_mode": "iptables"}, "netfilter-dnat", "P1"),
        ({"kube_proxy_mode": "ipvs"}, "netfilter-dnat", "P1"),
        ({"kube_proxy_mode": "nftables"}, "netfilter-dnat", "P1"),
        ({"kube_proxy_mode": "ipvs", "nodelocal": True}, "unknown", "P2-IPVS"),
        ({"kube_proxy_mode": "nftables", "nodelocal": True}, "unknown", "P2-NFT"),
        ({"kube_proxy_mode": None, "kube_proxy_present": False, "cilium": {"kube-proxy-replacement": "true"}}, "socket-lb", "P3"),
        ({"kube_proxy_mode": None, "cilium": {"kube-proxy-replacement": "true", "bpf-lb-sock": "false"}}, "unknown", "P3-NOSOCK"),
        ({"kube_proxy_mode": None, "cilium": {"kube-proxy-replacement": "true", "bpf-lb-sock-hostns-only": "true"}}, "unknown", "P3-TC"),
        ({"kube_proxy_mode": "iptables", "calico_bpf": True}, "unknown", "P4"),
        ({"kube_proxy_mode": None, "kube_proxy_present": False}, "unknown", "P-NONE"),
        ({"kube_proxy_mode": None}, "unknown", "P-UNREAD"),
    ],
)  # fmt: skip
def test_path_table(dns: dict, path: str, code: str) -> None:
    facts = [ds("kube-proxy")]
    if dns.pop("nodelocal", False):
        facts.append(ds("node-local-dns", images=[NODE_CACHE], ready_nodes=["n1"]))
    cilium = dns.pop("cilium", None)
    if cilium:
        facts.append(ds("cilium"))
        dns["cilium_config"] = cilium
    d = P.decide(cluster({"daemonset_facts": facts, **dns}))
    assert (d.path, d.code) == (path, code)
    assert codes.get(code).rule.startswith(("P", "D"))


def test_nfqueue_agent_by_name_or_image() -> None:
    img = "registry.k8s.io/networking/kube-network-policies:v0.6.0"
    assert P.decide(cluster({"daemonset_facts": [ds("netpol", images=[img])]})).nfqueue_agent is True
    assert P.decide(cluster({"daemonset_facts": [ds("kube-network-policies")]})).nfqueue_agent is True
    assert P.decide(cluster({"daemonset_facts": [ds("kube-proxy")]})).nfqueue_agent is False


@pytest.mark.parametrize(
    "policy, host, ns, expect",
    [
        ("ClusterFirst", False, [], (True, "cluster-ip")),
        ("ClusterFirst", True, [], (False, None)),  # falls back to the node's resolv.conf
        ("ClusterFirstWithHostNet", True, [], (True, "cluster-ip")),
        ("Default", False, [], (False, None)),
        ("None", False, ["10.0.0.10"], (True, "cluster-ip")),
        ("None", False, ["169.254.20.10"], (True, "link-local")),
        ("None", False, ["8.8.8.8"], (False, None)),
        (None, False, [], (True, "cluster-ip")),
    ],
)
def test_d8_who_uses_cluster_dns(policy, host, ns, expect) -> None:
    assert P.uses_cluster_dns(policy, host, ns, "10.0.0.10", "169.254.20.10") == expect
    if policy == "None":
        assert P.uses_cluster_dns(policy, host, ns, None, None) == (None, None)


def test_k4_race3_needs_two_endpoints_consistently() -> None:
    assert [P.race3_relevant(n) for n in (0, 1, 2, 5, None, float("nan"))] == [
        False,
        False,
        True,
        True,
        None,
        None,
    ]
    col = P.race3_relevance(pd.Series([0, 1, 2, None], dtype="Int64"))
    assert col[:3].tolist() == [0.0, 0.0, 1.0] and pd.isna(col[3])


def test_ipvs_makes_a_mainline_race3_fix_unknown() -> None:
    r3 = pd.Series(["fixed", "fixed", "open"])
    mode = pd.Series(["ipvs", "iptables", "ipvs"])
    assert P.effective_race3(r3, mode).tolist() == ["unknown", "fixed", "open"]


def test_placement_gate_link_local_pods_bypass_in_ipvs() -> None:
    path = pd.Series(["unknown", "unknown", "nodelocal", "nodelocal", "nodelocal"])
    code = pd.Series(["P2-IPVS", "P2-IPVS", "P2", "P2", "P2"])
    ready = pd.Series([True, True, True, False, False], dtype="boolean")
    via = pd.Series(["link-local", "cluster-ip", "cluster-ip", "cluster-ip", "link-local"])
    g = P.placement_path_gate(path, code, ready, via)
    assert g[0] == 0.0 and pd.isna(g[1]) and g[2] == 0.0 and g[3] == 1.0 and pd.isna(g[4])


def test_proxy_mode_from_config_and_provider() -> None:
    assert mode_from_config("mode: ''\n") == "iptables"
    assert mode_from_config("kind: KubeProxyConfiguration\nmode: IPVS\n") == "ipvs"
    assert mode_from_config("mode: kernelspace\n") is None
    assert mode_from_config(": : :\n- [") is None
    assert P.provider({"nodes": [{"name": "n", "labels": {"kubernetes.azure.com/cluster": "x"}}]}) == "aks"
    assert P.provider({"nodes": [{"name": "n", "kernel_version": "5.10.1-1.amzn2.x86_64"}]}) == "eks"
    assert P.provider({"nodes": [], "server_version": "v1.30.3-gke.1"}) == "gke"
    assert P.provider({"provider": "on-prem", "nodes": []}) == "on-prem"


def test_codes_registry_is_complete_and_sourced() -> None:
    reg = codes.registry()
    for rule in [f"K{i}" for i in range(9)] + [f"P{i}" for i in range(1, 6)] + [f"D{i}" for i in range(1, 9)]:
        assert rule in reg, rule
    for rule in [f"R{i}" for i in range(1, 12)] + [f"M{i}" for i in range(1, 7)]:
        assert rule in reg, rule
    for c in reg.values():
        assert c.source and "facts" not in c.source.lower() and "§" not in c.source, c.code
    assert codes.message("K4-ONE", exposes=12).endswith("scaling CoreDNS to 2 exposes 12 pods (K4)")
    assert codes.message("K8", kernel="x", distro=None) == "kernel x (?): fix status unknown (K8)"
    with pytest.raises(UnknownCode):
        codes.get("K99")
    s = codes.render(pd.Series(["R6", None, "K8"]), {"image": pd.Series(["a", "b", "c"]),
                     "kernel": pd.Series(["k1", "k2", "k3"]), "distro": pd.Series(["el", "el", None])})  # fmt: skip
    assert s.tolist() == [codes.message("R6", image="a"), "", "kernel k3 (?): fix status unknown (K8)"]


def test_path_and_codes_data_cite_public_sources() -> None:
    notes = P.notes()
    entries = [notes["nodelocal"]["node_label"], *notes["nodelocal"]["images"], *notes["nfqueue_agents"]]
    for e in entries:
        assert e["source"] and "§" not in e["source"]
