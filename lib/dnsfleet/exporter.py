"""Risk as Prometheus metrics, per cluster and per node (never per pod: the series count is bounded by
the fleet's clusters and nodes).

Cluster series (label ``cluster``): ``dnsfleet_cluster_risk_score``, ``dnsfleet_cluster_risk_level``
(one series per level, 1 for the current one), ``dnsfleet_cluster_exposed_pods``,
``dnsfleet_cluster_unknown_pods``, ``dnsfleet_cluster_applicable_pods``, ``dnsfleet_cluster_nodes``,
``dnsfleet_cluster_scan_status`` (one per status, 1 for the current one) and
``dnsfleet_cluster_last_scan_timestamp_seconds``.

Node series (labels ``cluster``, ``node``): ``dnsfleet_node_risk_score``, ``dnsfleet_node_exposed_pods``,
``dnsfleet_node_unknown_pods``, ``dnsfleet_node_dns_client_pods`` (pods on the node whose lookups go to
the cluster DNS service; the alerts join node-exporter's conntrack counters on it),
``dnsfleet_node_kernel_race`` (labels ``race`` and ``verdict``, value 1: four series per node) and
``dnsfleet_node_conntrack_insert_failed_increase`` (when metrics were collected).

An unknown value is no series at all (never 0). ``render`` gives the text exposition for a textfile
collector; ``serve`` answers ``/metrics`` over HTTP, re-reading its source every ``refresh`` seconds.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

if TYPE_CHECKING:
    from dnsfleet.engine import Assessment

LEVELS = ("high", "medium", "low", "unknown", "n/a")
STATUSES = ("ok", "partial", "failed")
RACES = ("race1", "race2", "race3", "nfqueue")


def _num(v: Any) -> float | None:
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if f != f else f


def _records(df: Any) -> list[dict[str, Any]]:
    return df.astype(object).where(df.notna(), None).to_dict(orient="records")


def dns_client_pods(a: Assessment) -> dict[tuple[str, str], int]:
    """Pods per (cluster, node) whose workload queries the cluster DNS service."""
    w = a.workloads
    uses = w.loc[w["uses_cluster_dns"].fillna(False).astype(bool), ["cluster", "workload_id"]]
    p = a.placements.merge(uses, on=["cluster", "workload_id"], how="inner")
    g = p.groupby(["cluster", "node"], sort=False)["pods"].sum()
    return {(str(c), str(n)): int(v) for (c, n), v in g.items()}


def families(a: Assessment) -> list[Metric]:
    """Every metric family of one assessment."""

    def gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, doc, labels=labels)

    c_score = gauge("dnsfleet_cluster_risk_score", "Cluster DNS race risk score, 0-100", ["cluster"])
    c_level = gauge(
        "dnsfleet_cluster_risk_level", "1 for the cluster's current risk level", ["cluster", "level"]
    )
    c_exposed = gauge("dnsfleet_cluster_exposed_pods", "Pods whose DNS path is exposed", ["cluster"])
    c_unknown = gauge("dnsfleet_cluster_unknown_pods", "Pods with an unknown gate condition", ["cluster"])
    c_appl = gauge("dnsfleet_cluster_applicable_pods", "Pods that use the cluster DNS service", ["cluster"])
    c_nodes = gauge("dnsfleet_cluster_nodes", "Nodes in the scan", ["cluster"])
    c_status = gauge("dnsfleet_cluster_scan_status", "1 for the last scan's status", ["cluster", "status"])
    c_time = gauge(
        "dnsfleet_cluster_last_scan_timestamp_seconds",
        "When the cluster was last scanned (Unix time)",
        ["cluster"],
    )
    for r in _records(a.clusters):
        c = str(r["cluster"])
        for fam, key in ((c_score, "score"), (c_exposed, "exposed_pods"), (c_unknown, "unknown_pods")):
            if (v := _num(r.get(key))) is not None:
                fam.add_metric([c], v)
        for fam, key in ((c_appl, "applicable_pods"), (c_nodes, "nodes")):
            if (v := _num(r.get(key))) is not None:
                fam.add_metric([c], v)
        level = str(r.get("level") or "unknown")
        for lv in LEVELS:
            c_level.add_metric([c, lv], 1.0 if lv == level else 0.0)
        status = str(r.get("status") or "failed")
        for s in STATUSES:
            c_status.add_metric([c, s], 1.0 if s == status else 0.0)
        t = r.get("collected_at")
        if isinstance(t, datetime):
            c_time.add_metric([c], t.timestamp())

    n_score = gauge("dnsfleet_node_risk_score", "Node DNS race risk score, 0-100", ["cluster", "node"])
    n_exposed = gauge("dnsfleet_node_exposed_pods", "Exposed pods on the node", ["cluster", "node"])
    n_unknown = gauge(
        "dnsfleet_node_unknown_pods", "Pods with an unknown gate condition", ["cluster", "node"]
    )
    n_clients = gauge(
        "dnsfleet_node_dns_client_pods",
        "Pods on the node whose lookups go to the cluster DNS",
        ["cluster", "node"],
    )
    n_race = gauge(
        "dnsfleet_node_kernel_race",
        "1 for the node kernel's verdict per race",
        ["cluster", "node", "race", "verdict"],
    )
    n_if = gauge(
        "dnsfleet_node_conntrack_insert_failed_increase",
        "conntrack insert_failed increase over the scan's metrics window",
        ["cluster", "node"],
    )
    clients = dns_client_pods(a)
    for r in _records(a.nodes):
        key = [str(r["cluster"]), str(r["node"])]
        for fam, col in ((n_score, "score"), (n_exposed, "exposed_pods"), (n_unknown, "unknown_pods")):
            if (v := _num(r.get(col))) is not None:
                fam.add_metric(key, v)
        n_clients.add_metric(key, float(clients.get((key[0], key[1]), 0)))
        for race in RACES:
            n_race.add_metric([*key, race, str(r.get(race) or "unknown")], 1.0)
    for r in _records(a.conntrack):
        if (v := _num(r.get("insert_failed_increase"))) is not None:
            n_if.add_metric([str(r["cluster"]), str(r["node"])], v)
    clusters = [c_score, c_level, c_exposed, c_unknown, c_appl, c_nodes, c_status, c_time]
    return [*clusters, n_score, n_exposed, n_unknown, n_clients, n_race, n_if]


class _Families(Collector):
    def __init__(self, get: Callable[[], list[Metric]]) -> None:
        self.get = get

    def collect(self) -> Iterator[Metric]:
        yield from self.get()


def render(a: Assessment) -> bytes:
    """The text exposition format of ``families(a)``."""
    reg = CollectorRegistry(auto_describe=False)
    fams = families(a)
    reg.register(_Families(lambda: fams))
    return generate_latest(reg)


def write_textfile(path: str | Path, data: bytes) -> Path:
    """Write atomically (temp file + rename), as node-exporter's textfile collector needs."""
    p = Path(path)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(p)
    return p


class Exporter:
    """Serves ``/metrics`` from ``source()`` (an assessment), refreshed at most every ``refresh`` s;
    a failing refresh keeps the last good text and counts in ``dnsfleet_exporter_refresh_errors``."""

    def __init__(self, source: Callable[[], Assessment], refresh: float = 60.0) -> None:
        self.source = source
        self.refresh = refresh
        self._lock = threading.Lock()
        self._text = b""
        self._at = 0.0
        self.errors = 0
        self.last_error: str | None = None

    def text(self) -> bytes:
        with self._lock:
            if not self._text or time.monotonic() - self._at >= self.refresh:
                try:
                    self._text = render(self.source())
                except Exception as e:  # keep serving the last good exposition; say why in a metric
                    self.errors += 1
                    self.last_error = " ".join(str(e).split())[:200] or type(e).__name__
                self._at = time.monotonic()
            extra = (
                "# HELP dnsfleet_exporter_refresh_errors Refreshes of the data that failed\n"
                "# TYPE dnsfleet_exporter_refresh_errors counter\n"
                f"dnsfleet_exporter_refresh_errors_total {self.errors}\n"
            ).encode()
            return self._text + extra

    def server(self, host: str, port: int) -> ThreadingHTTPServer:
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] != "/metrics":
                    self.send_error(404, "only /metrics")
                    return
                body = exporter.text()
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE_LATEST)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        return ThreadingHTTPServer((host, port), Handler)
