"""The test fleet is what its spec says: read back through the real apiservers and Prometheus."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import urllib3
import yaml
from kubernetes import client, config

from tests.fleet import metrics as M
from tests.fleet import spec as S
from tests.fleet.fleet import Fleet, running

REPO = Path(__file__).resolve().parents[1]


def _api(fleet: Fleet, ctx: str, user: str = "admin") -> client.ApiClient:
    return config.new_client_from_config(str(fleet.kubeconfig_for(user)), context=ctx)


def _prom(fleet: Fleet, query: str, at: float | None = None) -> list[dict]:
    q = urllib.parse.urlencode({"query": query, "time": fleet.metrics_end if at is None else at})
    with urllib.request.urlopen(f"{fleet.prometheus_url}/api/v1/query?{q}", timeout=10) as r:
        body = json.load(r)
    assert body["status"] == "success", body
    return body["data"]["result"]


def _by_cluster(rows: list[dict]) -> dict[str, float]:
    return {r["metric"]["cluster"]: float(r["value"][1]) for r in rows}


# ---------------------------------------------------------------------------------------------------
# Spec and generator checks (no servers)


def test_default_fleet_has_the_promised_variety() -> None:
    exp = {s.name: S.expected(s) for s in S.FLEET}
    assert list(exp) == ["aks-legacy", "eks-prod", "cilium-edge"]
    assert exp["eks-prod"]["pods"] > 1000  # pagination is exercised
    assert {e["proxy_mode"] for e in exp.values()} == {"iptables", "ipvs", "none"}
    assert [e["conntrack_metrics"] for e in exp.values()].count(False) == 1
    assert exp["aks-legacy"]["insert_failed_grows"] and not exp["eks-prod"]["insert_failed_grows"]
    assert exp["aks-legacy"]["kernels"] == {"4.15.0-1029-azure": 3, "4.15.0-1030-azure": 1}
    assert exp["eks-prod"]["nodelocal"] and exp["eks-prod"]["nodelocal_nodes"] is not None
    assert len(exp["eks-prod"]["nodelocal_nodes"]) == exp["eks-prod"]["nodes"] - 1
    versions = {M.version_tuple(s.coredns_version) for s in S.FLEET}
    assert any(v >= (1, 11, 0) for v in versions) and any((1, 7, 0) <= v < (1, 11, 0) for v in versions)
    for s in S.FLEET:  # every cluster has the Deployment the mitigation tests patch
        checkout = exp[s.name]["workload_detail"][f"{s.name}/shop/Deployment/checkout"]
        assert checkout["dns_options"] == "ndots:2"
    all_opts = {d["dns_options"] for e in exp.values() for d in e["workload_detail"].values()}
    assert {"single-request-reopen", "use-vc", "timeout:2,attempts:3"} <= all_opts
    assert any(
        d["resolver_annotation"] == "musl" for e in exp.values() for d in e["workload_detail"].values()
    )


def test_spec_validation_rejects_bad_data() -> None:
    import dataclasses

    bad = dataclasses.replace(S.small_cluster(), coredns_ready=5)
    with pytest.raises(ValueError, match="coredns_ready"):
        S.validate([bad])
    with pytest.raises(ValueError, match="appears twice"):
        S.validate([S.small_cluster("a"), S.small_cluster("a")])
    crowded = dataclasses.replace(
        S.small_cluster(), workloads=(S.Workload("Deployment", "x", "big", S._c("nginx"), replicas=500),)
    )
    with pytest.raises(ValueError, match="more than its 110 max"):
        S.validate([crowded])


def test_openmetrics_is_valid_backfill_input() -> None:
    start, end = 1_700_000_000, 1_700_000_000 + 600
    text = M.openmetrics([S.small_cluster()], start, end, 60)
    assert text.endswith("# EOF\n")
    last: dict[str, int] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        series, _, ts = line.rpartition(" ")
        series = series.rsplit(" ", 1)[0]
        t = int(ts)
        assert start <= t <= end, line  # seconds, never milliseconds
        assert t > last.get(series, -1), f"out of order: {line}"
        last[series] = t
    # histogram buckets are cumulative
    buckets = [ln for ln in text.splitlines() if ln.startswith("coredns_dns_request_duration_seconds_bucket")]
    final = [ln for ln in buckets if ln.endswith(f" {end}") and 'type="A"' in ln and "pod=" in ln]
    counts = [int(ln.rsplit(" ", 2)[1]) for ln in final[:17]]
    assert counts == sorted(counts) and counts[-1] > 0
    with pytest.raises(ValueError, match="SECONDS"):
        M.openmetrics([S.small_cluster()], start * 1000, end * 1000)


def test_kubeconfig_for_rejects_unknown_user(tmp_path: Path) -> None:
    f = Fleet(tmp_path, [S.small_cluster()])
    try:
        with pytest.raises(ValueError, match="unknown user 'root'"):
            f.kubeconfig_for("root")
    finally:
        f.stop()


def test_failed_build_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tests.fleet.fleet as F

    fake = tmp_path / "build.sh"
    fake.write_text(
        "#!/usr/bin/env bash\n"
        f'case "$1" in print-dirs) echo "{tmp_path}/c/k8s/v9 {tmp_path}/c/etcd/v9";;\n'
        f'print-coredns) echo "{tmp_path}/c/coredns v1.11.1";;\n'
        "all) echo \"[test-fleet build] ERROR: 'go' is not on PATH\" >&2; exit 2;; esac\n"
    )
    monkeypatch.setattr(F, "BUILD_SH", fake)
    with pytest.raises(F.FleetError, match=r"build.sh all failed \(exit 2; full log .*'go' is not on PATH"):
        F.ensure_binaries()
    with pytest.raises(F.FleetError, match="kube-apiserver is missing; build it with"):
        F.start_fleet(tmp_path / "w", [S.small_cluster()], prometheus=False)


# ---------------------------------------------------------------------------------------------------
# The running fleet


@pytest.mark.fleet
@pytest.mark.parametrize("ctx", [s.name for s in S.FLEET])
def test_nodes_match_spec(fleet: Fleet, ctx: str) -> None:
    exp = fleet.expected(ctx)
    nodes = client.CoreV1Api(_api(fleet, ctx, "viewer")).list_node().items
    assert sorted(n.metadata.name for n in nodes) == sorted(exp["node_names"])
    spec = fleet.clusters[ctx].spec
    pools = {p.name: p for p in spec.pools}
    for n in nodes:
        info = n.status.node_info
        assert info.kernel_version == exp["node_kernel"][n.metadata.name]
        pool = pools[n.metadata.name.removeprefix(f"{ctx}-").rsplit("-", 1)[0]]
        assert info.os_image == pool.os_image
        assert info.container_runtime_version == pool.runtime
        assert info.kubelet_version == pool.kubelet
        labels = n.metadata.labels
        assert labels["node.kubernetes.io/instance-type"] == pool.instance_type
        assert labels["topology.kubernetes.io/zone"] in pool.zones
        if pool.label_key:
            assert labels[pool.label_key] == pool.name
        else:
            assert not {"agentpool", "eks.amazonaws.com/nodegroup", "cloud.google.com/gke-nodepool"} & set(
                labels
            )
        ready = [c for c in n.status.conditions if c.type == "Ready"]
        assert [c.status for c in ready] == ["True"]
        assert not n.spec.taints  # TaintNodesByCondition is off: nothing taints fake nodes
        assert n.status.capacity["pods"] == str(pool.max_pods)


@pytest.mark.fleet
def test_big_cluster_paginates_and_pods_run(fleet: Fleet) -> None:
    exp = fleet.expected("eks-prod")
    core = client.CoreV1Api(_api(fleet, "eks-prod", "viewer"))
    pods, pages, token = [], 0, None
    while True:
        r = core.list_pod_for_all_namespaces(limit=500, _continue=token)
        pods += r.items
        pages += 1
        token = r.metadata._continue
        if not token:
            break
    assert len(pods) == exp["pods"] > 1000
    assert pages >= 3
    phases: dict[str, int] = {}
    for p in pods:
        phases[p.status.phase] = phases.get(p.status.phase, 0) + 1
        if p.status.phase == "Running":
            assert p.spec.node_name and p.status.pod_ip
    assert phases == exp["pods_by_phase"]
    assert phases["Running"] > 1000


@pytest.mark.fleet
def test_owner_chains_and_templates(fleet: Fleet) -> None:
    api = _api(fleet, "aks-legacy")
    core, apps, batch = client.CoreV1Api(api), client.AppsV1Api(api), client.BatchV1Api(api)
    dep = apps.read_namespaced_deployment("checkout", "shop")
    opts = [(o.name, o.value) for o in dep.spec.template.spec.dns_config.options]
    assert opts == [("ndots", "2")]
    pods = core.list_namespaced_pod("shop", label_selector="app.kubernetes.io/name=checkout").items
    assert len(pods) == 3
    rs_ref = pods[0].metadata.owner_references[0]
    assert rs_ref.kind == "ReplicaSet" and rs_ref.controller
    rs = apps.read_namespaced_replica_set(rs_ref.name, "shop")
    assert rs.metadata.uid == rs_ref.uid
    assert rs.metadata.owner_references[0].uid == dep.metadata.uid
    env = {e.name: e.value for e in pods[0].spec.containers[0].env}
    assert env[S.FAKE_SECRET_NAME] == S.FAKE_SECRET_VALUE  # the collector must never store it

    cj = batch.read_namespaced_cron_job("nightly-report", "batch")
    jobs = [
        j
        for j in batch.list_namespaced_job("batch").items
        if j.metadata.owner_references[0].uid == cj.metadata.uid
    ]
    assert len(jobs) == 2
    job_pods = core.list_namespaced_pod("batch").items
    by_job = {p.metadata.owner_references[0].name: p.status.phase for p in job_pods}
    assert sorted(by_job.values()) == ["Running", "Succeeded"]
    assert set(by_job) == {j.metadata.name for j in jobs}

    musl = apps.read_namespaced_deployment("invoice", "legacy")
    assert musl.spec.template.metadata.annotations == {S.RESOLVER_ANNOTATION: "musl"}
    bare = core.read_namespaced_pod("debug-shell", "default")
    assert not bare.metadata.owner_references and bare.spec.dns_policy == "Default"


@pytest.mark.fleet
@pytest.mark.parametrize("ctx", [s.name for s in S.FLEET])
def test_dns_service_path_matches_spec(fleet: Fleet, ctx: str) -> None:
    exp = fleet.expected(ctx)
    api = _api(fleet, ctx, "viewer")
    core, apps, disc = client.CoreV1Api(api), client.AppsV1Api(api), client.DiscoveryV1Api(api)
    svc = core.read_namespaced_service("kube-dns", "kube-system")
    assert svc.spec.cluster_ip == exp["service_ip"]
    assert {(p.port, p.protocol) for p in svc.spec.ports} == {(53, "UDP"), (53, "TCP"), (9153, "TCP")}
    slices = disc.list_namespaced_endpoint_slice(
        "kube-system", label_selector="kubernetes.io/service-name=kube-dns"
    ).items
    ready = sum(1 for s in slices for e in s.endpoints if e.conditions.ready)
    assert ready == exp["endpoints"]
    coredns = apps.read_namespaced_deployment("coredns", "kube-system")
    assert coredns.spec.replicas == exp["coredns_replicas"]
    assert coredns.spec.template.spec.containers[0].image == exp["coredns_image"]
    corefile = core.read_namespaced_config_map("coredns", "kube-system").data["Corefile"]
    for plugin in (
        "errors",
        "health",
        "ready",
        "kubernetes cluster.local in-addr.arpa ip6.arpa",
        "prometheus :9153",
    ):
        assert plugin in corefile
    for plugin in ("forward . /etc/resolv.conf", "cache 30", "loop", "reload", "loadbalance"):
        assert plugin in corefile

    ds = {d.metadata.name for d in apps.list_namespaced_daemon_set("kube-system").items}
    cms = {c.metadata.name: c.data for c in core.list_namespaced_config_map("kube-system").items}
    spec = fleet.clusters[ctx].spec
    assert spec.cni_daemonset in ds
    assert ("kube-proxy" in ds) == (exp["proxy_mode"] != "none")
    if exp["kube_proxy_configmap"] == "kube-proxy":
        mode = yaml.safe_load(cms["kube-proxy"]["config.conf"])["mode"]
        assert (mode or "iptables") == exp["proxy_mode"]
    elif exp["kube_proxy_configmap"] == "kube-proxy-config":
        assert "kube-proxy" not in cms
        assert yaml.safe_load(cms["kube-proxy-config"]["config"])["mode"] == exp["proxy_mode"]
    else:
        assert not {"kube-proxy", "kube-proxy-config"} & set(cms)
        assert cms["cilium-config"]["kube-proxy-replacement"] == "true"
    assert ("node-local-dns" in ds) == exp["nodelocal"]
    if exp["nodelocal"]:
        assert exp["nodelocal_ip"] in cms["node-local-dns"]["Corefile"]
        nl = core.list_namespaced_pod("kube-system", label_selector="k8s-app=node-local-dns").items
        assert sorted(p.spec.node_name for p in nl) == exp["nodelocal_nodes"]
    dns_pods = core.list_namespaced_pod("kube-system", label_selector="k8s-app=kube-dns").items
    assert len(dns_pods) == exp["coredns_replicas"]
    assert all(p.status.phase == "Running" and p.spec.node_name for p in dns_pods)


@pytest.mark.fleet
def test_viewer_reads_everything_but_cannot_write(fleet: Fleet) -> None:
    api = _api(fleet, "cilium-edge", "viewer")
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    assert core.list_pod_for_all_namespaces(limit=5).items
    assert core.list_node().items
    with pytest.raises(client.ApiException) as e:
        apps.patch_namespaced_deployment("checkout", "shop", {"metadata": {"labels": {"x": "y"}}})
    assert e.value.status == 403
    with pytest.raises(client.ApiException) as e:
        core.delete_namespaced_pod("toolbox", "edge")
    assert e.value.status == 403
    authz = client.AuthorizationV1Api(api)

    def can(verb: str, resource: str, group: str = "") -> bool:
        body = client.V1SelfSubjectAccessReview(
            spec=client.V1SelfSubjectAccessReviewSpec(
                resource_attributes=client.V1ResourceAttributes(verb=verb, resource=resource, group=group)
            )
        )
        return authz.create_self_subject_access_review(body).status.allowed

    assert can("list", "pods") and can("watch", "nodes")
    assert not can("patch", "deployments", "apps") and not can("create", "pods")
    # Admin can write (the patch above was refused for RBAC reasons, not because it is invalid).
    admin = client.AppsV1Api(_api(fleet, "cilium-edge"))
    dry = admin.patch_namespaced_deployment(
        "checkout", "shop", {"metadata": {"labels": {"x": "y"}}}, dry_run="All"
    )
    assert dry.metadata.labels["x"] == "y"


@pytest.mark.fleet
def test_nobody_is_forbidden_everything(fleet: Fleet) -> None:
    api = _api(fleet, "aks-legacy", "nobody")
    core = client.CoreV1Api(api)
    for call in (core.list_pod_for_all_namespaces, core.list_node, lambda: core.list_namespaced_pod("shop")):
        with pytest.raises(client.ApiException) as e:
            call()
        assert e.value.status == 403
    review = client.AuthorizationV1Api(api).create_self_subject_access_review(
        client.V1SelfSubjectAccessReview(
            spec=client.V1SelfSubjectAccessReviewSpec(
                resource_attributes=client.V1ResourceAttributes(verb="list", resource="pods")
            )
        )
    )
    assert review.status.allowed is False


@pytest.mark.fleet
def test_prometheus_coredns_series_follow_versions(fleet: Fleet) -> None:
    rows = _prom(fleet, "count by (cluster, version) (coredns_build_info)")
    got = {r["metric"]["cluster"]: r["metric"]["version"] for r in rows}
    assert got == {c: fleet.expected(c)["coredns_version"] for c in fleet.contexts}
    pods = _by_cluster(rows)
    assert pods == {c: float(fleet.expected(c)["endpoints"]) for c in fleet.contexts}  # ready pods only
    new = set(
        _by_cluster(
            _prom(
                fleet,
                'count by (cluster) (coredns_proxy_request_duration_seconds_count{proxy_name="forward"})',
            )
        )
    )
    old = set(
        _by_cluster(_prom(fleet, "count by (cluster) (coredns_forward_request_duration_seconds_count)"))
    )
    for c in fleet.contexts:
        is_new = M.version_tuple(fleet.expected(c)["coredns_version"]) >= (1, 11, 0)
        assert (c in new, c in old) == (is_new, not is_new)
    qps = _by_cluster(_prom(fleet, "sum by (cluster) (rate(coredns_dns_requests_total[5m]))"))
    for c in fleet.contexts:
        assert qps[c] == pytest.approx(fleet.expected(c)["qps"], rel=0.35)
    p99 = _by_cluster(
        _prom(
            fleet,
            "histogram_quantile(0.99, sum by (cluster, le) "
            "(rate(coredns_dns_request_duration_seconds_bucket[5m])))",
        )
    )
    assert p99["aks-legacy"] > p99["eks-prod"]  # the legacy cluster has the slow tail


@pytest.mark.fleet
def test_prometheus_conntrack_series(fleet: Fleet) -> None:
    nodes = _by_cluster(_prom(fleet, "count by (cluster) (node_nf_conntrack_stat_insert_failed)"))
    with_series = {c for c in fleet.contexts if fleet.expected(c)["conntrack_metrics"]}
    assert set(nodes) == with_series and "cilium-edge" not in nodes
    for c in with_series:
        assert nodes[c] == fleet.expected(c)["nodes"]
        for m in (
            "node_nf_conntrack_stat_drop",
            "node_nf_conntrack_entries",
            "node_nf_conntrack_entries_limit",
        ):
            assert _by_cluster(_prom(fleet, f"count by (cluster) ({m})"))[c] == nodes[c]
    inc = _by_cluster(_prom(fleet, "sum by (cluster) (increase(node_nf_conntrack_stat_insert_failed[2h]))"))
    assert inc["aks-legacy"] > 100
    assert inc["eks-prod"] == 0  # flat (non-zero) counters: only increase() tells
    # The data ends at metrics_end: instant queries must pass time= (recipe §6.3).
    assert _prom(fleet, "node_nf_conntrack_entries", at=fleet.metrics_end + 600) == []
    assert fleet.metrics_end - fleet.metrics_start == pytest.approx(3 * 3600)


@pytest.mark.fleet
def test_extra_cluster_survives_port_collision_restarts_and_stops(fleet, fleet_factory, monkeypatch) -> None:
    # The first port the extra cluster gets is already served by the shared fleet's etcd (another
    # session grabbing a port between free_port() and the bind): it must retry on fresh ports and
    # never talk to the foreign etcd.
    import tests.fleet.fleet as F

    taken = int(fleet.clusters["aks-legacy"]._etcd_url.rsplit(":", 1)[1])
    real, handed = F.free_port, []

    def colliding() -> int:
        handed.append(taken if not handed else real())
        return handed[-1]

    monkeypatch.setattr(F, "free_port", colliding)
    f = fleet_factory([S.small_cluster("scratch")])
    rc = f.clusters["scratch"]
    assert len(handed) == 6 and f":{taken}" not in rc._etcd_url  # second set of 3 ports
    assert len(client.CoreV1Api(_api(fleet, "aks-legacy", "viewer")).list_node().items) == 4  # untouched
    api_pid, etcd_pid = rc.apiserver_pid, rc.etcd_pid
    assert api_pid and etcd_pid
    core = client.CoreV1Api(rc.api_client("viewer"))
    assert len(core.list_node().items) == 2

    rc.stop_apiserver()
    assert rc.apiserver_pid is None and not running(api_pid)
    with pytest.raises(urllib3.exceptions.MaxRetryError):  # connection refused: the server is really down
        client.CoreV1Api(rc.api_client("viewer")).list_node(_request_timeout=3)
    rc.start_apiserver()
    assert rc.apiserver_pid not in (None, api_pid)
    assert len(client.CoreV1Api(rc.api_client("viewer")).list_node().items) == 2  # data kept in etcd

    f.stop()
    time.sleep(0.2)
    assert not running(etcd_pid) and rc.etcd_pid is None and rc.apiserver_pid is None

    # A second start of the same spec comes from the seed cache, with the same content and live heartbeats.
    monkeypatch.setattr(F, "free_port", real)
    monkeypatch.delenv("DNSFLEET_FLEET_CACHE", raising=False)
    again = fleet_factory([S.small_cluster("scratch")])
    assert again.timings["scratch.cached"] == 1.0
    exp = again.expected("scratch")
    core = client.CoreV1Api(again.clusters["scratch"].api_client("viewer"))
    assert len(core.list_pod_for_all_namespaces().items) == exp["pods"]
    for n in core.list_node().items:
        beat = next(c.last_heartbeat_time for c in n.status.conditions if c.type == "Ready")
        assert time.time() - beat.timestamp() < 300


@pytest.mark.fleet
def test_cli_up_seeds_prints_paths_not_tokens_and_stops_on_sigterm(tmp_path: Path) -> None:
    d = tmp_path / "up"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.fleet",
            "up",
            "--dir",
            str(d),
            "--clusters",
            "scratch",
            "--no-prometheus",
        ],
        cwd=REPO,
        env={**os.environ, "DNSFLEET_FLEET_CACHE": "0"},  # always exercise real seeding here
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out: list[str] = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            out.append(line)
            if line.strip() == "READY":
                break
        assert out and out[-1].strip() == "READY", "".join(out) + proc.stderr.read()
        info = dict(ln.strip().split("=", 1) for ln in out[:-1])
        assert Path(info["KUBECONFIG"]).is_file() and info["CONTEXTS"] == "scratch"
        assert oct(Path(info["KUBECONFIG"]).stat().st_mode & 0o777) == "0o600"
        state = json.loads((d / "fleet.json").read_text())
        pid = state["clusters"]["scratch"]["apiserver_pid"]
        tokens = state["clusters"]["scratch"]["tokens"].values()
        assert len(set(tokens)) == 3
        core = client.CoreV1Api(config.new_client_from_config(info["KUBECONFIG_VIEWER"], context="scratch"))
        pods = core.list_pod_for_all_namespaces().items
        assert len(pods) == S.expected(S.small_cluster("scratch"))["pods"]
        assert {p.status.phase for p in pods} == {"Running"}
    finally:
        proc.send_signal(signal.SIGTERM)
        rest_out, err = proc.communicate(timeout=60)
    text = "".join(out) + rest_out + err
    assert proc.returncode == 0, err
    for tok in tokens:
        assert tok not in text
    assert not running(pid)
