"""Mitigation 3: kernel upgrades. They cannot be done through the Kubernetes API, so dnsfleet writes a
node upgrade plan: per node its pool, current kernel, the races still open, the minimum kernel that
closes them (from the kernel fix table, ``dnsfleet.rules.kernel.minimum_fixed``) and a drain order.

Which races count on a node (rules K3/K4, K6, decided in ``rules.path``): race 3 only when the cluster
has two or more ready kube-dns endpoints (or the count is unknown); the NFQUEUE path only when an NFQUEUE-based agent is on the
DNS path. An unrecognised kernel is listed as "verify" with the mainline version that closes races 1-3.

Drain order: pools with the highest node risk first; inside a pool, the riskiest node first; one node at
a time per pool so capacity and PodDisruptionBudgets hold.
"""

from __future__ import annotations

import csv
import io
from typing import Any

import pandas as pd

from dnsfleet.rules import path as path_rules
from dnsfleet.rules.kernel import minimum_fixed, parse_version

COLUMNS = (
    "cluster",
    "drain_order",
    "pool",
    "node",
    "os_image",
    "current_kernel",
    "open_races",
    "minimum_kernel",
    "per_race",
    "action",
    "note",
)
RACE_NAMES = {"race1": "race 1", "race2": "race 2", "race3": "race 3", "nfqueue": "NFQUEUE clash path"}


def _s(v: Any) -> str:
    return "" if v is None or (not isinstance(v, list | dict) and pd.isna(v)) else str(v)


def _relevant(race: str, dns: dict[str, Any]) -> bool:
    """K4 and K6 as ``rules.path`` decides them; an unknown endpoint count keeps race 3 in the plan."""
    if race == "race3":
        return path_rules.race3_relevant(dns.get("ready_endpoints")) is not False
    if race == "nfqueue":
        return bool(path_rules.nfqueue_relevant(dns.get("nfqueue_agent")))
    return True


def _max_version(versions: list[str]) -> str:
    """The highest of several fix versions; a vendor-track entry ("4.15.0-1030 (ubuntu-azure)") and a
    mainline one cannot be compared, so mainline (any kernel at or above it) wins."""
    mainline = [v for v in versions if "(" not in v]
    pool = mainline or versions

    def key(v: str) -> tuple[int, ...]:
        return parse_version(v.split(" ")[0].replace("-", ".")) or ()

    return max(pool, key=key)


def upgrade_plan(nodes: pd.DataFrame, dns_service: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per node that needs a kernel upgrade (or a check), in drain order per cluster."""
    dns_by_cluster: dict[str, dict[str, Any]] = {}
    if dns_service is not None and len(dns_service):
        dns_by_cluster = {str(r["cluster"]): dict(r) for _, r in dns_service.iterrows()}
    rows = []
    for _, n in nodes.iterrows():
        cluster = _s(n.get("cluster"))
        dns = dns_by_cluster.get(cluster, {})
        kernel, os_image = _s(n.get("kernel_version")), _s(n.get("os_image"))
        states = {r: _s(n.get(r)) or "unknown" for r in RACE_NAMES}
        open_races = [r for r, st in states.items() if st == "open" and _relevant(r, dns)]
        unknown = [r for r, st in states.items() if st == "unknown" and _relevant(r, dns) and r != "nfqueue"]
        if not open_races and not unknown:
            continue
        if open_races:
            per = {r: minimum_fixed(r, kernel, os_image) or "" for r in open_races}
            action, note = "upgrade", ""
        else:
            per = {r: minimum_fixed(r, None) or "" for r in unknown}
            action = "verify"
            note = "kernel not recognised (K8): check its backports; the mainline version closes the races"
        score = n.get("score")
        rows.append(
            {
                "cluster": cluster,
                "pool": _s(n.get("pool")) or "(no pool)",
                "node": _s(n.get("node")),
                "os_image": os_image,
                "current_kernel": kernel,
                "open_races": ", ".join(RACE_NAMES[r] for r in (open_races or unknown)),
                "minimum_kernel": _max_version([v for v in per.values() if v]),
                "per_race": "; ".join(f"{RACE_NAMES[r]}: {v}" for r, v in per.items()),
                "action": action,
                "note": note,
                "_score": float(score) if score is not None and not pd.isna(score) else 0.0,
            }
        )
    if not rows:
        return pd.DataFrame(columns=list(COLUMNS))
    df = pd.DataFrame(rows)
    pool_risk = df.groupby(["cluster", "pool"])["_score"].transform("max")
    df = df.assign(_pool_risk=pool_risk).sort_values(
        ["cluster", "_pool_risk", "pool", "_score", "node"], ascending=[True, False, True, False, True]
    )
    df["drain_order"] = df.groupby("cluster").cumcount() + 1
    return df[list(COLUMNS)].reset_index(drop=True)


def upgrade_plan_csv(plan: pd.DataFrame) -> bytes:
    """The upgrade plan as CSV bytes (UTF-8, header row)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for _, r in plan.iterrows():
        w.writerow([r[c] for c in COLUMNS])
    return buf.getvalue().encode()
