"""Issue 16.1 and 15.4 on the dashboard (AppTest): live scans kept server-side and opened by link,
the chosen cluster and filters carried across pages, and visitors beyond loopback limited to the
operator's contexts."""

from __future__ import annotations

import stat
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from tests.test_dashboard import APP, unreachable_kubeconfig

pytestmark = pytest.mark.usefixtures("clean_app")


@pytest.fixture
def scans(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    import dnsfleet.collect as collect

    calls: list[dict[str, Any]] = []
    real = collect.scan

    def counting(**kw: Any) -> dict[str, Any]:
        calls.append(kw)
        return real(**kw)

    monkeypatch.setattr(collect, "scan", counting)
    return calls


def app(query: dict[str, str] | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    for k, v in (query or {}).items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def scan_button(at: AppTest):
    return at.sidebar.button(key="src.scan")


def sidebar_text(at: AppTest) -> str:
    return " ".join(str(m.value) for m in (*at.sidebar.markdown, *at.sidebar.caption))


def shown_scan_id(at: AppTest) -> str:
    return at.session_state["dnsfleet.live"]


def test_a_shared_link_opens_the_kept_scan_without_scanning(tmp_path, monkeypatch, scans):
    monkeypatch.setenv("DNSFLEET_KUBECONFIG", str(unreachable_kubeconfig(tmp_path)))
    first = app()
    assert scan_button(first).label == "Scan"
    scan_button(first).click().run()
    assert len(scans) == 1
    scan_id = shown_scan_id(first)
    assert scan_button(first).label == "Rescan"
    assert "Scanned " in sidebar_text(first) and " s ago)" in sidebar_text(first)
    # another session (a shared link, a reload): the same data, no scan
    other = app({"scan": scan_id})
    assert len(scans) == 1
    assert shown_scan_id(other) == scan_id
    assert "LIVE: gone-cluster" in sidebar_text(other)
    table = other.dataframe[0].value
    assert list(table["cluster"]) == ["gone-cluster"] and table["status"].iloc[0] == "failed"
    assert scan_button(other).label == "Rescan"
    assert list(other.dataframe[0].value["open"]) == [f"cluster?cluster=gone-cluster&scan={scan_id}"]
    # Rescan replaces it for everyone opening the dashboard afterwards
    scan_button(other).click().run()
    assert len(scans) == 2
    newest = shown_scan_id(other)
    assert newest != scan_id
    assert shown_scan_id(app()) == newest  # a new session without a link: the newest kept scan
    assert shown_scan_id(app({"scan": scan_id})) == scan_id  # the old link still opens its own data
    assert len(scans) == 2


def test_a_link_to_a_scan_no_longer_kept_says_so(tmp_path, monkeypatch, scans):
    monkeypatch.setenv("DNSFLEET_KUBECONFIG", str(unreachable_kubeconfig(tmp_path)))
    at = app({"scan": "AAAAAAAAAAAAAAAA"})
    assert any("no longer kept on this server" in e.value for e in at.error)
    assert any("press **Scan**" in i.value for i in at.info)
    assert not scans
    at = app({"scan": "../../etc/passwd"})  # not an id: never a path
    assert any("no longer kept on this server" in e.value for e in at.error)


def test_kept_scans_are_owner_only_files(tmp_path, monkeypatch, scans):
    state = tmp_path / "state"
    monkeypatch.setenv("DNSFLEET_STATE_DIR", str(state))
    monkeypatch.setenv("DNSFLEET_KUBECONFIG", str(unreachable_kubeconfig(tmp_path)))
    at = app()
    scan_button(at).click().run()
    files = sorted(p.name for p in (state / "live-scans").iterdir())
    scan_id = shown_scan_id(at)
    assert files == [f"{scan_id}.json.gz", f"{scan_id}.meta.json"]
    assert stat.S_IMODE((state / "live-scans").stat().st_mode) == 0o700
    for p in (state / "live-scans").iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600


def test_cluster_and_filters_are_carried_across_pages():
    at = app()
    at.switch_page("../pages/workloads.py").run()
    at.multiselect(key="url.level").set_value(["high"]).run()
    at.switch_page("../pages/cluster.py").run()
    assert not at.exception
    cluster = at.selectbox(key="url.cluster").value
    at.switch_page("../pages/nodes.py").run()
    assert at.multiselect(key="url.level").value == ["high"]
    at.switch_page("../pages/workloads.py").run()
    assert at.multiselect(key="url.level").value == ["high"]
    assert at.multiselect(key="url.cluster").value == [cluster]


def test_cluster_page_links_to_its_nodes_and_workloads():
    at = app()
    at.switch_page("../pages/cluster.py").run()
    cluster = at.selectbox(key="url.cluster").value
    links = {p.proto.label: p.proto for p in at.get("page_link")}
    nodes = links[f"Nodes of {cluster}"]
    workloads = links[f"Workloads of {cluster}"]
    assert nodes.page.endswith("nodes") and workloads.page.endswith("workloads")
    assert nodes.query_string == workloads.query_string == f"cluster={cluster}"


def test_beyond_loopback_visitors_choose_contexts_never_files_or_urls(tmp_path, monkeypatch):
    import dashboard.auth as A

    kubeconfig = unreachable_kubeconfig(tmp_path)
    monkeypatch.setenv("DNSFLEET_KUBECONFIG", str(kubeconfig))
    monkeypatch.setenv("DNSFLEET_PROMETHEUS", "http://127.0.0.1:9/")
    monkeypatch.setattr(A, "bind_address", lambda: "0.0.0.0")
    at = app()
    labels = [t.label for t in at.sidebar.text_input]
    assert "Kubeconfig path" not in labels and "Prometheus URL (optional)" not in labels
    assert at.sidebar.multiselect(key="src.contexts").options == ["gone-cluster"]
    assert "configured by the operator" in sidebar_text(at)
    assert "127.0.0.1:9" not in sidebar_text(at)
    # a value pushed into the session (as a crafted widget message would) is not used
    at.session_state["src.kubeconfig"] = str(tmp_path / "other.yaml")
    at.run()
    assert at.sidebar.multiselect(key="src.contexts").options == ["gone-cluster"]


def test_beyond_loopback_without_an_operator_kubeconfig_says_who_sets_it(monkeypatch):
    import dashboard.auth as A

    monkeypatch.setattr(A, "bind_address", lambda: "0.0.0.0")
    at = app()
    at.sidebar.radio[0].set_value("kubeconfig").run()
    assert not at.exception
    assert any("operator sets DNSFLEET_KUBECONFIG" in e.value for e in at.sidebar.error)
    assert "Kubeconfig path" not in [t.label for t in at.sidebar.text_input]


def test_loopback_keeps_the_typed_kubeconfig_and_prometheus_fields(tmp_path, monkeypatch):
    monkeypatch.setenv("DNSFLEET_KUBECONFIG", str(unreachable_kubeconfig(tmp_path)))
    at = app()
    labels = [t.label for t in at.sidebar.text_input]
    assert "Kubeconfig path" in labels and "Prometheus URL (optional)" in labels


STALE = (
    "Prometheus reachable; newest CoreDNS sample at 2026-12-01 10:00:00 UTC, outside the window "
    "2026-12-03 09:00:00 UTC to 2026-12-03 10:00:00 UTC (2.0 days before its end)"
)


def test_stale_metrics_are_said_on_the_coredns_and_cluster_pages(tmp_path, monkeypatch):
    from dashboard.ui import md_text
    from dnsfleet.demo import demo_snapshot
    from dnsfleet.snapshot import save
    from tests.test_score_gaps import CLUSTER, without_metrics

    snap = without_metrics(demo_snapshot(), CLUSTER)
    next(c for c in snap["clusters"] if c["name"] == CLUSTER)["metrics"]["note"] = STALE
    path = save(snap, tmp_path / "stale.json.gz")
    monkeypatch.setenv("DNSFLEET_SNAPSHOT", str(path))
    at = app()
    at.switch_page("../pages/coredns.py").run()
    assert not at.exception
    warning = next(w.value for w in at.warning if "CoreDNS metrics missing" in w.value)
    assert f"**{md_text(CLUSTER)}**: {md_text(STALE)}" in warning
    assert "eks-dr-usw2" not in warning  # the failed demo cluster is not a metrics problem
    gaps = next(i.value for i in at.info if "Scores computed without metrics" in i.value)
    assert (
        f"**{md_text(CLUSTER)}**: not counted for lack of metrics: conntrack counters (up to 10 points)"
        in gaps
    )
    assert not any("need a Prometheus URL" in i.value for i in at.info)
    at.switch_page("../pages/cluster.py").run()
    at.selectbox(key="url.cluster").set_value(CLUSTER).run()
    assert any("the score may be up to 15 points higher" in c.value for c in at.caption)


def test_failed_clusters_are_named_with_their_reason_as_plain_text(tmp_path, monkeypatch):
    from dnsfleet.demo import demo_snapshot
    from dnsfleet.snapshot import save

    snap = demo_snapshot()
    bad = next(c for c in snap["clusters"] if c["status"] == "failed")
    bad["reason"] = "unreachable: see [here](http://203.0.113.9/x) ![img](http://203.0.113.9/i.png)"
    monkeypatch.setenv("DNSFLEET_SNAPSHOT", str(save(snap, tmp_path / "f.json.gz")))
    at = app()
    warning = next(w.value for w in at.warning if "could not be scanned" in w.value)
    assert warning.startswith("1 cluster(s) could not be scanned:\n- **eks-dr-usw2**: unreachable: see ")
    assert "[here](" not in warning and "![img](" not in warning
    assert "\\[here\\](http:\\/\\/203.0.113.9/x)" in warning  # no link can form, not even an autolink


def _walk(node: Any) -> list[Any]:
    out = [node]
    for child in getattr(node, "children", {}).values():
        out += _walk(child)
    return out


def test_scan_progress_is_drawn_above_the_sidebar_controls(tmp_path, monkeypatch, scans):
    monkeypatch.setenv("DNSFLEET_KUBECONFIG", str(unreachable_kubeconfig(tmp_path)))
    at = app()
    scan_button(at).click().run()
    order = [getattr(n, "type", "") for n in _walk(at.sidebar)]
    assert "progress" in order and "radio" in order
    assert order.index("progress") < order.index("radio") < order.index("text_input")
    bars = [p.text for p in at.sidebar.progress]
    assert bars[0] == "Scan finished: 1 cluster(s)" and bars[1].startswith("gone-cluster: failed")
