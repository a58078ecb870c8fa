"""Fleet overview: which clusters will stall DNS for seconds, and why, at a glance.

On a phone (one column) the ranking comes first, then the headline numbers, then the table."""

import streamlit as st

from dashboard import charts, detail, nav, responsive, ui, views
from dashboard.state import current_assessment, current_source

a = current_assessment()
src = current_source()
responsive.style()

st.title("Fleet overview")
st.caption(
    "Risk of the Linux conntrack/DNAT race that drops one of a pod's parallel A/AAAA DNS queries, so the "
    f"lookup waits for the resolver timeout (5 s on glibc). Data: **{src['label']}**."
)

with responsive.phone_order(2):
    m = views.fleet_metrics(a.clusters, a.workloads)
    c1, c2, c3, c4, c5 = st.columns(5)
    c1.metric(
        "Clusters",
        ui.fmt_int(m["clusters"]),
        help="Clusters in the data source"
        + (f"; {m['clusters_failed']} failed to scan" if m["clusters_failed"] else ""),
    )
    c2.metric("Nodes", ui.fmt_int(m["nodes"]))
    c3.metric(
        "Workloads",
        ui.fmt_int(m["workloads"]),
        help=f"{ui.fmt_int(m['pods'])} pods rolled up to their owners",
    )
    c4.metric(
        "Pods exposed",
        ui.fmt_share(m["exposed_share"]),
        help=f"{ui.fmt_int(m['exposed_pods'])} of {ui.fmt_int(m['pods'])} pods: kernel race open, DNS through "
        "conntrack DNAT and a resolver that sends A+AAAA in parallel from one socket",
    )
    c5.metric("Clusters at high risk", ui.fmt_int(m["clusters_high"]))

    if m["clusters_failed"]:
        failed = a.clusters[a.clusters["status"] == "failed"]
        st.warning(
            f"{m['clusters_failed']} cluster(s) could not be scanned:\n"
            + "\n".join(
                f"- **{ui.md_text(c)}**: {ui.md_text(r) if isinstance(r, str) and r else 'no reason recorded'}"
                for c, r in zip(failed["cluster"], failed["reason"], strict=True)
            )
        )

with responsive.phone_order(1):
    left, right = st.columns([1, 1])
    with left:
        ui.chart(charts.ranking_bar(a.clusters), key="ranking")
    with right:
        with responsive.wide("heatmap"):
            ui.chart(charts.factor_heatmap(a.clusters), key="heatmap")
        with responsive.phone("heatmap"):
            ui.chart(charts.factor_heatmap(a.clusters, compact=True), key="heatmap_phone")
    ui.level_legend()

with responsive.phone_order(3):
    st.subheader("Clusters")
    st.caption(
        "Select a row to open the cluster (every figure in full), or use the link to share it. "
        "Rule ids link to their explanation."
    )
    table = views.cluster_table(a.clusters)
    event = ui.table(
        table,
        ["cluster", "open", "level", "score", "status", "exposed_share", "unknown_pods", "why", "rule"],
        key="clusters_table",
        select=True,
    )
    detail.csv_button(table, "clusters.csv", key="clusters_table")
    rows = event.selection.rows if event is not None else []
    if rows:
        chosen = table.iloc[rows[0]]["cluster"]
        st.switch_page(nav.page("cluster"), query_params={"cluster": chosen})

    top = views.by_risk(a.clusters).head(1)
    if len(top):
        st.page_link(
            nav.page("cluster"),
            label=f"Highest risk: {top['cluster'].iloc[0]}",
            icon=":material/arrow_forward:",
            query_params={"cluster": str(top["cluster"].iloc[0])},
        )
