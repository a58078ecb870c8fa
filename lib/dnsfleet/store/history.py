"""History and trends from the store index: one row per cluster per scan, regressions flagged, and the
mitigations of the audit log as marks on the same time axis.

A scan is a **regression** when, against the same cluster's previous scan: its level rose (low ->
medium -> high), its score rose by ``SCORE_JUMP`` points or more, or its exposed pods grew by at least
``EXPOSED_GROWTH`` of the previous count (and by at least one pod). ``unknown`` and ``n/a`` levels rank
below ``low`` for this comparison only when both scans know their level; a scan whose level is unknown
is never a regression on the level alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from dnsfleet.store.snapshots import Index, iso

if TYPE_CHECKING:
    import pandas as pd

LEVEL_RANK = {"low": 0, "medium": 1, "high": 2}
SCORE_JUMP = 10.0
EXPOSED_GROWTH = 0.10
HISTORY_COLUMNS = (
    "cluster",
    "scan_time",
    "collected_at",
    "scan_id",
    "status",
    "level",
    "score",
    "exposed_pods",
    "unknown_pods",
    "pods",
    "nodes",
    "nodes_ready",
    "insert_failed",
    "conntrack_drops",
    "evidence_pts",
    "collector",
    "regression",
    "regression_why",
    "note",
)


def history_frame(index: Index, clusters: Iterable[str] | None = None) -> pd.DataFrame:
    """The index as a frame (``HISTORY_COLUMNS``), oldest first per cluster; ``scan_time`` is the
    store's clock (``stored_at``), ``collected_at`` the collector's."""
    import pandas as pd

    wanted = set(clusters) if clusters is not None else None
    recs: list[dict[str, Any]] = []
    prev: dict[str, Mapping[str, Any]] = {}
    for r in index.rows:  # sorted by cluster, then store time
        if wanted is not None and r["cluster"] not in wanted:
            continue
        why = regression(prev.get(r["cluster"]), r) if not r.get("_skip") else []
        recs.append(
            {
                "cluster": r["cluster"],
                "scan_time": r["stored_at"],
                "collected_at": r.get("collected_at"),
                "scan_id": r.get("scan_id"),
                "status": r.get("status"),
                "level": r.get("level"),
                "score": r.get("score"),
                "exposed_pods": r.get("exposed_pods"),
                "unknown_pods": r.get("unknown_pods"),
                "pods": r.get("pods"),
                "nodes": r.get("nodes"),
                "nodes_ready": r.get("nodes_ready"),
                "insert_failed": r.get("insert_failed"),
                "conntrack_drops": r.get("conntrack_drops"),
                "evidence_pts": r.get("evidence_pts"),
                "collector": (r.get("collector") or {}).get("id"),
                "regression": bool(why),
                "regression_why": "; ".join(why) or None,
                "note": r.get("_note"),
            }
        )
        if not r.get("_skip"):
            prev[r["cluster"]] = r
    df = pd.DataFrame.from_records(recs, columns=list(HISTORY_COLUMNS))
    df["scan_time"] = pd.to_datetime(df["scan_time"], utc=True)
    df["collected_at"] = pd.to_datetime(df["collected_at"], utc=True)
    for c in ("score", "insert_failed", "conntrack_drops", "evidence_pts"):
        df[c] = pd.to_numeric(df[c], errors="coerce").astype("Float64")
    for c in ("exposed_pods", "unknown_pods", "pods", "nodes", "nodes_ready"):
        df[c] = pd.to_numeric(df[c], errors="coerce").astype("Int64")
    df["regression"] = df["regression"].astype(bool)
    return df


def regression(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> list[str]:
    """Why ``after`` is worse than ``before`` (empty: it is not)."""
    if before is None:
        return []
    why = []
    lb, la = LEVEL_RANK.get(str(before.get("level"))), LEVEL_RANK.get(str(after.get("level")))
    if lb is not None and la is not None and la > lb:
        why.append(f"level rose {before['level']} -> {after['level']}")
    sb, sa = before.get("score"), after.get("score")
    if isinstance(sb, int | float) and isinstance(sa, int | float) and sa - sb >= SCORE_JUMP:
        why.append(f"score rose {sb:.0f} -> {sa:.0f}")
    eb, ea = before.get("exposed_pods"), after.get("exposed_pods")
    if (
        isinstance(eb, int | float)
        and isinstance(ea, int | float)
        and ea - eb >= max(1.0, eb * EXPOSED_GROWTH)
    ):
        why.append(f"exposed pods {eb:.0f} -> {ea:.0f}")
    return why


def mitigation_marks(
    records: Iterable[Mapping[str, Any]], clusters: Iterable[str] | None = None
) -> pd.DataFrame:
    """One mark per applied mitigation batch (a plan: its objects written together) from audit records:
    ``time`` (UTC, the batch's first write), ``cluster``, ``mitigation`` (``undo-...`` for an undo),
    ``objects`` (written ok) and ``identity``. Only writes that succeeded count; the audit log records no
    dry runs."""
    import pandas as pd

    wanted = set(clusters) if clusters is not None else None
    batches: dict[Any, dict[str, Any]] = {}
    for r in records:
        if str(r.get("result")) != "ok" or (wanted is not None and r.get("cluster") not in wanted):
            continue
        t = pd.to_datetime(r.get("time"), utc=True, errors="coerce")
        if t is pd.NaT or t != t:
            continue
        key = r.get("batch") or (r.get("cluster"), r.get("mitigation"), r.get("time"))
        b = batches.setdefault(
            key,
            {
                "time": t,
                "cluster": r.get("cluster"),
                "mitigation": r.get("mitigation"),
                "objects": 0,
                "identity": r.get("identity"),
            },
        )
        b["time"] = min(b["time"], t)
        b["objects"] += 1
    cols = ["time", "cluster", "mitigation", "objects", "identity"]
    df = pd.DataFrame.from_records(list(batches.values()), columns=cols)
    df["time"] = pd.to_datetime(df["time"], utc=True)
    return df.sort_values("time").reset_index(drop=True)


__all__ = ["HISTORY_COLUMNS", "history_frame", "iso", "mitigation_marks", "regression"]
