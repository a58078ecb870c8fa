"""The risk model: gates, monotonicity, unknowns, ranking, plain-language reasons."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dnsfleet.demo import demo_snapshot
from dnsfleet.engine import analyze, cluster_risk
from tests.builders import cluster, node, pod, snapshot

SRR = [{"name": "single-request-reopen", "value": None}]


def wl(a, name: str) -> pd.Series:
    rows = a.workloads[a.workloads["name"] == name]
    assert len(rows) == 1, name
    return rows.iloc[0]


def one(kernel: str = "4.15.0-1029-azure", image: str = "debian:12", options=None, **dns) -> pd.Series:
    c = cluster(nodes=[node("n1", kernel)], pods=[pod("app", "n1", image, options)], **dns)
    return wl(analyze(snapshot(c)), "app")


def test_exposed_glibc_on_open_kernel_is_high_with_reasons() -> None:
    w = one()
    assert w["level"] == "high" and w["score"] >= 60
    assert w["exposed_pods"] == 1
    assert "glibc without single-request-reopen" in w["why"]
    assert "races open" in w["why"] and "DNAT" in w["why"]


def test_single_request_reopen_removes_glibc_exposure() -> None:
    assert one(options=SRR)["score"] == 0
    assert one(options=SRR)["level"] == "low"
    assert "no longer race" in one(options=SRR)["why"]


def test_musl_options_are_ignored() -> None:
    w = one(image="alpine:3.18", options=SRR)
    assert w["level"] == "high"
    assert "single-request-reopen is ignored" in w["why"]


def test_musl_stall_is_timeout_over_attempts() -> None:
    assert one(image="alpine:3.18")["stall_s"] == 2.5
    assert one(image="debian:12")["stall_s"] == 5.0
    assert one(image="debian:12", options=[{"name": "timeout", "value": "2"}])["stall_s"] == 2.0


def test_unknown_resolver_is_unknown_not_low() -> None:
    w = one(image="ghcr.io/acme/api:1.0")
    assert w["level"] == "unknown" and w["unknown_pods"] == 1 and w["exposed_pods"] == 0
    assert "dnsfleet.io/resolver" in w["why"]


def test_glibc_no_aaaa_depends_on_an_unknown_glibc_version() -> None:
    w = one(options=[{"name": "no-aaaa", "value": None}])
    assert w["sends_parallel_pair"] == "unknown" and w["level"] == "unknown"
    assert "glibc >= 2.36" in w["why"]


def test_unknown_kernel_is_unknown_not_low() -> None:
    w = one(kernel="4.9.0-acme")  # below every fix, vendor unknown: no source says open (K0, K8)
    assert w["level"] == "unknown"
    assert one(kernel="6.6.30-acme")["level"] == "low"  # K0: above every race fix, whatever the vendor


def test_fixed_kernel_is_not_exposed() -> None:
    w = one(kernel="5.15.0-1057-azure")
    assert w["score"] == 0 and w["level"] == "low"


def test_race3_needs_two_endpoints() -> None:
    k = "4.15.0-58-generic"  # races 1-2 fixed by LP#1836816, race 3 open (the SRU left it)
    assert one(kernel=k, ready_endpoints=2)["level"] in ("high", "medium")
    assert one(kernel=k, ready_endpoints=1)["score"] == 0
    assert one(kernel=k, ready_endpoints=None)["level"] == "unknown"


def test_service_paths() -> None:
    assert one(kube_proxy_mode="ipvs")["level"] == "high"  # IPVS is not a mitigation (P1)
    assert one(kube_proxy_mode="nftables")["level"] == "high"
    cil = {"kube-proxy-replacement": "true", "bpf-lb-sock-hostns-only": "false"}
    assert (
        one(kube_proxy_mode=None, kube_proxy_present=False, daemonsets=["cilium"], cilium_config=cil)["score"]
        == 0
    )
    cil_hostns = {"kube-proxy-replacement": "true", "bpf-lb-sock-hostns-only": "true"}
    assert one(daemonsets=["cilium"], cilium_config=cil_hostns, kube_proxy_mode=None)["level"] == "unknown"
    assert one(kube_proxy_mode=None, daemonsets=None)["level"] == "unknown"


def test_nodelocal_protects_only_nodes_where_it_runs() -> None:
    c = cluster(
        nodes=[node("n1"), node("n2")],
        pods=[
            pod("a", "n1", "debian:12"),
            pod(
                "b",
                "n2",
                "debian:12",
                namespace="other",
            ),
        ],
        daemonsets=["kube-proxy", "node-local-dns"],
        nodelocal_ip="169.254.20.10",
        nodelocal_nodes=["n1"],
    )
    a = analyze(snapshot(c))
    assert a.workloads.set_index("name").loc["a", "score"] == 0
    assert a.workloads.set_index("name").loc["b", "level"] == "high"
    # In IPVS mode NodeLocal helps only if kubelet clusterDNS changed, which the API does not show (P2).
    c["dns"]["kube_proxy_mode"] = "ipvs"
    assert analyze(snapshot(c)).workloads.set_index("name").loc["a", "level"] == "unknown"


def test_host_network_cluster_first_does_not_use_cluster_dns() -> None:
    c = cluster(pods=[pod("h", "n1", "debian:12", host_network=True)])
    a = analyze(snapshot(c))
    w = wl(a, "h")
    # D8: not applicable, neither unknown nor scored, and never recommended anything.
    assert not w["uses_cluster_dns"] and w["level"] == "n/a" and pd.isna(w["score"])
    assert "(D8)" in w["why"] and w["unknown_pods"] == 0
    assert a.clusters.iloc[0]["level"] == "n/a" and a.recommendations.empty
    c = cluster(pods=[pod("h", "n1", "debian:12", host_network=True, dns_policy="ClusterFirstWithHostNet")])
    assert wl(analyze(snapshot(c)), "h")["level"] == "high"


def test_evidence_counts_only_with_exact_counters_or_drops() -> None:
    base = cluster(nodes=[node("n1")], pods=[pod("app", "n1", "debian:12")])
    without = wl(analyze(snapshot(base)), "app")["score"]
    base["metrics"] = {
        "source": "prometheus",
        "window_s": 3600,
        "conntrack": {"nodes": {"n1": {"insert_failed_increase": 50, "drop_increase": 0}}},
    }
    weak = wl(analyze(snapshot(base)), "app")["score"]
    base["metrics"]["conntrack"]["nodes"]["n1"]["drop_increase"] = 20
    strong = wl(analyze(snapshot(base)), "app")["score"]
    assert without < weak < strong  # kernel < 5.10: insert_failed alone may be resolved clashes (K7)


def test_failed_cluster_is_unknown_with_reason() -> None:
    bad = {
        "name": "gone",
        "status": "failed",
        "reason": "unreachable: connection refused",
        "nodes": [],
        "pods": [],
    }
    a = analyze(snapshot(cluster("ok"), bad))
    row = a.clusters.set_index("cluster").loc["gone"]
    assert row["level"] == "unknown" and pd.isna(row["score"])
    assert "connection refused" in row["why"]
    assert pd.isna(row["nodes"])  # not 0: we could not see


def test_owner_rollup_and_bare_pods() -> None:
    c = cluster(
        pods=[
            pod("web-abc-1", "n1", "debian:12", owner_kind="ReplicaSet", owner_name="web-abc"),
            pod("web-abc-2", "n1", "debian:12", owner_kind="ReplicaSet", owner_name="web-abc"),
            pod("job-1-x", "n1", "debian:12", owner_kind="Job", owner_name="nightly-123"),
            pod("db-0", "n1", "debian:12", owner_kind="StatefulSet", owner_name="db"),
            pod("solo", "n1", "debian:12"),
        ]
    )
    c["owners"] = {
        "ReplicaSet": {"shop/web-abc": ["Deployment", "web"]},
        "Job": {"shop/nightly-123": ["CronJob", "nightly"]},
    }
    w = analyze(snapshot(c)).workloads.set_index("name")
    assert w.loc["web", ["kind", "pods"]].tolist() == ["Deployment", 2]
    assert w.loc["nightly", "kind"] == "CronJob"
    assert w.loc["db", "kind"] == "StatefulSet"
    assert w.loc["solo", "kind"] == "Pod"


def test_demo_ranking_and_recommendations() -> None:
    a = analyze(demo_snapshot())
    assert a.meta["source"] == "demo"
    assert a.clusters.iloc[0]["cluster"] == "aks-legacy-weu"
    levels = a.clusters.set_index("cluster")["level"]
    assert levels["aks-legacy-weu"] == "high" and levels["cilium-edge"] == "low"
    assert levels["eks-dr-usw2"] == "unknown"
    recs = a.recommendations
    assert recs["risk_removed"].is_monotonic_decreasing
    assert recs["finding_id"].is_unique
    musl = a.workloads[(a.workloads["resolver"] == "musl") & (a.workloads["score"] > 0)]
    musl_recs = recs[recs["target"].isin(musl["workload_id"])]
    assert len(musl_recs) and not (musl_recs["mitigation"] == "single-request-reopen").any()
    assert {"nodelocal-dnscache", "kernel-upgrade", "single-request-reopen"} <= set(recs["mitigation"])


def test_analysis_is_deterministic() -> None:
    a, b = analyze(demo_snapshot()), analyze(demo_snapshot())
    pd.testing.assert_frame_equal(a.clusters, b.clusters)
    pd.testing.assert_frame_equal(a.recommendations, b.recommendations)


@pytest.mark.parametrize("seed", [1, 7, 42])
def test_cluster_risk_alone_is_the_assessments_cluster_frame(seed: int) -> None:
    """`dnsfleet scan` scores the clusters without building the other frames: same rows, same values."""
    snap = demo_snapshot(seed)
    snap["clusters"].append(
        {"name": "gone", "status": "failed", "reason": "unreachable: timeout", "nodes": [], "pods": []}
    )
    full = analyze(snap).clusters
    assert set(full["level"]) >= {"high", "unknown"}  # scored clusters and a failed one
    pd.testing.assert_frame_equal(cluster_risk(snap), full, check_exact=True)


KERNELS = ["4.15.0-1029-azure", "4.15.0-1030-azure", "5.4.0-1103-aws", "5.15.0-1057-azure", "6.6.30-acme"]
IMAGES = ["debian:12", "alpine:3.18", "gcr.io/distroless/static", "ghcr.io/acme/x:1"]
OPTIONS = [None, [{"name": "ndots", "value": "2"}], SRR, [{"name": "use-vc", "value": None}]]


@settings(max_examples=12, deadline=None, derandomize=True)
@given(
    st.lists(
        st.tuples(st.sampled_from(KERNELS), st.sampled_from(IMAGES), st.sampled_from(OPTIONS)),
        min_size=1,
        max_size=6,
    ),
    st.integers(0, 5),
)
def test_property_mitigations_never_raise_and_open_races_never_lower(spec, idx) -> None:
    nodes = [node(f"n{i}", k) for i, (k, _, _) in enumerate(spec)]
    pods = [pod(f"w{i}", f"n{i}", img, opts, namespace=f"ns{i}") for i, (_, img, opts) in enumerate(spec)]
    i = idx % len(spec)
    base = analyze(snapshot(cluster(nodes=nodes, pods=pods)))
    # Mitigation 1: single-request-reopen on one workload.
    mitigated = [dict(p) for p in pods]
    kept = [
        o for o in (spec[i][2] or []) if o["name"] != "single-request-reopen"
    ]  # M1: keep existing options
    mitigated[i] = pod(f"w{i}", f"n{i}", spec[i][1], kept + SRR, namespace=f"ns{i}")
    after = analyze(snapshot(cluster(nodes=nodes, pods=mitigated)))
    # Mitigation 2: NodeLocal DNSCache everywhere.
    nl = analyze(
        snapshot(
            cluster(
                nodes=nodes,
                pods=pods,
                daemonsets=["kube-proxy", "node-local-dns"],
                nodelocal_ip="169.254.20.10",
                nodelocal_nodes=[n["name"] for n in nodes],
            )
        )
    )
    # Worse kernel: node i back to 4.15.0-1029-azure (races 1-3 open).
    worse_nodes = [dict(n) for n in nodes]
    worse_nodes[i] = node(f"n{i}", "4.15.0-1029-azure")
    worse = analyze(snapshot(cluster(nodes=worse_nodes, pods=pods)))
    b = base.workloads.set_index("workload_id")["score"]
    assert (after.workloads.set_index("workload_id")["score"] <= b).all()
    assert (nl.workloads.set_index("workload_id")["score"] <= b).all()
    assert (worse.workloads.set_index("workload_id")["score"] >= b).all()
    for other in (after, nl):
        assert other.clusters["score"].iloc[0] <= base.clusters["score"].iloc[0]
    assert worse.clusters["score"].iloc[0] >= base.clusters["score"].iloc[0]


def test_schema_columns_and_dtypes() -> None:
    from dnsfleet import schema

    a = analyze(demo_snapshot())
    for name in (
        "dns_service",
        "coredns_metrics",
        "coredns_series",
        "conntrack",
        "placements",
        "factors",
        "recommendations",
    ):
        assert list(getattr(a, name).columns) == schema.columns(name), name
    for name in ("clusters", "nodes", "workloads"):
        cols = list(getattr(a, name).columns)
        assert cols[: len(schema.columns(name))] == schema.columns(name)
        assert set(c.name for c in schema.RISK_COLUMNS) <= set(cols)
    assert str(a.clusters["nodes"].dtype) == "Int64"
    assert str(a.nodes["counters_exact"].dtype) == "boolean"


@pytest.mark.parametrize("frame", ["coredns_metrics", "conntrack"])
def test_missing_metrics_are_na_not_zero(frame: str) -> None:
    a = analyze(snapshot(cluster()))
    df = getattr(a, frame)
    numeric = [c for c in df.columns if str(df[c].dtype) == "Float64"]
    assert numeric and df[numeric].isna().all().all()
    if frame == "conntrack":
        assert not df["available"].any() and df["reason"].notna().all()
