"""History: per-cluster risk and exposed pods over time from the snapshot store's index, regressions
flagged, applied mitigations (audit log) marked on the same time axis, and the history as CSV.

The store is ``DNSFLEET_STORE`` (a directory or ``s3://BUCKET/PREFIX?endpoint=...``), else the local
default the CLI writes to (``dnsfleet scan --store``). Only the index is read here (one small row per
cluster per scan), never the snapshot objects.
"""

import os

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import ui, views
from dashboard.charts import _layout, empty_figure, series_color
from dnsfleet.mitigate.audit import AuditLog
from dnsfleet.report import to_csv_bytes
from dnsfleet.store import SnapshotStore, StoreError
from dnsfleet.store.history import history_frame, mitigation_marks

INDEX_TTL_S = 60
CHART_CLUSTERS = 12  # clusters drawn when none is chosen: a chart of 1,000 lines shows nothing
SHOWN_COLUMNS = [
    "cluster",
    "scan_time",
    "level",
    "score",
    "exposed_pods",
    "unknown_pods",
    "nodes",
    "insert_failed",
    "status",
    "regression_why",
    "note",
]


@st.cache_resource(ttl=INDEX_TTL_S, max_entries=2, show_spinner="Reading the store index…")
def _history(url: str | None) -> tuple[pd.DataFrame, dict[str, list[str]], list[str], str]:
    st_ = SnapshotStore(url)
    idx = st_.read_index()
    return history_frame(idx), idx.notes, idx.fleet_notes, st_.url


@st.cache_data(ttl=INDEX_TTL_S, max_entries=2, show_spinner=False)
def _marks(path: str, mtime: float) -> pd.DataFrame:
    return mitigation_marks(AuditLog(path).records())


def _audit_marks() -> pd.DataFrame:
    log = AuditLog()
    try:
        mtime = os.path.getmtime(log.path)
    except OSError:
        return mitigation_marks([])
    return _marks(str(log.path), mtime)


def _lines(df: pd.DataFrame, marks: pd.DataFrame, value: str, title: str, names: list[str]) -> go.Figure:
    if df.empty or df[value].isna().all():
        return empty_figure(title, "No scan in the store has this value yet.")
    fig = go.Figure()
    for name, g in df.groupby("cluster", sort=True):
        color = series_color(str(name), names)
        fig.add_trace(
            go.Scatter(
                x=g["scan_time"],
                y=g[value].astype(float),
                mode="lines+markers",
                name=str(name),
                line={"color": color},
                hovertemplate=f"{name}<br>%{{x|%Y-%m-%d %H:%M}} UTC<br>{value}: %{{y:.0f}}<extra></extra>",
            )
        )
        reg = g[g["regression"]]
        if not reg.empty:
            fig.add_trace(
                go.Scatter(
                    x=reg["scan_time"],
                    y=reg[value].astype(float),
                    mode="markers",
                    name=f"{name}: regression",
                    showlegend=False,
                    marker={"symbol": "triangle-up", "size": 13, "color": "#d62728", "line": {"width": 1}},
                    text=reg["regression_why"],
                    hovertemplate=f"{name} regression<br>%{{text}}<extra></extra>",
                )
            )
    for m in marks.itertuples(index=False):
        fig.add_vline(x=m.time, line={"dash": "dot", "color": "#2ca02c", "width": 1})
    if not marks.empty:
        fig.add_trace(
            go.Scatter(
                x=marks["time"],
                y=[0] * len(marks),
                mode="markers",
                name="mitigation applied",
                marker={"symbol": "diamond", "size": 10, "color": "#2ca02c"},
                text=marks["cluster"]
                + ": "
                + marks["mitigation"]
                + " ("
                + marks["objects"].astype(str)
                + " objects)",
                hovertemplate="%{text}<br>%{x|%Y-%m-%d %H:%M} UTC<extra></extra>",
            )
        )
    return _layout(fig, title, legend_below=True, xaxis_title="scan time (store clock, UTC)")


def _newest_table(df: pd.DataFrame, height: int | str = "auto") -> None:
    """Newest scans first, at most ``views.TABLE_LIMIT`` rows sent to the browser (said when cut)."""
    shown = views.cap(df[SHOWN_COLUMNS].iloc[::-1])
    if shown.note:
        st.caption(
            f"Showing the newest {len(shown.frame):,} of {shown.total:,} rows; the CSV below has every one."
        )
    st.dataframe(shown.frame, hide_index=True, width="stretch", height=height)


st.title("History")
url = os.environ.get("DNSFLEET_STORE") or None
try:
    hist, notes, fleet_notes, shown_url = _history(url)
except StoreError as e:
    st.error(f"Cannot read the snapshot store: {e}")
    st.stop()
st.caption(f"Store: **{shown_url}** · one row per cluster per scan · refreshed every {INDEX_TTL_S} s.")
if hist.empty:
    st.info(
        "No scans in this store yet. Write some with `dnsfleet scan --store URL` (or the in-cluster "
        "collector, `dnsfleet deploy collector`) and set `DNSFLEET_STORE` for the dashboard."
    )
    st.stop()

names = sorted(hist["cluster"].unique())
chosen = ui.url_multiselect("Clusters", names, "hc", help="Empty: every cluster")
view = hist[hist["cluster"].isin(chosen)] if chosen else hist
marks = _audit_marks()
if chosen and not marks.empty:
    marks = marks[marks["cluster"].isin(chosen)]
elif not marks.empty:
    marks = marks[marks["cluster"].isin(names)]

regs = view[view["regression"]]
c1, c2, c3 = st.columns(3)
c1.metric("Clusters", f"{view['cluster'].nunique():,}")
c2.metric("Scans", f"{len(view):,}")
c3.metric("Regressions", f"{len(regs):,}")

for name in chosen or names:
    for n in notes.get(name, []):
        st.warning(f"{name}: {n}")
for n in fleet_notes:
    st.warning(n)

drawn = chosen or names
if not chosen and len(names) > CHART_CLUSTERS:
    newest = hist.groupby("cluster", sort=False).tail(1)
    top = newest.sort_values(["score", "cluster"], ascending=[False, True], na_position="last")
    drawn = sorted(top["cluster"].head(CHART_CLUSTERS))
    st.caption(
        f"The charts show the {CHART_CLUSTERS} clusters with the highest newest score of {len(names):,}; "
        "choose clusters above to chart others. The tables and the CSV hold every cluster."
    )
chart_view = view[view["cluster"].isin(drawn)]
chart_marks = marks[marks["cluster"].isin(drawn)] if not marks.empty else marks
ui.chart(_lines(chart_view, chart_marks, "score", "Risk score over time", drawn), key="hist.score")
ui.chart(_lines(chart_view, chart_marks, "exposed_pods", "Exposed pods over time", drawn), key="hist.exposed")
ui.chart(
    _lines(
        chart_view,
        chart_marks,
        "insert_failed",
        "Evidence: conntrack insert_failed increase per scan window",
        drawn,
    ),
    key="hist.evidence",
)

st.subheader("Regressions")
if regs.empty:
    st.caption("No scan was worse than the cluster's previous one (level, score +10 or exposed pods +10%).")
else:
    _newest_table(regs)

st.subheader("Scans")
_newest_table(view, height=360)
st.download_button(
    "Download history CSV",
    lambda: to_csv_bytes(view),  # built when clicked, not on every run (30,000 rows: ~1 s)
    file_name="dnsfleet-history.csv",
    mime="text/csv",
    key="hist.csv",
)
