"""CSV reports: columns, ids, provenance on every row, formula neutralisation, spreadsheet-friendly bytes."""

from __future__ import annotations

import csv
import io

import pytest

from dnsfleet import __version__
from dnsfleet.demo import demo_snapshot
from dnsfleet.engine import analyze
from dnsfleet.report import REPORTS, csv_reports, neutralise
from tests.builders import cluster, node, pod, snapshot


def parse(data: bytes) -> list[dict[str, str]]:
    assert data.startswith(b"\xef\xbb\xbf"), "UTF-8 BOM so Excel reads the encoding"
    assert b"\r\n" in data
    return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline="")))


@pytest.fixture(scope="module")
def reports() -> dict[str, bytes]:
    return csv_reports(analyze(demo_snapshot()))


def test_every_report_and_column(reports: dict[str, bytes]) -> None:
    assert set(reports) == set(REPORTS)
    for name, (check, _prefix, _keys, cols) in REPORTS.items():
        rows = parse(reports[name])
        assert rows, name
        header = list(rows[0])
        assert header[:5] == ["finding_id", "check_id", "cluster", "scanned_at_utc", "tool_version"]
        assert header[5:] == [c for _, c in cols]
        ids = [r["finding_id"] for r in rows]
        assert len(set(ids)) == len(ids) and all(i.startswith("DNSF-") for i in ids)
        for r in rows:
            assert r["check_id"] == check and r["cluster"] and r["tool_version"] == __version__
            assert r["scanned_at_utc"].endswith("Z")


def test_finding_ids_are_stable_across_runs(reports: dict[str, bytes]) -> None:
    again = csv_reports(analyze(demo_snapshot()))
    for name in reports:
        assert [r["finding_id"] for r in parse(again[name])] == [
            r["finding_id"] for r in parse(reports[name])
        ]


def test_content_matches_the_assessment(reports: dict[str, bytes]) -> None:
    a = analyze(demo_snapshot())
    rows = {r["cluster"]: r for r in parse(reports["clusters.csv"])}
    top = a.clusters.iloc[0]
    assert float(rows[top["cluster"]]["risk_score_0_100"]) == pytest.approx(top["score"])
    assert rows["eks-dr-usw2"]["scan_status"] == "failed" and rows["eks-dr-usw2"]["risk_score_0_100"] == ""
    assert len(parse(reports["workloads.csv"])) == len(a.workloads)
    assert len(parse(reports["nodes.csv"])) == len(a.nodes)


@pytest.mark.parametrize("cell", ["=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1"])
def test_formula_cells_are_neutralised(cell: str) -> None:
    assert neutralise(cell) == "'" + cell
    assert neutralise("ok") == "ok" and neutralise(-5) == -5


def test_hostile_names_are_inert_in_the_csv() -> None:
    c = cluster(
        name='=HYPERLINK("http://x")',
        nodes=[node("@evil-node")],
        pods=[pod("app", "@evil-node", "+debian:12", namespace="-ns-ünïcödé")],
    )
    out = csv_reports(analyze(snapshot(c)))
    for data in out.values():
        for row in parse(data):
            for value in row.values():
                assert not value.startswith(("=", "+", "-", "@")), value
    wl = parse(out["workloads.csv"])[0]
    assert wl["namespace"] == "'-ns-ünïcödé"
