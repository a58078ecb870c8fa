"""Issue 16.3 against the fleet's real Prometheus (backfilled up to ``metrics_end``): queried at a time
after its newest samples, or before its first, the metrics note says what happened instead of "no
series"; the scan and the CLI pass it on."""

from __future__ import annotations

import re
import time

import pytest

from dnsfleet.collect import PromSource
from dnsfleet.collect.prom import collect_metrics

pytestmark = pytest.mark.fleet
CLUSTER = "aks-legacy"


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def test_samples_older_than_the_window_are_named_with_their_time(fleet):
    at = fleet.metrics_end + 2 * 3600
    m = collect_metrics(PromSource(fleet.prometheus_url, time=at), CLUSTER, node_names=[])
    assert m["source"] == "prometheus" and m["coredns"] is None
    note = m["note"]
    found = re.search(r"newest CoreDNS sample at ([0-9: -]+ UTC)", note)
    assert note.startswith("Prometheus reachable; newest CoreDNS sample at "), note
    assert found and found.group(1) == _utc(fleet.metrics_end)
    assert f"outside the window {_utc(at - 3600)} to {_utc(at)} (2.0 h before its end)" in note
    assert "--prometheus-time" in note and "no CoreDNS series" not in note


def test_a_query_time_before_the_first_sample_says_the_data_is_later(fleet):
    at = fleet.metrics_start - 3600
    m = collect_metrics(PromSource(fleet.prometheus_url, time=at), CLUSTER, node_names=[])
    assert m["coredns"] is None
    assert (
        f"Prometheus reachable; no CoreDNS sample in the week before {_utc(at)}, the newest is at "
        f"{_utc(fleet.metrics_end)}, after the query time" in m["note"]
    )


def test_inside_the_window_there_is_no_stale_note(fleet):
    m = collect_metrics(PromSource(fleet.prometheus_url, time=fleet.metrics_end), CLUSTER, node_names=[])
    assert m["coredns"] is not None and m["coredns"]["qps"] > 0
    assert "Prometheus reachable" not in (m["note"] or "")


def test_cli_scan_says_the_samples_are_old_and_what_the_score_could_not_count(fleet, tmp_path, monkeypatch):
    import io
    import json
    import sys

    from dnsfleet.cli import main

    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    at = fleet.metrics_end + 2 * 3600
    argv = ["scan", "--kubeconfig", str(fleet.kubeconfig), "--context", CLUSTER, "--prometheus"]
    rc = main([*argv, fleet.prometheus_url, "--prometheus-time", str(at), "-o", "json"])
    assert rc == 0
    (row,) = json.loads(out.getvalue())  # stdout stays the JSON it was
    lines = [ln for ln in err.getvalue().splitlines() if ln.startswith(f"{CLUSTER}: ")]
    gap = next(ln for ln in lines if "not counted for lack of metrics" in ln)
    assert "conntrack counters (up to 10 points)" in gap and "CoreDNS query rate (up to 5 points)" in gap
    assert f"Prometheus reachable; newest CoreDNS sample at {_utc(fleet.metrics_end)}" in gap
    assert row["score"] > 0


def test_conntrack_staleness_is_one_short_clause_after_the_coredns_note(fleet):
    at = fleet.metrics_end + 2 * 3600
    m = collect_metrics(PromSource(fleet.prometheus_url, time=at), CLUSTER, node_names=["x"])
    assert m["conntrack"]["reason"] == (
        f"not collected: Prometheus reachable; newest conntrack sample at {_utc(fleet.metrics_end)}, "
        "outside the window"
    )
    assert m["note"].count("--prometheus-time") == 1
