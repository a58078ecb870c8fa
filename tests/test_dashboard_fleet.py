"""AppTest of the dashboard against the real test fleet (kube-apiserver + etcd + Prometheus): a live
scan fills every page; RBAC denial and an unreachable Prometheus are short messages, never exceptions."""

from __future__ import annotations

import socket

import pytest
from streamlit.testing.v1 import AppTest

from tests.test_dashboard import APP, texts

pytestmark = [pytest.mark.fleet, pytest.mark.usefixtures("clean_app")]


def scanned(
    monkeypatch: pytest.MonkeyPatch, kubeconfig, prometheus: str | None = None, at_time=None
) -> AppTest:
    monkeypatch.setenv("DNSFLEET_KUBECONFIG", str(kubeconfig))
    if prometheus:
        monkeypatch.setenv("DNSFLEET_PROMETHEUS", prometheus)
    if at_time is not None:
        monkeypatch.setenv("DNSFLEET_PROMETHEUS_TIME", str(at_time))
    at = AppTest.from_file(APP, default_timeout=240).run()
    assert at.sidebar.radio[0].value == "kubeconfig"
    next(b for b in at.sidebar.button if b.label == "Scan").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_live_scan_with_prometheus_fills_every_page(fleet, monkeypatch):
    at = scanned(monkeypatch, fleet.kubeconfig, fleet.prometheus_url, fleet.metrics_end)
    assert not at.error, [e.value for e in at.error]
    table = at.dataframe[0].value
    assert sorted(table["cluster"]) == sorted(fleet.contexts)
    assert set(table["status"]) == {"ok"}
    nodes = sum(fleet.expected(c)["nodes"] for c in fleet.contexts)
    assert next(m.value for m in at.metric if m.label == "Nodes") == f"{nodes:,}"
    at.switch_page("../pages/coredns.py").run()
    assert not at.exception
    metrics = at.dataframe[0].value
    assert set(metrics["source"]) == {"prometheus"}
    charts = [c.key for c in at.get("plotly_chart") if not (c.key or "").startswith("ev.")]
    assert charts[:5] == ["compare", "compare_phone", "qps", "forward", "latency"]
    # The rcode chart of the CoreDNS 1.8.7 cluster is not drawn (coredns#5125): the page says why.
    old = next(c for c in fleet.contexts if fleet.expected(c)["coredns_version"] == "1.8.7")
    new = next(c for c in fleet.contexts if fleet.expected(c)["coredns_version"] != "1.8.7")
    for focus, drawn in ((old, False), (new, True)):
        at.selectbox(key="url.focus").set_value(focus).run()
        assert not at.exception
        assert ("rcodes" in [c.key for c in at.get("plotly_chart")]) == drawn, focus
        notes = [i.value for i in at.info if i.value.startswith("Not drawn")]
        assert bool(notes) != drawn and all("coredns/coredns/issues/5125" in n for n in notes)
    # "Evidence over time" (dashboard/evidence_view.py) draws its 4 CoreDNS charts from the same Prometheus
    at.selectbox(key="url.focus").set_value(new).run()
    assert [k for k in (c.key for c in at.get("plotly_chart")) if k and k.startswith("ev.")] == [
        "ev.qps",
        "ev.p99",
        "ev.sf",
        "ev.rf",
    ]
    assert not [i.value for i in at.info if "no Prometheus URL" in i.value]
    at.switch_page("../pages/nodes.py").run()
    assert not at.exception
    # one fleet cluster has no node_exporter series: said plainly, not drawn as zero
    assert any(i.value.startswith("Not collected for ") for i in at.info)
    for page in ("cluster", "workloads", "reports"):
        at.switch_page(f"../pages/{page}.py").run()
        assert not at.exception, (page, [e.value for e in at.exception])


def test_nobody_token_gives_forbidden_rows_not_exceptions(fleet, monkeypatch):
    at = scanned(monkeypatch, fleet.kubeconfig_for("nobody"))
    table = at.dataframe[0].value
    assert sorted(table["cluster"]) == sorted(fleet.contexts)
    assert set(table["status"]) == {"failed"}
    assert all("forbidden" in r for r in table["why"])
    assert any(e.value.startswith("Every cluster failed to scan; first reason: forbidden") for e in at.error)
    tokens = {t for c in fleet.clusters.values() for t in c.tokens.values()}
    shown = texts(at) + table.to_csv()
    assert not [t for t in tokens if t in shown]


def test_unreachable_prometheus_is_a_short_message_and_the_scan_still_shows(fleet, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    at = scanned(monkeypatch, fleet.kubeconfig, f"http://127.0.0.1:{port}")
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and errors[0].startswith("Prometheus not used:"), errors
    assert "\n" not in errors[0]
    assert sorted(at.dataframe[0].value["cluster"]) == sorted(fleet.contexts)
