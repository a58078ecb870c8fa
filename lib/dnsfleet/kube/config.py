"""Which clusters to talk to, and the one factory for their API clients.

Kubeconfig files are merged like kubectl does (``$KUBECONFIG``, several paths joined with ``os.pathsep``,
first definition wins). ``new_api_client`` builds one ``ApiClient`` per target with
``kubernetes.config.new_client_from_config`` (never the process-global default configuration, never
writing refreshed credentials back to the file), urllib3 retries off (the request class retries within
its own budget), exec credential plugins with a timeout (``execauth``) and, optionally, Kubernetes
impersonation headers.

Every kubeconfig read teaches the scrubber its credential values (``dnsfleet.scrub``). Bearer tokens are
trimmed as kubectl trims them (``token``, ``tokenFile`` contents, exec plugin output), at load and at
every refresh. A context whose ``user`` names no user entry fails with that reason; the Python client
would otherwise connect anonymously.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.config.config_exception import ConfigException

from dnsfleet.kube import execauth
from dnsfleet.kube.errors import ClusterFailed, ConfigError, one_line
from dnsfleet.scrub import remember, remember_kubeconfig

IN_CLUSTER = "in-cluster"
# Where a pod's service account token and CA are mounted; DNSFLEET_SERVICEACCOUNT_DIR overrides it (a
# projected token mounted elsewhere, and the tests, which run the collector against a real API server).
SERVICEACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
# Set on a client built with impersonated groups: the request class sends one header per group.
IMPERSONATE_GROUPS_ATTR = "dnsfleet_impersonate_groups"


@dataclass(frozen=True)
class Target:
    """One cluster to talk to: a kubeconfig context (``config_file`` + ``context``) or in-cluster config."""

    name: str
    config_file: str | None
    context: str | None


def kubeconfig_paths(kubeconfig: str | Path | list[str | Path] | None = None) -> list[Path]:
    """The kubeconfig files to merge, like kubectl: the argument, else ``$KUBECONFIG``, else ~/.kube/config.

    A string may hold several paths separated by ``os.pathsep``. Missing files are skipped when they
    come from ``$KUBECONFIG`` (kubectl does the same); an explicitly named missing file is an error.
    """
    explicit = kubeconfig is not None
    if kubeconfig is None:
        env = os.environ.get("KUBECONFIG", "")
        raw: list[str] = [p for p in env.split(os.pathsep) if p] or ["~/.kube/config"]
    elif isinstance(kubeconfig, list | tuple):
        raw = [str(p) for p in kubeconfig]
    else:
        raw = [p for p in str(kubeconfig).split(os.pathsep) if p]
    paths: list[Path] = []
    for p in raw:
        path = Path(p).expanduser()
        if path.is_file():
            if path not in paths:
                paths.append(path)
        elif explicit:
            raise ConfigError(f"kubeconfig file not found: {path}")
    return paths


def _read_kubeconfig(path: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as e:
        raise ConfigError(f"cannot read kubeconfig {path}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"kubeconfig {path} is not a text file (not UTF-8 at byte {e.start})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"kubeconfig {path} is not valid YAML{where}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigError(f"kubeconfig {path} is not a kubeconfig (top level is not a mapping)")
    remember_kubeconfig(doc, path.parent)
    return doc


def list_contexts(paths: list[Path]) -> tuple[list[str], str | None]:
    """Context names across the merged files (first definition wins) and the current context."""
    names: list[str] = []
    current: str | None = None
    for path in paths:
        doc = _read_kubeconfig(path)
        for ctx in doc.get("contexts") or []:
            if isinstance(ctx, dict) and isinstance(ctx.get("name"), str) and ctx["name"] not in names:
                names.append(ctx["name"])
        cur = doc.get("current-context")
        if current is None and isinstance(cur, str) and cur:
            current = cur
    return names, current


def resolve_targets(
    kubeconfig: str | Path | list[str | Path] | None = None,
    contexts: list[str] | None = None,
    all_contexts: bool = False,
) -> list[Target]:
    """Which clusters to scan. Raises ConfigError (one line) when nothing usable is configured."""
    paths = kubeconfig_paths(kubeconfig)
    if not paths:
        if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST") and not contexts:
            return [Target(os.environ.get("DNSFLEET_CLUSTER_NAME") or IN_CLUSTER, None, None)]
        raise ConfigError("no kubeconfig found (set --kubeconfig or KUBECONFIG, or run inside a cluster)")
    names, current = list_contexts(paths)
    if not names:
        raise ConfigError(f"no contexts in kubeconfig {os.pathsep.join(map(str, paths))}")
    if contexts and all_contexts:
        raise ConfigError("give either contexts or all contexts, not both")
    if all_contexts:
        chosen = names
    elif contexts:
        unknown = [c for c in contexts if c not in names]
        if unknown:
            raise ConfigError(f"context {unknown[0]!r} not in kubeconfig (available: {', '.join(names)})")
        chosen = list(dict.fromkeys(contexts))
    else:
        if current is None:
            raise ConfigError("kubeconfig has no current-context; name contexts or use all contexts")
        if current not in names:
            raise ConfigError(f"current-context {current!r} is not defined in the kubeconfig")
        chosen = [current]
    joined = os.pathsep.join(str(p) for p in paths)
    return [Target(c, joined, c) for c in chosen]


def new_api_client(
    target: Target,
    timeout: float,
    *,
    impersonate_user: str | None = None,
    impersonate_groups: Sequence[str] = (),
) -> k8s_client.ApiClient:
    """A fresh ApiClient for this target. Raises ClusterFailed with a plain reason.

    Impersonation sends ``Impersonate-User`` and one ``Impersonate-Group`` header per group; the
    kubeconfig's own user needs the ``impersonate`` verb for that. ``timeout`` is the request timeout
    the caller will use; the client itself holds none.
    """
    if impersonate_groups and not impersonate_user:
        raise ConfigError("impersonating groups needs a user to impersonate too")
    if target.config_file is not None:
        _check_user_entry(target)
    cfg = type.__call__(k8s_client.Configuration)
    cfg.retries = False  # urllib3 never retries on its own; the request class does, within its budget
    execauth.install()
    execauth.clear_error()
    try:
        if target.config_file is None:
            sa = Path(os.environ.get("DNSFLEET_SERVICEACCOUNT_DIR") or SERVICEACCOUNT_DIR)
            k8s_config.incluster_config.InClusterConfigLoader(
                token_filename=str(sa / "token"), cert_filename=str(sa / "ca.crt")
            ).load_and_set(cfg)
            client = k8s_client.ApiClient(configuration=cfg)
        else:
            client = k8s_config.new_client_from_config(
                config_file=target.config_file,
                context=target.context,
                persist_config=False,
                client_configuration=cfg,
            )
    except ConfigException as e:
        raise ClusterFailed(f"kubeconfig: {one_line(str(e))}") from None
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise ClusterFailed(f"kubeconfig: {type(e).__name__}: {one_line(str(e))}") from None
    # The client swallows exec plugin failures (it logs them and goes on without credentials).
    if (err := execauth.take_error()) is not None:
        client.close()
        raise ClusterFailed(f"kubeconfig: {err}")
    _trim_bearer(cfg)
    hook = cfg.refresh_api_key_hook
    if hook is not None:

        def refresh(c: k8s_client.Configuration) -> None:
            hook(c)
            _trim_bearer(c)

        cfg.refresh_api_key_hook = refresh
    if impersonate_user:
        client.set_default_header("Impersonate-User", header_value(impersonate_user))
    setattr(client, IMPERSONATE_GROUPS_ATTR, tuple(header_value(g) for g in impersonate_groups))
    return client


def _trim_bearer(cfg: k8s_client.Configuration) -> None:
    """``Bearer <token>`` with the token trimmed (kubectl does the same), and the token remembered."""
    for key, value in list((cfg.api_key or {}).items()):
        if isinstance(value, str) and value[:7].lower() == "bearer ":
            token = value[7:].strip()
            remember(token)
            cfg.api_key[key] = f"Bearer {token}"


def _docs(target: Target) -> list[dict[str, Any]]:
    """The parsed kubeconfig files of a target, in merge order (unreadable ones skipped)."""
    docs = []
    for path in kubeconfig_paths(target.config_file) if target.config_file else []:
        try:
            docs.append(_read_kubeconfig(path))
        except ConfigError:
            continue
    return docs


def header_value(text: str) -> str:
    """``text`` as an HTTP header value that goes out as UTF-8 bytes, as kubectl sends it: http.client
    encodes header strings as Latin-1, so a user name such as "Łukasz" would raise UnicodeEncodeError."""
    return text.encode("utf-8").decode("latin-1")


def kubeconfig_user(target: Target) -> str | None:
    """The user name the target's context refers to in the kubeconfig (a name, never its credentials).

    Files joined with ``os.pathsep`` are searched in order, like kubectl merges them."""
    for doc in _docs(target):
        for c in doc.get("contexts") or []:
            if isinstance(c, dict) and c.get("name") == target.context:
                user = (c.get("context") or {}).get("user") if isinstance(c.get("context"), dict) else None
                return str(user) if user else None
    return None


def _check_user_entry(target: Target) -> None:
    """Raise ClusterFailed when the context names a user that no kubeconfig file defines."""
    user = kubeconfig_user(target)
    if not user:
        return
    for doc in _docs(target):
        for u in doc.get("users") or []:
            if isinstance(u, dict) and u.get("name") == user:
                return
    raise ClusterFailed(
        f"kubeconfig: context {target.context!r} refers to user {user!r}, which is not defined in the "
        "kubeconfig (not connecting without its credentials)"
    )


def context_target(kubeconfig: str | Path | None, context: str | None) -> Target:
    """The target of one named context (the mitigations work on one cluster at a time)."""
    if not context:
        raise ConfigError("a kubeconfig context is required (the context of the cluster)")
    try:
        return resolve_targets(kubeconfig, [context])[0]
    except ConfigError as e:
        if repr(context) in str(e):
            raise
        raise ConfigError(f"kubeconfig context {context!r}: {e}") from None
