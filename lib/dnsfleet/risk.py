"""The risk model: a 0-100 score, a level and plain-language reasons per workload, node and cluster.

The unit scored is a *placement*: the pods of one workload on one node. Three gates decide whether
its DNS can hit the race at all (dns-race-facts §8.6):

- kernel: a race is open on the node (K1, K2, K3 with K4, K6);
- service path: pod DNS goes through netfilter DNAT (P1), not NodeLocal DNSCache (P2) or socket-LB (P3);
- resolver: the workload sends a same-socket parallel A+AAAA pair (R1, R5, R7, R8; not R2-R4, R6).

A gate is 1 (yes), 0 (no) or unknown. Any gate 0: not exposed, score 0. Otherwise the score is the sum
of the factor points below, counting an unknown gate as if it were 1 (worst case), and the placement
is *unknown* when any gate is unknown, *exposed* when all are 1.

| factor        | points | how                                                                  |
|---------------|--------|----------------------------------------------------------------------|
| kernel        | 30     | 30 if race 1/2 (or NFQUEUE) open, 18 if only race 3 open              |
| service_path  | 20     | 20 when DNS is DNAT'd through conntrack                               |
| resolver      | 25     | 25 x rules.resolver.loss_factor: what lost queries cost the resolver  |
| ndots         | 10     | 10 x min(ndots, 5) / 5 for cluster-DNS users: search-list expansions  |
| query_rate    | 5      | 5 x min(1, log10(1 + CoreDNS q/s) / 4)                                |
| evidence      | 10     | insert_failed grew on the node: 10 (kernel >= 5.10 or drop grew), else 4 |

Workloads and nodes aggregate placements as the pod-weighted mean. A cluster's score is the average
of the pod-weighted mean and the pod-weighted 90th percentile (what the worst-off tenth of its pods
face), so a cluster with one exposed node pool is not averaged away by its safe pools; its factor
points are the pod-weighted means. Levels: high >= 60,
medium >= 35, else low, taken from the (worst-case) score. One exception keeps "no data" from
reading as risk or safety: when the known placements alone score low but the worst case does not,
the level is *unknown*. ``docs/risk-model.md`` has a
worked example. Everything is vectorised over frames.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa

from dnsfleet import columnar, schema
from dnsfleet.frames import Frames
from dnsfleet.rules import path as path_rules
from dnsfleet.rules import resolver as resolver_rules

if TYPE_CHECKING:
    from pandas._typing import ArrayLike

W_KERNEL, W_PATH, W_RESOLVER, W_NDOTS, W_RATE, W_EVIDENCE = 30.0, 20.0, 25.0, 10.0, 5.0, 10.0
RACE3_ONLY = 0.6
LONG_WINDOW_S = 3600.0  # D7: flat counters mean something only over at least an hour of DNS traffic
HIGH, MEDIUM = 60.0, 35.0
PTS = [f"{f}_pts" for f in schema.FACTOR_NAMES]


_LEVEL_NAMES = pa.array(["high", "medium", "low", "unknown"])


def level_of(score: pd.Series) -> pd.Series:
    # Codes into an Arrow take: 20x faster than building the strings in numpy (0.76 s per 1M rows).
    v = score.astype("float64").to_numpy()
    codes = np.where(np.isnan(v), 3, np.where(v >= HIGH, 0, np.where(v >= MEDIUM, 1, 2)))
    return pd.Series(pd.array(_LEVEL_NAMES.take(pa.array(codes)), dtype="string"), index=score.index)


def _tri(mask_yes: pd.Series, mask_no: pd.Series) -> np.ndarray:
    """1.0 where yes, 0.0 where no, NaN otherwise."""
    y = mask_yes.fillna(False).to_numpy(dtype=bool)
    n = mask_no.fillna(False).to_numpy(dtype=bool)
    return np.where(y, 1.0, np.where(n, 0.0, np.nan))


def node_exposure(frames: Frames, measured: list[dict] | None = None) -> pd.DataFrame:
    """Per node: kernel gate and weight, node-level path gate, evidence (D1, D6, D7), with flags.

    ``measured``: probe results per node (``dnsfleet.probe.measured.node_measurements``), applied last by
    ``apply_measured`` because they outrank everything inferred here.

    Race 3 counts only with two or more ready kube-dns endpoints (K4) and reads *unknown* under IPVS on
    a kernel that fixes it in mainline (``rules.path.effective_race3``). D6: on kernel >= 5.10 a growing
    ``insert_failed`` or ``drop`` opens the kernel gate whatever the table says.
    """
    n = frames.nodes[
        [
            "cluster",
            "node",
            "kernel_version",
            "os_image",
            "distro",
            "race1",
            "race2",
            "race3",
            "nfqueue",
            "counters_exact",
            "nodelocal_ready",
            "pool",
        ]
    ].copy()
    d = frames.dns_service[
        ["cluster", "ready_endpoints", "nfqueue_agent", "path", "path_code", "kube_proxy_mode"]
    ]
    n = n.merge(d, on="cluster", how="left")
    r3 = path_rules.effective_race3(n["race3"], n["kube_proxy_mode"])
    n["race3_path"] = r3
    n["ipvs_unknown"] = ((n["race3"] == "fixed") & (r3 == "unknown")).fillna(False).to_numpy(dtype=bool)
    r3_rel = path_rules.race3_relevance(n["ready_endpoints"])
    nfq_rel = n["nfqueue_agent"].astype("boolean")
    agent = _tri(nfq_rel == True, nfq_rel == False)  # noqa: E712
    r12_open = ((n["race1"] == "open") | (n["race2"] == "open")).to_numpy(dtype=bool)
    r3_open = (r3 == "open").fillna(False).to_numpy(dtype=bool)
    nfq_open = (n["nfqueue"] == "open").to_numpy(dtype=bool)
    ct = frames.conntrack.set_index(["cluster", "node"])
    key = pd.MultiIndex.from_frame(n[["cluster", "node"]])
    inc = ct["insert_failed_increase"].reindex(key).astype("float64").to_numpy()
    drop = ct["drop_increase"].reindex(key).astype("float64").to_numpy()
    window = ct["window_s"].reindex(key).astype("float64").to_numpy()
    exact_b = n["counters_exact"].astype("boolean")
    exact = exact_b.fillna(False).to_numpy(dtype=bool)
    old_kernel = (exact_b == False).fillna(False).to_numpy(dtype=bool)  # noqa: E712
    inc_grew = np.nan_to_num(inc) > 0
    drop_grew = np.nan_to_num(drop) > 0
    strong = (inc_grew & exact) | drop_grew
    d6 = exact & (inc_grew | drop_grew)
    opened = r12_open | (r3_open & (r3_rel == 1)) | (nfq_open & (agent == 1))
    unk = (
        (n["race1"] == "unknown").to_numpy(dtype=bool)
        | (n["race2"] == "unknown").to_numpy(dtype=bool)
        | ((r3 == "unknown").fillna(True).to_numpy(dtype=bool) & (r3_rel != 0))
        | (r3_open & np.isnan(r3_rel))
        | ((n["nfqueue"] == "unknown").to_numpy(dtype=bool) & (agent == 1))
        | (nfq_open & np.isnan(agent))
    )
    n["kernel_gate"] = np.where(opened | d6, 1.0, np.where(unk, np.nan, 0.0))
    n["kernel_weight"] = np.where(
        r12_open | (nfq_open & (agent == 1)) | d6, 1.0, np.where(opened, RACE3_ONLY, 1.0)
    )
    n["d6"] = d6 & ~opened
    # K4: race 3 is what is left open, and one endpoint keeps it from triggering.
    n["race3_one_endpoint"] = (
        (r3_open & (n["ready_endpoints"].astype("Float64") == 1).fillna(False).to_numpy(dtype=bool))
        & ~opened
        & ~unk
        & ~d6
    )
    n["path_gate"] = path_rules.placement_path_gate(
        n["path"], n["path_code"], n["nodelocal_ready"], pd.Series("cluster-ip", index=n.index)
    )
    n["evidence"] = np.where(strong, 1.0, np.where(inc_grew, 0.4, 0.0))
    n["insert_failed_increase"] = inc
    n["drop_increase"] = drop
    n["ct_available"] = ~np.isnan(inc)
    # D7: a kernel < 5.10 whose insert_failed and drop stayed flat over a long window.
    n["flat_long"] = (
        old_kernel & ~np.isnan(inc) & ~inc_grew & ~drop_grew & (np.nan_to_num(window) >= LONG_WINDOW_S)
    )
    n["window_s"] = window
    n["open_races"] = _open_races_text(n, r3_rel, agent)
    return apply_measured(n, measured)


# -- measured evidence (issue 17 §2) -----------------------------------------------------------------
MEASURED_COLUMNS = ["probe_lookups", "probe_slow", "probe_stalls", "measured"]


def apply_measured(n: pd.DataFrame, measured: list[dict] | None) -> pd.DataFrame:
    """Probe results outrank inference. A node where a probe pod measured stalls (``measured ==
    "stalls"``) is exposed whatever the kernel and path tables say: kernel gate, node path gate and
    evidence are 1. A node with many clean lookups (``"clean"``) keeps its gates (the race is chance and
    load) but gets no evidence points: lower confidence in "exposed"."""
    cols = ["cluster", "node", *MEASURED_COLUMNS]
    m = pd.DataFrame(measured or [], columns=cols)
    n = (
        n.merge(m, on=["cluster", "node"], how="left")
        if len(m)
        else n.assign(**{c: None for c in MEASURED_COLUMNS})
    )
    stalled = (n["measured"] == "stalls").fillna(False).to_numpy(dtype=bool)
    clean = (n["measured"] == "clean").fillna(False).to_numpy(dtype=bool)
    n["kernel_gate"] = np.where(stalled, 1.0, n["kernel_gate"].astype("float64"))
    n["kernel_weight"] = np.where(stalled, 1.0, n["kernel_weight"].astype("float64"))
    n["path_gate"] = np.where(stalled, 1.0, n["path_gate"].astype("float64"))
    n["evidence"] = np.where(stalled, 1.0, np.where(clean, 0.0, n["evidence"].astype("float64")))
    return n


def _open_races_text(n: pd.DataFrame, r3_rel: np.ndarray, agent: np.ndarray) -> pd.Series:
    parts = []
    for col, label, rel in (
        ("race1", "1", None),
        ("race2", "2", None),
        ("race3_path", "3", r3_rel),
        ("nfqueue", "NFQUEUE", agent),
    ):
        is_open = (n[col] == "open").fillna(False).to_numpy(dtype=bool)
        if rel is not None:
            is_open = is_open & (rel != 0)
        parts.append(np.where(is_open, label, ""))
    joined = pd.Series([",".join(x for x in t if x) for t in zip(*parts, strict=True)], index=n.index)
    return joined


def placements_scored(frames: Frames, nx: pd.DataFrame | None = None) -> pd.DataFrame:
    """Placements with gates, factor points, score and exposure flags (``nx``: ``node_exposure``).

    Placements of workloads that do not use cluster DNS (D8) are *not applicable*: ``applicable`` is
    False, their points are 0 and their score NA, and ``aggregate`` leaves them out of every weight.
    """
    nx = node_exposure(frames) if nx is None else nx
    w = frames.workloads[
        [
            "workload_id",
            "resolver",
            "sends_parallel_pair",
            "uses_cluster_dns",
            "dns_via",
            "stall_s",
            "ndots",
        ]
    ]
    p = columnar.left_join(frames.placements, w, ["workload_id"])
    p = columnar.left_join(
        p,
        nx[
            [
                "cluster",
                "node",
                "kernel_gate",
                "kernel_weight",
                "evidence",
                "path",
                "path_code",
                "nodelocal_ready",
                "race3_one_endpoint",
                "measured",
            ]
        ],
        ["cluster", "node"],
    )
    qps = frames.coredns_metrics.set_index("cluster")["qps"].astype("float64")
    at = columnar.positions(qps.index.to_frame(index=False), p, ["cluster"])
    # The new columns are collected and the frame built once (assigning a column copies it).
    cols: dict[str, pd.Series | ArrayLike] = {c: p[c] for c in p.columns}
    if at is None:
        cols["qps"] = p["cluster"].map(qps).astype("float64")
    else:
        cols["qps"] = columnar.take(qps, at, bool((at < 0).any())).astype("float64", copy=False)
    cluster_dns = p["uses_cluster_dns"].astype("boolean")
    applicable = ~(cluster_dns == False).fillna(False).to_numpy(dtype=bool)  # noqa: E712
    uses = (cluster_dns == True).fillna(False).to_numpy(dtype=bool)  # noqa: E712
    pg_all = path_rules.placement_path_gate(p["path"], p["path_code"], p["nodelocal_ready"], p["dns_via"])
    cols["path_gate"] = np.where(uses, pg_all, np.nan)
    # A probe pod (ClusterFirst, through the Service) stalled on this node: the path is DNAT'd there.
    stalled = (p["measured"] == "stalls").fillna(False).to_numpy(dtype=bool)
    via_service = (p["dns_via"].astype("string") != "link-local").fillna(True).to_numpy(dtype=bool)
    cols["path_gate"] = np.where(stalled & uses & via_service, 1.0, cols["path_gate"])
    cols["resolver_gate"] = _tri(p["sends_parallel_pair"] == "yes", p["sends_parallel_pair"] == "no")
    kg = p["kernel_gate"].astype("float64").to_numpy()
    pg, rg = cols["path_gate"], cols["resolver_gate"]
    zero = (kg == 0) | (pg == 0) | (rg == 0)
    unknown = ~zero & (np.isnan(kg) | np.isnan(pg) | np.isnan(rg)) & applicable
    live = (~zero & applicable).astype("float64")
    stall = p["stall_s"].astype("float64").fillna(5.0).to_numpy()
    ndots = p["ndots"].astype("float64").to_numpy()
    pts = {
        "kernel_pts": live
        * W_KERNEL
        * np.where(np.isnan(kg), 1.0, p["kernel_weight"].astype("float64").fillna(1.0)),
        "service_path_pts": live * W_PATH,
        # What a lost query costs per resolver, not the timeout alone (rules.resolver.lost_query_cost).
        "resolver_pts": live * W_RESOLVER * resolver_rules.loss_factor(p["resolver"], stall),
        "ndots_pts": live
        * W_NDOTS
        * np.where(np.isnan(ndots), 0.0, np.minimum(np.nan_to_num(ndots), 5.0) / 5.0),
    }
    q = np.asarray(cols["qps"], dtype="float64")
    pts["query_rate_pts"] = (
        live * W_RATE * np.where(np.isnan(q), 0.0, np.clip(np.log10(1.0 + np.nan_to_num(q)) / 4.0, 0, 1))
    )
    pts["evidence_pts"] = live * W_EVIDENCE * p["evidence"].astype("float64").fillna(0.0).to_numpy()
    cols.update(pts)
    score = pd.DataFrame({c: pts[c] for c in PTS}, index=p.index, copy=False).sum(axis=1)
    cols["score"] = score.where(applicable)
    cols["zero"] = zero & applicable
    cols["unknown"] = unknown
    cols["exposed"] = ~zero & ~unknown & applicable
    cols["applicable"] = applicable
    # K4: pods that one more CoreDNS endpoint would expose (only race 3 open, one endpoint).
    blocked = p["race3_one_endpoint"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    cols["race3_one_endpoint"] = blocked & applicable & (pg != 0) & (rg != 0)
    return pd.DataFrame(cols, index=p.index, copy=False)


def weighted_quantile(p: pd.DataFrame, by: list[str], value: pd.Series, q: float) -> pd.Series:
    """Per group, the value that at least a share ``1 - q`` of the pods face (pod-weighted quantile)."""
    t = p[by].copy()
    t["v"] = value.astype("float64").to_numpy()
    t["w"] = p["pods"].astype("float64").to_numpy()
    t = t.sort_values([*by, "v"], kind="stable")
    g = t.groupby(by, sort=False, dropna=False)
    t["cum"] = g["w"].cumsum()
    t["tot"] = g["w"].transform("sum")
    hit = t[t["cum"] >= q * t["tot"]]
    return hit.groupby(by, sort=False, dropna=False)["v"].first()


_AGG_COLUMNS = ("pods", "unknown", "exposed", "score", *PTS)


def _group_sums(p: pd.DataFrame, ids: np.ndarray, pods: np.ndarray, unknown: np.ndarray) -> pd.DataFrame:
    """Per group id (rows in id order), the pod-weighted sums ``aggregate`` divides by the pods.

    One block per column, as when the columns were added to a frame one by one: pandas picks the
    summation per block (``reduceat`` for sorted ids without NaN, else a compensated sum).
    """
    score = p["score"].astype("float64").to_numpy()
    cols = {"pods": pods}
    for c in [*PTS, "score"]:
        cols[c] = p[c].astype("float64").to_numpy() * pods
    cols["known_score"] = np.where(unknown, 0.0, score) * pods
    cols["exposed_pods"] = np.where(p["exposed"], pods, 0.0)
    cols["unknown_pods"] = np.where(unknown, pods, 0.0)
    return pd.DataFrame(cols, copy=False).groupby(ids, sort=False).sum()


def _per_pod(total: np.ndarray, pods: np.ndarray) -> np.ndarray:
    """``round(total / pods, 1)`` in one new array."""
    out = np.divide(total, pods)
    return np.round(out, 1, out=out)


def aggregate(p: pd.DataFrame, by: list[str], quantile: float | None = None) -> pd.DataFrame:
    """Pod-weighted aggregation of scored placements.

    With ``quantile`` (clusters use 0.9) the score is the average of the pod-weighted mean (how many
    pods, how badly) and the pod-weighted quantile of placement scores (what the worst-off tenth of
    pods face). Factor points stay pod-weighted means. Otherwise the score is the pod-weighted mean.
    Placements that are not applicable (D8) are left out: a group with none applicable has no row.
    """
    keep = p["applicable"].to_numpy(dtype=bool) if "applicable" in p.columns else None
    if keep is not None and keep.all():
        keep = None
    # Group ids on the whole frame: its key columns are the ones the joins factorized, whose codes
    # ``columnar`` remembers; a filtered copy would be factorized again (at 1,000,000 rows that doubled
    # the workload aggregation).
    grouped = columnar.group_ids(p[by]) if len(p) else None
    if keep is not None:
        # only the columns read below: a placements frame has ~30, copying them all cost more than the
        # aggregation (100,000 pods: 0.1 s and ~25 MB)
        p = p.loc[keep, list(dict.fromkeys([*by, *_AGG_COLUMNS]))]
    if grouped is None or not len(p):
        return aggregate_reference(p, by, quantile)
    ids, keys = grouped
    if keep is not None:
        # the groups of the kept rows, numbered by first appearance among them, as a group-by of the
        # filtered frame numbers them
        kept_ids, firsts = pd.factorize(ids[keep])
        ids, keys = kept_ids.astype(np.int64, copy=False), keys.iloc[firsts].reset_index(drop=True)
    pods = p["pods"].astype("float64").to_numpy()
    unknown = p["unknown"].to_numpy()
    g = _group_sums(p, ids, pods, unknown)
    if len(g) != len(keys):
        raise AssertionError("group ids are not 0..n-1")
    tot = g["pods"].to_numpy()
    tot = np.where(tot == 0.0, np.nan, tot)
    cols: dict[str, pd.Series | np.ndarray] = {c: keys[c] for c in keys.columns}
    for c in [*PTS, "score"]:
        cols[c] = _per_pod(g[c].to_numpy(), tot)
    known = _per_pod(g["known_score"].to_numpy(), tot)
    if quantile is not None:
        score = p["score"].astype("float64").to_numpy()
        q_score = columnar.quantile_by_ids(ids, len(keys), score, pods, quantile)
        known_v = np.where(unknown, 0.0, score)
        known = np.round(columnar.quantile_by_ids(ids, len(keys), known_v, pods, quantile), 1)
        known = np.round((known + (g["known_score"].to_numpy() / tot)) / 2, 1)
        cols["score"] = np.round((q_score + cols["score"]) / 2, 1)
    cols["exposed_pods"] = g["exposed_pods"].to_numpy().astype("int64")
    cols["unknown_pods"] = g["unknown_pods"].to_numpy().astype("int64")
    worst_lvl = level_of(pd.Series(cols["score"], index=keys.index, copy=False))
    known_lvl = level_of(pd.Series(known, index=keys.index, copy=False))
    undecided = (cols["unknown_pods"] > 0) & (known_lvl == "low") & (worst_lvl != "low")
    cols["level"] = worst_lvl.where(~undecided, "unknown")
    return pd.DataFrame(cols, index=keys.index, copy=False)


def aggregate_reference(p: pd.DataFrame, by: list[str], quantile: float | None = None) -> pd.DataFrame:
    """The reference definition of ``aggregate``: plain pandas group-bys on the key columns.

    ``aggregate`` computes the same frame on integer group ids (``columnar.group_ids``);
    it falls back to this for key dtypes other than strings and for no rows.
    ``tests/test_columnar.py`` checks the two agree on random placements.

    With ``quantile`` (clusters use 0.9) the score is the average of the pod-weighted mean (how many
    pods, how badly) and the pod-weighted quantile of placement scores (what the worst-off tenth of
    pods face). Factor points stay pod-weighted means. Otherwise the score is the pod-weighted mean.
    """
    if "applicable" in p.columns:
        p = p[p["applicable"].to_numpy(dtype=bool)]
    pods = p["pods"].astype("float64")
    tmp = p[by].copy()
    tmp["pods"] = pods
    for c in [*PTS, "score"]:
        tmp[c] = p[c].astype("float64") * pods
    tmp["known_score"] = np.where(p["unknown"], 0.0, p["score"].astype("float64")) * pods
    tmp["exposed_pods"] = np.where(p["exposed"], pods, 0.0)
    tmp["unknown_pods"] = np.where(p["unknown"], pods, 0.0)
    g = tmp.groupby(by, sort=False, dropna=False).sum()
    tot = g["pods"].replace(0.0, np.nan)
    out = pd.DataFrame(index=g.index)
    for c in [*PTS, "score"]:
        out[c] = (g[c] / tot).round(1)
    known = (g["known_score"] / tot).round(1)
    if quantile is not None and len(p):
        q_score = weighted_quantile(p, by, p["score"], quantile).reindex(out.index)
        known_v = pd.Series(np.where(p["unknown"], 0.0, p["score"].astype("float64")), index=p.index)
        known = weighted_quantile(p, by, known_v, quantile).reindex(out.index).round(1)
        known = ((known + (g["known_score"] / tot)) / 2).round(1)
        out["score"] = ((q_score + out["score"]) / 2).round(1)
    out["exposed_pods"] = g["exposed_pods"].astype("int64")
    out["unknown_pods"] = g["unknown_pods"].astype("int64")
    worst_lvl, known_lvl = level_of(out["score"]), level_of(known)
    undecided = (out["unknown_pods"] > 0) & (known_lvl == "low") & (worst_lvl != "low")
    lvl = worst_lvl.where(~undecided, "unknown")
    out["level"] = lvl
    return out.reset_index()
