"""Nodes & kernels: which kernels still have the conntrack races open, where, and what the counters say."""

import streamlit as st

from dashboard import charts, detail, evidence_view, ui, views
from dashboard.state import current_assessment
from dnsfleet.verdicts import kernel_verdict

st.title("Nodes & kernels")
a = current_assessment()  # under the title: a store source draws its cluster choice here

st.caption(
    "Race 1 is fixed in 4.19, race 2 in 5.0, race 3 in 5.6 (or a vendor backport); race 3 needs two or "
    "more DNS endpoints. An NFQUEUE policy agent re-opens a clash path before 6.12."
)

f1, f2, f3, f4 = st.columns(4)
with f1:
    clusters = ui.url_multiselect("Cluster", views.options(a.nodes, "cluster"), "cluster")
nodes = views.filter_in(a.nodes, "cluster", clusters)
with f2:
    pools = ui.url_multiselect("Node pool", views.options(nodes, "pool"), "pool")
with f3:
    levels = ui.url_multiselect("Level", views.options(nodes, "level"), "level")
with f4:
    text = ui.url_text("Search", "q", placeholder="node, kernel or OS image")
nodes = views.filter_in(nodes, "pool", pools)
nodes = views.filter_in(nodes, "level", levels)
nodes = views.search(nodes, text, ["node", "kernel_version", "os_image", "distro"])

c1, c2, c3 = st.columns(3)
c1.metric("Nodes", ui.fmt_int(len(nodes)))
c2.metric("Nodes with race 1, 2 or 3 open", ui.fmt_int(int((kernel_verdict(nodes) == "open").sum())))
c3.metric("Distinct kernels", ui.fmt_int(nodes["kernel_version"].nunique()))

left, right = st.columns(2)
with left:
    ui.chart(charts.race_status_bars(nodes), key="races")
with right:
    ui.chart(charts.kernel_bars(nodes), key="kernels")

st.subheader("Node pools")
ui.table(
    views.pool_summary(nodes),
    ["cluster", "pool", "nodes", "ready_nodes", "nodes_open", "max_score", "kernels"],
    key="pools",
)

st.subheader("Nodes")
detail.table_with_details(
    views.node_table(nodes),
    ["cluster", "node", "level", "score", "kernel_version", "race1", "race2", "race3", "why", "rule"],
    key="nodes",
    title=["cluster", "node"],
    csv_name="nodes.csv",
    what="node",
)

st.subheader("conntrack insert_failed")
st.caption(
    "node_exporter's node_nf_conntrack_stat_insert_failed. On kernels >= 5.10 every increment is a dropped "
    "packet; before 5.10 it also counts clashes the kernel resolved (harmless)."
)
ct = views.filter_in(a.conntrack, "cluster", clusters)
ct = ct[ct["node"].isin(nodes["node"])] if (pools or levels or text) else ct
summary = views.conntrack_summary(ct)
missing = summary[summary["nodes_collected"] == 0] if len(summary) else summary
covered = set(a.conntrack.loc[a.conntrack["available"].fillna(False).astype(bool), "cluster"])
not_seen = sorted(set(nodes["cluster"]) - covered)
if not_seen:
    st.info(
        "Not collected for "
        + ", ".join(not_seen)
        + ": no node_exporter conntrack series (no Prometheus URL, or node_exporter is absent or not on the "
        "host network). Without them there is no evidence either way."
    )
series = views.filter_in(a.conntrack_series, "cluster", clusters)
series = series[series["node"].isin(nodes["node"])]
ui.chart(charts.conntrack_lines(series), key="conntrack")
if len(summary):
    ui.table(
        summary, ["cluster", "nodes_collected", "nodes", "insert_failed_increase", "not_collected"], key="ct"
    )

evidence_view.render_nodes(a, clusters, nodes["node"])
