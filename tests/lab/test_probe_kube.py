"""The probe's Kubernetes side (issue 17 §2) against a real API server, with the lab node agent standing in
for the kubelet of each node (tests/lab/agent.py): pods created restricted and pinned, results read back,
everything cleaned up (also on Ctrl-C), a forbidden user refused before anything is created."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dnsfleet.kube import Kube
from dnsfleet.probe.kube import LABEL, ProbeOptions, ProbeRefused, ProbeRun
from tests.fleet.fleet import Fleet
from tests.fleet.spec import small_cluster
from tests.lab import net
from tests.lab.agent import NodeAgent
from tests.lab.run import coredns_binary

pytestmark = [pytest.mark.lab, pytest.mark.fleet]

NAMES = ("kubernetes.default.svc",)  # found at the third search step of the lab's cluster domain


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    from tests.fleet.fleet import FleetError, ensure_binaries, start_fleet

    try:
        ensure_binaries()
        f = start_fleet(tmp_path_factory.mktemp("probe-fleet"), [small_cluster("probe")], prometheus=False)
    except FleetError as e:
        pytest.fail(f"the probe test cluster could not start: {e}", pytrace=False)
    try:
        yield f
    finally:
        f.stop()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[net.Lab]:
    if reason := net.available():
        pytest.skip(reason)
    lab = net.Lab(tmp_path_factory.mktemp("probe-lab"), coredns_binary())
    try:
        lab.build()
        yield lab
    except net.LabError as e:
        pytest.fail(f"the race lab could not be built: {e}", pytrace=False)
    finally:
        lab.close()


def _kube(f: Fleet, user: str = "admin") -> Kube:
    return Kube.from_kubeconfig(
        f.kubeconfig_for(user) if user != "admin" else f.kubeconfig, "probe", timeout=10
    )


@pytest.fixture(scope="module")
def agents(cluster: Fleet, lab: net.Lab) -> Iterator[dict[str, NodeAgent]]:
    kube = _kube(cluster)
    nodes = sorted(n["metadata"]["name"] for n in kube.request("GET", "/api/v1/nodes")["items"])
    # the first node's pods pass the race emulator, the second's do not
    out = {n: NodeAgent(_kube(cluster), lab, n, emulated=(i == 0)) for i, n in enumerate(nodes)}
    for a in out.values():
        a.start()
    try:
        yield out
    finally:
        for a in out.values():
            a.stop()


def _leftovers(kube: Kube, ns: str) -> tuple[list, list, dict]:
    pods = kube.request("GET", f"/api/v1/namespaces/{ns}/pods")["items"]
    cms = kube.request("GET", f"/api/v1/namespaces/{ns}/configmaps")["items"]
    try:
        nsobj = kube.request("GET", f"/api/v1/namespaces/{ns}")
    except Exception:
        nsobj = {}
    return pods, [c for c in cms if c["metadata"]["name"] == "dnsfleet-probe"], nsobj


def test_probe_measures_stalls_on_the_racing_node_only(cluster: Fleet, agents: dict[str, NodeAgent]) -> None:
    kube = _kube(cluster)
    opts = ProbeOptions(names=NAMES, lookups=3, concurrency=3, deadline_s=40, poll_s=0.5)
    run = ProbeRun(kube, opts).run()
    racing, clean = sorted(agents)
    by = {(r["node"], r["resolver"]): r for r in run["results"]}
    assert set(by) == {(racing, "glibc"), (racing, "musl"), (clean, "glibc"), (clean, "musl")}
    g_race, g_clean = by[(racing, "glibc")], by[(clean, "glibc")]
    assert g_race["status"] == "ok" and g_clean["status"] == "ok", run
    # the API server cannot fetch logs from the lab's nodes: results came from the termination message
    assert g_race["source"] == "termination message"
    assert g_race["report"]["lookups"] == 3 and g_race["report"]["ge_5s"] == 3  # glibc's 5 s timeout
    assert g_clean["report"]["lookups"] == 3 and g_clean["report"]["ge_1s"] == 0
    assert "no musl Python in the lab" in by[(racing, "musl")]["status"]
    pods, cms, nsobj = _leftovers(kube, run["namespace"])
    assert pods == [] and cms == []
    assert not nsobj or nsobj["metadata"].get("deletionTimestamp")  # no namespace controller here


def test_pods_meet_restricted_and_are_pinned(cluster: Fleet) -> None:
    kube = _kube(cluster)
    probe = ProbeRun(kube, ProbeOptions(dns_options=(("single-request-reopen", None),)))
    try:
        probe.create_namespace()
        probe.create_configmap()
        name = probe.create_pod("probe-workers-0", "glibc")  # admitted under enforce=restricted
        pod = kube.request("GET", f"/api/v1/namespaces/{probe.namespace}/pods/{name}")
    finally:
        assert probe.cleanup() == []
    spec = pod["spec"]
    assert spec["nodeName"] == "probe-workers-0" and spec["activeDeadlineSeconds"] == 120
    assert spec["automountServiceAccountToken"] is False
    assert spec["dnsConfig"]["options"] == [{"name": "single-request-reopen"}]
    ns_labels = kube.request("GET", f"/api/v1/namespaces/{probe.namespace}")["metadata"]["labels"]
    assert ns_labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_privileged_pod_is_rejected_in_the_probe_namespace(cluster: Fleet) -> None:
    """The namespace label is enforced: a pod that breaks restricted cannot be created there."""
    from dnsfleet.kube import KubeError

    kube = _kube(cluster)
    probe = ProbeRun(kube, ProbeOptions())
    try:
        probe.create_namespace()
        bad = probe.pod_manifest("probe-workers-0", "glibc")
        bad["spec"]["securityContext"]["runAsNonRoot"] = False
        with pytest.raises(KubeError, match="restricted"):
            kube.request("POST", f"/api/v1/namespaces/{probe.namespace}/pods", body=bad)
    finally:
        assert probe.cleanup() == []


def test_ctrl_c_while_waiting_still_cleans_up(cluster: Fleet) -> None:
    kube = _kube(cluster)
    seen: list[str] = []

    def interrupt(msg: str) -> None:
        seen.append(msg)
        if "finished" in msg:
            raise KeyboardInterrupt

    probe = ProbeRun(
        kube,
        ProbeOptions(
            names=NAMES, resolvers=("musl",), node_selector="kubernetes.io/hostname=probe-workers-1"
        ),
        progress=interrupt,
    )
    with pytest.raises(KeyboardInterrupt):
        probe.run()
    assert any("created" in m for m in seen)
    pods, cms, _ = _leftovers(kube, probe.namespace)
    assert pods == [] and cms == [] and probe.created_pods == []


def test_forbidden_user_is_refused_before_anything_is_created(cluster: Fleet) -> None:
    for user in ("viewer", "nobody"):
        kube = _kube(cluster, user)
        probe = ProbeRun(kube, ProbeOptions())
        with pytest.raises(ProbeRefused, match="not allowed to create namespaces") as e:
            probe.run()
        assert "--print-rbac" in str(e.value)
        assert not probe.created_namespace


def test_cli_probe_writes_log_and_prints_per_node(
    cluster: Fleet, agents: dict[str, NodeAgent], tmp_path: Path, capsys
) -> None:
    from dnsfleet.cli import main

    log = tmp_path / "probes.jsonl"
    code = main(
        [
            "probe",
            "--kubeconfig",
            str(cluster.kubeconfig),
            "--context",
            "probe",
            "--resolver",
            "glibc",
            "--name",
            NAMES[0],
            "--lookups",
            "2",
            "--deadline",
            "40",
            "--probe-log",
            str(log),
            "--no-default-names",
        ]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "probe-workers-0" in out.out and "probe-workers-1" in out.out
    assert log.read_text().count("\n") == 1
    code = main(["probe", "--kubeconfig", str(cluster.kubeconfig_for("nobody")), "--context", "probe"])
    err = capsys.readouterr().err
    assert code == 2 and "may not run" in err and "Traceback" not in err


def test_print_rbac(capsys) -> None:
    from dnsfleet.cli import main

    assert main(["probe", "--print-rbac"]) == 0
    text = capsys.readouterr().out
    assert "kind: ClusterRole" in text and "pods/log" in text and LABEL not in text


def test_apply_with_probe_before_and_after_then_verify(
    cluster: Fleet, agents: dict[str, NodeAgent], tmp_path: Path, capsys
) -> None:
    """mitigate apply --probe: the probe before stalls on the racing node (glibc, default options), the
    probe after runs with the applied single-request-reopen and does not; verify says improved."""
    from dnsfleet.cli import main

    audit, plog = tmp_path / "audit.jsonl", tmp_path / "probes.jsonl"
    code = main(
        [
            "mitigate",
            "apply",
            "resolver-options",
            "--kubeconfig",
            str(cluster.kubeconfig),
            "--context",
            "probe",
            "-w",
            "shop/Deployment/checkout",
            "-o",
            "single-request-reopen",
            "--allow-writes",
            "--confirm",
            "probe",
            "--audit-log",
            str(audit),
            "--probe",
            "--probe-wait",
            "0",
            "--probe-resolver",
            "glibc",
            "--probe-lookups",
            "5",
            "--probe-log",
            str(plog),
            "--probe-name",
            NAMES[0],
            "--probe-nodes",
            "kubernetes.io/hostname=probe-workers-0",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "probe before: 5/5 lookups >= 2.5 s on 1 node(s)" in out
    assert "probe after: 0/5 lookups >= 2.5 s on 1 node(s)" in out
    code = main(
        ["mitigate", "verify", "--audit-log", str(audit), "--probe-log", str(plog), "--nodes", "-o", "json"]
    )
    import json

    rows = json.loads(capsys.readouterr().out)
    probe_rows = [r for r in rows if r["source"] == "probe"]
    assert code == 0
    assert {r["verdict"] for r in probe_rows} == {"improved"}
    assert any(r["summary"] == "probe lookups >= 2.5 s 5/5 → 0/5 on 1 node" for r in probe_rows)
    prom = next(r for r in rows if r["source"] == "prometheus")
    assert prom["verdict"] == "not enough data" and prom["summary"] == "no Prometheus configured"
