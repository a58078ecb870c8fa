"""Faults with real processes: one extra ``hard`` cluster (kube-apiserver + etcd) shared by this module,
killed, restarted, starved of etcd and throttled; plus an interrupted mitigation apply and tokens the
server rejects. The apiserver runs with an audit log (every request, metadata level) so tests can check
what the collector asked for.

Already covered elsewhere (not repeated): stopped apiserver before a scan, a hanging server, wrong CA,
a bad token, a real 410 after etcd compaction (``test_collect_fleet.py``); viewer 403, conflicts and
impersonation headers (``test_mitigate_fleet.py``).
"""

from __future__ import annotations

import base64
import contextlib
import json
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from dnsfleet import collect as C
from dnsfleet import kube as K
from dnsfleet.collect import scan, scan_cluster
from dnsfleet.kube import Kube, KubeError, ObjectRef
from dnsfleet.kube import request as KR
from dnsfleet.mitigate import resolver_options as R
from dnsfleet.mitigate.audit import AuditLog
from dnsfleet.mitigate.plan import apply, check_permissions, dry_run
from tests.fleet import spec as S
from tests.fleet.fleet import Fleet, ensure_binaries, start_fleet

pytestmark = pytest.mark.fleet

AUDIT_POLICY = "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n"


@pytest.fixture(scope="module")
def hard(tmp_path_factory) -> Fleet:
    ensure_binaries()
    root = tmp_path_factory.mktemp("hard")
    f = start_fleet(root, [S.small_cluster("hard")], prometheus=False)
    rc = f.clusters["hard"]
    policy = root / "audit-policy.yaml"
    policy.write_text(AUDIT_POLICY)
    f.audit_log = root / "audit.log"  # type: ignore[attr-defined]
    rc._apiserver.argv += [f"--audit-policy-file={policy}", f"--audit-log-path={f.audit_log}"]
    try:
        rc.stop_apiserver()
        rc.start_apiserver()
        yield f
    finally:
        f.stop()


def _target(fleet: Fleet, user: str = "admin") -> K.Target:
    return K.resolve_targets(fleet.kubeconfig_for(user), ["hard"])[0]


def _restart_flags(rc, add: list[str] | None = None, drop: list[str] | None = None) -> None:
    argv = [a for a in rc._apiserver.argv if a not in (drop or [])]
    rc._apiserver.argv = argv + (add or [])
    rc.stop_apiserver()
    rc.start_apiserver()


class _Hook:
    """Runs ``action`` once, just before the ``nth`` request for a continue page of ``path``
    (a request hook around the collector's real HTTP calls: the server is real)."""

    def __init__(self, path: str, nth: int, action) -> None:
        self.path, self.nth, self.action = path, nth, action
        self.count = 0
        self.fired = False
        self.apis: list[K.Api] = []

    def api_class(self) -> type[K.Api]:
        hook = self

        class HookedApi(K.Api):
            def __init__(self, *a: Any, **kw: Any) -> None:
                super().__init__(*a, **kw)
                hook.apis.append(self)

            def _get_once(self, path: str, query: dict[str, Any] | None, accept: str) -> bytes:
                if path == hook.path and (query or {}).get("continue") and not hook.fired:
                    hook.count += 1
                    if hook.count == hook.nth:
                        hook.fired = True
                        hook.action()
                return super()._get_once(path, query, accept)

        return HookedApi


# -- apiserver killed / restarted mid-scan ---------------------------------------------------------------


def test_apiserver_killed_during_pagination_fails_the_cluster_with_a_reason(hard, monkeypatch):
    rc = hard.clusters["hard"]
    hook = _Hook("/api/v1/pods", 2, rc.stop_apiserver)  # before the third page of pods
    monkeypatch.setattr(C, "Api", hook.api_class())
    try:
        t0 = time.monotonic()
        c = scan_cluster(_target(hard), timeout=3, scrape=False, page_limit=2)
        elapsed = time.monotonic() - t0
    finally:
        rc.start_apiserver()
    assert hook.fired
    assert c["status"] == "failed"
    assert c["reason"].startswith(f"unreachable: connection refused to {rc.server} (gave up after ")
    assert c["reason"].endswith("while reading /api/v1/pods")
    # no half list passed off as the cluster: pods and nodes are unknown, not short
    assert c["pods"] is None and c["nodes"] is None and c["dns"] is None
    assert elapsed < 2 * 3 + 5  # the retry budget (2 x timeout), never a hang


def test_apiserver_restarted_during_pagination_resumes_without_gaps_or_duplicates(hard, monkeypatch):
    rc = hard.clusters["hard"]
    e = hard.expected("hard")

    def restart() -> None:
        rc.stop_apiserver()
        threading.Thread(target=rc.start_apiserver, daemon=True).start()

    hook = _Hook("/api/v1/pods", 2, restart)
    monkeypatch.setattr(C, "Api", hook.api_class())
    try:
        c = scan_cluster(_target(hard), timeout=5, scrape=False, page_limit=2)
    finally:
        deadline = time.monotonic() + 60
        while rc.apiserver_pid is None and time.monotonic() < deadline:
            time.sleep(0.2)
        rc.start_apiserver()  # waits for /readyz (no-op start when already running)
    assert hook.fired and hook.apis[0].retried > 0  # refused connections were retried
    assert c["status"] == "ok", c["reason"]
    keys = [(p["namespace"], p["name"]) for p in c["pods"]]
    assert len(keys) == len(set(keys)) == e["pods"]
    assert len(c["nodes"]) == e["nodes"]


def test_etcd_stopped_under_a_running_apiserver_times_out_with_a_reason(hard):
    rc = hard.clusters["hard"]
    rc.stop_etcd()
    try:
        t0 = time.monotonic()
        c = scan_cluster(_target(hard), timeout=2, scrape=False)
        elapsed = time.monotonic() - t0
    finally:
        rc.start_etcd()
        _wait_lists(hard)
    assert c["status"] == "failed"
    # /version needs no etcd and answers; the first list then hangs on etcd until our timeout
    assert c["server_version"] is None  # the failed row keeps nothing half-read
    assert c["reason"] == f"timed out after 2 s talking to {rc.server} while reading /api/v1/nodes"
    assert elapsed < 2 + 3


def _wait_lists(fleet: Fleet, timeout: float = 60) -> None:
    """After etcd comes back the apiserver needs a moment before lists answer again."""
    api = K.Api(K.new_api_client(_target(fleet), 3), 3)
    deadline = time.monotonic() + timeout
    while True:
        try:
            api.get("/api/v1/nodes", {"limit": 1})
            return
        except (K.ClusterFailed, K.ResourceError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


# -- throttling --------------------------------------------------------------------------------------------


THROTTLE = [
    "--max-requests-inflight=1",
    "--max-mutating-requests-inflight=1",
    # With priority-and-fairness on, the limits only size APF's queues (requests wait, never 429);
    # off, the plain max-in-flight filter answers 429 + Retry-After: 1 at once.
    "--enable-priority-and-fairness=false",
]


def test_throttled_apiserver_under_a_concurrent_scan_honours_retry_after(hard, tmp_path, monkeypatch):
    rc = hard.clusters["hard"]
    e = hard.expected("hard")
    # Six contexts on the same server as "viewer" (system:masters is exempt from the in-flight limit).
    doc = yaml.safe_load(hard.kubeconfig_for("viewer").read_text())
    cluster, user = doc["clusters"][0], doc["users"][0]
    names = [f"hard-{i}" for i in range(6)]
    doc["clusters"] = [{"name": n, "cluster": cluster["cluster"]} for n in names]
    doc["users"] = [{"name": n, "user": user["user"]} for n in names]
    doc["contexts"] = [{"name": n, "context": {"cluster": n, "user": n}} for n in names]
    kc = tmp_path / "kubeconfig"
    kc.write_text(yaml.safe_dump(doc))
    waits: list[tuple[int, float | None, float]] = []  # (attempt, Retry-After sent, wait chosen)

    class RecordingApi(K.Api):
        def _wait(self, attempt: int, retry_after: float | None) -> float:
            w = super()._wait(attempt, retry_after)
            waits.append((attempt, retry_after, w))
            return w

    monkeypatch.setattr(C, "Api", RecordingApi)
    _restart_flags(rc, add=THROTTLE)
    stop = threading.Event()

    def other_client() -> None:  # another tool listing pods every 50 ms alongside the scan
        import urllib3

        http = urllib3.PoolManager(ca_certs=str(rc.ca), retries=False)
        while not stop.wait(0.05):
            with contextlib.suppress(urllib3.exceptions.HTTPError):
                http.request(
                    "GET",
                    f"{rc.server}/api/v1/pods",
                    headers={"Authorization": f"Bearer {rc.tokens['viewer']}"},
                )

    load = [threading.Thread(target=other_client, daemon=True)]
    try:
        for t in load:
            t.start()
        t0 = time.monotonic()
        snap = scan(kubeconfig=kc, all_contexts=True, workers=6, timeout=10, scrape=False)
        elapsed = time.monotonic() - t0
    finally:
        stop.set()
        for t in load:
            t.join(10)
        _restart_flags(rc, drop=THROTTLE)
    assert waits, "the server never answered 429 + Retry-After: the test did not exercise throttling"
    assert {ra for _, ra, _ in waits} == {1.0}  # every retry here was a 429 with Retry-After: 1
    for attempt, _, w in waits:  # never sooner than Retry-After; later only as the backoff grows
        backoff = min(KR.BACKOFF_CAP_S, KR.BACKOFF_BASE_S * 2**attempt)
        assert 1.0 <= w <= max(1.2, backoff), (attempt, w)
    for c in snap["clusters"]:
        assert c["status"] == "ok", c["reason"]
        assert len(c["pods"]) == e["pods"] and len(c["nodes"]) == e["nodes"]
    assert elapsed < 120


# -- tokens the server rejects ------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _sa_token(rc, sa: dict[str, Any], exp: int) -> str:
    """A bound service account token signed with the cluster's own signing key (what TokenRequest makes)."""
    now = int(time.time())
    claims = {
        "iss": "https://kubernetes.default.svc.cluster.local",
        "aud": ["https://kubernetes.default.svc.cluster.local"],
        "sub": f"system:serviceaccount:default:{sa['metadata']['name']}",
        "iat": min(now, exp - 60),
        "nbf": min(now, exp - 60),
        "exp": exp,
        "kubernetes.io": {
            "namespace": "default",
            "serviceaccount": {"name": sa["metadata"]["name"], "uid": sa["metadata"]["uid"]},
        },
    }
    signing = (
        f"{_b64(json.dumps({'alg': 'RS256', 'typ': 'JWT'}).encode())}.{_b64(json.dumps(claims).encode())}"
    )
    sig = subprocess.run(
        ["openssl", "dgst", "-sha256", "-sign", str(rc.dir / "pki" / "sa.key")],
        input=signing.encode(),
        capture_output=True,
        check=True,
    ).stdout
    return f"{signing}.{_b64(sig)}"


def test_expired_service_account_token_is_a_plain_401(hard, tmp_path):
    rc = hard.clusters["hard"]
    admin = Kube.from_kubeconfig(hard.kubeconfig, "hard")
    name = f"scanner-{uuid.uuid4().hex[:6]}"
    sa = admin.request(
        "POST", "/api/v1/namespaces/default/serviceaccounts", body={"metadata": {"name": name}}
    )
    try:
        valid = _sa_token(rc, sa, int(time.time()) + 600)
        expired = _sa_token(rc, sa, int(time.time()) - 120)
        entries = {"valid": valid, "expired": expired}
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "hard", "cluster": {"server": rc.server, "certificate-authority": str(rc.ca)}}
            ],
            "users": [{"name": n, "user": {"token": t}} for n, t in entries.items()],
            "contexts": [{"name": n, "context": {"cluster": "hard", "user": n}} for n in entries],
        }
        kc = tmp_path / "kubeconfig"
        kc.write_text(yaml.safe_dump(doc))
        by = {
            c["name"]: c for c in scan(kubeconfig=kc, all_contexts=True, timeout=5, scrape=False)["clusters"]
        }
    finally:
        admin.request("DELETE", f"/api/v1/namespaces/default/serviceaccounts/{name}")
        admin.close()
    # the same key and claims are accepted while fresh (authenticated, then RBAC says no)...
    assert (
        by["valid"]["reason"] == f'forbidden: user "system:serviceaccount:default:{name}" cannot list nodes'
    )
    # ...and rejected once expired
    assert by["expired"]["status"] == "failed"
    assert by["expired"]["reason"] == f"unauthorized: {rc.server} rejected the credentials (401)"
    assert expired not in json.dumps(by) and valid not in json.dumps(by)


# -- mitigation apply interrupted half-way ---------------------------------------------------------------


def _deployment(ns: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "dnsConfig": {"options": [{"name": "ndots", "value": "2"}]},
                    "containers": [{"name": "app", "image": "debian:12"}],
                },
            },
        },
    }


def test_apply_interrupted_half_way_is_audited_exactly_and_undone(hard, tmp_path, monkeypatch):
    monkeypatch.delenv("DNSFLEET_ALLOW_WRITES", raising=False)
    rc = hard.clusters["hard"]
    ns = "faults"
    names = ["api", "web", "worker"]
    admin = Kube.from_kubeconfig(hard.kubeconfig, "hard", timeout=5)
    admin.request("POST", "/api/v1/namespaces", body={"metadata": {"name": ns}})
    try:
        for n in names:
            admin.request("POST", f"/apis/apps/v1/namespaces/{ns}/deployments", body=_deployment(ns, n))
        refs = [ObjectRef("Deployment", ns, n) for n in names]
        before = {r.name: admin.get(r) for r in refs}
        others = {
            o["metadata"]["name"]: o["metadata"]["resourceVersion"] for o in admin.list("ConfigMap", ns)
        }
        targets = [R.Target(ns, "Deployment", n, "glibc") for n in names]
        plan = check_permissions(
            admin, R.plan_resolver_options(admin, targets, {"single-request-reopen": None})
        )
        assert [r.status for r in dry_run(admin, plan)] == ["ok"] * 3
        audit = AuditLog(tmp_path / "audit.jsonl")

        def kill_after_first(i: int, n: int, r) -> None:
            if i == 1:
                rc.stop_apiserver()

        t0 = time.monotonic()
        try:
            results = apply(
                admin, plan, allow_writes=True, confirm="hard", audit=audit, progress=kill_after_first
            )
        finally:
            rc.start_apiserver()
        assert time.monotonic() - t0 < 30
        assert [r.status for r in results] == ["ok", "unreachable", "not-sent"]
        assert "stopped answering at Deployment faults/web" in results[2].message
        recs = audit.records()
        assert [(r["object"]["name"], r["result"]) for r in recs] == [
            ("api", "ok"),
            ("web", "unreachable"),
            ("worker", "not-sent"),
        ]
        assert len({r["batch"] for r in recs}) == 1 and all(r["identity"] == "admin" for r in recs)

        after = {r.name: admin.get(r) for r in refs}
        assert after["api"]["metadata"]["resourceVersion"] != before["api"]["metadata"]["resourceVersion"]
        for n in ("web", "worker"):  # exactly the objects the log says were not changed
            assert after[n]["metadata"]["resourceVersion"] == before[n]["metadata"]["resourceVersion"]

        undo = R.plan_undo_resolver_options(
            admin, refs[0], audit.last_applied("hard", refs[0].as_dict(), R.MITIGATION)
        )
        assert [r.status for r in apply(admin, undo, allow_writes=True, confirm="hard", audit=audit)] == [
            "ok"
        ]
        for r in refs:
            live = admin.get(r)
            assert live["spec"] == before[r.name]["spec"]
            assert live["metadata"].get("annotations") == before[r.name]["metadata"].get("annotations")
        assert {
            o["metadata"]["name"]: o["metadata"]["resourceVersion"] for o in admin.list("ConfigMap", ns)
        } == others
        assert [r["result"] for r in audit.records()] == ["ok", "unreachable", "not-sent", "ok"]
    finally:
        with contextlib.suppress(KubeError):
            admin.request("DELETE", f"/api/v1/namespaces/{ns}")
        admin.close()


# -- what the collector asks the server for ----------------------------------------------------------------


def test_collector_never_requests_secrets_or_other_configmaps(hard):
    log: Path = hard.audit_log  # type: ignore[attr-defined]
    start = log.stat().st_size if log.exists() else 0
    marker = f"dnsfleet-audit-{uuid.uuid4().hex[:8]}"
    kc = hard.kubeconfig_for("viewer")
    c = scan(kubeconfig=kc, contexts=["hard"], timeout=5)["clusters"][0]
    assert c["status"] == "ok"
    # one more request after the scan so we know the scan's entries have been written
    with contextlib.suppress(K.ResourceError):
        K.Api(K.new_api_client(_target(hard, "viewer"), 5), 5).get(
            f"/api/v1/namespaces/default/configmaps/{marker}"
        )
    deadline = time.monotonic() + 10
    while marker not in log.read_text()[start:] and time.monotonic() < deadline:
        time.sleep(0.2)
    events = [json.loads(line) for line in log.read_text()[start:].splitlines() if line.strip()]
    mine = [
        ev
        for ev in events
        if ev.get("user", {}).get("username") == "viewer" and ev.get("stage") == "ResponseComplete"
    ]
    uris = [ev["requestURI"].split("?")[0] for ev in mine if marker not in ev["requestURI"]]
    assert uris, "no audit entries for the scan"
    assert all(ev["verb"] in ("get", "list") for ev in mine)  # read-only
    assert not [u for u in uris if "/secrets" in u]
    allowed_cm = {
        "coredns",
        "kube-proxy",
        "kube-proxy-config",
        "cilium-config",
        "node-local-dns",
        "nodelocaldns",
    }
    cms = [u for u in uris if "/configmaps" in u]
    assert cms and all(u.rsplit("/", 1)[1] in allowed_cm for u in cms), cms
    # pods come from the list only (no per-pod GETs, logs or exec); the CoreDNS scrape uses the proxy
    assert not [u for u in uris if "/log" in u or "/exec" in u or "/attach" in u]
    single_pods = [u for u in uris if u.startswith("/api/v1/namespaces/") and "/pods/" in u]
    assert all(u.endswith(":9153/proxy/metrics") for u in single_pods), single_pods
