"""Who may write to a cluster: (identity, settings, bind address, env) -> ``WriteDecision``.

The decision is what ``dnsfleet.mitigate.plan.apply`` (the library's write guard) obeys: the dashboard
passes ``decide(...)``, the command line ``local_decision(...)``. No Streamlit here; ``dashboard/auth.py`` reads ``st.user`` / request headers / ``st.secrets`` and the
server address and asks ``decide``. The rules, in order:

1. Writes are off unless ``DNSFLEET_ALLOW_WRITES=1`` (or ``--allow-writes``).
2. Writes need a signed-in identity. The one exception is a dashboard bound to a loopback address
   (127.0.0.1, the default: ``.streamlit/config.toml`` and ``make run``) whose operator says it is one
   person's tool with ``DNSFLEET_SINGLE_USER=1``: writes then go out with the kubeconfig's own identity.
   Loopback alone is not one person (an auth sidecar, ``kubectl port-forward``, ``ssh -L`` or a shared
   bastion all arrive from 127.0.0.1), so without that setting a loopback dashboard is read-only too.
3. Sign-in is configured in ``.streamlit/secrets.toml``, through Streamlit's ``st.login`` (OIDC) or a
   trusted auth proxy's headers::

       [dnsfleet.auth]
       mode = "oidc"                 # or "proxy-header"
       user_claim = "email"          # oidc: the claim naming the user (default email, then sub)
       groups_claim = "groups"       # oidc: the claim listing groups (optional)
       require_verified_email = true # oidc: an email user needs email_verified = true (default)
       user_header = "X-Forwarded-User"      # proxy-header mode
       groups_header = "X-Forwarded-Groups"  # proxy-header mode, comma-separated
       proxy_secret_header = "X-Dnsfleet-Proxy-Secret"  # proxy-header mode: required, the proxy
       proxy_secret = "..."                              # sends this header with this value (16+
                                                         # characters), so a client reaching the
                                                         # app directly cannot pose as a user
       allowed_groups = ["sre", "oncall"]    # optional: only these groups are passed on
       groups_prefix = "dnsfleet:"           # optional: prefixed to every group passed on
       user_prefix = ""                      # optional: prefixed to the user name
       writers = ["group:sre", "alice@example.com"]      # optional allow-list (users, group:NAME;
                                                         # names as Kubernetes sees them, prefixed)

   plus Streamlit's own ``[auth]`` section for OIDC (``redirect_uri``, ``cookie_secret``, ``client_id``,
   ``client_secret``, ``server_metadata_url``). Proxy mode without the shared secret is a configuration
   problem (``python -m dashboard.serve`` refuses to start; the page stays read-only). A request where the
   user, groups or secret header appears more than once is refused (a proxy that appends headers would
   otherwise let the client choose its identity).
   The identity is filtered before it is impersonated: a ``system:`` user is refused, ``system:`` groups
   are dropped, then ``allowed_groups`` and ``groups_prefix`` apply (as the API server's
   ``--oidc-groups-prefix`` does for its own OIDC users).
4. A signed-in user's writes (and the plan's SelfSubjectAccessReviews and dry runs) go out with
   Kubernetes impersonation (``Impersonate-User``/``Impersonate-Group``), so each cluster's RBAC
   decides; the audit log records that user.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

MODES = ("none", "oidc", "proxy-header")
OIDC_KEYS = ("redirect_uri", "cookie_secret", "client_id", "client_secret", "server_metadata_url")
WRITES_OFF = "writes are off (start with DNSFLEET_ALLOW_WRITES=1)"
SINGLE_USER_ENV = "DNSFLEET_SINGLE_USER"
ALLOWED_HOSTS_ENV = "DNSFLEET_ALLOWED_HOSTS"
MIN_PROXY_SECRET = 16
RESERVED_PREFIX = "system:"  # Kubernetes' own users and groups (system:masters, system:node:..., ...)


class IdentityRefused(Exception):
    """The request names an identity that must not be used (duplicated headers, a ``system:`` user, an
    unverified email); the message is one line for the page."""


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
    require_verified_email: bool = True
    user_header: str = "X-Forwarded-User"
    groups_header: str = "X-Forwarded-Groups"
    proxy_secret_header: str = ""
    proxy_secret: str = field(default="", repr=False)
    allowed_groups: tuple[str, ...] = ()  # empty: every group (but system:) is passed on
    groups_prefix: str = ""
    user_prefix: str = ""
    writers: tuple[str, ...] = ()
    provider: str | None = None  # the [auth.<provider>] to pass to st.login, when named
    problem: str | None = None  # why the configuration cannot be used (writes stay off)


@dataclass(frozen=True)
class WriteDecision:
    may_write: bool
    reason: str  # one line, shown next to the disabled button or the "writes enabled" banner
    identity: Identity | None = None
    impersonate: bool = False  # send Impersonate-User/-Group for this identity


def _strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, Iterable):
        return ()
    return tuple(str(v).strip() for v in value if str(v).strip())


def settings_from_secrets(secrets: Mapping[str, Any]) -> AuthSettings:
    """Read ``[dnsfleet.auth]`` (and check Streamlit's ``[auth]`` for OIDC). Never raises."""
    section = _get(_get(secrets, "dnsfleet"), "auth")
    if not isinstance(section, Mapping) or not section:
        return AuthSettings()
    mode = str(section.get("mode", "none")).strip().lower()
    if mode not in MODES:
        return AuthSettings(problem=f"[dnsfleet.auth] mode {mode[:40]!r} is not one of {', '.join(MODES)}")
    kw: dict[str, Any] = {
        "mode": mode,
        "writers": _strings(section.get("writers") or ()),
        "allowed_groups": _strings(section.get("allowed_groups") or ()),
    }
    for key in (
        "user_claim",
        "groups_claim",
        "user_header",
        "groups_header",
        "proxy_secret_header",
        "groups_prefix",
        "user_prefix",
    ):
        if section.get(key):
            kw[key] = str(section[key]).strip()
    kw["proxy_secret"] = str(section.get("proxy_secret") or "")
    verified = section.get("require_verified_email", True)
    kw["require_verified_email"] = verified is not False
    problems = []
    if mode == "proxy-header" and not (kw.get("proxy_secret_header") and kw["proxy_secret"]):
        problems.append(
            '[dnsfleet.auth] mode = "proxy-header" needs proxy_secret_header and proxy_secret (the auth '
            "proxy sends that header with that value; without it any client reaching the app names itself)"
        )
    elif bool(kw.get("proxy_secret_header")) != bool(kw["proxy_secret"]):
        problems.append("[dnsfleet.auth] proxy_secret_header and proxy_secret go together")
    elif kw["proxy_secret"] and len(kw["proxy_secret"]) < MIN_PROXY_SECRET:
        problems.append(f"[dnsfleet.auth] proxy_secret is shorter than {MIN_PROXY_SECRET} characters")
    for key in ("groups_prefix", "user_prefix"):
        if kw.get(key, "").startswith(RESERVED_PREFIX):
            problems.append(f"[dnsfleet.auth] {key} must not start with {RESERVED_PREFIX!r}")
    if mode == "oidc":
        provider, missing = _oidc_provider(_get(secrets, "auth"))
        kw["provider"] = provider
        if missing:
            problems.append(f"OIDC sign-in is not configured: [auth] lacks {', '.join(missing)}")
    if problems:
        kw["problem"] = problems[0]
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
    """The OIDC user (``st.user``) when signed in, else None. Raises ``IdentityRefused`` for an email
    user whose ``email_verified`` is not true (unless ``require_verified_email = false``) and for the
    filters of ``filtered``."""
    if not claims or not claims.get("is_logged_in"):
        return None
    claim = settings.user_claim if claims.get(settings.user_claim) else None
    claim = claim or ("email" if claims.get("email") else "sub")
    user = claims.get(claim)
    if not isinstance(user, str) or not user.strip():
        return None
    if claim == "email" and settings.require_verified_email and claims.get("email_verified") is not True:
        raise IdentityRefused(
            f"the identity provider has not verified the email {_clean(user)!r} (email_verified is not true)"
        )
    raw = claims.get(settings.groups_claim) or ()
    groups = [raw] if isinstance(raw, str) else raw if isinstance(raw, Sequence) else ()
    return filtered(
        Identity(_clean(user), tuple(_clean(str(g)) for g in groups if str(g).strip()), "oidc"), settings
    )


HeaderSource = Mapping[str, str] | Iterable[tuple[str, str]]


def header_values(headers: HeaderSource) -> dict[str, list[str]]:
    """Every value of every header, by lower-case name. Takes ``st.context.headers`` (its ``get_all``),
    a plain mapping or (name, value) pairs; a repeated header keeps all its values."""
    out: dict[str, list[str]] = {}
    if isinstance(headers, Mapping):
        get_all = getattr(headers, "get_all", None)
        pairs = [(k, v) for k in headers for v in (get_all(k) if callable(get_all) else [headers[k]])]
    else:
        pairs = list(headers)
    for k, v in pairs:
        out.setdefault(str(k).lower(), []).append(_utf8(str(v)))
    return out


def _utf8(value: str) -> str:
    """HTTP servers hand header bytes over decoded as Latin-1; an auth proxy sends UTF-8."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


def identity_from_headers(headers: HeaderSource, settings: AuthSettings) -> Identity | None:
    """The user an auth proxy put in the request headers, else None (also when the proxy's shared
    secret is configured and missing or wrong). Raises ``IdentityRefused`` when the user, groups or secret
    header appears more than once, and for the filters of ``filtered``."""
    values = header_values(headers)
    names = [settings.user_header, settings.groups_header, settings.proxy_secret_header]
    repeated = [n for n in names if n and len(values.get(n.lower(), ())) > 1]
    if repeated:
        raise IdentityRefused(f"header {', '.join(repeated)} appears more than once in the request")
    one = {k: v[0] for k, v in values.items()}
    if settings.mode == "proxy-header" or settings.proxy_secret_header:
        got = one.get(settings.proxy_secret_header.lower(), "") if settings.proxy_secret_header else ""
        if not settings.proxy_secret or not _same(got, settings.proxy_secret):
            return None
    user = one.get(settings.user_header.lower(), "").strip()
    if not user:
        return None
    groups = [g.strip() for g in one.get(settings.groups_header.lower(), "").split(",") if g.strip()]
    return filtered(Identity(_clean(user), tuple(_clean(g) for g in groups), "proxy-header"), settings)


def filtered(identity: Identity, settings: AuthSettings) -> Identity:
    """The identity as it may be impersonated: a ``system:`` user is refused (``IdentityRefused``),
    ``system:`` groups are dropped, only ``allowed_groups`` (when set) are kept, and ``groups_prefix`` /
    ``user_prefix`` are prepended."""
    if not identity.user or identity.user.lower().startswith(RESERVED_PREFIX):
        raise IdentityRefused(
            f"user {identity.user!r} is reserved for Kubernetes itself and is not impersonated"
        )
    allowed = set(settings.allowed_groups)
    groups: list[str] = []
    for g in identity.groups:
        if not g or g.lower().startswith(RESERVED_PREFIX) or (allowed and g not in allowed):
            continue
        name = settings.groups_prefix + g
        if name not in groups:
            groups.append(name)
    return Identity(settings.user_prefix + identity.user, tuple(groups), identity.source)


def _same(a: str, b: str) -> bool:
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


def is_wildcard(address: str | None) -> bool:
    """Unset, empty, 0.0.0.0 or :: : the server listens on every interface."""
    a = (address or "").strip().strip("[]")
    return a in ("", "0.0.0.0", "::")


def where(bind_address: str | None, port: int | None = None) -> str:
    """The bind address as the banner states it: ``127.0.0.1:8501``, ``all interfaces (0.0.0.0:8501)``."""
    a = (bind_address or "").strip() or "0.0.0.0"
    shown = f"[{a}]" if ":" in a and not a.startswith("[") else a
    at = f"{shown}:{port}" if port else shown
    return f"all interfaces ({at})" if is_wildcard(a) else at


def host_allowed(
    host: str | None, bind_address: str | None, environ: Mapping[str, str] | None = None
) -> bool:
    """May a request with this ``Host`` header be served (DNS rebinding)?

    Allowed: ``localhost``, loopback addresses, the bound address, and the names in
    ``DNSFLEET_ALLOWED_HOSTS`` (comma-separated; ``*.example.com`` matches subdomains). A server bound to
    every interface also accepts any IP address as Host (a browser sends an IP only when the URL has
    it, which a rebound name never is). Anything else, and a missing Host, is refused."""
    env = os.environ if environ is None else environ
    name = _host_name(host)
    if name is None:
        return False
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        ip = None
    if ip is not None and (ip.is_loopback or is_wildcard(bind_address)):
        return True
    bound = (bind_address or "").strip().strip("[]").lower()
    if name == bound:
        return True
    if ip is not None and bound:
        try:
            return ip == ipaddress.ip_address(bound)
        except ValueError:
            return False
    for pattern in (p.strip().lower() for p in env.get(ALLOWED_HOSTS_ENV, "").split(",")):
        if pattern and (name == pattern or (pattern.startswith("*.") and name.endswith(pattern[1:]))):
            return True
    return False


def _host_name(host: str | None) -> str | None:
    """The host part of a Host header value, lower-case, without port or IPv6 brackets."""
    h = (host or "").strip().lower()
    if not h or any(c in h for c in " /\\@?#"):
        return None
    if h.startswith("["):
        end = h.find("]")
        if end < 0 or (h[end + 1 :] and not h[end + 1 :].startswith(":")):
            return None
        return h[1:end]
    if h.count(":") == 1:
        h, _, port = h.partition(":")
        if not port.isdigit():
            return None
    elif h.count(":") > 1:
        return None  # a bare IPv6 address must be bracketed in a Host header
    return h.rstrip(".") or None


def writes_requested(flag: bool = False, environ: Mapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return bool(flag) or env.get("DNSFLEET_ALLOW_WRITES", "").strip() == "1"


def single_user(environ: Mapping[str, str] | None = None) -> bool:
    """The operator says only they can reach this dashboard (``DNSFLEET_SINGLE_USER=1``)."""
    env = os.environ if environ is None else environ
    return env.get(SINGLE_USER_ENV, "").strip() == "1"


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
    port: int | None = None,
    environ: Mapping[str, str] | None = None,
    flag: bool = False,
    refused: str | None = None,
) -> WriteDecision:
    """May this session apply changes? See the module docstring for the rules. ``refused``: why the
    request's identity was refused (``IdentityRefused``), if it was."""
    at = where(bind_address, port)
    if not writes_requested(flag, environ):
        return WriteDecision(False, WRITES_OFF, identity, impersonate=identity is not None)
    if settings.problem:
        return WriteDecision(False, f"read-only: {settings.problem}", identity, impersonate=False)
    if refused:
        return WriteDecision(False, f"read-only: {refused}")
    if settings.mode == "none":
        if not is_loopback(bind_address):
            return WriteDecision(
                False,
                f"read-only: the dashboard is served on {at} without sign-in; configure [dnsfleet.auth] "
                "in .streamlit/secrets.toml (OIDC or an auth proxy) to allow writes",
            )
        if not single_user(environ):
            return WriteDecision(
                False,
                f"read-only: writes need a signed-in user, and this dashboard on {at} has no sign-in "
                "(anyone reaching it through a port-forward, tunnel or sidecar would write as its "
                f"kubeconfig); configure [dnsfleet.auth], or, if only you can reach it, restart it with "
                f"{SINGLE_USER_ENV}=1",
            )
        return WriteDecision(
            True,
            f"single-user dashboard on {at} ({SINGLE_USER_ENV}=1): writes use the kubeconfig's own identity",
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
