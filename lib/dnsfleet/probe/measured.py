"""Probe results as measured evidence: stored per cluster in the snapshot (``probe``) and read per node
for the risk model (``node_measurements``), which ranks them above inference:

- **stalls**: a lookup of a cluster name took >= ``STALL_S`` (2.5 s: musl's default retry interval;
  glibc's is 5 s) on the node: the race happens there, whatever the kernel and path tables say;
- **clean**: at least ``CLEAN_LOOKUPS`` lookups and not one took >= 1 s: lower confidence in "exposed"
  (the tables may still be right: the race is a matter of chance and load);
- otherwise (too few lookups, or slow but below the stall) nothing is concluded.

Only results with ``status == "ok"`` count. A node probed with both resolvers is judged on their sum.
"""

from __future__ import annotations

from typing import Any

STALL_S = 2.5
CLEAN_LOOKUPS = 1000
KEYS = (
    "lookups",
    "errors",
    "unfinished",
    "p50_s",
    "p90_s",
    "p99_s",
    "max_s",
    "ge_1s",
    "ge_2_5s",
    "ge_5s",
    "libc",
)


def attach(snapshot: dict[str, Any], run: dict[str, Any]) -> None:
    """Store a probe run in its cluster of ``snapshot`` (replacing an earlier one). Raises ValueError
    when the snapshot has no such cluster."""
    cl = next((c for c in snapshot.get("clusters") or [] if c.get("name") == run["cluster"]), None)
    if cl is None:
        raise ValueError(f"the snapshot has no cluster {run['cluster']!r} to add the probe results to")
    cl["probe"] = {
        "time": run["time"],
        "options": run.get("options"),
        "results": [
            {
                "node": r["node"],
                "resolver": r["resolver"],
                "status": r["status"],
                **{k: (r.get("report") or {}).get(k) for k in KEYS},
            }
            for r in run["results"]
        ],
    }


def node_measurements(snapshot: dict[str, Any]) -> list[dict[str, Any]]:
    """Per probed node: cluster, node, lookups, slow (>= 1 s), stalls (>= STALL_S) and ``measured``
    (``stalls`` | ``clean`` | None), from the snapshot's ``probe`` sections."""
    out = []
    for c in snapshot.get("clusters") or []:
        per: dict[str, dict[str, Any]] = {}
        for r in ((c.get("probe") or {}).get("results")) or []:
            if r.get("status") != "ok" or not isinstance(r.get("lookups"), int):
                continue
            row = per.setdefault(
                r["node"],
                {
                    "cluster": c["name"],
                    "node": r["node"],
                    "probe_lookups": 0,
                    "probe_slow": 0,
                    "probe_stalls": 0,
                },
            )
            row["probe_lookups"] += r["lookups"]
            row["probe_slow"] += int(r.get("ge_1s") or 0)
            row["probe_stalls"] += int(r.get("ge_2_5s") or 0)
        for row in per.values():
            if row["probe_stalls"] > 0:
                row["measured"] = "stalls"
            elif row["probe_lookups"] >= CLEAN_LOOKUPS and row["probe_slow"] == 0:
                row["measured"] = "clean"
            else:
                row["measured"] = None
            out.append(row)
    return out
