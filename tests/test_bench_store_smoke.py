"""Smoke run of ``bench.store`` on a tiny local store: every measurement path runs and the table is
printed (the S3 side and the issue's sizes are for ``python -m bench.store``, never part of the suite)."""

from __future__ import annotations

import os

import pytest

from bench import store as bench_store


def test_bench_store_runs_every_measurement(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--clusters", "3", "--scans", "2", "--pods", "60", "--write-pods", "90", "--repeat", "1"]
    before = dict(os.environ)
    assert bench_store.main([*argv, "--only", "local"]) == 0
    assert dict(os.environ) == before  # the pages' DNSFLEET_STORE must not leak into later tests
    out = capsys.readouterr().out
    for label in (
        "collector write, 90 pods",
        "| index |",
        "| overview_cold |",
        "| overview_page_cold |",
        "| overview_page_warm |",
        "| history |",
        "| history_page |",
        "| drilldown_read |",
        "| drilldown |",
        "| drilldown_warm |",
        "| latest_all |",
    ):
        assert label in out
    c = bench_store.synthetic_cluster("x", 90)
    assert len(c["pods"]) == 90 and len(c["nodes"]) == 3
    assert len({p["name"] for p in c["pods"]}) == 90
