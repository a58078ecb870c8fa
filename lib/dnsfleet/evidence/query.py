"""Range queries for evidence over time: per node and per cluster, over a chosen window.

``fetch(client, cluster, start, end)`` returns the snapshot's ``evidence`` section for one cluster
(``docs/snapshot.md``):

- per node, from node_exporter (``node_nf_conntrack_stat_insert_failed`` and ``..._drop``, gauges that
  only grow until a reboot): the increase per step, resets and gaps handled in ``series.increases``;
- per cluster: the sum over nodes of those increases, and from CoreDNS (names by version, as the scan
  picks them): request rate, SERVFAIL and REFUSED shares of responses, latency p50/p99.

``clash_resolve`` (kernels >= 5.10) has no node_exporter metric (``collector/conntrack_linux.go`` reads
no such column), so it is recorded as not collected with that reason, never as 0.

At most ``MAX_POINTS`` steps per series (the step grows with the window) and ``MAX_NODES`` nodes (those
with the largest insert_failed increase are kept, the count of the others is noted): the section's size
is bounded whatever the window and the fleet.
"""

from __future__ import annotations

import time as _time
from typing import Any

from dnsfleet.collect.prom import (
    NODE_LABELS,
    PromClient,
    PromError,
    label_host,
    names_for,
    node_of,
    version_tuple,
)
from dnsfleet.collect.promclient import on_grid
from dnsfleet.evidence import series as S
from dnsfleet.rules.coredns import metrics_bugs

MAX_NODES = 500
# Prometheus refuses a range query of more than 11,000 points per series; verify asks for one point a
# minute up to this many (longer windows get a coarser step).
MAX_RANGE_POINTS = 10_000


def fine_points(start: float, end: float) -> int:
    """Points for one sample a minute over [start, end], within what Prometheus answers."""
    return min(MAX_RANGE_POINTS, int((end - start) // 60) + 2)


COUNTERS = {"insert_failed": "node_nf_conntrack_stat_insert_failed", "drop": "node_nf_conntrack_stat_drop"}
CLASH_RESOLVE_NOTE = (
    "clash_resolve not collected: node_exporter exports no clash_resolve counter "
    "(prometheus/node_exporter collector/conntrack_linux.go)"
)
FORMAT = "dnsfleet.evidence/1"


def _node_name(labels: dict[str, str], nodes: set[str], addresses: dict[str, str]) -> str | None:
    if nodes:
        return node_of(labels, nodes, addresses)
    for key in NODE_LABELS:  # no node list: the label itself names the node
        val = labels.get(key)
        if val:
            return label_host(key, val)
    return None


def node_counters(
    cl: PromClient,
    sel: str,
    metric: str,
    start: float,
    step: int,
    n: int,
    nodes: set[str] | None = None,
    addresses: dict[str, str] | None = None,
) -> tuple[dict[str, list[float | None]], int]:
    """Raw counter samples per node on ``n`` steps from ``start`` (the last sample within Prometheus's
    lookback at each step; a longer gap leaves None), and how many series matched no node."""
    out: dict[str, list[float | None]] = {}
    unmatched = 0
    end = start + step * (n - 1)
    for labels, points in cl.query_range(f"{metric}{{{sel}}}", start, end, step):
        node = _node_name(labels, nodes or set(), addresses or {})
        if node is None:
            unmatched += 1
            continue
        g = on_grid(points, start, step, n)
        if node in out:  # two exporters for one node: keep the larger reading per step
            out[node] = [
                b if a is None else a if b is None else max(a, b) for a, b in zip(out[node], g, strict=True)
            ]
        else:
            out[node] = g
    return out, unmatched


def coredns_names(cl: PromClient, sel: str, at: float, span: float, version: str | None) -> Any:
    """The CoreDNS metric names this cluster's Prometheus has (None when it has no CoreDNS series)."""
    for cand in names_for(version):
        if cl.query(f"count(last_over_time({cand.requests}{{{sel}}}[{round(span)}s]))", at):
            return cand
    return None


def coredns_series(
    cl: PromClient, sel: str, start: float, step: int, n: int, version: str | None = None
) -> tuple[dict[str, list[float | None]], list[str]]:
    """CoreDNS request rate, response rates (all, SERVFAIL, REFUSED) and latency p50/p99 (ms) per step."""
    end = start + step * (n - 1)
    notes: list[str] = []
    if version is None:
        built = cl.query(
            f"count by (version) (last_over_time(coredns_build_info{{{sel}}}[{round(end - start + step)}s]))",
            end,
        )
        found = [lbl.get("version") for lbl, _ in built if lbl.get("version")]
        version = max(found, key=lambda v: version_tuple(v) or (0, 0, 0)) if found else None
    names = coredns_names(cl, sel, end, end - start + step, version)
    if names is None:
        return {}, [f"no CoreDNS series for {sel} in the window"]
    rw = f"{max(300, 2 * step)}s"
    exprs = {
        **names.rate_exprs(sel, rw),
        "responses": (f"sum(rate({names.responses}{{{sel}}}[{rw}]))", 1.0),
        "servfail": (f'sum(rate({names.responses}{{{sel},rcode="SERVFAIL"}}[{rw}])) or vector(0)', 1.0),
        "refused": (f'sum(rate({names.responses}{{{sel},rcode="REFUSED"}}[{rw}])) or vector(0)', 1.0),
    }
    out: dict[str, list[float | None]] = {}
    for key, (expr, scale) in exprs.items():
        out[key] = cl.range_grid(expr, start, end, step, n, scale) or [None] * n
    # "or vector(0)" also fills steps without any CoreDNS data: a share needs responses at that step
    for key in ("servfail", "refused"):
        out[key] = [v if r is not None else None for v, r in zip(out[key], out["responses"], strict=True)]
    bugs = metrics_bugs(version, "rcode")
    if bugs:
        for key in ("servfail", "refused"):
            out[key] = [None] * n
        notes.append(bugs[0].message.format(version=version) + f" ({bugs[0].source})")
    return out, notes


def shares(part: list[float | None], whole: list[float | None]) -> list[float | None]:
    return [None if p is None or not w else p / w for p, w in zip(part, whole, strict=True)]


def fetch(
    cl: PromClient,
    cluster: str,
    start: float,
    end: float,
    *,
    node_names: list[str] | None = None,
    node_addresses: dict[str, str] | None = None,
    coredns_version: str | None = None,
    max_points: int = S.MAX_POINTS,
    max_nodes: int = MAX_NODES,
) -> dict[str, Any]:
    """The ``evidence`` section of one cluster for [start, end] (epoch seconds)."""
    step = S.step_for(start, end, max_points)
    n = int((end - start) // step) + 1
    sel = cl.src.selector(cluster)
    out: dict[str, Any] = {
        "format": FORMAT,
        "source": "prometheus",
        "start": float(start),
        "end": float(start + step * (n - 1)),
        "step": step,
        "note": None,
        "cluster": {},
        "nodes": {},
        "nodes_dropped": 0,
        "clash_resolve": CLASH_RESOLVE_NOTE,
    }
    notes: list[str] = []
    try:
        per_node: dict[str, dict[str, list[float | None]]] = {}
        for key, metric in COUNTERS.items():
            # one step earlier, so the first step has an increase too
            raw, unmatched = node_counters(
                cl, sel, metric, start - step, step, n + 1, set(node_names or []), node_addresses
            )
            for node, values in raw.items():
                per_node.setdefault(node, {})[key] = S.increases(values)[1:]
            if unmatched:
                notes.append(f"{unmatched} {metric} series carry no label naming a node")
        if not per_node:
            notes.append(f"no conntrack series for {sel} (node_exporter >= 1.2.0 on the host network)")
        ranked = sorted(per_node, key=lambda k: -sum(v or 0 for v in per_node[k].get("insert_failed") or []))
        kept = ranked[:max_nodes]
        out["nodes_dropped"] = len(ranked) - len(kept)
        if out["nodes_dropped"]:
            notes.append(f"{out['nodes_dropped']} node(s) with the smallest insert_failed increase not kept")
        for key in COUNTERS:
            out["cluster"][key] = S.compact(
                S.sum_series([per_node[k][key] for k in per_node if key in per_node[k]]) or [None] * n
            )
        out["cluster"]["nodes_reporting"] = [
            sum(1 for k in per_node if (per_node[k].get("insert_failed") or [None] * n)[i] is not None)
            for i in range(n)
        ]
        out["nodes"] = {k: {key: S.compact(v) for key, v in per_node[k].items()} for k in kept}
        dns, dns_notes = coredns_series(cl, sel, start, step, n, coredns_version)
        notes.extend(dns_notes)
        if dns:
            out["cluster"]["qps"] = S.compact(dns["qps"])
            out["cluster"]["servfail_share"] = S.compact(shares(dns["servfail"], dns["responses"]))
            out["cluster"]["refused_share"] = S.compact(shares(dns["refused"], dns["responses"]))
            out["cluster"]["p50_ms"] = S.compact(dns["p50_ms"])
            out["cluster"]["p99_ms"] = S.compact(dns["p99_ms"])
    except PromError as e:
        out["source"] = None
        out["cluster"], out["nodes"] = {}, {}
        notes = [f"not collected: {e}"]
    if cl.warnings:
        notes.append(f"Prometheus warned, results may be partial: {cl.warnings[0]}")
    out["note"] = "; ".join(notes) or None
    return out


def window(since: float | None, until: float | None, default_s: float = 3 * 3600.0) -> tuple[float, float]:
    """[start, end] from optional bounds (epoch seconds): the end defaults to now, the start to
    ``default_s`` before the end."""
    end = float(until) if until is not None else _time.time()
    start = float(since) if since is not None else end - default_s
    if not end > start:
        raise ValueError("--since must be before --until")
    return start, end
