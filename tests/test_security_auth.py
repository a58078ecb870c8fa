"""Security round two (issue 15), the identity and visitor items: the auth proxy's shared secret and
repeated headers (2), the impersonated identity's filters (3), DNS rebinding against a real running
dashboard (5), writes only for a signed-in user or an explicit single-user dashboard (6), and no
tracebacks or crashes for visitors (13). Rows in docs/reliability.md, "Identities and visitors"."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator

import pytest

from dnsfleet.authz import (
    AuthSettings,
    Identity,
    IdentityRefused,
    decide,
    host_allowed,
    identity_from_claims,
    identity_from_headers,
    settings_from_secrets,
)
from tests.browser.harness import ROOT, clean_env, streamlit_command

SECRET = "a-proxy-secret-of-some-length"
PROXY = {
    "dnsfleet": {
        "auth": {"mode": "proxy-header", "proxy_secret_header": "X-Proxy-Secret", "proxy_secret": SECRET}
    }
}
ON = {"DNSFLEET_ALLOW_WRITES": "1"}


# -- item 2: proxy-header mode ---------------------------------------------------------------------------


def test_proxy_mode_without_a_shared_secret_is_refused():
    cfg = settings_from_secrets({"dnsfleet": {"auth": {"mode": "proxy-header"}}})
    assert cfg.problem and "needs proxy_secret_header and proxy_secret" in cfg.problem
    # the reproduction from the issue: eve names herself and system:masters, no secret configured
    eve = [("X-Forwarded-User", "eve"), ("X-Forwarded-Groups", "dev,system:masters")]
    assert identity_from_headers(eve, cfg) is None
    d = decide(None, cfg, bind_address="0.0.0.0", environ=ON)
    assert not d.may_write and "needs proxy_secret_header" in d.reason
    short = settings_from_secrets(
        {"dnsfleet": {"auth": {**PROXY["dnsfleet"]["auth"], "proxy_secret": "abc"}}}
    )
    assert short.problem and "shorter than 16" in short.problem


def test_proxy_mode_without_a_secret_refuses_to_start(tmp_path):
    (tmp_path / ".streamlit").mkdir()
    (tmp_path / ".streamlit" / "secrets.toml").write_text('[dnsfleet.auth]\nmode = "proxy-header"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "dashboard.serve", "--server.port", "1"],
        cwd=tmp_path,
        env=clean_env(PYTHONPATH=str(ROOT), HOME=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith('dnsfleet: not starting: [dnsfleet.auth] mode = "proxy-header" needs')
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("repeated", ["X-Forwarded-User", "x-forwarded-groups", "X-Proxy-Secret"])
def test_a_repeated_identity_or_secret_header_is_refused(repeated):
    cfg = settings_from_secrets(PROXY)
    base = [("X-Forwarded-User", "alice"), ("X-Forwarded-Groups", "sre"), ("X-Proxy-Secret", SECRET)]
    assert identity_from_headers(base, cfg) == Identity("alice", ("sre",), "proxy-header")
    # a proxy that appends its header after the client's: the first value used to win
    extra = {"x-forwarded-user": "eve", "x-forwarded-groups": "system:masters", "x-proxy-secret": SECRET}
    client_first = [(repeated, extra[repeated.lower()]), *base]
    with pytest.raises(IdentityRefused, match="appears more than once"):
        identity_from_headers(client_first, cfg)


def test_the_page_refuses_a_repeated_user_header(monkeypatch, tmp_path):
    """Through dashboard/auth.py: st.context.headers keeps every value; the page says why it is read-only."""
    import dashboard.auth as A

    for k in ("DNSFLEET_KUBECONFIG", "KUBECONFIG", "DNSFLEET_SNAPSHOT", "DNSFLEET_SINGLE_USER"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("DNSFLEET_ALLOW_WRITES", "1")
    monkeypatch.setenv("DNSFLEET_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    hdrs = [("X-Forwarded-User", "eve"), ("X-Forwarded-User", "alice"), ("X-Proxy-Secret", SECRET)]
    monkeypatch.setattr(A, "_headers", lambda: hdrs)
    at = _mitigations(PROXY)
    assert not at.warning, [w.value for w in at.warning]
    assert "sign-in refused: header X-Forwarded-User appears more than once" in at.info[0].value
    assert not any("Signed in as" in c.value for c in at.caption)


def test_dashboard_reads_every_value_of_a_repeated_header():
    """``_headers`` asks ``st.context.headers.get_all``: both values reach the rules (a dict kept one)."""
    from streamlit.runtime.context import StreamlitHeaders

    import dashboard.auth as A

    class Ctx:
        headers = StreamlitHeaders([("X-Forwarded-User", "eve"), ("x-forwarded-user", "alice")])

    real = A.st.context
    try:
        A.st.context = Ctx()  # type: ignore[misc]
        assert [(k.lower(), v) for k, v in A._headers()] == [
            ("x-forwarded-user", "eve"),
            ("x-forwarded-user", "alice"),
        ]
    finally:
        A.st.context = real  # type: ignore[misc]


# -- item 3: the impersonated identity is filtered -------------------------------------------------------


def test_system_users_are_refused_and_system_groups_dropped():
    cfg = settings_from_secrets(PROXY)
    hdrs = {"X-Forwarded-Groups": "dev, system:masters,SYSTEM:nodes", "X-Proxy-Secret": SECRET}
    who = identity_from_headers({**hdrs, "X-Forwarded-User": "eve"}, cfg)
    assert who == Identity("eve", ("dev",), "proxy-header")
    for user in ("system:admin", "system:serviceaccount:kube-system:default", "System:kube-proxy"):
        with pytest.raises(IdentityRefused, match="reserved for Kubernetes"):
            identity_from_headers({**hdrs, "X-Forwarded-User": user}, cfg)
    oidc = AuthSettings(mode="oidc")
    with pytest.raises(IdentityRefused, match="reserved"):
        identity_from_claims({"is_logged_in": True, "sub": "system:admin"}, oidc)
    claims = {"is_logged_in": True, "sub": "u-1", "groups": ["system:masters", "sre"]}
    assert identity_from_claims(claims, oidc) == Identity("u-1", ("sre",), "oidc")


def test_allowed_groups_and_prefixes_apply_before_impersonation():
    auth = {**PROXY["dnsfleet"]["auth"], "allowed_groups": ["sre", "oncall"], "groups_prefix": "idp:"}
    cfg = settings_from_secrets({"dnsfleet": {"auth": {**auth, "user_prefix": "idp:"}}})
    hdrs = {"X-Forwarded-User": "bob", "X-Forwarded-Groups": "dev,sre,cluster-admins,oncall,sre"}
    who = identity_from_headers({**hdrs, "X-Proxy-Secret": SECRET}, cfg)
    assert who == Identity("idp:bob", ("idp:sre", "idp:oncall"), "proxy-header")
    # writers name groups as Kubernetes sees them
    writers = settings_from_secrets({"dnsfleet": {"auth": {**auth, "writers": ["group:idp:sre"]}}})
    assert decide(Identity("bob", ("idp:sre",)), writers, bind_address="0.0.0.0", environ=ON).may_write
    bad = settings_from_secrets({"dnsfleet": {"auth": {**auth, "groups_prefix": "system:"}}})
    assert bad.problem == "[dnsfleet.auth] groups_prefix must not start with 'system:'"


def test_unverified_oidc_email_is_refused():
    cfg = AuthSettings(mode="oidc")
    for verified in (False, None, "true", "yes"):
        claims = {"is_logged_in": True, "email": "mallory@example.com", "groups": ["sre"]}
        if verified is not None:
            claims["email_verified"] = verified
        with pytest.raises(IdentityRefused, match=r"has not verified the email 'mallory@example\.com'"):
            identity_from_claims(claims, cfg)
    ok = {"is_logged_in": True, "email": "alice@example.com", "email_verified": True}
    assert identity_from_claims(ok, cfg) == Identity("alice@example.com", (), "oidc")
    # a sub-named user needs no email check; the operator can lift the check for an IdP without the claim
    assert identity_from_claims({"is_logged_in": True, "sub": "u-9"}, cfg) == Identity("u-9", (), "oidc")
    lax = settings_from_secrets({"dnsfleet": {"auth": {"mode": "oidc", "require_verified_email": False}}})
    assert identity_from_claims({"is_logged_in": True, "email": "a@b.c"}, lax) == Identity(
        "a@b.c", (), "oidc"
    )


# -- item 6: loopback is not one person -------------------------------------------------------------------


def test_loopback_without_single_user_mode_writes_nothing(tmp_path):
    from dnsfleet.kube import ObjectRef
    from dnsfleet.mitigate.audit import AuditLog
    from dnsfleet.mitigate.flow import Controller
    from dnsfleet.mitigate.plan import Change, Plan, Result, WritesDisabled

    d = decide(None, AuthSettings(), bind_address="127.0.0.1", port=8501, environ=ON)
    assert not d.may_write
    assert "this dashboard on 127.0.0.1:8501 has no sign-in" in d.reason
    assert "DNSFLEET_SINGLE_USER=1" in d.reason
    # the library's write guard takes that decision, whatever a page's button does
    log = AuditLog(tmp_path / "audit.jsonl")
    ref = ObjectRef("Deployment", "n", "w")
    plan = Plan(cluster="c1", mitigation="resolver-options")
    plan.changes.append(Change(ref, "json-patch", "why", {}, {}, []))
    ctrl = Controller("c1", kubeconfig=tmp_path / "none", decision=d, audit=log)
    with pytest.raises(WritesDisabled, match="writes need a signed-in user"):
        ctrl.apply(plan, [Result(ref, "ok", "dry run passed")], "c1")
    assert log.records() == []
    single = decide(
        None, AuthSettings(), bind_address="::1", port=9000, environ={**ON, "DNSFLEET_SINGLE_USER": "1"}
    )
    assert single.may_write and single.reason.startswith("single-user dashboard on [::1]:9000")
    # single-user mode never opens a dashboard served beyond loopback
    wide = decide(
        None, AuthSettings(), bind_address="0.0.0.0", port=80, environ={**ON, "DNSFLEET_SINGLE_USER": "1"}
    )
    assert not wide.may_write and "served on all interfaces (0.0.0.0:80)" in wide.reason


def test_page_banner_states_the_real_bind_address_and_needs_single_user_mode(monkeypatch, tmp_path):
    import dashboard.auth as A

    for k in ("DNSFLEET_KUBECONFIG", "KUBECONFIG", "DNSFLEET_SNAPSHOT", "DNSFLEET_SINGLE_USER"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("DNSFLEET_ALLOW_WRITES", "1")
    monkeypatch.setenv("DNSFLEET_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    monkeypatch.setattr(A, "bind_address", lambda: "127.0.0.2")
    monkeypatch.setattr(A, "bind_port", lambda: 8611)
    at = _mitigations()
    assert not at.warning
    assert "this dashboard on 127.0.0.2:8611 has no sign-in" in at.info[0].value
    monkeypatch.setenv("DNSFLEET_SINGLE_USER", "1")
    at = _mitigations()
    assert "single-user dashboard on 127.0.0.2:8611" in at.warning[0].value


# -- item 5: DNS rebinding, against a real running dashboard ---------------------------------------------


def test_host_allowed_rules():
    env: dict[str, str] = {}
    assert host_allowed("localhost:8501", "127.0.0.1", env)
    assert host_allowed("127.0.0.1:8501", "127.0.0.1", env)
    assert host_allowed("[::1]:8501", "127.0.0.1", env)
    for bad in ("evil.example", "evil.example:8501", "127.0.0.1.evil.example", "", None, "a b", "::1"):
        assert not host_allowed(bad, "127.0.0.1", env), bad
    assert not host_allowed("10.0.0.5:8501", "127.0.0.1", env)
    assert host_allowed("10.0.0.5:8501", "10.0.0.5", env)
    assert host_allowed("10.0.0.5:8501", "0.0.0.0", env)  # an IP in the URL is never a rebound name
    assert not host_allowed("dash.corp", "0.0.0.0", env)
    named = {"DNSFLEET_ALLOWED_HOSTS": "dash.corp, *.tools.corp"}
    assert host_allowed("dash.corp:443", "0.0.0.0", named)
    assert host_allowed("dns.tools.corp", "0.0.0.0", named)
    assert not host_allowed("tools.corp.evil.example", "0.0.0.0", named)


def test_the_page_refuses_writes_to_a_session_under_a_foreign_host(page_env):
    """Without dashboard.serve's check (a bare ``streamlit run``), the page itself refuses writes to a
    session whose WebSocket came with a foreign Host, even in single-user mode."""
    import dashboard.auth as A

    page_env.setenv("DNSFLEET_ALLOW_WRITES", "1")
    page_env.setenv("DNSFLEET_SINGLE_USER", "1")
    page_env.setattr(A, "_headers", lambda: [("Host", "rebound.evil.example:8501")])
    at = _mitigations()
    assert not at.warning
    assert "host name this dashboard does not serve" in at.info[0].value
    page_env.setattr(A, "_headers", lambda: [("Host", "localhost:8501")])
    assert "single-user dashboard" in _mitigations().warning[0].value


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[int]:
    """``python -m dashboard.serve`` (as ``make run``) on a free 127.0.0.1 port, the demo fleet."""
    port = _free_port()
    log = tmp_path_factory.mktemp("served") / "streamlit.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            streamlit_command(port), cwd=ROOT, env=clean_env(), stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(log.read_text()[-2000:])
            try:
                status, _ = _http(port, "/_stcore/health", f"127.0.0.1:{port}")
                if status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.3)
        else:
            raise RuntimeError(f"dashboard did not start:\n{log.read_text()[-2000:]}")
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def _http(port: int, path: str, host: str | None, extra: str = "") -> tuple[int, bytes]:
    """One raw HTTP/1.1 request with exactly this Host header (None: none), its status and body."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        head = f"GET {path} HTTP/1.1\r\n" + (f"Host: {host}\r\n" if host is not None else "")
        close = "" if "Connection:" in extra else "Connection: close\r\n"
        s.sendall((head + extra + close + "\r\n").encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
            if b"\r\n\r\n" in data and b"101 Switching" in data.split(b"\r\n", 1)[0]:
                break
    status = int(data.split(b" ", 2)[1])
    return status, data.partition(b"\r\n\r\n")[2]


WS = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
WS += "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: streamlit\r\n"


def test_dns_rebinding_host_is_refused_by_the_running_dashboard(served):
    port = served
    status, body = _http(port, "/_stcore/health", "evil.example")
    assert status == 403 and b"not served here" in body
    assert _http(port, "/_stcore/health", f"evil.example:{port}")[0] == 403
    assert _http(port, "/_stcore/health", None)[0] in (400, 403)  # no Host at all
    assert _http(port, "/", "evil.example")[0] == 403
    for ok in (f"localhost:{port}", f"127.0.0.1:{port}", "localhost"):
        assert _http(port, "/_stcore/health", ok) == (200, b"ok"), ok
    # the WebSocket a rebound page would open: refused before the upgrade; localhost upgrades
    ws = f"{WS}Origin: http://evil.example:{port}\r\n"
    assert _http(port, "/_stcore/stream", f"evil.example:{port}", ws)[0] == 403
    local = f"{WS}Origin: http://localhost:{port}\r\n"
    assert _http(port, "/_stcore/stream", f"localhost:{port}", local)[0] == 101


def test_served_config_hides_error_details_from_visitors():
    """``client.showErrorDetails = "none"`` in the served config: a visitor sees a generic message,
    never the exception's text or traceback."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    cfg = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert cfg["client"]["showErrorDetails"] == "none"
    script = "raise RuntimeError('token=abc123 in /home/op/.kube/config')"
    before = st.get_option("client.showErrorDetails")
    try:
        st.set_option("client.showErrorDetails", cfg["client"]["showErrorDetails"])
        at = AppTest.from_string(script).run()
    finally:
        st.set_option("client.showErrorDetails", before)
    shown = " ".join(f"{e.message} {e.stack_trace}" for e in at.exception)
    assert at.exception and "abc123" not in shown and "RuntimeError" not in shown and ".kube" not in shown


def _mitigations(secrets: dict | None = None):
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=120)
    for k, v in (secrets or {}).items():
        at.secrets[k] = v
    at.run()
    at.switch_page("../pages/mitigations.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


# -- item 13: visitors never get a traceback ------------------------------------------------------------


@pytest.fixture
def page_env(monkeypatch, tmp_path):
    for k in ("DNSFLEET_KUBECONFIG", "KUBECONFIG", "DNSFLEET_SNAPSHOT", "DNSFLEET_SINGLE_USER"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.delenv("DNSFLEET_ALLOW_WRITES", raising=False)
    monkeypatch.setenv("DNSFLEET_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    return monkeypatch


def test_binary_file_as_kubeconfig_is_a_one_line_error(page_env, tmp_path):
    from streamlit.testing.v1 import AppTest

    from dnsfleet.kube import ConfigError
    from dnsfleet.kube.config import resolve_targets

    binary = tmp_path / "kubeconfig.png"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe" + bytes(range(256)))
    with pytest.raises(
        ConfigError, match=r"kubeconfig .*kubeconfig\.png is not a text file \(not UTF-8 at byte 0\)"
    ):
        resolve_targets(binary, None)
    page_env.setenv("DNSFLEET_KUBECONFIG", str(binary))
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]
    shown = " ".join(str(e.value) for e in [*at.error, *at.sidebar.error, *at.warning, *at.sidebar.warning])
    assert "is not a text file (not UTF-8 at byte 0)" in shown


def _record(**over) -> dict:
    rec = {
        "time": "2026-01-01T00:00:00.000000Z",
        "identity": "alice",
        "cluster": "c1",
        "object": {"kind": "Deployment", "namespace": "shop", "name": "checkout"},
        "mitigation": "resolver-options",
        "action": "json-patch",
        "patch": [],
        "previous": None,
        "applied": {"options": [{"name": "single-request-reopen"}]},
        "result": "ok",
        "message": "applied",
        "batch": "b1",
    }
    rec.update(over)
    return rec


def test_audit_lines_dnsfleet_never_wrote_do_not_break_the_mitigations_page(page_env, tmp_path):
    import json

    from dnsfleet.mitigate.audit import AuditLog

    path = tmp_path / "audit.jsonl"
    lines = [
        json.dumps(_record(object={})),  # the line: no kind/namespace/name
        json.dumps(_record(object={"kind": "Deployment"})),
        json.dumps(_record(object={"kind": "Secret", "namespace": "shop", "name": "db"})),
        json.dumps(_record(object={"kind": "Deployment", "namespace": "../x", "name": "a"})),
        json.dumps(_record(object=["Deployment", "shop", "checkout"])),
        json.dumps(_record(cluster=None)),
        "[1, 2, 3]",
        "not json at all",
        json.dumps(_record(identity="bob", message="the one good line")),
    ]
    path.write_text("\n".join(lines) + "\n\xff\xfe broken bytes\n", encoding="latin-1")
    log = AuditLog(path)
    recs = log.records()
    assert [r["identity"] for r in recs] == ["bob"] and log.skipped == 9
    at = _mitigations()
    (table,) = [d.value for d in at.dataframe if "identity" in d.value.columns]
    assert list(table["object"]) == ["Deployment shop/checkout"] and list(table["identity"]) == ["bob"]


def test_undo_acts_only_on_records_dnsfleet_could_have_written(tmp_path):
    import json

    from dnsfleet.kube import ObjectRef
    from dnsfleet.mitigate.audit import RESOLVER_OPTIONS_KINDS, AuditLog
    from dnsfleet.mitigate.errors import MitigationError
    from dnsfleet.mitigate.flow import Controller
    from dnsfleet.mitigate.resolver_options import TEMPLATE_SPEC

    assert set(TEMPLATE_SPEC) == RESOLVER_OPTIONS_KINDS
    forged = {
        # a ConfigMap never had resolver options from dnsfleet: undo would patch it
        "ConfigMap kube-system/coredns": _record(
            object={"kind": "ConfigMap", "namespace": "kube-system", "name": "coredns"}
        ),
        # "previous" that is no dnsConfig: undo would write it into the pod template
        "Deployment shop/api": _record(
            object={"kind": "Deployment", "namespace": "shop", "name": "api"},
            previous={"nameservers": ["203.0.113.9"], "containers": [{"image": "evil"}]},
        ),
        "Deployment shop/web": _record(
            object={"kind": "Deployment", "namespace": "shop", "name": "web"},
            previous={"options": [{"name": "ndots", "value": 5}]},
        ),
    }
    good = _record()
    path = tmp_path / "audit.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [*forged.values(), good]))
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c1\n"
        "clusters: [{name: c1, cluster: {server: 'https://127.0.0.1:9'}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c1, context: {cluster: c1, user: u}}]\n"
    )
    ctrl = Controller("c1", kubeconfig=kubeconfig, audit=AuditLog(path))
    assert list(ctrl.undoable()) == ["shop/Deployment/checkout"]
    for label in ("Deployment shop/api", "Deployment shop/web"):
        kind, rest = label.split(" ")
        ref = ObjectRef(kind, *rest.split("/"))
        with pytest.raises(MitigationError, match="the audit record is not one dnsfleet wrote"):
            ctrl.plan_undo_resolver_options([ref])


def test_non_latin1_user_name_goes_out_as_utf8():
    from dnsfleet.kube.config import header_value

    name = "Łukasz 山田"
    wire = header_value(name).encode("latin-1")  # what http.client puts on the wire
    assert wire == name.encode("utf-8")
    # the proxy's UTF-8 header, as the server hands it to the app (Latin-1 decoded), reads back as sent
    cfg = settings_from_secrets(PROXY)
    raw = name.encode("utf-8").decode("latin-1")
    who = identity_from_headers({"X-Forwarded-User": raw, "X-Proxy-Secret": SECRET}, cfg)
    assert who is not None and who.user == name


@pytest.mark.fleet
def test_non_latin1_user_behind_the_proxy_plans_as_that_user(fleet, page_env):
    """The real API server sees the UTF-8 name (SelfSubjectReview), and the page's Plan, made as that
    user through impersonation, answers with RBAC instead of a UnicodeEncodeError."""
    from streamlit.testing.v1 import AppTest

    import dashboard.auth as A
    from dnsfleet.kube import Kube

    name = "Łukasz 山田"
    who = Kube.from_kubeconfig(
        fleet.kubeconfig, "aks-legacy", impersonate_user=name, impersonate_groups=["zespół"]
    )
    try:
        assert who.identity() == name
    finally:
        who.close()
    page_env.setenv("DNSFLEET_ALLOW_WRITES", "1")
    page_env.setenv("DNSFLEET_KUBECONFIG", str(fleet.kubeconfig))
    raw = name.encode("utf-8").decode("latin-1")  # as the server hands the proxy's header to the app
    page_env.setattr(A, "_headers", lambda: [("X-Forwarded-User", raw), ("X-Proxy-Secret", SECRET)])
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=120)
    for k, v in PROXY.items():
        at.secrets[k] = v
    at.run()
    at.checkbox(key="src.all_contexts").uncheck().run()
    at.multiselect(key="src.contexts").set_value(["aks-legacy"]).run()
    next(b for b in at.sidebar.button if b.label == "Scan").click().run()
    at.switch_page("../pages/mitigations.py").run()
    at.multiselect(key="mit.workloads").set_value(["shop/Deployment/checkout (glibc)"]).run()
    next(b for b in at.button if b.key == "mit.plan_btn").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]  # was: "Plan: 'latin-1' codec can't encode ..."
    assert f"signed in as {name}" in at.warning[0].value
    # the server answered as that user: the fleet's RBAC gives "Łukasz 山田" no rights at all
    shown = " ".join(str(e.value) for e in [*at.markdown, *at.caption])
    assert f'User "{name}" cannot get' in shown, shown[-2000:]
