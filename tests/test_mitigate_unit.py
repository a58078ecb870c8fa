"""Mitigations without a cluster: option merging, JSON patch, manifest rendering, kernel plan, audit log,
write gating and the CLI's refusals."""

from __future__ import annotations

import argparse
import csv
import io
import json

import pandas as pd
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from dnsfleet.authz import writes_requested as writes_enabled
from dnsfleet.cli.mitigate import add_mitigate_parser, run_mitigate
from dnsfleet.kube import Kube, KubeError, ObjectRef
from dnsfleet.mitigate import kernel as K
from dnsfleet.mitigate import nodelocal as N
from dnsfleet.mitigate import resolver_options as R
from dnsfleet.mitigate.audit import AuditLog
from dnsfleet.mitigate.errors import MitigationError
from dnsfleet.mitigate.objects import apply_json_patch, clean, project, unified_diff
from dnsfleet.mitigate.plan import Change, Plan, WritesDisabled, apply

# -- resolver options ---------------------------------------------------------------------------------

names = st.sampled_from(["ndots", "timeout", "attempts", "rotate", "edns0", "single-request-reopen", "x"])
opt = st.builds(
    lambda n, v: {"name": n, **({"value": v} if v is not None else {})},
    names,
    st.none() | st.text("0123456789", min_size=1, max_size=2),
)


@given(
    existing=st.lists(opt, max_size=5, unique_by=lambda o: o["name"]),
    nameservers=st.lists(st.sampled_from(["1.1.1.1", "8.8.8.8"]), max_size=2, unique=True),
    searches=st.lists(st.sampled_from(["a.example", "b.example"]), max_size=2, unique=True),
    add=st.dictionaries(
        st.sampled_from(["ndots", "timeout", "single-request-reopen", "use-vc"]), st.none(), min_size=1
    ),
)
def test_merge_keeps_everything_else_and_replaces_by_name(existing, nameservers, searches, add):
    before = {"options": existing, "nameservers": nameservers, "searches": searches}
    frozen = json.dumps(before)
    after = R.merge_options(before, add)
    assert json.dumps(before) == frozen  # input not mutated
    assert after["nameservers"] == nameservers and after["searches"] == searches
    got = {o["name"]: o.get("value") for o in after["options"]}
    assert len(got) == len(after["options"])  # names stay unique
    for o in existing:  # every option not being set survives with its value and relative order
        if o["name"] not in add:
            assert got[o["name"]] == o.get("value")
    kept = [o["name"] for o in after["options"] if o["name"] in {e["name"] for e in existing}]
    assert kept == [e["name"] for e in existing]
    for n, v in add.items():
        assert got[n] == v


def test_merge_onto_ndots2_writes_whole_list():
    after = R.merge_options({"options": [{"name": "ndots", "value": "2"}]}, {"single-request-reopen": None})
    assert after == {"options": [{"name": "ndots", "value": "2"}, {"name": "single-request-reopen"}]}
    assert R.merge_options(None, {"ndots": "3"}) == {"options": [{"name": "ndots", "value": "3"}]}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "no resolver option"),
        ({"no-aaaa": None}, "not one dnsfleet writes"),
        ({"ndots": "16"}, "ndots needs a whole number 0-15"),
        ({"ndots": "two"}, "ndots needs a whole number"),
        ({"timeout": None}, "timeout needs a whole number 1-30"),
        ({"use-vc": "1"}, "use-vc takes no value"),
    ],
)
def test_bad_options_give_one_line_errors(options, message):
    with pytest.raises(MitigationError, match=message) as e:
        R.validate_options(options)
    assert "\n" not in str(e.value)


def test_values_become_strings():
    assert R.validate_options({"ndots": 2, "single-request-reopen": None}) == {
        "ndots": "2",
        "single-request-reopen": None,
    }


def test_options_offered_by_resolver():
    assert "single-request-reopen" in R.offered_options("glibc")
    musl = R.offered_options("musl")
    assert "single-request-reopen" not in musl and "use-vc" not in musl and "ndots" in musl
    assert R.offered_options("unknown") == []


class _NoCluster(Kube):
    """Fails any API call: planning must not reach the API for targets it skips."""

    def __init__(self) -> None:
        self.cluster = "c1"
        self.timeout = 1.0

    def request(self, *a, **k):  # pragma: no cover - reaching it fails the test
        raise AssertionError("no API call expected")


def test_plan_skips_musl_pods_jobs_without_api_calls():
    plan = R.plan_resolver_options(
        _NoCluster(),
        [
            R.Target("ns", "Deployment", "alpine-app", "musl"),
            R.Target("ns", "Pod", "debug", "glibc"),
            R.Target("ns", "Job", "once", "glibc"),
            R.Target("ns", "Deployment", "mystery", "unknown"),
        ],
        {"single-request-reopen": None},
    )
    assert plan.changes == []
    reasons = {s.target: s.reason for s in plan.skipped}
    assert "musl ignores single-request-reopen" in reasons["Deployment ns/alpine-app"]
    assert "recreate needed" in reasons["Pod ns/debug"]
    assert "immutable" in reasons["Job ns/once"]
    assert "not known to honour" in reasons["Deployment ns/mystery"]


# -- JSON patch / diff ----------------------------------------------------------------------------------


def test_json_patch_applier_matches_rfc6902_semantics():
    doc = {"metadata": {"resourceVersion": "7", "annotations": {"a/b": "1"}}, "spec": {"l": [1, 2]}}
    ops = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "7"},
        {"op": "add", "path": "/metadata/annotations/x~1y", "value": "2"},
        {"op": "remove", "path": "/metadata/annotations/a~1b"},
        {"op": "add", "path": "/spec/l/-", "value": 3},
        {"op": "replace", "path": "/spec/l/0", "value": 0},
    ]
    out = apply_json_patch(doc, ops)
    assert out == {
        "metadata": {"resourceVersion": "7", "annotations": {"x/y": "2"}},
        "spec": {"l": [0, 2, 3]},
    }
    assert doc["spec"]["l"] == [1, 2]
    with pytest.raises(MitigationError, match="test failed"):
        apply_json_patch(doc, [{"op": "test", "path": "/metadata/resourceVersion", "value": "8"}])


def test_diff_ignores_bookkeeping_and_key_order():
    a = {
        "kind": "X",
        "metadata": {"name": "n", "resourceVersion": "1", "managedFields": [{}]},
        "b": 1,
        "a": 2,
    }
    b = {"a": 2, "b": 1, "metadata": {"resourceVersion": "9", "name": "n"}, "kind": "X", "status": {"x": 1}}
    assert unified_diff(clean(a), clean(b), "X n") == ""
    d = unified_diff(clean(a), {**clean(b), "a": 3}, "X n")
    assert "-a: 2" in d and "+a: 3" in d


def test_project_keeps_only_managed_fields():
    live = {"spec": {"ports": [{"port": 53, "protocol": "UDP", "x": 1}], "clusterIP": "10.0.0.1"}}
    shape = {"spec": {"ports": [{"port": 53}]}}
    assert project(live, shape) == {"spec": {"ports": [{"port": 53}]}}


# -- NodeLocal DNSCache manifests ------------------------------------------------------------------------


def _by_kind(objs):
    return {(o["kind"], o["metadata"]["name"]): o for o in objs}


def test_render_iptables_binds_both_ips_and_leaves_runtime_variables():
    objs = N.render("10.0.0.10", "iptables", cluster_domain="corp.local")
    assert [(o["kind"], o["metadata"]["name"]) for o in objs] == list(N.OBJECTS)
    for o in objs:
        assert o["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "dnsfleet"
        assert o["metadata"]["namespace"] == "kube-system"
    by = _by_kind(objs)
    core = by[("ConfigMap", "node-local-dns")]["data"]["Corefile"]
    assert core.startswith("corp.local:53 {")
    assert core.count("bind 169.254.20.10 10.0.0.10\n") == 4
    assert (
        "__PILLAR__CLUSTER__DNS__" in core and "__PILLAR__UPSTREAM__SERVERS__" in core
    )  # node-cache fills them
    assert "__PILLAR__LOCAL__DNS__" not in core and "__PILLAR__DNS__SERVER__" not in core
    args = by[("DaemonSet", "node-local-dns")]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("-localip") + 1] == "169.254.20.10,10.0.0.10"
    assert by[("Service", "node-local-dns")]["spec"]["clusterIP"] == "None"


def test_render_ipvs_listens_only_on_link_local_and_forwards_to_kube_dns():
    by = _by_kind(N.render("10.96.0.10", "ipvs", local_ip="169.254.20.11", upstream=["1.1.1.1"]))
    core = by[("ConfigMap", "node-local-dns")]["data"]["Corefile"]
    assert core.count("bind 169.254.20.11\n") == 4
    assert "10.96.0.10" in core and "forward . 10.96.0.10 {" in core
    assert "forward . 1.1.1.1\n" in core and "__PILLAR__" not in core
    args = by[("DaemonSet", "node-local-dns")]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("-localip") + 1] == "169.254.20.11"
    assert any("clusterDNS" in s for s in N.outside_api_steps("ipvs"))
    assert not any("clusterDNS (--cluster-dns)" in s for s in N.outside_api_steps("iptables"))


def test_rendered_yaml_is_loadable_multi_document():
    docs = [d for d in yaml.safe_load_all(N.render_yaml("10.0.0.10", "iptables")) if d]
    assert [d["kind"] for d in docs] == [k for k, _ in N.OBJECTS]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cluster_ip": "10.0.0.300", "proxy_mode": "iptables"}, "not an IP address"),
        ({"cluster_ip": "10.0.0.10", "proxy_mode": "none"}, "kube-proxy replaced"),
        (
            {"cluster_ip": "10.0.0.10", "proxy_mode": "iptables", "cluster_domain": "bad_domain"},
            "not a DNS name",
        ),
        ({"cluster_ip": "169.254.20.10", "proxy_mode": "ipvs"}, "must differ"),
        ({"cluster_ip": "10.0.0.10", "proxy_mode": "ipvs", "upstream": ["dns.google"]}, "not an IP"),
    ],
)
def test_render_rejects_bad_input(kwargs, message):
    with pytest.raises(MitigationError, match=message):
        N.render(**kwargs)


def test_cni_caveats():
    calico = " ".join(N.cni_caveats("calico"))
    assert "NOTRACK" in calico and "ipBlock" in calico
    assert "Local Redirect Policy" in " ".join(N.cni_caveats("cilium"))
    assert "Calico" not in " ".join(N.cni_caveats("aws-vpc-cni"))


# -- kernel upgrade plan ---------------------------------------------------------------------------------


def _nodes():
    rows = [
        ("c1", "legacy-0", "pool-a", "4.15.0-1029-azure", "Ubuntu 18.04.1 LTS", "open", "open", "open", 90.0),
        ("c1", "legacy-1", "pool-a", "4.15.0-1029-azure", "Ubuntu 18.04.1 LTS", "open", "open", "open", 70.0),
        ("c1", "mid-0", "pool-b", "4.15.0-1030-azure", "Ubuntu 18.04.1 LTS", "fixed", "open", "open", 40.0),
        (
            "c1",
            "new-0",
            "pool-c",
            "6.1.0-18-amd64",
            "Debian GNU/Linux 12 (bookworm)",
            "fixed",
            "fixed",
            "fixed",
            5.0,
        ),
        ("c2", "one-ep", "p", "5.4.0-1000-aws", "Ubuntu 20.04 LTS", "fixed", "fixed", "open", 30.0),
        ("c2", "odd", "p", "9.9.9-custom", "Mystery OS", "unknown", "unknown", "unknown", 50.0),
    ]
    cols = ["cluster", "node", "pool", "kernel_version", "os_image", "race1", "race2", "race3", "score"]
    df = pd.DataFrame(rows, columns=cols)
    df["nfqueue"] = "open"
    return df


def test_upgrade_plan_orders_riskiest_pool_first_and_skips_fixed_nodes():
    dns = pd.DataFrame(
        [
            {"cluster": "c1", "ready_endpoints": 2, "nfqueue_agent": False},
            {"cluster": "c2", "ready_endpoints": 1, "nfqueue_agent": False},
        ]
    )
    plan = K.upgrade_plan(_nodes(), dns)
    c1 = plan[plan.cluster == "c1"]
    assert list(c1.node) == ["legacy-0", "legacy-1", "mid-0"]  # new-0 is fixed: not listed
    assert list(c1.drain_order) == [1, 2, 3]
    # The target speaks the node's distro and track (kernel_targets.csv), never a bare mainline number.
    assert c1.iloc[0].target.startswith("Ubuntu linux-azure")
    assert "race 1: open (K1: ubuntu-azure" in c1.iloc[0].per_race and c1.iloc[0].target_source
    assert "NFQUEUE" not in c1.iloc[0].open_races  # no NFQUEUE agent: K6 does not apply
    c2 = plan[plan.cluster == "c2"].set_index("node")
    assert "one-ep" not in c2.index  # race 3 needs >= 2 endpoints (K4)
    assert c2.loc["odd", "action"] == "verify"
    rows = list(csv.DictReader(io.StringIO(K.upgrade_plan_csv(plan).decode("utf-8-sig"))))
    assert rows[0]["node"] == "legacy-0" and set(rows[0]) == set(K.COLUMNS)


def test_upgrade_plan_counts_nfqueue_only_with_an_agent():
    dns = pd.DataFrame([{"cluster": "c1", "ready_endpoints": 2, "nfqueue_agent": True}])
    plan = K.upgrade_plan(_nodes()[lambda d: d.node == "new-0"], dns)
    assert len(plan) == 1 and "6.12" in plan.iloc[0].target and "Debian" in plan.iloc[0].target


def test_upgrade_plan_on_demo_fleet():
    from dnsfleet.demo import demo_snapshot
    from dnsfleet.engine import analyze

    a = analyze(demo_snapshot())
    plan = K.upgrade_plan(a.nodes, a.dns_service)
    assert len(plan) > 0
    assert set(plan.cluster) <= set(a.nodes.cluster)
    open_nodes = a.nodes[(a.nodes[["race1", "race2"]] == "open").any(axis=1)]
    assert set(open_nodes.node) <= set(plan.node)


# -- audit log and gating ---------------------------------------------------------------------------------


def _record(**kw):
    base = dict.fromkeys(
        ("time", "identity", "cluster", "mitigation", "action", "patch", "previous", "applied")
    )
    base |= {"object": {"kind": "Deployment", "namespace": "n", "name": "w"}, "result": "ok", "message": ""}
    base |= {"batch": "b"}
    return base | kw


def test_audit_log_appends_and_finds_last_undoable(tmp_path, monkeypatch):
    monkeypatch.setenv("DNSFLEET_AUDIT_LOG", str(tmp_path / "a" / "audit.jsonl"))
    log = AuditLog()
    assert log.path == tmp_path / "a" / "audit.jsonl"
    obj = {"kind": "Deployment", "namespace": "n", "name": "w"}
    log.append(_record(cluster="c", mitigation="resolver-options", previous=None, applied={"x": 1}))
    first = log.raw_bytes()
    log.append(_record(cluster="c", mitigation="resolver-options", result="conflict"))
    assert log.raw_bytes().startswith(first)  # append-only
    assert log.last_applied("c", obj, "resolver-options")["applied"] == {"x": 1}
    log.append(_record(cluster="c", mitigation="undo-resolver-options"))
    assert log.last_applied("c", obj, "resolver-options") is None
    with pytest.raises(ValueError, match="lacks"):
        log.append({"time": "now"})
    assert (tmp_path / "a" / "audit.jsonl").stat().st_mode & 0o077 == 0


def test_writes_enabled_only_by_flag_or_env():
    assert not writes_enabled(False, {})
    assert not writes_enabled(False, {"DNSFLEET_ALLOW_WRITES": "yes"})
    assert writes_enabled(False, {"DNSFLEET_ALLOW_WRITES": "1"})
    assert writes_enabled(True, {})


def test_apply_refuses_without_writes_or_confirmation(tmp_path, monkeypatch):
    monkeypatch.delenv("DNSFLEET_ALLOW_WRITES", raising=False)
    plan = Plan(cluster="c1", mitigation="resolver-options")
    plan.changes.append(Change(ObjectRef("Deployment", "n", "w"), "json-patch", "why", {}, {}, []))
    log = AuditLog(tmp_path / "audit.jsonl")
    with pytest.raises(WritesDisabled, match="writes are disabled"):
        apply(_NoCluster(), plan, allow_writes=False, confirm="c1", audit=log)
    with pytest.raises(WritesDisabled, match="type the cluster name 'c1'"):
        apply(_NoCluster(), plan, allow_writes=True, confirm="c2", audit=log)
    assert log.records() == []


def _cli(argv):
    parser = argparse.ArgumentParser(prog="dnsfleet")
    add_mitigate_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_cli_refuses_writes_before_touching_the_cluster(capsys, monkeypatch):
    monkeypatch.delenv("DNSFLEET_ALLOW_WRITES", raising=False)
    args = _cli(["mitigate", "apply", "nodelocal", "--context", "nowhere", "--kubeconfig", "/nonexistent"])
    assert run_mitigate(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "writes are disabled" in err
    args = _cli(["mitigate", "undo", "nodelocal", "--context", "c1", "--allow-writes", "--confirm", "c2"])
    assert run_mitigate(args) == 2
    assert "--confirm c1" in capsys.readouterr().err


def test_cli_bad_kubeconfig_and_workload_are_one_line(capsys, tmp_path):
    args = _cli(["mitigate", "plan", "nodelocal", "--context", "x", "--kubeconfig", str(tmp_path / "none")])
    assert run_mitigate(args) == 2
    assert capsys.readouterr().err.count("\n") == 1
    bad = tmp_path / "kc"
    bad.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
    args = _cli(
        ["mitigate", "plan", "resolver-options", "--context", "x", "--kubeconfig", str(bad), "-w", "a/b"]
    )
    assert run_mitigate(args) == 2
    assert "context 'x'" in capsys.readouterr().err


def test_cli_kernel_plan_writes_csv(tmp_path, capsys):
    out = tmp_path / "plan.csv"
    assert run_mitigate(_cli(["mitigate", "plan", "kernel", "--csv", str(out)])) == 0
    rows = list(csv.DictReader(out.open(encoding="utf-8-sig")))
    assert rows and rows[0]["drain_order"] == "1"
    assert "demo fleet" in capsys.readouterr().out


# -- unreachable and hung API servers (real sockets) -----------------------------------------------------


def _kubeconfig(tmp_path, server: str):
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
                "users": [{"name": "u", "user": {"token": "secret-token-never-shown"}}],
                "contexts": [{"name": "c1", "context": {"cluster": "c", "user": "u"}}],
            }
        )
    )
    return path


def test_refused_connection_is_one_line_unreachable(tmp_path, capsys):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    kc = _kubeconfig(tmp_path, f"https://127.0.0.1:{port}")
    kube = Kube.from_kubeconfig(kc, "c1", timeout=2)
    with pytest.raises(KubeError) as e:
        kube.get(ObjectRef("Deployment", "n", "w"))
    assert e.value.kind == "unreachable" and "c1: API server unreachable" in str(e.value)
    assert kube.identity() == "kubeconfig-user:u"  # the user's name, never the token
    assert (
        run_mitigate(_cli(["mitigate", "plan", "nodelocal", "--kubeconfig", str(kc), "--context", "c1"])) == 2
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unreachable" in err and "secret-token" not in err


def test_hung_server_hits_the_request_timeout(tmp_path):
    import socket
    import time as _time

    with socket.socket() as srv:  # accepts TCP but never answers the TLS handshake
        srv.bind(("127.0.0.1", 0))
        srv.listen(8)
        kc = _kubeconfig(tmp_path, f"https://127.0.0.1:{srv.getsockname()[1]}")
        kube = Kube.from_kubeconfig(kc, "c1", timeout=0.5)
        start = _time.monotonic()
        with pytest.raises(KubeError, match="unreachable"):
            kube.can_i("patch", ObjectRef("Deployment", "n", "w")) and kube.get(
                ObjectRef("Deployment", "n", "w")
            )
        assert _time.monotonic() - start < 5


def test_managed_by_reads_the_documented_labels_and_annotations():
    from dnsfleet.rules.managers import managed_by

    flux = {"metadata": {"labels": {"kustomize.toolkit.fluxcd.io/name": "apps"}}}
    assert [(m.tool, m.evidence) for m in managed_by(flux)] == [
        ("Flux", "label kustomize.toolkit.fluxcd.io/name=apps")
    ]
    # Helm's managed-by value is exactly "Helm"; the same label with another value is another tool
    assert managed_by({"metadata": {"labels": {"app.kubernetes.io/managed-by": "kustomize"}}}) == []
    assert managed_by({"metadata": {"labels": [], "annotations": "x"}}) == []  # hostile types: nothing
    both = {
        "metadata": {"labels": {"app.kubernetes.io/managed-by": "Helm", "app.kubernetes.io/instance": "shop"}}
    }
    assert [m.tool for m in managed_by(both)] == ["Helm", "Argo CD"]
    assert all(m.source.startswith(("Helm", "Argo")) and "https://" in m.source for m in managed_by(both))


def test_manifest_snippet_nests_dnsconfig_where_each_kind_keeps_its_template():
    from dnsfleet.mitigate.resolver_options import manifest_snippet

    dns = {"options": [{"name": "ndots", "value": "2"}]}
    assert manifest_snippet("CronJob", dns).startswith("spec:\n  jobTemplate:\n    spec:\n      template:\n")
    assert yaml.safe_load(manifest_snippet("StatefulSet", dns)) == {
        "spec": {"template": {"spec": {"dnsConfig": dns}}}
    }
