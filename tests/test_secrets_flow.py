"""Secrets: one full run (CLI scan with tokens, a client key and a Prometheus bearer token, snapshot, show,
reports, mitigation apply + undo with its audit log, a failing context, every dashboard page via
AppTest with a plan and a dry run) and then a grep of EVERY output for every secret it had access to:
the fleet's bearer tokens, the client key, the Prometheus token, the fake env value
``hunter2-do-not-leak`` and its base64 form (the fleet also holds it in a Secret).

Every token ends in a newline, as ``echo $TOKEN > file`` and ``token: |`` leave it (a ``tokenFile`` for
the first fleet user, inline for the others, and the Prometheus token file): the Python client used to
send ``Bearer <token>\n`` and print the token in the ValueError. One more context points at a local
server that echoes the Authorization header in its 5xx bodies (a broken proxy), so the scan, the
mitigate CLI and the dashboard all receive the credential back from a server.

What the collector requests (no Secrets, no ConfigMaps but the DNS ones, no per-pod reads) is checked
against the API server's own audit log in ``test_hardening_fleet.py``.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
import yaml
from streamlit.testing.v1 import AppTest

from tests.fleet.spec import FAKE_SECRET_VALUE

pytestmark = pytest.mark.fleet

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "dashboard" / "app.py")
PAGES = ("overview", "cluster", "nodes", "coredns", "workloads", "mitigations", "reports")
PROM_TOKEN = "prom-bearer-7f3c9e1d-do-not-leak"
BAD_TOKEN = "rejected-token-5b2e8a44-do-not-leak"
ECHO_TOKEN = "echoed-token-9c3f1a07-do-not-leak"


@pytest.fixture
def echo_server() -> Iterator[str]:
    """A broken proxy on 127.0.0.1: every request gets a 5xx whose body repeats its Authorization
    header (a JSON Status message with the bare credential, or an HTML page with the header line)."""

    class H(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            auth = self.headers.get("Authorization") or ""
            if self.path.startswith("/version") or "/api/v1/" in self.path:
                msg = f"upstream rejected {auth.split(' ', 1)[-1]} (Authorization: {auth})"
                status, ctype = 500, "application/json"
                body = json.dumps({"kind": "Status", "code": 500, "message": msg}).encode()
            else:
                status, ctype = 502, "text/html"
                body = f"<html><pre>Authorization: {auth}</pre></html>\n".encode()
            with contextlib.suppress(OSError):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        do_POST = do_PATCH = do_GET

        def log_message(self, *args: object) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def _client_key(tmp: Path) -> tuple[str, str]:
    key, cert = tmp / "client.key", tmp / "client.crt"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=dnsfleet-secrets-test",
            "-days",
            "1",
        ],
        check=True,
        capture_output=True,
    )
    return key.read_text(), cert.read_text()


def _secrets(fleet, key_pem: str) -> list[str]:
    body = "".join(ln for ln in key_pem.splitlines() if not ln.startswith("-----"))
    out = [t for rc in fleet.clusters.values() for t in rc.tokens.values()]
    out += [
        PROM_TOKEN,
        BAD_TOKEN,
        ECHO_TOKEN,
        FAKE_SECRET_VALUE,
        base64.b64encode(FAKE_SECRET_VALUE.encode()).decode(),
    ]
    out += [base64.b64encode(key_pem.encode()).decode()[:48], body[:48], body[-48:], body[400:448]]
    return out


def _kubeconfig(fleet, tmp: Path, key_pem: str, cert_pem: str, echo: str) -> Path:
    doc = yaml.safe_load(fleet.kubeconfig.read_text())
    for i, u in enumerate(doc["users"]):
        u["user"]["client-key-data"] = base64.b64encode(key_pem.encode()).decode()
        u["user"]["client-certificate-data"] = base64.b64encode(cert_pem.encode()).decode()
        token = u["user"].pop("token")
        if i == 0:  # written with echo: ends in a newline
            (tmp / "token-0").write_text(token + "\n")
            u["user"]["tokenFile"] = str(tmp / "token-0")
        else:  # `token: |`: the YAML value ends in a newline
            u["user"]["token"] = token + "\n"
    first = doc["clusters"][0]
    doc["clusters"].append({"name": "broken", "cluster": dict(first["cluster"])})
    doc["users"].append({"name": "broken", "user": {"token": BAD_TOKEN + "\n"}})
    doc["contexts"].append({"name": "broken", "context": {"cluster": "broken", "user": "broken"}})
    (tmp / "echo-token").write_text(ECHO_TOKEN + "\n")
    doc["clusters"].append({"name": "echo", "cluster": {"server": echo}})
    doc["users"].append({"name": "echo", "user": {"tokenFile": str(tmp / "echo-token")}})
    doc["contexts"].append({"name": "echo", "context": {"cluster": "echo", "user": "echo"}})
    path = tmp / "kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    path.chmod(0o600)
    return path


def _cli(args: list[str], env: dict[str, str], outputs: list[tuple[str, str]]) -> subprocess.CompletedProcess:
    r = subprocess.run(
        [sys.executable, "-m", "dnsfleet.cli", *args], capture_output=True, text=True, env=env, timeout=300
    )
    outputs.append((f"cli {args[:2]} stdout", r.stdout))
    outputs.append((f"cli {args[:2]} stderr", r.stderr))
    return r


def _page_text(at: AppTest) -> str:
    parts: list[str] = []
    for kind in (
        "title",
        "header",
        "subheader",
        "markdown",
        "caption",
        "code",
        "text",
        "error",
        "warning",
        "info",
        "success",
        "exception",
        "metric",
        "json",
        "toast",
    ):
        for el in getattr(at, kind, []):
            parts.append(str(getattr(el, "value", "")))
            parts.append(str(getattr(el, "label", "")))
    for df in at.dataframe:
        parts.append(df.value.to_csv())
    for w in (*at.text_input, *at.selectbox, *at.multiselect):
        parts.append(str(w.value))
    for el in at.get("download_button"):
        parts.append(str(el.proto))
    return "\n".join(parts)


def test_no_secret_reaches_any_output(fleet, tmp_path, monkeypatch, caplog, capsys, echo_server):
    key_pem, cert_pem = _client_key(tmp_path)
    kc = _kubeconfig(fleet, tmp_path, key_pem, cert_pem, echo_server)
    assert yaml.safe_load(kc.read_text())["users"][1]["user"]["token"].endswith("\n")
    (tmp_path / "prom-token").write_text(PROM_TOKEN + "\n")
    audit = tmp_path / "audit.jsonl"
    env = {**os.environ, "DNSFLEET_AUDIT_LOG": str(audit), "PYTHONPATH": str(REPO)}
    env.pop("DNSFLEET_ALLOW_WRITES", None)
    outputs: list[tuple[str, str]] = []
    end = str(int(fleet.metrics_end))
    caplog.set_level(logging.DEBUG)

    # CLI: scan (one context rejects its token), show, report
    snap = tmp_path / "fleet.json.gz"
    r = _cli(
        [
            "scan",
            "--kubeconfig",
            str(kc),
            "--all-contexts",
            "--prometheus",
            fleet.prometheus_url,
            "--prometheus-token-file",
            str(tmp_path / "prom-token"),
            "--prometheus-time",
            end,
            "--out",
            str(snap),
            "-o",
            "json",
        ],
        env,
        outputs,
    )
    assert r.returncode == 0, r.stderr
    assert "broken: failed: unauthorized" in r.stderr and '"aks-legacy"' in r.stdout
    assert "echo: failed: HTTP 500" in r.stderr  # the echoing server was reached, its echo blanked
    rows = {row["cluster"]: row for row in json.loads(r.stdout)}
    assert all(rows[c]["status"] == "ok" for c in fleet.contexts), rows  # newline tokens work
    assert _cli(["show", "--snapshot", str(snap), "-o", "table"], env, outputs).returncode == 0
    reports = tmp_path / "reports"
    assert _cli(["report", "--snapshot", str(snap), "--out", str(reports)], env, outputs).returncode == 0
    bad = _cli(["scan", "--kubeconfig", str(kc), "--context", "nope"], env, outputs)
    assert bad.returncode == 2 and "not in kubeconfig" in bad.stderr

    # CLI: mitigation apply + undo (writes to the shared fleet, undone) and a refused one
    ctx = "cilium-edge"
    common = ["--kubeconfig", str(kc), "--context", ctx, "--audit-log", str(audit)]
    wl = ["-w", "shop/Deployment/checkout"]
    ok = _cli(
        [
            "mitigate",
            "apply",
            "resolver-options",
            *common,
            *wl,
            "-o",
            "use-vc",
            "--allow-writes",
            "--confirm",
            ctx,
        ],
        env,
        outputs,
    )
    undo = _cli(
        ["mitigate", "undo", "resolver-options", *common, *wl, "--allow-writes", "--confirm", ctx],
        env,
        outputs,
    )
    assert ok.returncode == 0 and undo.returncode == 0, (ok.stderr, undo.stderr)
    refused = _cli(
        [
            "mitigate",
            "plan",
            "resolver-options",
            "--kubeconfig",
            str(kc),
            "--context",
            "broken",
            *wl,
            "-o",
            "use-vc",
        ],
        env,
        outputs,
    )
    assert refused.returncode == 2 and refused.stderr.startswith("dnsfleet mitigate:")
    echo_plan = ["mitigate", "plan", "resolver-options", "--kubeconfig", str(kc), "--context", "echo"]
    echoed = _cli([*echo_plan, *wl, "-o", "use-vc", "--dry-run", "--timeout", "2"], env, outputs)
    assert echoed.returncode in (0, 1, 2) and (echoed.stdout + echoed.stderr).strip()

    # Dashboard: live scan with Prometheus, every page, a plan with its diff and a dry run
    for k in ("DNSFLEET_SNAPSHOT", "KUBECONFIG", "DNSFLEET_ALLOW_WRITES"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("DNSFLEET_KUBECONFIG", str(kc))
    monkeypatch.setenv("DNSFLEET_PROMETHEUS", fleet.prometheus_url)
    monkeypatch.setenv("DNSFLEET_PROMETHEUS_TIME", end)
    monkeypatch.setenv("DNSFLEET_AUDIT_LOG", str(audit))
    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    next(b for b in at.sidebar.button if b.label == "Scan").click().run()
    assert not at.exception, [e.value for e in at.exception]
    texts = [_page_text(at)]
    for page in PAGES:
        at.switch_page(f"../pages/{page}.py").run()
        assert not at.exception, (page, [e.value for e in at.exception])
        texts.append(_page_text(at))
    at.switch_page("../pages/mitigations.py").run()
    at.selectbox(key="mit.cluster").set_value("aks-legacy").run()
    at.multiselect(key="mit.workloads").set_value(["shop/Deployment/checkout (glibc)"]).run()
    next(b for b in at.button if b.key == "mit.plan_btn").click().run()
    next(b for b in at.button if b.key == "mit.dry_btn").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    texts.append(_page_text(at))
    st.cache_data.clear()
    st.cache_resource.clear()
    page_text = "\n".join(texts)
    outputs.append(("dashboard pages", page_text))
    assert "aks-legacy" in page_text and "single-request-reopen" in page_text  # the grep sees real output
    assert "unauthorized" in page_text  # the broken context's reason is shown

    # every file the run wrote, and every log line and stream of this process
    outputs.append(("snapshot", gzip.decompress(snap.read_bytes()).decode()))
    for f in sorted(reports.iterdir()):
        outputs.append((f"report {f.name}", f.read_text(encoding="utf-8-sig")))
    outputs.append(("audit log", audit.read_text()))
    outputs.append(("python logs", caplog.text))
    cap = capsys.readouterr()
    outputs.append(("pytest stdout/stderr", cap.out + cap.err))
    assert len(audit.read_text().splitlines()) == 2

    secrets = _secrets(fleet, key_pem)
    leaks = [(where, s[:12] + "…") for where, text in outputs for s in secrets if s in text]
    assert leaks == [], f"secrets found in outputs: {leaks}"
    sizes: dict[str, Any] = {where: len(text) for where, text in outputs}
    assert sizes["snapshot"] > 10_000 and sizes["audit log"] > 100 and sizes["python logs"] >= 0
