"""Evidence beats inference (D6, D7), who uses cluster DNS (D8), K4 with one endpoint, the ranking,
and the recommendation routes (no-aaaa, GODEBUG, musl ndots, unknown kube-proxy mode)."""

from __future__ import annotations

import copy

import pandas as pd
import pytest

from dnsfleet.engine import analyze
from dnsfleet.report import report_frames
from tests.builders import cluster, node, pod, snapshot

NEW = "5.15.0-1057-azure"  # Ubuntu flavour on a 5.15 base: every race fixed by the base (K0)
OLD = "4.15.0-1029-azure"  # races 1-3 open


def wl(a, name: str) -> pd.Series:
    rows = a.workloads[a.workloads["name"] == name]
    assert len(rows) == 1, name
    return rows.iloc[0]


def ftext(a, factor: str, cluster: str = "c1") -> str:
    f = a.factors[
        (a.factors["scope"] == "cluster") & (a.factors["factor"] == factor) & (a.factors["key"] == cluster)
    ]
    return " ".join(f["text"])


def metrics(nodes: dict[str, tuple[float, float]], window: float = 6 * 3600, **core) -> dict:
    return {
        "source": "prometheus",
        "window_s": window,
        "coredns": {"qps": 300.0, **core},
        "conntrack": {
            "nodes": {n: {"insert_failed_increase": i, "drop_increase": d} for n, (i, d) in nodes.items()}
        },
    }


def test_d6_growth_on_a_fixed_kernel_is_exposed_by_evidence() -> None:
    c = cluster(nodes=[node("n1", NEW), node("n2", NEW)], pods=[pod("app", "n1", "debian:12")])
    quiet = analyze(snapshot({**c, "metrics": metrics({"n1": (0, 0), "n2": (0, 0)})}))
    assert wl(quiet, "app")["score"] == 0 and wl(quiet, "app")["level"] == "low"
    c["metrics"] = metrics({"n1": (40, 0), "n2": (0, 0)})
    a = analyze(snapshot(c))
    w = wl(a, "app")
    assert w["level"] == "high" and w["exposed_pods"] == 1
    assert "(D6)" in w["why"] and "kernel table says fixed" in w["why"]
    n1 = a.nodes.set_index("node").loc["n1"]
    assert "(D6)" in n1["why"] and n1["level"] != "low"
    cl = a.clusters.iloc[0]
    assert "D6" in cl["why"] and "no pod is exposed" not in cl["why"]
    # drop growth alone counts too; a kernel upgrade is not the advice for it
    c["metrics"] = metrics({"n1": (0, 7), "n2": (0, 0)})
    a = analyze(snapshot(c))
    assert wl(a, "app")["exposed_pods"] == 1
    assert "kernel-upgrade" not in set(a.recommendations["mitigation"])


def test_d7_flat_busy_old_kernel_with_servfails_is_probably_not_this_race() -> None:
    pods = [pod(f"app-{i}", "n1", "debian:12", owner_kind="ReplicaSet", owner_name="app-1") for i in range(3)]
    c = cluster(nodes=[node("n1", OLD)], pods=pods)
    c["owners"]["ReplicaSet"]["shop/app-1"] = ["Deployment", "app"]
    c["metrics"] = metrics({"n1": (0, 0)}, servfail_share=0.04)
    a = analyze(snapshot(c))
    row = a.clusters.iloc[0]
    assert "D7" in ftext(a, "evidence") and "probably not this race" in row["findings"]
    f = a.recommendations[a.recommendations["finding_type"] == "not-this-race"]
    assert (
        len(f) == 1 and "CoreDNS capacity" in f["action"].iloc[0] and "4.0% SERVFAIL" in f["action"].iloc[0]
    )
    csv = report_frames(a)["recommendations.csv"]
    assert "not-this-race" in set(csv["mitigation"])
    assert "(D7)" in a.nodes.iloc[0]["why"]
    # The score stays what the kernel says: the finding is advice, not a verdict.
    assert wl(a, "app")["level"] == "high"
    # Without CoreDNS errors: the evidence is said, no finding; reported timeouts bring it back.
    c["metrics"] = metrics({"n1": (0, 0)})
    quiet = analyze(snapshot(c))
    assert quiet.clusters.iloc[0]["findings"] is None or pd.isna(quiet.clusters.iloc[0]["findings"])
    assert "D7" in ftext(quiet, "evidence")
    told = analyze(snapshot(c), timeouts_reported=["c1"])
    assert "users report DNS timeouts" in told.clusters.iloc[0]["findings"]
    # A short window, a growing counter or a >= 5.10 kernel is no D7 evidence.
    for m, kv in ((metrics({"n1": (0, 0)}, window=600, servfail_share=0.04), OLD),
                  (metrics({"n1": (3, 0)}, servfail_share=0.04), OLD),
                  (metrics({"n1": (0, 0)}, servfail_share=0.04), NEW)):  # fmt: skip
        c2 = copy.deepcopy(c)
        c2["metrics"], c2["nodes"] = m, [node("n1", kv)]
        b = analyze(snapshot(c2))
        assert "not-this-race" not in set(b.recommendations["mitigation"]), (m, kv)


def test_d8_daemonsets_do_not_change_a_cluster_score() -> None:
    app = [pod(f"app-{i}", "n1", "debian:12", owner_kind="ReplicaSet", owner_name="app-1") for i in range(4)]
    base = cluster(nodes=[node("n1"), node("n2")], pods=app)
    base["owners"]["ReplicaSet"]["shop/app-1"] = ["Deployment", "app"]
    more = copy.deepcopy(base)
    for n in ("n1", "n2"):
        for name, kw in (
            ("kube-proxy", {"host_network": True}),
            ("node-local-dns", {"host_network": True, "dns_policy": "Default"}),
            ("calico-node", {"host_network": True}),
            ("node-exporter", {"host_network": True}),
        ):
            more["pods"].append(pod(f"{name}-{n}", n, "registry.k8s.io/x:1", namespace="kube-system",
                                    owner_kind="DaemonSet", owner_name=name, **kw))  # fmt: skip
    more["pods"].append(pod("probe", "n2", "alpine:3.19", dns_policy="None"))
    more["pods"][-1]["dns_config"] = {"nameservers": ["8.8.8.8"], "options": []}
    a, b = analyze(snapshot(base)), analyze(snapshot(more))
    ca, cb = a.clusters.iloc[0], b.clusters.iloc[0]
    assert cb["score"] == ca["score"] and cb["level"] == ca["level"]
    assert cb["unknown_pods"] == 0 and cb["applicable_pods"] == ca["applicable_pods"] == 4
    na = b.workloads[b.workloads["namespace"] == "kube-system"]
    assert set(na["level"]) == {"n/a"} and na["score"].isna().all()
    assert not set(na["workload_id"]) & set(b.recommendations["target"])
    assert wl(b, "probe")["level"] == "n/a"
    assert "not applicable (D8)" in ftext(b, "resolver")


def test_cluster_of_system_daemonsets_only_is_not_applicable_not_unknown() -> None:
    pods = [pod(f"cilium-{n}", n, "quay.io/cilium/cilium:v1.15.6", namespace="kube-system",
                owner_kind="DaemonSet", owner_name="cilium", host_network=True) for n in ("n1", "n2")]  # fmt: skip
    a = analyze(snapshot(cluster(nodes=[node("n1"), node("n2")], pods=pods)))
    row = a.clusters.iloc[0]
    assert row["level"] == "n/a" and pd.isna(row["score"]) and row["unknown_pods"] == 0
    assert "not applicable (D8)" in row["why"] and a.recommendations.empty


def test_one_endpoint_names_how_many_pods_a_second_would_expose() -> None:
    # Ubuntu 18.04 generic 4.15.0-58: races 1 and 2 fixed by the Bionic SRU (LP#1836816), race 3 open by
    # the sourced ubuntu-generic row (the fix 6a757c07e51f only exists from Feb 2020).
    kv = "4.15.0-58-generic"
    pods = [pod(f"a-{i}", "n1", "debian:12", owner_kind="ReplicaSet", owner_name="a-1") for i in range(5)]
    c = cluster(nodes=[node("n1", kv, "Ubuntu 18.04.3 LTS")], pods=pods, ready_endpoints=1)
    c["owners"]["ReplicaSet"]["shop/a-1"] = ["Deployment", "a"]
    a = analyze(snapshot(c))
    msg = "race 3 is open on these nodes but cannot trigger with one endpoint; scaling CoreDNS to 2 exposes 5 pods"
    assert msg in wl(a, "a")["why"] and wl(a, "a")["score"] == 0
    assert msg in a.clusters.iloc[0]["why"] and "races are fixed" not in a.clusters.iloc[0]["why"]
    c["dns"]["ready_endpoints"] = 0  # consistent at 0: race 3 cannot trigger, no upgrade for it
    z = analyze(snapshot(c))
    assert wl(z, "a")["score"] == 0 and "kernel-upgrade" not in set(z.recommendations["mitigation"])


def test_ipvs_on_5_15_is_unknown_not_fixed() -> None:
    c = cluster(nodes=[node("n1", "5.15.0-91-generic", "Ubuntu 22.04.3 LTS")], pods=[pod("app", "n1", "debian:12")],
                kube_proxy_mode="ipvs")  # fmt: skip
    a = analyze(snapshot(c))
    w = wl(a, "app")
    assert w["level"] == "unknown" and w["unknown_pods"] == 1 and w["exposed_pods"] == 0
    assert "IPVS" in ftext(a, "kernel")
    c["dns"]["kube_proxy_mode"] = "iptables"
    assert wl(analyze(snapshot(c)), "app")["level"] == "low"


def test_unknown_only_cluster_never_ranks_above_known_exposure() -> None:
    # "unk": every pod's resolver unknown on open kernels (worst case scores high);
    # "known": one exposed glibc pod among many Go pods (low score, but known exposure). distroless/static
    # alone is not proof of Go (static musl binaries use it too), so the Go pods are annotated.
    unk = cluster("unk", pods=[pod(f"u{i}", "n1", "registry.example.com/x:1") for i in range(6)])
    go = [
        pod(f"go{i}", "n1", "gcr.io/distroless/static:nonroot", resolver_annotation="go") for i in range(30)
    ]
    known = cluster("known", pods=[pod("g", "n1", "debian:12"), *go])
    a = analyze(snapshot(unk, known))
    c = a.clusters.set_index("cluster")
    assert c.loc["unk", "score"] > c.loc["known", "score"]
    assert c.loc["known", "rank"] < c.loc["unk", "rank"]
    assert a.clusters["cluster"].tolist()[:2] == ["known", "unk"]
    assert c.loc["unk", "level"] == "unknown" and c.loc["unk", "unknown_pods"] == 6
    assert "annotate the resolver" in c.loc["unk", "unknown_resolve"]
    assert pd.isna(c.loc["known", "unknown_resolve"])


def test_recommendation_routes() -> None:
    c = cluster(
        nodes=[node("n1")],
        pods=[
            pod("bookworm", "n1", "debian:12-slim"),
            pod("jammy", "n1", "ubuntu:22.04"),
            pod("cgo", "n1", "registry.example.com/api:1", resolver_annotation="go-cgo"),
            pod("alpine-go", "n1", "alpine:3.19"),
            pod("alpine-annotated", "n1", "alpine:3.19", resolver_annotation="go"),
        ],
        service_ip_families=["IPv4"],
    )
    a = analyze(snapshot(c))
    recs = a.recommendations
    by = recs.groupby("target")["mitigation"].agg(set)
    assert (
        "no-aaaa" in by["c1/shop/Pod/bookworm"] and "no-aaaa" not in by["c1/shop/Pod/jammy"]
    )  # 2.36 vs 2.35
    assert "godebug-netdns-go" in by["c1/shop/Pod/cgo"]
    assert "GODEBUG=netdns=go" in recs[recs["mitigation"] == "godebug-netdns-go"]["action"].iloc[0]
    musl = recs[(recs["target"] == "c1/shop/Pod/alpine-go") & (recs["mitigation"] == "nodelocal-dnscache")]
    assert "dnsfleet.io/resolver=go" in musl["note"].iloc[0]
    nd = recs[(recs["target"] == "c1/shop/Pod/alpine-go") & (recs["mitigation"] == "lower-ndots")]
    assert "musl caveat" in nd["note"].iloc[0]
    assert "c1/shop/Pod/alpine-annotated" not in set(recs["target"])
    fix = a.workloads.set_index("name")["recommended_fix"]
    assert fix["bookworm"] == "single-request-reopen" and fix["cgo"] == "godebug-netdns-go"
    # Dual-stack or unknown families: no no-aaaa (it would drop the IPv6 answers the cluster uses).
    c["dns"]["service_ip_families"] = ["IPv4", "IPv6"]
    assert "no-aaaa" not in set(analyze(snapshot(c)).recommendations["mitigation"])
    c["dns"].pop("service_ip_families")
    assert "no-aaaa" not in set(analyze(snapshot(c)).recommendations["mitigation"])


@pytest.mark.parametrize("mode", [None, "iptables"])
def test_nodelocal_advice_asks_for_the_mode_when_unknown(mode) -> None:
    c = cluster(nodes=[node("n1")], pods=[pod("m", "n1", "alpine:3.19")], kube_proxy_mode=mode)
    nl = analyze(snapshot(c)).recommendations
    nl = nl[(nl["scope"] == "cluster") & (nl["mitigation"] == "nodelocal-dnscache")]
    if mode is None:  # unknown mode: unknown path, nothing claims the iptables variant
        assert not nl["action"].str.contains("iptables variant").any()
    else:
        assert "kube-proxy iptables variant" in nl["action"].iloc[0]


def test_workload_fix_is_decided_once_in_the_assessment() -> None:
    from dashboard import views

    a = analyze(
        snapshot(
            cluster(nodes=[node("n1")], pods=[pod("g", "n1", "debian:12"), pod("m", "n1", "alpine:3.19")])
        )
    )
    t = views.workload_table(a.workloads).set_index("owner")["recommended_fix"]
    assert (
        t.to_dict()
        == a.workloads.set_index(a.workloads["kind"] + "/" + a.workloads["name"])["recommended_fix"].to_dict()
    )


def test_mitigations_page_asks_for_the_kube_proxy_mode_when_it_is_unknown(monkeypatch, tmp_path) -> None:
    """The demo's cilium-edge has no kube-proxy: the NodeLocal form must not preselect iptables."""
    from pathlib import Path

    import streamlit as st
    from streamlit.testing.v1 import AppTest

    for k in ("DNSFLEET_ALLOW_WRITES", "DNSFLEET_KUBECONFIG", "KUBECONFIG", "DNSFLEET_SNAPSHOT"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("DNSFLEET_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    st.cache_data.clear()
    app = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")
    at = AppTest.from_file(app, default_timeout=60)
    at.run()
    at.switch_page("../pages/mitigations.py").run()
    at.selectbox(key="mit.cluster").set_value("cilium-edge").run()
    at.radio(key="mit.kind").set_value("NodeLocal DNSCache").run()
    assert not at.exception
    assert at.selectbox(key="mit.mode").value is None
    assert "Download rendered YAML" not in [d.proto.label for d in at.get("download_button")]
    assert any("Choose the kube-proxy mode" in i.value for i in at.info)
    st.cache_data.clear()
