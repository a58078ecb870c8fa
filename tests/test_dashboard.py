"""AppTest of the dashboard: every page on the demo fleet, deep links, source switching, a failed
cluster row (from an uploaded snapshot and from a real unreachable API server), user errors."""

from __future__ import annotations

import ast
import socket
import urllib.parse
from pathlib import Path

import pytest
import yaml
from streamlit.testing.v1 import AppTest

from dashboard import views
from dashboard.ui import plain
from dnsfleet.demo import demo_snapshot
from dnsfleet.engine import analyze
from dnsfleet.report import csv_reports
from dnsfleet.snapshot import dumps, new_snapshot

pytestmark = pytest.mark.usefixtures("clean_app")

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "dashboard" / "app.py")
SECRET_TOKEN = "t0ken-must-never-be-shown-4242"


@pytest.fixture(scope="module")
def demo():
    return analyze(demo_snapshot())


def run_app(page: str | None = None, query: dict[str, str] | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    if page:
        at.switch_page(f"../pages/{page}.py")
    for k, v in (query or {}).items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at: AppTest) -> str:
    """Everything readable on the page (markdown, captions, alerts, headers, metrics, badges)."""
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    parts += [e.value for e in (*at.error, *at.warning, *at.info, *at.success)]
    parts += [h.value for h in (*at.title, *at.header, *at.subheader)]
    parts += [f"{m.label}={m.value}" for m in at.metric]
    return "\n".join(str(p) for p in parts)


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def upload(at: AppTest, name: str, data: bytes) -> AppTest:
    at.sidebar.radio[0].set_value("snapshot").run()
    at.sidebar.file_uploader[0].set_value((name, data, "application/octet-stream")).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def uploaded(name: str, data: bytes) -> AppTest:
    """The dashboard opened afresh with ``data`` uploaded as the snapshot file ``name``."""
    return upload(AppTest.from_file(APP, default_timeout=120).run(), name, data)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- every page on the demo fleet -----------------------------------------------------------------


def test_overview_shows_metrics_ranking_and_top_cluster(demo):
    at = run_app()
    m = views.fleet_metrics(demo.clusters, demo.workloads)
    assert metric(at, "Clusters") == str(m["clusters"])
    assert metric(at, "Nodes") == f"{m['nodes']:,}"
    assert metric(at, "Workloads") == f"{m['workloads']:,}"
    assert metric(at, "Clusters at high risk") == str(m["clusters_high"])
    assert metric(at, "Pods exposed") == f"{100 * m['exposed_share']:.1f} %"
    table = at.dataframe[0].value
    top = demo.clusters.iloc[0]["cluster"]
    assert table["cluster"].iloc[0] == top
    assert list(table["cluster"]) == list(views.by_risk(demo.clusters)["cluster"])
    assert table["open"].iloc[0] == views.cluster_url(top)
    assert [p.label for p in at.page_link] == [f"Highest risk: {top}"]
    assert [c.key for c in at.get("plotly_chart")] == ["ranking", "heatmap", "heatmap_phone"]
    badge = " ".join(m.value for m in at.sidebar.markdown)
    assert "DEMO FLEET" in badge


def test_overview_lists_the_failed_demo_cluster_with_its_reason(demo):
    failed = demo.clusters[demo.clusters["status"] == "failed"]
    assert len(failed) == 1, "the demo fleet is expected to carry one failed cluster"
    at = run_app()
    table = at.dataframe[0].value
    row = table[table["cluster"] == failed["cluster"].iloc[0]].iloc[0]
    assert row["status"] == "failed"
    assert row["why"] == f"scan failed: {failed['reason'].iloc[0]}"
    assert "could not be scanned" in texts(at)


def test_cluster_page_defaults_to_top_cluster_with_why_path_and_recommendations(demo):
    at = run_app("cluster")
    top = demo.clusters.iloc[0]
    assert at.header[0].value == top["cluster"]
    assert at.selectbox[0].value == top["cluster"]
    body = texts(at)
    for reason in str(top["why"]).split("; "):
        assert views.linked_markdown(reason) in body  # rule ids linked to the Rules page
    assert "[K8](rules?rule=K8)" in body
    assert "kube-proxy mode" in body and "Corefile plugins" in body
    factors, recs = at.dataframe[0].value, at.dataframe[1].value
    assert len(factors) == len(views.cluster_factors(demo.factors, top["cluster"]))
    expected = views.cluster_recommendations(demo.recommendations, top["cluster"])
    assert len(recs) == len(expected) > 0
    assert list(recs["risk_removed"]) == sorted(recs["risk_removed"], reverse=True)
    assert at.query_params["cluster"] == [top["cluster"]] or at.query_params["cluster"] == top["cluster"]


def test_cluster_page_links_each_recommended_mitigation(demo):
    at = run_app("cluster")
    top = demo.clusters.iloc[0]["cluster"]
    recs = views.cluster_recommendations(demo.recommendations, top)
    links = {link.proto.label: link for link in at.get("page_link")}
    srr = recs[recs["mitigation"] == "single-request-reopen"]
    label = f"Resolver options for the glibc workloads ({len(srr)})"
    assert label in links and not links[label].proto.disabled
    query = urllib.parse.parse_qs(links[label].proto.query_string)
    assert query["cluster"] == [top] and query["mitigation"] == ["single-request-reopen"]
    assert sorted(query["workload"]) == sorted(srr["target"])
    kernel = (recs["mitigation"] == "kernel-upgrade").sum()
    assert f"Kernel upgrade plan ({kernel})" in links


def test_workloads_page_links_fixable_workloads_to_mitigations(demo):
    at = run_app("workloads", {"cluster": "aks-legacy-weu"})
    fixable = demo.workloads[
        (demo.workloads["cluster"] == "aks-legacy-weu")
        & (demo.workloads["recommended_fix"] == "single-request-reopen")
    ]
    links = [link.proto for link in at.get("page_link") if link.proto.page == "mitigations"]
    assert [link.label for link in links] == [f"aks-legacy-weu: {len(fixable)} workload(s)"]
    query = urllib.parse.parse_qs(links[0].query_string)
    assert query["mitigation"] == ["single-request-reopen"]
    assert sorted(query["workload"]) == sorted(fixable["workload_id"])


def test_cluster_deep_link_and_selection_update_the_url(demo):
    second, third = demo.clusters["cluster"].iloc[1], demo.clusters["cluster"].iloc[2]
    at = run_app("cluster", {"cluster": second})
    assert at.header[0].value == second
    at.selectbox[0].select(third).run()
    assert at.header[0].value == third
    assert at.query_params["cluster"] in (third, [third])


def test_cluster_page_for_failed_cluster_says_why_without_exception(demo):
    failed = demo.clusters.loc[demo.clusters["status"] == "failed", "cluster"].iloc[0]
    at = run_app("cluster", {"cluster": failed})
    assert any("Scan failed" in e.value for e in at.error)


def test_unknown_cluster_in_url_falls_back_to_top(demo):
    at = run_app("cluster", {"cluster": "no-such-cluster"})
    assert at.header[0].value == demo.clusters.iloc[0]["cluster"]


def test_nodes_page_tables_filters_and_not_collected_note(demo):
    at = run_app("nodes")
    assert metric(at, "Nodes") == f"{len(demo.nodes):,}"
    pools, nodes = at.dataframe[0].value, at.dataframe[1].value
    assert len(nodes) == len(demo.nodes)
    assert pools["nodes"].sum() == len(demo.nodes)
    no_ct = set(demo.nodes["cluster"]) - set(
        demo.conntrack.loc[demo.conntrack["available"].fillna(False), "cluster"]
    )
    if no_ct:
        assert any("Not collected" in i.value for i in at.info)
    one = demo.clusters.iloc[0]["cluster"]
    at.multiselect[0].select(one).run()
    assert not at.exception
    nodes = at.dataframe[1].value
    assert set(nodes["cluster"]) == {one}
    assert at.query_params["cluster"] in (one, [one])


def test_coredns_page_has_the_charts_and_the_client_side_note(demo):
    at = run_app("coredns")
    assert any("do **not** show in CoreDNS latency" in w.value for w in at.warning)
    charts = [c.key for c in at.get("plotly_chart")]
    # comparison (desktop and phone variants), request rate, forward p99, quantiles, rcode mix
    assert charts == ["compare", "compare_phone", "qps", "forward", "latency", "rcodes"]
    metrics = at.dataframe[0].value
    every = set(demo.coredns_metrics["cluster"])
    missing = set(demo.coredns_metrics.loc[demo.coredns_metrics["qps"].isna(), "cluster"])
    assert missing and set(metrics["cluster"]) == every - missing  # not collected: a caption, not None cells
    assert all(f"{c} (" in texts(at) for c in missing)


def test_workloads_page_filters_by_level_from_the_url(demo):
    at = run_app("workloads", {"level": "high"})
    table = at.dataframe[0].value
    expected = demo.workloads[demo.workloads["level"] == "high"]
    assert len(table) == min(len(expected), views.TABLE_LIMIT)
    assert set(table["level"]) == {"high"}
    assert metric(at, "Workloads") == f"{len(expected):,}"
    assert len(at.get("plotly_chart")) == 1


def test_reports_page_has_a_download_per_csv_and_the_snapshot(demo):
    at = run_app("reports")
    labels = [b.label for b in at.get("download_button")]
    expected = [f"Download {name}" for name in csv_reports(demo)]
    assert labels == [*expected, "Download snapshot"]
    assert len(at.dataframe) == len(expected) + 1  # a preview per CSV and the snapshot summary


# --- sources --------------------------------------------------------------------------------------


def snapshot_with_failed_cluster() -> bytes:
    base = demo_snapshot()
    keep = [c for c in base["clusters"] if c.get("status") == "ok"][:2]
    dead = {
        "name": "dead-cluster",
        "status": "failed",
        "reason": "unreachable: connection refused to https://127.0.0.1:1",
        "missing": [],
    }
    return dumps(new_snapshot([*keep, dead], source="file"))


def test_upload_snapshot_switches_source_and_shows_failed_row():
    at = run_app()
    assert metric(at, "Clusters") == "7"
    upload(at, "two-and-dead.json.gz", snapshot_with_failed_cluster())
    assert metric(at, "Clusters") == "3"
    badge = " ".join(m.value for m in at.sidebar.markdown)
    assert "SNAPSHOT: two-and-dead.json.gz" in badge
    table = at.dataframe[0].value
    dead = table[table["cluster"] == "dead-cluster"].iloc[0]
    assert dead["status"] == "failed"
    assert dead["why"] == "scan failed: unreachable: connection refused to https://127.0.0.1:1"
    # and back to the demo fleet
    at.sidebar.radio[0].set_value("demo").run()
    assert metric(at, "Clusters") == "7"


def test_bad_snapshot_upload_shows_one_line_error():
    at = upload(run_app(), "broken.json", b"{not json")
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and errors[0].startswith("Snapshot not loaded: broken.json: not valid JSON")
    assert "\n" not in errors[0]
    # nothing loaded yet: the page says what to do instead of failing
    assert any("Upload a dnsfleet snapshot" in i.value for i in at.info)


def test_snapshot_of_the_wrong_kind_is_refused():
    at = upload(run_app(), "other.json", b'{"format": "something-else"}')
    assert [e.value for e in at.error] == [
        "Snapshot not loaded: other.json: not a dnsfleet snapshot (format is 'something-else')"
    ]
    at.sidebar.radio[0].set_value("demo").run()
    assert not at.error, "an upload error belongs to the snapshot source, not the demo fleet"


def test_server_side_snapshot_from_env(tmp_path, monkeypatch):
    path = tmp_path / "fleet.json.gz"
    path.write_bytes(snapshot_with_failed_cluster())
    monkeypatch.setenv("DNSFLEET_SNAPSHOT", str(path))
    at = run_app()
    assert at.sidebar.radio[0].value == "snapshot"
    assert metric(at, "Clusters") == "3"


def test_missing_kubeconfig_is_a_short_sidebar_error(tmp_path, monkeypatch):
    monkeypatch.setenv("DNSFLEET_KUBECONFIG", str(tmp_path / "nope.yaml"))
    at = run_app()
    assert at.sidebar.radio[0].value == "kubeconfig"
    assert [e.value for e in at.sidebar.error] == [f"kubeconfig file not found: {tmp_path / 'nope.yaml'}"]
    scan = next(b for b in at.sidebar.button if b.label == "Scan")
    assert scan.disabled
    assert any("press **Scan**" in i.value for i in at.info)


def unreachable_kubeconfig(tmp_path: Path) -> Path:
    """A kubeconfig whose only cluster is a closed 127.0.0.1 port: a real connection refusal."""
    port = free_port()
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "gone", "cluster": {"server": f"https://127.0.0.1:{port}"}}],
        "users": [{"name": "u", "user": {"token": SECRET_TOKEN}}],
        "contexts": [{"name": "gone-cluster", "context": {"cluster": "gone", "user": "u"}}],
        "current-context": "gone-cluster",
    }
    path = tmp_path / "kubeconfig.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_scan_of_unreachable_cluster_is_a_failed_row_and_is_not_repeated(tmp_path, monkeypatch):
    import dnsfleet.collect as collect

    calls = []
    real_scan = collect.scan

    def counting_scan(**kw):
        calls.append(kw)
        return real_scan(**kw)

    monkeypatch.setattr(collect, "scan", counting_scan)
    monkeypatch.setenv("DNSFLEET_KUBECONFIG", str(unreachable_kubeconfig(tmp_path)))
    at = run_app()
    assert at.sidebar.multiselect[0].options == ["gone-cluster"]
    next(b for b in at.sidebar.button if b.label == "Scan").click().run()
    assert not at.exception
    assert len(calls) == 1 and calls[0]["all_contexts"] is True
    bars = {p.text: p.value for p in at.sidebar.progress}
    assert bars.get("Scan finished: 1 cluster(s)") == 100
    cluster_bar = next(t for t in bars if t.startswith("gone-cluster: failed"))
    assert bars[cluster_bar] == 100 and SECRET_TOKEN not in cluster_bar
    table = at.dataframe[0].value
    row = table[table["cluster"] == "gone-cluster"].iloc[0]
    assert row["status"] == "failed" and "unreachable" in row["why"]
    assert any("Every cluster failed to scan" in e.value for e in at.error)
    assert "LIVE: gone-cluster" in " ".join(m.value for m in at.sidebar.markdown)
    assert SECRET_TOKEN not in texts(at) + table.to_csv()
    # Widget interactions and page changes reuse the cached scan.
    at.switch_page("../pages/nodes.py").run()
    at.switch_page("../pages/cluster.py").run()
    assert any("Scan failed" in e.value for e in at.error)
    at.switch_page("../pages/overview.py").run()
    assert len(calls) == 1
    # Pressing Rescan is an explicit request: it collects again.
    next(b for b in at.sidebar.button if b.label == "Rescan").click().run()
    assert len(calls) == 2


def test_bad_prometheus_url_is_refused_before_scanning(tmp_path, monkeypatch):
    monkeypatch.setenv("DNSFLEET_KUBECONFIG", str(unreachable_kubeconfig(tmp_path)))
    monkeypatch.setenv("DNSFLEET_PROMETHEUS", "prometheus:9090")
    at = run_app()
    next(b for b in at.sidebar.button if b.label == "Scan").click().run()
    # shown as text (escaped so no link can form), exactly this line
    assert [e.value for e in at.error] == [
        plain("Prometheus URL must start with http:// or https:// (got 'prometheus:9090').")
    ]


SOURCE_PROBE = """
import streamlit as st
from dashboard.state import current_source, render_sidebar
render_sidebar()
src = current_source()
st.text(repr({k: src[k] for k in ("kind", "label", "contexts", "prometheus_url", "kubeconfig", "loaded")}))
st.text(type(src["scanned_at"]).__name__)
"""


def test_current_source_contract_for_other_pages(tmp_path, monkeypatch):
    """pages/mitigations.py (another helper's page) codes against these keys."""
    kubeconfig = unreachable_kubeconfig(tmp_path)
    monkeypatch.setenv("DNSFLEET_KUBECONFIG", str(kubeconfig))
    at = AppTest.from_string(SOURCE_PROBE, default_timeout=120).run()
    before = ast.literal_eval(at.text[0].value)
    assert before == {
        "kind": "kubeconfig",
        "label": "LIVE: not scanned yet",
        "contexts": [],
        "prometheus_url": None,
        "kubeconfig": None,
        "loaded": False,
    }
    next(b for b in at.sidebar.button if b.label == "Scan").click().run()
    after = ast.literal_eval(at.text[0].value)
    assert after == {
        "kind": "kubeconfig",
        "label": "LIVE: gone-cluster",
        "contexts": ["gone-cluster"],
        "prometheus_url": None,
        "kubeconfig": str(kubeconfig),
        "loaded": True,
    }
    assert at.text[1].value == "datetime"
    at.sidebar.radio[0].set_value("demo").run()
    demo = ast.literal_eval(at.text[0].value)
    assert demo["kind"] == "demo" and demo["label"] == "DEMO FLEET" and demo["loaded"] is True


# --- the operator's resolver mapping (the CLI's --resolver-map) ------------------------------------------


def test_resolver_map_re_scores_the_dashboard_like_the_cli(demo, tmp_path, monkeypatch):
    """DNSFLEET_RESOLVER_MAP overrides image inference exactly as ``--resolver-map`` does in the CLI."""
    import re

    from dnsfleet.rules.resolver import load_mapping

    exposed = demo.workloads[(demo.workloads["resolver"] == "glibc") & (demo.workloads["score"] > 0)]
    image = str(exposed.sort_values("pods", ascending=False)["image"].iloc[0])
    path = tmp_path / "map.csv"
    path.write_text(f"pattern,resolver\n^{re.escape(image)}$,go\n")
    mapped = analyze(demo_snapshot(), load_mapping(path))
    want = views.fleet_metrics(mapped.clusters, mapped.workloads)
    before = views.fleet_metrics(demo.clusters, demo.workloads)
    assert want["exposed_share"] < before["exposed_share"]  # the test can tell the two apart
    monkeypatch.setenv("DNSFLEET_RESOLVER_MAP", str(path))
    at = run_app()
    assert metric(at, "Pods exposed") == f"{100 * want['exposed_share']:.1f} %"


def test_a_broken_resolver_map_is_said_and_scoring_goes_on(demo, tmp_path, monkeypatch):
    bad = tmp_path / "map.csv"
    bad.write_text("pattern,resolver\n(unclosed,glibc\n")
    monkeypatch.setenv("DNSFLEET_RESOLVER_MAP", str(bad))
    at = run_app()
    assert "DNSFLEET_RESOLVER_MAP: map.csv line 2" in texts(at)
    m = views.fleet_metrics(demo.clusters, demo.workloads)
    assert metric(at, "Pods exposed") == f"{100 * m['exposed_share']:.1f} %"
