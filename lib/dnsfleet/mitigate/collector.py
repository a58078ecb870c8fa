"""``dnsfleet deploy collector --apply``: the collector's manifests (``dnsfleet.deploy``) applied through
the mitigation flow, and undone from the audit log.

``plan_deploy`` compares each manifest with the live object (only the fields the manifest sets:
``objects.project``) and plans a server-side apply (field manager ``dnsfleet``, ``force=false``) of
what is missing or different; an object that already matches is skipped, so a second deploy is a
no-op. The plan is all-or-nothing (``Plan.all_or_nothing``): RBAC without its CronJob, or a CronJob
without its RBAC, helps no one. When the collector's namespace does not exist yet, the objects in it
cannot be dry-run by the server (the namespace lifecycle admission rejects them): their dry run is
``deferred`` until apply has created the namespace (``flow.Controller._apply_all``).

What dnsfleet does not own it does not take over: an existing object of the same name without the
``dnsfleet`` apply manager blocks the plan, except the Namespace (operators often create it first to
hold the store Secret), which only gets the manifest's labels added.

``plan_undo`` reads the audit log: per object, the ``deploy-collector`` records since its last undo;
the first one's ``previous`` is what the object looked like before dnsfleet touched it: ``None``
(dnsfleet created it: delete it, with the live uid/resourceVersion as preconditions, only while the
``dnsfleet`` apply manager is still on it) or the fields as they were (server-side apply them back).
A namespace that holds Secrets (the store credentials the operator made) is kept, not deleted with
them. The audit file is input, not truth: ``undo_record_problem`` accepts only records dnsfleet could
have written for these objects.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from dnsfleet.kube import FIELD_MANAGER, Kube, ObjectRef
from dnsfleet.kube.refs import KINDS
from dnsfleet.mitigate.audit import record_problem
from dnsfleet.mitigate.errors import MitigationError
from dnsfleet.mitigate.objects import clean, project
from dnsfleet.mitigate.plan import Change, Plan, Skip

MITIGATION = "deploy-collector"
UNDO = "undo-" + MITIGATION
# Apply order; undo goes the other way.
ORDER = ("Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "CronJob")
READ_VERBS = frozenset({"get", "list", "watch"})
METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"


def ref_of(obj: dict[str, Any]) -> ObjectRef:
    meta = obj.get("metadata") or {}
    return ObjectRef(obj["kind"], meta.get("namespace") or "", meta["name"])


def applied_by_dnsfleet(obj: dict[str, Any]) -> bool:
    """The live object has fields server-side applied by dnsfleet's field manager."""
    return any(
        m.get("manager") == FIELD_MANAGER and m.get("operation") == "Apply"
        for m in (obj.get("metadata") or {}).get("managedFields") or []
    )


def _with_version(obj: dict[str, Any], live: dict[str, Any]) -> dict[str, Any]:
    """The apply body with the live resourceVersion: a concurrent edit becomes a conflict."""
    return {**obj, "metadata": {**obj["metadata"], "resourceVersion": live["metadata"]["resourceVersion"]}}


def plan_deploy(kube: Kube, objects: list[dict[str, Any]]) -> Plan:
    """Plan applying the collector ``objects`` (``deploy.collector_manifests``) to ``kube``'s cluster."""
    plan = Plan(cluster=kube.cluster, mitigation=MITIGATION, all_or_nothing=True)
    new_namespace: ObjectRef | None = None
    for obj in objects:
        ref = ref_of(obj)
        live = kube.get(ref)
        shown = project(clean(live), obj) if live is not None else None
        deleting = live is not None and bool((live.get("metadata") or {}).get("deletionTimestamp"))
        if live is not None and shown == obj and not deleting:
            plan.skipped.append(Skip(ref.label(), "already as planned: nothing to change"))
            continue
        blocked = None
        if deleting:
            blocked = f"{ref.label()} is being deleted: deploy again once it is gone"
        elif live is not None and ref.kind != "Namespace" and not applied_by_dnsfleet(live):
            blocked = (
                f"{ref.label()} already exists and was not applied by dnsfleet: not taken over "
                "(delete it first if it is left over from an earlier install)"
            )
        notes = []
        if live is not None and ref.kind == "Namespace" and not applied_by_dnsfleet(live):
            notes.append(
                "the namespace exists (not created by dnsfleet): only its labels are added; undo removes them"
            )
        plan.changes.append(
            Change(
                ref=ref,
                action="apply",
                why=("create" if live is None else "update") + f" {ref.label()} (dnsfleet collector)",
                before=shown,
                after=obj,
                body=obj if live is None else _with_version(obj, live),
                previous=shown,
                applied=obj,
                notes=notes,
                blocked=blocked,
                needs=new_namespace if ref.namespace and ref.namespace == _name(new_namespace) else None,
            )
        )
        if ref.kind == "Namespace" and live is None:
            new_namespace = ref
    if not plan.changes:
        plan.notes.append(
            f"the collector on {kube.cluster} already matches these manifests: nothing to apply"
        )
    return plan


def _name(ref: ObjectRef | None) -> str | None:
    return ref.name if ref is not None else None


def _identity_problem(value: Any, obj: dict[str, str], what: str) -> str | None:
    if not isinstance(value, dict):
        return f"{what} is not an object"
    meta = value.get("metadata")
    info = KINDS[obj["kind"]]
    if value.get("kind") != obj["kind"] or value.get("apiVersion") != info.api_version:
        return f"{what} is not a {obj['kind']} ({info.api_version})"
    if not isinstance(meta, dict) or meta.get("name") != obj["name"]:
        return f"{what} names another object"
    if (meta.get("namespace") or "") != obj["namespace"]:
        return f"{what} is in another namespace"
    return None


def _within(value: Any, shape: Any) -> bool:
    """Every mapping key of ``value`` is one ``shape`` has at the same place (lists: not compared)."""
    if isinstance(value, dict):
        return isinstance(shape, dict) and all(k in shape and _within(v, shape[k]) for k, v in value.items())
    return True


def undo_record_problem(rec: Any) -> str | None:
    """Why undo must not act on ``rec`` (a deploy-collector record), or None. Undo writes ``previous``
    back, so it must be the same object, only fields the manifest sets, read-only RBAC, the same
    role and subjects in a binding, the same service account in the CronJob."""
    if (why := record_problem(rec)) is not None:
        return why
    obj = rec["object"]
    if obj["kind"] not in ORDER:
        return f"the collector has no {obj['kind']}"
    if rec.get("action") != "apply":
        return "not an apply"
    applied, previous = rec.get("applied"), rec.get("previous")
    if (why := _identity_problem(applied, obj, "applied")) is not None:
        return why
    if previous is None:
        return None
    if (why := _identity_problem(previous, obj, "previous")) is not None:
        return why
    if not _within(previous, applied):
        return "previous holds fields the collector's manifest does not set"
    if obj["kind"] in ("ClusterRole", "Role"):
        rules = previous.get("rules") or []
        if not isinstance(rules, list) or not all(
            isinstance(r, dict) and set(r.get("verbs") or []) <= READ_VERBS for r in rules
        ):
            return "previous rules grant more than get/list/watch"
    if obj["kind"] in ("ClusterRoleBinding", "RoleBinding"):
        for key in ("roleRef", "subjects"):
            if key in previous and previous[key] != applied.get(key):
                return f"previous {key} differs from the collector's"
    if obj["kind"] == "CronJob":
        spec = (((previous.get("spec") or {}).get("jobTemplate") or {}).get("spec") or {}).get("template")
        pod = ((spec or {}).get("spec") or {}) if isinstance(spec, dict) else {}
        want = applied["spec"]["jobTemplate"]["spec"]["template"]["spec"].get("serviceAccountName")
        if "serviceAccountName" in pod and pod["serviceAccountName"] != want:
            return "previous runs under another service account"
    return None


def records_to_undo(records: Iterable[dict[str, Any]], cluster: str) -> dict[ObjectRef, list[dict[str, Any]]]:
    """Per object, the deploy records since its last successful undo (results ``ok`` and ``unknown``:
    an apply whose answer was lost may have been made), oldest first."""
    out: dict[ObjectRef, list[dict[str, Any]]] = {}
    for rec in records:
        if rec.get("cluster") != cluster:
            continue
        o = rec["object"]
        ref = ObjectRef(o["kind"], o["namespace"], o["name"])
        if rec.get("mitigation") == UNDO and rec.get("result") == "ok":
            out.pop(ref, None)
        elif rec.get("mitigation") == MITIGATION and rec.get("result") in ("ok", "unknown"):
            out.setdefault(ref, []).append(rec)
    return out


def _secrets(kube: Kube, namespace: str) -> list[str]:
    """Names of the Secrets in ``namespace`` (metadata only: their data is never read)."""
    doc = kube.api.get(f"/api/v1/namespaces/{namespace}/secrets", accept=METADATA_LIST)
    items = doc.get("items") if isinstance(doc, dict) else None
    return sorted(str((i.get("metadata") or {}).get("name")) for i in items or [])


def plan_undo(kube: Kube, records: list[dict[str, Any]]) -> Plan:
    """Plan undoing every collector deploy on ``kube``'s cluster recorded in ``records`` (the audit
    log) and not undone yet: delete what it created, apply back what it changed."""
    plan = Plan(cluster=kube.cluster, mitigation=UNDO, all_or_nothing=True)
    todo = records_to_undo(records, kube.cluster)
    for ref, recs in sorted(
        todo.items(), key=lambda kv: -ORDER.index(kv[0].kind) if kv[0].kind in ORDER else 0
    ):
        first = recs[0]
        if (why := undo_record_problem(first)) is not None:
            raise MitigationError(
                f"{ref.label()}: the audit record is not one dnsfleet wrote ({why}); not undone"
            )
        live = kube.get(ref)
        previous = first["previous"]
        if live is None:
            plan.skipped.append(Skip(ref.label(), "does not exist (any more): nothing to undo"))
            continue
        meta = live.get("metadata") or {}
        if previous is None:
            if not applied_by_dnsfleet(live):
                plan.skipped.append(
                    Skip(
                        ref.label(),
                        "no longer carries dnsfleet's apply (replaced by someone else): left alone",
                    )
                )
                continue
            if ref.kind == "Namespace" and (held := _secrets(kube, ref.name)):
                plan.skipped.append(
                    Skip(
                        ref.label(),
                        f"kept: it holds Secret(s) {', '.join(held)} that dnsfleet did not create; "
                        f"delete the namespace yourself when they are no longer needed",
                    )
                )
                continue
            plan.changes.append(
                Change(
                    ref=ref,
                    action="delete",
                    why=f"delete {ref.label()}, created by the collector deploy",
                    before=clean(live),
                    after=None,
                    body={"uid": meta.get("uid"), "resourceVersion": meta.get("resourceVersion")},
                    previous=clean(live),
                )
            )
            continue
        now = project(clean(live), first["applied"])
        if now == previous:
            plan.skipped.append(Skip(ref.label(), "already as before the deploy"))
            continue
        plan.changes.append(
            Change(
                ref=ref,
                action="apply",
                why=f"restore {ref.label()} as it was before the collector deploy",
                before=now,
                after=previous,
                body=_with_version(previous, live),
                previous=now,
                applied=previous,
            )
        )
    if not todo:
        plan.notes.append(f"the audit log records no collector deploy on {kube.cluster} that is not undone")
    return plan
