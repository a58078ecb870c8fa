"""Documents that state numbers or schemas are checked against the code."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from dnsfleet.engine import analyze
from dnsfleet.schema import describe_markdown
from tests.builders import cluster, node, pod, snapshot

ROOT = Path(__file__).resolve().parent.parent


def test_frames_doc_is_current() -> None:
    assert (ROOT / "docs" / "frames.md").read_text() == describe_markdown(), (
        "regenerate: python -c 'from dnsfleet.schema import describe_markdown; "
        'open("docs/frames.md","w").write(describe_markdown())\''
    )


def _worked_example(options: list | None = None) -> dict:
    pods = [
        pod(
            f"checkout-{i}",
            n,
            "python:3.12-slim",
            options,
            owner_kind="ReplicaSet",
            owner_name="checkout-7d9f",
        )
        for i, n in enumerate(["node-a", "node-a", "node-b"])
    ]
    pods += [
        pod(f"kube-proxy-{n}", n, "registry.k8s.io/kube-proxy:v1.29.4", namespace="kube-system",
            owner_kind="DaemonSet", owner_name="kube-proxy", host_network=True)
        for n in ("node-a", "node-b")
    ]  # fmt: skip
    c = cluster("aks-legacy", nodes=[node("node-a"), node("node-b")], pods=pods)
    c["owners"]["ReplicaSet"]["shop/checkout-7d9f"] = ["Deployment", "checkout"]
    c["metrics"] = {
        "source": "prometheus",
        "window_s": 3600,
        "coredns": {"qps": 850},
        "conntrack": {
            "nodes": {
                "node-a": {"insert_failed_increase": 120, "drop_increase": 80},
                "node-b": {"insert_failed_increase": 0, "drop_increase": 0},
            }
        },
    }
    return snapshot(c)


def test_risk_model_worked_example() -> None:
    doc = (ROOT / "docs" / "risk-model.md").read_text()
    a = analyze(_worked_example())
    w = a.workloads.set_index("name").loc["checkout"]
    assert (w["score"], w["level"]) == (95.3, "high")
    assert w["why"].replace(" ", "") in doc.replace("\n> ", " ").replace(" ", "")
    kp = a.workloads.set_index("name").loc["kube-proxy"]
    assert kp["level"] == "n/a" and pd.isna(kp["score"]) and kp["why"] in doc.replace("\n   ", " ")
    cl = a.clusters.iloc[0]
    assert (cl["score"], cl["applicable_pods"], cl["pods"]) == (97.0, 3, 5)
    snap = _worked_example()
    snap["clusters"][0]["pods"] = [p for p in snap["clusters"][0]["pods"] if p["namespace"] != "kube-system"]
    assert analyze(snap).clusters.iloc[0]["score"] == 97.0  # DaemonSets do not move the score (D8)
    assert "**97.0**" in doc
    recs = a.recommendations.set_index("mitigation")["risk_removed"]
    assert set(a.recommendations["target"]) & {kp["workload_id"]} == set()
    assert recs["single-request-reopen"] == pytest.approx(95.3)
    assert recs["lower-ndots"] == pytest.approx(6.0)
    fixed = analyze(_worked_example([{"name": "single-request-reopen", "value": None}]))
    fixed = fixed.workloads.set_index("name").loc["checkout"]
    assert fixed["score"] == 0
    assert fixed["why"] in doc.replace("\n", " ")
