"""Talking to one cluster for the mitigations: a per-context API client, raw REST calls returning plain
dicts, one-line errors, SelfSubjectAccessReview and the caller's identity.

Every call carries ``_request_timeout``. The client is built from the kubeconfig with
``kubernetes.config.new_client_from_config`` (never the process-global ``load_kube_config``), optionally
with impersonation headers. Tokens are never logged, returned or put in an error message.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import urllib3
import yaml
from kubernetes import config as k8s_config
from kubernetes.client import ApiClient
from kubernetes.config.config_exception import ConfigException

from dnsfleet.collect import execauth

DEFAULT_TIMEOUT = 10.0

JSON_PATCH = "application/json-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
FIELD_MANAGER = "dnsfleet"
OUTCOME_UNKNOWN = "outcome-unknown"


class MitigationError(Exception):
    """A mitigation step that cannot go on. ``str(err)`` is one line saying what and why."""


class KubeError(MitigationError):
    """The API server refused or could not be reached. ``status`` is the HTTP code (0: no answer)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        self.status = status
        self.reason = reason
        self.message = message
        super().__init__(message)

    @property
    def kind(self) -> str:
        """forbidden | conflict | not-found | invalid | unreachable | unknown | error

        ``unknown``: the request was sent but no answer came back (timeout, connection cut), so the
        change may or may not have been made."""
        if self.status == 0 and self.reason == OUTCOME_UNKNOWN:
            return "unknown"
        return {403: "forbidden", 409: "conflict", 404: "not-found", 422: "invalid", 0: "unreachable"}.get(
            self.status, "error"
        )


@dataclass(frozen=True)
class ResourceInfo:
    kind: str
    group: str  # "" for the core group
    version: str
    plural: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def base(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"


# The kinds the mitigations read or write.
KINDS: dict[str, ResourceInfo] = {
    r.kind: r
    for r in (
        ResourceInfo("Deployment", "apps", "v1", "deployments"),
        ResourceInfo("StatefulSet", "apps", "v1", "statefulsets"),
        ResourceInfo("DaemonSet", "apps", "v1", "daemonsets"),
        ResourceInfo("ReplicaSet", "apps", "v1", "replicasets"),
        ResourceInfo("Job", "batch", "v1", "jobs"),
        ResourceInfo("CronJob", "batch", "v1", "cronjobs"),
        ResourceInfo("Pod", "", "v1", "pods"),
        ResourceInfo("ServiceAccount", "", "v1", "serviceaccounts"),
        ResourceInfo("Service", "", "v1", "services"),
        ResourceInfo("ConfigMap", "", "v1", "configmaps"),
    )
}


@dataclass(frozen=True)
class ObjectRef:
    """One API object: kind, namespace, name."""

    kind: str
    namespace: str
    name: str

    @property
    def info(self) -> ResourceInfo:
        try:
            return KINDS[self.kind]
        except KeyError:
            raise MitigationError(f"unsupported kind {self.kind!r}") from None

    def path(self) -> str:
        return f"{self.collection_path()}/{self.name}"

    def collection_path(self) -> str:
        i = self.info
        return f"{i.base()}/namespaces/{self.namespace}/{i.plural}"

    def label(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "namespace": self.namespace, "name": self.name}


def writes_enabled(flag: bool = False, environ: dict[str, str] | None = None) -> bool:
    """Writes are off unless ``--allow-writes`` was given or ``DNSFLEET_ALLOW_WRITES=1``."""
    env = os.environ if environ is None else environ
    return bool(flag) or env.get("DNSFLEET_ALLOW_WRITES", "").strip() == "1"


def make_client(
    kubeconfig: str | Path | None,
    context: str,
    *,
    impersonate_user: str | None = None,
    impersonate_groups: Sequence[str] = (),
) -> ApiClient:
    """An ApiClient for one kubeconfig context, optionally impersonating a user (and groups).

    Impersonation sends ``Impersonate-User`` and one ``Impersonate-Group`` header per group; the
    kubeconfig's own user needs the ``impersonate`` verb for that.
    """
    if impersonate_groups and not impersonate_user:
        raise MitigationError("impersonating groups needs a user to impersonate too")
    path = str(kubeconfig) if kubeconfig else None
    execauth.install()  # exec credential plugins get a timeout and a plain failure reason
    execauth.clear_error()
    try:
        client = k8s_config.new_client_from_config(config_file=path, context=context)
    except ConfigException as e:
        raise MitigationError(f"kubeconfig context {context!r}: {str(e).splitlines()[0]}") from None
    except FileNotFoundError:
        raise MitigationError(f"kubeconfig not found: {path}") from None
    if (err := execauth.take_error()) is not None:
        client.close()
        raise MitigationError(f"kubeconfig context {context!r}: {err}")
    if impersonate_user:
        client.set_default_header("Impersonate-User", impersonate_user)
    client.dnsfleet_impersonate_groups = tuple(impersonate_groups)  # type: ignore[attr-defined]
    return client


def kubeconfig_user(kubeconfig: str | Path | None, context: str) -> str | None:
    """The user name the context refers to in the kubeconfig (a name, never its credentials).

    Files joined with ``os.pathsep`` are searched in order, like kubectl merges them.
    """
    text = str(kubeconfig) if kubeconfig else os.environ.get("KUBECONFIG", "~/.kube/config")
    for part in text.split(os.pathsep):
        try:
            doc = yaml.safe_load(Path(part).expanduser().read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError, UnicodeDecodeError):
            continue
        contexts = doc.get("contexts") if isinstance(doc, dict) else None
        for c in contexts if isinstance(contexts, list) else []:
            if isinstance(c, dict) and c.get("name") == context:
                user = (c.get("context") or {}).get("user")
                return str(user) if user else None
    return None


class Kube:
    """Raw REST access to one cluster with dict bodies. Every call has a timeout."""

    def __init__(self, client: ApiClient, cluster: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.client = client
        self.cluster = cluster
        self.timeout = timeout
        self.kubeconfig_user: str | None = None  # the kubeconfig's user *name*, for identity fallback

    @classmethod
    def from_kubeconfig(
        cls,
        kubeconfig: str | Path | None,
        context: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        impersonate_user: str | None = None,
        impersonate_groups: Sequence[str] = (),
    ) -> Kube:
        client = make_client(
            kubeconfig, context, impersonate_user=impersonate_user, impersonate_groups=impersonate_groups
        )
        kube = cls(client, context, timeout)
        kube.kubeconfig_user = kubeconfig_user(kubeconfig, context)
        return kube

    def close(self) -> None:
        self.client.close()

    # -- raw calls -------------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: dict[str, Any] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        q = {k: v for k, v in (query or {}).items() if v is not None}
        url_path = path + ("?" + urlencode(q, doseq=True) if q else "")
        _, url, headers, _, _ = self.client.param_serialize(
            method, url_path, header_params={"Accept": "application/json"}, auth_settings=["BearerToken"]
        )
        hdrs = urllib3.HTTPHeaderDict(headers)
        for g in getattr(self.client, "dnsfleet_impersonate_groups", ()):
            hdrs.add("Impersonate-Group", g)
        data = None
        if body is not None:
            hdrs["Content-Type"] = content_type
            data = json.dumps(body).encode()
        try:
            resp = self.client.rest_client.pool_manager.request(
                method,
                url,
                body=data,
                headers=hdrs,
                timeout=urllib3.Timeout(total=self.timeout),
                preload_content=True,
            )
        except (urllib3.exceptions.HTTPError, OSError) as e:
            cause = getattr(e, "reason", None) or e
            connect = isinstance(
                cause, urllib3.exceptions.NewConnectionError | urllib3.exceptions.ConnectTimeoutError
            )
            if method != "GET" and not connect:  # sent, but the answer never came
                raise KubeError(
                    0,
                    OUTCOME_UNKNOWN,
                    f"{self.cluster}: no answer after sending {method} {path.split('?')[0]} "
                    f"({type(cause).__name__}): the change may or may not have been made; "
                    "check the object before retrying",
                ) from None
            raise KubeError(
                0, "unreachable", f"{self.cluster}: API server unreachable ({type(cause).__name__})"
            ) from None
        raw = resp.data or b""
        try:
            doc = json.loads(raw) if raw else {}
        except ValueError:
            doc = {}
        if 200 <= resp.status < 300:
            return doc if isinstance(doc, dict) else {"items": doc}
        raise _error(self.cluster, resp.status, doc, raw)

    def get(self, ref: ObjectRef) -> dict[str, Any] | None:
        """The live object, or None when it does not exist."""
        try:
            return self.request("GET", ref.path())
        except KubeError as e:
            if e.status == 404:
                return None
            raise

    def list(self, ref_kind: str, namespace: str, label_selector: str | None = None) -> list[dict[str, Any]]:
        path = ObjectRef(ref_kind, namespace, "x").collection_path()
        items: list[dict[str, Any]] = []
        cont = None
        while True:
            page = self.request(
                "GET", path, query={"labelSelector": label_selector, "limit": 500, "continue": cont}
            )
            items += page.get("items") or []
            cont = (page.get("metadata") or {}).get("continue")
            if not cont:
                return items

    def json_patch(self, ref: ObjectRef, ops: list[dict[str, Any]], dry_run: bool = False) -> dict[str, Any]:
        return self.request(
            "PATCH",
            ref.path(),
            body=ops,
            query={"dryRun": "All" if dry_run else None, "fieldManager": FIELD_MANAGER},
            content_type=JSON_PATCH,
        )

    def server_side_apply(self, ref: ObjectRef, obj: dict[str, Any], dry_run: bool = False) -> dict[str, Any]:
        return self.request(
            "PATCH",
            ref.path(),
            body=obj,
            query={"dryRun": "All" if dry_run else None, "fieldManager": FIELD_MANAGER, "force": "false"},
            content_type=APPLY_PATCH,
        )

    def delete(self, ref: ObjectRef, preconditions: dict[str, str], dry_run: bool = False) -> dict[str, Any]:
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": preconditions}
        if dry_run:
            body["dryRun"] = ["All"]
        return self.request("DELETE", ref.path(), body=body, query={"dryRun": "All" if dry_run else None})

    # -- who am I, what may I do -----------------------------------------------------------------
    def identity(self) -> str:
        """The authenticated user name (SelfSubjectReview), else the kubeconfig user name. Never a token."""
        try:
            doc = self.request(
                "POST",
                "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                body={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
            )
            name = ((doc.get("status") or {}).get("userInfo") or {}).get("username")
            if name:
                return str(name)
        except KubeError:
            pass
        return f"kubeconfig-user:{self.kubeconfig_user}" if self.kubeconfig_user else "unknown"

    def can_i(self, verb: str, ref: ObjectRef, *, whole_collection: bool = False) -> tuple[bool, str]:
        """SelfSubjectAccessReview for the exact verb/resource/namespace(/name).

        Returns (allowed, reason): the reason says who may not do what, in one line.
        """
        info = ref.info
        attrs: dict[str, Any] = {
            "verb": verb,
            "group": info.group,
            "version": info.version,
            "resource": info.plural,
            "namespace": ref.namespace,
        }
        if not whole_collection:
            attrs["name"] = ref.name
        what = f"{verb} {info.plural}{'.' + info.group if info.group else ''} in namespace {ref.namespace}"
        try:
            doc = self.request(
                "POST",
                "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                body={
                    "apiVersion": "authorization.k8s.io/v1",
                    "kind": "SelfSubjectAccessReview",
                    "spec": {"resourceAttributes": attrs},
                },
            )
        except KubeError as e:
            return False, f"could not check permission to {what}: {e.message}"
        status = doc.get("status") or {}
        if status.get("allowed"):
            return True, f"allowed to {what}"
        why = status.get("reason") or status.get("evaluationError") or "no RBAC rule allows it"
        return False, f"not allowed to {what} on {self.cluster} ({why})"


def _error(cluster: str, status: int, doc: Any, raw: bytes) -> KubeError:
    reason = ""
    message = ""
    if isinstance(doc, dict):
        reason = str(doc.get("reason") or "")
        message = str(doc.get("message") or "")
    if not message:
        message = raw[:200].decode("utf-8", "replace") or f"HTTP {status}"
    message = " ".join(message.split())
    if status == 401:
        message = "the API server rejected the credentials"
    prefix = {401: "unauthorized", 403: "forbidden", 409: "conflict", 404: "not found", 422: "rejected"}.get(
        status, f"HTTP {status}"
    )
    return KubeError(status, reason, f"{cluster}: {prefix}: {message}")
