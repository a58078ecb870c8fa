"""Documents that state numbers or schemas are checked against the code."""

from __future__ import annotations

from pathlib import Path

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
    w = a.workloads.iloc[0]
    assert (w["score"], w["level"]) == (95.3, "high")
    assert w["why"].replace(" ", "") in doc.replace("\n> ", " ").replace(" ", "")
    recs = a.recommendations.set_index("mitigation")["risk_removed"]
    assert recs["single-request-reopen"] == pytest.approx(95.3)
    assert recs["lower-ndots"] == pytest.approx(6.0)
    fixed = analyze(_worked_example([{"name": "single-request-reopen", "value": None}])).workloads.iloc[0]
    assert fixed["score"] == 0
    assert fixed["why"] in doc.replace("\n", " ")
