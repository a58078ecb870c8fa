"""CSV reports a person can open in a spreadsheet: clusters, nodes, workloads, recommendations.

Every row carries a stable ``finding_id``, the ``check_id`` of the report, the cluster, the scan time
and the tool version. Column names carry their unit. Written by ``dnsfleet.textsafe.csv_bytes``, the
one CSV writer: text cells that a spreadsheet would run as a formula (starting with ``= + - @``, tab,
CR or LF) are prefixed with ``'``; UTF-8 with a byte-order mark (so Excel detects the encoding) and
CRLF line ends (RFC 4180). A snapshot where every cluster failed still gives the four files (the
clusters with their reasons, the others with a header only).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from dnsfleet import __version__
from dnsfleet.engine import Assessment
from dnsfleet.textsafe import FORMULA_START, csv_bytes, neutralise

__all__ = ["FORMULA_START", "REPORTS", "csv_reports", "neutralise", "report_frames", "to_csv_bytes"]


# report -> (check_id, id prefix, key columns for the finding id, [(source column, csv column)])
REPORTS: dict[str, tuple[str, str, list[str], list[tuple[str, str]]]] = {
    "clusters.csv": (
        "DNSF-CLUSTER-RISK",
        "DNSF-C",
        ["cluster"],
        [
            ("status", "scan_status"),
            ("reason", "scan_reason"),
            ("missing", "unreadable_resources"),
            ("provider", "provider"),
            ("server_version", "server_version"),
            ("nodes", "nodes_count"),
            ("pods", "pods_count"),
            ("workloads", "workloads_count"),
            ("score", "risk_score_0_100"),
            ("level", "risk_level"),
            ("exposed_pods", "exposed_pods_count"),
            ("unknown_pods", "unknown_pods_count"),
            ("kernel_pts", "kernel_points"),
            ("service_path_pts", "service_path_points"),
            ("resolver_pts", "resolver_points"),
            ("ndots_pts", "ndots_points"),
            ("query_rate_pts", "query_rate_points"),
            ("evidence_pts", "evidence_points"),
            ("kube_proxy_mode", "kube_proxy_mode"),
            ("path", "dns_path"),
            ("cni", "cni"),
            ("nodelocal", "nodelocal_dnscache"),
            ("ready_endpoints", "kube_dns_ready_endpoints_count"),
            ("coredns_version", "coredns_version"),
            ("qps", "coredns_queries_per_second"),
            ("p99_ms", "coredns_p99_latency_ms"),
            ("why", "why"),
        ],
    ),
    "nodes.csv": (
        "DNSF-NODE-KERNEL",
        "DNSF-N",
        ["cluster", "node"],
        [
            ("node", "node"),
            ("pool", "node_pool"),
            ("os_image", "os_image"),
            ("kernel_version", "kernel_version"),
            ("distro", "kernel_family"),
            ("kernel_base", "kernel_base_version"),
            ("race1", "race1_status"),
            ("race2", "race2_status"),
            ("race3", "race3_status"),
            ("nfqueue", "nfqueue_status"),
            ("counters_exact", "insert_failed_counts_only_drops"),
            ("pods", "pods_count"),
            ("score", "risk_score_0_100"),
            ("level", "risk_level"),
            ("exposed_pods", "exposed_pods_count"),
            ("insert_failed_increase", "conntrack_insert_failed_increase_count"),
            ("drop_increase", "conntrack_drop_increase_count"),
            ("window_s", "metrics_window_seconds"),
            ("why", "why"),
            ("kernel_source", "kernel_rule_sources"),
        ],
    ),
    "workloads.csv": (
        "DNSF-WORKLOAD-DNS",
        "DNSF-W",
        ["workload_id"],
        [
            ("namespace", "namespace"),
            ("kind", "kind"),
            ("name", "name"),
            ("pods", "pods_count"),
            ("nodes", "nodes_count"),
            ("image", "image"),
            ("resolver", "resolver"),
            ("resolver_source", "resolver_source"),
            ("dns_policy", "dns_policy"),
            ("host_network", "host_network"),
            ("dns_options", "dns_options"),
            ("ndots", "ndots"),
            ("timeout_s", "timeout_seconds"),
            ("attempts", "attempts_count"),
            ("stall_s", "stall_per_lost_query_seconds"),
            ("sends_parallel_pair", "sends_parallel_a_aaaa"),
            ("score", "risk_score_0_100"),
            ("level", "risk_level"),
            ("exposed_pods", "exposed_pods_count"),
            ("recommended_fix", "recommended_fix"),
            ("why", "why"),
        ],
    ),
    "recommendations.csv": (
        "DNSF-RECOMMENDATION",
        "",
        [],
        [
            ("scope", "scope"),
            ("target", "target"),
            ("mitigation", "mitigation"),
            ("action", "action"),
            ("risk_removed", "risk_removed_points"),
            ("pods", "pods_protected_count"),
            ("rule", "rules"),
            ("note", "note"),
        ],
    ),
}


def _fid(prefix: str, keys: pd.DataFrame) -> pd.Series:
    if keys.empty:  # agg over no rows would give a frame, not a series
        return pd.Series([], index=keys.index, dtype="string")
    joined = keys.astype("string").fillna("").agg("|".join, axis=1)
    return prefix + "-" + joined.map(lambda s: hashlib.sha1(s.encode()).hexdigest()[:10])


def report_frames(a: Assessment) -> dict[str, pd.DataFrame]:
    """The report tables as frames (before CSV encoding)."""
    generated = a.meta.get("generated_at")
    sources = {
        "clusters.csv": a.clusters.merge(
            a.dns_service.drop(columns=["path_note"]), on="cluster", how="left"
        ).merge(a.coredns_metrics[["cluster", "qps", "p99_ms"]], on="cluster", how="left"),
        "nodes.csv": a.nodes.merge(
            a.conntrack[["cluster", "node", "insert_failed_increase", "drop_increase", "window_s"]],
            on=["cluster", "node"],
            how="left",
        ),
        "workloads.csv": a.workloads,
        "recommendations.csv": a.recommendations,
    }
    scanned = a.clusters.set_index("cluster")["collected_at"]
    out = {}
    for name, (check, prefix, keys, cols) in REPORTS.items():
        src = sources[name]
        df = pd.DataFrame(index=src.index)
        df["finding_id"] = src["finding_id"] if not keys else _fid(prefix, src[keys])
        df["check_id"] = check
        df["cluster"] = src["cluster"]
        ts = src["cluster"].map(scanned)
        ts = pd.to_datetime(ts, utc=True).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        df["scanned_at_utc"] = ts.fillna(generated or "")
        df["tool_version"] = __version__
        for s, c in cols:
            df[c] = src[s] if s in src.columns else pd.NA
        out[name] = df.reset_index(drop=True)
    return out


def to_csv_bytes(df: pd.DataFrame) -> bytes:
    """``df`` through the one CSV writer (``dnsfleet.textsafe.csv_bytes``)."""
    return csv_bytes(df)


def csv_reports(a: Assessment) -> dict[str, bytes]:
    """Each report CSV as bytes, keyed by file name."""
    return {name: to_csv_bytes(df) for name, df in report_frames(a).items()}


def write_reports(a: Assessment, out_dir: str | Path) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in csv_reports(a).items():
        p = out / name
        p.write_bytes(data)
        paths.append(p)
    return paths
