"""Faults without the fleet: kubeconfig problems, exec credential plugins that fail or hang, retry
policy details, and a Prometheus that is down, slow, erroring or answers partial/garbled data.

Tiny local HTTP servers stand in for what a real server does not do on demand (a 503 on every request,
Retry-After: 3600, a Prometheus that sleeps or returns warnings). Real-server faults (429 under load,
killed/restarted apiserver, etcd down, expired token) are in ``test_hardening_fleet.py``.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs

import pytest
import yaml

from dnsfleet import kube as K
from dnsfleet.collect import PromSource, scan
from dnsfleet.collect import cluster as CS
from dnsfleet.collect.prom import PromClient, collect_metrics
from dnsfleet.kube import ConfigError, Kube, KubeError
from dnsfleet.kube import request as KR
from dnsfleet.kube.execauth import TimedExecProvider
from tests.builders import exec_user, shell_script
from tests.fleet.fleet import running

Handler = Callable[[BaseHTTPRequestHandler, str, bytes], tuple[int, dict[str, str], bytes]]


@pytest.fixture
def http_server(serve: Callable[[Callable[[BaseHTTPRequestHandler], None]], str]) -> Callable[[Handler], str]:
    """Start a local HTTP server answering with ``handler(req, path, body)``; returns its base URL."""

    def start(handler: Handler) -> str:
        def answer(req: BaseHTTPRequestHandler) -> None:
            status, headers, data = handler(req, req.path, req.body)  # type: ignore[attr-defined]
            req.send_response(status)
            for k, v in headers.items():
                req.send_header(k, v)
            req.send_header("Content-Length", str(len(data)))
            req.end_headers()
            req.wfile.write(data)

        return serve(answer)

    return start


def _kubeconfig(path: Path, server: str, user: dict[str, Any], ctx: str = "c1", **cluster: Any) -> Path:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": ctx, "cluster": {"server": server, **cluster}}],
        "users": [{"name": ctx, "user": user}],
        "contexts": [{"name": ctx, "context": {"cluster": ctx, "user": ctx}}],
        "current-context": ctx,
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def _version_server(http_server, seen: list[str] | None = None) -> str:
    def handler(req, path, body):
        if seen is not None:
            seen.append(req.headers.get("Authorization") or "")
        return 401, {}, b'{"kind":"Status","code":401}'

    return http_server(handler)


# -- kubeconfig problems -------------------------------------------------------------------------------


def test_missing_kubeconfig_and_unknown_context_are_one_line_config_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"^kubeconfig file not found: .*/nope$"):
        scan(kubeconfig=tmp_path / "nope")
    kc = _kubeconfig(tmp_path / "kc", "https://127.0.0.1:1", {"token": "t"})
    with pytest.raises(ConfigError) as err:
        scan(kubeconfig=kc, contexts=["prod"])
    assert str(err.value) == "context 'prod' not in kubeconfig (available: c1)"
    (tmp_path / "bad").write_text("clusters: [\n")
    with pytest.raises(ConfigError, match="is not valid YAML at line"):
        scan(kubeconfig=tmp_path / "bad")


def test_bad_ca_file_or_data_fails_only_that_cluster(tmp_path):
    missing = _kubeconfig(
        tmp_path / "a", "https://127.0.0.1:1", {"token": "t"}, "a", **{"certificate-authority": "/no/ca.pem"}
    )
    garbage = _kubeconfig(
        tmp_path / "b",
        "https://127.0.0.1:1",
        {"token": "t"},
        "b",
        **{"certificate-authority-data": "bm90IGEgY2VydA=="},  # "not a cert"
    )
    snap = scan(kubeconfig=[missing, garbage], all_contexts=True, timeout=2, scrape=False)
    by = {c["name"]: c for c in snap["clusters"]}
    assert by["a"]["status"] == "failed" and by["a"]["reason"].startswith("kubeconfig: ")
    assert "/no/ca.pem" in by["a"]["reason"]
    assert by["b"]["status"] == "failed" and by["b"]["reason"]
    assert all("\n" not in c["reason"] for c in snap["clusters"])


# -- exec credential plugins ----------------------------------------------------------------------------


def test_exec_plugin_that_fails_names_the_plugin_not_a_401(tmp_path, http_server):
    seen: list[str] = []
    server = _version_server(http_server, seen)
    plugin = shell_script(
        tmp_path / "get-token", "echo 'error: SSO session expired, run login' >&2\nexit 3\n"
    )
    kc = _kubeconfig(tmp_path / "kc", server, exec_user(plugin))
    (c,) = scan(kubeconfig=kc, timeout=2, scrape=False)["clusters"]
    assert c["status"] == "failed"
    assert c["reason"] == (
        "kubeconfig: credential plugin 'get-token' failed (exit 3): error: SSO session expired, run login"
    )
    assert seen == []  # no anonymous request went out instead


def test_exec_plugin_that_hangs_is_killed_after_the_timeout(tmp_path, http_server, monkeypatch):
    monkeypatch.setenv("DNSFLEET_EXEC_TIMEOUT", "1")
    pidfile = tmp_path / "child.pid"
    # A shell wrapper whose child holds stdout open: killing only the shell would still hang.
    plugin = shell_script(tmp_path / "kubelogin", f"sleep 120 &\necho $! > {pidfile}\nwait\n")
    kc = _kubeconfig(tmp_path / "kc", _version_server(http_server), exec_user(plugin))
    t0 = time.monotonic()
    (c,) = scan(kubeconfig=kc, timeout=2, scrape=False)["clusters"]
    assert time.monotonic() - t0 < 8
    assert c["reason"] == "kubeconfig: credential plugin 'kubelogin' did not answer within 1 s (killed)"
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while running(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not running(child), "the plugin's child process outlived the timeout"


@pytest.mark.parametrize(
    ("output", "reason"),
    [
        ("not json", "printed no ExecCredential JSON"),
        ('{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential"}', "without status"),
        (
            '{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential","status":{}}',
            "answered apiVersion 'client.authentication.k8s.io/v1beta1'",
        ),
        (
            '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{}}',
            "neither a token nor a client certificate",
        ),
    ],
)
def test_exec_plugin_bad_output_is_a_plain_reason(tmp_path, http_server, output, reason):
    plugin = shell_script(tmp_path / "plug", f"cat <<'EOF'\n{output}\nEOF\n")
    kc = _kubeconfig(tmp_path / "kc", _version_server(http_server), exec_user(plugin))
    (c,) = scan(kubeconfig=kc, timeout=2, scrape=False)["clusters"]
    assert c["status"] == "failed" and reason in c["reason"], c["reason"]


def test_exec_plugin_token_is_used_and_never_shown(tmp_path, http_server):
    seen: list[str] = []
    server = _version_server(http_server, seen)
    token = "exec-token-0d1e2a3d-never-print"
    cred = {
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "status": {"token": token},
    }
    plugin = shell_script(tmp_path / "plug", f"cat <<'EOF'\n{json.dumps(cred)}\nEOF\n")
    kc = _kubeconfig(tmp_path / "kc", server, exec_user(plugin))
    (c,) = scan(kubeconfig=kc, timeout=2, scrape=False)["clusters"]
    assert seen and seen[0] == f"Bearer {token}"
    assert c["reason"] == f"unauthorized: {server} rejected the credentials (401)"
    assert token not in json.dumps(c)


def test_mitigation_client_refuses_a_failing_exec_plugin(tmp_path, http_server):
    plugin = shell_script(tmp_path / "plug", "exit 1\n")
    kc = _kubeconfig(tmp_path / "kc", _version_server(http_server), exec_user(plugin))
    with pytest.raises(KubeError, match=r"credential plugin 'plug' failed \(exit 1\)$"):
        Kube.from_kubeconfig(kc, "c1")


def test_exec_provider_is_what_the_kubernetes_loader_uses():
    from kubernetes.config import kube_config

    K.new_api_client  # noqa: B018  (importing the collector installs it on first client)
    from dnsfleet.kube import execauth

    execauth.install()
    assert kube_config.ExecProvider is TimedExecProvider


# -- retry policy -------------------------------------------------------------------------------------


def _api(server: str, timeout: float = 2.0, **kw: Any) -> K.Api:
    from kubernetes import client

    cfg = client.Configuration()
    cfg.host = server
    cfg.retries = False
    return K.Api(client.ApiClient(cfg), timeout, **kw)


def test_429_waits_at_least_retry_after_then_succeeds(http_server, caplog):
    calls: list[float] = []

    def handler(req, path, body):
        calls.append(time.monotonic())
        if len(calls) <= 2:
            return 429, {"Retry-After": "1"}, b'{"kind":"Status","message":"Too many requests"}'
        return 200, {}, b'{"items":[{"metadata":{"name":"a"}}]}'

    api = _api(http_server(handler), timeout=2)
    with caplog.at_level(logging.INFO, logger="dnsfleet.kube"):
        doc = api.get("/api/v1/nodes")
    assert doc["items"][0]["metadata"]["name"] == "a"
    assert api.retried == 2 and len(calls) == 3
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    assert all(1.0 <= g < 2.0 for g in gaps), gaps  # Retry-After honoured, jitter bounded
    assert "HTTP 429, Retry-After 1 s; retry 1" in caplog.text


def test_retry_after_beyond_the_budget_gives_up_at_once(http_server):
    calls: list[int] = []

    def handler(req, path, body):
        calls.append(1)
        return 429, {"Retry-After": "3600"}, b'{"kind":"Status","message":"slow down"}'

    api = _api(http_server(handler), timeout=1)
    t0 = time.monotonic()
    with pytest.raises(K.ResourceError) as err:
        api.get("/api/v1/pods")
    assert time.monotonic() - t0 < 1 and len(calls) == 1
    assert err.value.message() == "slow down (throttled; gave up after 1 attempt)"


def test_503_forever_is_bounded_by_attempts_and_budget(http_server):
    calls: list[float] = []

    def handler(req, path, body):
        calls.append(time.monotonic())
        return 503, {}, b"upstream connect error"

    api = _api(http_server(handler), timeout=1, retry_budget=3.0)
    t0 = time.monotonic()
    with pytest.raises(K.ResourceError) as err:
        api.get("/api/v1/pods")
    assert time.monotonic() - t0 < 4.5
    assert 2 <= len(calls) <= KR.MAX_RETRIES + 1
    assert err.value.status == 503 and "gave up after" in err.value.message()


def test_backoff_grows_with_jitter_and_respects_the_cap():
    api = _api("http://127.0.0.1:1")
    for attempt in range(10):
        cap = min(KR.BACKOFF_CAP_S, KR.BACKOFF_BASE_S * 2**attempt)
        waits = {round(api._wait(attempt, None), 6) for _ in range(20)}
        assert all(cap / 2 <= w <= cap for w in waits)
        assert len(waits) > 1  # jittered, so many clients do not retry in lockstep
    assert all(api._wait(0, 5.0) >= 5.0 for _ in range(20))


def test_partial_list_is_never_returned_when_a_page_fails(http_server):
    """Page 1 answers, page 2 keeps failing: the whole list fails, the first page is not kept."""

    def handler(req, path, body):
        if "continue=" in path:
            return 500, {}, b'{"kind":"Status","message":"etcdserver: request timed out"}'
        return 200, {}, b'{"items":[{"metadata":{"name":"a"}}],"metadata":{"continue":"tok"}}'

    api = _api(http_server(handler), timeout=1, retry_budget=1.0)
    job = CS.ClusterScan("c1", api)
    assert job._pods() is None
    assert job.missing == ["pods"]
    assert job.errors["pods"].startswith("pods: HTTP 500 etcdserver: request timed out (gave up after ")


# -- Prometheus down / slow / erroring / partial ---------------------------------------------------------


def _prom(url: str, **kw: Any) -> PromSource:
    return PromSource(url, time=1_700_000_000, series_range_s=600, step_s=60, **kw)


def _ok(result: list[dict[str, Any]], warnings: list[str] | None = None) -> bytes:
    doc: dict[str, Any] = {"status": "success", "data": {"resultType": "vector", "result": result}}
    if warnings:
        doc["warnings"] = warnings
    return json.dumps(doc).encode()


def test_prometheus_that_hangs_times_out_quickly(http_server):
    def handler(req, path, body):
        time.sleep(3)
        return 200, {}, _ok([])

    url = http_server(handler)
    t0 = time.monotonic()
    m = collect_metrics(_prom(url, timeout=0.5), "c1", node_names=["n1"])
    assert time.monotonic() - t0 < 2.5
    assert m["source"] is None and m["coredns"] is None
    assert m["note"] == f"not collected: Prometheus at {url} timed out after 0.5 s"


def test_prometheus_slow_inside_the_timeout_is_stopped_by_the_overall_budget(http_server):
    def handler(req, path, body):
        time.sleep(0.3)
        q = parse_qs(body.decode()).get("query", [""])[0]
        if "coredns_build_info" in q or q.startswith("count("):
            return 200, {}, _ok([{"metric": {"version": "1.11.1"}, "value": [0, "1"]}])
        return 200, {}, _ok([{"metric": {}, "value": [0, "1"]}])

    url = http_server(handler)
    src = _prom(url, timeout=1)
    client = PromClient(src, budget_s=1.0)
    t0 = time.monotonic()
    m = collect_metrics(src, "c1", node_names=["n1"], client=client)
    assert time.monotonic() - t0 < 3
    assert m["source"] is None
    assert m["note"] == f"not collected: Prometheus at {url} too slow: gave up after 1 s of queries"


@pytest.mark.parametrize(
    ("status", "body", "note"),
    [
        (
            500,
            b'{"status":"error","errorType":"internal","error":"out of memory\\nin query"}',
            "out of memory in query",
        ),
        (502, b"<html>Bad Gateway</html>", "HTTP 502, not JSON"),
        (200, b"[1,2,3]", "not an API answer"),
        (200, b'{"status":"success","data":[1]}', "'data' is not an object"),
        (401, b"", "refused the credentials (HTTP 401)"),
    ],
)
def test_prometheus_errors_are_one_line_notes(http_server, status, body, note):
    url = http_server(lambda req, path, b: (status, {}, body))
    m = collect_metrics(_prom(url, timeout=2, token="prom-token-secret"), "c1", node_names=["n1"])
    assert m["source"] is None and m["coredns"] is None and m["conntrack"]["nodes"] == {}
    assert note in m["note"] and "\n" not in m["note"]
    assert "prom-token-secret" not in json.dumps(m)


def test_prometheus_partial_data_keeps_what_came_and_says_what_did_not(http_server):
    """Thanos/Mimir partial response: a warning, CoreDNS requests but no latency histogram, conntrack
    for one of two nodes, and a malformed sample."""

    def handler(req, path, body):
        q = parse_qs(body.decode()).get("query", [""])[0]
        warn = ["partial response: store 10.0.0.7:10901 unreachable"]
        if "query_range" in path:
            return (
                200,
                {},
                json.dumps({"status": "success", "data": {"resultType": "matrix", "result": []}}).encode(),
            )
        if "coredns_build_info" in q:
            return 200, {}, _ok([{"metric": {"version": "1.11.1"}, "value": [0, "2"]}], warn)
        if q.startswith("count(coredns_dns_requests_total"):
            return 200, {}, _ok([{"metric": {}, "value": [0, "2"]}])
        if q.startswith("sum(rate(coredns_dns_requests_total"):
            return 200, {}, _ok([{"metric": {}, "value": [0, "41.5"]}, {"metric": {}, "value": "garbage"}])
        if "insert_failed" in q and "increase" in q:
            return 200, {}, _ok([{"metric": {"node": "n1"}, "value": [0, "3"]}])
        return 200, {}, _ok([])

    m = collect_metrics(_prom(http_server(handler), timeout=2), "c1", node_names=["n1", "n2"])
    assert m["source"] == "prometheus"
    assert m["coredns"]["qps"] == 41.5
    assert m["coredns"]["p99_ms"] is None and m["coredns"]["share_over_1s"] is None  # unknown, not 0
    assert m["conntrack"]["nodes"]["n1"]["insert_failed_increase"] == 3.0
    assert "n2" not in m["conntrack"]["nodes"]
    note = m["note"]
    assert "no coredns_dns_request_duration_seconds series (latency not collected)" in note
    assert "no conntrack series for 1 of 2 nodes" in note
    assert "Prometheus warned, results may be partial: partial response: store 10.0.0.7:10901" in note
    assert "1 malformed sample(s) in Prometheus answers skipped" in note


def test_a_bug_in_metrics_costs_the_metrics_not_the_cluster(monkeypatch):
    """Nodes/pods read fine; the metrics step raising must leave an ok cluster with a metrics note."""
    import dnsfleet.collect as C

    def boom(*a: Any, **k: Any) -> dict[str, Any]:
        raise KeyError("surprise")

    monkeypatch.setattr(C, "collect_metrics", boom)
    out = CS.base_cluster("c1")
    out["status"] = "ok"
    target = K.Target("c1", None, None)
    monkeypatch.setattr(C, "new_api_client", lambda t, timeout: _FakeClient())
    monkeypatch.setattr(C, "ClusterScan", lambda name, api, progress: _Job(out))
    res = C.scan_cluster(target, _prom("http://127.0.0.1:1"))
    assert res["status"] == "ok"
    assert res["metrics"]["note"] == "not collected: internal error: KeyError: 'surprise'"


class _FakeClient:
    class configuration:
        host = "https://x"
        api_key: ClassVar[dict[str, str]] = {}

    def close(self) -> None:
        pass


class _Job:
    def __init__(self, out: dict[str, Any]) -> None:
        self.out = out
        self.page_limit = 500
        self.node_addresses: dict[str, str] = {}
        self.coredns_pods: list[dict[str, Any]] = []
        self.api = None

    def run(self) -> dict[str, Any]:
        return dict(self.out)


# -- a write whose answer never comes -----------------------------------------------------------------------


def test_write_without_an_answer_is_unknown_and_stops_the_apply(http_server, tmp_path, monkeypatch):
    """The server takes the PATCH and never answers: the change may have been made, so the result says
    'unknown' (not 'unreachable'), the audit log records it, and the next object is not sent."""
    from kubernetes import client as kc

    from dnsfleet.kube import ObjectRef
    from dnsfleet.mitigate.audit import AuditLog
    from dnsfleet.mitigate.plan import Change, Plan, apply

    seen: list[str] = []

    def handler(req, path, body):
        seen.append(f"{req.command} {path.split('?')[0]}")
        if req.command == "POST":  # SelfSubjectReview for the identity
            return 201, {}, b'{"status":{"userInfo":{"username":"tester"}}}'
        time.sleep(2)
        return 200, {}, b"{}"

    cfg = kc.Configuration()
    cfg.host = http_server(handler)
    kube = Kube(kc.ApiClient(cfg), "c1", timeout=0.5)
    refs = [ObjectRef("Deployment", "ns", n) for n in ("a", "b")]
    plan = Plan(
        cluster="c1",
        mitigation="resolver-options",
        changes=[
            Change(
                ref=r,
                action="json-patch",
                why="test",
                before={},
                after={},
                body=[{"op": "test", "path": "/x"}],
            )
            for r in refs
        ],
    )
    monkeypatch.delenv("DNSFLEET_ALLOW_WRITES", raising=False)
    audit = AuditLog(tmp_path / "audit.jsonl")
    results = apply(kube, plan, allow_writes=True, confirm="c1", audit=audit)
    assert [r.status for r in results] == ["unknown", "not-sent"], results
    assert "may or may not have been made" in results[0].message
    assert [(r["object"]["name"], r["result"]) for r in audit.records()] == [
        ("a", "unknown"),
        ("b", "not-sent"),
    ]
    assert [s for s in seen if s.startswith("PATCH")] == ["PATCH /apis/apps/v1/namespaces/ns/deployments/a"]
