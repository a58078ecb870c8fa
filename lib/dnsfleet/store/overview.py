"""The fleet overview from the store index alone: one row per cluster from its newest index row, no
snapshot object read and nothing scored (the collector scored each cluster when it wrote the row).

Each row carries a plain ``note`` for what the figures do not say by themselves: a failed or partial
scan, a scan older than ``STALE_AFTER``, a newest row this dnsfleet cannot use (the figures then come
from the newest usable row), a collector clock off from the store's, two collectors on one name,
unreadable index rows. What only the snapshot object can tell (a truncated object, a newer snapshot
schema) shows when the cluster is opened (``SnapshotStore.latest``).

Ranking follows the engine's (``engine._rank``): clusters with known exposed pods first, then the
scored ones, then failed and not-applicable ones; by score within each tier.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from dnsfleet.store.snapshots import ROW_FIELDS, Heads, _skew_note, iso

if TYPE_CHECKING:
    import pandas as pd

STALE_AFTER = timedelta(hours=6)  # twelve missed runs of the default */30 collector schedule
OVERVIEW_COLUMNS = (
    "cluster",
    "rank",
    "level",
    "score",
    "status",
    "reason",
    "exposed_pods",
    "unknown_pods",
    "pods",
    "nodes",
    "nodes_ready",
    "insert_failed",
    "conntrack_drops",
    "evidence_pts",
    "scan_time",
    "collected_at",
    "scan_id",
    "collector",
    "stale",
    "note",
)


def _age(d: timedelta) -> str:
    h = d.total_seconds() / 3600
    return f"{h:.0f} h" if h < 48 else f"{h / 24:.0f} days"


def overview_rows(heads: Heads, now: datetime | None = None) -> list[dict[str, Any]]:
    """One record per cluster (``OVERVIEW_COLUMNS`` but ``rank``), from its newest usable index row."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    out = []
    for name in heads.rows:
        newest, r = heads.newest(name), heads.usable(name)
        notes = heads.cluster_notes(name)
        rec: dict[str, Any] = dict.fromkeys(OVERVIEW_COLUMNS)
        rec["cluster"] = name
        if r is None:
            rec.update(status="failed", level="unknown", reason="no usable row in the store index")
            rec["note"] = "; ".join(notes) or rec["reason"]
            out.append(rec)
            continue
        for k in (*ROW_FIELDS, "scan_id"):
            rec[k] = r.get(k)
        if not isinstance(rec["level"], str):
            rec["level"] = "unknown"
        rec["scan_time"] = r["stored_at"]
        rec["collected_at"] = r.get("collected_at")
        rec["collector"] = (r.get("collector") or {}).get("id")
        if newest is not r:
            notes.insert(
                0, f"newest index row unusable; figures from the scan stored at {iso(r['stored_at'])}"
            )
        if r.get("status") == "failed":
            notes.insert(0, f"scan failed: {r.get('reason') or 'no reason recorded'}")
        elif r.get("status") == "partial":
            notes.insert(0, f"partial scan: {r.get('reason') or 'some resources were unreadable'}")
        age = now - r["stored_at"]
        rec["stale"] = age > STALE_AFTER
        if rec["stale"]:
            notes.append(f"stale: no scan stored for {_age(age)}")
        notes += _skew_note(r)
        rec["note"] = "; ".join(dict.fromkeys(notes)) or None
        out.append(rec)
    return out


def overview_frame(heads: Heads, now: datetime | None = None) -> pd.DataFrame:
    """``overview_rows`` as a frame, ranked (``rank`` 1 = act first), in rank order."""
    import numpy as np
    import pandas as pd

    df = pd.DataFrame.from_records(overview_rows(heads, now), columns=list(OVERVIEW_COLUMNS))
    df["scan_time"] = pd.to_datetime(df["scan_time"], utc=True)
    df["collected_at"] = pd.to_datetime(df["collected_at"], utc=True, errors="coerce")
    for c in ("score", "insert_failed", "conntrack_drops", "evidence_pts"):
        df[c] = pd.to_numeric(df[c], errors="coerce").astype("Float64")
    for c in ("exposed_pods", "unknown_pods", "pods", "nodes", "nodes_ready"):
        df[c] = pd.to_numeric(df[c], errors="coerce").astype("Int64")
    df["stale"] = df["stale"].fillna(False).astype(bool)
    exposed = df["exposed_pods"].fillna(0).astype("float64") > 0
    scored = df["score"].notna().to_numpy()
    tier = np.select([exposed.to_numpy() & scored, scored], [0, 1], default=2)
    order = pd.DataFrame(
        {"tier": tier, "score": -df["score"].astype("float64").fillna(-1.0), "cluster": df["cluster"]}
    ).sort_values(["tier", "score", "cluster"], kind="stable")
    df["rank"] = 0
    df.loc[order.index, "rank"] = np.arange(1, len(order) + 1)
    return df.sort_values("rank").reset_index(drop=True)


def overview_metrics(df: pd.DataFrame) -> dict[str, Any]:
    """Headline numbers of an ``overview_frame``."""
    pods = int(df["pods"].fillna(0).sum())
    exposed = int(df["exposed_pods"].fillna(0).sum())
    return {
        "clusters": len(df),
        "clusters_failed": int((df["status"] == "failed").sum()),
        "clusters_stale": int(df["stale"].sum()),
        "clusters_noted": int(df["note"].notna().sum()),
        "nodes": int(df["nodes"].fillna(0).sum()),
        "pods": pods,
        "exposed_pods": exposed,
        "exposed_share": (exposed / pods) if pods else None,
        "clusters_high": int((df["level"] == "high").sum()),
    }


__all__ = ["OVERVIEW_COLUMNS", "STALE_AFTER", "overview_frame", "overview_metrics", "overview_rows"]
