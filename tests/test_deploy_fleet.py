"""``dnsfleet deploy collector`` against a real API server: every object passes a server-side dry run,
the CronJob's pod is admitted by Pod Security ``restricted`` (and a weakened copy is not), and
``dnsfleet scan --in-cluster`` running as the collector's ServiceAccount, with nothing but the RBAC
the manifests grant, completes a full (``ok``) scan and writes it to a real S3 server."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dnsfleet.deploy import collector_manifests
from dnsfleet.store import SnapshotStore
from tests.fleet.fleet import Fleet
from tests.fleet.s3 import S3Server

ROOT = Path(__file__).resolve().parents[1]
PLURALS = {
    "Namespace": "namespaces",
    "ServiceAccount": "serviceaccounts",
    "ClusterRole": "clusterroles",
    "ClusterRoleBinding": "clusterrolebindings",
    "Role": "roles",
    "RoleBinding": "rolebindings",
    "CronJob": "cronjobs",
    "Pod": "pods",
}


def path_of(obj: dict[str, Any]) -> str:
    av = obj["apiVersion"]
    base = f"/api/{av}" if "/" not in av else f"/apis/{av}"
    ns = obj["metadata"].get("namespace")
    coll = f"{base}/namespaces/{ns}/{PLURALS[obj['kind']]}" if ns else f"{base}/{PLURALS[obj['kind']]}"
    return f"{coll}/{obj['metadata']['name']}"


def apply(rest: Any, obj: dict[str, Any], dry_run: bool) -> tuple[int, Any]:
    q = "?fieldManager=dnsfleet-test&force=true" + ("&dryRun=All" if dry_run else "")
    return rest.request("PATCH", path_of(obj) + q, obj, content_type="application/apply-patch+yaml")


@pytest.mark.fleet
def test_collector_manifests_dry_run_pss_and_an_in_cluster_scan_into_s3(
    fleet_factory: Callable[..., Fleet], tmp_path: Path
) -> None:
    fl = fleet_factory()
    rc = fl.clusters["scratch"]
    rest = rc.rest("admin")
    s3 = S3Server(tmp_path / "s3").start()
    try:
        url = s3.url("collectors")
        objs = collector_manifests("scratch", url, "*/30 * * * *", image="localhost/dnsfleet:test")
        assert objs[0]["kind"] == "Namespace"
        apply(rest, objs[0], dry_run=False)  # namespaced dry runs need the namespace to exist
        for o in objs:
            status, echo = apply(rest, o, dry_run=True)
            assert status in (200, 201), (o["kind"], status)
            assert echo["kind"] == o["kind"]

        # Pod Security restricted: the CronJob's pod is admitted; a copy that may escalate is not.
        cron = objs[-1]
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "collector-pss-check", "namespace": "dnsfleet"},
            "spec": cron["spec"]["jobTemplate"]["spec"]["template"]["spec"],
        }
        assert apply(rest, pod, dry_run=True)[0] in (200, 201)
        bad = copy.deepcopy(pod)
        del bad["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"]
        with pytest.raises(Exception, match="restricted"):
            apply(rest, bad, dry_run=True)

        for o in objs:
            apply(rest, o, dry_run=False)
        _, tok = rest.request(
            "POST",
            "/api/v1/namespaces/dnsfleet/serviceaccounts/dnsfleet-collector/token",
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": 600},
            },
        )
        sa = tmp_path / "sa"
        sa.mkdir()
        (sa / "token").write_text(tok["status"]["token"])
        (sa / "ca.crt").write_bytes(Path(rc.ca).read_bytes())
        host, port = rc.server.removeprefix("https://").rsplit(":", 1)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("KUBE", "AWS_"))},
            **s3.env,
            "KUBERNETES_SERVICE_HOST": host,
            "KUBERNETES_SERVICE_PORT": port,
            "DNSFLEET_SERVICEACCOUNT_DIR": str(sa),
        }
        argv = [sys.executable, "-m", "dnsfleet.cli", "scan", "--in-cluster", "--cluster-name", "scratch"]
        argv += ["--store", url, "--no-scrape", "-o", "json"]
        p = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=180)
        assert p.returncode == 0, p.stderr
        (row,) = json.loads(p.stdout)
        # nothing forbidden: the granted verbs are enough for a complete scan
        assert row["cluster"] == "scratch" and row["status"] == "ok", row
        assert "stored scratch scan" in p.stderr
        assert s3.secret_key not in p.stdout + p.stderr and tok["status"]["token"] not in p.stdout + p.stderr

        _, ks = rest.request("GET", "/api/v1/namespaces/kube-system")
        os.environ.update(s3.env)
        try:
            latest = SnapshotStore(url).latest()
        finally:
            for k in s3.env:
                os.environ.pop(k, None)
        assert latest.rows["scratch"]["collector"]["id"] == ks["metadata"]["uid"]
        c = latest.snapshot["clusters"][0]
        assert c["status"] == "ok" and not c.get("missing") and len(c["pods"]) == row["pods"]
    finally:
        s3.stop()
