"""One call from a snapshot to everything the dashboard, reports and CLI show: ``analyze(snapshot)``.

``assemble`` scores the frames (``risk``), ranks the clusters, decides the recommendations once
(``recommend``) and records every reason as a code plus parameters (``Assessment.reasons``);
``dnsfleet.explain`` turns those into the texts people read. ``analyze`` and ``assess`` do both.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from dnsfleet import schema
from dnsfleet.frames import Frames, build_frames
from dnsfleet.probe.measured import node_measurements
from dnsfleet.recommend import PRIORITY, not_this_race, recommendations
from dnsfleet.risk import PTS, aggregate, node_exposure, placements_scored
from dnsfleet.rules import resolver as resolver_rules
from dnsfleet.rules.resolver import ImageRule

# D7: CoreDNS "shows errors" when at least this share of responses is SERVFAIL or slower than 1 s.
COREDNS_ERROR_SHARE = 0.01
# D7: a node is busy when CoreDNS answers at least this many queries/s and the node runs pods that send
# parallel pairs through the DNAT path.
BUSY_QPS = 1.0


@dataclass
class Assessment:
    meta: dict[str, Any]
    clusters: pd.DataFrame
    nodes: pd.DataFrame
    workloads: pd.DataFrame
    placements: pd.DataFrame
    dns_service: pd.DataFrame
    coredns_metrics: pd.DataFrame
    coredns_series: pd.DataFrame
    conntrack: pd.DataFrame
    conntrack_series: pd.DataFrame
    factors: pd.DataFrame
    recommendations: pd.DataFrame
    snapshot: dict[str, Any] = field(repr=False, default_factory=dict)
    # Structured reasons (codes + parameters) per scope, rendered by ``dnsfleet.explain``.
    reasons: dict[str, pd.DataFrame] = field(repr=False, default_factory=dict)


def analyze(
    snapshot: dict[str, Any], mapping: tuple[ImageRule, ...] = (), timeouts_reported: Iterable[str] = ()
) -> Assessment:
    """Frames + risk + recommendations + explanations for a validated snapshot.

    ``timeouts_reported``: clusters whose users report DNS timeouts (D7 then says where to look when
    the counters show the race is not happening)."""
    frames = build_frames(snapshot, mapping)
    meta = {k: snapshot.get(k) for k in ("source", "generated_at", "tool_version", "schema_version")}
    return assess(frames, meta, snapshot, timeouts_reported)


def cluster_risk(snapshot: dict[str, Any], mapping: tuple[ImageRule, ...] = ()) -> pd.DataFrame:
    """``analyze(snapshot).clusters`` alone: the scored node, workload, factor and recommendation frames,
    which the clusters' scores and reasons do not depend on, are not built (what ``dnsfleet scan``
    prints)."""
    from dnsfleet.explain import explain_clusters

    frames = build_frames(snapshot, mapping)
    nx = node_exposure(frames, node_measurements(snapshot))
    p = placements_scored(frames, nx)
    clusters, reasons = _cluster_risk(frames, p, nx, ())
    return _clusters_out(explain_clusters(clusters, reasons, frames.dns_service))


def _clusters_out(clusters: pd.DataFrame) -> pd.DataFrame:
    return (
        schema.conform(clusters, "clusters", schema.RISK_COLUMNS + schema.CLUSTER_RISK_COLUMNS)
        .sort_values(["rank", "cluster"], na_position="last")
        .reset_index(drop=True)
    )


def assess(
    frames: Frames,
    meta: dict[str, Any] | None = None,
    snapshot: dict | None = None,
    timeouts_reported: Iterable[str] = (),
) -> Assessment:
    """``assemble`` then ``explain``."""
    from dnsfleet.explain import explain

    return explain(assemble(frames, meta, snapshot, timeouts_reported))


def assemble(
    frames: Frames,
    meta: dict[str, Any] | None = None,
    snapshot: dict | None = None,
    timeouts_reported: Iterable[str] = (),
) -> Assessment:
    """Scores, ranks and recommendations, with every reason as a code and its parameters (no texts)."""
    nx = node_exposure(frames, node_measurements(snapshot or {}))
    p = placements_scored(frames, nx)
    wl, wl_reasons = _workload_risk(frames, p, nx)
    nodes, node_reasons = _node_risk(frames, p, nx)
    clusters, cl_reasons = _cluster_risk(frames, p, nx, timeouts_reported)
    recs = recommendations(frames, p, nx, wl)
    findings = not_this_race(clusters, cl_reasons)
    if len(findings):
        recs = pd.concat([recs, findings], ignore_index=True) if len(recs) else findings
    wl["recommended_fix"] = _recommended_fix(wl, recs)
    return Assessment(
        meta=dict(meta or {}),
        clusters=clusters,
        nodes=nodes,
        workloads=wl,
        placements=frames.placements,
        dns_service=frames.dns_service,
        coredns_metrics=frames.coredns_metrics,
        coredns_series=frames.coredns_series,
        conntrack=frames.conntrack,
        conntrack_series=frames.conntrack_series,
        factors=schema.empty("factors"),
        recommendations=schema.conform(recs, "recommendations"),
        snapshot=snapshot or {},
        reasons={"workloads": wl_reasons, "nodes": node_reasons, "clusters": cl_reasons},
    )


def _recommended_fix(wl: pd.DataFrame, recs: pd.DataFrame) -> pd.Series:
    """Each workload's fix, decided once: its own best recommendation, else the cluster's NodeLocal
    DNSCache when the workload is at risk and that is recommended there."""
    if not len(recs):
        return pd.Series(pd.NA, index=wl.index, dtype="string")
    own = recs[(recs["scope"] == "workload") & (recs.get("finding_type", "mitigation") == "mitigation")]
    top = (
        own.assign(_prio=own["mitigation"].map(PRIORITY).fillna(9))
        .sort_values(
            ["risk_removed", "_prio", "finding_id"], ascending=[False, True, True], na_position="last"
        )
        .drop_duplicates("target")
        .set_index("target")["mitigation"]
    )
    fix = wl["workload_id"].map(top).astype("string")
    nl = recs[(recs["scope"] == "cluster") & (recs["mitigation"] == "nodelocal-dnscache")]["cluster"]
    needs_nl = fix.isna() & wl["cluster"].isin(set(nl)) & wl["level"].isin(["high", "medium"])
    return fix.mask(needs_nl, "nodelocal-dnscache")


def _pods_where(p: pd.DataFrame, masks: list[np.ndarray], by: str, keys: pd.Series) -> list[pd.Series]:
    """Per mask, the pods of ``p`` where it holds, summed per ``by`` and read for each of ``keys`` (0 for
    a key without rows). One factorisation and one lookup for all masks: at 1,000,000 workloads a
    group-by and a ``map`` per mask cost ~0.3 s each."""
    codes, uniq = pd.factorize(p[by])
    ok = codes >= 0
    pods = np.nan_to_num(p["pods"].astype("float64").to_numpy())
    pos = pd.Index(uniq).get_indexer(keys.to_numpy())
    found = pos >= 0
    out = []
    for m in masks:
        sums = np.bincount(codes[ok], weights=np.where(m, pods, 0.0)[ok], minlength=len(uniq))
        out.append(pd.Series(np.where(found, sums[np.where(found, pos, 0)], 0.0), index=keys.index))
    return out


def _workload_risk(frames: Frames, p: pd.DataFrame, nx: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    wl = frames.workloads.copy()
    agg = aggregate(p, ["workload_id"]).set_index("workload_id")
    # one lookup of the workload ids for all columns (a ``map`` per column looked them up each time)
    got = agg.reindex(wl["workload_id"].to_numpy())
    for c in [*PTS, "score", "level", "exposed_pods", "unknown_pods"]:
        wl[c] = pd.Series(got[c].array, index=wl.index)
    applicable = ~(wl["uses_cluster_dns"].astype("boolean") == False).fillna(False)  # noqa: E712
    wl["level"] = wl["level"].astype("string").mask(~applicable, "n/a")
    for c in ["exposed_pods", "unknown_pods"]:
        wl[c] = wl[c].fillna(0)
    kg = p["kernel_gate"].to_numpy()
    d6_nodes = nx.set_index(["cluster", "node"])["d6"]
    d6 = (
        pd.MultiIndex.from_frame(p[["cluster", "node"]].astype(object)).map(d6_nodes.to_dict().get).to_numpy()
        if len(p)
        else np.zeros(0, dtype=object)
    )
    d6 = np.array([bool(x) if x is not None else False for x in d6], dtype=bool)
    by = "workload_id"
    k_open, k_unk, k_d6, one_ep = (
        s.astype("int64")
        for s in _pods_where(
            p,
            [kg == 1, np.isnan(kg), (kg == 1) & d6, p["race3_one_endpoint"].to_numpy(dtype=bool)],
            by,
            wl[by],
        )
    )
    res = wl["resolver"].fillna("unknown")
    pair = wl["sends_parallel_pair"].fillna("unknown")
    opts = wl["dns_options"].fillna("")
    ignored = opts.str.extract(r"(single-request-reopen|single-request|use-vc|no-aaaa)", expand=False)
    r = pd.DataFrame(index=wl.index)
    r["kernel_code"] = np.select(
        [(k_open > 0) & (k_d6 == k_open), k_open > 0, k_unk > 0, one_ep > 0],
        ["D6-WORKLOAD", "KERNEL-OPEN", "KERNEL-UNKNOWN", "K4-ONE"],
        default="KERNEL-FIXED",
    )
    r["resolver_code"] = np.select(
        [
            (res == "musl") & ignored.notna(),
            res == "musl",
            (res == "glibc") & (pair == "yes"),
            (res == "glibc") & (pair == "no"),
            res == "glibc",
            res == "go",
            res == "go-cgo",
            res == "jvm",
            res == "c-ares",
            pair == "unknown",
        ],
        ["R5-IGNORED", "R5", "R1", "R2", "R4", "R6", "R7", "R8", "R9", "R11"],
        default="R-OTHER",
    )
    dsvc = frames.dns_service.set_index("cluster")
    cdns = wl["uses_cluster_dns"].astype("boolean")
    link = (wl["dns_via"] == "link-local").fillna(False)
    r["service_path_code"] = np.where(
        (cdns == False).fillna(False),  # noqa: E712
        "D8",
        np.where(link, "P-LINK-UNKNOWN", wl["cluster"].map(dsvc["path_code"]).fillna("P-UNREAD")),
    )
    nd = wl["ndots"].astype("Int64")
    r["ndots_code"] = np.where(nd.fillna(0).to_numpy() >= 2, "R10", "")
    r["evidence_code"] = np.where(wl["evidence_pts"].fillna(0) > 0, "D1", "")
    r["query_rate_code"] = ""
    # Which gate closed, for "not exposed: ...".
    r["zero_factor"] = np.select(
        [
            ~applicable,
            pair == "no",
            (k_open == 0) & (k_unk == 0),
            wl["service_path_pts"].fillna(0) == 0,
        ],
        ["not_applicable", "resolver", "kernel", "service_path"],
        default="",
    )
    # Parameters of the codes above.
    r["pods"] = wl["pods"].astype("Int64")
    r["k_open"], r["k_unk"], r["count"], r["exposes"] = k_open, k_unk, k_d6, one_ep
    r["image"] = wl["image"].fillna("(no image)")
    r["option"] = ignored.fillna("")
    r["options"] = opts
    r["resolver"] = res
    r["stall"] = wl["stall_s"].astype("Float64").round(1).astype("string").fillna("?")
    r["cost"] = resolver_rules.cost_phrase(res, wl["stall_s"])  # the modelled cost of a lost query
    r["policy"] = wl["dns_policy"].fillna("?")
    r["hostnet"] = np.where(wl["host_network"].fillna(False), " on hostNetwork", "")
    r["mode"] = wl["cluster"].map(dsvc["kube_proxy_mode"]).fillna("unknown")
    r["ip"] = wl["cluster"].map(dsvc["nodelocal_ip"]).fillna("?")
    r["ndots"] = nd
    return wl, r


def _node_risk(frames: Frames, p: pd.DataFrame, nx: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    nodes = frames.nodes.copy()
    agg = aggregate(p.dropna(subset=["node"]), ["cluster", "node"])
    nodes = nodes.merge(agg, on=["cluster", "node"], how="left")
    x = nx.set_index(["cluster", "node"])
    key = pd.MultiIndex.from_frame(nodes[["cluster", "node"]])
    kg = x["kernel_gate"].reindex(key).to_numpy()
    races = x["open_races"].reindex(key).fillna("").to_numpy()
    # Nodes without applicable pods: kernel and path alone (resolver unknown).
    empty = nodes["score"].isna().to_numpy()
    pg = x["path_gate"].reindex(key).to_numpy()
    none = empty & ((kg == 0) | (pg == 0))
    nodes.loc[empty, "level"] = np.where(none[empty], "low", "unknown")
    nodes.loc[empty, "score"] = np.where(none[empty], 0.0, np.nan)
    for c in ["exposed_pods", "unknown_pods"]:
        nodes[c] = nodes[c].fillna(0)
    d6 = x["d6"].reindex(key).fillna(False).to_numpy(dtype=bool)
    ipvs = x["ipvs_unknown"].reindex(key).fillna(False).to_numpy(dtype=bool)
    flat = x["flat_long"].reindex(key).fillna(False).to_numpy(dtype=bool)
    inc = x["insert_failed_increase"].reindex(key).to_numpy()
    exact = nodes["counters_exact"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    racing = p[(p["resolver_gate"] == 1) & p["applicable"]].groupby(["cluster", "node"])["pods"].sum()
    racing = racing.reindex(key).fillna(0).astype("int64")
    r = pd.DataFrame(index=nodes.index)
    windows = (nodes["race1"] == "not applicable").fillna(False).to_numpy(dtype=bool)
    r["kernel_code"] = np.select(
        [d6, kg == 1, np.isnan(kg) & ipvs, np.isnan(kg), windows],
        ["D6-NODE", "NODE-OPEN", "NODE-IPVS", "NODE-UNKNOWN", "NODE-NA"],
        default="NODE-FIXED",
    )
    r["service_path_code"] = np.select(
        [pg == 0, pg == 1], ["PATH-NODE-BYPASS", "PATH-NODE-DNAT"], default="PATH-NODE-UNKNOWN"
    )
    r["resolver_code"] = "RESOLVER-NODE"
    r["evidence_code"] = np.select(
        [np.isnan(inc), (inc > 0) & exact, inc > 0, flat],
        ["D1-NODE-NONE", "D1-NODE-DROPS", "D1-NODE-MAYBE", "D7-NODE"],
        default="D1-NODE-FLAT",
    )
    # measured evidence (probe pods) outranks inference: risk.apply_measured
    measured = x["measured"].reindex(key).to_numpy()
    r["kernel_code"] = np.where(measured == "stalls", "PROBE-NODE-STALLS", r["kernel_code"])
    r["evidence_code"] = np.where(measured == "clean", "PROBE-NODE-CLEAN", r["evidence_code"])
    r["stalls"] = x["probe_stalls"].reindex(key).fillna(0).astype("int64").to_numpy()
    r["lookups"] = x["probe_lookups"].reindex(key).fillna(0).astype("int64").to_numpy()
    r["ndots_code"], r["query_rate_code"] = "", ""
    r["kernel"] = nodes["kernel_version"].fillna("?")
    r["distro"] = nodes["distro"].fillna("unknown")
    r["races"] = races
    r["increase"] = pd.Series(np.nan_to_num(inc), index=nodes.index).round(0).astype("int64")
    r["hours"] = (x["window_s"].reindex(key).to_numpy() / 3600).round(1)
    r["pair"] = racing.to_numpy()
    r["pods"] = nodes["pods"].astype("Int64")
    return nodes, r


_P_READ = (
    "cluster",
    "node",
    "pods",
    "resolver_gate",
    "path_gate",
    "applicable",
    "race3_one_endpoint",
    "unknown",
    "kernel_gate",
)
_NX_READ = (
    "cluster",
    "node",
    "kernel_version",
    "open_races",
    "kernel_gate",
    "path_gate",
    "d6",
    "ipvs_unknown",
    "insert_failed_increase",
    "drop_increase",
    "ct_available",
    "counters_exact",
    "flat_long",
    "window_s",
)
_WL_READ = ("cluster", "pods", "uses_cluster_dns", "sends_parallel_pair", "resolver", "ndots")


def _cluster_risk(
    frames: Frames, p: pd.DataFrame, nx: pd.DataFrame, timeouts_reported: Iterable[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cluster scores, rank, and per factor a list of (code, params) reasons."""
    cl = frames.clusters.copy()
    agg = aggregate(p, ["cluster"], quantile=0.9)
    cl = cl.merge(agg, on="cluster", how="left")
    reported = set(timeouts_reported)
    # The filters below copy the rows they keep: of placements, nodes and workloads, only the columns
    # read here (~10 of ~30: at 100,000 pods the whole frames made this step 3x slower).
    p = p[[c for c in _P_READ if c in p.columns]]
    nx = nx[[c for c in _NX_READ if c in nx.columns]]
    dsvc = frames.dns_service.set_index("cluster")
    core = frames.coredns_metrics.set_index("cluster")
    qps = core["qps"].astype("Float64").to_dict()
    endpoints = dsvc["ready_endpoints"].to_dict()
    path_codes = dsvc["path_code"].to_dict()
    modes = dsvc["kube_proxy_mode"].to_dict()
    n_nodes = nx.groupby("cluster").size().to_dict()
    kgroups: dict[str, list[tuple[str, dict]]] = {}
    opened = nx[(nx["open_races"] != "") & (nx["kernel_gate"] == 1) & ~nx["d6"]]
    kg = opened.groupby(["cluster", "kernel_version", "open_races"], dropna=False).size()
    for (c, kv, races), cnt in kg.sort_values(ascending=False).items():
        kgroups.setdefault(c, []).append(
            ("NODES-OPEN", {"count": cnt, "nodes": n_nodes[c], "kernel": kv, "races": races})
        )
    unk_all = nx[nx["kernel_gate"].isna()]
    ipvs_unk = unk_all[unk_all["ipvs_unknown"]].groupby("cluster").size().to_dict()
    unk_nodes = unk_all[~unk_all["ipvs_unknown"]]
    k_unknown = unk_nodes.groupby("cluster").size().to_dict()
    unk_kernels = unk_nodes.groupby("cluster")["kernel_version"].agg(
        lambda s: ", ".join(sorted(s.fillna("?").astype(str).unique())[:3])
    )
    d6n = nx[nx["d6"]]
    d6_count = d6n.groupby("cluster").size().to_dict()
    d6_inc = (
        (d6n["insert_failed_increase"].fillna(0) + d6n["drop_increase"].fillna(0))
        .groupby(d6n["cluster"])
        .sum()
    ).to_dict()
    ct_any = nx["ct_available"].groupby(nx["cluster"]).any().to_dict()
    grew = nx[nx["insert_failed_increase"] > 0]
    grew_n = grew.groupby("cluster").size().to_dict()
    grew_sum = grew.groupby("cluster")["insert_failed_increase"].sum().to_dict()
    grew_exact = grew["counters_exact"].fillna(False).astype(bool).groupby(grew["cluster"]).all().to_dict()
    # D7: busy nodes with flat counters over a long window on kernel < 5.10.
    busy_pods = p[(p["resolver_gate"] == 1) & (p["path_gate"] == 1) & p["applicable"]]
    busy_set = set(zip(busy_pods["cluster"], busy_pods["node"], strict=True))
    flat = nx[nx["flat_long"]]
    busy_cluster = {c for c, q in qps.items() if q is not None and not pd.isna(q) and q >= BUSY_QPS}
    keep = [
        (c, n) in busy_set and c in busy_cluster for c, n in zip(flat["cluster"], flat["node"], strict=True)
    ]
    flat = flat[np.array(keep, dtype=bool)]
    d7_nodes = flat.groupby("cluster")["node"].agg(list).to_dict()
    d7_hours = (flat.groupby("cluster")["window_s"].min() / 3600).round(1).to_dict()
    # unscored: the counts below need the workloads' pods and resolvers only
    wl = frames.workloads[list(_WL_READ)]
    uses = wl["uses_cluster_dns"].astype("boolean")
    app_wl = wl[~(uses == False).fillna(False)]  # noqa: E712
    na_pods = wl[(uses == False).fillna(False)].groupby("cluster")["pods"].sum().to_dict()  # noqa: E712
    pods_all = app_wl.groupby("cluster")["pods"].sum().to_dict()
    pair = app_wl[app_wl["sends_parallel_pair"] == "yes"]
    pair_pods = pair.groupby("cluster")["pods"].sum().to_dict()
    mixes: dict[str, list[str]] = {}
    for (c, r), v in pair.groupby(["cluster", "resolver"])["pods"].sum().sort_values(ascending=False).items():
        mixes.setdefault(c, []).append(f"{r} {int(v)}")
    unk_res_wl = app_wl[app_wl["sends_parallel_pair"] == "unknown"]
    unk_res = unk_res_wl.groupby("cluster")["pods"].sum().to_dict()
    unk_res_n = unk_res_wl.groupby("cluster").size().to_dict()
    hi_ndots = app_wl[app_wl["ndots"].astype("Float64") >= 5].groupby("cluster")["pods"].sum().to_dict()
    one_ep = p[p["race3_one_endpoint"]].groupby("cluster")["pods"].sum().to_dict()
    unknown_p = p[p["unknown"]]
    unk_by_gate = {
        "kernel": unknown_p[unknown_p["kernel_gate"].isna()].groupby("cluster")["pods"].sum().to_dict(),
        "path": unknown_p[np.isnan(unknown_p["path_gate"].astype("float64"))]
        .groupby("cluster")["pods"]
        .sum()
        .to_dict(),
        "resolver": unknown_p[np.isnan(unknown_p["resolver_gate"].astype("float64"))]
        .groupby("cluster")["pods"]
        .sum()
        .to_dict(),
    }
    rows = []
    for c, status in zip(cl["cluster"], cl["status"], strict=True):
        rr: dict[str, Any] = {f: [] for f in schema.FACTOR_NAMES}
        rr.update(unknown_resolve=[], findings=[], not_applicable=[], d7=None)
        if status == "failed":
            rows.append(rr)
            continue
        nn = n_nodes.get(c, 0)
        k = rr["kernel"]
        if d6_count.get(c):
            k.append(("D6", {"count": d6_count[c], "increase": int(d6_inc.get(c, 0))}))
        k += kgroups.get(c, [])
        if ipvs_unk.get(c, 0):
            k.append(("IPVS-RACE3", {"count": int(ipvs_unk[c]), "nodes": nn}))
        if k_unknown.get(c, 0):
            k.append(("NODES-UNKNOWN", {"count": int(k_unknown[c]), "nodes": nn}))
        ep = endpoints.get(c)
        if one_ep.get(c):
            k.append(("K4-ONE", {"exposes": int(one_ep[c])}))
        elif ep is not None and not pd.isna(ep):
            k.append(("K4", {"endpoints": int(ep), "can": "can" if ep >= 2 else "cannot"}))
        if not k or all(code in ("K4",) for code, _ in k):
            k.insert(0, ("KERNEL-FIXED-ALL", {}))
        rr["kernel"] = k[:3]
        rr["service_path"] = [(path_codes.get(c) or "P-UNREAD", {"mode": modes.get(c) or "unknown"})]
        rr["resolver"] = [
            (
                "RESOLVER-MIX",
                {
                    "pair": int(pair_pods.get(c, 0)),
                    "pods": int(pods_all.get(c, 0)),
                    "mix": ", ".join(mixes.get(c, [])) or "none",
                },
            )
        ]
        if unk_res.get(c):
            rr["resolver"].append(("RESOLVER-UNKNOWN", {"pods": int(unk_res[c])}))
        if na_pods.get(c):
            rr["not_applicable"] = [("D8-COUNT", {"pods": int(na_pods[c])})]
        if hi_ndots.get(c):
            rr["ndots"] = [("R10-CLUSTER", {"pods": int(hi_ndots[c])})]
        q = qps.get(c)
        rr["query_rate"] = [
            ("D3", {"qps": f"{q:.0f}"}) if q is not None and not pd.isna(q) else ("D3-NONE", {})
        ]
        if not ct_any.get(c, False):
            rr["evidence"] = [("D1-NONE", {})]
        elif grew_n.get(c):
            code = "D1-GREW-DROPS" if grew_exact[c] else "D1-GREW-MAYBE"
            rr["evidence"] = [(code, {"count": grew_n[c], "nodes": nn, "increase": f"{grew_sum[c]:.0f}"})]
        else:
            rr["evidence"] = [("D1-FLAT", {})]
        if d7_nodes.get(c):
            d7 = {"count": len(d7_nodes[c]), "hours": d7_hours[c]}
            rr["evidence"].append(("D7", d7))
            symptom = _coredns_symptom(core, c, reported)
            if symptom:
                rr["findings"] = [("D7-FINDING", {**d7, "symptom": symptom})]
                rr["d7"] = {"nodes": d7_nodes[c], **d7, "symptom": symptom}
        # What would resolve the unknown pods.
        res = rr["unknown_resolve"]
        if unk_by_gate["resolver"].get(c):
            res.append(("RESOLVE-RESOLVER", {"workloads": int(unk_res_n.get(c, 0))}))
        if unk_by_gate["kernel"].get(c):
            res.append(
                ("RESOLVE-KERNEL", {"nodes": int(k_unknown.get(c, 0)), "kernels": unk_kernels.get(c, "?")})
            )
        if unk_by_gate["path"].get(c):
            res.append(
                (
                    "RESOLVE-PATH",
                    {"what_code": path_codes.get(c) or "P-UNREAD", "mode": modes.get(c) or "unknown"},
                )
            )
        if ep is None or pd.isna(ep):
            res.append(("RESOLVE-ENDPOINTS", {}))
        if not ct_any.get(c, False):
            res.append(("RESOLVE-CONNTRACK", {}))
        rows.append(rr)
    reasons = pd.DataFrame(rows, index=cl.index)
    failed = (cl["status"] == "failed").to_numpy()
    cl.loc[failed, "level"] = "unknown"
    cl.loc[failed, "score"] = np.nan
    cl["applicable_pods"] = cl["cluster"].map(pods_all).fillna(0).astype("int64")
    cl.loc[failed, "applicable_pods"] = pd.NA
    none_app = ~failed & (cl["applicable_pods"].fillna(0) == 0).to_numpy()
    cl.loc[none_app, "level"] = "n/a"
    cl.loc[none_app, "score"] = np.nan
    for c in ["exposed_pods", "unknown_pods"]:
        cl[c] = cl[c].where(failed, cl[c].fillna(0))
    all_k0 = (nx["kernel_gate"] == 0).groupby(nx["cluster"]).all().to_dict()
    all_p0 = (nx["path_gate"] == 0).groupby(nx["cluster"]).all().to_dict()
    reasons["zero"] = [
        "kernel" if all_k0.get(c) else ("service_path" if all_p0.get(c) else "resolver")
        for c in cl["cluster"]
    ]
    cl["rank"] = _rank(cl)
    return cl, reasons


def _coredns_symptom(core: pd.DataFrame, cluster: str, reported: set[str]) -> str | None:
    """D7 applies when CoreDNS shows errors or the users report timeouts; the symptom in words."""
    parts = []
    if cluster in core.index:
        row = core.loc[cluster]
        sf, slow = row.get("servfail_share"), row.get("share_over_1s")
        if sf is not None and not pd.isna(sf) and float(sf) >= COREDNS_ERROR_SHARE:
            parts.append(f"CoreDNS answers {float(sf):.1%} SERVFAIL")
        if slow is not None and not pd.isna(slow) and float(slow) >= COREDNS_ERROR_SHARE:
            parts.append(f"{float(slow):.1%} of CoreDNS answers take over 1 s")
    if cluster in reported:
        parts.append("users report DNS timeouts")
    return " and ".join(parts) or None


def _rank(cl: pd.DataFrame) -> pd.Series:
    """1 = act first. Clusters with known exposed pods come before clusters whose risk is only unknown,
    whatever the worst-case score of the latter; then by score; failed and not-applicable last."""
    exposed = cl["exposed_pods"].fillna(0).astype("float64") > 0
    scored = cl["score"].notna()
    tier = np.select([exposed & scored, scored], [0, 1], default=2)
    order = pd.DataFrame(
        {"tier": tier, "score": -cl["score"].astype("float64").fillna(-1.0), "cluster": cl["cluster"]}
    ).sort_values(["tier", "score", "cluster"], kind="stable")
    rank = pd.Series(0, index=cl.index, dtype="int64")
    rank[order.index] = np.arange(1, len(order) + 1)
    return rank
