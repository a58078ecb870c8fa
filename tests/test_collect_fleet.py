"""The collector against the real test fleet (kube-apiserver + etcd per cluster, backfilled Prometheus).

Destructive cases (compacting etcd, restarting or stopping an apiserver, RBAC changes) run on an extra
``scratch`` cluster started for this module, never on the shared fleet.
"""

from __future__ import annotations

import json
import math
import socket
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest
import yaml

from dnsfleet import kube as K
from dnsfleet.collect import PromSource, scan, scan_cluster
from dnsfleet.collect import cluster as CS
from dnsfleet.engine import analyze
from dnsfleet.kube.refs import pod_proxy_path
from dnsfleet.snapshot import dumps, loads, new_snapshot
from tests.fleet import coredns as D
from tests.fleet import spec as S
from tests.fleet.fleet import ensure_binaries, start_fleet

pytestmark = pytest.mark.fleet
SECRET_ENV = b"hunter2-do-not-leak"


@pytest.fixture(scope="module")
def live(fleet) -> dict[str, Any]:
    """One scan of all three contexts with Prometheus, shared by the read-only assertions below."""
    events: list[tuple[str, str, str, int]] = []
    t0 = time.monotonic()
    snap = scan(
        kubeconfig=fleet.kubeconfig,
        all_contexts=True,
        prometheus=PromSource(fleet.prometheus_url, time=fleet.metrics_end),
        progress=lambda e, c, d: events.append((e, c, d, threading.get_ident())),
        timeout=10,
    )
    return {"snap": snap, "events": events, "elapsed": time.monotonic() - t0, "by": _by_name(snap)}


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """An extra one-cluster fleet this module may break and repair."""
    ensure_binaries()
    f = start_fleet(tmp_path_factory.mktemp("scratch"), [S.small_cluster("scratch")], prometheus=False)
    try:
        yield f
    finally:
        f.stop()


def _by_name(snap: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in snap["clusters"]}


# -- a full scan reads what the fleet holds ----------------------------------------------------------


def test_scan_reads_every_cluster_as_seeded(fleet, live):
    snap = live["snap"]
    assert snap["source"] == "live"
    assert [c["name"] for c in snap["clusters"]] == fleet.contexts
    loads(dumps(snap))  # valid against the snapshot format
    for ctx in fleet.contexts:
        c, e = live["by"][ctx], fleet.expected(ctx)
        assert c["status"] == "ok", (ctx, c["reason"])
        assert c["missing"] == [] and c["reason"] is None
        assert c["server_version"] == e["server_version"]
        assert c["provider"] == (e["provider"] if e["provider"] in ("aks", "eks", "gke") else None)
        assert sorted(n["name"] for n in c["nodes"]) == sorted(e["node_names"])
        assert {n["name"]: n["kernel_version"] for n in c["nodes"]} == e["node_kernel"]
        assert all(n["ready"] is True for n in c["nodes"])
        assert len(c["pods"]) == e["pods"]
        assert dict(Counter(p["phase"] for p in c["pods"])) == e["pods_by_phase"]
        assert dict(Counter(p["node"] for p in c["pods"] if p["node"])) == e["pods_per_node"]
        d = c["dns"]
        assert d["service_ip"] == e["service_ip"]
        assert d["ready_endpoints"] == e["endpoints"]
        assert d["coredns_version"] == e["coredns_version"]
        assert d["coredns_replicas"] == e["coredns_replicas"]
        assert d["kube_proxy_mode"] == e["proxy_mode"]
        assert d["corefile_facts"]["cluster_domain"] == "cluster.local" and "corefile" not in d
        assert d["corefile_facts"]["plugins"][:4] == ["errors", "health", "ready", "kubernetes"]
        # Facts, not decisions (rules/path.py decides from them).
        facts = {f["name"]: f for f in d["daemonset_facts"]}
        assert sorted(facts) == d["daemonsets"]
        spec = fleet.clusters[ctx].spec
        assert facts[spec.cni_daemonset]["ready_nodes"] == sorted(e["node_names"])
        if e["nodelocal"]:
            nl = facts[spec.nodelocal_name]
            assert nl["ready_nodes"] == e["nodelocal_nodes"] and "-localip" in nl["flags"]
            assert nl["localip"].split(",")[0] == e["nodelocal_ip"]
            assert d["configmap_facts"][spec.nodelocal_name]["link_local"] == e["nodelocal_ip"]
        assert d["configmap_facts"]["coredns"]["keys"] == ["Corefile"]
        assert d["service_ip_families"] == ["IPv4"]
        assert "nodelocal_nodes" not in d and "nfqueue_agent" not in d


def test_protobuf_and_json_reads_give_the_same_cluster(fleet):
    """The big lists are read as protobuf (kube/proto.py) unless the server answers JSON; both
    encodings must project to exactly the same rows, kube-system notes and DNS path."""
    seen: list[bytes] = []

    class Recording(K.Api):
        def get_bytes(self, path, query=None, accept="application/json"):
            data = super().get_bytes(path, query, accept)
            if path in ("/api/v1/pods", "/api/v1/nodes", "/apis/apps/v1/replicasets", "/apis/batch/v1/jobs"):
                seen.append(data[:4])
            return data

    for ctx in fleet.contexts:
        target = K.resolve_targets(fleet.kubeconfig, [ctx])[0]
        runs = {}
        for protobuf in (True, False):
            seen.clear()
            job = CS.ClusterScan(ctx, Recording(K.new_api_client(target, 10), 10), page_limit=100)
            job.protobuf = protobuf
            out = job.run()
            out.pop("collected_at")
            assert out["status"] == "ok", out["reason"]
            assert seen and all((head == b"k8s\x00") == protobuf for head in seen)
            notes = (job.coredns_pods, job.node_addresses, job._ds_pod_ready_nodes, job._kube_proxy_static)
            runs[protobuf] = (out, notes)
        assert runs[True] == runs[False], ctx
        pods = runs[True][0]["pods"]
        assert any(p["dns_config"] and p["dns_config"]["options"] for p in pods)  # the tricky fields ran
        assert runs[True][0]["owners"]["ReplicaSet"]  # ReplicaSet metadata was read


def test_cluster_specific_service_paths(live):
    by = live["by"]
    assert by["eks-prod"]["dns"]["kube_proxy_present"] is True  # mode came from kube-proxy-config (EKS)
    edge = by["cilium-edge"]["dns"]
    assert edge["kube_proxy_present"] is False and edge["kube_proxy_mode"] == "none"
    assert edge["cilium_config"]["kube-proxy-replacement"] == "true"
    assert "cilium" in edge["daemonsets"]
    assert by["aks-legacy"]["dns"]["cilium_config"] is None


def test_frames_roll_pods_up_to_their_workloads(fleet, live):
    a = analyze(live["snap"])
    for ctx in fleet.contexts:
        e = fleet.expected(ctx)
        row = a.clusters.set_index("cluster").loc[ctx]
        assert (row["nodes"], row["pods"], row["workloads"]) == (e["nodes"], e["pods"], e["workloads"])
        wl = a.workloads[a.workloads["cluster"] == ctx].set_index("workload_id")
        assert dict(Counter(wl["kind"])) == e["workloads_by_kind"]
        for wid, detail in e["workload_detail"].items():
            got = wl.loc[wid]
            assert (got["kind"], got["pods"], got["nodes"]) == (
                detail["kind"],
                detail["pods"],
                detail["nodes"],
            ), wid
            assert got["image"] == detail["image"]


def test_progress_events_arrive_in_order_on_the_calling_thread(fleet, live):
    events = live["events"]
    assert {tid for *_, tid in events} == {threading.get_ident()}
    for ctx in fleet.contexts:
        mine = [(e, d) for e, c, d, _ in events if c == ctx]
        assert mine[0][0] == "cluster_started" and mine[-1] == ("cluster_done", "ok")
        done = [d.split()[0] for e, d in mine if e == "resource_done"]
        for res in ("version", "nodes", "pods", "replicasets", "jobs", "configmaps", "metrics"):
            assert res in done, (ctx, res)
    assert live["elapsed"] < 30


# -- Prometheus ---------------------------------------------------------------------------------------


def test_prometheus_metrics_fill_the_frames(fleet, live):
    a = analyze(live["snap"])
    cm = a.coredns_metrics.set_index("cluster")
    for ctx in fleet.contexts:
        e = fleet.expected(ctx)
        m = live["by"][ctx]["metrics"]
        assert m["source"] == "prometheus" and m["window_s"] == 3600.0
        assert m["coredns"]["version"] == e["coredns_version"]
        row = cm.loc[ctx]
        for col in ("qps", "p50_ms", "p99_ms", "share_over_1s", "forward_p99_ms"):
            assert not _na(row[col]), (ctx, col)
        # CoreDNS 1.8.7 reports written rcodes as NOERROR (coredns#5125): its shares are unknown, and said so
        rcode_bug = e["coredns_version"] == "1.8.7"
        for col in ("servfail_share", "nxdomain_share"):
            assert _na(row[col]) == rcode_bug, (ctx, col)
        note = "" if _na(row["note"]) else str(row["note"])
        assert ("coredns/coredns/issues/5125" in note) == rcode_bug
        assert row["qps"] == pytest.approx(e["qps"], rel=0.25)
        assert 0 < row["p50_ms"] <= row["p99_ms"]
        series = m["coredns_series"]
        assert len(series["metrics"]["qps"]) == round(3 * 3600 / 60) + 1
        assert any(k.startswith("rcode:NXDOMAIN") for k in series["metrics"])
    assert len(a.coredns_series) > 0


def test_conntrack_is_null_not_zero_where_not_collected(fleet, live):
    a = analyze(live["snap"])
    for ctx in fleet.contexts:
        e = fleet.expected(ctx)
        ct_snap = live["by"][ctx]["metrics"]["conntrack"]
        rows = a.conntrack[a.conntrack["cluster"] == ctx]
        assert len(rows) == e["nodes"]
        if not e["conntrack_metrics"]:
            assert ct_snap["nodes"] == {} and ct_snap["reason"].startswith("not collected")
            assert not rows["available"].any()
            assert rows["insert_failed_increase"].isna().all()  # unknown, never 0
            assert "not collected" in (live["by"][ctx]["metrics"]["note"] or "")
        else:
            assert rows["available"].all()
            total = rows["insert_failed_increase"].sum()
            assert (total > 0) == e["insert_failed_grows"], ctx
            assert len(a.conntrack_series[a.conntrack_series["cluster"] == ctx]) > 0


def test_prometheus_down_or_wrong_label_is_not_collected(fleet):
    port = _closed_port()
    snap = scan(kubeconfig=fleet.kubeconfig, contexts=["aks-legacy"], prometheus=f"http://127.0.0.1:{port}")
    m = snap["clusters"][0]["metrics"]
    assert snap["clusters"][0]["status"] == "ok"
    assert m["coredns"] is None and m["source"] is None
    assert (
        m["note"] == f"not collected: Prometheus at http://127.0.0.1:{port} not reachable: connection refused"
    )
    src = PromSource(fleet.prometheus_url, cluster_label="k8s_cluster", time=fleet.metrics_end)
    m = scan(kubeconfig=fleet.kubeconfig, contexts=["aks-legacy"], prometheus=src)["clusters"][0]["metrics"]
    assert m["coredns"] is None and 'no CoreDNS series for k8s_cluster="aks-legacy"' in m["note"]


# -- scrape path --------------------------------------------------------------------------------------


def _scrape_bounds(fleet, context: str, t0: float, t1: float) -> tuple[float, float]:
    """The request rate a scrape between t0 and t1 must report: each served pod's requests over its uptime.
    CoreDNS derives its start from /proc (boot time in whole seconds) and started_at is taken just before
    the spawn, so each uptime is known to within ~2 s either way."""
    want = D.expected_scrape(fleet.clusters[context].spec)
    per_pod = want["requests"] / want["pods"]
    starts = [c.started_at for c in fleet.coredns if c.cluster == context and c.served]
    lo = sum(per_pod / (t1 - s + 2.0) for s in starts)
    hi = sum(per_pod / max(0.5, t0 - s - 2.0) for s in starts)
    return lo, hi


@pytest.mark.parametrize("context", ["aks-legacy", "eks-prod", "cilium-edge"])
def test_scrape_reads_real_coredns_through_the_pod_proxy(fleet, context):
    """A real CoreDNS of the image's version serves :9153 behind each ready pod's loopback IP and has
    answered a known query mix; the scan reads it through the API server's pod proxy, exactly."""
    if fleet.net is None:
        pytest.skip("serving CoreDNS to the pod proxy needs a network namespace (root); CI runs as root")
    want = D.expected_scrape(fleet.clusters[context].spec)
    t0 = time.time()
    snap = scan(kubeconfig=fleet.kubeconfig, contexts=[context], timeout=5)
    c = snap["clusters"][0]
    t1 = time.time()
    assert c["status"] == "ok"
    m = c["metrics"]
    assert m["source"] == "scrape", m["note"]
    cd = m["coredns"]
    assert cd["version"] == want["version"]
    # CoreDNS 1.8.7 counts written NXDOMAIN answers as NOERROR (coredns#5125): the real server's figure
    assert cd["nxdomain_share"] == pytest.approx(want["rcodes"].get("NXDOMAIN", 0) / want["requests"])
    # ...which the engine then does not use: unknown, not "no NXDOMAIN"
    frame = analyze(snap).coredns_metrics.set_index("cluster").loc[context]
    assert pd.isna(frame["nxdomain_share"]) == (want["version"] == "1.8.7")
    assert cd["servfail_share"] == pytest.approx(want["rcodes"]["SERVFAIL"] / want["requests"])
    lo, hi = _scrape_bounds(fleet, context, t0, t1)
    assert lo <= cd["qps"] <= hi
    # latency: 5 % of the queries waited 100 ms in the erratic plugin, the rest were answered at once
    assert cd["p50_ms"] < 64 and 64 < cd["p99_ms"] <= 256 and cd["share_over_1s"] == 0.0
    assert m["note"].startswith(f"single scrape of {want['pods']} CoreDNS pod(s) at ")
    if want["dark"]:  # a ready pod with nothing listening: named, and the others still count
        assert f"{len(want['dark'])} pod(s) not reachable ({want['dark'][0]}: " in m["note"]
    else:
        assert "not reachable" not in m["note"]
    assert "\n" not in m["note"]


def test_scrape_buckets_through_the_pod_proxy_match_the_queries_sent(fleet):
    """The raw exposition behind one pod, read through the pod proxy: every query counted once, by rcode
    and by latency bucket."""
    from dnsfleet.collect import scrape as SC

    if fleet.net is None:
        pytest.skip("serving CoreDNS to the pod proxy needs a network namespace (root); CI runs as root")
    spec = fleet.clusters["aks-legacy"].spec
    pod = next(c for c in fleet.coredns if c.cluster == "aks-legacy" and c.served)
    target = K.resolve_targets(fleet.kubeconfig, ["aks-legacy"])[0]
    api = K.Api(K.new_api_client(target, 10), 10)
    text = api.get_bytes(
        pod_proxy_path("kube-system", pod.pod, SC.METRICS_PORT, "metrics"), accept="text/plain"
    )
    s = SC.parse_exposition(text.decode())
    want = D.expected_scrape(spec)
    per_pod = {rcode: n // want["pods"] for rcode, n in want["rcodes"].items()}
    assert s.version == spec.coredns_version
    assert s.requests == sum(per_pod.values()) and s.rcodes == per_pod
    assert s.duration[math.inf] == s.requests
    assert s.duration[math.inf] - s.duration[0.064] == D.TRAFFIC["slow.test"][1]  # only slow.test > 64 ms
    assert s.duration[1.024] == s.requests


def test_scrape_with_nothing_listening_gives_a_clean_note(fleet_factory):
    """Every ready CoreDNS pod dark: the proxy answers, no metrics, one line naming a pod."""
    import dataclasses

    spec = dataclasses.replace(S.small_cluster("dark"), coredns_dark=2)
    f = fleet_factory([spec])
    t0 = time.monotonic()
    c = scan(kubeconfig=f.kubeconfig, contexts=["dark"], timeout=3)["clusters"][0]
    assert c["status"] == "ok" and time.monotonic() - t0 < 20
    m = c["metrics"]
    assert m["source"] is None and m["coredns"] is None
    assert m["note"].startswith(
        "not collected: CoreDNS metrics not reachable through the API server pod proxy"
    )
    assert "\n" not in m["note"]
    assert any(p in m["note"] for p in D.expected_scrape(spec)["dark"])


# -- pagination ---------------------------------------------------------------------------------------


def test_pagination_returns_every_pod_exactly_once(fleet):
    e = fleet.expected("eks-prod")
    assert e["pods"] > 1000
    target = K.resolve_targets(fleet.kubeconfig, ["eks-prod"])[0]
    api = K.Api(K.new_api_client(target, 10), 10)
    pages = list(K.list_pages(api, "/api/v1/pods", limit=100))
    assert len(pages) == -(-e["pods"] // 100)
    assert all(len(p) == 100 for p in pages[:-1])
    c = scan_cluster(target, page_limit=100, scrape=False)
    keys = [(p["namespace"], p["name"]) for p in c["pods"]]
    assert len(keys) == len(set(keys)) == e["pods"]
    spec = next(s for s in fleet.specs if s.name == "eks-prod")
    assert {n for _, n in keys} == {p.name for p in S.all_pods(spec)}


def test_expired_continue_token_restarts_the_list_without_duplicates(scratch):
    """A real 410: compact etcd past the list's revision and restart the apiserver between two pages."""
    rc = scratch.clusters["scratch"]
    target = K.resolve_targets(scratch.kubeconfig, ["scratch"])[0]
    api = K.Api(K.new_api_client(target, 10), 10)
    restarts: list[int] = []
    broke = False

    def after_page(n: int) -> None:
        nonlocal broke
        if n == 1 and not broke:
            broke = True
            _compact_etcd(rc)
            rc.stop_apiserver()
            rc.start_apiserver()

    seen: list[str] = []

    def project(obj: dict[str, Any]) -> str:
        seen.append(obj["metadata"]["name"])
        return obj["metadata"]["name"]

    rows = K.list_all(
        api,
        "/api/v1/pods",
        project,
        limit=2,
        on_page=after_page,
        on_restart=lambda: restarts.append(len(seen)),
    )
    truth = [
        it["metadata"]["name"] for it in K.Api(K.new_api_client(target, 10), 10).get("/api/v1/pods")["items"]
    ]
    assert broke and restarts == [2]  # the server really answered 410 after the first page of 2
    assert len(seen) == len(truth) + 2  # page 1 was read twice...
    assert sorted(rows) == sorted(truth) and len(rows) == len(set(rows))  # ...but counted once


# -- auth ---------------------------------------------------------------------------------------------


def test_viewer_scans_like_admin_and_nobody_is_forbidden(fleet, live):
    viewer = _by_name(scan(kubeconfig=fleet.kubeconfig_for("viewer"), all_contexts=True, scrape=False))
    for ctx in fleet.contexts:
        assert viewer[ctx]["status"] == "ok", viewer[ctx]["reason"]
        assert len(viewer[ctx]["pods"]) == len(live["by"][ctx]["pods"])
        assert viewer[ctx]["dns"] == live["by"][ctx]["dns"]
    t0 = time.monotonic()
    nobody = scan(kubeconfig=fleet.kubeconfig_for("nobody"), all_contexts=True)
    assert time.monotonic() - t0 < 10
    for c in nobody["clusters"]:
        assert c["status"] == "failed"
        assert c["reason"] == 'forbidden: user "nobody" cannot list nodes'
        assert c["nodes"] is None and c["pods"] is None and c["dns"] is None
    rows = analyze(nobody).clusters
    assert set(rows["status"]) == {"failed"} and set(rows["level"]) == {"unknown"}


def test_forbidden_configmaps_gives_a_partial_cluster(scratch):
    """``nobody`` bound to read everything the scan needs except ConfigMaps."""
    rest = scratch.clusters["scratch"].api_client("admin")
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "no-configmaps"},
        "rules": [
            {
                "apiGroups": [""],
                "resources": ["nodes", "pods", "services", "pods/proxy"],
                "verbs": ["get", "list"],
            },
            {
                "apiGroups": ["apps"],
                "resources": ["replicasets", "deployments", "daemonsets"],
                "verbs": ["get", "list"],
            },
            {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "list"]},
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list"]},
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "no-configmaps"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "no-configmaps"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "nobody"}],
    }
    base = "/apis/rbac.authorization.k8s.io/v1"
    _call(rest, "POST", f"{base}/clusterroles", role)
    _call(rest, "POST", f"{base}/clusterrolebindings", binding)
    try:
        c = _wait_scan(scratch.kubeconfig_for("nobody"), "scratch", lambda c: c["status"] != "failed")
        e = scratch.expected("scratch")
        assert c["status"] == "partial"
        assert c["missing"] == ["configmaps"]
        assert c["reason"] == 'could not read forbidden: user "nobody" cannot get configmaps'
        assert len(c["pods"]) == e["pods"] and len(c["nodes"]) == e["nodes"]
        d = c["dns"]
        assert d["corefile_facts"] is None and d["kube_proxy_mode"] is None and d["cilium_config"] is None
        assert d["service_ip"] == e["service_ip"] and d["ready_endpoints"] == e["endpoints"]
        row = analyze(loads(dumps(new_snapshot([c], source="live")))).dns_service.iloc[0]
        assert row["kube_proxy_mode"] == "unknown"  # not guessed from the DaemonSet alone
    finally:
        _call(rest, "DELETE", f"{base}/clusterrolebindings/no-configmaps")
        _call(rest, "DELETE", f"{base}/clusterroles/no-configmaps")


# -- failures -----------------------------------------------------------------------------------------


def test_unreachable_cluster_fails_alone_within_the_timeout(fleet, scratch, tmp_path, monkeypatch):
    rc = scratch.clusters["scratch"]
    rc.stop_apiserver()
    try:
        monkeypatch.setenv("KUBECONFIG", f"{fleet.kubeconfig}:{scratch.kubeconfig}")
        t0 = time.monotonic()
        snap = scan(all_contexts=True, timeout=3, scrape=False)
        elapsed = time.monotonic() - t0
    finally:
        rc.start_apiserver()
    by = _by_name(snap)
    assert set(by) == {*fleet.contexts, "scratch"}
    assert by["scratch"]["status"] == "failed"
    # refused connections are retried with backoff (an apiserver restart takes ~3 s), then given up
    assert by["scratch"]["reason"].startswith(
        f"unreachable: connection refused to {rc.server} (gave up after "
    )
    assert all(by[c]["status"] == "ok" for c in fleet.contexts)
    assert elapsed < 3 + 10


def test_timeout_tls_and_401_are_plain_reasons(fleet, tmp_path):
    rc = fleet.clusters["aks-legacy"]
    other_ca = fleet.clusters["eks-prod"].ca
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts the TCP handshake (backlog) and never answers
    port = silent.getsockname()[1]
    entries = {
        "hang": (f"https://127.0.0.1:{port}", rc.ca, rc.tokens["admin"]),
        "wrong-ca": (rc.server, other_ca, rc.tokens["admin"]),
        "bad-token": (rc.server, rc.ca, "not-a-valid-token-0123456789"),
        "good": (rc.server, rc.ca, rc.tokens["admin"]),
    }
    kc = tmp_path / "kubeconfig"
    kc.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": n, "cluster": {"server": s, "certificate-authority": str(ca)}}
                    for n, (s, ca, _) in entries.items()
                ],
                "users": [{"name": n, "user": {"token": t}} for n, (_, _, t) in entries.items()],
                "contexts": [{"name": n, "context": {"cluster": n, "user": n}} for n in entries],
            }
        )
    )
    try:
        t0 = time.monotonic()
        snap = scan(kubeconfig=kc, all_contexts=True, timeout=2, scrape=False)
        elapsed = time.monotonic() - t0
    finally:
        silent.close()
    by = _by_name(snap)
    assert by["hang"]["reason"] == f"timed out after 2 s talking to https://127.0.0.1:{port}"
    assert by["wrong-ca"]["reason"].startswith("TLS error: certificate verify failed")
    assert by["bad-token"]["reason"] == f"unauthorized: {rc.server} rejected the credentials (401)"
    assert by["good"]["status"] == "ok"
    assert elapsed < 10
    raw = dumps(snap, compress=False)
    for t in (rc.tokens["admin"].encode(), b"not-a-valid-token"):
        assert t not in raw


# -- secrets ------------------------------------------------------------------------------------------


def test_snapshot_holds_no_env_values_tokens_or_other_annotations(fleet, live):
    raw = dumps(live["snap"], compress=False)
    assert SECRET_ENV not in raw
    for rc in fleet.clusters.values():
        for token in rc.tokens.values():
            assert token.encode() not in raw
    doc = orjson.loads(raw)
    for c in doc["clusters"]:
        for p in c["pods"]:
            assert set(p) == {
                "namespace",
                "name",
                "node",
                "owner_kind",
                "owner_name",
                "phase",
                "host_network",
                "dns_policy",
                "dns_config",
                "images",
                "resolver_annotation",
            }
    annotated = [p for c in doc["clusters"] for p in c["pods"] if p["resolver_annotation"]]
    assert annotated and {p["resolver_annotation"] for p in annotated} <= {
        "glibc",
        "musl",
        "go",
        "go-cgo",
        "c-ares",
        "jvm",
    }


# -- helpers ------------------------------------------------------------------------------------------


def _na(v: Any) -> bool:
    return v is None or v is __import__("pandas").NA or (isinstance(v, float) and v != v)


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _etcd_url(rc) -> str:
    cmd = Path(f"/proc/{rc.etcd_pid}/cmdline").read_bytes().split(b"\0")
    for arg in cmd:
        if arg.startswith(b"--listen-client-urls="):
            return arg.split(b"=", 1)[1].decode().split(",")[0]
    raise AssertionError("etcd client URL not found")


def _etcd(url: str, path: str, body: dict) -> dict:
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


def _compact_etcd(rc) -> None:
    """Bump the revision with a write, then compact etcd to it (what etcd does on its own, later)."""
    client = rc.api_client("admin")
    _call(client, "POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"generateName": "bump-"}})
    url = _etcd_url(rc)
    rev = _etcd(url, "/v3/kv/range", {"key": "YQ=="})["header"]["revision"]
    _etcd(url, "/v3/kv/compaction", {"revision": rev, "physical": True})


def _call(client, method: str, path: str, body: dict | None = None) -> None:
    m, url, headers, data, _ = client.param_serialize(
        method=method,
        resource_path=path,
        header_params={"Content-Type": "application/json"},
        body=body,
        auth_settings=["BearerToken"],
    )
    client.call_api(m, url, header_params=headers, body=data, _request_timeout=10).read()


def _wait_scan(kubeconfig: Path, ctx: str, ok, tries: int = 20) -> dict[str, Any]:
    """RBAC changes reach the authorizer's cache within moments; scan until they show."""
    c = None
    for _ in range(tries):
        c = scan(kubeconfig=kubeconfig, contexts=[ctx], timeout=5, scrape=False)["clusters"][0]
        if ok(c):
            return c
        time.sleep(0.25)
    return c
