"""Every writer of a snapshot builds its cluster records with the one typed builder
(``snapshot_schema.cluster_record`` / ``metrics_record``): same keys, unknown = None."""

from __future__ import annotations

import pytest

from dnsfleet import snapshot_schema
from dnsfleet.collect.cluster import base_cluster, failed_cluster
from dnsfleet.demo import demo_snapshot
from dnsfleet.snapshot import new_snapshot
from dnsfleet.snapshot_schema import cluster_record, metrics_record

CLUSTER_KEYS = list(cluster_record("x"))
METRICS_KEYS = list(metrics_record())


def test_demo_and_collector_records_have_the_builders_keys() -> None:
    records = [*demo_snapshot()["clusters"], base_cluster("a"), failed_cluster("b", "unreachable")]
    assert {c["status"] for c in records} == {"ok", "failed"}
    for c in records:
        assert list(c) == CLUSTER_KEYS, c["name"]
        assert list(c["metrics"]) == METRICS_KEYS, c["name"]


def test_a_fresh_record_is_unknown_not_empty_and_fits_the_schema() -> None:
    c = cluster_record("edge")
    assert c["status"] == "failed" and c["nodes"] is None and c["pods"] is None  # unknown, not "none"
    assert all(v is None for v in c["metrics"].values())
    doc = new_snapshot([c], source="test")
    snapshot_schema.check(doc, "fresh")  # raises SnapshotError when a builder drifts from the schema


def test_records_are_not_shared_between_calls() -> None:
    a, b = cluster_record("a"), cluster_record("b")
    a["missing"].append("pods")
    a["metrics"]["note"] = "x"
    assert b["missing"] == [] and b["metrics"]["note"] is None


def test_a_record_needs_a_name() -> None:
    with pytest.raises(ValueError, match="needs a name"):
        cluster_record("")
