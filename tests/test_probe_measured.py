"""Measured probe evidence outranks inference in the risk model (issue 17 §2)."""

from __future__ import annotations

import copy

import pytest

from dnsfleet.demo import demo_snapshot
from dnsfleet.engine import analyze
from dnsfleet.probe.measured import attach, node_measurements


@pytest.fixture(scope="module")
def base() -> dict:
    return demo_snapshot()


def _run(cluster: str, node: str, lookups: int, slow: int, stalls: int) -> dict:
    report = {"lookups": lookups, "ge_1s": slow, "ge_2_5s": stalls, "ge_5s": stalls, "errors": 0}
    return {
        "time": "2026-01-01T00:00:00Z",
        "cluster": cluster,
        "results": [{"node": node, "resolver": "glibc", "status": "ok", "report": report, "image": "x"}],
    }


def _node(a, cluster: str, node: str):
    return a.nodes[(a.nodes["cluster"] == cluster) & (a.nodes["node"] == node)].iloc[0]


def test_stalls_make_a_node_the_tables_call_safe_exposed(base: dict) -> None:
    a0 = analyze(base)
    fixed = a0.nodes[(a0.nodes["exposed_pods"] == 0) & (a0.nodes["pods"] > 0) & (a0.nodes["level"] == "low")]
    row = fixed.iloc[0]
    snap = copy.deepcopy(base)
    attach(snap, _run(row["cluster"], row["node"], 40, 8, 8))
    a1 = analyze(snap)
    after = _node(a1, row["cluster"], row["node"])
    assert after["score"] > row["score"]
    assert "exposed by measurement: 8 of 40 probe lookups" in after["why"]


def test_clean_lookups_lower_the_evidence_not_the_gates(base: dict) -> None:
    a0 = analyze(base)
    grew = a0.nodes[a0.nodes["exposed_pods"] > 0].sort_values("score", ascending=False).iloc[0]
    snap = copy.deepcopy(base)
    attach(snap, _run(grew["cluster"], grew["node"], 2000, 0, 0))
    a1 = analyze(snap)
    after = _node(a1, grew["cluster"], grew["node"])
    assert after["exposed_pods"] == grew["exposed_pods"]  # still exposed by the tables
    assert after["score"] <= grew["score"]
    assert "2000 probe lookups on this node and none took 1 s or more" in after["why"]


def test_too_few_lookups_conclude_nothing_and_failed_results_are_ignored() -> None:
    snap = {
        "clusters": [
            {
                "name": "c",
                "probe": {
                    "results": [
                        {
                            "node": "n1",
                            "resolver": "glibc",
                            "status": "ok",
                            "lookups": 40,
                            "ge_1s": 0,
                            "ge_2_5s": 0,
                        },
                        {
                            "node": "n2",
                            "resolver": "musl",
                            "status": "did not finish: Pending (ErrImagePull)",
                            "lookups": None,
                        },
                    ]
                },
            }
        ]
    }
    rows = node_measurements(snap)
    assert rows == [
        {
            "cluster": "c",
            "node": "n1",
            "probe_lookups": 40,
            "probe_slow": 0,
            "probe_stalls": 0,
            "measured": None,
        }
    ]


def test_attach_needs_the_cluster() -> None:
    with pytest.raises(ValueError, match="no cluster 'x'"):
        attach({"clusters": []}, _run("x", "n", 1, 0, 0))
