"""The signed-in user and the write decision for this session (rules: ``dnsfleet.authz``).

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
    Identity,
    WriteDecision,
    decide,
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


def _headers() -> dict[str, str]:
    try:
        return dict(st.context.headers or {})
    except Exception:
        return {}


def bind_address() -> str | None:
    return st.get_option("server.address") or None


def current_identity(cfg: AuthSettings | None = None) -> Identity | None:
    cfg = cfg or settings()
    if cfg.problem:
        return None
    if cfg.mode == "oidc":
        return identity_from_claims(_claims(), cfg)
    if cfg.mode == "proxy-header":
        return identity_from_headers(_headers(), cfg)
    return None


def write_decision() -> WriteDecision:
    cfg = settings()
    return decide(current_identity(cfg), cfg, bind_address=bind_address(), flag="--allow-writes" in sys.argv)


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
