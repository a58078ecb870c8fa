"""Evidence over time and "did the fix work?" on the dashboard (issue 17 §1/§2): widgets only.

- ``render_nodes`` (Nodes page) and ``render_coredns`` (CoreDNS page): conntrack insert_failed/drop
  increases per node and cluster, CoreDNS request rate, SERVFAIL/REFUSED shares and p99 latency, over a
  window. The series come from the snapshot's ``evidence`` sections when it has them, else from the
  Prometheus URL (sidebar or ``DNSFLEET_PROMETHEUS``) through ``dnsfleet.evidence.query``.
- ``evidence(a, clusters, start, end)``: those sections for any (start, end) a time-range picker gives;
  without one, ``window(a)``: the snapshot's window, else the 3 hours up to now (or up to
  ``DNSFLEET_PROMETHEUS_TIME``).
- ``render_verify`` (Mitigations page): the before/after verdict of every applied change in the audit
  log, from Prometheus and from probe runs, with a CSV download (the report's CSV writer).
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import charts, ui
from dashboard.state import current_source

DEFAULT_SPAN_S = 3 * 3600.0
TOP_NODES = 10
MAX_CLUSTERS = 10  # range queries per page view: the first clusters of the selection


def _cap(clusters: list[str]) -> list[str]:
    if len(clusters) > MAX_CLUSTERS:
        st.caption(
            f"Evidence for the first {MAX_CLUSTERS} of {len(clusters)} clusters: filter to see others."
        )
    return clusters[:MAX_CLUSTERS]


def _replay_time() -> float | None:
    raw = os.environ.get("DNSFLEET_PROMETHEUS_TIME", "").strip()
    try:
        return float(raw) if raw else None
    except ValueError:
        return None


def prometheus_url() -> str | None:
    return current_source().get("prometheus_url") or os.environ.get("DNSFLEET_PROMETHEUS", "").strip() or None


def window(a: Any) -> tuple[float, float]:
    """The window the data source gives: the snapshot's evidence window, else 3 h up to now."""
    spans = [
        (c["evidence"]["start"], c["evidence"]["end"])
        for c in (a.snapshot or {}).get("clusters") or []
        if isinstance(c.get("evidence"), dict) and c["evidence"].get("start") is not None
    ]
    if spans:
        return min(s for s, _ in spans), max(e for _, e in spans)
    end = _replay_time() or time.time()
    return end - DEFAULT_SPAN_S, end


@st.cache_data(ttl=300, show_spinner="Querying Prometheus for the window…")
def _fetch(url: str, clusters: tuple[str, ...], start: float, end: float) -> dict[str, dict[str, Any]]:
    from dnsfleet.collect.prom import PromClient, PromSource
    from dnsfleet.evidence import query

    src = PromSource(url)
    return {c: query.fetch(PromClient(src), c, start, end) for c in clusters}


def evidence(
    a: Any, clusters: list[str], start: float | None = None, end: float | None = None
) -> dict[str, dict[str, Any]]:
    """Evidence sections per cluster: from the snapshot, else from Prometheus for [start, end]."""
    if start is None or end is None:
        start, end = window(a)
    out = {
        c["name"]: c["evidence"]
        for c in (a.snapshot or {}).get("clusters") or []
        if c.get("name") in clusters and isinstance(c.get("evidence"), dict)
    }
    url = prometheus_url()
    missing = tuple(sorted(set(clusters) - set(out)))
    if url and missing:
        # whole minutes: a rerun a few seconds later hits the cache
        out.update(_fetch(url, missing, float(int(start) // 60 * 60), float(int(end) // 60 * 60)))
    return out


COUNTERS = ("insert_failed", "drop")


def long_frame(sections: dict[str, dict[str, Any]], scope: str) -> pd.DataFrame:
    """``scope`` ``cluster``: ts, cluster, metric, value; ``node``: ts, cluster, node, metric, value.
    Counter increases (insert_failed, drop) come out per hour, so windows with other steps compare."""
    rows = []
    for cluster, ev in sections.items():
        if ev.get("source") is None:
            continue
        ts = pd.to_datetime([ev["start"] + i * ev["step"] for i in range(_length(ev))], unit="s", utc=True)
        per_hour = 3600.0 / float(ev["step"])

        def hourly(metric: str, values: list, per_hour: float = per_hour) -> list:
            if metric not in COUNTERS:  # increases per step -> per hour, whatever the step
                return values
            return [None if v is None else v * per_hour for v in values]

        if scope == "cluster":
            for metric, values in (ev.get("cluster") or {}).items():
                values = hourly(metric, values)
                if metric != "nodes_reporting" and values:
                    rows.append(
                        pd.DataFrame(
                            {"ts": ts[: len(values)], "cluster": cluster, "metric": metric, "value": values}
                        )
                    )
        else:
            for node, d in (ev.get("nodes") or {}).items():
                for metric, values in d.items():
                    values = hourly(metric, values)
                    rows.append(
                        pd.DataFrame(
                            {
                                "ts": ts[: len(values)],
                                "cluster": cluster,
                                "node": node,
                                "metric": metric,
                                "value": values,
                            }
                        )
                    )
    cols = (
        ["ts", "cluster", "metric", "value"]
        if scope == "cluster"
        else ["ts", "cluster", "node", "metric", "value"]
    )
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=cols)


def _length(ev: dict[str, Any]) -> int:
    lens = [len(v) for k, v in (ev.get("cluster") or {}).items() if isinstance(v, list)]
    lens += [len(v) for d in (ev.get("nodes") or {}).values() for v in d.values()]
    return max(lens, default=0)


def _caption(sections: dict[str, dict[str, Any]], start: float, end: float) -> None:
    fmt = "%Y-%m-%d %H:%M"
    steps = sorted({ev["step"] for ev in sections.values() if ev.get("step")})
    st.caption(
        f"{datetime.fromtimestamp(start, UTC).strftime(fmt)} – {datetime.fromtimestamp(end, UTC).strftime(fmt)} UTC"
        + (f", one point per {steps[0] // 60} min" if steps else "")
        + ". Counter increases per step from the raw counters, shown per hour (a reboot's reset counts what "
        "grew since; a gap is blank, never 0; growth across a gap lands on the first point after it)."
    )
    notes = [f"{c}: {ev['note']}" for c, ev in sorted(sections.items()) if ev.get("note")]
    for n in notes[:6]:
        st.caption(n)


def _node_chart(df: pd.DataFrame, metric: str, title: str) -> go.Figure:
    part = df[df["metric"] == metric].dropna(subset=["value"])
    if part.empty:
        return charts.empty_figure(title, f"Not collected: no {metric} series for this selection.")
    keys = charts.top_series_keys(part, ["cluster", "node"], "value", TOP_NODES)
    n = part[["cluster", "node"]].drop_duplicates().shape[0]
    if n > TOP_NODES:
        title += f" (top {TOP_NODES} of {n} nodes by total)"
    names = [f"{c}/{nd}" for c, nd in keys]
    fig = go.Figure()
    for (c, nd), name in zip(keys, names, strict=True):
        s = part[(part["cluster"] == c) & (part["node"] == nd)].sort_values("ts")
        fig.add_scatter(
            x=s["ts"],
            y=s["value"].astype(float),
            mode="lines",
            name=name,
            line={"color": charts.series_color(name, names)},
            hovertemplate=f"{name}<br>%{{x}}<br>%{{y:.0f}} {metric}/h<extra></extra>",
        )
    fig.update_xaxes(title_text="Time (UTC)")
    fig.update_yaxes(title_text=f"{metric} (per hour)", rangemode="tozero")
    return charts._layout(fig, title, legend_below=True)


def render_nodes(
    a: Any, clusters: list[str], nodes: Any = None, start: float | None = None, end: float | None = None
) -> None:
    """Nodes page: conntrack increases over the window per node and per cluster."""
    st.subheader("Evidence over time")
    clusters = _cap(list(clusters) or sorted(set(a.nodes["cluster"])))
    if start is None or end is None:
        start, end = window(a)
    sections = evidence(a, clusters, start, end)
    if not sections:
        st.info(
            "Not collected: no Prometheus URL and no evidence in the snapshot (`dnsfleet evidence --since`)."
        )
        return
    _caption(sections, start, end)
    per_node = long_frame(sections, "node")
    if nodes is not None and len(per_node):
        per_node = per_node[per_node["node"].isin(list(nodes))]
    per_cluster = long_frame(sections, "cluster")
    left, right = st.columns(2)
    with left:
        ui.chart(_node_chart(per_node, "insert_failed", "conntrack insert_failed per node"), key="ev.if")
    with right:
        ui.chart(
            charts.metric_lines(
                per_cluster,
                "drop",
                "conntrack drop per cluster (sum over nodes)",
                "drop (per hour)",
                hover_unit="drops/h",
            ),
            key="ev.drop",
        )
    st.caption(next(iter(sections.values())).get("clash_resolve") or "")


def render_coredns(a: Any, clusters: list[str], start: float | None = None, end: float | None = None) -> None:
    """CoreDNS page: request rate, SERVFAIL/REFUSED shares and p99 over the window."""
    st.subheader("Evidence over time")
    clusters = _cap(list(clusters) or sorted(set(a.clusters["cluster"])))
    if start is None or end is None:
        start, end = window(a)
    sections = evidence(a, clusters, start, end)
    if not sections:
        st.info(
            "Not collected: no Prometheus URL and no evidence in the snapshot (`dnsfleet evidence --since`)."
        )
        return
    _caption(sections, start, end)
    df = long_frame(sections, "cluster")
    share = df[df["metric"].isin(["servfail_share", "refused_share"])].copy()
    share["value"] = share["value"] * 100
    left, right = st.columns(2)
    with left:
        ui.chart(
            charts.metric_lines(
                df, "qps", "CoreDNS request rate", "Requests (per second)", hover_unit="req/s"
            ),
            key="ev.qps",
        )
    with right:
        ui.chart(
            charts.metric_lines(df, "p99_ms", "CoreDNS latency p99", "Latency (ms)", hover_unit="ms"),
            key="ev.p99",
        )
    left, right = st.columns(2)
    with left:
        ui.chart(
            charts.metric_lines(
                share, "servfail_share", "SERVFAIL share of responses", "SERVFAIL (%)", hover_unit="%"
            ),
            key="ev.sf",
        )
    with right:
        ui.chart(
            charts.metric_lines(
                share, "refused_share", "REFUSED share of responses", "REFUSED (%)", hover_unit="%"
            ),
            key="ev.rf",
        )


def verify_frame(window_min: int, settle_min: int, snapshot: dict[str, Any] | None) -> pd.DataFrame:
    from dnsfleet.collect.prom import PromClient, PromSource
    from dnsfleet.evidence import query, verify
    from dnsfleet.mitigate.audit import AuditLog
    from dnsfleet.probe.log import ProbeLog

    url = prometheus_url()
    fetch = None
    if url:
        src = PromSource(url)

        def fetch(cluster: str, start: float, end: float) -> dict[str, Any]:
            return query.fetch(PromClient(src), cluster, start, end, max_points=query.fine_points(start, end))

    results = verify.verify(
        AuditLog().records(),
        fetch,
        now=_replay_time() or time.time(),
        window_s=window_min * 60.0,
        settle_s=settle_min * 60.0,
        snapshot=snapshot,
        probe_runs=ProbeLog().records(),
    )
    return pd.DataFrame(verify.rows(results), columns=list(verify.CSV_COLUMNS))


def render_verify(a: Any) -> None:
    """Mitigations page: did each applied change work? Prometheus and probe verdicts side by side."""
    from dnsfleet.report import to_csv_bytes

    st.subheader("Did it work? Before / after")
    st.caption(
        "For every applied change in the audit log: the same-length windows before it and after its rollout, "
        "per cluster and affected node, from Prometheus (conntrack, CoreDNS) and from probe runs "
        "(`dnsfleet probe`, `dnsfleet mitigate apply --probe`)."
    )
    c1, c2 = st.columns(2)
    win = int(c1.number_input("Window (minutes)", 5, 7 * 24 * 60, 60, step=5, key="ver.window"))
    settle = int(c2.number_input("Rollout skipped (minutes)", 0, 24 * 60, 10, step=5, key="ver.settle"))
    try:
        df = verify_frame(win, settle, a.snapshot or None)
    except ValueError as e:
        st.error(str(e))
        return
    if df.empty:
        st.info("No applied change in the audit log yet.")
        return
    if not prometheus_url():
        st.caption("No Prometheus URL: the Prometheus verdicts say so; probe runs still count.")
    summary = df[df["scope"] == "cluster"].pivot_table(
        index=["change_time_utc", "cluster", "mitigation", "objects"],
        columns="source",
        values=["verdict", "summary"],
        aggfunc="first",
    )
    summary.columns = [f"{src}_{what}" for what, src in summary.columns]
    summary = summary.reset_index().sort_values("change_time_utc", ascending=False)
    cols = [
        "change_time_utc",
        "cluster",
        "mitigation",
        "prometheus_verdict",
        "prometheus_summary",
        "probe_verdict",
        "probe_summary",
        "objects",
    ]
    st.dataframe(
        summary[[c for c in cols if c in summary.columns]],
        hide_index=True,
        width="stretch",
        column_config={
            "prometheus_verdict": st.column_config.TextColumn("Prometheus"),
            "prometheus_summary": st.column_config.TextColumn("Prometheus: numbers", width="large"),
            "probe_verdict": st.column_config.TextColumn("Probe"),
            "probe_summary": st.column_config.TextColumn("Probe: numbers", width="medium"),
        },
    )
    for r in summary.head(20).itertuples(index=False):
        d = r._asdict()
        st.markdown(
            f"**{d['cluster']}** · {d['mitigation']} at {d['change_time_utc']}  \n"
            f"Prometheus **{d.get('prometheus_verdict')}**: {d.get('prometheus_summary')}  \n"
            f"Probe **{d.get('probe_verdict')}**: {d.get('probe_summary')}"
        )
    nodes = df[df["scope"] == "node"]
    if len(nodes):
        with st.expander(f"Per node ({len(nodes)} rows)"):
            st.dataframe(
                nodes[
                    [
                        "change_time_utc",
                        "cluster",
                        "source",
                        "node",
                        "resolver",
                        "verdict",
                        "insert_failed_per_hour_before",
                        "insert_failed_per_hour_after",
                        "probe_slow_before",
                        "probe_lookups_before",
                        "probe_slow_after",
                        "probe_lookups_after",
                    ]
                ],
                hide_index=True,
                width="stretch",
            )
    st.download_button(
        "Download verdicts (CSV)",
        to_csv_bytes(df),
        file_name="dnsfleet-verify.csv",
        mime="text/csv",
        key="ver.csv",
    )
