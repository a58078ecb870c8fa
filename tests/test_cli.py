"""The dnsfleet CLI: exit codes for CI, outputs, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dnsfleet.cli import main


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dnsfleet.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_show_demo_table_and_fail_on(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", "--demo"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1].split()[1] == "aks-legacy-weu"
    assert main(["show", "--demo", "--fail-on", "high", "-o", "json"]) == 1
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["cluster"] == "aks-legacy-weu" and rows[0]["level"] == "high"


def test_fail_on_passes_when_nothing_reaches_it(tmp_path: Path) -> None:
    from dnsfleet.snapshot import save
    from tests.builders import cluster, node, snapshot

    path = save(snapshot(cluster(nodes=[node("n1", "6.1.58-talos", "Talos (v1.5.5)")])), tmp_path / "s.json")
    assert main(["show", "--snapshot", str(path), "--fail-on", "medium"]) == 0


def test_report_writes_four_csvs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--demo", "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "clusters.csv",
        "nodes.csv",
        "recommendations.csv",
        "workloads.csv",
    ]


def test_demo_snapshot_feeds_report(tmp_path: Path) -> None:
    snap = tmp_path / "demo.json.gz"
    assert main(["demo", "--out", str(snap)]) == 0
    assert main(["report", "--snapshot", str(snap), "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "clusters.csv").stat().st_size > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "--snapshot", "/nonexistent.json"], "snapshot file not found"),
        (["report", "--demo", "--out", "/proc/no-such-dir/x"], "cannot write reports"),
        (["show", "--demo", "--resolver-map", "/nonexistent.csv"], "cannot read resolver mapping"),
    ],
)
def test_errors_are_one_line_and_exit_2(args: list[str], message: str) -> None:
    p = run(*args)
    assert p.returncode == 2
    assert message in p.stderr and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_bad_snapshot_content_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "dnsfleet.snapshot", "schema_version": 99, "clusters": []}')
    p = run("show", "--snapshot", str(bad))
    assert p.returncode == 2 and "newer than this dnsfleet" in p.stderr


def test_usage_error_exits_2() -> None:
    assert run("show").returncode == 2
    assert run().returncode == 2
