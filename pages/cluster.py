"""Cluster: the risk breakdown in plain language, the DNS service path, and what to do first.

With a snapshot store (``DNSFLEET_STORE``) the list of clusters comes from the index (as on the Fleet
overview) and only the chosen cluster's newest scan is read and scored."""

import pandas as pd
import streamlit as st

from dashboard import charts, detail, nav, ui, views
from dashboard.state import current_assessment, store_assessment, store_overview, store_path
from dnsfleet.gaps import gap_text
from dnsfleet.verdicts import score_text

store = store_path() is not None
if store:
    ranked = store_overview()["cluster"].astype(str).tolist()
else:
    a = current_assessment()
    ranked = views.by_risk(a.clusters)["cluster"].astype(str).tolist()
st.title("Cluster")
if not ranked:
    st.info("No clusters in this data source.")
    st.stop()
cluster = ui.url_select("Cluster (highest risk first)", ranked, "cluster", default=ranked[0])
if store:
    a, latest = store_assessment((cluster,))
    got = latest.snapshot["clusters"][0].get("store") or {}
    st.caption(
        f"Newest scan of this cluster in the store: {ui.plain(got.get('scan_id') or 'none')}, stored "
        f"{ui.plain(got.get('stored_at') or 'never')} (store clock); scored on this page."
    )
    for note in latest.notes.get(cluster, []):
        st.warning(f"Store: {ui.plain(note)}")
row = views.cluster_row(a.clusters, cluster)
if store and row is not None and (used := latest.rows.get(cluster)) is not None:
    was, now = used.get("score"), row["score"]
    if str(used.get("level")) != str(row["level"]) or score_text(was) != score_text(now):
        st.info(
            f"The store index (the collector's score of this scan, as the Fleet overview shows it) says "
            f"{ui.plain(used.get('level'))} {score_text(was, na='n/a')}; scored here from the same scan: "
            f"{ui.plain(row['level'])} {score_text(now, na='n/a')}. A different dnsfleet version or "
            "resolver mapping (DNSFLEET_RESOLVER_MAP) scores differently."
        )

st.header(ui.plain(cluster))
ui.level_badge(row["level"], row["score"])
views_of = st.columns(2)
views_of[0].page_link(
    nav.page("nodes"),
    label=f"Nodes of {cluster}",
    icon=":material/memory:",
    query_params={"cluster": cluster},
)
views_of[1].page_link(
    nav.page("workloads"),
    label=f"Workloads of {cluster}",
    icon=":material/apps:",
    query_params={"cluster": cluster},
)
if row["status"] == "failed":
    st.error(f"Scan failed: {ui.plain(row['reason']) if pd.notna(row['reason']) else 'no data'}")
    st.stop()
if row["status"] == "partial":
    st.warning(
        f"Partial scan: {ui.plain(row['reason']) if pd.notna(row['reason']) else 'some resources were unreadable'}. "
        f"Unreadable: {ui.plain(row['missing']) if pd.notna(row['missing']) else 'not listed'}; "
        "what they feed is unknown."
    )

c1, c2, c3, c4 = st.columns(4)
c1.metric("Risk score", "n/a" if pd.isna(row["score"]) else f"{score_text(row['score'])} / 100")
if gap := gap_text(a.clusters, a.snapshot, cluster):  # missing metrics never lower a score unseen
    c1.caption(gap)
c2.metric(
    "Pods exposed",
    f"{ui.fmt_int(row['exposed_pods'])} of {ui.fmt_int(row['applicable_pods'])}",
    help=f"{ui.fmt_int(row['unknown_pods'])} more unknown; of {ui.fmt_int(row['pods'])} pods, "
    f"{ui.fmt_int(row['applicable_pods'])} use cluster DNS (D8)",
)
c3.metric("Nodes", ui.fmt_int(row["nodes"]))
c4.metric("Kubernetes", row["server_version"] if pd.notna(row["server_version"]) else "unknown")

st.subheader("Why")
for reason in str(row["why"] if pd.notna(row["why"]) else "no reasons recorded").split("; "):
    st.markdown(f"- {views.linked_markdown(reason)}")
if pd.notna(row["findings"]) and row["findings"]:
    st.warning(f"**Finding ([D7]({views.rules_url(['D7'])})):** {views.linked_markdown(row['findings'])}")
if pd.notna(row["unknown_resolve"]) and row["unknown_resolve"]:
    st.info(f"**Unknown:** {views.linked_markdown(row['unknown_resolve'])}")

left, right = st.columns([3, 2])
with left:
    st.subheader("Risk breakdown")
    factors = views.cluster_factors(a.factors, cluster)
    factors = factors.assign(
        factor=factors["factor"].map(charts.FACTOR_LABELS).fillna(factors["factor"]),
        rule=views.rule_links(factors["rule"]),
    )
    detail.table_with_details(
        factors.reset_index(drop=True),
        ["factor", "points", "text", "rule"],
        key="factors",
        title=["factor"],
        csv_name=f"{cluster}-factors.csv",
        what="factor",
    )
with right:
    st.subheader("DNS service path")
    facts = views.dns_path_facts(a.dns_service, cluster)
    if facts:
        st.markdown("\n".join(f"- **{label}:** {ui.plain(value)}" for label, value in facts))
    else:
        st.info("The DNS service path was not collected for this cluster.")

st.subheader("Recommendations, biggest risk reduction first")
recs = views.cluster_recommendations(a.recommendations, cluster)
if recs.empty:
    st.success(
        "No mitigation needed: no exposed pods were found." if row["score"] == 0 else "No recommendation."
    )
else:
    detail.table_with_details(
        recs.assign(rule=views.rule_links(recs["rule"]), note=recs["note"].fillna("none")).reset_index(
            drop=True
        ),
        ["mitigation", "target", "action", "risk_removed", "rule"],
        key="recs",
        title=["mitigation", "target"],
        csv_name=f"{cluster}-recommendations.csv",
        what="recommendation",
    )
    if "mitigations" in nav.available():
        st.caption(
            "Open a mitigation with this cluster and its targets selected (plan → diff → dry run → apply):"
        )
        links = st.columns(3)
        for col, (mitigation, label) in zip(
            links,
            [
                ("single-request-reopen", "Resolver options for the glibc workloads"),
                ("nodelocal-dnscache", "NodeLocal DNSCache for this cluster"),
                ("kernel-upgrade", "Kernel upgrade plan"),
            ],
            strict=True,
        ):
            targets = recs.loc[recs["mitigation"] == mitigation, "target"].dropna().astype(str).tolist()
            params = {"cluster": cluster, "mitigation": mitigation}
            if mitigation == "single-request-reopen" and len(targets) <= 40:  # keep the URL shareable
                params["workload"] = targets
            col.page_link(
                nav.page("mitigations"),
                label=f"{label} ({len(targets)})",
                icon=":material/build:",
                query_params=params,
                disabled=not targets,
            )
