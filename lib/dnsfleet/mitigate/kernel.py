"""Mitigation 3: kernel upgrades. They cannot be done through the Kubernetes API, so dnsfleet writes a
node upgrade plan: per node its pool, current kernel, the races still open (or unknown), the target
that closes them for the node's own distro and track (``rules/data/kernel_targets.csv``, every row with
its public source: "Ubuntu 18.04 generic >= 4.15.0-58", "AL2: AMI v20200312 or later / AL2023",
"RHEL 8: no public source; verify with a probe or move to RHEL 9"; never a bare mainline number) and a
drain order.

Which nodes are in the plan (rules K3/K4, K6, P3; decided in ``rules.path``): race 3 only when the
cluster has two or more ready kube-dns endpoints (or the count is unknown); the NFQUEUE path only when an NFQUEUE-based agent is on the
DNS path; clusters whose DNS goes through Cilium socket-LB (no netfilter DNAT on the DNS path) and
Windows nodes (verdict "not applicable") are left out. Open races -> "upgrade"; only unknown ones ->
"verify".

Drain order: pools with the highest node risk first; inside a pool, the riskiest node first; one node at
a time per pool so capacity and PodDisruptionBudgets hold.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from dnsfleet.rules import path as path_rules
from dnsfleet.rules.kernel import NOT_APPLICABLE, OPEN, UNKNOWN, Target, classify, kernel_target
from dnsfleet.textsafe import csv_bytes

__all__ = ["COLUMNS", "Target", "kernel_target", "upgrade_plan", "upgrade_plan_csv"]

COLUMNS = (
    "cluster",
    "drain_order",
    "pool",
    "node",
    "os_image",
    "current_kernel",
    "open_races",
    "target",
    "target_source",
    "per_race",
    "action",
    "note",
)
RACE_NAMES = {"race1": "race 1", "race2": "race 2", "race3": "race 3", "nfqueue": "NFQUEUE clash path"}


def _s(v: Any) -> str:
    return "" if v is None or (not isinstance(v, list | dict) and pd.isna(v)) else str(v)


def _relevant(race: str, dns: dict[str, Any]) -> bool:
    """Races that count on a node: decided once, in ``rules.path`` (K3/K4, K6)."""
    if race == "race3":
        return path_rules.race3_relevant(dns.get("ready_endpoints")) is not False
    if race == "nfqueue":
        return bool(path_rules.nfqueue_relevant(dns.get("nfqueue_agent")))
    return True


def _why(race: str, state: str, decisions: dict) -> str:
    d = decisions.get(race)
    if d is None or d.verdict != state:
        return f"{RACE_NAMES[race]}: {state}"
    return f"{RACE_NAMES[race]}: {state} ({d.rule}: {d.detail})"


def upgrade_plan(nodes: pd.DataFrame, dns_service: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per node that needs a kernel upgrade (or a check), in drain order per cluster."""
    dns_by_cluster: dict[str, dict[str, Any]] = {}
    if dns_service is not None and len(dns_service):
        dns_by_cluster = {str(r["cluster"]): dict(r) for _, r in dns_service.iterrows()}
    rows = []
    for _, n in nodes.iterrows():
        cluster = _s(n.get("cluster"))
        dns = dns_by_cluster.get(cluster, {})
        if _s(dns.get("path")) == "socket-lb":
            continue  # P3: DNS to the Service never meets netfilter DNAT; a kernel upgrade changes nothing
        kernel, os_image = _s(n.get("kernel_version")), _s(n.get("os_image"))
        states = {r: _s(n.get(r)) or UNKNOWN for r in RACE_NAMES}
        if all(st == NOT_APPLICABLE for st in states.values()):
            continue  # Windows: no netfilter conntrack (K8)
        open_races = [r for r, st in states.items() if st == OPEN and _relevant(r, dns)]
        unknown = [r for r, st in states.items() if st == UNKNOWN and _relevant(r, dns)]
        if not open_races and not unknown:
            continue
        listed = open_races or unknown
        # The target closes what is open; what is only unknown gets its own advice in the note.
        target = kernel_target(open_races or unknown, kernel or None, os_image or None)
        why = classify(kernel or None, os_image or None).decisions
        if open_races:
            action = "upgrade"
            note = ""
            if unknown:
                also = kernel_target(unknown, kernel or None, os_image or None).text
                note = f"also unknown: {', '.join(RACE_NAMES[r] for r in unknown)}: {also}"
        else:
            action = "verify"
            note = "no public source decides these races for this kernel (K8): verify, or move to the target"
        score = n.get("score")
        rows.append(
            {
                "cluster": cluster,
                "pool": _s(n.get("pool")) or "(no pool)",
                "node": _s(n.get("node")),
                "os_image": os_image,
                "current_kernel": kernel,
                "open_races": ", ".join(RACE_NAMES[r] for r in listed),
                "target": target.text,
                "target_source": target.source,
                "per_race": "; ".join(_why(r, states[r], why) for r in open_races + unknown),
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
    """The upgrade plan as CSV bytes, through the one CSV writer (formula-safe cells, UTF-8 with BOM)."""
    return csv_bytes(plan.reindex(columns=list(COLUMNS)))
