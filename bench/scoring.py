"""Risk scoring alone, on synthetic frames: ``rows`` workloads (the demo fleet's workloads repeated with
new ids, each with its demo placements' first node), on the demo fleet's 77 nodes / 7 clusters.

Two figures: ``score_s`` is the risk model proper (``risk.placements_scored`` + the pod-weighted
aggregation per workload, node and cluster); ``assess_s`` is everything ``engine.assess`` does on frames
(scores, levels, the plain-language reasons, recommendations, schema conformance).
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pandas as pd

from dnsfleet.demo import demo_snapshot
from dnsfleet.engine import assess
from dnsfleet.frames import Frames, build_frames
from dnsfleet.risk import aggregate, node_exposure, placements_scored


def synthetic_frames(rows: int) -> Frames:
    """Frames with exactly ``rows`` workload rows and one placement per workload."""
    base = build_frames(demo_snapshot())
    wl0 = base.workloads
    first = base.placements.drop_duplicates("workload_id").set_index("workload_id")
    wl0 = wl0[wl0["workload_id"].isin(first.index)].reset_index(drop=True)
    reps = -(-rows // len(wl0))
    idx = np.tile(np.arange(len(wl0)), reps)[:rows]
    copy_no = np.repeat(np.arange(reps), len(wl0))[:rows]
    wl = wl0.iloc[idx].reset_index(drop=True)
    suffix = pd.Series(copy_no, dtype="int64").astype(str)
    wl["name"] = (wl["name"] + "-" + suffix).astype("string")
    wl["workload_id"] = (wl["workload_id"] + "-" + suffix).astype("string")
    pl = first.loc[wl0["workload_id"].iloc[idx].to_numpy()].reset_index(drop=True)
    placements = pd.DataFrame(
        {
            "cluster": wl["cluster"].to_numpy(),
            "workload_id": wl["workload_id"].to_numpy(),
            "node": pl["node"].to_numpy(),
            "pods": pl["pods"].astype("Int64").to_numpy(),
        }
    ).astype({"cluster": "string", "workload_id": "string", "node": "string", "pods": "Int64"})
    wl["pods"] = placements["pods"].to_numpy()
    wl["nodes"] = pd.array(np.where(placements["node"].isna(), 0, 1), dtype="Int64")
    return replace(base, workloads=wl, placements=placements)


def time_scoring(rows: int, engine: bool = True) -> dict[str, float]:
    """Seconds for the risk model proper and (``engine``) for the whole engine on ``rows`` workloads."""
    frames = synthetic_frames(rows)
    t0 = time.perf_counter()
    nx = node_exposure(frames)
    p = placements_scored(frames, nx)
    aggregate(p, ["workload_id"])
    aggregate(p.dropna(subset=["node"]), ["cluster", "node"])
    aggregate(p, ["cluster"], quantile=0.9)
    t1 = time.perf_counter()
    if not engine:
        return {"score_s": t1 - t0, "rows": float(rows)}
    a = assess(frames)
    t2 = time.perf_counter()
    if len(a.workloads) != rows:
        raise AssertionError(f"scored {len(a.workloads)} workloads, expected {rows}")
    return {"score_s": t1 - t0, "assess_s": t2 - t1, "rows": float(rows)}
