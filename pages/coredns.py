"""CoreDNS: load, latency, answers and upstream latency per cluster, from Prometheus or one scrape."""

import streamlit as st

from dashboard import charts, evidence_view, ui, views
from dashboard.state import current_assessment

a = current_assessment()

st.title("CoreDNS")
st.warning(
    "A query lost to the conntrack race never reaches CoreDNS: the client waits its resolver timeout "
    "(5 s on glibc, 2.5 s on musl) and retries. Those waits do **not** show in CoreDNS latency; use the "
    "node conntrack counters or client-side latency for that.",
    icon=":material/info:",
)

metrics = a.coredns_metrics
st.subheader("Per cluster")
ui.chart(charts.coredns_comparison(metrics), key="compare")
ui.table(
    metrics.sort_values("qps", ascending=False, na_position="last"),
    [
        "cluster",
        "source",
        "qps",
        "p50_ms",
        "p99_ms",
        "forward_p99_ms",
        "share_over_1s",
        "servfail_share",
        "nxdomain_share",
        "window_s",
        "note",
    ],
    key="metrics",
)

evidence_view.render_coredns(a, metrics.sort_values("qps", ascending=False)["cluster"].tolist())

st.subheader("Over time")
with_series = views.options(a.coredns_series, "cluster") if len(a.coredns_series) else []
if not with_series:
    st.info(
        "Not collected: no CoreDNS time series (they need a Prometheus URL; a direct scrape is a "
        "single point in time)."
    )
    st.stop()
chosen = ui.url_multiselect("Clusters", with_series, "cluster", help="Empty: the busiest clusters")
series = views.filter_in(a.coredns_series, "cluster", chosen)
left, right = st.columns(2)
with left:
    ui.chart(
        charts.metric_lines(
            series, "qps", "CoreDNS request rate", "Requests (per second)", hover_unit="req/s"
        ),
        key="qps",
    )
with right:
    ui.chart(
        charts.metric_lines(
            series, "forward_p99_ms", "Upstream (forward) latency p99", "Latency (ms)", hover_unit="ms"
        ),
        key="forward",
    )
focus = ui.url_select("Cluster for latency and rcodes", chosen or with_series, "focus")
left, right = st.columns(2)
with left:
    ui.chart(charts.latency_quantiles(a.coredns_series, focus), key="latency")
with right:
    ui.chart(charts.rcode_mix(a.coredns_series, focus), key="rcodes")
