"""Security round two (issue 15), the Kubernetes and Prometheus side: tokens that end in a newline,
servers that echo credentials, bounds on time and size, /version errors, missing user entries, and
Prometheus credentials.

Real kube-apiservers (``fleet``) where a real server can show the behaviour; tiny servers on 127.0.0.1
for what no real server does on demand (echoing the Authorization header in a 5xx body, trickling an
answer one byte at a time, endless bodies, a proxy's HTML 502).
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
import yaml

from dnsfleet import kube as K
from dnsfleet.collect import PromSource, scan
from dnsfleet.collect.prom import collect_metrics, credentials, operator_credentials
from dnsfleet.kube import Kube, KubeError
from dnsfleet.kube import bounds as B
from dnsfleet.scrub import remember, scrub
from dnsfleet.snapshot import SnapshotError, loads
from tests.builders import exec_user, shell_script

REPO = Path(__file__).resolve().parents[1]

Handler = Callable[[BaseHTTPRequestHandler], None]


def answer(req: BaseHTTPRequestHandler, status: int, body: bytes, ctype: str = "application/json") -> None:
    req.send_response(status)
    req.send_header("Content-Type", ctype)
    req.send_header("Content-Length", str(len(body)))
    req.end_headers()
    req.wfile.write(body)


def echo_handler(req: BaseHTTPRequestHandler) -> None:
    """A broken proxy: a 5xx whose body repeats the request's Authorization header, twice (as a JSON
    Status message quoting the bare credential, on /version and lists; as an HTML page elsewhere)."""
    auth = req.headers.get("Authorization") or ""
    cred = auth.split(" ", 1)[-1]
    if req.path.startswith("/api/v1/query"):  # Prometheus
        body = json.dumps({"status": "error", "errorType": "internal", "error": f"upstream got {auth}"})
        return answer(req, 500, body.encode())
    if req.path.startswith("/version") or "/api/v1/" in req.path:
        msg = f"upstream rejected credential {cred} (header: Authorization: {auth})"
        return answer(req, 500, json.dumps({"kind": "Status", "code": 500, "message": msg}).encode())
    page = f"<html><body><h1>502</h1><pre>Authorization: {auth}</pre></body></html>\n"
    return answer(req, 502, page.encode(), "text/html")


def _exec_plugin(path: Path, token: str) -> Path:
    cred = {"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential"}
    cred["status"] = {"token": token + "\n"}  # a plugin that prints the token with its newline
    return shell_script(path, f"cat <<'EOF'\n{json.dumps(cred)}\nEOF\n")


def _kubeconfig(path: Path, entries: dict[str, tuple[str, str | None, dict[str, Any]]]) -> Path:
    """``entries``: context -> (server, CA file or None, user dict)."""
    clusters, users, contexts = [], [], []
    for name, (server, ca, user) in entries.items():
        cluster: dict[str, Any] = {"server": server}
        if ca:
            cluster["certificate-authority"] = ca
        clusters.append({"name": name, "cluster": cluster})
        users.append({"name": name, "user": user})
        contexts.append({"name": name, "context": {"cluster": name, "user": name}})
    doc = {"apiVersion": "v1", "kind": "Config", "clusters": clusters, "users": users, "contexts": contexts}
    doc["current-context"] = next(iter(entries))
    path.write_text(yaml.safe_dump(doc))
    path.chmod(0o600)
    return path


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dnsfleet.cli", *args], capture_output=True, text=True, env=env, timeout=240
    )


def _leaks(secrets: list[str], outputs: dict[str, str]) -> list[tuple[str, str]]:
    return [(where, s[:10] + "…") for where, text in outputs.items() for s in secrets if s and s in text]


# -- item 1: tokens ending in a newline, servers echoing credentials ---------------------------------------


@pytest.mark.fleet
def test_tokens_ending_in_a_newline_work_and_no_echoed_credential_reaches_any_output(fleet, tmp_path, serve):
    """Real apiserver: a tokenFile written with ``echo``, a ``token: |`` value and an exec plugin
    printing ``"token": "...\\n"`` all authenticate (kubectl trims them; the Python client sent
    ``Bearer <token>\\n`` and put the token in the ValueError). A local server that echoes the
    Authorization header in its 5xx bodies, and a Prometheus URL with user:password@ that also echoes,
    never get a credential into stdout, stderr, JSON, CSV, the snapshot or the mitigate error."""
    rc = fleet.clusters["aks-legacy"]
    admin, viewer = rc.tokens["admin"], rc.tokens["viewer"]
    echo_token = "echo-token-5c1d9e7b-never-print"
    prom_password = "prom-pass-0a8f3c2e-never-print"
    (tmp_path / "admin.token").write_text(admin + "\n")  # `echo $TOKEN > file`
    (tmp_path / "echo.token").write_text(echo_token + "\n")
    echo = serve(echo_handler)
    kc = _kubeconfig(
        tmp_path / "kubeconfig",
        {
            "token-file": (rc.server, str(rc.ca), {"tokenFile": str(tmp_path / "admin.token")}),
            "token-block": (rc.server, str(rc.ca), {"token": viewer + "\n"}),  # token: |
            "exec": (rc.server, str(rc.ca), exec_user(_exec_plugin(tmp_path / "plug", admin))),
            "echo": (echo, None, {"tokenFile": str(tmp_path / "echo.token")}),
        },
    )
    # `token: |` really is a block scalar with the newline in the file we wrote
    assert yaml.safe_load(kc.read_text())["users"][1]["user"]["token"].endswith("\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("DNSFLEET_ALLOW_WRITES", None)
    prom = echo.replace("http://", f"http://dnsfleet:{prom_password}@")
    snap = tmp_path / "fleet.json.gz"
    common = ["scan", "--kubeconfig", str(kc), "--all-contexts", "--timeout", "3"]
    js = _cli([*common, "--prometheus", prom, "--out", str(snap), "-o", "json"], env)
    assert js.returncode == 0, js.stderr
    csv = _cli([*common, "--no-scrape", "-o", "csv"], env)
    assert csv.returncode == 0, csv.stderr
    plan = ["mitigate", "plan", "resolver-options", "--kubeconfig", str(kc), "--dry-run", "--timeout", "3"]
    wl = ["-w", "shop/Deployment/checkout", "-o", "single-request-reopen"]
    mit = _cli([*plan, "--context", "token-file", *wl], env)  # was a ValueError quoting the token
    assert mit.returncode == 0 and "single-request-reopen" in mit.stdout, (mit.stdout, mit.stderr)
    assert "server-side dry run" in mit.stdout
    mit_echo = _cli([*plan, "--context", "echo", *wl], env)  # the echo server's 5xx pages

    rows = {r["cluster"]: r for r in json.loads(js.stdout)}
    for ctx in ("token-file", "token-block", "exec"):
        assert rows[ctx]["status"] == "ok", rows[ctx]
    assert rows["echo"]["status"] == "failed"
    assert "HTTP 500" in rows["echo"]["reason"] and "/version" in rows["echo"]["reason"]
    assert "***" in rows["echo"]["reason"]  # the echoed credential was there, and was blanked
    raw_snap = gzip.decompress(snap.read_bytes()).decode()
    notes = [c["metrics"]["note"] for c in json.loads(raw_snap)["clusters"] if c["status"] == "ok"]
    assert notes and all(f"Prometheus at {echo} " in n or "Prometheus query failed" in n for n in notes)
    outputs = {
        "json stdout": js.stdout,
        "json stderr": js.stderr,
        "csv stdout": csv.stdout,
        "csv stderr": csv.stderr,
        "snapshot": raw_snap,
        "mitigate stdout": mit.stdout,
        "mitigate stderr": mit.stderr,
        "mitigate echo stdout": mit_echo.stdout,
        "mitigate echo stderr": mit_echo.stderr,
    }
    basic = base64.b64encode(f"dnsfleet:{prom_password}".encode()).decode()
    secrets = [admin, viewer, echo_token, prom_password, basic]
    assert _leaks(secrets, outputs) == []


def test_credentials_echoed_by_a_server_are_scrubbed_in_process(tmp_path, serve, caplog):
    """The library's own texts (failed and partial reasons, metrics notes, KubeError on the mitigation
    side, log lines) scrub a credential a server echoes, in any shape: the bare value in a JSON
    message, an ``Authorization:`` line in an HTML page."""
    token = "inproc-token-77d0c4aa-never-print"
    (tmp_path / "t").write_text(token + "\n")
    echo = serve(echo_handler)
    kc = _kubeconfig(tmp_path / "kc", {"c1": (echo, None, {"tokenFile": str(tmp_path / "t")})})
    caplog.set_level("DEBUG")
    (c,) = scan(kubeconfig=kc, timeout=1, scrape=False)["clusters"]
    assert c["status"] == "failed" and "HTTP 500" in c["reason"], c["reason"]
    kube = Kube.from_kubeconfig(kc, "c1", timeout=1)
    with pytest.raises(KubeError) as err:
        kube.request("GET", "/apis/apps/v1/namespaces/shop/deployments/web")  # the HTML 502 page
    kube.close()
    assert "HTTP 502" in str(err.value)
    texts = {"reason": c["reason"], "kube error": str(err.value), "logs": caplog.text}
    assert _leaks([token], texts) == []
    # the echo did carry the token (so the check above can fail): the server saw it trimmed
    seen: list[str] = []

    def record(req: BaseHTTPRequestHandler) -> None:
        seen.append(req.headers.get("Authorization") or "")
        answer(req, 401, b"{}")

    kc2 = _kubeconfig(tmp_path / "kc2", {"c1": (serve(record), None, {"tokenFile": str(tmp_path / "t")})})
    scan(kubeconfig=kc2, timeout=1, scrape=False)
    assert seen[0] == f"Bearer {token}"


def test_a_token_with_a_line_break_inside_is_refused_without_quoting_it(tmp_path, serve):
    token = "first-half-1a2b3c\nsecond-half-4d5e6f"
    seen: list[str] = []

    def record(req: BaseHTTPRequestHandler) -> None:
        seen.append(req.path)
        answer(req, 200, b"{}")

    kc = _kubeconfig(tmp_path / "kc", {"c1": (serve(record), None, {"token": token})})
    (c,) = scan(kubeconfig=kc, timeout=1, scrape=False)["clusters"]
    assert c["status"] == "failed"
    assert c["reason"] == "kubeconfig: the credential has a line break inside it; not sent"
    assert seen == []
    assert "1a2b3c" not in json.dumps(c) and "4d5e6f" not in json.dumps(c)


def test_the_scrubber_blanks_known_values_and_every_authorization_shape():
    remember("known-secret-value-42\n")
    cases = {
        "saw known-secret-value-42 here": "saw *** here",
        "Authorization: Bearer abc.def-123": "Authorization: ***",
        '{"authorization": "Basic dXNlcjpwYXNz"}': '{"authorization": "***"}',
        "header b'Bearer eyJhbGciOi.x9\\n'": "header b'Bearer ***\\n'",
        "GET http://user:pa55@prom:9090/api": "GET http://***@prom:9090/api",
        "basic authentication failed": "basic authentication failed",  # prose stays prose
        "authorization.k8s.io/v1 denied": "authorization.k8s.io/v1 denied",
    }
    for text, want in cases.items():
        assert scrub(text) == want, text
    assert scrub(None) is None and scrub("") == ""


def test_dashboard_and_cli_error_lines_go_through_the_scrubber(tmp_path):
    from dashboard.state import one_line
    from dnsfleet.mitigate.errors import MitigationError

    remember("dash-secret-3f9e1c0b")
    assert "dash-secret" not in one_line(RuntimeError("boom: dash-secret-3f9e1c0b"))
    assert "dash-secret" not in str(MitigationError("refused: dash-secret-3f9e1c0b"))
    kc = _kubeconfig(tmp_path / "kc", {"c1": ("http://127.0.0.1:1", None, {"token": "unused-token-abcdef"})})
    proc = _cli(
        ["scan", "--kubeconfig", str(kc), "--prometheus", "prom:cli-secret-8e7d6c5b@prometheus:9090"],
        {**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 2 and "Prometheus URL must be http(s)" in proc.stderr, proc.stderr
    assert "cli-secret" not in proc.stderr + proc.stdout  # the URL error used to quote it whole


# -- item 11: a deadline on every request, a cap on every body ----------------------------------------------


def _trickle(headers_first: bool) -> Handler:
    """One byte every 0.9 s: of the body after complete headers, or of the status line itself."""

    def handler(req: BaseHTTPRequestHandler) -> None:
        body = b'{"gitVersion": "v1.34.4", "padding": "' + b"x" * 40 + b'"}'
        head = (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        if headers_first:
            req.wfile.write(head)
            req.wfile.flush()
            data = body
        else:
            data = head + body
        for i in range(len(data)):
            req.wfile.write(data[i : i + 1])
            req.wfile.flush()
            time.sleep(0.9)

    return handler


@pytest.mark.parametrize("headers_first", [True, False], ids=["trickled-body", "trickled-status-line"])
def test_a_trickling_apiserver_cannot_outlive_the_timeout(tmp_path, serve, headers_first):
    server = serve(_trickle(headers_first))
    kc = _kubeconfig(tmp_path / "kc", {"c1": (server, None, {"token": "trickle-token-abcdef12"})})
    t0 = time.monotonic()
    (c,) = scan(kubeconfig=kc, timeout=3, scrape=False)["clusters"]
    elapsed = time.monotonic() - t0
    assert c["status"] == "failed"
    assert c["reason"] == f"timed out after 3 s talking to {server}", c["reason"]
    assert elapsed < 4.5, elapsed  # was minutes: each byte reset the 3 s read timeout


def test_a_trickling_write_answer_is_outcome_unknown_within_the_timeout(serve):
    server = serve(_trickle(True))
    from kubernetes import client

    cfg = client.Configuration()
    cfg.host = server
    api = K.Api(client.ApiClient(cfg), 2.0)
    t0 = time.monotonic()
    with pytest.raises(K.ClusterFailed) as err:
        api.request("PATCH", "/api/v1/namespaces/x", body={"a": 1})
    assert time.monotonic() - t0 < 3.5
    assert (
        err.value.outcome_unknown and "(timed out after 2 s): the change may or may not" in err.value.reason
    )


def test_a_trickling_prometheus_cannot_outlive_the_timeout(serve):
    server = serve(_trickle(True))
    t0 = time.monotonic()
    m = collect_metrics(PromSource(server, timeout=2), "c1", node_names=["n1"])
    assert time.monotonic() - t0 < 3.5
    assert m["note"] == f"not collected: Prometheus at {server} timed out after 2 s", m["note"]


def _endless(chunked: bool) -> Handler:
    def handler(req: BaseHTTPRequestHandler) -> None:
        req.send_response(200)
        req.send_header("Content-Type", "application/json")
        if chunked:
            req.send_header("Transfer-Encoding", "chunked")
        else:
            req.send_header("Content-Length", str(800 << 20))  # announces 800 MB
        req.end_headers()
        block = b" " * 65536
        for _ in range(800 << 4):
            req.wfile.write((b"10000\r\n" + block + b"\r\n") if chunked else block)

    return handler


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_response_bodies_stop_at_the_cap(tmp_path, serve, monkeypatch, chunked):
    monkeypatch.setenv("DNSFLEET_MAX_RESPONSE_MB", "2")
    server = serve(_endless(chunked))
    kc = _kubeconfig(tmp_path / "kc", {"c1": (server, None, {"token": "cap-token-abcdef12"})})
    t0 = time.monotonic()
    (c,) = scan(kubeconfig=kc, timeout=5, scrape=False)["clusters"]
    assert time.monotonic() - t0 < 5
    assert c["reason"].startswith(f"response too large from {server}/version: "), c["reason"]
    assert "2 MiB limit" in c["reason"] and c["reason"].endswith("(DNSFLEET_MAX_RESPONSE_MB)")
    m = collect_metrics(PromSource(server, timeout=5), "c1", node_names=["n1"])
    assert "answer too large" in m["note"] and "DNSFLEET_MAX_RESPONSE_MB" in m["note"], m["note"]


def test_an_exec_plugin_with_endless_output_is_killed_at_the_cap(tmp_path, serve, monkeypatch):
    monkeypatch.setenv("DNSFLEET_EXEC_MAX_OUTPUT_KB", "64")
    pidfile = tmp_path / "pid"
    plugin = shell_script(tmp_path / "plug", f"echo $$ > {pidfile}\nexec yes dnsfleet\n")
    server = serve(lambda req: answer(req, 401, b"{}"))
    kc = _kubeconfig(tmp_path / "kc", {"c1": (server, None, exec_user(plugin))})
    t0 = time.monotonic()
    (c,) = scan(kubeconfig=kc, timeout=5, scrape=False)["clusters"]
    assert time.monotonic() - t0 < 3  # not the 30 s exec timeout: the cap stops it
    assert c["reason"] == (
        "kubeconfig: credential plugin 'plug' printed more than 64 KiB (DNSFLEET_EXEC_MAX_OUTPUT_KB; killed)"
    )
    pid = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the plugin is still running")


def _bomb(unpacked_mib: int) -> bytes:
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip framing
    zeros = b"\0" * (1 << 20)
    return b"".join([*(comp.compress(zeros) for _ in range(unpacked_mib)), comp.flush()])


def test_a_gzip_bomb_snapshot_stops_at_the_cap_in_bounded_memory(tmp_path):
    """The issue's 570 KB upload that inflates to 500 MiB: rejected at the 128 MiB default cap, in a
    fresh process whose peak RSS stays far below what inflating it cost (2.2 GB on the dashboard)."""
    bomb = tmp_path / "bomb.json.gz"
    bomb.write_bytes(_bomb(500))
    assert bomb.stat().st_size < 600_000
    # VmHWM is this process image's own peak; ru_maxrss would also keep the high-water mark of the
    # image exec replaced (a fork of a big pytest process reads as big as it).
    code = (
        "import re\n"
        "from dnsfleet.snapshot import SnapshotError, load\n"
        "try:\n"
        f"    load({str(bomb)!r})\n"
        "except SnapshotError as e:\n"
        "    print(e)\n"
        "status = open('/proc/self/status').read()\n"
        "print(re.search(r'VmHWM:\\s+(\\d+) kB', status).group(1))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("DNSFLEET_SNAPSHOT_MAX_MB", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    message, peak_kb = out.stdout.splitlines()
    assert message == "bomb.json.gz: larger than the 128 MiB limit once unpacked (DNSFLEET_SNAPSHOT_MAX_MB)"
    assert int(peak_kb) < 450 * 1024, f"peak RSS {int(peak_kb) >> 10} MB"


def test_the_snapshot_cap_is_configurable(monkeypatch):
    data = gzip.compress(b"\0" * (3 << 20))
    monkeypatch.setenv("DNSFLEET_SNAPSHOT_MAX_MB", "2")
    with pytest.raises(SnapshotError, match=r"^up.json.gz: larger than the 2 MiB limit once unpacked"):
        loads(data, name="up.json.gz")
    monkeypatch.setenv("DNSFLEET_SNAPSHOT_MAX_MB", "4")
    with pytest.raises(SnapshotError, match="not valid JSON"):  # under the cap: read, then refused
        loads(data, name="up.json.gz")


def test_limits_read_the_environment_and_fall_back_on_nonsense(monkeypatch):
    monkeypatch.setenv("DNSFLEET_MAX_RESPONSE_MB", "0.5")
    monkeypatch.setenv("DNSFLEET_EXEC_MAX_OUTPUT_KB", "8")
    assert B.max_response_bytes() == 512 * 1024 and B.max_exec_output_bytes() == 8192
    monkeypatch.setenv("DNSFLEET_MAX_RESPONSE_MB", "lots")
    monkeypatch.setenv("DNSFLEET_EXEC_MAX_OUTPUT_KB", "-1")
    assert B.max_response_bytes() == 64 << 20 and B.max_exec_output_bytes() == 1 << 20


# -- item 14: /version errors, a context without its user entry ---------------------------------------------


@pytest.mark.parametrize(
    ("status", "ctype", "body", "want"),
    [
        (500, "application/json", b'{"kind":"Status","message":"etcdserver: leader changed"}', "HTTP 500: "),
        (
            502,
            "text/html",
            b"<html>\n<body><h1>502 Bad Gateway</h1></body>\n</html>\n",
            "HTTP 502 Bad Gateway",
        ),
        (503, "text/plain", b"upstream connect error\n", "HTTP 503: "),
    ],
    ids=["500-json", "502-html", "503-text"],
)
def test_an_error_status_on_version_is_named_not_an_internal_error(
    tmp_path, serve, status, ctype, body, want
):
    server = serve(lambda req: answer(req, status, body, ctype))
    kc = _kubeconfig(tmp_path / "kc", {"c1": (server, None, {"token": "version-token-abcdef12"})})
    (c,) = scan(kubeconfig=kc, timeout=0.5, scrape=False)["clusters"]
    reason = c["reason"]
    assert c["status"] == "failed" and "internal error" not in reason, reason
    assert reason.startswith(want) and reason.endswith(f"on {server}/version"), reason
    if ctype == "text/html":
        assert "an HTML page, not the API server" in reason and "<" not in reason
    else:
        assert "gave up after" in reason  # 5xx on a read is retried first


@pytest.mark.fleet
def test_a_context_whose_user_entry_is_missing_fails_instead_of_going_anonymous(fleet, tmp_path):
    rc = fleet.clusters["aks-legacy"]
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": rc.server, "certificate-authority": str(rc.ca)}}],
        "users": [{"name": "someone-else", "user": {"token": rc.tokens["admin"]}}],
        "contexts": [{"name": "ghostly", "context": {"cluster": "c", "user": "ghost"}}],
    }
    kc = tmp_path / "kc"
    kc.write_text(yaml.safe_dump(doc))
    want = (
        "kubeconfig: context 'ghostly' refers to user 'ghost', which is not defined in the kubeconfig "
        "(not connecting without its credentials)"
    )
    (c,) = scan(kubeconfig=kc, contexts=["ghostly"], timeout=3, scrape=False)["clusters"]
    assert c["status"] == "failed" and c["reason"] == want  # was: scanned as system:anonymous
    with pytest.raises(KubeError) as err:
        Kube.from_kubeconfig(kc, "ghostly", timeout=3)
    assert str(err.value) == f"ghostly: {want}"


# -- item 7 (Prometheus): credentials never in a shown URL ------------------------------------------------------


def test_prometheus_url_credentials_become_basic_auth_and_are_never_shown(serve):
    seen: list[str] = []

    def handler(req: BaseHTTPRequestHandler) -> None:
        seen.append(req.headers.get("Authorization") or "")
        echo_handler(req)

    server = serve(handler)
    src = PromSource(server.replace("http://", "http://ops:s3cret-pr0m-pass@"), timeout=2)
    assert src.url == server and "s3cret" not in repr(src)
    m = collect_metrics(src, "c1", node_names=["n1"])
    assert seen and seen[0] == "Basic " + base64.b64encode(b"ops:s3cret-pr0m-pass").decode()
    text = json.dumps(m)
    assert "Prometheus query failed: upstream got Basic ***" in m["note"], m["note"]
    assert "s3cret" not in text and base64.b64encode(b"ops:s3cret-pr0m-pass").decode() not in text
    with pytest.raises(ValueError) as err:
        PromSource("prom:s3cret-pr0m-pass@host")  # no scheme: refused without quoting the password
    assert "s3cret" not in str(err.value)


def test_prometheus_credentials_from_files_or_environment(tmp_path):
    (tmp_path / "tok").write_text("prom-token-abc\n")
    (tmp_path / "pw").write_text("prom-pw-123\n")
    assert credentials(str(tmp_path / "tok"), env={}) == {
        "token": "prom-token-abc",
        "username": None,
        "password": None,
    }
    env = {"DNSFLEET_PROMETHEUS_USER": "ops", "DNSFLEET_PROMETHEUS_PASSWORD_FILE": str(tmp_path / "pw")}
    assert credentials(env=env) == {"token": None, "username": "ops", "password": "prom-pw-123"}
    assert credentials(env={"DNSFLEET_PROMETHEUS_TOKEN": " t0ken "})["token"] == "t0ken"
    for kw, msg in [
        ({"token_file": str(tmp_path / "nope")}, "cannot read Prometheus token file"),
        ({"password_file": str(tmp_path / "pw")}, "needs a user"),
        ({"token_file": str(tmp_path / "tok"), "user": "ops"}, "not both"),
    ]:
        with pytest.raises(ValueError, match=msg):
            credentials(**kw, env={})
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ValueError, match="is empty"):
        credentials(str(tmp_path / "empty"), env={})


def test_the_environments_prometheus_credentials_go_only_to_the_operators_url():
    env = {
        "DNSFLEET_PROMETHEUS": "http://ops:pw-9f8e7d@prom.monitoring:9090",
        "DNSFLEET_PROMETHEUS_TOKEN": "",
    }
    assert operator_credentials("http://prom.monitoring:9090/", env) == {
        "username": "ops",
        "password": "pw-9f8e7d",
    }
    assert operator_credentials("http://evil.example:9090", env) == {}  # a URL a visitor typed
    assert operator_credentials("https://prom.monitoring:9090", env) == {}
    env["DNSFLEET_PROMETHEUS_TOKEN"] = "tok-1234abcd"
    assert operator_credentials("http://prom.monitoring:9090", env) == {"token": "tok-1234abcd"}


def _empty_cluster(seen: list[str]) -> Handler:
    """An API server with nothing in it (and, under /api/v1/query, a Prometheus with no series) that
    records the Authorization header of every Prometheus query."""

    def handler(req: BaseHTTPRequestHandler) -> None:
        if req.path.startswith("/api/v1/query"):
            seen.append(req.headers.get("Authorization") or "")
            return answer(req, 200, b'{"status":"success","data":{"resultType":"vector","result":[]}}')
        if req.path == "/version":
            return answer(req, 200, b'{"gitVersion":"v1.34.4"}')
        if req.path.split("?")[0].rstrip("/").rsplit("/", 1)[-1] in ("kube-dns", "coredns", "default"):
            return answer(req, 404, b'{"kind":"Status","code":404,"message":"not found"}')
        if "/configmaps/" in req.path:
            return answer(req, 404, b'{"kind":"Status","code":404,"message":"not found"}')
        return answer(req, 200, b'{"kind":"List","metadata":{},"items":[]}')

    return handler


def test_scan_cli_sends_prometheus_basic_auth_from_a_password_file(tmp_path, serve):
    seen: list[str] = []
    server = serve(_empty_cluster(seen))
    (tmp_path / "pw").write_text("cli-prom-pw-5e4d3c\n")  # written with echo: trimmed
    kc = _kubeconfig(tmp_path / "kc", {"c1": (server, None, {"token": "empty-cluster-token-1"})})
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    prom = ["--prometheus", server, "--prometheus-user", "ops", "--prometheus-password-file"]
    r = _cli(
        ["scan", "--kubeconfig", str(kc), *prom, str(tmp_path / "pw"), "--timeout", "2", "-o", "json"], env
    )
    assert r.returncode == 0, r.stderr
    (row,) = json.loads(r.stdout)
    assert row["status"] == "ok", row
    assert seen and set(seen) == {"Basic " + base64.b64encode(b"ops:cli-prom-pw-5e4d3c").decode()}
    assert "cli-prom-pw" not in r.stdout + r.stderr
    bad = _cli(["scan", "--kubeconfig", str(kc), "--prometheus-user", "ops"], env)
    assert bad.returncode == 2 and "--prometheus-user needs --prometheus" in bad.stderr


def test_no_socket_is_left_to_the_watchdog_after_requests(serve):
    """The deadline machinery must not shut down a connection that went back to the pool: many quick
    requests on one kept-alive connection all succeed."""
    server = serve(lambda req: answer(req, 200, b'{"gitVersion":"v1"}'))
    from kubernetes import client

    cfg = client.Configuration()
    cfg.host = server
    api = K.Api(client.ApiClient(cfg), 0.3)
    for _ in range(20):
        assert api.get("/version") == {"gitVersion": "v1"}
    time.sleep(0.5)  # every deadline has passed; the pooled connection must still work
    assert api.get("/version") == {"gitVersion": "v1"}
