"""The pure figure builders and table shaping of the dashboard, on small hand-made frames and on a
100,000-pod fleet (what reaches the browser must stay bounded)."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from dashboard import charts, views
from dnsfleet import schema
from dnsfleet.verdicts import kernel_verdict


def frame(name: str, rows: list[dict], risk: bool = False) -> pd.DataFrame:
    extra = (
        schema.RISK_COLUMNS + (schema.WORKLOAD_RISK_COLUMNS if name == "workloads" else ()) if risk else ()
    )
    return schema.conform(pd.DataFrame(rows), name, extra)


def clusters(n: int = 4) -> pd.DataFrame:
    levels = ["high", "medium", "low", "unknown"]
    rows = []
    for i in range(n):
        lv = levels[i % 4]
        rows.append(
            {
                "cluster": f"c{i:03d}",
                "status": "failed" if lv == "unknown" else "ok",
                "reason": "unreachable: connection refused" if lv == "unknown" else None,
                "nodes": 3,
                "pods": 100,
                "score": None if lv == "unknown" else float(90 - (i % 90)),
                "level": lv,
                "why": "why <b>text</b> with html",
                "exposed_pods": 10 * (i % 5),
                "kernel_pts": float(i % 30),
                "service_path_pts": 5.0,
                "resolver_pts": 1.0,
                "ndots_pts": 0.0,
                "query_rate_pts": None,
                "evidence_pts": 2.0,
            }
        )
    return frame("clusters", rows, risk=True)


def nodes() -> pd.DataFrame:
    rows = [
        {"cluster": "a", "node": "n1", "pool": "p", "kernel_version": "4.15.0-1029-azure", "race1": "open",
         "race2": "open", "race3": "open", "nfqueue": "open", "ready": True, "score": 80.0},
        {"cluster": "a", "node": "n2", "pool": "p", "kernel_version": "4.15.0-1029-azure", "race1": "open",
         "race2": "open", "race3": "open", "nfqueue": "open", "ready": False, "score": 70.0},
        {"cluster": "b", "node": "n3", "pool": None, "kernel_version": "6.1.0-18-amd64", "race1": "fixed",
         "race2": "fixed", "race3": "fixed", "nfqueue": "open", "ready": True, "score": 0.0},
        {"cluster": "b", "node": "n4", "pool": "q", "kernel_version": None, "race1": "unknown",
         "race2": "unknown", "race3": "unknown", "nfqueue": "unknown", "ready": None, "score": None},
    ]  # fmt: skip
    return frame("nodes", rows, risk=True)


# --- colours --------------------------------------------------------------------------------------


def test_one_colour_per_level_and_race_states_reuse_them():
    assert set(charts.LEVEL_COLORS) == set(schema.LEVELS)
    assert len(set(charts.LEVEL_COLORS.values())) == len(schema.LEVELS)
    assert {
        "open": charts.LEVEL_COLORS["high"],
        "fixed": charts.LEVEL_COLORS["low"],
        "unknown": charts.LEVEL_COLORS["unknown"],
        "not applicable": charts.LEVEL_COLORS["low"],  # Windows nodes: no risk from the races
    } == charts.STATE_COLORS


def test_ranking_bar_orders_by_score_colours_by_level_and_keeps_failed_clusters():
    df = clusters(8)
    fig = charts.ranking_bar(df)
    assert fig.layout.title.text == "Clusters ranked by DNS-race risk"
    assert fig.layout.xaxis.title.text == "Risk score (points, 0-100)"
    for trace in fig.data:
        assert trace.marker.color == charts.LEVEL_COLORS[trace.name]
    order = list(fig.layout.yaxis.categoryarray)[::-1]
    assert order == list(views.by_risk(df)["cluster"])
    failed = next(t for t in fig.data if t.name == "unknown")
    assert set(failed.text) == {"no data: scan failed"}
    assert all("unreachable" in h for h in failed.hovertext)
    # text from the engine is escaped before it goes into hover HTML
    assert all("<b>text</b>" not in h for t in fig.data for h in t.hovertext)


def test_ranking_bar_caps_clusters_and_says_so():
    fig = charts.ranking_bar(clusters(100), top=40)
    assert sum(len(t.y) for t in fig.data) == 40
    assert "(top 40 of 100)" in fig.layout.title.text


def test_factor_heatmap_shows_the_pts_columns_with_gaps_for_missing():
    df = clusters(4)
    fig = charts.factor_heatmap(df)
    hm = fig.data[0]
    assert list(hm.x) == [charts.FACTOR_SHORT[f] for f in schema.FACTOR_NAMES]
    assert list(hm.customdata[0]) == [charts.FACTOR_LABELS[f] for f in schema.FACTOR_NAMES]  # in the hover
    ranked = views.by_risk(df).reset_index(drop=True)
    assert list(hm.y) == list(ranked["cluster"])
    row0 = ranked.iloc[0]
    assert hm.z[0][0] == row0["kernel_pts"]
    assert hm.z[0][schema.FACTOR_NAMES.index("query_rate")] is None  # NA stays a gap, not 0


def test_race_status_bars_count_nodes_per_race_and_state():
    fig = charts.race_status_bars(nodes())
    by = {t.name: list(t.y) for t in fig.data}
    # races 1, 2, 3, NFQUEUE
    assert by["open"] == [2, 2, 2, 3]
    assert by["fixed"] == [1, 1, 1, 0]
    assert by["unknown"] == [1, 1, 1, 1]
    assert fig.layout.barmode == "stack"
    assert fig.layout.yaxis.title.text == "Nodes (count)"


def test_kernel_verdict_ignores_nfqueue_and_keeps_unknown():
    assert list(kernel_verdict(nodes())) == ["open", "open", "fixed", "unknown"]


def test_kernel_bars_group_by_kernel_most_nodes_first():
    fig = charts.kernel_bars(nodes())
    order = list(fig.layout.yaxis.categoryarray)[::-1]
    assert order[0] == "4.15.0-1029-azure"
    open_trace = next(t for t in fig.data if t.marker.color == charts.STATE_COLORS["open"])
    assert list(open_trace.x) == [2]


def test_empty_inputs_give_a_titled_chart_that_says_not_collected():
    ct = schema.empty("conntrack_series")
    fig = charts.conntrack_lines(ct)
    assert "Not collected" in fig.layout.annotations[0].text
    fig = charts.metric_lines(schema.empty("coredns_series"), "qps", "CoreDNS request rate", "req/s")
    assert fig.layout.title.text == "CoreDNS request rate"
    assert "Not collected" in fig.layout.annotations[0].text
    assert (
        "Not collected"
        in charts.coredns_comparison(schema.empty("coredns_metrics")).layout.annotations[0].text
    )


def series(clusters_: int, points: int = 5) -> pd.DataFrame:
    ts = pd.date_range("2026-11-25", periods=points, freq="min", tz="UTC")
    rows = [
        {"cluster": f"c{c}", "ts": t, "metric": m, "value": float(c + 1) * (2 if m == "p99_ms" else 1)}
        for c in range(clusters_)
        for t in ts
        for m in ("qps", "p50_ms", "p99_ms", "rcode:NOERROR", "rcode:SERVFAIL")
    ]
    return frame("coredns_series", rows)


def test_metric_lines_draw_the_busiest_clusters_only():
    fig = charts.metric_lines(series(15), "qps", "CoreDNS request rate", "Requests (per second)", top=10)
    assert [t.name for t in fig.data] == [f"c{i}" for i in range(14, 4, -1)]
    assert "(top 10 of 15 clusters)" in fig.layout.title.text
    assert fig.layout.yaxis.title.text == "Requests (per second)"


def test_latency_quantiles_and_rcode_mix_for_one_cluster():
    s = series(3)
    lat = charts.latency_quantiles(s, "c2")
    assert [t.name for t in lat.data] == ["p50 (server)", "p99 (server)"]
    assert list(lat.data[1].y) == [6.0] * 5
    assert lat.layout.yaxis.title.text == "Latency (ms)"
    mix = charts.rcode_mix(s, "c2")
    assert {t.name for t in mix.data} == {"NOERROR", "SERVFAIL"}
    assert next(t for t in mix.data if t.name == "SERVFAIL").line.color == charts.LEVEL_COLORS["high"]


def test_conntrack_lines_top_nodes_by_total():
    ts = pd.date_range("2026-11-25", periods=3, freq="min", tz="UTC")
    rows = [
        {"cluster": "a", "node": f"n{i}", "ts": t, "insert_failed_rate": float(i)}
        for i in range(12)
        for t in ts
    ]
    fig = charts.conntrack_lines(frame("conntrack_series", rows), top=3)
    assert [t.name for t in fig.data] == ["a/n11", "a/n10", "a/n9"]
    assert fig.layout.yaxis.title.text == "insert_failed (per second)"


# --- table shaping --------------------------------------------------------------------------------


def test_cap_notes_what_was_left_out():
    df = pd.DataFrame({"x": range(1500)})
    capped = views.cap(df, 1000)
    assert len(capped.frame) == 1000
    assert capped.note.startswith("Showing 1,000 of 1,500 rows")
    assert views.cap(df.head(10)).note is None


def test_search_is_literal_and_case_insensitive():
    df = pd.DataFrame({"name": ["api-v1", "a.b", "web"], "image": ["alpine:3.19", None, "NGINX"]})
    assert list(views.search(df, "nginx", ["name", "image"])["name"]) == ["web"]
    assert list(views.search(df, ".", ["name"])["name"]) == ["a.b"]  # not a regex wildcard
    assert len(views.search(df, "  ", ["name"])) == 3


def test_filter_in_treats_na_as_unknown():
    df = pd.DataFrame({"resolver": pd.array(["glibc", None, "musl"], dtype="string")})
    assert len(views.filter_in(df, "resolver", ["unknown"])) == 1
    assert len(views.filter_in(df, "resolver", [])) == 3


def test_fleet_metrics_share_exposed_and_failed():
    m = views.fleet_metrics(clusters(4), schema.empty("workloads"))
    assert m["clusters"] == 4 and m["clusters_failed"] == 1 and m["clusters_high"] == 1
    assert m["pods"] == 400
    assert m["exposed_share"] == pytest.approx(m["exposed_pods"] / 400)
    empty = views.fleet_metrics(
        schema.conform(pd.DataFrame(), "clusters", schema.RISK_COLUMNS), schema.empty("workloads")
    )
    assert empty["exposed_share"] is None


def test_cluster_url_is_a_relative_deep_link():
    assert views.cluster_url("aks/legacy weu") == "cluster?cluster=aks%2Flegacy%20weu"


def test_pool_summary_counts_nodes_ready_and_open():
    p = views.pool_summary(nodes()).set_index(["cluster", "pool"])
    assert p.loc[("a", "p"), "nodes"] == 2
    assert p.loc[("a", "p"), "ready_nodes"] == 1
    assert p.loc[("a", "p"), "nodes_open"] == 2
    assert p.loc[("b", "(no pool label)"), "nodes_open"] == 0  # NFQUEUE alone is not "a race open"


def test_workload_table_shows_the_engines_recommended_fix():
    wl = frame(
        "workloads",
        [
            {"cluster": "a", "namespace": "ns", "kind": "Deployment", "name": "api", "workload_id": "a/ns/Deployment/api",
             "pods": 4, "exposed_pods": 2, "score": 50.0, "level": "medium",
             "recommended_fix": "single-request-reopen"},
            {"cluster": "a", "namespace": "ns", "kind": "Job", "name": "j", "workload_id": "a/ns/Job/j",
             "pods": 0, "exposed_pods": 0, "score": 0.0, "level": "low"},
        ],
        risk=True,
    )  # fmt: skip
    t = views.workload_table(wl)
    assert list(t["owner"]) == ["Deployment/api", "Job/j"]
    assert t["recommended_fix"].iloc[0] == "single-request-reopen"
    assert pd.isna(t["recommended_fix"].iloc[1])
    assert t["exposure"].iloc[0] == 0.5
    assert pd.isna(t["exposure"].iloc[1])  # no pods: no share, not 0 %


# --- scale ----------------------------------------------------------------------------------------


@dataclass
class Big:
    clusters: pd.DataFrame
    nodes: pd.DataFrame
    workloads: pd.DataFrame
    recommendations: pd.DataFrame
    coredns_metrics: pd.DataFrame
    coredns_series: pd.DataFrame
    conntrack_series: pd.DataFrame


@pytest.fixture(scope="module")
def big() -> Big:
    """A synthetic 100,000-pod fleet in the engine's frame shapes: 400 clusters, 4,000 nodes, 25,000
    workloads, 3 h of per-node conntrack and per-cluster CoreDNS series at 1-minute steps."""
    rng = np.random.default_rng(7)
    n_cl, n_nodes, n_wl = 400, 4000, 25_000
    levels = np.array(schema.LEVELS)
    cl_names = np.array([f"cluster-{i:03d}" for i in range(n_cl)])
    cl = frame("clusters", [], risk=True).reindex(range(n_cl))
    cl = cl.assign(cluster=cl_names, status="ok", nodes=10, pods=250, exposed_pods=rng.integers(0, 250, n_cl),
                   score=rng.uniform(0, 100, n_cl), level=levels[rng.integers(0, 4, n_cl)], why="x",
                   **{f"{f}_pts": rng.uniform(0, 20, n_cl) for f in schema.FACTOR_NAMES})  # fmt: skip
    states = np.array(["fixed", "open", "unknown"])
    nd = pd.DataFrame({
        "cluster": cl_names[np.arange(n_nodes) % n_cl], "node": [f"node-{i}" for i in range(n_nodes)],
        "pool": "pool", "kernel_version": [f"5.{i % 40}.0-{i % 7}-generic" for i in range(n_nodes)],
        **{r: states[rng.integers(0, 3, n_nodes)] for r in charts.RACES},
        "score": rng.uniform(0, 100, n_nodes), "ready": True,
    })  # fmt: skip
    nd = schema.conform(nd, "nodes", schema.RISK_COLUMNS)
    base = rng.integers(1, 8, n_wl)
    pods = np.maximum(1, base * 100_000 // base.sum())
    diff = 100_000 - int(pods.sum())
    pods[: abs(diff)] += np.sign(diff)  # exactly 100,000 pods
    wl = pd.DataFrame({
        "cluster": cl_names[np.arange(n_wl) % n_cl], "namespace": [f"ns{i % 23}" for i in range(n_wl)],
        "kind": "Deployment", "name": [f"app-{i}" for i in range(n_wl)],
        "workload_id": [f"w{i}" for i in range(n_wl)], "pods": pods, "exposed_pods": pods // 2,
        "score": rng.uniform(0, 100, n_wl), "level": levels[rng.integers(0, 4, n_wl)], "resolver": "glibc",
    })  # fmt: skip
    wl = schema.conform(wl, "workloads", schema.RISK_COLUMNS + schema.WORKLOAD_RISK_COLUMNS)
    ts = pd.date_range("2026-11-25", periods=180, freq="min", tz="UTC")
    cs = pd.DataFrame({
        "cluster": np.repeat(cl_names, len(ts)), "ts": np.tile(ts, n_cl), "metric": "qps",
        "value": rng.uniform(0, 1000, n_cl * len(ts)),
    })  # fmt: skip
    ct = pd.DataFrame({
        "cluster": np.repeat(nd["cluster"].to_numpy(), 60), "node": np.repeat(nd["node"].to_numpy(), 60),
        "ts": np.tile(ts[:60], n_nodes), "insert_failed_rate": rng.uniform(0, 1, n_nodes * 60),
    })  # fmt: skip
    cm = frame("coredns_metrics", [{"cluster": c, "qps": 1.0, "p99_ms": 2.0} for c in cl_names])
    return Big(cl, nd, wl, schema.empty("recommendations"), cm, schema.conform(cs, "coredns_series"),
               schema.conform(ct, "conntrack_series"))  # fmt: skip


def test_figures_stay_small_at_100k_pods(big):
    assert big.workloads["pods"].sum() == 100_000
    started = time.perf_counter()
    figs = {
        "ranking": charts.ranking_bar(big.clusters),
        "heatmap": charts.factor_heatmap(big.clusters),
        "races": charts.race_status_bars(big.nodes),
        "kernels": charts.kernel_bars(big.nodes),
        "conntrack": charts.conntrack_lines(big.conntrack_series),
        "qps": charts.metric_lines(big.coredns_series, "qps", "t", "y"),
        "compare": charts.coredns_comparison(big.coredns_metrics),
        "treemap": charts.workload_treemap(big.workloads),
    }
    elapsed = time.perf_counter() - started
    assert elapsed < 30, f"building the figures took {elapsed:.1f} s"
    for name, fig in figs.items():
        size = len(json.dumps(fig.to_plotly_json(), default=str))
        assert size < 250_000, f"{name} sends {size:,} bytes to the browser"
    tm = figs["treemap"].data[0]
    assert len(tm.ids) <= 20 + 1 + 60 + 20 + 200 + 60  # clusters, other, namespaces, folds, workloads, folds
    # branchvalues="total": every parent is exactly the sum of its children, and the root covers all pods
    values = dict(zip(tm.ids, tm.values, strict=True))
    children: dict[str, int] = defaultdict(int)
    for parent, v in zip(tm.parents, tm.values, strict=True):
        if parent:
            children[parent] += v
    assert all(values[p] == total for p, total in children.items())
    assert sum(v for p, v in zip(tm.parents, tm.values, strict=True) if not p) == 100_000
    assert len(views.cap(views.workload_table(big.workloads)).frame) == views.TABLE_LIMIT


def test_a_cluster_keeps_its_colour_across_charts():
    s = series(4)
    qps = charts.metric_lines(s, "qps", "a", "b")
    p99 = charts.metric_lines(s[s["cluster"] != "c3"], "p99_ms", "a", "b")
    colour = {t.name: t.line.color for t in qps.data}
    assert len(set(colour.values())) == 4
    assert all(colour[t.name] == t.line.color for t in p99.data)


def test_dns_path_facts_say_present_absent_and_not_known():
    ds = frame(
        "dns_service",
        [
            {"cluster": "a", "nodelocal": True, "nodelocal_ip": "169.254.20.10", "nfqueue_agent": False,
             "corefile_plugins": "errors,health,forward", "kube_proxy_mode": "ipvs"},
            {"cluster": "b", "nodelocal": None, "nfqueue_agent": None},
        ],
    )  # fmt: skip
    a = dict(views.dns_path_facts(ds, "a"))
    assert a["NodeLocal DNSCache"] == "present (169.254.20.10)"
    assert a["NFQUEUE policy agent on the DNS path"] == "no"
    assert a["Corefile plugins"] == "errors, health, forward"
    assert a["kube-proxy mode"] == "ipvs"
    b = dict(views.dns_path_facts(ds, "b"))
    assert b["NodeLocal DNSCache"] == "not known"
    assert b["kube-proxy mode"] == "not known"
    assert views.dns_path_facts(ds, "zzz") == []
