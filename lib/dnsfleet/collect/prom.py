"""CoreDNS and node conntrack metrics from a Prometheus-compatible HTTP API.

Works with Prometheus, Thanos, Mimir and VictoriaMetrics (``/api/v1/query`` and ``/api/v1/query_range``,
form-encoded POST). A label (default ``cluster``) names the cluster; its value is the cluster's name.

Metric names depend on the CoreDNS version, read from ``coredns_build_info`` (facts §5.2, rule D3):
>= 1.7 ``coredns_dns_requests_total`` / ``coredns_dns_responses_total``, < 1.7 the ``*_count_total``
names; upstream latency >= 1.11 ``coredns_proxy_request_duration_seconds{proxy_name="forward"}``,
1.7-1.10 ``coredns_forward_request_duration_seconds``. Series that are absent come back as ``null``
with a note saying so, never as 0.

Talking to Prometheus (sources, credentials, deadlines, byte caps) is ``collect.promclient``; its
names are re-exported here for the callers that read metrics.
"""

from __future__ import annotations

import math
import re
import time as _time
from dataclasses import dataclass
from typing import Any

from dnsfleet.collect.promclient import (
    PromClient,
    PromError,
    PromSource,
    credentials,
    display_url,
    on_grid,
    operator_credentials,
    split_userinfo,
)
from dnsfleet.snapshot_schema import metrics_record

__all__ = [
    "NODE_LABELS",
    "PromClient",
    "PromError",
    "PromSource",
    "collect_metrics",
    "credentials",
    "display_url",
    "operator_credentials",
    "split_userinfo",
]

# Label names that may hold the node name on node_exporter series, in order of preference.
NODE_LABELS = ("node", "kubernetes_node", "nodename", "instance")


def version_tuple(v: str | None) -> tuple[int, int, int] | None:
    m = re.match(r"v?(\d+)\.(\d+)(?:\.(\d+))?", v or "")
    return (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)) if m else None


@dataclass(frozen=True)
class CoreDNSNames:
    requests: str
    responses: str
    duration: str = "coredns_dns_request_duration_seconds"
    forward: str = "coredns_proxy_request_duration_seconds"
    forward_filter: str = 'proxy_name="forward"'

    def rate_exprs(self, sel: str, rw: str) -> dict[str, tuple[str, float]]:
        """PromQL, with the scale to apply, for the request rate and latency p50/p99 (ms) of the series
        ``sel`` picks, rates over ``rw``."""
        dur = f"sum by (le) (rate({self.duration}_bucket{{{sel}}}[{rw}]))"
        return {
            "qps": (f"sum(rate({self.requests}{{{sel}}}[{rw}]))", 1.0),
            "p50_ms": (f"histogram_quantile(0.5, {dur})", 1000.0),
            "p99_ms": (f"histogram_quantile(0.99, {dur})", 1000.0),
        }


NEW_NAMES = CoreDNSNames("coredns_dns_requests_total", "coredns_dns_responses_total")
OLD_NAMES = CoreDNSNames(
    "coredns_dns_request_count_total",
    "coredns_dns_response_rcode_count_total",
    forward="coredns_forward_request_duration_seconds",
    forward_filter="",
)


def names_for(version: str | None) -> list[CoreDNSNames]:
    """Candidate metric names for a CoreDNS version, best guess first (unknown: try both)."""
    v = version_tuple(version)
    fwd_old = CoreDNSNames(
        NEW_NAMES.requests,
        NEW_NAMES.responses,
        forward="coredns_forward_request_duration_seconds",
        forward_filter="",
    )
    if v is None:
        return [NEW_NAMES, fwd_old, OLD_NAMES]
    if v < (1, 7, 0):
        return [OLD_NAMES]
    if v < (1, 11, 0):
        return [fwd_old]
    return [NEW_NAMES]


def share_over(buckets: dict[float, float], threshold: float = 1.0) -> float | None:
    """Share of observations above ``threshold`` s from cumulative buckets {le: count}.

    Uses the smallest bucket bound >= threshold (CoreDNS's bounds are 0.25 ms * 2^n, so 1.024 s).
    """
    total = buckets.get(math.inf)
    if not total:
        return None
    bounds = sorted(le for le in buckets if le >= threshold and le != math.inf)
    if not bounds:
        return None
    return max(0.0, min(1.0, 1.0 - buckets[bounds[0]] / total))


def rcode_shares(by_rcode: dict[str, float]) -> tuple[float | None, float | None]:
    total = sum(v for v in by_rcode.values() if v is not None)
    if not by_rcode or total <= 0:
        return None, None
    return by_rcode.get("SERVFAIL", 0.0) / total, by_rcode.get("NXDOMAIN", 0.0) / total


def _le(v: str | None) -> float | None:
    if v in ("+Inf", "Inf", "inf"):
        return math.inf
    try:
        return float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _ms(v: float | None) -> float | None:
    return None if v is None else v * 1000.0


def label_host(key: str, value: str) -> str:
    """The host a node label names: ``instance`` is ``host:port`` (an IPv6 address, with more colons, is
    kept whole); the other labels are the node name."""
    return value.rsplit(":", 1)[0] if key == "instance" and value.count(":") == 1 else value


def node_of(labels: dict[str, str], nodes: set[str], addresses: dict[str, str]) -> str | None:
    for key in NODE_LABELS:
        val = labels.get(key)
        if not val:
            continue
        host = label_host(key, val)
        if host in nodes:
            return host
        if host in addresses:
            return addresses[host]
    return None


def collect_metrics(
    src: PromSource,
    cluster: str,
    node_names: list[str] | None = None,
    node_addresses: dict[str, str] | None = None,
    coredns_version: str | None = None,
    client: PromClient | None = None,
) -> dict[str, Any]:
    """The snapshot ``metrics`` section for one cluster."""
    cl = client or PromClient(src)
    at = src.time if src.time is not None else _time.time()
    w = f"{round(src.window_s)}s"
    sel = src.selector(cluster)
    out = metrics_record(source="prometheus", window_s=float(src.window_s))
    notes: list[str] = []
    try:
        built = cl.query(f"count by (version) (coredns_build_info{{{sel}}})", at)
        versions = [lbl.get("version") for lbl, _ in built if lbl.get("version")]
        version = max(versions, key=lambda v: version_tuple(v) or (0, 0, 0)) if versions else None
        coredns, series = _coredns(cl, src, sel, w, at, version or coredns_version, notes)
        if coredns is not None:
            coredns["version"] = (version or coredns_version or "").lstrip("v") or None
        out["coredns"], out["coredns_series"] = coredns, series
        if coredns is None:
            coredns_names = sorted({n for c in names_for(None) for n in (c.requests, "coredns_build_info")})
            stale = stale_note(cl, "CoreDNS", coredns_names, sel, at, src.window_s)
            notes.append(stale or f"no CoreDNS series for {sel} in Prometheus")
        out["conntrack"] = _conntrack(cl, src, sel, w, at, set(node_names or []), node_addresses or {})
        if out["conntrack"]["reason"]:
            notes.append(out["conntrack"]["reason"])
    except PromError as e:
        out["source"] = None
        out["window_s"] = None
        out["coredns"] = out["coredns_series"] = None
        out["conntrack"] = {"reason": f"not collected: {e}", "nodes": {}}
        notes = [f"not collected: {e}"]
    if cl.warnings:
        notes.append(f"Prometheus warned, results may be partial: {cl.warnings[0]}")
    if cl.malformed:
        notes.append(f"{cl.malformed} malformed sample(s) in Prometheus answers skipped")
    out["note"] = "; ".join(notes) or None
    return out


# How far back a query that found nothing looks for the newest sample, and at what resolution (a
# subquery: timestamp() of the last sample in each step's 5-minute lookback, maximised).
STALE_LOOKBACK_S = 7 * 86400
STALE_STEP_S = 300


def newest_sample(cl: PromClient, metrics: list[str], sel: str, at: float) -> float | None:
    """Epoch seconds of the newest sample of any of ``metrics`` matching ``sel`` in the
    ``STALE_LOOKBACK_S`` before ``at``; None when there is none."""
    names = "|".join(re.escape(m) for m in metrics)
    expr = (
        f'max(max_over_time(timestamp({{__name__=~"{names}",{sel}}})[{STALE_LOOKBACK_S}s:{STALE_STEP_S}s]))'
    )
    return _scalar(cl.query(expr, at))


def stale_note(
    cl: PromClient, what: str, metrics: list[str], sel: str, at: float, window_s: float, brief: bool = False
) -> str | None:
    """Why queries at ``at`` found no series, when Prometheus has them at another time: "Prometheus
    reachable; newest CoreDNS sample at T, outside the window ...". None when it has none in the week
    before ``at`` nor up to now (the metrics are simply not there). ``brief``: without the window and
    the hint (a second note of the same scan)."""
    newest = newest_sample(cl, metrics, sel, at)
    now = _time.time()
    hint = "query an earlier time (--prometheus-time, DNSFLEET_PROMETHEUS_TIME or the dashboard's time range)"
    if newest is not None and brief:  # the window and what to do were said in the CoreDNS note
        return f"Prometheus reachable; newest {what} sample at {_utc(newest)}, outside the window"
    if newest is not None:
        return (
            f"Prometheus reachable; newest {what} sample at {_utc(newest)}, outside the window "
            f"{_utc(at - window_s)} to {_utc(at)} ({_age(at - newest)} before its end); {hint}"
        )
    if now - at > STALE_STEP_S and (later := newest_sample(cl, metrics, sel, now)) is not None and later > at:
        return (
            f"Prometheus reachable; no {what} sample in the week before {_utc(at)}, the newest is at "
            f"{_utc(later)}, after the query time; query a later time or now"
        )
    return None


def _utc(t: float) -> str:
    return _time.strftime("%Y-%m-%d %H:%M:%S UTC", _time.gmtime(t))


def _age(s: float) -> str:
    s = max(0.0, s)
    if s < 5400:
        return f"{s / 60:.0f} min"
    if s < 172800:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} days"


def _coredns(
    cl: PromClient, src: PromSource, sel: str, w: str, at: float, version: str | None, notes: list[str]
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    names = None
    for cand in names_for(version):
        if cl.query(f"count({cand.requests}{{{sel}}})", at):
            names = cand
            break
    if names is None:
        return None, None
    dur = f"{names.duration}_bucket{{{sel}}}"
    qps = _scalar(cl.query(f"sum(rate({names.requests}{{{sel}}}[{w}]))", at))
    p50 = _scalar(cl.query(f"histogram_quantile(0.5, sum by (le) (rate({dur}[{w}])))", at))
    p99 = _scalar(cl.query(f"histogram_quantile(0.99, sum by (le) (rate({dur}[{w}])))", at))
    buckets: dict[float, float] = {}
    for lbl, v in cl.query(f"sum by (le) (rate({dur}[{w}]))", at):
        le = _le(lbl.get("le"))
        if le is not None and v is not None:
            buckets[le] = v
    rcodes = {
        lbl.get("rcode", ""): v
        for lbl, v in cl.query(f"sum by (rcode) (rate({names.responses}{{{sel}}}[{w}]))", at)
        if v is not None
    }
    servfail, nxdomain = rcode_shares(rcodes)
    fwd_sel = f"{sel},{names.forward_filter}" if names.forward_filter else sel
    fwd_expr = f"sum by (le) (rate({names.forward}_bucket{{{fwd_sel}}}[{w}]))"
    fwd_p99 = _scalar(cl.query(f"histogram_quantile(0.99, {fwd_expr})", at))
    if fwd_p99 is None:
        notes.append(f"no {names.forward} series (forward latency not collected)")
    if not buckets:
        notes.append(f"no {names.duration} series (latency not collected)")
    coredns = {
        "qps": qps,
        "p50_ms": _ms(p50),
        "p99_ms": _ms(p99),
        "share_over_1s": share_over(buckets),
        "servfail_share": servfail,
        "nxdomain_share": nxdomain,
        "forward_p99_ms": _ms(fwd_p99),
        "version": None,
    }
    series = None
    if src.series_range_s > 0:
        step = src.step_s
        end = at
        start = end - src.series_range_s
        rw = f"{round(max(300.0, 4 * step))}s"
        n = round((end - start) / step) + 1
        fwd_r = f"sum by (le) (rate({names.forward}_bucket{{{fwd_sel}}}[{rw}]))"
        exprs = names.rate_exprs(sel, rw)
        exprs["forward_p99_ms"] = (f"histogram_quantile(0.99, {fwd_r})", 1000.0)
        metrics: dict[str, list[float | None]] = {}
        for name, (expr, scale) in exprs.items():
            grid = cl.range_grid(expr, start, end, step, n, scale)
            if grid is not None:
                metrics[name] = grid
        for lbl, values in cl.query_range(
            f"sum by (rcode) (rate({names.responses}{{{sel}}}[{rw}]))", start, end, step
        ):
            metrics[f"rcode:{lbl.get('rcode', '')}"] = on_grid(values, start, step, n)
        series = {"start": start, "step": step, "metrics": metrics}
    return coredns, series


def _conntrack(
    cl: PromClient, src: PromSource, sel: str, w: str, at: float, nodes: set[str], addresses: dict[str, str]
) -> dict[str, Any]:
    per_node: dict[str, dict[str, Any]] = {}
    unmatched = 0

    def fill(expr: str, key: str) -> None:
        nonlocal unmatched
        for lbl, v in cl.query(expr, at):
            node = node_of(lbl, nodes, addresses)
            if node is None:
                unmatched += 1
                continue
            row = per_node.setdefault(node, _empty_node())
            if v is not None:
                row[key] = v if row[key] is None else max(row[key], v)

    fill(f"increase(node_nf_conntrack_stat_insert_failed{{{sel}}}[{w}])", "insert_failed_increase")
    if not per_node:
        why = (
            f"conntrack series for {sel} carry no label matching a node name"
            if unmatched
            else stale_note(
                cl, "conntrack", ["node_nf_conntrack_stat_insert_failed"], sel, at, src.window_s, brief=True
            )
            or f"no node_nf_conntrack_stat_insert_failed series for {sel} "
            "(needs node_exporter >= 1.2.0 on the host network)"
        )
        return {"reason": f"not collected: {why}", "nodes": {}}
    fill(f"increase(node_nf_conntrack_stat_drop{{{sel}}}[{w}])", "drop_increase")
    fill(f"node_nf_conntrack_entries{{{sel}}}", "entries")
    fill(f"node_nf_conntrack_entries_limit{{{sel}}}", "entries_limit")
    if src.series_range_s > 0:
        step = src.step_s
        start = at - src.series_range_s
        n = round(src.series_range_s / step) + 1
        rw = f"{round(max(300.0, 4 * step))}s"
        for lbl, values in cl.query_range(
            f"rate(node_nf_conntrack_stat_insert_failed{{{sel}}}[{rw}])", start, at, step
        ):
            node = node_of(lbl, nodes, addresses)
            if node in per_node:
                per_node[node]["insert_failed_rate"] = on_grid(values, start, step, n)
    missing = sorted(nodes - per_node.keys())
    reason = None
    if missing:
        reason = f"no conntrack series for {len(missing)} of {len(nodes)} nodes"
    out: dict[str, Any] = {"reason": reason, "nodes": per_node}
    if src.series_range_s > 0:
        out["start"], out["step"] = at - src.series_range_s, src.step_s
    return out


def _empty_node() -> dict[str, Any]:
    return {
        "insert_failed_increase": None,
        "drop_increase": None,
        "entries": None,
        "entries_limit": None,
        "insert_failed_rate": None,
    }


def _scalar(res: list[tuple[dict[str, str], float | None]]) -> float | None:
    return next((v for _, v in res if v is not None), None)
