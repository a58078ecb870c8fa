"""The probe's Kubernetes side: short-lived probe pods on chosen nodes, their results, and clean-up.

``ProbeRun(kube, options).run()``:

1. **Access check** (SelfSubjectAccessReview, ``PERMISSIONS``) before anything is created: a cluster
   where the probe may not run gets the denied permissions as its reason (``ProbeRefused``).
2. **Nodes**: ready nodes matching ``--nodes`` (a label selector), at most ``max_nodes``.
3. A **namespace** ``dnsfleet-probe-<random>`` labelled ``pod-security.kubernetes.io/enforce=restricted``;
   a **ConfigMap** with the probe program (``program.py``; no custom image); per node and resolver one
   **pod** pinned to the node (``spec.nodeName``), ``restartPolicy: Never``, ``activeDeadlineSeconds``,
   no service account token, non-root, no privilege escalation, all capabilities dropped, read-only root
   file system, ``RuntimeDefault`` seccomp (the ``restricted`` Pod Security Standard), a stock Python
   image (glibc: Debian-based, musl: Alpine-based; both overridable for registry mirrors), tolerating
   every taint (a node is probed whatever runs on it).
4. **Wait** until every pod has finished or the deadline passed.
5. **Results**: the pod's log (the program prints one JSON object); when the API server cannot fetch
   logs, the container's termination message (the program also writes it to
   ``/dev/termination-log``). A pod that did not run says why (``Pending: ErrImagePull`` ...).
6. **Clean-up, always** (also on Ctrl-C and on failure, in ``finally``): the pods (grace period 0:
   they have finished or are being abandoned), the ConfigMap, then the namespace.

Every call goes through ``dnsfleet.kube.Kube`` (the one client layer).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dnsfleet.kube import Kube, KubeError
from dnsfleet.probe import program_source

LABEL = "dnsfleet.io/probe"
RESOLVERS = ("glibc", "musl")
DEFAULT_IMAGES = {
    "glibc": "docker.io/library/python:3.12-slim",
    "musl": "docker.io/library/python:3.12-alpine",
}
NAMES = ("kubernetes.default.svc", "kube-dns.kube-system.svc")
UID = 65534  # nobody

# (verb, group, resource, subresource, namespaced): what a probe run does, checked before it starts.
PERMISSIONS = (
    ("create", "", "namespaces", "", False),
    ("delete", "", "namespaces", "", False),
    ("list", "", "nodes", "", False),
    ("create", "", "configmaps", "", True),
    ("delete", "", "configmaps", "", True),
    ("create", "", "pods", "", True),
    ("get", "", "pods", "", True),
    ("list", "", "pods", "", True),
    ("delete", "", "pods", "", True),
    ("get", "", "pods", "log", True),
)


class ProbeRefused(Exception):
    """The probe may not run on this cluster; ``str(err)`` says why (one line)."""


def rbac_yaml() -> str:
    """The ClusterRole a probe run needs (``dnsfleet probe --print-rbac``)."""
    rules: dict[tuple[str, str], list[str]] = {}
    for verb, group, res, sub, _ in PERMISSIONS:
        rules.setdefault((group, f"{res}/{sub}" if sub else res), []).append(verb)
    lines = [
        "apiVersion: rbac.authorization.k8s.io/v1",
        "kind: ClusterRole",
        "metadata:",
        "  name: dnsfleet-probe",
        "rules:",
    ]
    for (group, res), verbs in rules.items():
        lines += [f'- apiGroups: ["{group}"]', f"  resources: [{res}]", f"  verbs: [{', '.join(verbs)}]"]
    return "\n".join(lines) + "\n"


@dataclass
class ProbeOptions:
    resolvers: tuple[str, ...] = RESOLVERS
    images: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_IMAGES))
    node_selector: str | None = None
    max_nodes: int = 10
    names: tuple[str, ...] = NAMES
    extra_name: str | None = None
    lookups: int = 20
    concurrency: int = 10
    deadline_s: int = 120  # the pod's activeDeadlineSeconds; the program stops a little earlier
    dns_options: tuple[tuple[str, str | None], ...] = ()
    poll_s: float = 2.0

    def __post_init__(self) -> None:
        bad = [r for r in self.resolvers if r not in RESOLVERS]
        if bad or not self.resolvers:
            raise ValueError(f"--resolver takes {', '.join(RESOLVERS)} (got {', '.join(bad) or 'none'})")
        if self.lookups < 1 or self.concurrency < 1 or self.max_nodes < 1:
            raise ValueError("lookups, concurrency and max nodes must be >= 1")
        if not 20 <= self.deadline_s <= 3600:
            raise ValueError("the probe deadline must be 20..3600 seconds")
        for r in self.resolvers:
            if not self.images.get(r):
                raise ValueError(f"no image for the {r} probe")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ProbeRun:
    """One probe run on one cluster (see the module docstring)."""

    def __init__(
        self, kube: Kube, options: ProbeOptions, progress: Callable[[str], None] | None = None
    ) -> None:
        self.kube = kube
        self.opts = options
        self.progress = progress or (lambda _msg: None)
        self.namespace = f"dnsfleet-probe-{secrets.token_hex(3)}"
        self.created_pods: list[str] = []
        self.created_configmap = False
        self.created_namespace = False
        self.logs_readable = True  # False after the API server failed to fetch one pod's log

    # -- 1. access -----------------------------------------------------------------------------------
    def check_access(self) -> None:
        denied = []
        for verb, group, res, sub, namespaced in PERMISSIONS:
            attrs: dict[str, Any] = {"verb": verb, "group": group, "resource": res}
            if sub:
                attrs["subresource"] = sub
            if namespaced:
                attrs["namespace"] = self.namespace
            if not self.kube.access_review(attrs).get("allowed"):
                denied.append(f"{verb} {res}{'/' + sub if sub else ''}")
        if denied:
            raise ProbeRefused(
                f"{self.kube.cluster}: the probe may not run: not allowed to {', '.join(denied)} "
                "(dnsfleet probe --print-rbac shows the ClusterRole it needs)"
            )

    # -- 2. nodes ------------------------------------------------------------------------------------
    def nodes(self) -> tuple[list[str], list[str]]:
        """(ready nodes to probe, notes about the others)."""
        query = {"labelSelector": self.opts.node_selector} if self.opts.node_selector else None
        doc = self.kube.request("GET", "/api/v1/nodes", query=query)
        ready, notes = [], []
        for n in doc.get("items") or []:
            name = (n.get("metadata") or {}).get("name")
            conds = {c.get("type"): c.get("status") for c in (n.get("status") or {}).get("conditions") or []}
            if conds.get("Ready") == "True" and not (n.get("spec") or {}).get("unschedulable"):
                ready.append(name)
            else:
                notes.append(f"{name}: not ready or cordoned, not probed")
        ready.sort()
        if len(ready) > self.opts.max_nodes:
            notes.append(f"{len(ready) - self.opts.max_nodes} more ready node(s) not probed (--max-nodes)")
        return ready[: self.opts.max_nodes], notes

    # -- 3. objects ----------------------------------------------------------------------------------
    def _labels(self) -> dict[str, str]:
        return {LABEL: "true", "app.kubernetes.io/managed-by": "dnsfleet"}

    def create_namespace(self) -> None:
        self.kube.request(
            "POST",
            "/api/v1/namespaces",
            body={
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": self.namespace,
                    "labels": {
                        **self._labels(),
                        "pod-security.kubernetes.io/enforce": "restricted",
                        "pod-security.kubernetes.io/enforce-version": "latest",
                    },
                },
            },
        )
        self.created_namespace = True

    def create_configmap(self) -> None:
        self.kube.request(
            "POST",
            f"/api/v1/namespaces/{self.namespace}/configmaps",
            body={
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "dnsfleet-probe", "labels": self._labels()},
                "data": {"program.py": program_source()},
            },
        )
        self.created_configmap = True

    def pod_manifest(self, node: str, resolver: str) -> dict[str, Any]:
        o = self.opts
        names = [*o.names, *([o.extra_name] if o.extra_name else [])]
        args = [
            "/probe/program.py",
            "--lookups",
            str(o.lookups),
            "--concurrency",
            str(o.concurrency),
            "--deadline",
            str(max(10, o.deadline_s - 10)),
            "--termination-log",
            "/dev/termination-log",
            *names,
        ]
        spec: dict[str, Any] = {
            "nodeName": node,
            "restartPolicy": "Never",
            "activeDeadlineSeconds": o.deadline_s,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "terminationGracePeriodSeconds": 1,
            "tolerations": [{"operator": "Exists"}],
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": UID,
                "runAsGroup": UID,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "probe",
                    "image": o.images[resolver],
                    "command": ["python3"],
                    "args": args,
                    "env": [{"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}],
                    "resources": {
                        "requests": {"cpu": "50m", "memory": "32Mi"},
                        "limits": {"cpu": "500m", "memory": "128Mi"},
                    },
                    "terminationMessagePolicy": "FallbackToLogsOnError",
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "volumeMounts": [{"name": "program", "mountPath": "/probe", "readOnly": True}],
                }
            ],
            "volumes": [{"name": "program", "configMap": {"name": "dnsfleet-probe"}}],
        }
        if o.dns_options:
            spec["dnsConfig"] = {
                "options": [{"name": k, **({"value": v} if v is not None else {})} for k, v in o.dns_options]
            }
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "generateName": f"probe-{resolver}-",
                "labels": {**self._labels(), "dnsfleet.io/resolver": resolver},
                "annotations": {"dnsfleet.io/node": node},
            },
            "spec": spec,
        }

    def create_pod(self, node: str, resolver: str) -> str:
        doc = self.kube.request(
            "POST", f"/api/v1/namespaces/{self.namespace}/pods", body=self.pod_manifest(node, resolver)
        )
        name = str((doc.get("metadata") or {}).get("name"))
        self.created_pods.append(name)
        return name

    # -- 4. wait -------------------------------------------------------------------------------------
    def wait(
        self, pods: dict[str, tuple[str, str]], sleep: Callable[[float], None] = time.sleep
    ) -> dict[str, dict[str, Any]]:
        """Poll until every pod has finished or ``deadline_s`` + 30 s passed; the last pod objects."""
        deadline = time.monotonic() + self.opts.deadline_s + 30
        last: dict[str, dict[str, Any]] = {}
        while True:
            doc = self.kube.request(
                "GET", f"/api/v1/namespaces/{self.namespace}/pods", query={"labelSelector": f"{LABEL}=true"}
            )
            last = {(p.get("metadata") or {}).get("name"): p for p in doc.get("items") or []}
            done = [
                n
                for n in pods
                if (last.get(n, {}).get("status") or {}).get("phase") in ("Succeeded", "Failed")
            ]
            self.progress(f"{len(done)}/{len(pods)} probe pod(s) finished")
            if len(done) == len(pods) or time.monotonic() > deadline:
                return last
            sleep(self.opts.poll_s)

    # -- 5. results ----------------------------------------------------------------------------------
    def result(self, name: str, node: str, resolver: str, pod: dict[str, Any] | None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "node": node,
            "resolver": resolver,
            "image": self.opts.images[resolver],
            "pod": name,
        }
        status = (pod or {}).get("status") or {}
        phase = status.get("phase")
        term = next(
            ((cs.get("state") or {}).get("terminated") for cs in status.get("containerStatuses") or []),
            None,
        )
        if phase not in ("Succeeded", "Failed"):
            waiting = next(
                ((cs.get("state") or {}).get("waiting") for cs in status.get("containerStatuses") or []), None
            )
            why = (waiting or {}).get("reason") or status.get("reason") or "not started"
            out["status"] = f"did not finish: {phase or 'unknown'} ({why})"
            return out
        text, source = None, None
        if self.logs_readable:
            try:
                raw = self.kube.api.request(
                    "GET",
                    f"/api/v1/namespaces/{self.namespace}/pods/{name}/log",
                    query={"container": "probe"},
                )
                text, source = raw.decode("utf-8", "replace"), "log"
            except KubeError as e:
                # the API server cannot reach the node's kubelet (5xx, no answer): it will not for the next
                # pod either, and each attempt would wait out the read retries
                if not e.status or e.status >= 500:
                    self.logs_readable = False
        report = _report(text)
        if report is None and term and term.get("message"):
            report, source = _report(term["message"]), "termination message"
        if report is None:
            msg = " ".join(
                str((term or {}).get("message") or (term or {}).get("reason") or "no output").split()
            )
            out["status"] = f"{phase}: {msg[:200]}"
            return out
        out["status"], out["report"], out["source"] = "ok", report, source
        return out

    # -- 6. clean-up ---------------------------------------------------------------------------------
    def cleanup(self) -> list[str]:
        """Delete everything this run created; the problems, if any (never raises)."""
        problems = []
        base = f"/api/v1/namespaces/{self.namespace}"
        for name in list(self.created_pods):
            try:
                self.kube.request("DELETE", f"{base}/pods/{name}", query={"gracePeriodSeconds": 0})
                self.created_pods.remove(name)
            except KubeError as e:
                if e.status == 404:
                    self.created_pods.remove(name)
                else:
                    problems.append(f"pod {name}: {e}")
        steps = (("created_configmap", f"{base}/configmaps/dnsfleet-probe"), ("created_namespace", base))
        for flag, path in steps:
            if not getattr(self, flag):
                continue
            try:
                self.kube.request("DELETE", path)
                setattr(self, flag, False)
            except KubeError as e:
                if e.status == 404:
                    setattr(self, flag, False)
                else:
                    problems.append(f"{path}: {e}")
        return problems

    # -- all of it -----------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """The probe run as the probe log stores it. Raises ProbeRefused or KubeError (after clean-up)."""
        self.check_access()
        nodes, notes = self.nodes()
        if not nodes:
            raise ProbeRefused(
                f"{self.kube.cluster}: no ready node matches {self.opts.node_selector or 'any'}"
            )
        pods: dict[str, tuple[str, str]] = {}
        try:
            self.create_namespace()
            self.create_configmap()
            for node in nodes:
                for resolver in self.opts.resolvers:
                    pods[self.create_pod(node, resolver)] = (node, resolver)
            self.progress(f"{len(pods)} probe pod(s) created in namespace {self.namespace}")
            last = self.wait(pods)
            results = [self.result(name, n, r, last.get(name)) for name, (n, r) in pods.items()]
        finally:
            problems = self.cleanup()
        notes += [f"clean-up: {p}" for p in problems]
        return {
            "time": _now(),
            "cluster": self.kube.cluster,
            "namespace": self.namespace,
            "options": {
                "lookups": self.opts.lookups,
                "concurrency": self.opts.concurrency,
                "names": [*self.opts.names, *([self.opts.extra_name] if self.opts.extra_name else [])],
                "dns_options": [k if v is None else f"{k}:{v}" for k, v in self.opts.dns_options],
            },
            "results": sorted(results, key=lambda r: (r["node"], r["resolver"])),
            "notes": notes,
        }


def _report(text: str | None) -> dict[str, Any] | None:
    """The probe program's JSON object from its output (the last line that is one)."""
    for line in reversed((text or "").strip().splitlines()):
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict) and str(doc.get("format", "")).startswith("dnsfleet-probe/"):
            return doc
    return None
