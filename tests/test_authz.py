"""Who may press the buttons: ``dnsfleet.authz`` rules, the dashboard wiring (``dashboard/auth.py`` on the
Mitigations page), impersonation refused by the real API server, and per-session caches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from dnsfleet.authz import (
    WRITES_OFF,
    AuthSettings,
    Identity,
    decide,
    identity_from_claims,
    identity_from_headers,
    is_loopback,
    settings_from_secrets,
)

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")
PAGE = "../pages/mitigations.py"
ON = {"DNSFLEET_ALLOW_WRITES": "1"}
OIDC = {
    "redirect_uri": "http://localhost:8501/oauth2callback",
    "cookie_secret": "cookie-secret-for-tests",
    "client_id": "dnsfleet",
    "client_secret": "oidc-client-secret-for-tests",
    "server_metadata_url": "https://idp.example.com/.well-known/openid-configuration",
}
SECRET = "proxy-secret-for-tests-0123"
PROXY = {
    "dnsfleet": {
        "auth": {"mode": "proxy-header", "proxy_secret_header": "X-Proxy-Secret", "proxy_secret": SECRET}
    }
}
SINGLE = {**ON, "DNSFLEET_SINGLE_USER": "1"}


# -- the rules ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("", False),
        (None, False),
        ("10.0.0.5", False),
        ("dashboard.corp", False),
    ],
)
def test_loopback_detection(address, loopback):
    assert is_loopback(address) is loopback


def test_writes_off_unless_the_env_says_so_whoever_asks():
    alice = Identity("alice", ("sre",))
    for who, cfg in ((None, AuthSettings()), (alice, AuthSettings(mode="oidc"))):
        d = decide(who, cfg, bind_address="127.0.0.1", environ={})
        assert (d.may_write, d.reason) == (False, WRITES_OFF)


def test_local_single_user_writes_with_the_kubeconfig_identity():
    d = decide(None, AuthSettings(), bind_address="127.0.0.1", environ=SINGLE)
    assert d.may_write and not d.impersonate and "kubeconfig's own identity" in d.reason


@pytest.mark.parametrize("address", ["0.0.0.0", None, "10.1.2.3"])
def test_served_without_sign_in_is_read_only_whatever_the_env_says(address):
    d = decide(None, AuthSettings(), bind_address=address, environ=ON)
    assert not d.may_write
    assert d.reason.startswith("read-only: the dashboard is served on")
    assert "[dnsfleet.auth]" in d.reason


def test_sign_in_configured_requires_a_signed_in_user_even_on_loopback():
    cfg = settings_from_secrets({"dnsfleet": {"auth": {"mode": "oidc"}}, "auth": OIDC})
    assert cfg.mode == "oidc" and cfg.problem is None
    nobody = decide(None, cfg, bind_address="127.0.0.1", environ=ON)
    assert not nobody.may_write and nobody.reason.startswith("read-only until you sign in")
    alice = identity_from_claims(
        {"is_logged_in": True, "email": "alice@example.com", "email_verified": True, "groups": ["sre"]}, cfg
    )
    d = decide(alice, cfg, bind_address="0.0.0.0", environ=ON)
    assert d.may_write and d.impersonate
    assert d.identity == Identity("alice@example.com", ("sre",), "oidc")


def test_oidc_without_streamlit_auth_section_is_a_problem_not_a_login():
    cfg = settings_from_secrets({"dnsfleet": {"auth": {"mode": "oidc"}}})
    assert cfg.problem and "[auth] lacks" in cfg.problem
    d = decide(Identity("alice"), cfg, bind_address="127.0.0.1", environ=ON)
    assert not d.may_write and d.reason.startswith("read-only: OIDC sign-in is not configured")
    named = settings_from_secrets(
        {
            "dnsfleet": {"auth": {"mode": "oidc"}},
            "auth": {"redirect_uri": "x", "cookie_secret": "y", "okta": {**OIDC}},
        }
    )
    assert named.problem is None and named.provider == "okta"


def test_logged_out_claims_and_missing_user_give_no_identity():
    cfg = AuthSettings(mode="oidc")
    assert identity_from_claims({}, cfg) is None
    assert identity_from_claims({"is_logged_in": False, "email": "a@b"}, cfg) is None
    assert identity_from_claims({"is_logged_in": True}, cfg) is None
    sub = identity_from_claims({"is_logged_in": True, "sub": "u-123"}, cfg)
    assert sub is not None and sub.user == "u-123"


def test_proxy_header_identity_with_shared_secret():
    cfg = settings_from_secrets(
        {
            "dnsfleet": {
                "auth": {
                    "mode": "proxy-header",
                    "proxy_secret_header": "X-Proxy-Secret",
                    "proxy_secret": "s3cret-s3cret-s3cret",
                }
            }
        }
    )
    hdrs = {"X-Forwarded-User": "bob", "X-Forwarded-Groups": "sre, oncall"}
    assert identity_from_headers(hdrs, cfg) is None  # a client reaching the app directly
    assert identity_from_headers({**hdrs, "X-Proxy-Secret": "wrong"}, cfg) is None
    who = identity_from_headers({**hdrs, "x-proxy-secret": "s3cret-s3cret-s3cret"}, cfg)
    assert who == Identity("bob", ("sre", "oncall"), "proxy-header")
    assert "s3cret" not in repr(cfg)
    half = settings_from_secrets({"dnsfleet": {"auth": {"mode": "proxy-header", "proxy_secret": "x"}}})
    assert half.problem and not decide(who, half, bind_address="0.0.0.0", environ=ON).may_write


def test_header_values_are_cleaned_before_they_become_an_impersonation_header():
    cfg = settings_from_secrets(PROXY)
    who = identity_from_headers(
        {"X-Forwarded-User": "eve\r\nImpersonate-Group: system:masters", "X-Proxy-Secret": SECRET}, cfg
    )
    assert who is not None and "\r" not in who.user and "\n" not in who.user


def test_writers_allow_list():
    cfg = settings_from_secrets(
        {"dnsfleet": {"auth": {**PROXY["dnsfleet"]["auth"], "writers": ["group:sre", "carol"]}}}
    )
    assert decide(Identity("dave", ("sre",)), cfg, bind_address="0.0.0.0", environ=ON).may_write
    assert decide(Identity("carol"), cfg, bind_address="0.0.0.0", environ=ON).may_write
    d = decide(Identity("mallory", ("dev",)), cfg, bind_address="0.0.0.0", environ=ON)
    assert not d.may_write and d.reason == "read-only: mallory is not in the dashboard's writers list"


def test_unknown_mode_is_a_problem():
    cfg = settings_from_secrets({"dnsfleet": {"auth": {"mode": "basic"}}})
    assert cfg.problem and not decide(Identity("a"), cfg, bind_address="127.0.0.1", environ=ON).may_write


# -- the dashboard wiring (AppTest, demo fleet) ---------------------------------------------------------------


@pytest.fixture
def page_env(monkeypatch, tmp_path):
    for k in ("DNSFLEET_ALLOW_WRITES", "DNSFLEET_SINGLE_USER", "DNSFLEET_KUBECONFIG", "KUBECONFIG"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.delenv("DNSFLEET_SNAPSHOT", raising=False)
    monkeypatch.setenv("DNSFLEET_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    st.cache_data.clear()
    st.cache_resource.clear()
    yield monkeypatch
    st.cache_data.clear()
    st.cache_resource.clear()


def _page(secrets: dict[str, Any] | None = None, user: dict[str, Any] | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    for k, v in (secrets or {}).items():
        at.secrets[k] = v
    if user is not None:
        at.user = user
    at.run()
    at.switch_page(PAGE).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_page_served_without_sign_in_is_read_only_despite_the_env(page_env):
    import dashboard.auth as A

    page_env.setenv("DNSFLEET_ALLOW_WRITES", "1")
    page_env.setattr(A, "bind_address", lambda: "0.0.0.0")
    at = _page()
    assert not at.warning
    assert "Writes are **off**" in at.info[0].value
    assert "served on all interfaces (0.0.0.0:8501) without sign-in" in at.info[0].value


def test_page_local_with_env_is_writable_as_before(page_env):
    page_env.setenv("DNSFLEET_ALLOW_WRITES", "1")
    page_env.setenv("DNSFLEET_SINGLE_USER", "1")
    at = _page()  # .streamlit/config.toml binds 127.0.0.1
    assert "Writes are **enabled**" in at.warning[0].value
    assert "kubeconfig's own identity" in at.warning[0].value


def test_page_behind_an_auth_proxy_shows_the_user_and_allows_writes(page_env):
    import dashboard.auth as A

    page_env.setenv("DNSFLEET_ALLOW_WRITES", "1")
    page_env.setattr(A, "bind_address", lambda: "0.0.0.0")
    page_env.setattr(
        A,
        "_headers",
        lambda: {"X-Forwarded-User": "alice", "X-Forwarded-Groups": "sre", "X-Proxy-Secret": SECRET},
    )
    at = _page(PROXY)
    assert "Writes are **enabled**" in at.warning[0].value
    assert "signed in as alice" in at.warning[0].value
    assert any("Signed in as **alice** (groups: sre) via proxy-header" in c.value for c in at.caption)


def test_page_with_oidc_offers_sign_in_and_stays_read_only_until_then(page_env):
    page_env.setenv("DNSFLEET_ALLOW_WRITES", "1")
    secrets = {"dnsfleet": {"auth": {"mode": "oidc"}}, "auth": OIDC}
    at = _page(secrets, user={"is_logged_in": False})
    assert "read-only until you sign in" in at.info[0].value
    assert [b.label for b in at.button if b.key == "auth.login"] == ["Sign in to apply changes"]
    alice = {"is_logged_in": True, "email": "alice@example.com", "email_verified": True, "groups": ["sre"]}
    at = _page(secrets, user=alice)
    assert "signed in as alice@example.com" in at.warning[0].value
    assert [b.key for b in at.button if b.key and b.key.startswith("auth.")] == ["auth.logout"]
    page_text = " ".join(str(e.value) for e in [*at.markdown, *at.caption, *at.info, *at.warning])
    assert "oidc-client-secret-for-tests" not in page_text and "cookie-secret-for-tests" not in page_text


# -- against the real API server ----------------------------------------------------------------------------


CHECKOUT = "shop/Deployment/checkout (glibc)"


def _button(at: AppTest, key: str):
    return next(b for b in at.button if b.key == key)


def _scan(at: AppTest, cluster: str = "aks-legacy") -> None:
    at.checkbox(key="src.all_contexts").uncheck().run()
    at.multiselect(key="src.contexts").set_value([cluster]).run()
    next(b for b in at.sidebar.button if b.label == "Scan").click().run()
    assert not at.exception, [e.value for e in at.exception]


@pytest.mark.fleet
def test_impersonated_user_without_rights_is_refused_by_the_server(fleet, tmp_path, monkeypatch):
    """The dashboard's kubeconfig is admin; the signed-in user is not: the server decides as the user."""
    from dnsfleet.kube import Kube, ObjectRef
    from dnsfleet.mitigate import resolver_options as R
    from dnsfleet.mitigate.audit import AuditLog
    from dnsfleet.mitigate.plan import apply, check_permissions

    monkeypatch.delenv("DNSFLEET_ALLOW_WRITES", raising=False)
    ref = ObjectRef("Deployment", "shop", "checkout")
    admin = Kube.from_kubeconfig(fleet.kubeconfig, "aks-legacy")
    who = Kube.from_kubeconfig(
        fleet.kubeconfig, "aks-legacy", impersonate_user="mallory@example.com", impersonate_groups=["dev"]
    )
    try:
        rv = admin.get(ref)["metadata"]["resourceVersion"]
        target = [R.Target("shop", "Deployment", "checkout", "glibc")]
        own = R.plan_resolver_options(who, target, {"use-vc": None})  # she cannot even read it
        assert own.changes == [] and 'User "mallory@example.com" cannot get' in own.skipped[0].reason
        # a plan made with the dashboard's rights, checked and sent as mallory (the UI gate bypassed)
        plan = check_permissions(who, R.plan_resolver_options(admin, target, {"use-vc": None}))
        allowed, reasons = plan.permitted()
        assert not allowed and "not allowed to patch deployments.apps in namespace shop" in reasons[0]
        audit = AuditLog(tmp_path / "audit.jsonl")
        (res,) = apply(
            who, plan, allow_writes=True, confirm="aks-legacy", audit=audit, identity="mallory@example.com"
        )
        assert res.status == "forbidden"
        assert 'User "mallory@example.com" cannot patch resource "deployments"' in res.message
        assert admin.get(ref)["metadata"]["resourceVersion"] == rv
        (rec,) = audit.records()
        assert rec["identity"] == "mallory@example.com" and rec["result"] == "forbidden"
    finally:
        admin.close()
        who.close()


@pytest.mark.fleet
def test_page_plans_as_the_signed_in_user_not_as_the_dashboard(fleet, page_env):
    """Admin kubeconfig behind an auth proxy: the signed-in "viewer" (read-only RBAC in the fleet) gets
    their own answer from the server, not the dashboard's admin rights."""
    import dashboard.auth as A

    page_env.setenv("DNSFLEET_ALLOW_WRITES", "1")
    page_env.setenv("DNSFLEET_KUBECONFIG", str(fleet.kubeconfig))
    page_env.setattr(A, "bind_address", lambda: "0.0.0.0")
    page_env.setattr(A, "_headers", lambda: {"X-Forwarded-User": "viewer", "X-Proxy-Secret": SECRET})
    at = AppTest.from_file(APP, default_timeout=120)
    for k, v in PROXY.items():
        at.secrets[k] = v
    at.run()
    _scan(at)
    at.switch_page(PAGE).run()
    at.multiselect(key="mit.workloads").set_value([CHECKOUT]).run()
    _button(at, "mit.plan_btn").click().run()
    assert not at.error, [e.value for e in at.error]
    _button(at, "mit.dry_btn").click().run()
    at.text_input(key="mit.confirm").input("aks-legacy").run()
    assert not at.exception, [e.value for e in at.exception]
    assert _button(at, "mit.apply_btn").disabled
    caps = "\n".join(c.value for c in at.caption)
    assert "not allowed to patch deployments.apps in namespace shop on aks-legacy" in caps


@pytest.fixture
def separate_sessions(monkeypatch):
    """AppTest gives every instance the session id "test session id"; real browsers get one each.
    Give each AppTest its own, so session-scoped caches behave as they do for two real users."""
    from streamlit.testing.v1 import local_script_runner as L

    orig = L.LocalScriptRunner.__init__

    def init(self, *a: Any, **kw: Any) -> None:
        orig(self, *a, **kw)
        self._session_id = f"apptest-{id(self.session_state)}"

    monkeypatch.setattr(L.LocalScriptRunner, "__init__", init)


@pytest.mark.fleet
def test_a_kept_scan_is_shared_by_link_and_read_with_the_operators_kubeconfig(
    fleet, page_env, separate_sessions
):
    """Issue 16.1: a live scan is kept server-side and a shared link opens it in another session
    without scanning. It was read with the operator's kubeconfig, which every visitor's scan uses
    (served beyond loopback visitors cannot name another): sharing shows nobody more than they could
    scan themselves. Writes still go out as each signed-in user (the tests above)."""
    import dnsfleet.collect as C

    scans: list[str] = []
    real = C.scan

    def counting(*a: Any, **kw: Any):
        scans.append(str(kw.get("kubeconfig")))
        return real(*a, **kw)

    page_env.setattr(C, "scan", counting)
    page_env.setenv("DNSFLEET_KUBECONFIG", str(fleet.kubeconfig))
    alice = AppTest.from_file(APP, default_timeout=120)
    alice.run()
    _scan(alice)
    assert len(scans) == 1
    scan_id = alice.session_state["dnsfleet.live"]  # what alice's URL carries as ?scan=
    bob = AppTest.from_file(APP, default_timeout=120)
    bob.query_params["scan"] = scan_id
    bob.run()
    assert not bob.exception, [e.value for e in bob.exception]
    assert len(scans) == 1, "bob's link scanned again instead of opening the kept scan"
    assert "LIVE: aks-legacy" in " ".join(m.value for m in bob.sidebar.markdown)
    assert [b.label for b in bob.sidebar.button if b.key == "src.scan"] == ["Rescan"]
