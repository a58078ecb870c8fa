"""Who may write to a cluster: (identity, settings, bind address, env) -> ``WriteDecision``.

The decision is what ``dnsfleet.mitigate.plan.apply`` (the library's write guard) obeys: the dashboard
passes ``decide(...)``, the command line ``local_decision(...)``. No Streamlit here; ``dashboard/auth.py`` reads ``st.user`` / request headers / ``st.secrets`` and the
server address and asks ``decide``. The rules, in order:

1. Writes are off unless ``DNSFLEET_ALLOW_WRITES=1`` (or ``--allow-writes``).
2. A dashboard bound to a loopback address (127.0.0.1, the default: ``.streamlit/config.toml`` and
   ``make run``) with no sign-in configured is one person's tool: writes go out with the kubeconfig's
   own identity.
3. Anything else (served to a team, i.e. bound to another address, or sign-in configured) writes only
   for a signed-in user, through Streamlit's ``st.login`` (OIDC) or a trusted auth-proxy header, set in
   ``.streamlit/secrets.toml``::

       [dnsfleet.auth]
       mode = "oidc"                 # or "proxy-header"
       user_claim = "email"          # oidc: the claim naming the user (default email, then sub)
       groups_claim = "groups"       # oidc: the claim listing groups (optional)
       user_header = "X-Forwarded-User"      # proxy-header mode
       groups_header = "X-Forwarded-Groups"  # proxy-header mode, comma-separated
       proxy_secret_header = "X-Dnsfleet-Proxy-Secret"  # optional: the proxy also sends this header
       proxy_secret = "..."                              # ...with this value, so a client reaching
                                                         # the app directly cannot pose as a user
       writers = ["group:sre", "alice@example.com"]      # optional allow-list (users, group:NAME)

   plus Streamlit's own ``[auth]`` section for OIDC (``redirect_uri``, ``cookie_secret``, ``client_id``,
   ``client_secret``, ``server_metadata_url``). Served without any of it, the app is read-only whatever
   ``DNSFLEET_ALLOW_WRITES`` says.
4. A signed-in user's writes (and the plan's SelfSubjectAccessReviews and dry runs) go out with
   Kubernetes impersonation (``Impersonate-User``/``Impersonate-Group``), so each cluster's RBAC
   decides; the audit log records that user.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

MODES = ("none", "oidc", "proxy-header")
OIDC_KEYS = ("redirect_uri", "cookie_secret", "client_id", "client_secret", "server_metadata_url")
WRITES_OFF = "writes are off (start with DNSFLEET_ALLOW_WRITES=1)"


@dataclass(frozen=True)
class Identity:
    """A signed-in person: ``user`` as Kubernetes will see it, ``groups``, and where it came from."""

    user: str
    groups: tuple[str, ...] = ()
    source: str = "oidc"  # oidc | proxy-header


@dataclass(frozen=True)
class AuthSettings:
    mode: str = "none"
    user_claim: str = "email"
    groups_claim: str = "groups"
    user_header: str = "X-Forwarded-User"
    groups_header: str = "X-Forwarded-Groups"
    proxy_secret_header: str = ""
    proxy_secret: str = field(default="", repr=False)
    writers: tuple[str, ...] = ()
    provider: str | None = None  # the [auth.<provider>] to pass to st.login, when named
    problem: str | None = None  # why the configuration cannot be used (writes stay off)


@dataclass(frozen=True)
class WriteDecision:
    may_write: bool
    reason: str  # one line, shown next to the disabled button or the "writes enabled" banner
    identity: Identity | None = None
    impersonate: bool = False  # send Impersonate-User/-Group for this identity


def settings_from_secrets(secrets: Mapping[str, Any]) -> AuthSettings:
    """Read ``[dnsfleet.auth]`` (and check Streamlit's ``[auth]`` for OIDC). Never raises."""
    section = _get(_get(secrets, "dnsfleet"), "auth")
    if not isinstance(section, Mapping) or not section:
        return AuthSettings()
    mode = str(section.get("mode", "none")).strip().lower()
    if mode not in MODES:
        return AuthSettings(problem=f"[dnsfleet.auth] mode {mode[:40]!r} is not one of {', '.join(MODES)}")
    writers = section.get("writers") or ()
    if isinstance(writers, str):
        writers = [writers]
    kw: dict[str, Any] = {
        "mode": mode,
        "writers": tuple(str(w).strip() for w in writers if str(w).strip()),
    }
    for key in ("user_claim", "groups_claim", "user_header", "groups_header", "proxy_secret_header"):
        if section.get(key):
            kw[key] = str(section[key]).strip()
    kw["proxy_secret"] = str(section.get("proxy_secret") or "")
    if bool(kw.get("proxy_secret_header")) != bool(kw["proxy_secret"]):
        kw["problem"] = "[dnsfleet.auth] proxy_secret_header and proxy_secret go together"
    if mode == "oidc":
        provider, missing = _oidc_provider(_get(secrets, "auth"))
        kw["provider"] = provider
        if missing:
            kw["problem"] = f"OIDC sign-in is not configured: [auth] lacks {', '.join(missing)}"
    return AuthSettings(**kw)


def _get(m: Any, key: str) -> Any:
    try:
        return m.get(key) if hasattr(m, "get") else None
    except Exception:  # st.secrets raises on missing files / keys in some versions
        return None


def _oidc_provider(auth: Any) -> tuple[str | None, list[str]]:
    """(provider name or None for the default [auth] provider, the keys missing)."""
    if not isinstance(auth, Mapping):
        return None, list(OIDC_KEYS)
    flat = [k for k in OIDC_KEYS if not auth.get(k)]
    if not flat:
        return None, []
    # A named provider: shared keys in [auth], the client's in [auth.<name>].
    for name, sub in auth.items():
        if isinstance(sub, Mapping):
            missing = [k for k in OIDC_KEYS if not (sub.get(k) or auth.get(k))]
            if not missing:
                return str(name), []
    return None, flat


def identity_from_claims(claims: Mapping[str, Any], settings: AuthSettings) -> Identity | None:
    """The OIDC user (``st.user``) when signed in, else None."""
    if not claims or not claims.get("is_logged_in"):
        return None
    user = claims.get(settings.user_claim) or claims.get("email") or claims.get("sub")
    if not isinstance(user, str) or not user.strip():
        return None
    raw = claims.get(settings.groups_claim) or ()
    groups = [raw] if isinstance(raw, str) else raw if isinstance(raw, Sequence) else ()
    return Identity(_clean(user), tuple(_clean(str(g)) for g in groups if str(g).strip()), "oidc")


def identity_from_headers(headers: Mapping[str, str], settings: AuthSettings) -> Identity | None:
    """The user an auth proxy put in the request headers, else None (also when the proxy's shared
    secret is configured and missing or wrong)."""
    lower = {str(k).lower(): str(v) for k, v in headers.items()}
    if settings.proxy_secret_header:
        got = lower.get(settings.proxy_secret_header.lower(), "")
        if not settings.proxy_secret or not _same(got, settings.proxy_secret):
            return None
    user = lower.get(settings.user_header.lower(), "").strip()
    if not user:
        return None
    groups = [g.strip() for g in lower.get(settings.groups_header.lower(), "").split(",") if g.strip()]
    return Identity(_clean(user), tuple(_clean(g) for g in groups), "proxy-header")


def _same(a: str, b: str) -> bool:
    import hmac

    return hmac.compare_digest(a.encode(), b.encode())


def _clean(text: str) -> str:
    """One printable line, bounded: the name goes into an HTTP header and the audit log."""
    return "".join(ch for ch in " ".join(text.split()) if ch.isprintable())[:256]


def is_loopback(address: str | None) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost. Unset or empty means all interfaces: not loopback."""
    a = (address or "").strip().strip("[]")
    if a == "localhost":
        return True
    try:
        return ipaddress.ip_address(a).is_loopback
    except ValueError:
        return False


def writes_requested(flag: bool = False, environ: Mapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return bool(flag) or env.get("DNSFLEET_ALLOW_WRITES", "").strip() == "1"


def local_decision(
    flag: bool = False, environ: Mapping[str, str] | None = None, impersonate: Identity | None = None
) -> WriteDecision:
    """The command line's decision: one person with their own kubeconfig, so rule 1 alone decides.
    ``impersonate``: the user (and groups) asked for with ``--impersonate``."""
    if not writes_requested(flag, environ):
        return WriteDecision(False, WRITES_OFF, impersonate, impersonate=impersonate is not None)
    if impersonate is not None:
        return WriteDecision(True, f"command line as {impersonate.user} (impersonation)", impersonate, True)
    return WriteDecision(True, "command line: writes use the kubeconfig's own identity")


def decide(
    identity: Identity | None,
    settings: AuthSettings,
    *,
    bind_address: str | None,
    environ: Mapping[str, str] | None = None,
    flag: bool = False,
) -> WriteDecision:
    """May this session apply changes? See the module docstring for the rules."""
    if not writes_requested(flag, environ):
        return WriteDecision(False, WRITES_OFF, identity, impersonate=identity is not None)
    if settings.problem:
        return WriteDecision(False, f"read-only: {settings.problem}", identity, impersonate=False)
    if settings.mode == "none":
        if is_loopback(bind_address):
            return WriteDecision(
                True, "local dashboard on 127.0.0.1: writes use the kubeconfig's own identity"
            )
        where = bind_address or "all interfaces"
        return WriteDecision(
            False,
            f"read-only: the dashboard is served on {where} without sign-in; configure [dnsfleet.auth] "
            "in .streamlit/secrets.toml (OIDC or an auth proxy) to allow writes",
        )
    if identity is None:
        how = "sign in" if settings.mode == "oidc" else "come through the auth proxy"
        return WriteDecision(False, f"read-only until you {how}: writes need a signed-in user")
    if settings.writers and not _is_writer(identity, settings.writers):
        return WriteDecision(
            False, f"read-only: {identity.user} is not in the dashboard's writers list", identity, True
        )
    return WriteDecision(
        True,
        f"signed in as {identity.user}: writes go out as that user (Kubernetes impersonation), "
        "so each cluster's RBAC decides",
        identity,
        impersonate=True,
    )


def _is_writer(identity: Identity, writers: Sequence[str]) -> bool:
    for w in writers:
        if w.startswith("group:"):
            if w[len("group:") :] in identity.groups:
                return True
        elif w == identity.user:
            return True
    return False
