"""The signed-in user and the write decision for this session (rules: ``dnsfleet.authz``).

The request headers are read with every value of a repeated header (``st.context.headers.get_all``), so
``dnsfleet.authz`` can refuse a duplicated identity header instead of taking the first one. A session
whose ``Host`` header is not one ``dnsfleet.authz.host_allowed`` accepts (DNS rebinding) gets no
writes, also when the app runs without ``dashboard.serve``'s Host check.

Pages call ``write_decision()`` and hand it to ``dnsfleet.mitigate.flow.Controller``, which builds the
clients with impersonation for a signed-in user (plans, dry runs and writes) and obeys it when writing.
``render_identity()`` draws the "signed in as" line and, for OIDC, the sign-in / sign-out button.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import streamlit as st

from dnsfleet.authz import (
    AuthSettings,
    HeaderSource,
    Identity,
    IdentityRefused,
    WriteDecision,
    decide,
    header_values,
    host_allowed,
    identity_from_claims,
    identity_from_headers,
    settings_from_secrets,
)


def settings() -> AuthSettings:
    try:
        secrets: Mapping[str, Any] = st.secrets.to_dict() if len(st.secrets) else {}
    except Exception:  # no secrets.toml anywhere: Streamlit raises on first access
        secrets = {}
    return settings_from_secrets(secrets)


def _claims() -> dict[str, Any]:
    try:
        return dict(st.user.to_dict())
    except Exception:
        return {}


def _headers() -> HeaderSource:
    """Every (name, value) of the session's request, a repeated header once per value."""
    try:
        h = st.context.headers
        return [(k, v) for k in h for v in h.get_all(k)]
    except Exception:
        return []


def bind_address() -> str | None:
    return st.get_option("server.address") or None


def bind_port() -> int | None:
    try:
        return int(st.get_option("server.port"))
    except (TypeError, ValueError):
        return None


def current_identity(cfg: AuthSettings | None = None) -> Identity | None:
    """The signed-in user, or None; raises ``IdentityRefused`` when the request's identity is refused."""
    cfg = cfg or settings()
    if cfg.problem:
        return None
    if cfg.mode == "oidc":
        return identity_from_claims(_claims(), cfg)
    if cfg.mode == "proxy-header":
        return identity_from_headers(_headers(), cfg)
    return None


def _host() -> str | None:
    """The Host header of the session's request, None when there is none (AppTest)."""
    hosts = header_values(_headers()).get("host", [])
    return hosts[0] if len(hosts) == 1 else ("" if hosts else None)


def write_decision() -> WriteDecision:
    cfg = settings()
    try:
        who, refused = current_identity(cfg), None
    except IdentityRefused as e:
        who, refused = None, f"sign-in refused: {e}"
    host = _host()
    if refused is None and host is not None and not host_allowed(host, bind_address()):
        refused = "the page was loaded under a host name this dashboard does not serve (DNS rebinding?)"
    return decide(
        who,
        cfg,
        bind_address=bind_address(),
        port=bind_port(),
        flag="--allow-writes" in sys.argv,
        refused=refused,
    )


def render_identity(decision: WriteDecision) -> None:
    cfg = settings()
    who = decision.identity
    if who is not None:
        groups = f" (groups: {', '.join(who.groups)})" if who.groups else ""
        st.caption(f"Signed in as **{who.user}**{groups} via {who.source}.")
        if cfg.mode == "oidc":
            st.button("Sign out", key="auth.logout", on_click=st.logout)
    elif cfg.mode == "oidc" and not cfg.problem:
        st.button(
            "Sign in to apply changes",
            key="auth.login",
            on_click=st.login,
            args=(cfg.provider,) if cfg.provider else (),
        )
