"""One call from a snapshot to everything the dashboard, reports and CLI show: ``analyze(snapshot)``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from dnsfleet import schema
from dnsfleet.frames import Frames, build_frames
from dnsfleet.recommend import recommendations
from dnsfleet.risk import PTS, aggregate, node_exposure, placements_scored
from dnsfleet.rules import resolver as resolver_rules
from dnsfleet.rules.resolver import ImageRule


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


def analyze(snapshot: dict[str, Any], mapping: tuple[ImageRule, ...] = ()) -> Assessment:
    """Frames + risk + recommendations for a validated snapshot."""
    frames = build_frames(snapshot, mapping)
    meta = {k: snapshot.get(k) for k in ("source", "generated_at", "tool_version", "schema_version")}
    return assess(frames, meta, snapshot)


def cluster_risk(snapshot: dict[str, Any], mapping: tuple[ImageRule, ...] = ()) -> pd.DataFrame:
    """``analyze(snapshot).clusters`` alone: the scored node, workload, factor and recommendation frames,
    which the clusters' scores and reasons do not depend on, are not built (what ``dnsfleet scan``
    prints; 0.3 s less at 100,000 pods)."""
    frames = build_frames(snapshot, mapping)
    nx = node_exposure(frames)
    return _clusters_out(_cluster_risk(frames, placements_scored(frames, nx), nx))


def _clusters_out(clusters: pd.DataFrame) -> pd.DataFrame:
    return (
        schema.conform(clusters, "clusters", schema.RISK_COLUMNS)
        .sort_values(["score", "cluster"], ascending=[False, True], na_position="last")
        .reset_index(drop=True)
    )


def assess(frames: Frames, meta: dict[str, Any] | None = None, snapshot: dict | None = None) -> Assessment:
    nx = node_exposure(frames)
    p = placements_scored(frames, nx)
    wl = _workload_risk(frames, p)
    nodes = _node_risk(frames, p, nx)
    clusters = _cluster_risk(frames, p, nx)
    recs = recommendations(frames, p, nx, wl)
    fix = recs[recs["scope"] == "workload"].drop_duplicates("target").set_index("target")["mitigation"]
    wl["recommended_fix"] = wl["workload_id"].map(fix).astype("string")
    nl = recs[(recs["scope"] == "cluster") & (recs["mitigation"] == "nodelocal-dnscache")]["cluster"]
    needs_nl = (
        wl["recommended_fix"].isna() & wl["cluster"].isin(set(nl)) & wl["level"].isin(["high", "medium"])
    )
    wl.loc[needs_nl, "recommended_fix"] = "nodelocal-dnscache"
    factors = pd.concat(
        [
            _melt(clusters, "cluster", "cluster"),
            _melt(nodes, "node", "node"),
            _melt(wl, "workload", "workload_id"),
        ],
        ignore_index=True,
    )
    return Assessment(
        meta=dict(meta or {}),
        clusters=_clusters_out(clusters),
        nodes=schema.conform(nodes, "nodes", schema.RISK_COLUMNS),
        workloads=schema.conform(wl, "workloads", schema.RISK_COLUMNS + schema.WORKLOAD_RISK_COLUMNS),
        placements=frames.placements,
        dns_service=frames.dns_service,
        coredns_metrics=frames.coredns_metrics,
        coredns_series=frames.coredns_series,
        conntrack=frames.conntrack,
        conntrack_series=frames.conntrack_series,
        factors=schema.conform(factors, "factors"),
        recommendations=schema.conform(recs, "recommendations"),
        snapshot=snapshot or {},
    )


def _fmt_int(s: pd.Series) -> pd.Series:
    return s.astype("Int64").astype("string").fillna("?")


def _workload_risk(frames: Frames, p: pd.DataFrame) -> pd.DataFrame:
    wl = frames.workloads.copy()
    agg = aggregate(p, ["workload_id"]).set_index("workload_id")
    for c in [*PTS, "score", "level", "exposed_pods", "unknown_pods"]:
        wl[c] = wl["workload_id"].map(agg[c])
    pods = wl["pods"].astype("Int64")
    kopen = p.assign(k=np.where(p["kernel_gate"] == 1, p["pods"], 0)).groupby("workload_id")["k"].sum()
    kunk = p.assign(k=np.where(p["kernel_gate"].isna(), p["pods"], 0)).groupby("workload_id")["k"].sum()
    k_open = wl["workload_id"].map(kopen).fillna(0).astype("int64")
    k_unk = wl["workload_id"].map(kunk).fillna(0).astype("int64")
    img = wl["image"].fillna("(no image)")
    res = wl["resolver"].fillna("unknown")
    pair = wl["sends_parallel_pair"].fillna("unknown")
    opts = wl["dns_options"].fillna("")
    ignored = opts.str.extract(r"(single-request-reopen|single-request|use-vc|no-aaaa)", expand=False)
    cost = resolver_rules.cost_phrase(res, wl["stall_s"])  # the modelled cost of a lost query
    kernel_t = np.where(
        k_open > 0,
        _fmt_int(k_open) + " of " + _fmt_int(pods) + " pods run on nodes with conntrack races open (K1-K3)",
        np.where(
            k_unk > 0,
            _fmt_int(k_unk)
            + " of "
            + _fmt_int(pods)
            + " pods run on nodes whose kernel fix status is unknown (K8)",
            "the races are fixed (or not applicable: Windows) on every node its pods run on (K1-K3)",
        ),
    )
    resolver_t = np.select(
        [
            (res == "musl") & ignored.notna(),
            res == "musl",
            (res == "glibc") & (pair == "yes"),
            (res == "glibc") & (pair == "no"),
            res == "glibc",
            res == "go",
            res.isin(["go-cgo", "jvm"]),
            res == "c-ares",
            pair == "unknown",
        ],
        [
            "image " + img + " → musl: " + ignored.fillna("") + " is ignored, A+AAAA still race (R5)",
            "image "
            + img
            + " → musl: A+AAAA sent in parallel from one socket; dnsConfig options cannot stop it; "
            + cost
            + " (R5)",
            "image "
            + img
            + " → glibc without single-request-reopen/use-vc: A+AAAA race on one socket, "
            + cost
            + " (R1)",
            "image " + img + " → glibc with " + opts + ": A and AAAA no longer race (R2/R3)",
            "image " + img + " → glibc with " + opts + ": no-aaaa needs glibc >= 2.36, the image's glibc "
            "version is not known (R4)",
            "image " + img + " → Go resolver: one socket per query, not exposed (R6)",
            res + " uses libc getaddrinfo: parallel A+AAAA like glibc (R7/R8)",
            "c-ares: whether it sends both queries from one socket is unknown (R9)",
            "resolver of image " + img + " is unknown: set annotation dnsfleet.io/resolver (R11)",
        ],
        default="resolver " + res,
    )
    dsvc = frames.dns_service.set_index("cluster")
    path_note = wl["cluster"].map(dsvc["path_note"]).fillna("service path unknown")
    cdns = wl["uses_cluster_dns"].astype("boolean")
    path_t = np.where(
        cdns.fillna(True).to_numpy(dtype=bool),
        path_note,
        "dnsPolicy "
        + wl["dns_policy"].fillna("?")
        + np.where(wl["host_network"].fillna(False), " on hostNetwork", "")
        + ": does not query the cluster DNS service; races 1-2 can still apply without DNAT (P5, §1.1)",
    )
    nd = wl["ndots"].astype("Int64")
    ndots_t = np.where(
        nd.fillna(0).to_numpy() >= 2,
        "ndots:"
        + _fmt_int(nd)
        + ": names with fewer dots try the cluster search list first, each try one more A+AAAA pair (R10)",
        "",
    )
    ev_t = np.where(
        wl["evidence_pts"].fillna(0) > 0, "conntrack insert_failed grew on its nodes (D1, K7)", ""
    )
    zero_t = np.select(
        [pair == "no", (k_open == 0) & (k_unk == 0), wl["service_path_pts"].fillna(0) == 0],
        ["not exposed: " + resolver_t, "not exposed: " + kernel_t, "not exposed: " + path_t],
        default="",
    )
    wl["kernel_text"], wl["resolver_text"], wl["service_path_text"] = kernel_t, resolver_t, path_t
    wl["ndots_text"], wl["evidence_text"], wl["query_rate_text"] = ndots_t, ev_t, ""
    exposed_why = pd.Series(kernel_t, index=wl.index) + "; " + resolver_t + "; " + path_t
    exposed_why = exposed_why + pd.Series(
        np.where(ev_t != "", "; " + pd.Series(ev_t, index=wl.index), ""), index=wl.index
    )
    wl["why"] = np.where((wl["score"].fillna(0) == 0) & (zero_t != ""), zero_t, exposed_why)
    return wl


def _node_risk(frames: Frames, p: pd.DataFrame, nx: pd.DataFrame) -> pd.DataFrame:
    nodes = frames.nodes.copy()
    agg = aggregate(p.dropna(subset=["node"]), ["cluster", "node"])
    nodes = nodes.merge(agg, on=["cluster", "node"], how="left")
    x = nx.set_index(["cluster", "node"])
    key = pd.MultiIndex.from_frame(nodes[["cluster", "node"]])
    kg = x["kernel_gate"].reindex(key).to_numpy()
    races = x["open_races"].reindex(key).fillna("").to_numpy()
    # Nodes without pods: kernel and path alone (resolver unknown).
    empty = nodes["score"].isna().to_numpy()
    pg = x["path_gate"].reindex(key).to_numpy()
    none = empty & ((kg == 0) | (pg == 0))
    nodes.loc[empty, "level"] = np.where(none[empty], "low", "unknown")
    nodes.loc[empty, "score"] = np.where(none[empty], 0.0, np.nan)
    for c in ["exposed_pods", "unknown_pods"]:
        nodes[c] = nodes[c].fillna(0)
    kv = nodes["kernel_version"].fillna("?")
    nodes["kernel_text"] = np.where(
        kg == 1,
        kv + ": race(s) " + races + " open",
        np.where(
            np.isnan(kg),
            kv + " (" + nodes["distro"].fillna("unknown") + "): fix status unknown (K8)",
            np.where(
                nodes["race1"].to_numpy() == "not applicable",
                kv + ": not applicable (Windows node: no netfilter conntrack)",
                kv + ": races fixed",
            ),
        ),
    )
    nodes["service_path_text"] = np.select(
        [pg == 0, pg == 1],
        [
            "DNS bypasses conntrack DNAT on this node (P2/P3)",
            "DNS to kube-dns is DNAT'd through conntrack (P1)",
        ],
        default="service path unknown",
    )
    racing = p[p["resolver_gate"] == 1].groupby(["cluster", "node"])["pods"].sum().reindex(key).fillna(0)
    nodes["resolver_text"] = (
        racing.astype("int64").astype(str).to_numpy()
        + " of "
        + _fmt_int(nodes["pods"])
        + " pods on the node send A+AAAA in parallel from one socket (R1, R5)"
    )
    inc = x["insert_failed_increase"].reindex(key).to_numpy()
    nodes["evidence_text"] = np.where(
        np.isnan(inc),
        "conntrack stats not collected (D1)",
        np.where(
            inc > 0,
            "insert_failed +"
            + pd.Series(np.nan_to_num(inc)).round(0).astype("int64").astype(str).to_numpy()
            + np.where(
                nodes["counters_exact"].fillna(False),
                " (kernel >= 5.10: dropped packets, K7)",
                " (kernel < 5.10: may include resolved clashes, K7)",
            ),
            "insert_failed flat",
        ),
    )
    nodes["ndots_text"], nodes["query_rate_text"] = "", ""
    nodes["why"] = nodes["kernel_text"] + "; " + nodes["service_path_text"] + "; " + nodes["evidence_text"]
    return nodes


def _cluster_risk(frames: Frames, p: pd.DataFrame, nx: pd.DataFrame) -> pd.DataFrame:
    cl = frames.clusters.copy()
    agg = aggregate(p, ["cluster"], quantile=0.9)
    cl = cl.merge(agg, on="cluster", how="left")
    texts: dict[str, list[str]] = {
        f: [] for f in ("kernel", "service_path", "resolver", "ndots", "query_rate", "evidence")
    }
    dsvc = frames.dns_service.set_index("cluster")
    qps = frames.coredns_metrics.set_index("cluster")["qps"].astype("Float64").to_dict()
    endpoints = dsvc["ready_endpoints"].to_dict()
    notes = dsvc["path_note"].to_dict()
    n_nodes = nx.groupby("cluster").size().to_dict()
    kgroups: dict[str, list[str]] = {}
    kg = nx[nx["open_races"] != ""].groupby(["cluster", "kernel_version", "open_races"], dropna=False).size()
    for (c, kv, races), cnt in kg.sort_values(ascending=False).items():
        kgroups.setdefault(c, []).append(f"{cnt} of {n_nodes[c]} nodes run {kv}: race(s) {races} open")
    k_unknown = nx["kernel_gate"].isna().groupby(nx["cluster"]).sum().to_dict()
    ct_any = nx["ct_available"].groupby(nx["cluster"]).any().to_dict()
    grew = nx[nx["insert_failed_increase"] > 0]
    grew_n = grew.groupby("cluster").size().to_dict()
    grew_sum = grew.groupby("cluster")["insert_failed_increase"].sum().to_dict()
    grew_exact = grew["counters_exact"].fillna(False).astype(bool).groupby(grew["cluster"]).all().to_dict()
    wl = frames.workloads  # unscored: the counts below need the workloads' pods and resolvers only
    pods_all = wl.groupby("cluster")["pods"].sum().to_dict()
    pair = wl[wl["sends_parallel_pair"] == "yes"]
    pair_pods = pair.groupby("cluster")["pods"].sum().to_dict()
    mixes: dict[str, list[str]] = {}
    for (c, r), v in pair.groupby(["cluster", "resolver"])["pods"].sum().sort_values(ascending=False).items():
        mixes.setdefault(c, []).append(f"{r} {int(v)}")
    unk_res = wl[wl["sends_parallel_pair"] == "unknown"].groupby("cluster")["pods"].sum().to_dict()
    hi_ndots = wl[wl["ndots"].astype("Float64") >= 5].groupby("cluster")["pods"].sum().to_dict()
    for c, status in zip(cl["cluster"], cl["status"], strict=True):
        if status == "failed":
            for v in texts.values():
                v.append("")
            continue
        nn = n_nodes.get(c, 0)
        parts = list(kgroups.get(c, []))
        if k_unknown.get(c, 0):
            parts.append(f"{int(k_unknown[c])} of {nn} nodes have a kernel whose fix status is unknown (K8)")
        ep = endpoints.get(c)
        if ep is not None and not pd.isna(ep):
            parts.append(
                f"{int(ep)} ready kube-dns endpoint(s): race 3 {'can' if ep >= 2 else 'cannot'} occur (K4)"
            )
        texts["kernel"].append(
            "; ".join(parts[:3]) or "races fixed (or not applicable: Windows) on every node (K1-K3)"
        )
        texts["service_path"].append(str(notes.get(c) or "service path unknown"))
        t = (
            f"{int(pair_pods.get(c, 0))} of {int(pods_all.get(c, 0))} pods send A+AAAA in parallel from one "
            f"socket ({', '.join(mixes.get(c, [])) or 'none'})"
        )
        u = int(unk_res.get(c, 0))
        texts["resolver"].append(t + (f"; resolver unknown for {u} pods (R11)" if u else ""))
        hi = int(hi_ndots.get(c, 0))
        texts["ndots"].append(
            f"{hi} pods use ndots >= 5: every short external name costs several lookups (R10)" if hi else ""
        )
        q = qps.get(c)
        texts["query_rate"].append(
            f"CoreDNS serves {q:.0f} queries/s"
            if q is not None and not pd.isna(q)
            else "query rate not collected"
        )
        if not ct_any.get(c, False):
            texts["evidence"].append("conntrack stats not collected: no evidence either way (D1)")
        elif grew_n.get(c):
            texts["evidence"].append(
                f"conntrack insert_failed grew on {grew_n[c]} of {nn} nodes (+{grew_sum[c]:.0f})"
                + (
                    " = dropped packets (K7)"
                    if grew_exact[c]
                    else "; kernel < 5.10: may include resolved clashes (K7)"
                )
            )
        else:
            texts["evidence"].append("conntrack insert_failed flat on every node (D1)")
    for f, v in texts.items():
        cl[f"{f}_text"] = v
    failed = cl["status"] == "failed"
    cl.loc[failed, "level"] = "unknown"
    cl.loc[failed, "score"] = np.nan
    order = np.argsort(-cl[PTS].fillna(0).to_numpy(), axis=1)
    names = np.array(schema.FACTOR_NAMES)
    all_k0 = (nx["kernel_gate"] == 0).groupby(nx["cluster"]).all().to_dict()
    all_p0 = (nx["path_gate"] == 0).groupby(nx["cluster"]).all().to_dict()
    why = []
    for i, (_, row) in enumerate(cl.iterrows()):
        if row["status"] == "failed":
            why.append(f"scan failed: {row['reason'] or 'no data'}")
            continue
        if row.get("score") == 0:
            why.append(
                "no pod is exposed: "
                + _zero_reason(row, all_k0.get(row["cluster"]), all_p0.get(row["cluster"]))
            )
            continue
        top = [row[f"{names[j]}_text"] for j in order[i][:3] if row[f"{names[j]}_text"]]
        why.append("; ".join(top))
    cl["why"] = why
    return cl


def _zero_reason(row: pd.Series, kernel_all_fixed: bool | None, path_all_bypassed: bool | None) -> str:
    if kernel_all_fixed:
        return "the races are fixed (or not applicable: Windows) on every node (K1-K3)"
    if path_all_bypassed:
        return str(row["service_path_text"])
    return str(row["resolver_text"])


def _melt(df: pd.DataFrame, scope: str, key: str) -> pd.DataFrame:
    if not len(df):
        return pd.DataFrame()
    rules = {
        "kernel": "K1-K8",
        "service_path": "P1-P5",
        "resolver": "R1-R11",
        "ndots": "R10",
        "query_rate": "D3",
        "evidence": "D1, K7",
    }
    out = []
    for f in schema.FACTOR_NAMES:
        t = df.get(f"{f}_text")
        if t is None:
            continue
        part = pd.DataFrame({"cluster": df["cluster"], "key": df[key], "points": df[f"{f}_pts"], "text": t})
        part = part[part["text"].fillna("") != ""]
        part["factor"], part["rule"], part["scope"] = f, rules[f], scope
        out.append(part)
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()
