"""Pure plotly figure builders: frame in, ``go.Figure`` out. No Streamlit, no scoring.

Every chart has a title, axis titles with units and hover details, and uses ONE colour per risk level
(``LEVEL_COLORS``) everywhere; race fix states reuse the same colours (open = high, fixed = low).
Builders aggregate before plotting and cap the number of marks, so a 100,000-pod fleet sends a few
hundred points to the browser, not a point per pod.
"""

from __future__ import annotations

import html
from collections.abc import Iterable

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dnsfleet.schema import FACTOR_NAMES, LEVELS
from dnsfleet.verdicts import kernel_verdict, score_text

LEVEL_COLORS: dict[str, str] = {
    "high": "#d62728",
    "medium": "#f0a202",
    "low": "#2ca02c",
    "unknown": "#9e9e9e",
    "n/a": "#d9dce3",  # no pod uses cluster DNS (D8): not scored
}
# Race fix states use the level colours: an open race is the "high" colour, a fixed one the "low" colour.
STATE_COLORS: dict[str, str] = {
    "open": LEVEL_COLORS["high"],
    "fixed": LEVEL_COLORS["low"],
    "unknown": LEVEL_COLORS["unknown"],
    "not applicable": LEVEL_COLORS["low"],  # Windows nodes: no netfilter, no risk from the races
}
RACES: dict[str, str] = {
    "race1": "Race 1: matching conntracks",
    "race2": "Race 2: same-origin NAT",
    "race3": "Race 3: different DNAT endpoints",
    "nfqueue": "NFQUEUE clash path",
}
FACTOR_LABELS: dict[str, str] = {
    "kernel": "Kernel",
    "service_path": "Service path",
    "resolver": "Resolver",
    "ndots": "ndots",
    "query_rate": "Query rate",
    "evidence": "conntrack evidence",
}
NEUTRAL = "#e8eaf0"  # parent tiles that carry no level of their own
SERIES_COLORS = (
    "#1f77b4",
    "#9467bd",
    "#17becf",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#393b79",
    "#637939",
    "#843c39",
)
_FONT = {"family": "Source Sans Pro, sans-serif", "size": 13}


def _layout(
    fig: go.Figure, title: str, height: int = 380, legend_below: bool = False, **kw: object
) -> go.Figure:
    """Common layout. The legend sits above the plot, left-aligned and horizontal: plotly grows the top
    margin to fit it however many rows it wraps into at a narrow width. ``legend_below`` puts a long
    legend (one entry per node or cluster) under the plot instead, with room for its rows. The title is
    kept in the figure for ``displayed`` to lift out, so a legend can never print over it."""
    legend = {"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0, "xanchor": "left"}
    margin = {"l": 10, "r": 10, "t": 60, "b": 40}
    if legend_below:
        legend = {"orientation": "h", "yanchor": "top", "y": -0.22, "x": 0, "xanchor": "left"}
        rows = -(-sum(1 for t in fig.data if t.showlegend is not False) // 3)
        margin["b"] = 70 + 22 * rows
        height += 22 * rows
    fig.update_layout(
        title={"text": title, "x": 0, "xanchor": "left"},
        height=height,
        margin=margin,
        font=_FONT,
        legend=legend,
        hoverlabel={"align": "left"},
        **kw,
    )
    return fig


def displayed(fig: go.Figure) -> tuple[str, go.Figure]:
    """The figure as the dashboard shows it: its title as plain text (rendered as an HTML heading that
    wraps on a phone, instead of an SVG title a legend or the plot edge can cover) and a copy of the
    figure without the title, its top margin only what the legend needs."""
    title = fig.layout.title.text or ""
    out = go.Figure(fig)
    # Subplot titles are annotations just above their panel: keep room for the top one.
    out.update_layout(title={"text": ""}, margin={"t": 40 if fig.layout.annotations else 10})
    return title, out


def series_color(name: str, names: Iterable[str]) -> str:
    """A stable colour per series name: its position among all ``names`` (sorted), so the same cluster
    or node has the same colour in every chart built from the same frame."""
    order = sorted(set(map(str, names)))
    return SERIES_COLORS[order.index(name) % len(SERIES_COLORS)] if name in order else SERIES_COLORS[0]


def _wrap(text: object, width: int = 80, limit: int = 400) -> str:
    """HTML-escaped text broken into lines for a hover box."""
    if text is None or text is pd.NA or (isinstance(text, float) and pd.isna(text)):
        return ""
    s = str(text)
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    out, line = [], ""
    for word in s.split():
        if line and len(line) + 1 + len(word) > width:
            out.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    out.append(line)
    return "<br>".join(html.escape(x) for x in out)


def _num(v: object, fmt: str = "{:.0f}", na: str = "n/a") -> str:
    return na if v is None or pd.isna(v) else fmt.format(v)


def empty_figure(title: str, message: str, height: int = 240) -> go.Figure:
    """A blank chart that says why it is blank (nothing collected, nothing matches the filters)."""
    fig = go.Figure()
    fig.add_annotation(
        text=html.escape(message), showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper", font=_FONT
    )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, title, height=height)


def ranked(clusters: pd.DataFrame) -> pd.DataFrame:
    """Clusters highest score first; clusters without a score (failed scans) last."""
    return clusters.sort_values(["score", "cluster"], ascending=[False, True], na_position="last")


def _top_ranked(clusters: pd.DataFrame, top: int, title: str) -> tuple[pd.DataFrame, str]:
    """The ``top`` clusters (``ranked``) and the title, which says so when others are left out."""
    more = f" (top {top} of {len(clusters)})" if len(clusters) > top else ""
    return ranked(clusters).head(top), title + more


# --- fleet overview -------------------------------------------------------------------------------


def ranking_bar(clusters: pd.DataFrame, top: int = 40) -> go.Figure:
    """Horizontal bars of cluster risk score, highest on top, one colour per level."""
    title = "Clusters ranked by DNS-race risk"
    if clusters.empty:
        return empty_figure(title, "No clusters in this data source.")
    df, title = _top_ranked(clusters, top, title)
    fig = go.Figure()
    for level in LEVELS:
        part = df[df["level"].fillna("unknown") == level]
        if part.empty:
            continue
        hover = [
            f"<b>{html.escape(str(r.cluster))}</b><br>"
            f"score {score_text(r.score)} / 100 · level {level}<br>"
            f"scan {html.escape(str(r.status))}"
            + (f": {_wrap(r.reason)}" if pd.notna(r.reason) else "")
            + f"<br>exposed pods {_num(r.exposed_pods)} of {_num(r.pods)}"
            + (f"<br>{_wrap(r.why)}" if pd.notna(r.why) else "")
            for r in part.itertuples()
        ]
        fig.add_bar(
            y=part["cluster"].astype(str),
            x=part["score"].astype("Float64").fillna(0).astype(float),
            orientation="h",
            name=level,
            marker_color=LEVEL_COLORS[level],
            text=[score_text(s, na="no data: scan failed") for s in part["score"]],
            textposition="outside",
            cliponaxis=False,
            hovertext=hover,
            hovertemplate="%{hovertext}<extra></extra>",
        )
    order = df["cluster"].astype(str).tolist()
    fig.update_yaxes(title_text="Cluster", categoryorder="array", categoryarray=order[::-1], automargin=True)
    fig.update_xaxes(title_text="Risk score (points, 0-100)", range=[0, 105])
    return _layout(fig, title, height=max(260, 90 + 26 * len(df)), barmode="overlay")


FACTOR_SHORT: dict[str, str] = {
    "kernel": "Kernel",
    "service_path": "Path",
    "resolver": "Resolver",
    "ndots": "ndots",
    "query_rate": "Rate",
    "evidence": "Evidence",
}


def factor_heatmap(clusters: pd.DataFrame, top: int = 40, compact: bool = False) -> go.Figure:
    """Cluster x factor matrix of the points each factor adds to the score (the ``*_pts`` columns).

    Every cluster row is labelled (26 px per row); factor columns carry short names (the full name is
    in the hover); each cell prints its points (no colour bar). ``compact`` is the phone variant:
    vertical column labels and a smaller font, so six columns fit 390 px.
    """
    title = "Where each cluster's score comes from"
    if clusters.empty:
        return empty_figure(title, "No clusters in this data source.")
    df, title = _top_ranked(clusters, top, title)
    labels = [FACTOR_SHORT[f] for f in FACTOR_NAMES]  # six long names overlap at half a page
    z = [
        [None if pd.isna(v) else float(v) for v in row]
        for row in df[[f"{f}_pts" for f in FACTOR_NAMES]].to_numpy()
    ]
    text = [["" if v is None else f"{v:.0f}" for v in row] for row in z]
    names = df["cluster"].astype(str).tolist()
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=labels,
            y=names,
            text=text,
            texttemplate="%{text}",
            colorscale=[[0, "#fbf7f4"], [0.5, "#f6a36b"], [1, LEVEL_COLORS["high"]]],
            zmin=0,
            showscale=False,  # every cell prints its points; a colour bar cost six columns 80 px
            hoverongaps=False,
            customdata=[[FACTOR_LABELS[f] for f in FACTOR_NAMES]] * len(z),
            hovertemplate="<b>%{y}</b><br>%{customdata}: %{z:.1f} points<extra></extra>",
        )
    )
    # Categorical ticks listed explicitly: plotly would otherwise skip labels once rows get dense.
    fig.update_yaxes(
        title_text=None if compact else "Cluster",
        autorange="reversed",
        automargin=True,
        tickmode="array",
        tickvals=names,
        ticktext=names,
    )
    fig.update_xaxes(
        title_text="Points added to the score"
        if compact
        else "Risk factor (points added to the 0-100 score)",
        side="bottom",
        tickangle=-90 if compact else None,  # vertical labels never collide at 40 px a column
    )
    fig = _layout(fig, title, height=max(260, 110 + 26 * len(df)))
    if compact:
        fig.update_layout(font={**_FONT, "size": 11})
    return fig


# --- nodes and kernels ----------------------------------------------------------------------------


def race_status_bars(nodes: pd.DataFrame) -> go.Figure:
    """Stacked bars: for each race, how many nodes run a kernel where it is fixed, open or unknown."""
    title = "Kernel fix status per race (nodes)"
    if nodes.empty:
        return empty_figure(title, "No nodes in the selection.")
    fig = go.Figure()
    names = list(RACES.values())
    for state in ("open", "unknown", "fixed", "not applicable"):
        counts = [int((nodes[col].fillna("unknown") == state).sum()) for col in RACES]
        if state == "not applicable" and not any(counts):
            continue
        fig.add_bar(
            x=names,
            y=counts,
            name=state,
            marker_color=STATE_COLORS[state],
            text=[c or "" for c in counts],
            hovertemplate="%{x}<br>" + state + ": %{y} nodes<extra></extra>",
        )
    fig.update_xaxes(title_text="Race (kernel fix)")
    fig.update_yaxes(title_text="Nodes (count)")
    return _layout(fig, title, barmode="stack")


def _open_list(nodes: pd.DataFrame) -> pd.Series:
    """Per node, the races open on its kernel as text ('race1, race3'), 'none' when none is."""
    out = pd.Series("", index=nodes.index, dtype="string")
    for col in RACES:
        hit = nodes[col].fillna("unknown") == "open"
        out[hit] = out[hit] + (out[hit].str.len() > 0).map({True: ", ", False: ""}) + col
    return out.replace("", "none")


def kernel_bars(nodes: pd.DataFrame, top: int = 25) -> go.Figure:
    """Nodes per kernel version (most common first), coloured by whether any race is open on it."""
    title = "Kernel versions in use"
    if nodes.empty:
        return empty_figure(title, "No nodes in the selection.")
    df = nodes.assign(
        kernel=nodes["kernel_version"].fillna("unknown").astype(str),
        verdict=kernel_verdict(nodes),
        open_races=_open_list(nodes),
    )
    agg = (
        df.groupby("kernel", sort=False)
        .agg(
            nodes=("node", "size"),
            clusters=("cluster", "nunique"),
            verdict=("verdict", "first"),
            distro=("distro", "first"),
            open_races=("open_races", "first"),
        )
        .sort_values(["nodes", "kernel"], ascending=[False, True])
    )
    if len(agg) > top:
        title += f" (top {top} of {len(agg)} kernels)"
        agg = agg.head(top)
    fig = go.Figure()
    for state in ("open", "unknown", "fixed", "not applicable"):
        part = agg[agg["verdict"] == state]
        if part.empty:
            continue
        fig.add_bar(
            y=part.index.tolist(),
            x=part["nodes"].tolist(),
            orientation="h",
            name={
                "open": "race 1, 2 or 3 open",
                "unknown": "fix status unknown",
                "fixed": "races 1-3 fixed",
                "not applicable": "not applicable (Windows)",
            }[state],
            marker_color=STATE_COLORS[state],
            customdata=part[["clusters", "distro", "open_races"]].astype(str).to_numpy(),
            hovertemplate="<b>%{y}</b><br>%{x} nodes in %{customdata[0]} clusters<br>"
            "distro %{customdata[1]}<br>open: %{customdata[2]}<extra></extra>",
        )
    fig.update_yaxes(
        title_text="Kernel version",
        categoryorder="array",
        categoryarray=agg.index.tolist()[::-1],
        automargin=True,
    )
    fig.update_xaxes(title_text="Nodes (count)")
    return _layout(fig, title, height=max(260, 100 + 24 * len(agg)), barmode="overlay")


def top_series_keys(df: pd.DataFrame, key: list[str], value: str, top: int) -> list[tuple]:
    """The ``top`` keys with the largest total ``value`` (ties by name), for capping the lines drawn."""
    totals = df.groupby(key, sort=True)[value].sum(min_count=1).fillna(0)
    totals = totals.sort_values(ascending=False, kind="stable")
    return [k if isinstance(k, tuple) else (k,) for k in totals.head(top).index]


def conntrack_lines(series: pd.DataFrame, top: int = 10) -> go.Figure:
    """insert_failed per second over time, one line per node (the ``top`` busiest nodes)."""
    title = "conntrack insert_failed per node"
    if series.empty or series["insert_failed_rate"].isna().all():
        return empty_figure(title, "Not collected: no node conntrack series for this selection.")
    return node_lines(
        series, "insert_failed_rate", title, "insert_failed (per second)", ".3f", "insert_failed/s", top
    )


def node_lines(
    series: pd.DataFrame,
    value: str,
    title: str,
    y_title: str,
    hover_format: str,
    hover_unit: str,
    top: int = 10,
    legend_below: bool = False,
) -> go.Figure:
    """``value`` over ``ts``, one line per (cluster, node) of ``series``, drawn for the ``top`` nodes by
    total (the title says so when others are left out); the hover shows the value in ``hover_format``
    (d3) and ``hover_unit``."""
    keys = top_series_keys(series, ["cluster", "node"], value, top)
    n_nodes = series[["cluster", "node"]].drop_duplicates().shape[0]
    if n_nodes > top:
        title += f" (top {top} of {n_nodes} nodes by total)"
    fig = go.Figure()
    keep = pd.MultiIndex.from_frame(series[["cluster", "node"]]).isin(keys)
    grouped = dict(tuple(series[keep].groupby(["cluster", "node"], sort=False)))
    names = [f"{c}/{n}" for c, n in keys]
    for k, name in zip(keys, names, strict=True):
        part = grouped[k].sort_values("ts")
        fig.add_scatter(
            x=part["ts"],
            y=part[value].astype(float),
            mode="lines",
            name=name,
            line={"color": series_color(name, names)},
            hovertemplate=f"{html.escape(k[0])}/{html.escape(k[1])}<br>%{{x}}<br>%{{y:{hover_format}}} {hover_unit}"
            "<extra></extra>",
        )
    fig.update_xaxes(title_text="Time (UTC)")
    fig.update_yaxes(title_text=y_title, rangemode="tozero")
    return _layout(fig, title, legend_below=legend_below)


# --- CoreDNS --------------------------------------------------------------------------------------


def metric_lines(
    series: pd.DataFrame,
    metric: str,
    title: str,
    y_title: str,
    clusters: Iterable[str] | None = None,
    top: int = 10,
    hover_unit: str = "",
) -> go.Figure:
    """One line per cluster for one CoreDNS ``metric`` of the long ``coredns_series`` frame."""
    df = series[series["metric"] == metric]
    if clusters is not None:
        df = df[df["cluster"].isin(list(clusters))]
    df = df.dropna(subset=["value"])
    if df.empty:
        return empty_figure(title, f"Not collected: no {metric} series for this selection.")
    keys = top_series_keys(df, ["cluster"], "value", top)
    n = df["cluster"].nunique()
    if n > top:
        title += f" (top {top} of {n} clusters)"
    fig = go.Figure()
    grouped = dict(tuple(df[df["cluster"].isin([k[0] for k in keys])].groupby("cluster", sort=False)))
    every = series["cluster"].dropna().astype(str).unique()
    for (c,) in keys:
        part = grouped[c].sort_values("ts")
        fig.add_scatter(
            x=part["ts"],
            y=part["value"].astype(float),
            mode="lines",
            name=str(c),
            line={"color": series_color(str(c), every)},
            hovertemplate=f"{html.escape(str(c))}<br>%{{x}}<br>%{{y:.3g}} {hover_unit}<extra></extra>",
        )
    fig.update_xaxes(title_text="Time (UTC)")
    fig.update_yaxes(title_text=y_title, rangemode="tozero")
    return _layout(fig, title)


def latency_quantiles(series: pd.DataFrame, cluster: str) -> go.Figure:
    """Server-side p50 and p99 (and upstream forward p99) latency over time for one cluster."""
    title = f"CoreDNS latency quantiles: {cluster}"
    df = series[
        (series["cluster"] == cluster) & series["metric"].isin(["p50_ms", "p99_ms", "forward_p99_ms"])
    ]
    df = df.dropna(subset=["value"])
    if df.empty:
        return empty_figure(title, "Not collected: no latency series for this cluster.")
    names = {"p50_ms": "p50 (server)", "p99_ms": "p99 (server)", "forward_p99_ms": "p99 forward (upstream)"}
    dashes = {"p50_ms": "solid", "p99_ms": "solid", "forward_p99_ms": "dot"}
    colors = {"p50_ms": SERIES_COLORS[0], "p99_ms": SERIES_COLORS[1], "forward_p99_ms": SERIES_COLORS[3]}
    fig = go.Figure()
    for m in ("p50_ms", "p99_ms", "forward_p99_ms"):
        part = df[df["metric"] == m].sort_values("ts")
        if part.empty:
            continue
        fig.add_scatter(
            x=part["ts"],
            y=part["value"].astype(float),
            mode="lines",
            name=names[m],
            line={"color": colors[m], "dash": dashes[m]},
            hovertemplate=f"{names[m]}<br>%{{x}}<br>%{{y:.1f}} ms<extra></extra>",
        )
    fig.update_xaxes(title_text="Time (UTC)")
    fig.update_yaxes(title_text="Latency (ms)", rangemode="tozero")
    return _layout(fig, title)


RCODE_COLORS = {
    "NOERROR": LEVEL_COLORS["low"],
    "NXDOMAIN": "#1f77b4",
    "SERVFAIL": LEVEL_COLORS["high"],
    "REFUSED": LEVEL_COLORS["medium"],
}


def rcode_mix(series: pd.DataFrame, cluster: str) -> go.Figure:
    """Responses per second by rcode over time for one cluster (stacked areas)."""
    title = f"CoreDNS responses by rcode: {cluster}"
    df = series[(series["cluster"] == cluster) & series["metric"].str.startswith("rcode:")].dropna(
        subset=["value"]
    )
    if df.empty:
        return empty_figure(title, "Not collected: no rcode series for this cluster.")
    df = df.assign(rcode=df["metric"].str.slice(len("rcode:")))
    order = df.groupby("rcode")["value"].sum().sort_values(ascending=False).index.tolist()
    fig = go.Figure()
    for i, rc in enumerate(order):
        part = df[df["rcode"] == rc].sort_values("ts")
        fig.add_scatter(
            x=part["ts"],
            y=part["value"].astype(float),
            mode="lines",
            stackgroup="rcode",
            name=rc,
            line={"color": RCODE_COLORS.get(rc, SERIES_COLORS[(i + 4) % len(SERIES_COLORS)])},
            hovertemplate=f"{html.escape(rc)}<br>%{{x}}<br>%{{y:.3g}} responses/s<extra></extra>",
        )
    fig.update_xaxes(title_text="Time (UTC)")
    fig.update_yaxes(title_text="Responses (per second)", rangemode="tozero")
    return _layout(fig, title)


def coredns_comparison(metrics: pd.DataFrame, top: int = 30, stacked: bool = False) -> go.Figure:
    """Per-cluster comparison: query rate, server p99, forward p99 and SERVFAIL share, side by side
    (``stacked``: one panel under the other, each with its cluster labels, for a phone)."""
    title = "CoreDNS per cluster"
    df = metrics.dropna(subset=["qps", "p99_ms", "forward_p99_ms", "servfail_share"], how="all")
    if df.empty:
        return empty_figure(title, "Not collected: no CoreDNS metrics for any cluster.")
    df = df.sort_values("qps", ascending=False, na_position="last")
    if len(df) > top:
        title += f" (top {top} of {len(df)} by query rate)"
        df = df.head(top)
    panels = [
        ("qps", "Query rate (req/s)", "{:.1f} req/s", 1.0),
        ("p99_ms", "Server p99 (ms)", "{:.1f} ms", 1.0),
        ("forward_p99_ms", "Forward p99 (ms)", "{:.1f} ms", 1.0),
        ("servfail_share", "SERVFAIL (%)", "{:.2f} %", 100.0),
    ]
    if stacked:
        fig = make_subplots(
            rows=len(panels),
            cols=1,
            subplot_titles=[p[1] for p in panels],
            vertical_spacing=0.3 / len(panels),
        )
    else:
        fig = make_subplots(
            rows=1, cols=len(panels), shared_yaxes=True, subplot_titles=[p[1] for p in panels]
        )
    y = df["cluster"].astype(str).tolist()
    for i, (col, label, fmt, mult) in enumerate(panels, start=1):
        row, c = (i, 1) if stacked else (1, i)
        vals = [None if pd.isna(v) else float(v) * mult for v in df[col]]
        fig.add_bar(
            y=y,
            x=vals,
            orientation="h",
            marker_color=SERIES_COLORS[i - 1],
            showlegend=False,
            text=["not collected" if v is None else fmt.format(v) for v in vals],
            textposition="none",
            hovertemplate="<b>%{y}</b><br>" + label + ": %{text}<extra></extra>",
            row=row,
            col=c,
        )
        fig.update_xaxes(title_text=None if stacked else label, rangemode="tozero", row=row, col=c)
        if stacked or i == 1:
            fig.update_yaxes(autorange="reversed", automargin=True, row=row, col=c)
    if not stacked:
        fig.update_yaxes(title_text="Cluster", row=1, col=1)
        return _layout(fig, title, height=max(280, 120 + 24 * len(df)))
    return _layout(fig, title, height=len(panels) * (90 + 22 * len(df)))


# --- workloads ------------------------------------------------------------------------------------


def _tiles(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per group of ``keys``: pods, exposed pods, workload count and the level holding most pods
    (ties go to the more severe level). One groupby, no per-group Python loop."""
    by_level = df.pivot_table(
        index=keys, columns="level", values="pods", aggfunc="sum", fill_value=0, observed=True
    )
    by_level = by_level.reindex(columns=list(LEVELS), fill_value=0)
    out = df.groupby(keys, sort=False).agg(
        pods=("pods", "sum"), exposed=("exposed", "sum"), area=("area", "sum"), n=("pods", "size")
    )
    out["level"] = by_level.reindex(out.index).idxmax(axis=1)
    return out.reset_index()


TREEMAP_SIZES: dict[str, str] = {"pods": "pods", "exposed": "exposed pods"}


def workload_treemap(
    workloads: pd.DataFrame,
    top: int = 200,
    top_namespaces: int = 60,
    top_clusters: int = 20,
    size: str = "pods",
) -> go.Figure:
    """Treemap cluster > namespace > workload, sized by pods (or by exposed pods, ``size="exposed"``,
    where a small risky cluster is not a sliver beside big safe ones), coloured by risk level.

    At most ``top_clusters`` clusters, ``top_namespaces`` namespaces and ``top`` workloads (largest by
    pods) get their own tile; the rest is folded into one "other ..." tile per parent, so a
    100,000-pod fleet sends a few hundred tiles to the browser. Cluster tiles are neutral; a namespace
    or folded tile takes the colour of the level that holds most of its pods.
    """
    if size not in TREEMAP_SIZES:
        raise ValueError(f"size must be one of {sorted(TREEMAP_SIZES)}, not {size!r}")
    title = f"Workloads by namespace (size = {TREEMAP_SIZES[size]}, colour = risk level)"
    sized = workloads["pods" if size == "pods" else "exposed_pods"].fillna(0)
    df = workloads[sized > 0]
    if df.empty:
        what = "running pods" if size == "pods" else "exposed pods"
        return empty_figure(title, f"No workloads with {what} in the selection.")
    df = pd.DataFrame(
        {
            "cluster": df["cluster"].astype(str).to_numpy(),
            "namespace": df["namespace"].astype(str).to_numpy(),
            "wid": df["workload_id"].astype(str).to_numpy(),
            "label": (df["kind"].astype(str) + "/" + df["name"].astype(str)).to_numpy(),
            "level": df["level"].fillna("unknown").astype(str).to_numpy(),
            "pods": df["pods"].fillna(0).astype("int64").to_numpy(),
            "exposed": df["exposed_pods"].fillna(0).astype("int64").to_numpy(),
            "area": sized[sized > 0].astype("int64").to_numpy(),
            "score": df["score"].astype("Float64").to_numpy(),
            "resolver": df["resolver"].fillna("unknown").astype(str).to_numpy(),
        }
    )
    cl = _tiles(df, ["cluster"]).sort_values(["area", "cluster"], ascending=[False, True])
    shown_cl = set(cl["cluster"].head(top_clusters))
    inner = df[df["cluster"].isin(shown_cl)]
    outer = df[~df["cluster"].isin(shown_cl)]
    ns = _tiles(inner, ["cluster", "namespace"]).sort_values(["area", "namespace"], ascending=[False, True])
    ns_shown = ns.head(top_namespaces)
    ns_key = inner["cluster"] + "/" + inner["namespace"]
    in_ns = ns_key.isin(set(ns_shown["cluster"] + "/" + ns_shown["namespace"]))
    wl = inner[in_ns].sort_values(["area", "wid"], ascending=[False, True])
    wl_shown, wl_rest = wl.head(top), wl.iloc[top:]
    ns_rest = inner[~in_ns]
    folded = len(outer) + len(ns_rest) + len(wl_rest)
    if folded:
        title += f" ({len(wl_shown)} largest of {len(df):,} workloads drawn, the rest folded)"

    rows: list[tuple[str, str, str, int, str, str]] = []  # id, label, parent, area, level, hover

    def describe(what: str, pods: int, exposed: int, level: str) -> str:
        return f"{what}<br>{pods:,} pods, {exposed:,} exposed<br>most pods: {level}"

    for r in cl[cl["cluster"].isin(shown_cl)].itertuples():
        rows.append(
            (
                f"c/{r.cluster}",
                r.cluster,
                "",
                r.area,
                "",  # cluster tiles are neutral: the cluster's own score is on the overview
                describe(f"cluster {html.escape(r.cluster)}", r.pods, r.exposed, r.level),
            )
        )
    if len(outer):
        o = _tiles(outer.assign(all="all"), ["all"]).iloc[0]
        n = outer["cluster"].nunique()
        rows.append(
            (
                "c/(other)",
                f"{n} other clusters",
                "",
                int(o.area),
                o.level,
                describe(f"{n} smaller clusters", int(o.pods), int(o.exposed), o.level),
            )
        )
    for r in ns_shown.itertuples():
        rows.append(
            (
                f"n/{r.cluster}/{r.namespace}",
                r.namespace,
                f"c/{r.cluster}",
                r.area,
                r.level,
                describe(
                    f"namespace {html.escape(r.namespace)} in {html.escape(r.cluster)}",
                    r.pods,
                    r.exposed,
                    r.level,
                ),
            )
        )
    if len(ns_rest):
        for r in _tiles(ns_rest, ["cluster"]).itertuples():
            k = ns_rest.loc[ns_rest["cluster"] == r.cluster, "namespace"].nunique()
            rows.append(
                (
                    f"n/{r.cluster}/(other)",
                    f"{k} other namespaces",
                    f"c/{r.cluster}",
                    r.area,
                    r.level,
                    describe(f"{k} smaller namespaces", r.pods, r.exposed, r.level),
                )
            )
    for r in wl_shown.itertuples():
        hover = (
            f"{html.escape(r.label)}<br>{r.pods:,} pods, {r.exposed:,} exposed<br>"
            f"level {r.level}, score {score_text(r.score)}<br>resolver {html.escape(r.resolver)}"
        )
        rows.append((f"w/{r.wid}", r.label, f"n/{r.cluster}/{r.namespace}", r.area, r.level, hover))
    if len(wl_rest):
        for r in _tiles(wl_rest, ["cluster", "namespace"]).itertuples():
            rows.append(
                (
                    f"n/{r.cluster}/{r.namespace}/(other)",
                    f"{r.n} other workloads",
                    f"n/{r.cluster}/{r.namespace}",
                    r.area,
                    r.level,
                    describe(f"{r.n} smaller workloads", r.pods, r.exposed, r.level),
                )
            )
    ids, labels, parents, values, levels, hover = zip(*rows, strict=True)
    fig = go.Figure(
        go.Treemap(
            ids=list(ids),
            labels=list(labels),
            parents=list(parents),
            values=[int(v) for v in values],
            branchvalues="total",
            marker={
                "colors": [LEVEL_COLORS.get(lv, NEUTRAL) if lv else NEUTRAL for lv in levels],
                "line": {"width": 1, "color": "white"},
            },
            hovertext=list(hover),
            hovertemplate="%{hovertext}<extra></extra>",
            maxdepth=3,
        )
    )
    # A legend for the discrete level colours (a treemap has none of its own).
    for lv in LEVELS:
        fig.add_scatter(
            x=[None],
            y=[None],
            mode="markers",
            name=lv,
            marker={"color": LEVEL_COLORS[lv], "size": 12, "symbol": "square"},
            hoverinfo="skip",
        )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, title, height=520, plot_bgcolor="rgba(0,0,0,0)")
