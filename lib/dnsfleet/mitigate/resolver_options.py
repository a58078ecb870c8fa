"""Mitigation 1: resolver options in workload pod templates (rules M1-M5, facts §3).

``dnsConfig.options`` is an atomic list (no merge key): read the live template, add or replace options
by name, and write the whole ``dnsConfig`` back, so existing options, nameservers and searches survive.
The JSON patch starts with a ``test`` of ``/metadata/resourceVersion``: a concurrent change makes the API
server refuse the patch and nothing is overwritten. The previous ``dnsConfig`` is kept in the annotation
``dnsfleet.io/previous-dns-config`` on the object (and in the audit record) for undo.

An option is offered only where the workload's resolver honours it
(``dnsfleet.rules.resolver.option_honoured``): never ``single-request-reopen``/``use-vc`` to musl.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from dnsfleet.kube import ClusterFailed, Kube, KubeError, ObjectRef
from dnsfleet.mitigate.errors import MitigationError
from dnsfleet.mitigate.objects import apply_json_patch, escape, get_path
from dnsfleet.mitigate.plan import Change, Plan, Skip
from dnsfleet.rules.managers import managed_by
from dnsfleet.rules.resolver import ANNOTATION as RESOLVER_ANNOTATION
from dnsfleet.rules.resolver import infer_resolver, option_honoured

MITIGATION = "resolver-options"
ANNOTATION = "dnsfleet.io/previous-dns-config"

# Options dnsfleet writes, with the accepted value range (None: a flag without value). The ranges are
# the strictest caps of the resolvers that read them (glibc: ndots 15, timeout 30, attempts 5; §2.1).
OPTION_RANGES: dict[str, tuple[int, int] | None] = {
    "single-request-reopen": None,
    "single-request": None,
    "use-vc": None,
    "ndots": (0, 15),
    "timeout": (1, 30),
    "attempts": (1, 5),
}

TEMPLATE_SPEC = {
    "Deployment": "/spec/template/spec",
    "StatefulSet": "/spec/template/spec",
    "DaemonSet": "/spec/template/spec",
    "CronJob": "/spec/jobTemplate/spec/template/spec",
}
NOT_PATCHABLE = {
    "Pod": "bare Pod: a pod's dnsConfig cannot change; recreate needed (add dnsConfig to its manifest)",
    "Job": "Job: its pod template is immutable once created; recreate needed (or patch its CronJob)",
    "ReplicaSet": "ReplicaSet without a Deployment: changing its template does not replace running pods; "
    "recreate needed",
}


@dataclass(frozen=True)
class Target:
    """A workload to patch, with the resolver the engine inferred for it."""

    namespace: str
    kind: str
    name: str
    resolver: str = "unknown"

    def label(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


def targets_from_workloads(workloads: Any, cluster: str) -> list[Target]:
    """Targets from rows of the assessment's ``workloads`` frame for one cluster."""
    rows = workloads[workloads["cluster"] == cluster]
    return [
        Target(str(r["namespace"]), str(r["kind"]), str(r["name"]), str(r["resolver"] or "unknown"))
        for _, r in rows.iterrows()
    ]


def target_from_live(kube: Kube, ref: ObjectRef) -> Target:
    """A target whose resolver is inferred from the live pod template: the ``dnsfleet.io/resolver``
    annotation, else the first container's image (rules R11); ``unknown`` when it cannot be read."""
    spec_path = TEMPLATE_SPEC.get(ref.kind)
    resolver = "unknown"
    if spec_path is not None:
        try:
            live = kube.get(ref)
        except KubeError as e:
            if isinstance(e, ClusterFailed):  # nothing here can be read: say so
                raise
            live = None
        template = get_path(live, spec_path.rsplit("/", 1)[0]) if live else None
        if isinstance(template, dict):
            ann = ((template.get("metadata") or {}).get("annotations") or {}).get(RESOLVER_ANNOTATION)
            containers = (template.get("spec") or {}).get("containers") or [{}]
            resolver, _ = infer_resolver(containers[0].get("image"), ann)
    return Target(ref.namespace, ref.kind, ref.name, resolver)


def validate_options(options: Mapping[str, str | None]) -> dict[str, str | None]:
    """Normalised options; MitigationError (one line) for anything dnsfleet does not write."""
    if not options:
        raise MitigationError("no resolver option chosen")
    out: dict[str, str | None] = {}
    for name, value in options.items():
        if name not in OPTION_RANGES:
            raise MitigationError(f"option {name!r} is not one dnsfleet writes ({', '.join(OPTION_RANGES)})")
        rng = OPTION_RANGES[name]
        if rng is None:
            if value not in (None, ""):
                raise MitigationError(f"option {name} takes no value")
            out[name] = None
            continue
        text = str(value).strip() if value is not None else ""
        if not text.isdigit() or not rng[0] <= int(text) <= rng[1]:
            raise MitigationError(f"option {name} needs a whole number {rng[0]}-{rng[1]}, got {value!r}")
        out[name] = str(int(text))  # values are strings in the API (M3)
    return out


def offered_options(resolver: str) -> list[str]:
    """The options dnsfleet writes that this resolver is known to honour."""
    return [o for o in OPTION_RANGES if option_honoured(resolver, o) == "yes"]


def merge_options(dns_config: Mapping[str, Any] | None, options: Mapping[str, str | None]) -> dict[str, Any]:
    """The new dnsConfig: existing fields kept, options added or replaced by name, order preserved (M1)."""
    new = json.loads(json.dumps(dict(dns_config or {})))
    current = list(new.get("options") or [])
    names = [o.get("name") for o in current]
    for name, value in options.items():
        item: dict[str, Any] = {"name": name} if value is None else {"name": name, "value": value}
        if name in names:
            current[names.index(name)] = item
        else:
            current.append(item)
            names.append(name)
    new["options"] = current
    return new


def _annotation_ops(obj: dict[str, Any], value: str | None) -> list[dict[str, Any]]:
    """Ops that set (value) or remove (None) the previous-dnsConfig annotation."""
    ann = (obj.get("metadata") or {}).get("annotations")
    key = "/metadata/annotations/" + escape(ANNOTATION)
    if value is None:
        if not ann or ANNOTATION not in ann:
            return []
        if len(ann) == 1:
            return [{"op": "remove", "path": "/metadata/annotations"}]
        return [{"op": "remove", "path": key}]
    if ann is None:
        return [{"op": "add", "path": "/metadata/annotations", "value": {ANNOTATION: value}}]
    return [{"op": "add", "path": key, "value": value}]


def _encode(dns_config: Any) -> str:
    return json.dumps(dns_config, sort_keys=True, separators=(",", ":"))


def _rollout_note(kind: str, obj: dict[str, Any]) -> str:
    """What happens to running pods once the template changes, for this object as it is configured."""
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    if kind == "CronJob":
        return "takes effect for Jobs started after the change; running Jobs keep their settings"
    strategy = spec.get("updateStrategy") if isinstance(spec.get("updateStrategy"), dict) else {}
    if kind in ("StatefulSet", "DaemonSet") and strategy.get("type") == "OnDelete":
        return (
            "updateStrategy OnDelete: changing the pod template restarts nothing; each pod gets the new "
            "dnsConfig only when it is deleted (delete them one by one to roll it out)"
        )
    if kind == "Deployment" and spec.get("paused") is True:
        return (
            "the Deployment is paused: no pod is replaced until it is resumed "
            "(kubectl rollout resume); until then the change is only in the template"
        )
    replicas = spec.get("replicas")
    n = f" of its {replicas} pods" if isinstance(replicas, int) else " of its pods"
    return f"changing the pod template triggers a rollout: every one{n} is replaced"


def manifest_snippet(kind: str, dns_config: Any) -> str:
    """The pod template's dnsConfig as the YAML to put in the object's manifest (chart values, Git)."""
    keys = [k for k in TEMPLATE_SPEC[kind].strip("/").split("/")] + ["dnsConfig"]
    doc: Any = dns_config
    for k in reversed(keys):
        doc = {k: doc}
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)


def _managed_notes(live: dict[str, Any]) -> list[str]:
    """A warning per tool that will undo an API patch on its next upgrade, sync or reconciliation."""
    return [
        f"managed by {m.tool} ({m.evidence}): {m.undo}; commit the manifest change below instead"
        for m in managed_by(live)
    ]


def plan_resolver_options(kube: Kube, targets: Iterable[Target], options: Mapping[str, str | None]) -> Plan:
    """Plan adding ``options`` to each target's pod template, reading each live object."""
    opts = validate_options(options)
    plan = Plan(cluster=kube.cluster, mitigation=MITIGATION)
    wanted = ", ".join(n if v is None else f"{n}:{v}" for n, v in opts.items())
    for t in targets:
        if t.kind in NOT_PATCHABLE:
            plan.skipped.append(Skip(t.label(), NOT_PATCHABLE[t.kind]))
            continue
        if t.kind not in TEMPLATE_SPEC:
            plan.skipped.append(Skip(t.label(), f"{t.kind}: dnsfleet does not patch this kind"))
            continue
        honoured = {o: option_honoured(t.resolver, o) for o in opts}
        refused = [o for o, h in honoured.items() if h != "yes"]
        if refused:
            how = "ignores" if all(honoured[o] == "no" for o in refused) else "is not known to honour"
            plan.skipped.append(
                Skip(t.label(), f"resolver {t.resolver} {how} {', '.join(refused)}: not offered (R5, M5)")
            )
            continue
        ref = ObjectRef(t.kind, t.namespace, t.name)
        try:
            live = kube.get(ref)
        except KubeError as e:
            if isinstance(e, ClusterFailed):
                raise
            plan.skipped.append(Skip(t.label(), f"cannot read it: {e}"))
            continue
        if live is None:
            plan.skipped.append(Skip(t.label(), "not found in the cluster (deleted since the scan?)"))
            continue
        spec_path = TEMPLATE_SPEC[t.kind]
        dns_path = spec_path + "/dnsConfig"
        if get_path(live, spec_path) is None:
            plan.skipped.append(Skip(t.label(), f"has no pod template at {spec_path}"))
            continue
        previous = get_path(live, dns_path)
        new = merge_options(previous, opts)
        if new == previous:
            plan.skipped.append(Skip(t.label(), f"already has {wanted}"))
            continue
        ann = (live.get("metadata") or {}).get("annotations") or {}
        # Keep the annotation's value if dnsfleet already changed this object: it is the pre-dnsfleet state.
        keep = ANNOTATION in ann
        ops: list[dict[str, Any]] = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": live["metadata"]["resourceVersion"]},
            {"op": "add", "path": dns_path, "value": new},
        ]
        if not keep:
            ops += _annotation_ops(live, _encode(previous))
        notes = [_rollout_note(t.kind, live), *_managed_notes(live)]
        policy = get_path(live, spec_path + "/dnsPolicy")
        if get_path(live, spec_path + "/hostNetwork") and policy != "ClusterFirstWithHostNet":
            notes.append(
                "hostNetwork pod without ClusterFirstWithHostNet: it uses the node's resolv.conf (P5)"
            )
        plan.changes.append(
            Change(
                ref=ref,
                action="json-patch",
                why=f"add {wanted} to the pod template's dnsConfig ({t.resolver} honours it; M1, M2, M5)",
                before=live,
                after=apply_json_patch(live, ops),
                body=ops,
                previous=previous,
                applied=new,
                notes=notes,
                commit_instead=manifest_snippet(t.kind, new) if managed_by(live) else None,
            )
        )
    if plan.changes:
        plan.notes.append(
            "dnsConfig.options is replaced as a whole list: the existing options, nameservers and searches "
            "are written back unchanged (M1)"
        )
    return plan


def plan_undo_resolver_options(kube: Kube, ref: ObjectRef, record: Mapping[str, Any] | None = None) -> Plan:
    """Plan restoring exactly the previous ``dnsConfig`` of one workload.

    The previous value comes from the audit ``record`` when given, else from the object's
    ``dnsfleet.io/previous-dns-config`` annotation. With a record, a dnsConfig changed by someone else
    since dnsfleet applied it blocks the undo instead of being overwritten.
    """
    if ref.kind not in TEMPLATE_SPEC:
        raise MitigationError(f"{ref.label()}: dnsfleet does not patch this kind")
    plan = Plan(cluster=kube.cluster, mitigation="undo-" + MITIGATION)
    live = kube.get(ref)
    if live is None:
        raise MitigationError(f"{kube.cluster}: {ref.label()} not found: nothing to undo")
    ann = (live.get("metadata") or {}).get("annotations") or {}
    dns_path = TEMPLATE_SPEC[ref.kind] + "/dnsConfig"
    current = get_path(live, dns_path)
    if record is not None:
        previous = record.get("previous")
    elif ANNOTATION in ann:
        try:
            previous = json.loads(ann[ANNOTATION])
        except ValueError:
            raise MitigationError(f"{ref.label()}: annotation {ANNOTATION} is not valid JSON") from None
        plan.notes.append("no audit record: restoring from the object's annotation")
    else:
        raise MitigationError(
            f"{ref.label()}: no audit record and no {ANNOTATION} annotation: nothing to undo"
        )
    ops: list[dict[str, Any]] = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": live["metadata"]["resourceVersion"]}
    ]
    if previous is None:
        if current is not None:
            ops.append({"op": "remove", "path": dns_path})
    else:
        ops.append({"op": "add", "path": dns_path, "value": previous})
    if ANNOTATION in ann and ann[ANNOTATION] == _encode(previous):
        ops += _annotation_ops(live, None)
    blocked = None
    if record is not None and current != record.get("applied"):
        blocked = (
            f"dnsConfig changed after dnsfleet applied it (now {_encode(current)}); undo would overwrite "
            "that change, so it is not sent"
        )
    if len(ops) == 1:
        blocked = blocked or "already at the previous dnsConfig"
    plan.changes.append(
        Change(
            ref=ref,
            action="json-patch",
            why=f"restore the previous dnsConfig {_encode(previous)}",
            before=live,
            after=apply_json_patch(live, ops),
            body=ops,
            previous=current,
            applied=previous,
            notes=[_rollout_note(ref.kind, live)],
            blocked=blocked,
        )
    )
    return plan
