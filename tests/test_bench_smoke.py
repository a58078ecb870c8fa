"""Smoke run of the benchmark code (bench/) on a tiny fleet: every measurement path runs once and the
report is written; no targets (those are for ``make bench`` at 100k pods). Budget: about a minute."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from bench import fleet as bench_fleet_mod
from bench import run as bench_run
from bench.scoring import synthetic_frames
from tests.fleet import objects as O
from tests.fleet import spec as S


@pytest.mark.parametrize("pods", [300, 10_000])
def test_bench_specs_have_exactly_the_pods_and_nodes_asked_for(pods: int) -> None:
    specs = bench_fleet_mod.bench_specs(pods)
    S.validate(specs)
    assert [s.name for s in specs] == list(bench_fleet_mod.NAMES)
    assert sum(len(S.all_pods(s)) for s in specs) == pods
    assert sum(s.node_count for s in specs) == pods * 3 // 100 or pods < 100
    kinds = {w.kind for s in specs for w in s.workloads}
    assert {"Deployment", "DaemonSet"} <= kinds


def test_full_size_objects_keep_what_the_collector_reads_and_have_valid_addresses() -> None:
    spec = bench_fleet_mod.bench_specs(30_000)[1]  # 300 nodes: past the spec's 245-address convention
    waves = bench_fleet_mod.full_size(spec, 1, O.build(spec))
    pods = [it for w in waves for it in w if it.kind == "Pod"]
    nodes = [it for w in waves for it in w if it.kind == "Node"]
    assert len(pods) == 10_000 and len(nodes) == 300
    for it in nodes:
        for a in it.status["addresses"]:
            if a["type"] == "InternalIP":
                assert all(0 <= int(x) <= 255 for x in a["address"].split("."))
        net, bits = it.body["spec"]["podCIDR"].split("/")
        assert bits == "24" and all(0 <= int(x) <= 255 for x in net.split("."))
    ips = [it.status.get("podIP") for it in pods if it.status and it.status.get("podIP")]
    assert ips and all(all(0 <= int(x) <= 255 for x in ip.split(".")) for ip in ips)
    sizes = sorted(len(orjson.dumps(it.body)) + len(orjson.dumps(it.status)) for it in pods)
    # The API server adds managedFields (about as large again): 5-10 KB read back.
    assert 3_000 < sizes[len(sizes) // 2] < 7_000
    plain = {it.name: it for w in O.build(spec) for it in w if it.kind == "Pod"}
    for it in pods[:50]:
        before = plain[it.name]
        assert [c["image"] for c in it.body["spec"]["containers"]] == [
            c["image"] for c in before.body["spec"]["containers"]
        ]
        assert it.body["spec"].get("dnsConfig") == before.body["spec"].get("dnsConfig")


def test_synthetic_scoring_frames_have_the_rows_asked_for() -> None:
    f = synthetic_frames(5_000)
    assert len(f.workloads) == 5_000 == len(f.placements)
    assert f.workloads["workload_id"].is_unique
    assert set(f.placements["workload_id"]) == set(f.workloads["workload_id"])


def test_bench_run_smoke(tmp_path: Path) -> None:
    skip = ["dashboard"]
    if not os.access(bench_run.kubectl_path(), os.X_OK):  # building it takes minutes: not in a smoke test
        skip.append("kubectl")
    out = tmp_path / "latest.md"
    code = bench_run.main(
        [
            "--sizes",
            "300",
            "--repeat",
            "1",
            "--no-targets",
            "--skip",
            ",".join(skip),
            "--score-rows",
            "2000",
            "--out",
            str(out),
            "--workdir",
            str(tmp_path / "work"),
        ]
    )
    assert code == 0
    text = out.read_text()
    assert "| 300 | 9 |" in text  # 300 pods on 9 nodes, read back by the scan (it checks the count)
    for method in ("scan", "naive", "floor", "floor-json"):
        assert f"| {method} |" in text
    if "kubectl" not in skip:
        assert "| kubectl (one context after another) |" in text
    assert "## Memory of the scan" in text
    assert "2,000 synthetic workload rows" in text
    assert "## Targets" not in text and "met**" not in text
