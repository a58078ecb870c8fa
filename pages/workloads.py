"""Workloads: which owners run exposed pods, which resolver they use, and the fix for each."""

import streamlit as st

from dashboard import charts, detail, nav, ui, views
from dashboard.state import current_assessment

st.title("Workloads")
a = current_assessment()  # under the title: a store source draws its cluster choice here

st.caption(
    "Pods rolled up to their owner. Exposed = the node's kernel has a race open, DNS goes through conntrack "
    "DNAT and the resolver sends A+AAAA in parallel from one socket."
)

wl = a.workloads
# Two rows: Level and Resolver get half a row each, wide enough to show the chosen values.
f1, f2, f3 = st.columns([2, 2, 2])
with f1:
    clusters = ui.url_multiselect("Cluster", views.options(wl, "cluster"), "cluster")
wl = views.filter_in(wl, "cluster", clusters)
with f2:
    namespaces = ui.url_multiselect("Namespace", views.options(wl, "namespace"), "ns")
with f3:
    text = ui.url_text("Search", "q", placeholder="name, image or option")
f4, f5 = st.columns(2)
with f4:
    levels = ui.url_multiselect("Level", views.options(wl, "level"), "level")
with f5:
    resolvers = ui.url_multiselect("Resolver", views.options(wl, "resolver"), "resolver")
wl = views.filter_in(wl, "namespace", namespaces)
wl = views.filter_in(wl, "level", levels)
wl = views.filter_in(wl, "resolver", resolvers)
wl = views.search(wl, text, ["name", "image", "dns_options", "namespace"])

c1, c2, c3 = st.columns(3)
c1.metric("Workloads", ui.fmt_int(len(wl)))
c2.metric("Pods", ui.fmt_int(wl["pods"].fillna(0).sum()))
c3.metric("Pods exposed", ui.fmt_int(wl["exposed_pods"].fillna(0).sum()))

exposed_any = bool(wl["exposed_pods"].fillna(0).sum())
size = st.segmented_control(
    "Size tiles by",
    list(charts.TREEMAP_SIZES),
    format_func=charts.TREEMAP_SIZES.get,
    default="exposed" if exposed_any else "pods",
    key="treemap_size",
    help="Exposed pods: a small cluster where every pod is exposed is not a sliver beside big safe ones",
)
ui.chart(charts.workload_treemap(wl, size=size or "pods"), key="treemap")

st.subheader("Workloads, highest risk first")
detail.table_with_details(
    views.workload_table(wl),
    [
        "cluster",
        "namespace",
        "owner",
        "level",
        "score",
        "exposed_pods",
        "resolver",
        "recommended_fix",
        "rule",
    ],
    key="workloads",
    title=["cluster", "namespace", "owner"],
    csv_name="workloads.csv",
    what="workload",
)

# One click from here into the mitigation flow for the shown workloads that a resolver option fixes.
if "mitigations" in nav.available():
    fixable = wl[wl["recommended_fix"] == "single-request-reopen"]
    by_cluster = fixable.groupby("cluster")["workload_id"].apply(list).sort_index()
    if len(by_cluster):
        st.caption(
            "Fix the glibc workloads shown above with single-request-reopen (plan → diff → dry run → apply):"
        )
        for cluster, ids in list(by_cluster.items())[:6]:
            params = {"cluster": cluster, "mitigation": "single-request-reopen"}
            if len(ids) <= 40:  # keep the URL shareable; the page can also select all recommended ones
                params["workload"] = ids
            st.page_link(
                nav.page("mitigations"),
                label=f"{cluster}: {len(ids)} workload(s)",
                icon=":material/build:",
                query_params=params,
            )
