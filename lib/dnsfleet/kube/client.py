"""``Kube``: one cluster by name, with object-level verbs on top of the request class.

Get, list, JSON patch, server-side apply and delete of ``ObjectRef`` objects as plain dicts; the caller's
identity (SelfSubjectReview) and SelfSubjectAccessReview. Every call goes through ``Api`` (timeouts,
retries, scrubbing) and fails with a ``KubeError`` whose text starts with the cluster's name.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from kubernetes.client import ApiClient

from dnsfleet.kube.config import context_target, kubeconfig_user, new_api_client
from dnsfleet.kube.errors import KubeError
from dnsfleet.kube.lists import PAGE_LIMIT, list_all
from dnsfleet.kube.refs import ObjectRef
from dnsfleet.kube.request import JSON, Api

DEFAULT_TIMEOUT = 10.0
JSON_PATCH = "application/json-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
FIELD_MANAGER = "dnsfleet"


class Kube:
    """Object-level access to one cluster with dict bodies. Every call has a timeout."""

    def __init__(self, client: ApiClient, cluster: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.client = client
        self.cluster = cluster
        self.timeout = timeout
        self.api = Api(client, timeout, cluster=cluster)
        self.kubeconfig_user: str | None = None  # the kubeconfig's user *name*, for identity fallback

    @classmethod
    def from_kubeconfig(
        cls,
        kubeconfig: str | Path | None,
        context: str | None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        impersonate_user: str | None = None,
        impersonate_groups: Sequence[str] = (),
    ) -> Kube:
        """A client for one kubeconfig context. Raises ConfigError (no such file or context) or
        ClusterFailed (the context cannot be used, e.g. a failing credential plugin)."""
        target = context_target(kubeconfig, context)
        try:
            client = new_api_client(
                target, timeout, impersonate_user=impersonate_user, impersonate_groups=impersonate_groups
            )
        except KubeError as e:
            e.cluster = target.name
            raise
        kube = cls(client, target.name, timeout)
        kube.kubeconfig_user = kubeconfig_user(target)
        return kube

    def close(self) -> None:
        self.client.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: dict[str, Any] | None = None,
        content_type: str = JSON,
    ) -> dict[str, Any]:
        """One request; the JSON answer as a dict (a list answer comes back as ``{"items": [...]}``)."""
        if method.upper() == "GET" and body is None:
            doc = self.api.get(path, {k: v for k, v in (query or {}).items() if v is not None} or None)
        else:
            raw = self.api.request(method, path, query=query, body=body, content_type=content_type)
            try:
                doc = orjson.loads(raw) if raw else {}
            except orjson.JSONDecodeError:  # the write was accepted (2xx); its echo is not needed
                doc = {}
        return doc if isinstance(doc, dict) else {"items": doc}

    def get(self, ref: ObjectRef) -> dict[str, Any] | None:
        """The live object, or None when it does not exist."""
        try:
            return self.request("GET", ref.path())
        except KubeError as e:
            if e.status == 404:
                return None
            raise

    def list(self, kind: str, namespace: str, label_selector: str | None = None) -> list[dict[str, Any]]:
        """Every object of ``kind`` in ``namespace`` (paginated, restarted on 410 Gone)."""
        path = ObjectRef(kind, namespace, "x").collection_path()
        query = {"labelSelector": label_selector} if label_selector else None
        return list_all(self.api, path, lambda obj: obj, query, limit=PAGE_LIMIT)

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
        body: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": preconditions}
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

    def access_review(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """The ``status`` of a SelfSubjectAccessReview of ``attrs`` (its ``resourceAttributes``)."""
        doc = self.request(
            "POST",
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            body={
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": attrs},
            },
        )
        return doc.get("status") or {}

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
        where = f"in namespace {ref.namespace}" if info.namespaced else "(cluster-wide)"
        what = f"{verb} {info.plural}{'.' + info.group if info.group else ''} {where}"
        try:
            status = self.access_review(attrs)
        except KubeError as e:
            return False, f"could not check permission to {what}: {e}"
        if status.get("allowed"):
            return True, f"allowed to {what}"
        why = status.get("reason") or status.get("evaluationError") or "no RBAC rule allows it"
        return False, f"not allowed to {what} on {self.cluster} ({why})"
