"""Reading a snapshot store: ``show/report --store`` (latest per cluster through the index),
``history`` (CSV, regressions), mitigation marks, and the dashboard with ``DNSFLEET_STORE``
(overview from the store, the History page)."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from dnsfleet.cli import main
from dnsfleet.demo import demo_snapshot
from dnsfleet.engine import cluster_risk
from dnsfleet.store import SnapshotStore, summary_row
from dnsfleet.store.history import mitigation_marks, regression

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "dashboard" / "app.py")


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo fleet scanned twice an hour apart; in the second scan two clusters got worse, and the
    newest object of a third is truncated."""
    d = tmp_path_factory.mktemp("store")
    snap = demo_snapshot()
    cr = cluster_risk(snap)
    risk = {r["cluster"]: r for r in cr.astype(object).where(cr.notna(), None).to_dict("records")}
    st_ = SnapshotStore(str(d))
    t0 = datetime.now(UTC) - timedelta(hours=1)
    for c in snap["clusters"]:
        st_.write_scan(c, summary_row(c, risk[c["name"]]), now=t0)
    for c in snap["clusters"]:
        r = dict(risk[c["name"]])
        if c["name"] in ("aks-nodelocal-neu", "gke-analytics"):
            r.update(level="high", score=(r["score"] or 0) + 40, exposed_pods=50)
        row = st_.write_scan(c, summary_row(c, r), now=t0 + timedelta(minutes=30))
        if c["name"] == "cilium-edge":
            data = st_.backend.get(row["object"])
            st_.backend.put(row["object"], data[:100])
    return d


def test_show_store_reads_the_index_only(
    store_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from dnsfleet.store.backend import Backend

    keys: list[str] = []
    real = Backend.get
    monkeypatch.setattr(Backend, "get", lambda self, key: keys.append(key) or real(self, key))
    assert main(["show", "--store", str(store_dir), "-o", "json"]) == 0
    out = capsys.readouterr()
    rows = {r["cluster"]: r for r in json.loads(out.out)}
    assert len(rows) == len(demo_snapshot()["clusters"])
    assert keys and not [k for k in keys if k.startswith("v1/snapshots/")]  # no cluster object read
    assert rows["gke-analytics"]["level"] == "high"  # the newest row: the collector's score
    assert rows["cilium-edge"]["status"] == "ok" and rows["cilium-edge"]["scan_time"].endswith("Z")
    assert "note: gke-analytics: the collector's clock was" in out.err  # its scans were written 1 h back
    assert main(["show", "--store", str(store_dir), "--resolver-map", "x.csv"]) == 2
    assert "no effect on 'show --store'" in capsys.readouterr().err


def test_report_store_reads_the_objects_and_notes_a_truncated_one(
    store_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", "--store", str(store_dir), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "clusters.csv").read_text().count("\n") >= 7
    err = capsys.readouterr().err
    assert "note: cilium-edge: scan " in err and "truncated or corrupt" in err


def test_history_csv_flags_the_regressions(store_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["history", "--store", str(store_dir), "-o", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 2 * len(demo_snapshot()["clusters"])
    flagged = {r["cluster"] for r in rows if r["regression"] == "True"}
    assert flagged == {"aks-nodelocal-neu", "gke-analytics"}
    why = next(
        r["regression_why"] for r in rows if r["cluster"] == "gke-analytics" and r["regression"] == "True"
    )
    assert "level rose low -> high" in why and "exposed pods 0 -> 50" in why
    assert main(["history", "--store", str(store_dir), "--regressions", "--cluster", "gke-analytics"]) == 0
    table = capsys.readouterr().out.strip().splitlines()
    assert len(table) == 2 and table[1].split()[:2] == ["1", "gke-analytics"]  # rank, then the cluster


def test_empty_store_and_bad_store_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["show", "--store", str(tmp_path / "empty")]) == 2
    assert "no scans yet" in capsys.readouterr().err
    assert main(["show", "--store", "s3://bucket/p?endpoint=http://127.0.0.1:9&timeout=0.5&retries=0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dnsfleet: error: store: cannot list") and err.count("\n") == 1


def test_regression_rules() -> None:
    base: dict[str, Any] = {"level": "medium", "score": 40, "exposed_pods": 100}
    assert regression(None, base) == []
    assert regression(base, dict(base, score=49, exposed_pods=109)) == []
    assert regression(base, dict(base, score=50)) == ["score rose 40 -> 50"]
    assert regression(base, dict(base, exposed_pods=110)) == ["exposed pods 100 -> 110"]
    assert regression(base, dict(base, level="high")) == ["level rose medium -> high"]
    assert regression(dict(base, level="unknown"), dict(base, level="high")) == []


def test_mitigation_marks_one_per_applied_batch() -> None:
    recs = [
        {
            "time": "2026-12-01T10:00:01.5Z",
            "cluster": "a",
            "mitigation": "resolver-options",
            "result": "ok",
            "batch": "b1",
        },
        {
            "time": "2026-12-01T10:00:00.5Z",
            "cluster": "a",
            "mitigation": "resolver-options",
            "result": "ok",
            "batch": "b1",
        },
        {
            "time": "2026-12-01T11:00:00Z",
            "cluster": "a",
            "mitigation": "x",
            "result": "forbidden",
            "batch": "b2",
        },
        {"time": "garbage", "cluster": "a", "mitigation": "x", "result": "ok", "batch": "b3"},
        {
            "time": "2026-12-01T12:00:00Z",
            "cluster": "b",
            "mitigation": "undo-resolver-options",
            "result": "ok",
        },
    ]
    m = mitigation_marks(recs)
    assert list(m["cluster"]) == ["a", "b"] and list(m["objects"]) == [2, 1]
    assert m["time"].iloc[0] == datetime(2026, 12, 1, 10, 0, 0, 500000, tzinfo=UTC)
    assert list(mitigation_marks(recs, ["b"])["mitigation"]) == ["undo-resolver-options"]


@pytest.fixture
def clean_streamlit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    for k in (
        "DNSFLEET_KUBECONFIG",
        "KUBECONFIG",
        "DNSFLEET_SNAPSHOT",
        "DNSFLEET_PROMETHEUS",
        "DNSFLEET_STORE",
    ):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("DNSFLEET_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    st.cache_data.clear()
    st.cache_resource.clear()


def test_dashboard_reads_the_store_and_shows_history(
    store_dir: Path, clean_streamlit: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DNSFLEET_STORE", str(store_dir))
    (tmp_path / "audit.jsonl").write_text(
        json.dumps(
            {
                "time": (datetime.now(UTC) - timedelta(minutes=45)).isoformat(),
                "cluster": "gke-analytics",
                "object": {"kind": "Deployment", "namespace": "shop", "name": "checkout"},
                "mitigation": "resolver-options",
                "result": "ok",
                "batch": "b1",
            }
        )
        + "\n"
    )
    at = AppTest.from_file(APP, default_timeout=180).run()
    assert not at.exception, [e.value for e in at.exception]
    page = " ".join(str(m.value) for m in (*at.markdown, *at.caption, *at.title))
    assert "aks-legacy-weu" in page or any("aks-legacy-weu" in str(d.value) for d in at.dataframe)
    at.switch_page("../pages/history.py").run()
    assert not at.exception, [e.value for e in at.exception]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Scans"] == str(2 * len(demo_snapshot()["clusters"])) and metrics["Regressions"] == "2"
    warnings = " ".join(w.value for w in at.warning)
    assert "cilium-edge" not in warnings  # the index rows are fine; only the snapshot object is truncated
    figs = {c.key: json.loads(c.proto.spec) for c in at.get("plotly_chart")}
    assert "**Risk score over time**" in [m.value for m in at.markdown]  # the chart's title, as page text
    score = figs["hist.score"]
    names = {t.get("name") for t in score["data"]}
    assert "mitigation applied" in names and "gke-analytics: regression" in names


def test_history_page_says_when_the_store_is_unreadable(
    clean_streamlit: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DNSFLEET_STORE", "s3://b/p?endpoint=http://127.0.0.1:9&timeout=0.5&retries=0")
    at = AppTest.from_file(APP, default_timeout=180)
    at.switch_page("../pages/history.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Cannot read the snapshot store" in e.value for e in at.error)
