"""Issue 16.2: plans and diffs from a snapshot's own objects (the demo fleet, a snapshot file), through
the same planners a live cluster uses."""

from __future__ import annotations

import re

import pytest

from dnsfleet.demo import demo_snapshot
from dnsfleet.engine import analyze
from dnsfleet.kube import ObjectRef
from dnsfleet.mitigate import offline, resolver_options
from dnsfleet.mitigate.errors import MitigationError

CLUSTER = "aks-legacy-weu"


@pytest.fixture(scope="module")
def demo():
    snap = demo_snapshot()
    return snap, analyze(snap)


def _targets(a, resolver: str, n: int = 3):
    wl = a.workloads[(a.workloads["cluster"] == CLUSTER) & (a.workloads["resolver"] == resolver)]
    wl = wl[wl["kind"] == "Deployment"].sort_values("pods", ascending=False).head(n)
    return wl, resolver_options.targets_from_workloads(wl, CLUSTER)


def test_a_deployment_is_rebuilt_from_its_pods(demo):
    snap, a = demo
    wl, _ = _targets(a, "glibc", 1)
    row = wl.iloc[0]
    cluster = next(c for c in snap["clusters"] if c["name"] == CLUSTER)
    obj = offline.SnapshotObjects(cluster, snap["generated_at"]).get(
        ObjectRef("Deployment", row["namespace"], row["name"])
    )
    assert obj["spec"]["replicas"] == int(row["pods"])
    template = obj["spec"]["template"]["spec"]
    assert template["containers"][0]["image"] == row["image"]
    assert template["dnsPolicy"] == row["dns_policy"]
    assert obj["metadata"]["resourceVersion"] == f"snapshot {snap['generated_at']}"
    objs = offline.SnapshotObjects(cluster)
    assert objs.get(ObjectRef("Deployment", row["namespace"], "no-such-workload")) is None
    assert objs.get(ObjectRef("Service", "kube-system", "kube-dns"))["spec"]["clusterIP"] == "10.0.0.10"


def test_resolver_options_plan_keeps_existing_options_and_skips_musl(demo):
    snap, a = demo
    _, glibc = _targets(a, "glibc")
    _, musl = _targets(a, "musl", 1)
    plan = offline.plan_resolver_options(snap, CLUSTER, glibc + musl, {"single-request-reopen": None})
    already = [k for k in plan.skipped if k.reason == "already has single-request-reopen"]
    assert plan.cluster == CLUSTER and plan.changes and len(plan.changes) + len(already) == len(glibc)
    assert plan.notes[0].startswith(f"planned from the snapshot taken at {snap['generated_at']}")
    assert "a dry run and apply need the live cluster" in plan.notes[0]
    (skip,) = [k for k in plan.skipped if k not in already]
    assert "musl ignores single-request-reopen" in skip.reason
    for c in plan.changes:
        before = (c.before["spec"]["template"]["spec"].get("dnsConfig") or {}).get("options") or []
        assert c.applied["options"] == [*before, {"name": "single-request-reopen"}]
        assert re.search(r"^\+\s+- name: single-request-reopen$", c.diff(), re.M), c.diff()
        assert c.allowed is None  # no permission was checked: there is no server


def test_nodelocal_plan_from_the_snapshot_blocks_an_install_dnsfleet_did_not_make(demo):
    snap, _ = demo
    inputs = {"proxy_mode": "iptables", "cluster_ip": "10.0.0.10", "cluster_domain": "cluster.local"}
    fresh = offline.plan_nodelocal(snap, CLUSTER, **inputs)
    assert {c.ref.kind for c in fresh.changes} == {"ServiceAccount", "Service", "ConfigMap", "DaemonSet"}
    assert all(c.before is None and c.blocked is None for c in fresh.changes)
    present = offline.plan_nodelocal(snap, "aks-nodelocal-neu", **inputs)
    ds = next(c for c in present.changes if c.ref == ObjectRef("DaemonSet", "kube-system", "node-local-dns"))
    assert "already exists and was not created by dnsfleet" in ds.blocked
    assert not present.actionable


def test_a_failed_or_unknown_cluster_is_a_one_line_refusal(demo):
    snap, a = demo
    _, glibc = _targets(a, "glibc", 1)
    with pytest.raises(MitigationError, match="eks-dr-usw2: the scan failed"):
        offline.plan_resolver_options(snap, "eks-dr-usw2", glibc, {"use-vc": None})
    with pytest.raises(MitigationError, match="nope: not in this snapshot"):
        offline.plan_nodelocal(snap, "nope", proxy_mode="iptables", cluster_ip="10.0.0.10")
