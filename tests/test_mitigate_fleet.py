"""Mitigations against the real test fleet (kube-apiserver + etcd, RBAC on).

Every test that writes restores what it changed in a ``finally`` so the shared fleet stays as seeded.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import time

import pytest

from dnsfleet.cli.mitigate import add_mitigate_parser, run_mitigate
from dnsfleet.kube import Kube, KubeError, ObjectRef
from dnsfleet.mitigate import nodelocal as N
from dnsfleet.mitigate import resolver_options as R
from dnsfleet.mitigate.audit import AuditLog
from dnsfleet.mitigate.plan import WritesDisabled, apply, check_permissions, dry_run, exclude_failed

pytestmark = pytest.mark.fleet

CLUSTER = "aks-legacy"  # iptables, calico, shop/checkout has dnsConfig ndots:2
CHECKOUT = ObjectRef("Deployment", "shop", "checkout")
SRO = {"single-request-reopen": None}


@pytest.fixture
def admin(fleet):
    k = Kube.from_kubeconfig(fleet.kubeconfig, CLUSTER)
    yield k
    k.close()


@pytest.fixture
def viewer(fleet):
    k = Kube.from_kubeconfig(fleet.kubeconfig_for("viewer"), CLUSTER)
    yield k
    k.close()


@pytest.fixture
def audit(tmp_path):
    return AuditLog(tmp_path / "audit.jsonl")


@pytest.fixture
def writes(monkeypatch):
    monkeypatch.delenv("DNSFLEET_ALLOW_WRITES", raising=False)


def _template_dns(obj, kind="Deployment"):
    spec = obj["spec"]["jobTemplate"]["spec"] if kind == "CronJob" else obj["spec"]
    return spec["template"]["spec"].get("dnsConfig")


def _restore(kube: Kube, ref: ObjectRef, original: dict) -> None:
    """Put spec and annotations back exactly as they were (a safety net if a test fails midway)."""
    live = kube.get(ref)
    if live is None or (
        live["spec"] == original["spec"]
        and live["metadata"].get("annotations") == original["metadata"].get("annotations")
    ):
        return
    ops = [{"op": "replace", "path": "/spec", "value": original["spec"]}]
    ann = original["metadata"].get("annotations")
    ops.append({"op": "add", "path": "/metadata/annotations", "value": ann or {}})
    kube.json_patch(ref, ops)


def test_apply_then_undo_on_ndots2_template_leaves_spec_identical(admin, audit, writes):
    original = admin.get(CHECKOUT)
    assert _template_dns(original) == {"options": [{"name": "ndots", "value": "2"}]}
    try:
        target = R.target_from_live(admin, CHECKOUT)
        assert target.resolver == "glibc"  # debian:12-slim
        plan = check_permissions(admin, R.plan_resolver_options(admin, [target], SRO))
        assert plan.permitted() == (True, [])
        (change,) = plan.changes
        assert "-" not in [line[0] for line in change.diff().splitlines() if "ndots" in line]  # ndots:2 stays
        assert "+        - name: single-request-reopen" in change.diff()
        assert any("rollout" in n for n in change.notes)
        assert [r.status for r in dry_run(admin, plan)] == ["ok"]
        assert admin.get(CHECKOUT)["metadata"]["resourceVersion"] == original["metadata"]["resourceVersion"]

        results = apply(admin, plan, allow_writes=True, confirm=CLUSTER, audit=audit)
        assert [r.status for r in results] == ["ok"]
        live = admin.get(CHECKOUT)
        assert _template_dns(live) == {
            "options": [{"name": "ndots", "value": "2"}, {"name": "single-request-reopen"}]
        }
        assert live["metadata"]["annotations"][R.ANNOTATION] == '{"options":[{"name":"ndots","value":"2"}]}'
        (rec,) = audit.records()
        assert rec["identity"] == "admin" and rec["cluster"] == CLUSTER and rec["result"] == "ok"
        assert rec["object"] == CHECKOUT.as_dict() and rec["previous"] == _template_dns(original)
        assert rec["patch"][0] == {
            "op": "test",
            "path": "/metadata/resourceVersion",
            "value": original["metadata"]["resourceVersion"],
        }

        undo = R.plan_undo_resolver_options(
            admin, CHECKOUT, audit.last_applied(CLUSTER, CHECKOUT.as_dict(), R.MITIGATION)
        )
        check_permissions(admin, undo)
        assert [r.status for r in dry_run(admin, undo)] == ["ok"]
        assert [r.status for r in apply(admin, undo, allow_writes=True, confirm=CLUSTER, audit=audit)] == [
            "ok"
        ]
        after = admin.get(CHECKOUT)
        assert after["spec"] == original["spec"]
        assert after["metadata"].get("annotations") == original["metadata"].get("annotations")
        assert [r["mitigation"] for r in audit.records()] == ["resolver-options", "undo-resolver-options"]
        assert audit.last_applied(CLUSTER, CHECKOUT.as_dict(), R.MITIGATION) is None
    finally:
        _restore(admin, CHECKOUT, original)


def test_undo_from_annotation_when_audit_log_is_elsewhere(admin, audit, tmp_path, writes):
    original = admin.get(CHECKOUT)
    try:
        plan = R.plan_resolver_options(
            admin, [R.Target("shop", "Deployment", "checkout", "glibc")], {"ndots": "3"}
        )
        apply(admin, plan, allow_writes=True, confirm=CLUSTER, audit=audit)
        undo = R.plan_undo_resolver_options(admin, CHECKOUT)  # no record: the annotation says what to restore
        assert "annotation" in " ".join(undo.notes)
        apply(admin, undo, allow_writes=True, confirm=CLUSTER, audit=AuditLog(tmp_path / "other.jsonl"))
        assert admin.get(CHECKOUT)["spec"] == original["spec"]
    finally:
        _restore(admin, CHECKOUT, original)


def test_viewer_is_denied_by_ssar_and_forbidden_on_apply(admin, viewer, audit, writes):
    before = admin.get(CHECKOUT)
    plan = check_permissions(
        viewer, R.plan_resolver_options(viewer, [R.target_from_live(viewer, CHECKOUT)], SRO)
    )
    allowed, reasons = plan.permitted()
    assert not allowed
    assert len(reasons) == 1
    assert reasons[0].startswith(f"not allowed to patch deployments.apps in namespace shop on {CLUSTER}")
    # The API server still decides: apply anyway, it is refused per object and nothing changes.
    (result,) = apply(viewer, plan, allow_writes=True, confirm=CLUSTER, audit=audit)
    assert result.status == "forbidden"
    assert 'User "viewer" cannot patch resource "deployments"' in result.message
    assert "\n" not in result.message
    assert admin.get(CHECKOUT)["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    (rec,) = audit.records()
    assert rec["identity"] == "viewer" and rec["result"] == "forbidden"


def test_nobody_cannot_even_read_the_workload(fleet):
    nobody = Kube.from_kubeconfig(fleet.kubeconfig_for("nobody"), CLUSTER)
    plan = R.plan_resolver_options(nobody, [R.Target("shop", "Deployment", "checkout", "glibc")], SRO)
    assert plan.changes == []
    assert "cannot read it" in plan.skipped[0].reason and "forbidden" in plan.skipped[0].reason


def test_impersonation_headers_reach_the_server(fleet):
    as_viewer = Kube.from_kubeconfig(fleet.kubeconfig, CLUSTER, impersonate_user="viewer")
    assert as_viewer.identity() == "viewer"
    assert as_viewer.can_i("patch", CHECKOUT)[0] is False
    # Two groups: only the second grants anything, so both headers must arrive.
    both = Kube.from_kubeconfig(
        fleet.kubeconfig, CLUSTER, impersonate_user="someone", impersonate_groups=["team-a", "system:masters"]
    )
    assert both.can_i("patch", CHECKOUT)[0] is True


def test_concurrent_edit_between_plan_and_apply_is_not_overwritten(admin, audit, writes):
    original = admin.get(CHECKOUT)
    plan = R.plan_resolver_options(admin, [R.Target("shop", "Deployment", "checkout", "glibc")], SRO)
    other = copy.deepcopy(_template_dns(original))
    other["options"].append({"name": "timeout", "value": "2"})
    try:
        admin.json_patch(CHECKOUT, [{"op": "add", "path": "/spec/template/spec/dnsConfig", "value": other}])
        dry = dry_run(admin, plan)
        assert dry[0].status == "conflict"
        (result,) = apply(admin, plan, allow_writes=True, confirm=CLUSTER, audit=audit)
        assert result.status == "conflict"
        assert "changed after the plan" in result.message and "nothing was written" in result.message
        live = admin.get(CHECKOUT)
        assert _template_dns(live) == other  # the concurrent edit survives
        assert R.ANNOTATION not in (live["metadata"].get("annotations") or {})
        assert audit.records()[0]["result"] == "conflict"
    finally:
        _restore(admin, CHECKOUT, original)


def test_writes_off_refuses_and_changes_nothing(admin, audit, writes):
    before = admin.get(CHECKOUT)["metadata"]["resourceVersion"]
    plan = R.plan_resolver_options(admin, [R.Target("shop", "Deployment", "checkout", "glibc")], SRO)
    with pytest.raises(WritesDisabled):
        apply(admin, plan, allow_writes=False, confirm=CLUSTER, audit=audit)
    assert admin.get(CHECKOUT)["metadata"]["resourceVersion"] == before
    assert audit.records() == []


VAP = {
    "apiVersion": "admissionregistration.k8s.io/v1",
    "kind": "ValidatingAdmissionPolicy",
    "metadata": {"name": "dnsfleet-test-no-use-vc"},
    "spec": {
        "failurePolicy": "Fail",
        "matchConstraints": {
            "resourceRules": [
                {
                    "apiGroups": ["apps"],
                    "apiVersions": ["v1"],
                    "operations": ["UPDATE"],
                    "resources": ["deployments"],
                }
            ]
        },
        "validations": [
            {
                "expression": "!has(object.spec.template.spec.dnsConfig) || "
                "!has(object.spec.template.spec.dnsConfig.options) || "
                "!object.spec.template.spec.dnsConfig.options.exists(o, o.name == 'use-vc')",
                "message": "TCP DNS (use-vc) is not allowed in this namespace",
            }
        ],
    },
}
VAP_BINDING = {
    "apiVersion": "admissionregistration.k8s.io/v1",
    "kind": "ValidatingAdmissionPolicyBinding",
    "metadata": {"name": "dnsfleet-test-no-use-vc"},
    "spec": {
        "policyName": "dnsfleet-test-no-use-vc",
        "validationActions": ["Deny"],
        "matchResources": {"namespaceSelector": {"matchLabels": {"dnsfleet-test": "no-use-vc"}}},
    },
}


def _deployment(ns: str, name: str) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "debian:12"}]},
            },
        },
    }


def test_dry_run_reports_admission_error_per_object(admin):
    """A ValidatingAdmissionPolicy rejects use-vc in one namespace: the dry run says so for that object
    only, and the other object passes."""
    vap = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies"
    binding = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings"
    nss = ("mit-policy", "mit-free")
    try:
        for ns in nss:
            labels = {"dnsfleet-test": "no-use-vc"} if ns == "mit-policy" else {}
            admin.request(
                "POST",
                "/api/v1/namespaces",
                body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": labels}},
            )
            admin.request("POST", f"/apis/apps/v1/namespaces/{ns}/deployments", body=_deployment(ns, "api"))
        admin.request("POST", vap, body=VAP)
        admin.request("POST", binding, body=VAP_BINDING)
        targets = [R.Target(ns, "Deployment", "api", "glibc") for ns in nss]
        deadline = time.monotonic() + 30
        while True:  # the policy becomes active asynchronously (informer sync)
            plan = R.plan_resolver_options(admin, targets, {"use-vc": None})
            results = {r.ref.namespace: r for r in dry_run(admin, plan)}
            if results["mit-policy"].status != "ok" or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert results["mit-free"].status == "ok"
        bad = results["mit-policy"]
        assert bad.status == "invalid", bad
        assert "TCP DNS (use-vc) is not allowed in this namespace" in bad.message
        assert "\n" not in bad.message
        exclude_failed(plan, list(results.values()))
        assert [c.ref.namespace for c in plan.actionable] == ["mit-free"]
        # dry run wrote nothing
        assert _template_dns(admin.get(ObjectRef("Deployment", "mit-free", "api"))) is None
    finally:
        for path in (f"{binding}/dnsfleet-test-no-use-vc", f"{vap}/dnsfleet-test-no-use-vc"):
            with contextlib.suppress(KubeError):
                admin.request("DELETE", path)
        for ns in nss:
            with contextlib.suppress(KubeError):
                admin.request("DELETE", f"/api/v1/namespaces/{ns}")


def _kube_system(kube: Kube) -> dict[str, set[str]]:
    return {kind: {o["metadata"]["name"] for o in kube.list(kind, "kube-system")} for kind, _ in N.OBJECTS}


def _cleanup_nodelocal(kube: Kube) -> None:
    for kind, _ in N.OBJECTS:
        for o in kube.list(kind, "kube-system", N.SELECTOR):
            kube.request("DELETE", ObjectRef(kind, "kube-system", o["metadata"]["name"]).path())


@pytest.mark.parametrize("mode", ["iptables", "ipvs"])
def test_nodelocal_manifests_pass_server_side_dry_run(admin, mode, fleet):
    expected = fleet.expected(CLUSTER)
    plan = check_permissions(admin, N.plan_nodelocal(admin, proxy_mode=mode, cni="calico"))
    assert plan.permitted() == (True, [])
    assert [(c.ref.kind, c.ref.name) for c in plan.changes] == list(N.OBJECTS)
    assert all(c.before is None and c.blocked is None for c in plan.changes)
    core = next(c.after for c in plan.changes if c.ref.kind == "ConfigMap")["data"]["Corefile"]
    bind = f"bind 169.254.20.10 {expected['service_ip']}" if mode == "iptables" else "bind 169.254.20.10\n"
    assert bind in core
    results = dry_run(admin, plan)
    assert [r.status for r in results] == ["ok"] * 5, results
    assert not admin.list("DaemonSet", "kube-system", N.SELECTOR)  # dry run created nothing
    if mode == "ipvs":
        assert any("clusterDNS" in n for n in plan.notes)
    assert any("NOTRACK" in n for n in plan.notes)


def test_nodelocal_apply_and_undo_removes_exactly_its_objects(admin, audit, writes):
    before = _kube_system(admin)
    try:
        plan = check_permissions(admin, N.plan_nodelocal(admin))  # mode read from the kube-proxy ConfigMap
        assert plan.changes[2].after["data"]["Corefile"].count("bind 169.254.20.10 10.0.0.10") == 4
        progress = []
        results = apply(
            admin,
            plan,
            allow_writes=True,
            confirm=CLUSTER,
            audit=audit,
            progress=lambda i, n, r: progress.append((i, n)),
        )
        assert [r.status for r in results] == ["ok"] * 5
        assert progress == [(i, 5) for i in range(1, 6)]
        records = audit.records()
        assert len(records) == 5 and len({r["batch"] for r in records}) == 1  # one record per object
        assert [(r["object"]["kind"], r["object"]["name"]) for r in records] == list(N.OBJECTS)
        ds = admin.get(ObjectRef("DaemonSet", "kube-system", "node-local-dns"))
        assert ds["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "dnsfleet"
        assert {(m["manager"], m["operation"]) for m in ds["metadata"]["managedFields"]} == {
            ("dnsfleet", "Apply")
        }

        # A foreign object carrying our label is not ours: undo must leave it alone.
        decoy = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "decoy", "namespace": "kube-system", "labels": N.MANAGED_BY},
        }
        admin.request("POST", "/api/v1/namespaces/kube-system/configmaps", body=decoy)
        replan = N.plan_nodelocal(admin)
        assert replan.changes == [] and len(replan.skipped) == 5  # already applied, unchanged

        undo = check_permissions(admin, N.plan_undo_nodelocal(admin))
        assert sorted((c.ref.kind, c.ref.name) for c in undo.changes) == sorted(N.OBJECTS)
        assert [s.target for s in undo.skipped] == ["ConfigMap kube-system/decoy"]
        assert [r.status for r in dry_run(admin, undo)] == ["ok"] * 5
        assert [r.status for r in apply(admin, undo, allow_writes=True, confirm=CLUSTER, audit=audit)] == [
            "ok"
        ] * 5
        admin.request("DELETE", "/api/v1/namespaces/kube-system/configmaps/decoy")
        assert _kube_system(admin) == before
        assert len(audit.records()) == 10
    finally:
        _cleanup_nodelocal(admin)


def test_nodelocal_existing_install_is_not_taken_over(fleet, audit, writes):
    """eks-prod already runs NodeLocal DNSCache (not created by dnsfleet)."""
    kube = Kube.from_kubeconfig(fleet.kubeconfig, "eks-prod")
    assert fleet.expected("eks-prod")["nodelocal"]
    plan = N.plan_nodelocal(kube)
    blocked = {c.ref.label(): c.blocked for c in plan.changes}
    assert "not created by dnsfleet" in blocked["DaemonSet kube-system/node-local-dns"]
    assert all(blocked.values()) and plan.actionable == []  # no half-dnsfleet install next to theirs
    ds_before = kube.get(ObjectRef("DaemonSet", "kube-system", "node-local-dns"))["metadata"][
        "resourceVersion"
    ]
    assert N.plan_undo_nodelocal(kube).changes == []
    assert {r.status for r in dry_run(kube, plan)} == {"blocked"}
    rv = kube.get(ObjectRef("DaemonSet", "kube-system", "node-local-dns"))["metadata"]["resourceVersion"]
    assert rv == ds_before


def test_nodelocal_refused_without_kube_proxy(fleet):
    kube = Kube.from_kubeconfig(fleet.kubeconfig, "cilium-edge")
    with pytest.raises(Exception, match="kube-proxy"):
        N.plan_nodelocal(kube, proxy_mode=fleet.expected("cilium-edge")["proxy_mode"])


def _cli(argv):
    parser = argparse.ArgumentParser(prog="dnsfleet")
    add_mitigate_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_cli_plan_apply_undo_roundtrip(fleet, tmp_path, capsys, writes):
    ctx = "cilium-edge"
    kube = Kube.from_kubeconfig(fleet.kubeconfig, ctx)
    original = kube.get(CHECKOUT)
    log = str(tmp_path / "cli-audit.jsonl")
    common = ["--kubeconfig", str(fleet.kubeconfig), "--context", ctx, "--audit-log", log]
    try:
        assert (
            run_mitigate(
                _cli(
                    [
                        "mitigate",
                        "plan",
                        "resolver-options",
                        *common,
                        "-w",
                        "shop/deployment/checkout",
                        "-o",
                        "use-vc",
                        "--dry-run",
                    ]
                )
            )
            == 0
        )
        out = capsys.readouterr().out
        assert "+        - name: use-vc" in out and "dry run passed" in out
        assert kube.get(CHECKOUT)["metadata"]["resourceVersion"] == original["metadata"]["resourceVersion"]
        argv = [
            "mitigate",
            "apply",
            "resolver-options",
            *common,
            "-w",
            "shop/Deployment/checkout",
            "-o",
            "use-vc",
        ]
        assert run_mitigate(_cli([*argv, "--allow-writes", "--confirm", ctx])) == 0
        assert {"name": "use-vc"} in _template_dns(kube.get(CHECKOUT))["options"]
        assert (
            run_mitigate(
                _cli(
                    [
                        "mitigate",
                        "undo",
                        "resolver-options",
                        *common,
                        "-w",
                        "shop/Deployment/checkout",
                        "--allow-writes",
                        "--confirm",
                        ctx,
                    ]
                )
            )
            == 0
        )
        assert kube.get(CHECKOUT)["spec"] == original["spec"]
        assert [r["result"] for r in AuditLog(log).records()] == ["ok", "ok"]
        # as viewer: the apply is attempted, refused per object, exit code 1
        viewer = ["--kubeconfig", str(fleet.kubeconfig_for("viewer")), "--context", ctx, "--audit-log", log]
        code = run_mitigate(
            _cli(
                [
                    "mitigate",
                    "apply",
                    "resolver-options",
                    *viewer,
                    "-w",
                    "shop/Deployment/checkout",
                    "-o",
                    "use-vc",
                    "--allow-writes",
                    "--confirm",
                    ctx,
                ]
            )
        )
        assert code == 1
        out = capsys.readouterr().out
        assert "not allowed to patch deployments.apps" in out and "forbidden" in out
        assert kube.get(CHECKOUT)["spec"] == original["spec"]
    finally:
        _restore(kube, CHECKOUT, original)


def test_nodelocal_update_after_a_concurrent_edit_is_a_conflict_not_forced(admin, audit, writes):
    cm = ObjectRef("ConfigMap", "kube-system", "node-local-dns")
    try:
        first = apply(admin, N.plan_nodelocal(admin), allow_writes=True, confirm=CLUSTER, audit=audit)
        assert {r.status for r in first} == {"ok"}
        plan = N.plan_nodelocal(admin, local_ip="169.254.20.11")  # the Corefile and the DaemonSet change
        assert sorted(c.ref.label() for c in plan.changes) == [
            "ConfigMap kube-system/node-local-dns",
            "DaemonSet kube-system/node-local-dns",
        ]
        assert all(c.body["metadata"]["resourceVersion"] for c in plan.changes)  # SSA with a precondition
        # someone else edits the ConfigMap between plan and apply
        admin.request(
            "PATCH",
            cm.path(),
            body=[{"op": "add", "path": "/data/extra", "value": "theirs"}],
            query={"fieldManager": "someone-else"},
            content_type="application/json-patch+json",
        )
        results = {
            r.ref.label(): r for r in apply(admin, plan, allow_writes=True, confirm=CLUSTER, audit=audit)
        }
        bad = results["ConfigMap kube-system/node-local-dns"]
        assert bad.status == "conflict" and "modified" in bad.message, bad
        live = admin.get(cm)
        assert live["data"]["extra"] == "theirs" and "bind 169.254.20.10 " in live["data"]["Corefile"]
        assert results["DaemonSet kube-system/node-local-dns"].ok  # per object: the other change went in
        assert [r["result"] for r in audit.records()[-2:]] == ["conflict", "ok"]
    finally:
        _cleanup_nodelocal(admin)


def test_rollout_notes_and_gitops_warnings_match_the_live_objects(admin):
    """Plans read each object as it is: an OnDelete DaemonSet and a paused Deployment restart nothing,
    a Helm- or Argo CD-managed object gets the warning and the manifest snippet to commit instead."""
    ns = "mit-rollout"
    helm = {
        **_deployment(ns, "helm-app"),
        "metadata": {
            "name": "helm-app",
            "namespace": ns,
            "labels": {"app.kubernetes.io/managed-by": "Helm"},
            "annotations": {"meta.helm.sh/release-name": "shop"},
        },
    }
    paused = _deployment(ns, "paused")
    paused["spec"]["paused"] = True
    argo = _deployment(ns, "argo-app")
    argo["metadata"]["annotations"] = {
        "argocd.argoproj.io/tracking-id": "shop:apps/Deployment:mit-rollout/argo-app"
    }
    ds = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": ns},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "updateStrategy": {"type": "OnDelete"},
            "template": _deployment(ns, "agent")["spec"]["template"],
        },
    }
    try:
        admin.request(
            "POST",
            "/api/v1/namespaces",
            body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
        )
        for obj in (helm, paused, argo):
            admin.request("POST", f"/apis/apps/v1/namespaces/{ns}/deployments", body=obj)
        admin.request("POST", f"/apis/apps/v1/namespaces/{ns}/daemonsets", body=ds)
        targets = [
            R.Target(ns, "Deployment", "helm-app", "glibc"),
            R.Target(ns, "Deployment", "paused", "glibc"),
            R.Target(ns, "Deployment", "argo-app", "glibc"),
            R.Target(ns, "DaemonSet", "agent", "glibc"),
        ]
        plan = R.plan_resolver_options(admin, targets, SRO)
        by = {c.ref.name: c for c in plan.changes}
        assert by["helm-app"].notes[0].startswith("changing the pod template triggers a rollout")
        assert any(
            n.startswith("managed by Helm (label app.kubernetes.io/managed-by=Helm)")
            for n in by["helm-app"].notes
        )
        assert by["helm-app"].commit_instead == (
            "spec:\n  template:\n    spec:\n      dnsConfig:\n        options:\n        - name: single-request-reopen\n"
        )
        assert by["paused"].notes == [by["paused"].notes[0]] and "is paused" in by["paused"].notes[0]
        assert by["paused"].commit_instead is None
        assert any(
            n.startswith("managed by Argo CD (annotation argocd.argoproj.io/tracking-id=")
            for n in by["argo-app"].notes
        )
        assert by["argo-app"].commit_instead is not None
        assert (
            by["agent"]
            .notes[0]
            .startswith("updateStrategy OnDelete: changing the pod template restarts nothing")
        )
    finally:
        with contextlib.suppress(KubeError):
            admin.request("DELETE", f"/api/v1/namespaces/{ns}")
