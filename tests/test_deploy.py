"""``dnsfleet deploy collector`` and the collector flags of ``scan``: settings checked, nothing secret
in the output, read-only RBAC (the fleet test proves the rules are enough for a complete scan)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dnsfleet.cli import main
from dnsfleet.deploy import CLUSTER_RULES, KUBE_SYSTEM_RULES, DeployError, collector_manifests

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
