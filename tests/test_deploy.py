"""``dnsfleet deploy collector`` and the collector flags of ``scan``: settings checked, nothing secret
in the output, read-only RBAC (the fleet test proves the rules are enough for a complete scan)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dnsfleet.authz import local_decision
from dnsfleet.cli import main
from dnsfleet.deploy import CLUSTER_RULES, KUBE_SYSTEM_RULES, NAME, DeployError, collector_manifests
from dnsfleet.kube import ObjectRef
from dnsfleet.mitigate.audit import AuditLog, record_problem
from dnsfleet.mitigate.collector import (
    MITIGATION,
    UNDO,
    plan_undo,
    records_to_undo,
    ref_of,
    undo_record_problem,
)
from dnsfleet.mitigate.errors import MitigationError
from dnsfleet.mitigate.flow import Controller
from dnsfleet.mitigate.plan import Change, Plan, Result, dry_run, exclude_failed

URL = "s3://snaps/fleet?endpoint=http://127.0.0.1:9&region=eu-west-1"


def test_manifests_are_read_only_and_reference_the_secret() -> None:
    objs = collector_manifests("prod-weu", URL, "*/15 * * * *", image="registry.example/dnsfleet:1")
    kinds = [o["kind"] for o in objs]
    assert kinds == [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "CronJob",
    ]
    verbs = {v for r in CLUSTER_RULES + KUBE_SYSTEM_RULES for v in r["verbs"]}
    assert verbs == {"get", "list"}
    resources = {res for r in CLUSTER_RULES + KUBE_SYSTEM_RULES for res in r["resources"]}
    assert "secrets" not in resources and "*" not in resources
    ns_rule = next(r for r in CLUSTER_RULES if r["resources"] == ["namespaces"])
    assert ns_rule["resourceNames"] == ["kube-system"]
    cron = objs[-1]
    c = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert c["args"][:5] == ["scan", "--in-cluster", "--cluster-name", "prod-weu", "--store"]
    refs = {e["valueFrom"]["secretKeyRef"]["name"] for e in c["env"] if "valueFrom" in e}
    assert refs == {"dnsfleet-store"}
    assert objs[0]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.parametrize(
    ("kw", "msg"),
    [
        ({"cluster_name": "bad name"}, "--cluster-name"),
        ({"store_url": "/var/lib/x"}, "reachable from inside the cluster"),
        ({"store_url": "s3://k:secret@b/p"}, "must not carry credentials"),
        ({"schedule": "every hour"}, "five-field cron"),
        ({"image": "Bad Image"}, "--image"),
    ],
)
def test_bad_collector_settings_are_one_line_errors(kw: dict, msg: str) -> None:
    args = {"cluster_name": "a", "store_url": URL, "schedule": "*/30 * * * *"} | kw
    with pytest.raises(DeployError, match=msg) as e:
        collector_manifests(args["cluster_name"], args["store_url"], args["schedule"], image=kw.get("image"))
    assert "\n" not in str(e.value) and "secret@" not in str(e.value)


def test_deploy_collector_prints_plain_yaml() -> None:
    root = Path(__file__).resolve().parents[1]
    argv = [
        sys.executable,
        "-m",
        "dnsfleet.cli",
        "deploy",
        "collector",
        "--cluster-name",
        "a",
        "--store",
        URL,
    ]
    p = subprocess.run(argv, capture_output=True, text=True, cwd=root, timeout=60)
    assert p.returncode == 0, p.stderr
    docs = list(yaml.safe_load_all(p.stdout))
    assert [d["kind"] for d in docs][-1] == "CronJob" and docs[-1]["spec"]["schedule"] == "*/30 * * * *"


def test_scan_collector_flags_are_checked_before_scanning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert main(["scan", "--in-cluster"]) == 2
    assert "--in-cluster needs --cluster-name" in capsys.readouterr().err
    assert main(["scan", "--in-cluster", "--cluster-name", "a"]) == 2
    assert "KUBERNETES_SERVICE_HOST is not set" in capsys.readouterr().err
    assert main(["scan", "--cluster-name", "a", "--context", "x"]) == 2
    assert "applies to --in-cluster" in capsys.readouterr().err
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    assert main(["scan", "--in-cluster", "--cluster-name", "a", "--store", "ftp://x"]) == 2
    assert "unsupported store URL scheme" in capsys.readouterr().err


# -- deploy collector --apply: the parts that need no cluster (tests/test_deploy_apply_fleet.py has the rest)
class _NoCluster:
    """Fails any API call: these steps must decide without the cluster."""

    cluster = "c1"

    def __getattr__(self, name):  # pragma: no cover - reaching it fails the test
        raise AssertionError(f"no API call expected ({name})")


def test_cluster_flags_need_a_mode_and_the_manifest_flags_an_apply(capsys) -> None:
    assert main(["deploy", "collector", "--cluster-name", "a", "--store", URL, "--context", "c1"]) == 2
    assert "go with --diff, --apply or --undo" in capsys.readouterr().err
    assert (
        main(["deploy", "collector", "--apply", "--context", "c1", "--allow-writes", "--confirm", "c1"]) == 2
    )
    assert "deploy collector needs --cluster-name and --store" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["deploy", "collector", "--cluster-name", "a", "--store", URL, "--apply", "--undo"])
    assert "not allowed with argument" in capsys.readouterr().err


@pytest.mark.parametrize("ns", ["kube-system", "default", "Bad_NS"])
def test_a_system_or_invalid_namespace_is_refused(ns: str) -> None:
    with pytest.raises(DeployError, match="--namespace"):
        collector_manifests("a", URL, "*/30 * * * *", namespace=ns)


def test_cluster_scoped_refs_and_their_audit_records() -> None:
    refs = [ref_of(o) for o in collector_manifests("a", URL, "*/30 * * * *")]
    assert [r.path() for r in refs] == [
        "/api/v1/namespaces/dnsfleet",
        f"/api/v1/namespaces/dnsfleet/serviceaccounts/{NAME}",
        f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{NAME}",
        f"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{NAME}",
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/kube-system/roles/{NAME}",
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/kube-system/rolebindings/{NAME}",
        f"/apis/batch/v1/namespaces/dnsfleet/cronjobs/{NAME}",
    ]
    assert refs[2].label() == f"ClusterRole {NAME}" and refs[1].label() == f"ServiceAccount dnsfleet/{NAME}"
    base = {"cluster": "c1", "mitigation": MITIGATION, "result": "ok"}
    assert record_problem({**base, "object": {"kind": "Namespace", "namespace": "", "name": "x"}}) is None
    assert "cluster-scoped" in record_problem(
        {**base, "object": {"kind": "ClusterRole", "namespace": "x", "name": "y"}}
    )
    assert "namespace" in record_problem({**base, "object": {"kind": "Role", "namespace": "", "name": "y"}})


def _record(obj: dict, previous: dict | None, result: str = "ok", mitigation: str = MITIGATION) -> dict:
    ref = ref_of(obj)
    return {
        "time": "2026-12-03T20:00:00.000000Z",
        "identity": "admin",
        "cluster": "c1",
        "object": ref.as_dict(),
        "mitigation": mitigation,
        "action": "apply" if mitigation == MITIGATION else "delete",
        "patch": obj,
        "previous": previous,
        "applied": obj,
        "result": result,
        "message": "",
        "batch": "b1",
    }


def _objs() -> dict[str, dict]:
    return {o["kind"]: o for o in collector_manifests("a", URL, "*/30 * * * *")}


def test_undo_refuses_audit_records_that_would_write_more_than_the_collector_had() -> None:
    objs = _objs()
    role, crb, cron = objs["ClusterRole"], objs["ClusterRoleBinding"], objs["CronJob"]
    assert undo_record_problem(_record(role, None)) is None
    older = {**role, "rules": role["rules"][:2]}  # an earlier dnsfleet's rules: a fine restore target
    assert undo_record_problem(_record(role, older)) is None
    wide = {**role, "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]}
    assert "more than get/list/watch" in undo_record_problem(_record(role, wide))
    admin_ref = {**crb["roleRef"], "name": "cluster-admin"}
    assert "roleRef differs" in undo_record_problem(_record(crb, {**crb, "roleRef": admin_ref}))
    extra = {**role, "aggregationRule": {"clusterRoleSelectors": []}}
    assert "fields the collector's manifest does not set" in undo_record_problem(_record(role, extra))
    other = {**role, "metadata": {**role["metadata"], "name": "cluster-admin"}}
    assert "names another object" in undo_record_problem(_record(role, other))
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    stolen = {
        **cron,
        "spec": {"jobTemplate": {"spec": {"template": {"spec": {**pod, "serviceAccountName": "default"}}}}},
    }
    assert "another service account" in undo_record_problem(_record(cron, stolen))
    # plan_undo refuses such a record before it reads or writes anything
    with pytest.raises(MitigationError, match="not one dnsfleet wrote"):
        plan_undo(_NoCluster(), [_record(role, wide)])


def test_records_to_undo_start_after_the_last_undo_and_count_lost_answers() -> None:
    objs = _objs()
    ns, cron = objs["Namespace"], objs["CronJob"]
    recs = [
        _record(ns, None),
        _record(cron, None),
        _record(ns, None, mitigation=UNDO),  # the namespace was undone
        _record(cron, {**cron, "spec": {**cron["spec"], "schedule": "0 * * * *"}}, result="unknown"),
        _record(ns, None, result="forbidden"),  # not made: nothing to undo
        {**_record(cron, None), "cluster": "c2"},
    ]
    todo = records_to_undo(recs, "c1")
    assert list(todo) == [ref_of(cron)] and [r["result"] for r in todo[ref_of(cron)]] == ["ok", "unknown"]
    assert todo[ref_of(cron)][0]["previous"] is None  # the first record says: dnsfleet created it


def test_all_or_nothing_plan_refuses_before_touching_the_cluster(tmp_path) -> None:
    sa = ObjectRef("ServiceAccount", "dnsfleet", NAME)
    ns = ObjectRef("Namespace", "", "dnsfleet")
    plan = Plan(cluster="c1", mitigation=MITIGATION, all_or_nothing=True)
    plan.changes += [
        Change(ns, "apply", "create", None, {}, {}),
        Change(sa, "apply", "create", None, {}, {}, needs=ns),
    ]
    plan.changes[0].blocked = "kept out"
    (blocked, deferred) = dry_run(_NoCluster(), plan)  # neither reaches the server
    assert blocked.status == "blocked" and deferred.status == "deferred"
    assert "only once Namespace dnsfleet exists" in deferred.message
    plan.changes[0].blocked = None
    exclude_failed(plan, [Result(ns, "forbidden", "no"), deferred])
    assert plan.changes[1].blocked is None  # a deferred dry run is not a failed one
    plan.changes[0].blocked = None
    log = AuditLog(tmp_path / "audit.jsonl")
    ctrl = Controller("c1", decision=local_decision(True, {}), audit=log)
    with pytest.raises(MitigationError, match="nothing was applied: Namespace dnsfleet: failed the dry run"):
        ctrl.apply(plan, [Result(ns, "forbidden", "no"), deferred], "c1")
    with pytest.raises(MitigationError, match="ServiceAccount dnsfleet/dnsfleet-collector: no dry run"):
        ctrl.apply(plan, [Result(ns, "ok", "dry run passed")], "c1")
    assert log.records() == []


def test_collector_yaml_has_no_anchors() -> None:
    """The CronJob shares its labels dict with the job template: the YAML repeats it, never ``&id``."""
    from dnsfleet.deploy import collector_manifests, to_yaml

    text = to_yaml(collector_manifests("c1", "s3://b/p?endpoint=http://127.0.0.1:9000", "*/30 * * * *"))
    assert "&id" not in text and "*id" not in text
    docs = [d for d in __import__("yaml").safe_load_all(text) if d]
    cron = next(d for d in docs if d["kind"] == "CronJob")
    assert cron["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"] == cron["metadata"]["labels"]
