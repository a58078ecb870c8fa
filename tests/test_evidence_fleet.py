"""The verdicts on real API servers and a backfilled Prometheus (tests.fleet.spec.EVIDENCE_FLEET):

- ``daemonsets-only``: only hostNetwork DaemonSets (kube-proxy, calico-node, node-exporter) and NodeLocal
  DNSCache installed by a Helm chart under a prefixed name: not applicable (D8), never unknown, nothing
  recommended; NodeLocal recognised by what it is, its ready nodes read.
- ``evidence-mix``: IPVS; a 5.15 pool whose insert_failed grows (D6), a 5.15 pool with flat counters
  (IPVS on >= 5.6: unknown), a busy 5.4 pool with flat counters while CoreDNS answers 3 % SERVFAIL
  (D7); Go services on alpine, annotated and not.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest

from dnsfleet.collect import PromSource, scan
from dnsfleet.engine import Assessment, analyze
from dnsfleet.report import report_frames
from tests.fleet import spec as S
from tests.fleet.fleet import Fleet, FleetError, ensure_binaries, start_fleet

pytestmark = pytest.mark.fleet


@pytest.fixture(scope="module")
def evidence(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Fleet, dict[str, Any], Assessment]]:
    try:
        ensure_binaries()
        f = start_fleet(tmp_path_factory.mktemp("evidence"), list(S.EVIDENCE_FLEET), prometheus=True)
    except FleetError as e:
        pytest.fail(f"the evidence fleet could not start: {e}", pytrace=False)
    try:
        snap = scan(
            kubeconfig=f.kubeconfig_for("viewer"),
            contexts=f.contexts,
            prometheus=PromSource(f.prometheus_url, time=f.metrics_end),
            scrape=False,
        )
        yield f, snap, analyze(snap)
    finally:
        f.stop()


def _wl(a: Assessment, cluster: str, name: str) -> pd.Series:
    w = a.workloads[(a.workloads["cluster"] == cluster) & (a.workloads["name"] == name)]
    assert len(w) == 1, name
    return w.iloc[0]


def _ctext(a: Assessment, cluster: str, factor: str) -> str:
    f = a.factors
    return " ".join(f[(f["scope"] == "cluster") & (f["key"] == cluster) & (f["factor"] == factor)]["text"])


def test_daemonsets_only_cluster_is_not_applicable_and_gets_no_advice(evidence) -> None:
    fleet, _snap, a = evidence
    c = a.clusters.set_index("cluster").loc["daemonsets-only"]
    assert c["status"] == "ok", c["reason"]
    assert (
        c["level"] == "n/a" and pd.isna(c["score"]) and c["unknown_pods"] == 0 and c["applicable_pods"] == 0
    )
    assert c["pods"] == fleet.expected("daemonsets-only")["pods"]
    assert "not applicable (D8)" in c["why"]
    assert a.recommendations[a.recommendations["cluster"] == "daemonsets-only"].empty
    wl = a.workloads[a.workloads["cluster"] == "daemonsets-only"]
    assert set(wl["level"]) == {"n/a"} and wl["score"].isna().all()
    assert {"kube-proxy", "calico-node", "node-exporter", "dns-cache-node-local-dns", "coredns"} == set(
        wl["name"]
    )


def test_chart_prefixed_nodelocal_is_recognised_with_its_ready_nodes(evidence) -> None:
    fleet, _snap, a = evidence
    exp = fleet.expected("daemonsets-only")
    d = a.dns_service.set_index("cluster").loc["daemonsets-only"]
    assert d["nodelocal"] == True and "k8s-dns-node-cache" in d["nodelocal_how"]  # noqa: E712
    assert d["nodelocal_ip"] == "169.254.20.10" and d["path"] == "nodelocal"
    nodes = a.nodes[a.nodes["cluster"] == "daemonsets-only"].set_index("node")["nodelocal_ready"]
    assert sorted(n for n, ready in nodes.items() if ready) == exp["nodelocal_nodes"]
    assert nodes.sum() == exp["nodes"] - 1  # the chart's DaemonSet misses one node


def test_d6_growth_on_515_is_exposed_by_evidence(evidence) -> None:
    _, _, a = evidence
    w = _wl(a, "evidence-mix", "api-dropping")
    assert w["exposed_pods"] == 2 and w["level"] == "high" and "(D6)" in w["why"]
    nodes = a.nodes[a.nodes["cluster"] == "evidence-mix"].set_index("node")
    for n in ("evidence-mix-dropping-0", "evidence-mix-dropping-1"):
        assert "(D6)" in nodes.loc[n, "why"], n
        assert {nodes.loc[n, r] for r in ("race1", "race2", "race3")} == {"fixed"}  # the table says fixed
    assert "D6" in _ctext(a, "evidence-mix", "kernel")
    plan = a.recommendations[a.recommendations["mitigation"] == "kernel-upgrade"]
    assert not plan["target"].str.contains("dropping").any()


def test_ipvs_on_515_is_unknown_not_fixed(evidence) -> None:
    _, _, a = evidence
    w = _wl(a, "evidence-mix", "api-ipvs")
    assert w["level"] == "unknown" and w["unknown_pods"] == 2 and w["exposed_pods"] == 0
    assert "IPVS" in _ctext(a, "evidence-mix", "kernel")
    assert a.dns_service.set_index("cluster").loc["evidence-mix", "kube_proxy_mode"] == "ipvs"


def test_d7_busy_flat_old_nodes_with_servfails_probably_not_this_race(evidence) -> None:
    _, _, a = evidence
    c = a.clusters.set_index("cluster").loc["evidence-mix"]
    assert "probably not this race" in c["findings"] and "SERVFAIL" in c["findings"]
    f = a.recommendations[a.recommendations["finding_type"] == "not-this-race"]
    assert f["cluster"].tolist() == ["evidence-mix"]
    assert "evidence-mix-old-0" in f["note"].iloc[0] and "evidence-mix-old-1" in f["note"].iloc[0]
    assert "dropping" not in f["note"].iloc[0]  # growing counters are no D7 evidence
    csv = report_frames(a)["recommendations.csv"]
    assert (csv["mitigation"] == "not-this-race").sum() == 1
    nodes = a.nodes.set_index("node")
    assert "(D7)" in nodes.loc["evidence-mix-old-0", "why"]


def test_go_on_alpine_annotated_and_not(evidence) -> None:
    _, _, a = evidence
    go = _wl(a, "evidence-mix", "gw-annotated")
    assert go["resolver"] == "go" and go["score"] == 0 and "(R6)" in go["why"]
    plain = _wl(a, "evidence-mix", "gw-plain")
    assert plain["resolver"] == "musl" and plain["score"] > 0
    recs = a.recommendations.set_index(["target", "mitigation"])
    note = recs.loc[(plain["workload_id"], "nodelocal-dnscache"), "note"]
    assert "dnsfleet.io/resolver=go" in note
    cgo = _wl(a, "evidence-mix", "gw-cgo")
    assert cgo["resolver"] == "go-cgo" and cgo["recommended_fix"] == "godebug-netdns-go"
    assert go["workload_id"] not in set(a.recommendations["target"])


def test_glibc_236_on_an_ipv4_cluster_gets_no_aaaa(evidence) -> None:
    _, snap, a = evidence
    c = {x["name"]: x for x in snap["clusters"]}["evidence-mix"]
    assert c["dns"]["service_ip_families"] == ["IPv4"]
    old = _wl(a, "evidence-mix", "api-old")
    targets = a.recommendations[a.recommendations["mitigation"] == "no-aaaa"]["target"]
    assert old["workload_id"] in set(targets)


def test_ranking_puts_known_exposure_first(evidence) -> None:
    _, _, a = evidence
    ranked = a.clusters.sort_values("rank")["cluster"].tolist()
    assert ranked == ["evidence-mix", "daemonsets-only"]
