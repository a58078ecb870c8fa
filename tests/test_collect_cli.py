"""``dnsfleet scan`` (cli.scan) end to end against the real fleet: exit codes, outputs, snapshot."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from dnsfleet.cli import main
from dnsfleet.engine import analyze
from dnsfleet.report import csv_reports
from dnsfleet.snapshot import load

pytestmark = pytest.mark.fleet


def _run(argv: list[str], monkeypatch) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def test_scan_json_out_and_fail_on(fleet, tmp_path, monkeypatch):
    snap_path = tmp_path / "fleet.json.gz"
    argv = [
        "scan",
        "--kubeconfig",
        str(fleet.kubeconfig),
        "--all-contexts",
        "--prometheus",
        fleet.prometheus_url,
        "--prometheus-time",
        str(fleet.metrics_end),
        "--out",
        str(snap_path),
        "-o",
        "json",
        "--fail-on",
        "high",
    ]
    rc, out, err = _run(argv, monkeypatch)
    rows = json.loads(out)
    assert sorted(r["cluster"] for r in rows) == sorted(fleet.contexts)
    scores = [r["score"] for r in rows]
    assert scores == sorted(scores, reverse=True)  # ranked, riskiest first
    assert all(r["status"] == "ok" for r in rows)
    high = [r["cluster"] for r in rows if r["level"] == "high"]
    assert rc == (1 if high else 0)
    if high:
        assert f"clusters at or above high: {high[0]} (high)" in err
    for ctx in fleet.contexts:
        assert f"{ctx}: ok" in err  # one progress line per cluster (stderr is not a terminal here)
    snap = load(snap_path)  # the saved snapshot is what `dnsfleet report --snapshot` reads
    assert snap["source"] == "live" and len(snap["clusters"]) == 3
    reports = csv_reports(analyze(snap))
    assert reports and all(isinstance(v, bytes) and v for v in reports.values())
    rc_low, _, _ = _run([*argv[:-2], "--fail-on", "low"], monkeypatch)
    assert rc_low == 1  # every scanned cluster is at least low


def test_scan_table_and_usage_errors(fleet, tmp_path, monkeypatch):
    rc, out, _ = _run(
        ["scan", "--kubeconfig", str(fleet.kubeconfig_for("nobody")), "--context", "eks-prod"], monkeypatch
    )
    assert rc == 0
    header, row = out.splitlines()
    assert header.split()[:4] == ["#", "CLUSTER", "STATUS", "LEVEL"]  # the layout of `dnsfleet show`
    assert row.split()[:4] == ["1", "eks-prod", "failed", "unknown"]
    assert 'forbidden: user "nobody" cannot list nodes' in row
    for argv, msg in [
        (["--context", "nope"], "context 'nope' not in kubeconfig"),
        (["--prometheus", "localhost:9090"], "Prometheus URL must be http(s)"),
        (
            ["--prometheus", "http://127.0.0.1:1", "--prometheus-token-file", str(tmp_path / "t")],
            "cannot read",
        ),
        (["--out", str(tmp_path / "no" / "dir.json")], "--out directory does not exist"),
    ]:
        rc, out, err = _run(["scan", "--kubeconfig", str(fleet.kubeconfig), *argv], monkeypatch)
        assert rc == 2 and out == "" and msg in err and err.count("\n") == 1, (argv, err)


def test_scan_usage_error_exit_code_in_a_real_process(tmp_path):
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "dnsfleet.cli",
            "scan",
            "--kubeconfig",
            str(tmp_path / "missing"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 2
    assert p.stderr.strip() == f"dnsfleet scan: kubeconfig file not found: {tmp_path / 'missing'}"
    assert "Traceback" not in p.stderr
