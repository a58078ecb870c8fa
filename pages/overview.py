"""Fleet overview: which clusters will stall DNS for seconds, and why, at a glance.

On a phone (one column) the ranking comes first, then the headline numbers, then the table.

With a snapshot store (``DNSFLEET_STORE``) the page reads the store's index only: each cluster's newest
row, scored by its collector when it was written (``dnsfleet.store.overview``); no cluster object is
read and nothing is scored here. Opening a cluster loads and scores that one cluster."""

import streamlit as st

from dashboard import charts, detail, nav, responsive, ui, views
from dashboard.state import current_assessment, current_source, store_heads_shown, store_overview, store_path
from dnsfleet.store.overview import STALE_AFTER, overview_metrics
from dnsfleet.verdicts import round_score

FAILED_LISTED = 20  # failed clusters named in the warning; the table has every one


def _store_page() -> None:
    src = current_source()
    ov = store_overview()
    responsive.style()
    st.title("Fleet overview")
    st.caption(
        "Risk of the Linux conntrack/DNAT race that drops one of a pod's parallel A/AAAA DNS queries, so the "
        f"lookup waits for the resolver timeout (5 s on glibc). Data: **{ui.plain(src['label'])}**, each "
        "cluster's newest scan as its collector scored it (the store index); open a cluster to load its "
        "scan and see every figure."
    )
    if ov.empty:
        st.info(
            "No scans in this store yet. Write some with `dnsfleet scan --store URL` or the in-cluster "
            "collector (`dnsfleet deploy collector`)."
        )
        return
    m = overview_metrics(ov)
    with responsive.phone_order(2):
        c1, c2, c3, c4, c5 = st.columns(5)
        c1.metric(
            "Clusters",
            ui.fmt_int(m["clusters"]),
            help="Clusters in the store"
            + (f"; {m['clusters_failed']} failed to scan" if m["clusters_failed"] else "")
            + (f"; {m['clusters_stale']} stale" if m["clusters_stale"] else ""),
        )
        c2.metric("Nodes", ui.fmt_int(m["nodes"]))
        c3.metric("Pods", ui.fmt_int(m["pods"]), help="Pods in each cluster's newest scan")
        c4.metric(
            "Pods exposed",
            ui.fmt_share(m["exposed_share"]),
            help=f"{ui.fmt_int(m['exposed_pods'])} of {ui.fmt_int(m['pods'])} pods: kernel race open, DNS "
            "through conntrack DNAT and a resolver that sends A+AAAA in parallel from one socket",
        )
        c5.metric("Clusters at high risk", ui.fmt_int(m["clusters_high"]))
        failed = ov[ov["status"] == "failed"].head(FAILED_LISTED)
        if m["clusters_failed"]:
            lines = [
                f"- **{ui.md_text(c)}**: {ui.md_text(r) if isinstance(r, str) and r else 'no reason recorded'}"
                for c, r in zip(failed["cluster"], failed["reason"], strict=True)
            ]
            if m["clusters_failed"] > FAILED_LISTED:
                lines.append(
                    f"- and {m['clusters_failed'] - FAILED_LISTED:,} more (status failed in the table)"
                )
            st.warning(f"{m['clusters_failed']} cluster(s) failed their newest scan:\n" + "\n".join(lines))
        if m["clusters_stale"]:
            hours = STALE_AFTER.total_seconds() / 3600
            st.warning(
                f"{m['clusters_stale']} cluster(s) have no scan stored for over {hours:.0f} hours: their "
                "collector may have stopped (see the Caveats column)."
            )
        for n in store_heads_shown().fleet_notes:
            st.warning(ui.plain(n))
    with responsive.phone_order(1):
        ui.chart(charts.ranking_bar(ov.assign(why=ov["note"])), key="ranking")
        ui.level_legend()
    with responsive.phone_order(3):
        st.subheader("Clusters")
        st.caption(
            "Select a row to open the cluster (its newest scan, loaded and scored), or use the link to "
            "share it. Scan times are the store's clock. Caveats: failed, partial or stale scans, clock "
            "skew, index rows this dnsfleet cannot use, two collectors on one name."
        )
        pods = ov["pods"].astype("Float64")
        table = ov.assign(
            open=[views.cluster_url(c) for c in ov["cluster"]],
            score=round_score(ov["score"]),
            exposed_share=ov["exposed_pods"].astype("Float64") / pods.where(pods > 0),
            collected_at=ov["scan_time"],
            collector_clock=ov["collected_at"],
        ).drop(columns=["scan_time"])
        event = ui.table(
            table,
            [
                "cluster",
                "open",
                "level",
                "score",
                "status",
                "exposed_share",
                "unknown_pods",
                "collected_at",
                "note",
            ],
            key="clusters_table",
            select=True,
        )
        detail.csv_button(table, "clusters.csv", key="clusters_table")
        rows = event.selection.rows if event is not None else []
        if rows:
            st.switch_page(nav.page("cluster"), query_params={"cluster": table.iloc[rows[0]]["cluster"]})
        if len(ov):
            top = str(ov["cluster"].iloc[0])
            st.page_link(
                nav.page("cluster"),
                label=f"Highest risk: {top}",
                icon=":material/arrow_forward:",
                query_params={"cluster": top},
            )


if store_path() is not None:
    _store_page()
    st.stop()

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
