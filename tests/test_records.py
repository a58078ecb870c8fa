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


def test_one_state_directory_for_everything_dnsfleet_keeps(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from dashboard.livestore import state_dir as live_dir
    from dnsfleet.mitigate.audit import default_path as audit_path
    from dnsfleet.probe.log import default_path as probe_path
    from dnsfleet.store.backend import default_store_dir

    for k in ("DNSFLEET_AUDIT_LOG", "DNSFLEET_PROBE_LOG", "XDG_STATE_HOME"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("DNSFLEET_STATE_DIR", str(tmp_path / "st"))
    got = [live_dir(), audit_path().parent, probe_path().parent, default_store_dir().parent]
    assert got == [tmp_path / "st"] * 4
    monkeypatch.delenv("DNSFLEET_STATE_DIR")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert audit_path() == tmp_path / "xdg" / "dnsfleet" / "audit.jsonl"
