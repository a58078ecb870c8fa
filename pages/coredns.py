"""CoreDNS: load, latency, answers and upstream latency per cluster, from Prometheus or one scrape.

When metrics are missing the page says why, per cluster (no Prometheus URL, Prometheus unreachable,
or reachable with its newest samples outside the window), and what the scores could not count.
"""

import pandas as pd
import streamlit as st

from dashboard import charts, detail, evidence_view, responsive, ui, views
from dashboard.state import current_assessment, current_source
from dnsfleet.gaps import score_gaps

st.title("CoreDNS")
a = current_assessment()  # under the title: a store source draws its cluster choice here
src = current_source()

st.warning(
    "A query lost to the conntrack race never reaches CoreDNS: the client waits its resolver timeout "
    "(5 s on glibc, 2.5 s on musl) and retries. Those waits do **not** show in CoreDNS latency; use the "
    "node conntrack counters or client-side latency for that.",
    icon=":material/info:",
)

responsive.style()
metrics = a.coredns_metrics
failed = set(a.clusters.loc[a.clusters["status"] == "failed", "cluster"])
missing = metrics[metrics["qps"].isna() & ~metrics["cluster"].isin(failed)] if len(metrics) else metrics
if len(missing):
    lines = []
    for cluster, source, note in zip(missing["cluster"], missing["source"], missing["note"], strict=True):
        why = note if isinstance(note, str) and note else f"source: {source}"
        lines.append(f"- **{ui.md_text(cluster)}**: {ui.md_text(why)}")
    st.warning(
        f"CoreDNS metrics missing for {len(missing)} of {len(metrics) - len(failed)} scanned cluster(s):\n"
        + "\n".join(lines),
        icon=":material/query_stats:",
    )
gaps = score_gaps(a.clusters, a.snapshot)
if len(gaps):
    st.info(
        "Scores computed without metrics:\n"
        + "\n".join(
            f"- **{ui.md_text(c)}**: {t}" for c, t in zip(gaps["cluster"], gaps["text"], strict=True)
        ),
        icon=":material/functions:",
    )

st.subheader("Per cluster")
with responsive.wide("compare"):
    ui.chart(charts.coredns_comparison(metrics), key="compare")
with responsive.phone("compare"):
    ui.chart(charts.coredns_comparison(metrics, stacked=True), key="compare_phone")
collected = metrics.dropna(subset=["qps", "p99_ms", "forward_p99_ms", "servfail_share"], how="all")
missing = metrics.drop(collected.index)
if len(missing):  # listed with their reason, not as rows of empty cells
    st.caption(
        "Not collected: "
        + "; ".join(
            f"{views.md_escape(r.cluster)} ({views.md_escape(r.note if isinstance(r.note, str) else r.source)})"
            for r in missing.itertuples()
        )
    )
detail.table_with_details(
    collected.sort_values("qps", ascending=False, na_position="last")
    .assign(note=collected["note"].fillna("none"))
    .reset_index(drop=True),
    ["cluster", "source", "qps", "p99_ms", "forward_p99_ms", "servfail_share", "note"],
    key="metrics",
    title=["cluster"],
    csv_name="coredns.csv",
    what="cluster",
)

evidence_view.render_coredns(a, metrics.sort_values("qps", ascending=False)["cluster"].tolist())

st.subheader("Over time")
with_series = views.options(a.coredns_series, "cluster") if len(a.coredns_series) else []
if not with_series:
    if src["kind"] == "kubeconfig" and src.get("prometheus_url"):
        st.info(
            "Not collected: no CoreDNS time series came back from Prometheus for the window scanned "
            "(the reasons per cluster are above). Choose another time in the sidebar's **Metrics time "
            "range** and press **Scan**."
        )
    else:
        st.info(
            "Not collected: no CoreDNS time series (they need a Prometheus URL; a direct scrape is a "
            "single point in time)."
        )
    st.stop()
ts = pd.to_datetime(a.coredns_series["ts"])
st.caption(
    f"Series from {ts.min():%Y-%m-%d %H:%M} to {ts.max():%Y-%m-%d %H:%M} UTC"
    + (
        " (the sidebar's **Metrics time range** sets them for the next scan)"
        if src["kind"] == "kubeconfig"
        else ""
    )
)
chosen = ui.url_multiselect("Clusters", with_series, "cluster", help="Empty: the busiest clusters")
series = views.filter_in(a.coredns_series, "cluster", chosen)
ui.chart_pair(
    (
        charts.metric_lines(
            series, "qps", "CoreDNS request rate", "Requests (per second)", hover_unit="req/s"
        ),
        "qps",
    ),
    (
        charts.metric_lines(
            series, "forward_p99_ms", "Upstream (forward) latency p99", "Latency (ms)", hover_unit="ms"
        ),
        "forward",
    ),
)
focus = ui.url_select("Cluster for latency and rcodes", chosen or with_series, "focus")
left, right = st.columns(2)
with left:
    ui.chart(charts.latency_quantiles(a.coredns_series, focus), key="latency")
with right:
    caveat = views.rcode_caveat(a.dns_service, focus)
    if caveat:  # the chart would show wrong shares: say why it is not drawn instead
        st.markdown(f"**CoreDNS responses by rcode: {views.md_escape(focus)}**")
        st.info(f"Not drawn: {views.md_escape(caveat)}", icon=":material/info:")
    else:
        ui.chart(charts.rcode_mix(a.coredns_series, focus), key="rcodes")
