"""Evidence over time and "did the fix work?" on the dashboard (issue 17 §1/§2): widgets only.

- ``render_nodes`` (Nodes page) and ``render_coredns`` (CoreDNS page): conntrack insert_failed/drop
  increases per node and cluster, CoreDNS request rate, SERVFAIL/REFUSED shares and p99 latency, over a
  window (any (start, end) a time-range picker gives; without one, the snapshot's window, else the 3
  hours up to now or up to ``DNSFLEET_PROMETHEUS_TIME``).
- ``render_verify`` (Mitigations page): the before/after verdict of every applied change in the audit
  log, from Prometheus and from probe runs, with a CSV download (the report's CSV writer).

The data (the snapshot's ``evidence`` sections, else Prometheus range queries, cached; the verdicts)
comes from ``dashboard.sources``; this module only draws it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import charts, ui
from dashboard.sources import (
    EVIDENCE_MAX_CLUSTERS,
    evidence_sections,
    evidence_window,
    prometheus_url,
    verify_frame,
)

TOP_NODES = 10


def _cap(clusters: list[str]) -> list[str]:
    if len(clusters) > EVIDENCE_MAX_CLUSTERS:
        st.caption(
            f"Evidence for the first {EVIDENCE_MAX_CLUSTERS} of {len(clusters)} clusters: filter to see others."
        )
    return clusters[:EVIDENCE_MAX_CLUSTERS]


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
    unit = f"{metric}/h"
    return charts.node_lines(
        part, "value", title, f"{metric} (per hour)", ".0f", unit, TOP_NODES, legend_below=True
    )


def _sections(
    a: Any, clusters: list[str], start: float | None, end: float | None
) -> dict[str, dict[str, Any]] | None:
    """The section's heading and the evidence of the first clusters over the window, its caption drawn;
    None, said on the page, when there is none."""
    st.subheader("Evidence over time")
    clusters = _cap(clusters)
    if start is None or end is None:
        start, end = evidence_window(a.snapshot)
    try:
        sections = evidence_sections(a.snapshot, clusters, start, end)
    except ValueError as e:  # the operator's Prometheus credential settings are unusable: one line
        st.error(ui.plain(str(e)))
        return None
    if not sections:
        st.info(
            "Not collected: no Prometheus URL and no evidence in the snapshot (`dnsfleet evidence --since`)."
        )
        return None
    _caption(sections, start, end)
    return sections


def render_nodes(
    a: Any, clusters: list[str], nodes: Any = None, start: float | None = None, end: float | None = None
) -> None:
    """Nodes page: conntrack increases over the window per node and per cluster."""
    sections = _sections(a, list(clusters) or sorted(set(a.nodes["cluster"])), start, end)
    if sections is None:
        return
    per_node = long_frame(sections, "node")
    if nodes is not None and len(per_node):
        per_node = per_node[per_node["node"].isin(list(nodes))]
    per_cluster = long_frame(sections, "cluster")
    drop = charts.metric_lines(
        per_cluster,
        "drop",
        "conntrack drop per cluster (sum over nodes)",
        "drop (per hour)",
        hover_unit="drops/h",
    )
    ui.chart_pair(
        (_node_chart(per_node, "insert_failed", "conntrack insert_failed per node"), "ev.if"),
        (drop, "ev.drop"),
    )
    st.caption(next(iter(sections.values())).get("clash_resolve") or "")


def render_coredns(a: Any, clusters: list[str], start: float | None = None, end: float | None = None) -> None:
    """CoreDNS page: request rate, SERVFAIL/REFUSED shares and p99 over the window."""
    sections = _sections(a, list(clusters) or sorted(set(a.clusters["cluster"])), start, end)
    if sections is None:
        return
    df = long_frame(sections, "cluster")
    share = df[df["metric"].isin(["servfail_share", "refused_share"])].copy()
    share["value"] = share["value"] * 100
    ui.chart_pair(
        (
            charts.metric_lines(
                df, "qps", "CoreDNS request rate", "Requests (per second)", hover_unit="req/s"
            ),
            "ev.qps",
        ),
        (charts.metric_lines(df, "p99_ms", "CoreDNS latency p99", "Latency (ms)", hover_unit="ms"), "ev.p99"),
    )
    ui.chart_pair(
        (
            charts.metric_lines(
                share, "servfail_share", "SERVFAIL share of responses", "SERVFAIL (%)", hover_unit="%"
            ),
            "ev.sf",
        ),
        (
            charts.metric_lines(
                share, "refused_share", "REFUSED share of responses", "REFUSED (%)", hover_unit="%"
            ),
            "ev.rf",
        ),
    )


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
