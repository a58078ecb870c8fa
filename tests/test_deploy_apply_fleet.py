"""``dnsfleet deploy collector --diff/--apply/--undo`` against a real API server: the collector's objects
go through the mitigation controller (plan, diff, permission check, server-side dry run, typed
confirmation, the write guard, server-side apply as ``dnsfleet``, one audit record per object, undo).

One small cluster for the module; each test deploys into a namespace of its own (without a
controller-manager a deleted namespace stays ``Terminating``) and undoes what it applied."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dnsfleet.cli import main
from dnsfleet.deploy import NAME, collector_manifests
from dnsfleet.kube import Kube, KubeError, ObjectRef
from dnsfleet.mitigate.audit import AuditLog
from dnsfleet.mitigate.collector import MITIGATION, UNDO, applied_by_dnsfleet, ref_of
from dnsfleet.mitigate.objects import clean, project
from tests.fleet.fleet import Fleet, FleetError, ensure_binaries, start_fleet
from tests.fleet.spec import small_cluster

pytestmark = pytest.mark.fleet

CTX = "scratch"
URL = "s3://snaps/fleet?endpoint=http://127.0.0.1:9&region=eu-west-1"
CLUSTER_WIDE = [ObjectRef("ClusterRole", "", NAME), ObjectRef("ClusterRoleBinding", "", NAME)]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    try:
        ensure_binaries()
        fl = start_fleet(tmp_path_factory.mktemp("deploy-fleet"), [small_cluster(CTX)], prometheus=False)
    except FleetError as e:
        pytest.fail(f"the test fleet could not start: {e}", pytrace=False)
    try:
        yield fl
    finally:
        fl.stop()


@pytest.fixture
def admin(scratch: Fleet) -> Iterator[Kube]:
    k = Kube.from_kubeconfig(scratch.kubeconfig, CTX)
    yield k
    k.close()


@pytest.fixture
def log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AuditLog:
    monkeypatch.delenv("DNSFLEET_ALLOW_WRITES", raising=False)
    return AuditLog(tmp_path / "audit.jsonl")


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _args(scratch: Fleet, log: AuditLog, ns: str, *extra: str) -> list[str]:
    return [
        "deploy",
        "collector",
        "--cluster-name",
        CTX,
        "--store",
        URL,
        "--namespace",
        ns,
        "--kubeconfig",
        str(scratch.kubeconfig),
        "--context",
        CTX,
        "--audit-log",
        str(log.path),
        *extra,
    ]


def _refs(ns: str) -> list[ObjectRef]:
    return [ref_of(o) for o in collector_manifests(CTX, URL, "*/30 * * * *", namespace=ns)]


def _cleanup(admin: Kube, ns: str) -> None:
    """Remove whatever a failed test left (the shared ClusterRole/Binding above all)."""
    for ref in reversed(_refs(ns)):
        with contextlib.suppress(KubeError):
            admin.request("DELETE", ref.path())


def _gone_or_terminating(admin: Kube, ref: ObjectRef) -> bool:
    live = admin.get(ref)
    return live is None or bool(live["metadata"].get("deletionTimestamp"))


def test_apply_creates_audits_is_idempotent_and_undo_removes_it(scratch, admin, log, capsys):
    ns = "collector-a"
    try:
        # writes off: refused before the cluster is touched, with the switch to use
        code, out, err = _run(capsys, *_args(scratch, log, ns, "--apply", "--confirm", CTX))
        assert code == 2 and "writes are disabled: add --allow-writes or set DNSFLEET_ALLOW_WRITES=1" in err
        # the typed confirmation must name the cluster
        code, _, err = _run(capsys, *_args(scratch, log, ns, "--apply", "--allow-writes", "--confirm", "x"))
        assert code == 2 and f"--confirm {CTX}" in err
        # --diff: the plan against the live objects, nothing written
        code, out, _ = _run(capsys, *_args(scratch, log, ns, "--diff", "--dry-run"))
        assert code == 0, out
        assert f"- Namespace {ns}: create Namespace {ns}" in out and "+++ CronJob" in out
        assert "--- /dev/null" in out and "pod-security.kubernetes.io/enforce: restricted" in out
        assert f"ClusterRole {NAME}: ok: dry run passed" in out
        assert f"CronJob {ns}/{NAME}: deferred: the server can dry-run it only once Namespace {ns}" in out
        assert all(admin.get(r) is None for r in _refs(ns)) and log.records() == []

        code, out, _ = _run(capsys, *_args(scratch, log, ns, "--apply", "--allow-writes", "--confirm", CTX))
        assert code == 0, out
        assert "[7/7] CronJob" in out and f"audit log: {log.path}" in out
        objs = collector_manifests(CTX, URL, "*/30 * * * *", namespace=ns)
        for obj in objs:  # exactly the printed manifests, applied by dnsfleet's field manager
            live = admin.get(ref_of(obj))
            assert project(clean(live), obj) == obj, obj["kind"]
            assert applied_by_dnsfleet(live)
        records = log.records()
        assert [(r["object"]["kind"], r["result"], r["action"]) for r in records] == [
            (o["kind"], "ok", "apply") for o in objs
        ]
        assert {r["mitigation"] for r in records} == {MITIGATION} and len({r["batch"] for r in records}) == 1
        assert records[0]["object"] == {"kind": "Namespace", "namespace": "", "name": ns}
        assert all(r["previous"] is None and r["identity"] == "admin" for r in records)

        # again: everything matches, nothing is sent or audited
        code, out, _ = _run(capsys, *_args(scratch, log, ns, "--apply", "--allow-writes", "--confirm", CTX))
        assert code == 0 and f"nothing to change on {CTX}" in out and "already matches" in out
        assert len(log.records()) == 7

        # a new schedule changes the CronJob only; the audit keeps the previous one
        code, out, _ = _run(
            capsys,
            *_args(
                scratch, log, ns, "--schedule", "0 * * * *", "--apply", "--allow-writes", "--confirm", CTX
            ),
        )
        assert code == 0, out
        (rec,) = log.records()[7:]
        assert rec["object"]["kind"] == "CronJob" and rec["previous"]["spec"]["schedule"] == "*/30 * * * *"
        changed = [line.strip() for line in out.splitlines() if line.startswith(("    -", "    +"))]
        assert changed[2:] == ["-  schedule: '*/30 * * * *'", "+  schedule: 0 * * * *"], (
            changed
        )  # after ---/+++
        cron = ObjectRef("CronJob", ns, NAME)
        assert admin.get(cron)["spec"]["schedule"] == "0 * * * *"

        # undo: everything the deploys created goes, newest kind first
        code, out, _ = _run(capsys, *_args(scratch, log, ns, "--undo", "--allow-writes", "--confirm", CTX))
        assert code == 0, out
        undo = log.records()[8:]
        assert [r["object"]["kind"] for r in undo] == [o["kind"] for o in reversed(objs)]
        assert {(r["mitigation"], r["action"], r["result"]) for r in undo} == {(UNDO, "delete", "ok")}
        for ref in _refs(ns):
            assert _gone_or_terminating(admin, ref), ref
        assert all(admin.get(r) is None for r in CLUSTER_WIDE)
        code, out, _ = _run(capsys, *_args(scratch, log, ns, "--undo", "--allow-writes", "--confirm", CTX))
        assert code == 0 and "nothing to undo" in out and len(log.records()) == 15
        # the namespace stays Terminating here (no controller-manager): a new deploy waits for it
        code, out, _ = _run(capsys, *_args(scratch, log, ns, "--apply", "--allow-writes", "--confirm", CTX))
        assert code == 1 and f"BLOCKED: Namespace {ns} is being deleted: deploy again once it is gone" in out
        assert all(admin.get(r) is None for r in CLUSTER_WIDE) and len(log.records()) == 15
    finally:
        _cleanup(admin, ns)


def test_existing_namespace_gets_labels_and_undo_restores_it_keeping_its_secret(scratch, admin, log, capsys):
    """The operator created the namespace and the store Secret first: deploy adds its labels, undo
    takes them away again and keeps the namespace (its Secret is not dnsfleet's to delete)."""
    ns = "collector-b"
    admin.request(
        "POST",
        "/api/v1/namespaces",
        body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"team": "sre"}}},
    )
    admin.request(
        "POST",
        f"/api/v1/namespaces/{ns}/secrets",
        body={"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "dnsfleet-store"}, "stringData": {}},
    )
    try:
        code, out, _ = _run(capsys, *_args(scratch, log, ns, "--apply", "--allow-writes", "--confirm", CTX))
        assert code == 0, out
        assert "only its labels are added" in out and "deferred" not in out  # the namespace exists
        labels = admin.get(ObjectRef("Namespace", "", ns))["metadata"]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted" and labels["team"] == "sre"
        assert log.records()[0]["previous"]["metadata"]["labels"] == {}

        code, out, _ = _run(capsys, *_args(scratch, log, ns, "--undo", "--allow-writes", "--confirm", CTX))
        assert code == 0, out
        live = admin.get(ObjectRef("Namespace", "", ns))
        assert not live["metadata"].get("deletionTimestamp")
        assert "pod-security.kubernetes.io/enforce" not in live["metadata"]["labels"]
        assert live["metadata"]["labels"]["team"] == "sre"
        assert admin.get(ObjectRef("CronJob", ns, NAME)) is None
        assert all(admin.get(r) is None for r in CLUSTER_WIDE)
    finally:
        _cleanup(admin, ns)
        with contextlib.suppress(KubeError):
            admin.request("DELETE", f"/api/v1/namespaces/{ns}")


def test_undo_keeps_a_created_namespace_that_now_holds_the_store_secret(scratch, admin, log, capsys):
    ns = "collector-f"
    try:
        code, out, _ = _run(capsys, *_args(scratch, log, ns, "--apply", "--allow-writes", "--confirm", CTX))
        assert code == 0, out
        admin.request(
            "POST",
            f"/api/v1/namespaces/{ns}/secrets",
            body={
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "dnsfleet-store"},
                "stringData": {"AWS_SECRET_ACCESS_KEY": "s3cr3t-value-xyz"},
            },
        )
        code, out, _ = _run(capsys, *_args(scratch, log, ns, "--undo", "--allow-writes", "--confirm", CTX))
        assert code == 0, out
        assert f"- skipped Namespace {ns}: kept: it holds Secret(s) dnsfleet-store" in out
        assert "s3cr3t" not in out and "s3cr3t" not in log.path.read_text()  # only its name was read
        live = admin.get(ObjectRef("Namespace", "", ns))
        assert not live["metadata"].get("deletionTimestamp")
        assert admin.get(ObjectRef("CronJob", ns, NAME)) is None
        assert admin.get(ObjectRef("ServiceAccount", ns, NAME)) is None
        assert all(admin.get(r) is None for r in CLUSTER_WIDE)
    finally:
        _cleanup(admin, ns)


def test_namespace_enforcing_another_level_fails_the_dry_run_and_nothing_is_applied(
    scratch, admin, log, capsys
):
    ns = "collector-c"
    admin.request(
        "POST",
        "/api/v1/namespaces",
        body={
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": ns, "labels": {"pod-security.kubernetes.io/enforce": "baseline"}},
        },
        query={"fieldManager": "platform-team"},
    )
    try:
        code, out, _ = _run(capsys, *_args(scratch, log, ns, "--apply", "--allow-writes", "--confirm", CTX))
        assert code == 1, out
        assert f"Namespace {ns}: conflict" in out and "platform-team" in out
        assert "# nothing was applied" in out
        assert (
            all(admin.get(r) is None for r in CLUSTER_WIDE)
            and admin.get(ObjectRef("CronJob", ns, NAME)) is None
        )
        labels = admin.get(ObjectRef("Namespace", "", ns))["metadata"]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] == "baseline"
        assert log.records() == []
    finally:
        _cleanup(admin, ns)
        with contextlib.suppress(KubeError):
            admin.request("DELETE", f"/api/v1/namespaces/{ns}")


def test_rbac_denial_under_impersonation_applies_nothing(scratch, admin, log, capsys):
    ns = "collector-d"
    code, out, _ = _run(
        capsys,
        *_args(scratch, log, ns, "--apply", "--allow-writes", "--confirm", CTX, "--impersonate", "viewer"),
    )
    assert code == 1, out
    assert "! not allowed to patch clusterroles.rbac.authorization.k8s.io (cluster-wide)" in out
    assert f"ClusterRole {NAME}: forbidden" in out and 'User "viewer" cannot' in out
    assert "# nothing was applied" in out
    assert all(admin.get(r) is None for r in [ObjectRef("Namespace", "", ns), *CLUSTER_WIDE])
    assert log.records() == []


VAP = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies"
VAPB = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings"


def test_cronjob_rejected_once_its_namespace_exists_rolls_the_namespace_back(scratch, admin, log, capsys):
    """The namespace does not exist, so the CronJob's dry run can only run after apply created it; an
    admission policy then rejects it: the namespace is deleted again and nothing else is written."""
    ns, probe_ns = "collector-e", "collector-probe"
    name = "dnsfleet-test-no-cronjobs"
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": ["batch"],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["cronjobs"],
                    }
                ]
            },
            "validations": [{"expression": "false", "message": "no CronJobs in collector namespaces"}],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"],
            "matchResources": {
                "namespaceSelector": {"matchLabels": {"app.kubernetes.io/component": "collector"}}
            },
        },
    }
    cron = next(
        o for o in collector_manifests(CTX, URL, "*/30 * * * *", namespace=probe_ns) if o["kind"] == "CronJob"
    )
    try:
        admin.request("POST", VAP, body=policy)
        admin.request("POST", VAPB, body=binding)
        admin.request(
            "POST",
            "/api/v1/namespaces",
            body={
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": probe_ns, "labels": {"app.kubernetes.io/component": "collector"}},
            },
        )
        deadline = time.monotonic() + 30
        while True:  # the policy becomes active asynchronously
            try:
                admin.request(
                    "POST",
                    f"/apis/batch/v1/namespaces/{probe_ns}/cronjobs",
                    body=cron,
                    query={"dryRun": "All"},
                )
            except KubeError:
                break
            assert time.monotonic() < deadline, "the admission policy never became active"
            time.sleep(0.5)

        code, out, _ = _run(capsys, *_args(scratch, log, ns, "--apply", "--allow-writes", "--confirm", CTX))
        assert code == 1, out
        assert f"CronJob {ns}/{NAME}: invalid: failed the dry run once Namespace {ns} existed" in out
        assert "no CronJobs in collector namespaces" in out
        assert f"ClusterRole {NAME}: not-sent: not sent: CronJob {ns}/{NAME} (invalid) failed" in out
        assert f"Namespace {ns}: ok: deleted again (rollback: CronJob {ns}/{NAME} (invalid) failed)" in out
        assert all(admin.get(r) is None for r in CLUSTER_WIDE)
        assert _gone_or_terminating(admin, ObjectRef("Namespace", "", ns))
        recs = log.records()
        assert [(r["mitigation"], r["action"], r["result"]) for r in recs] == [
            (MITIGATION, "apply", "ok"),
            (UNDO, "delete", "ok"),
        ]
        assert len({r["batch"] for r in recs}) == 1
        code, out, _ = _run(capsys, *_args(scratch, log, ns, "--undo", "--allow-writes", "--confirm", CTX))
        assert code == 0 and "nothing to undo" in out
    finally:
        for path in (f"{VAPB}/{name}", f"{VAP}/{name}"):
            with contextlib.suppress(KubeError):
                admin.request("DELETE", path)
        # the admission plugin drops the policy asynchronously too: wait until the probe CronJob
        # passes again, so the next test's collector namespace is not still covered by it
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                admin.request(
                    "POST",
                    f"/apis/batch/v1/namespaces/{probe_ns}/cronjobs",
                    body=cron,
                    query={"dryRun": "All"},
                )
                break
            except KubeError:
                time.sleep(0.5)
        with contextlib.suppress(KubeError):
            admin.request("DELETE", f"/api/v1/namespaces/{probe_ns}")
        _cleanup(admin, ns)


def test_a_foreign_object_of_the_same_name_is_not_taken_over(scratch, admin, log, capsys):
    ns = "collector-g"
    foreign = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": NAME},
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}],
    }
    admin.request("POST", "/apis/rbac.authorization.k8s.io/v1/clusterroles", body=foreign)
    try:
        code, out, _ = _run(capsys, *_args(scratch, log, ns, "--apply", "--allow-writes", "--confirm", CTX))
        assert code == 1, out
        assert (
            f"ClusterRole {NAME}: BLOCKED: ClusterRole {NAME} already exists and was not applied by dnsfleet"
            in out
        )
        assert "# nothing was applied" in out
        live = admin.get(CLUSTER_WIDE[0])
        assert live["rules"] == foreign["rules"] and not applied_by_dnsfleet(live)
        assert admin.get(ObjectRef("Namespace", "", ns)) is None and log.records() == []
    finally:
        _cleanup(admin, ns)


def test_an_edit_between_plan_and_apply_is_a_conflict_not_overwritten(scratch, admin, log):
    """The library path (``Controller``), as the CLI drives it: an update carries the live
    resourceVersion, so a change someone made after the plan survives and the audit says conflict."""
    from dnsfleet.authz import local_decision
    from dnsfleet.mitigate.flow import Controller

    ns = "collector-h"
    ctrl = Controller(CTX, scratch.kubeconfig, decision=local_decision(True, {}), audit=log)
    try:
        objs = collector_manifests(CTX, URL, "*/30 * * * *", namespace=ns)
        with ctrl:
            plan = ctrl.plan_deploy_collector(objs)
            assert [r.status for r in ctrl.apply(plan, ctrl.dry_run(plan), CTX)] == ["ok"] * 7
            plan = ctrl.plan_deploy_collector(collector_manifests(CTX, URL, "0 * * * *", namespace=ns))
            assert [c.ref.kind for c in plan.changes] == ["CronJob"]
            dry = ctrl.dry_run(plan)
            assert [r.status for r in dry] == ["ok"]
            cron = ObjectRef("CronJob", ns, NAME)
            admin.request(
                "PATCH",
                cron.path(),
                body=[{"op": "add", "path": "/spec/suspend", "value": True}],
                query={"fieldManager": "someone-else"},
                content_type="application/json-patch+json",
            )
            (result,) = ctrl.apply(plan, dry, CTX)
        assert result.status == "conflict", result
        live = admin.get(cron)
        assert live["spec"]["suspend"] is True and live["spec"]["schedule"] == "*/30 * * * *"
        assert log.records()[-1]["result"] == "conflict"
    finally:
        _cleanup(admin, ns)
