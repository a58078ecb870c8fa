"""Prometheus alerting rules for the DNS race, on node-exporter's conntrack counters and the exporter's
series (``dnsfleet.exporter``).

- ``DNSFleetConntrackInsertFailed``: ``node_nf_conntrack_stat_insert_failed`` grows on a node that
  carries DNS client pods (``dnsfleet_node_dns_client_pods > 0``): the race's own counter, where it
  can hurt lookups.
- ``DNSFleetConntrackMetricsAbsent``: a node with DNS client pods has no conntrack counter at all
  (node-exporter missing there, or its conntrack collector off): the evidence is blind.
- ``DNSFleetRiskHigh``: a cluster's risk level has been ``high`` for longer than a window (24 h).
- ``DNSFleetScanStale``: a cluster's last scan is older than a limit (the collector stopped).

node-exporter's series name the node and the cluster with labels that differ between setups;
``node_label`` / ``cluster_label`` name them (an ``instance`` of ``host:port`` loses its port), and the
rules rename them to ``node`` / ``cluster`` before joining on the exporter's series.
"""

from __future__ import annotations

import re
from typing import Any

LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
DURATION_RE = re.compile(r"^[0-9]+[smhdw]$")


class AlertsError(ValueError):
    """Bad alert settings; one line."""


def _conntrack(metric: str, node_label: str, cluster_label: str, window: str | None = None) -> str:
    expr = f"increase({metric}[{window}])" if window else metric
    if node_label != "node":
        expr = f'label_replace({expr}, "node", "$1", "{node_label}", "([^:]+)(?::[0-9]+)?")'
    if cluster_label != "cluster":
        expr = f'label_replace({expr}, "cluster", "$1", "{cluster_label}", "(.+)")'
    return expr


def rules(
    *,
    node_label: str = "node",
    cluster_label: str = "cluster",
    rate_window: str = "15m",
    high_for: str = "24h",
    stale_after_s: int = 3 * 3600,
) -> dict[str, Any]:
    """A Prometheus rules file (``groups:``) as a dict."""
    for name, v in (("node label", node_label), ("cluster label", cluster_label)):
        if not LABEL_RE.match(v):
            raise AlertsError(f"{name} {v!r} is not a Prometheus label name")
    for name, v in (("rate window", rate_window), ("high-for window", high_for)):
        if not DURATION_RE.match(v):
            raise AlertsError(f"{name} {v!r} is not a duration like 15m or 24h")
    if stale_after_s <= 0:
        raise AlertsError("stale-after must be positive")
    metric = "node_nf_conntrack_stat_insert_failed"
    grown = f"sum by (cluster, node) ({_conntrack(metric, node_label, cluster_label, rate_window)}) > 0"
    present = f"count by (cluster, node) ({_conntrack(metric, node_label, cluster_label)})"
    clients = "dnsfleet_node_dns_client_pods > 0"
    return {
        "groups": [
            {
                "name": "dnsfleet",
                "rules": [
                    {
                        "alert": "DNSFleetConntrackInsertFailed",
                        "expr": f"({grown}) and on (cluster, node) ({clients})",
                        "for": "5m",
                        "labels": {"severity": "warning"},
                        "annotations": {
                            "summary": "conntrack insert_failed grows on {{ $labels.cluster }}/{{ $labels.node }}, "
                            "which runs DNS clients",
                            "description": "{{ $value }} insert failures in "
                            + rate_window
                            + ": DNS queries lost to the conntrack/DNAT race wait a resolver timeout "
                            "(5 s glibc, 2.5 s musl). See dnsfleet's recommendations for this node.",
                        },
                    },
                    {
                        "alert": "DNSFleetConntrackMetricsAbsent",
                        "expr": f"({clients}) unless on (cluster, node) ({present})",
                        "for": "30m",
                        "labels": {"severity": "info"},
                        "annotations": {
                            "summary": "no conntrack counters from {{ $labels.cluster }}/{{ $labels.node }}",
                            "description": "The node runs DNS client pods but no node_nf_conntrack_stat_insert_failed "
                            "series exists for it: node-exporter is missing there or its conntrack collector is off, "
                            "so the race's evidence is unknown.",
                        },
                    },
                    {
                        "alert": "DNSFleetRiskHigh",
                        "expr": 'dnsfleet_cluster_risk_level{level="high"} == 1',
                        "for": high_for,
                        "labels": {"severity": "warning"},
                        "annotations": {
                            "summary": "DNS race risk of {{ $labels.cluster }} has been high for " + high_for,
                            "description": "Apply the mitigations dnsfleet recommends (resolver options, "
                            "NodeLocal DNSCache or a kernel upgrade).",
                        },
                    },
                    {
                        "alert": "DNSFleetScanStale",
                        "expr": f"time() - dnsfleet_cluster_last_scan_timestamp_seconds > {stale_after_s}",
                        "for": "15m",
                        "labels": {"severity": "info"},
                        "annotations": {
                            "summary": "{{ $labels.cluster }} was last scanned {{ $value | humanizeDuration }} ago",
                            "description": "The in-cluster collector or the scan job stopped writing.",
                        },
                    },
                ],
            }
        ]
    }


def prometheus_rule(
    spec: dict[str, Any], name: str = "dnsfleet", namespace: str = "monitoring"
) -> dict[str, Any]:
    """The same groups as a Prometheus Operator ``PrometheusRule``."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/name": "dnsfleet"}},
        "spec": spec,
    }
