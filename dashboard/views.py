"""Pure table shaping for the pages: filters, caps, joins and counts over the engine's frames.

Nothing here scores anything: the engine's ``score``/``level``/``why`` columns are shown as they are.
Every function takes frames and returns a new frame (never mutates its input: the assessment is
cached and shared between reruns).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd

from dnsfleet.schema import LEVELS

# Rows sent to the browser per table; the rest is summarised in a note.
TABLE_LIMIT = 1000


@dataclass(frozen=True)
class Capped:
    frame: pd.DataFrame
    total: int

    @property
    def note(self) -> str | None:
        if self.total <= len(self.frame):
            return None
        return (
            f"Showing {len(self.frame):,} of {self.total:,} rows (highest risk first). "
            "Narrow the filters to see the others, or download the full CSV on the Reports page."
        )


def cap(df: pd.DataFrame, limit: int = TABLE_LIMIT) -> Capped:
    return Capped(df.head(limit), len(df))


def filter_in(df: pd.DataFrame, column: str, values: Iterable[str] | None) -> pd.DataFrame:
    """Rows whose ``column`` is one of ``values``; no filter when ``values`` is empty or None."""
    vals = list(values or [])
    if not vals:
        return df
    return df[df[column].fillna("unknown").astype(str).isin(vals)]


def search(df: pd.DataFrame, text: str, columns: Sequence[str]) -> pd.DataFrame:
    """Rows where any of ``columns`` contains ``text`` (case-insensitive, literal, not a regex)."""
    text = (text or "").strip()
    if not text:
        return df
    mask = pd.Series(False, index=df.index)
    for c in columns:
        mask |= df[c].astype("string").str.contains(text, case=False, regex=False).fillna(False).astype(bool)
    return df[mask]


def options(df: pd.DataFrame, column: str) -> list[str]:
    """Sorted distinct values of a column for a filter widget (NA shown as 'unknown')."""
    vals = df[column].fillna("unknown").astype(str).unique().tolist()
    if column == "level":
        return [lv for lv in LEVELS if lv in vals]
    return sorted(vals)


def cluster_url(cluster: str) -> str:
    """Relative URL of the cluster page with the cluster preselected (a shareable deep link)."""
    return f"cluster?cluster={quote(str(cluster), safe='')}"


def by_risk(df: pd.DataFrame) -> pd.DataFrame:
    """Highest score first, unscored rows last, then by the first text key column for stable order.
    Clusters follow the engine's ``rank`` (known exposure before unknown-only risk)."""
    if "rank" in df.columns:
        return df.sort_values(["rank", "cluster"], na_position="last")
    keys = [c for c in ("cluster", "namespace", "name", "node") if c in df.columns]
    return df.sort_values(["score", *keys], ascending=[False] + [True] * len(keys), na_position="last")


# --- fleet overview -------------------------------------------------------------------------------


def fleet_metrics(clusters: pd.DataFrame, workloads: pd.DataFrame) -> dict[str, Any]:
    """Headline numbers: counts, share of pods exposed, clusters at high risk, failed scans."""
    pods = int(clusters["pods"].fillna(0).sum())
    exposed = int(clusters["exposed_pods"].fillna(0).sum())
    return {
        "clusters": len(clusters),
        "clusters_failed": int((clusters["status"] == "failed").sum()),
        "nodes": int(clusters["nodes"].fillna(0).sum()),
        "workloads": len(workloads),
        "pods": pods,
        "exposed_pods": exposed,
        "exposed_share": (exposed / pods) if pods else None,
        "clusters_high": int((clusters["level"] == "high").sum()),
    }


def cluster_table(clusters: pd.DataFrame) -> pd.DataFrame:
    """The ranking table: one row per cluster (failed scans included, with their reason)."""
    df = by_risk(clusters)
    pods = df["pods"].astype("Float64")
    return pd.DataFrame(
        {
            "cluster": df["cluster"],
            "open": [cluster_url(c) for c in df["cluster"]],
            "level": df["level"].fillna("unknown"),
            "score": df["score"],
            "status": df["status"],
            "reason": df["reason"].fillna(""),
            "why": df["why"],
            "provider": df["provider"],
            "nodes": df["nodes"],
            "pods": df["pods"],
            "exposed_pods": df["exposed_pods"],
            "exposed_share": (df["exposed_pods"].astype("Float64") / pods.where(pods > 0)),
            "unknown_pods": df["unknown_pods"],
            "unknown_resolve": df["unknown_resolve"].fillna("") if "unknown_resolve" in df.columns else "",
            "server_version": df["server_version"],
            "collected_at": df["collected_at"],
        }
    ).reset_index(drop=True)


# --- cluster page ---------------------------------------------------------------------------------


def cluster_row(clusters: pd.DataFrame, cluster: str) -> pd.Series | None:
    rows = clusters[clusters["cluster"] == cluster]
    return None if rows.empty else rows.iloc[0]


def cluster_factors(factors: pd.DataFrame, cluster: str) -> pd.DataFrame:
    """The cluster-scope score contributions with their plain-language text, largest first."""
    df = factors[(factors["cluster"] == cluster) & (factors["scope"] == "cluster")]
    return df.sort_values("points", ascending=False, na_position="last")[["factor", "points", "text", "rule"]]


def cluster_recommendations(recs: pd.DataFrame, cluster: str) -> pd.DataFrame:
    """Recommendations for one cluster, ranked by the score points each removes."""
    df = recs[recs["cluster"] == cluster]
    df = df.sort_values(
        ["risk_removed", "pods", "target"], ascending=[False, False, True], na_position="last"
    )
    return df[
        ["mitigation", "scope", "target", "action", "risk_removed", "pods", "note", "rule", "finding_id"]
    ]


def dns_path_facts(dns_service: pd.DataFrame, cluster: str) -> list[tuple[str, str]]:
    """The DNS service path of a cluster as (label, value) pairs, 'not known' where the scan could not see."""
    rows = dns_service[dns_service["cluster"] == cluster]
    if rows.empty:
        return []
    r = rows.iloc[0]

    def show(v: object, yes: str = "yes", no: str = "no") -> str:
        if v is None or v is pd.NA or (isinstance(v, float) and pd.isna(v)):
            return "not known"
        if isinstance(v, bool | np.bool_):
            return yes if v else no
        return str(v)

    return [
        ("Path from pod to CoreDNS", show(r["path"])),
        ("Why", show(r["path_note"])),
        ("kube-proxy mode", show(r["kube_proxy_mode"])),
        ("CNI", show(r["cni"])),
        ("eBPF service load-balancing", show(r["ebpf_service_lb"])),
        (
            "NodeLocal DNSCache",
            show(r["nodelocal"], "present", "absent")
            + (f" ({r['nodelocal_ip']})" if pd.notna(r["nodelocal_ip"]) else ""),
        ),
        ("NFQUEUE policy agent on the DNS path", show(r["nfqueue_agent"])),
        ("kube-dns Service IP", show(r["cluster_ip"])),
        ("Ready kube-dns endpoints", show(r["ready_endpoints"])),
        ("CoreDNS version", show(r["coredns_version"])),
        ("CoreDNS replicas", show(r["coredns_replicas"])),
        ("Corefile plugins", show(r["corefile_plugins"]).replace(",", ", ")),
        ("Cluster domain", show(r["cluster_domain"])),
    ]


# --- nodes ----------------------------------------------------------------------------------------


def pool_summary(nodes: pd.DataFrame) -> pd.DataFrame:
    """One row per (cluster, node pool): nodes, ready nodes, kernels, nodes with race 1, 2 or 3 open."""
    if nodes.empty:
        return pd.DataFrame(
            columns=["cluster", "pool", "nodes", "ready_nodes", "kernels", "nodes_open", "max_score"]
        )
    df = nodes.assign(
        pool=nodes["pool"].fillna("(no pool label)"),
        any_open=(nodes[["race1", "race2", "race3"]] == "open").any(axis=1),
        is_ready=nodes["ready"].fillna(False).astype(bool),
        kernel=nodes["kernel_version"].fillna("unknown"),
    )
    out = (
        df.groupby(["cluster", "pool"], sort=True)
        .agg(
            nodes=("node", "size"),
            ready_nodes=("is_ready", "sum"),
            kernels=("kernel", lambda s: ", ".join(sorted(s.astype(str).unique())[:5])),
            nodes_open=("any_open", "sum"),
            max_score=("score", "max"),
        )
        .reset_index()
    )
    return out.sort_values(["nodes_open", "nodes"], ascending=False).reset_index(drop=True)


NODE_COLUMNS = [
    "cluster",
    "node",
    "pool",
    "level",
    "score",
    "kernel_version",
    "distro",
    "os_image",
    "race1",
    "race2",
    "race3",
    "nfqueue",
    "counters_exact",
    "ready",
    "nodelocal_ready",
    "pods",
    "exposed_pods",
    "instance_type",
    "zone",
    "why",
]


def conntrack_summary(conntrack: pd.DataFrame) -> pd.DataFrame:
    """Per cluster: nodes with conntrack stats collected, total insert_failed, and why not collected."""
    if conntrack.empty:
        return pd.DataFrame(
            columns=["cluster", "nodes_collected", "nodes", "insert_failed_increase", "not_collected"]
        )
    df = conntrack.assign(avail=conntrack["available"].fillna(False).astype(bool))
    out = (
        df.groupby("cluster", sort=True)
        .agg(
            nodes_collected=("avail", "sum"),
            nodes=("node", "size"),
            insert_failed_increase=("insert_failed_increase", lambda s: s.sum(min_count=1)),
            not_collected=("reason", lambda s: "; ".join(sorted(s.dropna().astype(str).unique())[:3])),
        )
        .reset_index()
    )
    return out


# --- workloads ------------------------------------------------------------------------------------


def workload_table(workloads: pd.DataFrame) -> pd.DataFrame:
    """Workloads with their recommended fix (decided once, by the engine), highest risk first."""
    df = by_risk(workloads)
    pods = df["pods"].astype("Float64")
    return pd.DataFrame(
        {
            "cluster": df["cluster"],
            "namespace": df["namespace"],
            "owner": df["kind"].astype(str) + "/" + df["name"].astype(str),
            "level": df["level"].fillna("unknown"),
            "score": df["score"],
            "pods": df["pods"],
            "exposed_pods": df["exposed_pods"],
            "exposure": df["exposed_pods"].astype("Float64") / pods.where(pods > 0),
            "image": df["image"],
            "resolver": df["resolver"],
            "dns_policy": df["dns_policy"],
            "dns_options": df["dns_options"],
            "ndots": df["ndots"],
            "stall_s": df["stall_s"],
            "recommended_fix": df["recommended_fix"].astype("string"),
            "why": df["why"],
            "workload_id": df["workload_id"],
        }
    ).reset_index(drop=True)
