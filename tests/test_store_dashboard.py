"""The dashboard with a snapshot store (``DNSFLEET_STORE``): the Fleet overview reads the index only
(no cluster object), the Cluster page loads and scores the one cluster chosen, and the pages that need
every cluster's pods show the clusters chosen (said on the page) or, on request, the whole fleet.

Reads are counted at the store backend (``Backend.get``): a snapshot object's key starts with
``v1/snapshots/``."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from dnsfleet.demo import demo_snapshot
from dnsfleet.engine import cluster_risk
from dnsfleet.store import SnapshotStore, summary_row
from dnsfleet.store.backend import Backend
from dnsfleet.store.snapshots import SNAPSHOTS

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "dashboard" / "app.py")
PAGES = ROOT / "pages"
TRUNCATED, FAILED, SKEWED = "cilium-edge", "broken-one", "gke-analytics"


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo fleet scanned twice (compacted between); the newest object of one cluster truncated,
    one more cluster whose newest scan failed, one collector clock an hour behind."""
    d = tmp_path_factory.mktemp("store")
    snap = demo_snapshot()
    cr = cluster_risk(snap)
    risk = {r["cluster"]: r for r in cr.astype(object).where(cr.notna(), None).to_dict("records")}
    st_ = SnapshotStore(str(d))
    now = datetime.now(UTC)
    for c in snap["clusters"]:
        st_.write_scan(c, summary_row(c, risk[c["name"]]), now=now - timedelta(minutes=1))
    st_.compact()
    for c in snap["clusters"]:
        t = now - timedelta(hours=1) if c["name"] == SKEWED else now
        row = st_.write_scan(c, summary_row(c, risk[c["name"]]), now=t)
        if c["name"] == TRUNCATED:
            st_.backend.put(row["object"], st_.backend.get(row["object"])[:100])
    failed = {"name": FAILED, "status": "failed", "reason": "apiserver unreachable"}
    st_.write_scan(failed, summary_row(failed, None), now=now)
    return d


class Reads:
    """Every key read through ``Backend.get`` while installed."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self._lock = threading.Lock()

    def objects(self) -> list[str]:
        return [k for k in self.keys if k.startswith(SNAPSHOTS)]

    def clusters(self, store: Path) -> set[str]:
        """The cluster names whose snapshot objects were read (from the store's index)."""
        idx = SnapshotStore(str(store)).read_index()
        by_object = {r["object"]: r["cluster"] for r in idx.rows}
        return {by_object[k] for k in self.objects()}


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Reads:
    r = Reads()
    real = Backend.get

    def get(self: Backend, key: str) -> bytes:
        with r._lock:
            r.keys.append(key)
        return real(self, key)

    monkeypatch.setattr(Backend, "get", get)
    return r


@pytest.fixture
def app(store_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[AppTest]:
    for k in ("DNSFLEET_KUBECONFIG", "KUBECONFIG", "DNSFLEET_SNAPSHOT", "DNSFLEET_PROMETHEUS"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("DNSFLEET_STORE", str(store_dir))
    monkeypatch.setenv("DNSFLEET_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    st.cache_data.clear()
    st.cache_resource.clear()
    yield AppTest.from_file(APP, default_timeout=180)
    st.cache_data.clear()
    st.cache_resource.clear()


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _text(at: AppTest) -> str:
    return " ".join(
        str(m.value) for m in (*at.markdown, *at.caption, *at.title, *at.warning, *at.info, *at.error)
    )


def _names() -> list[str]:
    return [c["name"] for c in demo_snapshot()["clusters"]]


def test_overview_ranks_every_cluster_from_the_index_and_reads_no_cluster_object(
    app: AppTest, reads: Reads
) -> None:
    at = app.run()
    _ok(at)
    assert reads.keys, "the index was read through the backend"
    assert reads.objects() == []  # not one cluster object
    table = at.dataframe[0].value
    assert sorted(table["cluster"]) == sorted([*_names(), FAILED])
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Clusters"] == str(len(_names()) + 1)
    pods = sum(len(c.get("pods") or []) for c in demo_snapshot()["clusters"])
    assert metrics["Pods"] == f"{pods:,}"
    notes = dict(zip(table["cluster"], table["note"], strict=True))
    assert "scan failed: apiserver unreachable" in notes[FAILED]
    assert "clock was 360" in notes[SKEWED]
    assert any(FAILED in w.value and "failed their newest scan" in w.value for w in at.warning)
    at_failed = list(table["cluster"]).index(FAILED)  # ranked: unscored clusters last
    assert table["score"].iloc[:at_failed].notna().any() and table["score"].iloc[at_failed:].isna().all()


def test_drill_down_reads_and_scores_only_the_chosen_cluster(
    app: AppTest, reads: Reads, store_dir: Path
) -> None:
    app.query_params["cluster"] = "gke-analytics"
    at = app.switch_page(str(PAGES / "cluster.py")).run()
    _ok(at)
    assert reads.clusters(store_dir) == {"gke-analytics"}
    assert len(reads.objects()) == 1
    assert at.header[0].value == "gke-analytics"
    assert {m.label for m in at.metric} >= {"Risk score", "Pods exposed", "Nodes"}
    assert "clock was 360" in _text(at)


def test_drill_down_into_a_truncated_newest_object_shows_the_older_scan_with_a_note(
    app: AppTest, reads: Reads, store_dir: Path
) -> None:
    app.query_params["cluster"] = TRUNCATED
    at = app.switch_page(str(PAGES / "cluster.py")).run()
    _ok(at)
    assert reads.clusters(store_dir) == {TRUNCATED}
    assert len(reads.objects()) == 2  # the truncated newest, then the older scan
    text = _text(at)
    assert "truncated or corrupt" in text and "not the newest" in text


@pytest.mark.parametrize("page", ["nodes", "workloads", "coredns", "mitigations", "reports"])
def test_fleet_wide_pages_ask_which_clusters_and_read_none_before(
    app: AppTest, reads: Reads, page: str
) -> None:
    at = app.switch_page(str(PAGES / f"{page}.py")).run()
    _ok(at)
    assert "choose the clusters this page shows" in _text(at)
    assert reads.objects() == []
    assert not at.metric  # nothing shown as if it were the fleet
    # the page says where the user is before asking (the choice is drawn under its title)
    assert len(at.title) == 1 and at.title[0].value


def test_the_source_radio_names_the_store(app: AppTest) -> None:
    at = app.run()
    _ok(at)
    radio = next(r for r in at.sidebar.radio if r.label == "Data source")
    assert radio.format_func(radio.value) == "Snapshot store (or a file)"


@pytest.mark.parametrize("page", ["nodes", "workloads", "coredns", "mitigations", "reports"])
def test_fleet_wide_pages_show_the_linked_cluster_and_say_so(
    app: AppTest, reads: Reads, store_dir: Path, page: str
) -> None:
    app.query_params["cluster"] = "gke-analytics"
    at = app.switch_page(str(PAGES / f"{page}.py")).run()
    _ok(at)
    assert reads.clusters(store_dir) == {"gke-analytics"}
    total = len(_names()) + 1
    assert f"this page shows 1 of {total} clusters" in _text(at)
    for df in at.dataframe:
        if "cluster" in df.value.columns:
            assert set(df.value["cluster"]) <= {"gke-analytics"}


def test_nodes_page_loads_the_whole_fleet_on_request(app: AppTest, reads: Reads, store_dir: Path) -> None:
    at = app.switch_page(str(PAGES / "nodes.py")).run()
    _ok(at)
    assert reads.objects() == []
    [button] = [b for b in at.button if b.label.startswith("Load the whole fleet")]
    at = button.click().run()
    _ok(at)
    assert reads.clusters(store_dir) == {*_names(), FAILED}  # every cluster object, once
    assert "every cluster" in _text(at)
    nodes = next(df.value for df in at.dataframe if "node" in df.value.columns)
    assert len(set(nodes["cluster"])) > 1


def test_overview_selection_opens_the_cluster_page(app: AppTest, reads: Reads, store_dir: Path) -> None:
    at = app.run()
    _ok(at)
    assert reads.objects() == []
    at.switch_page(str(PAGES / "cluster.py"))
    at.query_params["cluster"] = "aks-legacy-weu"
    at.run()
    _ok(at)
    assert reads.clusters(store_dir) == {"aks-legacy-weu"}
    # the index was read once for both pages (the session's cached heads)
    heads = [k for k in reads.keys if k.startswith("v1/index/heads/")]
    assert len(heads) == 1


def test_an_empty_store_says_how_to_fill_it(
    app: AppTest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DNSFLEET_STORE", str(tmp_path / "empty"))
    at = app.run()
    _ok(at)
    assert any("No scans in this store yet" in i.value for i in at.info)
    at.switch_page(str(PAGES / "nodes.py")).run()
    _ok(at)
    assert "choose the clusters this page shows" in _text(at) and not at.metric


def test_clusters_chosen_on_a_fleet_wide_page_are_loaded_and_kept_across_pages(
    app: AppTest, reads: Reads, store_dir: Path
) -> None:
    at = app.switch_page(str(PAGES / "workloads.py")).run()
    _ok(at)
    pick = at.multiselect(key="store.pick")
    at = pick.set_value(["gke-analytics", "aks-legacy-weu"]).run()
    _ok(at)
    assert reads.clusters(store_dir) == {"gke-analytics", "aks-legacy-weu"}
    assert f"this page shows 2 of {len(_names()) + 1} clusters" in _text(at)
    wl = next(df.value for df in at.dataframe if "owner" in df.value.columns)
    assert set(wl["cluster"]) == {"gke-analytics", "aks-legacy-weu"}
    at.switch_page(str(PAGES / "nodes.py")).run()  # the same two, scored once for both pages
    _ok(at)
    assert f"this page shows 2 of {len(_names()) + 1} clusters" in _text(at)
    assert len(reads.objects()) == 2


def test_history_charts_the_riskiest_clusters_when_there_are_many(
    app: AppTest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    st_ = SnapshotStore(str(tmp_path / "many"))
    for i in range(15):
        c = {"name": f"c{i:02d}", "status": "ok", "nodes": [], "pods": []}
        st_.write_scan(c, summary_row(c, {"score": float(i), "level": "low", "exposed_pods": 0}))
    monkeypatch.setenv("DNSFLEET_STORE", str(tmp_path / "many"))
    at = app.switch_page(str(PAGES / "history.py")).run()
    _ok(at)
    assert any(
        "The charts show the 12 clusters with the highest newest score of 15" in c.value for c in at.caption
    )
    fig = next(json.loads(c.proto.spec) for c in at.get("plotly_chart") if c.key == "hist.score")
    drawn = {t["name"] for t in fig["data"]}
    assert drawn == {f"c{i:02d}" for i in range(3, 15)}  # the 12 highest scores, not c00-c02
    assert {m.label: m.value for m in at.metric}["Clusters"] == "15"  # the figures cover all


def test_drill_down_says_when_the_score_here_differs_from_the_collectors(
    app: AppTest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    at = app.switch_page(str(PAGES / "cluster.py"))
    at.query_params["cluster"] = "gke-analytics"
    at.run()
    _ok(at)
    assert "scored here from the same scan" not in _text(at)  # the collector scored it as we do
    c = next(c for c in demo_snapshot()["clusters"] if c["name"] == "gke-analytics")
    SnapshotStore(str(tmp_path / "other")).write_scan(
        c, summary_row(c, {"score": 99.0, "level": "high", "exposed_pods": 1})
    )
    monkeypatch.setenv("DNSFLEET_STORE", str(tmp_path / "other"))
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=180).switch_page(str(PAGES / "cluster.py"))
    at.query_params["cluster"] = "gke-analytics"
    at.run()
    _ok(at)
    assert any("says high 99; scored here from the same scan" in i.value for i in at.info)
