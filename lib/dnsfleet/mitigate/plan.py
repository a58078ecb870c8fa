"""The flow every mitigation follows: plan -> diff -> permission check -> server-side dry run -> apply
(writes enabled + typed confirmation) -> per-object result -> audit record -> undo.

A ``Plan`` lists ``Change`` objects, one per API object, each carrying what will be sent (a JSON patch
with a ``test`` op on the resourceVersion, a server-side apply body, or a delete with preconditions), the
object before and after, and why. Nothing is written by planning, diffing or dry-running.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dnsfleet.authz import WRITES_OFF, WriteDecision, local_decision
from dnsfleet.kube import Kube, KubeError, ObjectRef
from dnsfleet.mitigate.audit import AuditLog
from dnsfleet.mitigate.errors import MitigationError
from dnsfleet.mitigate.objects import clean, unified_diff

ACTIONS = ("json-patch", "apply", "delete")


@dataclass
class Change:
    """One API object the plan touches."""

    ref: ObjectRef
    action: str  # json-patch | apply | delete
    why: str
    before: dict[str, Any] | None  # live object at plan time (None: absent)
    after: dict[str, Any] | None  # what it will look like (None: deleted)
    body: Any  # JSON patch ops | server-side apply object | delete preconditions
    previous: Any = None  # the value being replaced (resolver options: the previous dnsConfig)
    applied: Any = None  # the value being written (resolver options: the new dnsConfig)
    notes: list[str] = field(default_factory=list)
    # the manifest change to commit where Helm, Argo CD or Flux manages the object (rules/managers.py)
    commit_instead: str | None = None
    blocked: str | None = None  # why this change will not be sent at all
    allowed: bool | None = None  # SelfSubjectAccessReview result (None: not checked yet)
    permission: str = ""  # the SSAR reason
    # The object (a Namespace an earlier change of the same plan creates) that must exist before the
    # server can dry-run this change: its dry run is ``deferred`` until apply has created that object.
    needs: ObjectRef | None = None

    @property
    def resource_version(self) -> str | None:
        return ((self.before or {}).get("metadata") or {}).get("resourceVersion")

    def verbs(self) -> list[str]:
        """The verbs this change needs (server-side apply that creates needs create too)."""
        if self.action == "delete":
            return ["delete"]
        if self.action == "apply" and self.before is None:
            return ["patch", "create"]
        return ["patch"]

    def diff(self) -> str:
        return unified_diff(clean(self.before), clean(self.after), self.ref.label())


@dataclass
class Skip:
    """A target the plan will not touch, and why (e.g. a bare Pod: recreate needed)."""

    target: str
    reason: str


@dataclass
class Plan:
    cluster: str
    mitigation: str  # resolver-options | nodelocal-dnscache | undo-resolver-options | undo-nodelocal-dnscache
    changes: list[Change] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # rollout, work outside the API, CNI caveats
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    # True: the changes only make sense together (an install such as the collector's RBAC + CronJob):
    # one change blocked or failing its dry run means nothing is applied (``all_or_nothing_problems``).
    # False (the mitigations): what passed the dry run is applied, the rest is reported.
    all_or_nothing: bool = False

    @property
    def actionable(self) -> list[Change]:
        return [c for c in self.changes if c.blocked is None]

    def permitted(self) -> tuple[bool, list[str]]:
        """(every actionable change allowed, the reasons of those that are not)."""
        reasons = [c.permission for c in self.actionable if c.allowed is False]
        unchecked = any(c.allowed is None for c in self.actionable)
        if unchecked:
            reasons.append("permissions not checked yet")
        return (not reasons and bool(self.actionable)), reasons


@dataclass
class Result:
    ref: ObjectRef
    # ok | forbidden | conflict | invalid | not-found | unreachable | unknown | error | blocked | not-sent
    # | deferred (dry run only: the change's ``needs`` object does not exist yet)
    status: str
    message: str

    @property
    def ok(self) -> bool:
        return self.status == "ok"


Progress = Callable[[int, int, Result], None]


def check_permissions(kube: Kube, plan: Plan) -> Plan:
    """SelfSubjectAccessReview per change and verb; a denied change carries the reason."""
    for c in plan.actionable:
        c.allowed, c.permission = True, ""
        for verb in c.verbs():
            ok, reason = kube.can_i(verb, c.ref)
            if not ok:
                c.allowed, c.permission = False, reason
                break
            c.permission = reason
    return plan


def _send(kube: Kube, c: Change, dry_run: bool) -> dict[str, Any]:
    if c.action == "json-patch":
        return kube.json_patch(c.ref, c.body, dry_run=dry_run)
    if c.action == "apply":
        if c.before is None:
            # Planned as a create: someone else creating it meanwhile is a conflict, not a takeover.
            live = kube.get(c.ref)
            if live is not None:
                raise KubeError(
                    409,
                    f"conflict: {c.ref.label()} was created by someone else after the plan; "
                    "nothing was written, plan again",
                    kube.cluster,
                )
        return kube.server_side_apply(c.ref, c.body, dry_run=dry_run)
    if c.action == "delete":
        return kube.delete(c.ref, c.body, dry_run=dry_run)
    raise MitigationError(f"unknown action {c.action!r}")


def _result(kube: Kube, c: Change, err: KubeError) -> Result:
    status = err.kind
    msg = str(err)
    if c.action == "json-patch" and err.status in (409, 422, 500):
        # A failed `test` op comes back as a generic 422: compare resourceVersions to say what happened.
        try:
            live = kube.get(c.ref)
        except KubeError:
            return Result(c.ref, status, msg)
        now = ((live or {}).get("metadata") or {}).get("resourceVersion")
        if now != c.resource_version:
            status = "conflict"
            msg = (
                f"{kube.cluster}: conflict: {c.ref.label()} changed after the plan (resourceVersion "
                f"{c.resource_version} -> {now}); nothing was written, plan again"
            )
    elif err.status == 409 and c.action == "delete":
        msg = f"{err} (the object changed after the plan; nothing was deleted)"
    return Result(c.ref, status, msg)


def dry_run(kube: Kube, plan: Plan, progress: Progress | None = None) -> list[Result]:
    """Server-side dry run (``dryRun=All``) of every change; admission errors are reported per object."""
    return _run(kube, plan, dry=True, progress=progress)


def _run(
    kube: Kube,
    plan: Plan,
    dry: bool,
    progress: Progress | None,
    record: Callable[[Change, Result], None] | None = None,
) -> list[Result]:
    """Send the changes in order. ``record`` runs right after each object's answer (before the next
    object is sent), so an interrupted apply leaves exactly the objects already answered in the audit
    log. Once the API server stops answering (status 0), the remaining objects are not sent: each gets
    a ``not-sent`` result instead of another wait for a dead server."""
    results: list[Result] = []
    total = len(plan.changes)
    stopped: str | None = None
    for i, c in enumerate(plan.changes, start=1):
        if c.blocked is not None:
            r = Result(c.ref, "blocked", c.blocked)
        elif dry and c.needs is not None:
            r = Result(
                c.ref,
                "deferred",
                f"the server can dry-run it only once {c.needs.label()} exists: apply creates that first, "
                "then dry-runs this, and writes nothing more if it fails",
            )
        elif stopped is not None:
            r = Result(c.ref, "not-sent", stopped)
        else:
            try:
                _send(kube, c, dry_run=dry)
                r = Result(c.ref, "ok", "dry run passed" if dry else _done_text(c))
            except KubeError as e:
                r = _result(kube, c, e)
                if e.status == 0:
                    stopped = (
                        f"not sent: the API server of {kube.cluster} stopped answering at {c.ref.label()}; "
                        "nothing was written to this object"
                    )
        if record is not None:
            record(c, r)
        results.append(r)
        if progress is not None:
            progress(i, total, r)
    return results


def _done_text(c: Change) -> str:
    if c.action == "delete":
        return "deleted"
    if c.action == "apply":
        return "created" if c.before is None else "updated"
    return "patched" + ("; a rollout follows" if any("rollout" in n for n in c.notes) else "")


class WritesDisabled(MitigationError):
    pass


def apply(
    kube: Kube,
    plan: Plan,
    *,
    allow_writes: bool,
    confirm: str,
    audit: AuditLog,
    identity: str | None = None,
    progress: Progress | None = None,
    decision: WriteDecision | None = None,
) -> list[Result]:
    """Apply every change, one audit record per object, results per object.

    The write guard: ``decision`` (``dnsfleet.authz``) says whether this caller may write and as whom;
    without one, the command line's rule applies (``allow_writes`` or ``DNSFLEET_ALLOW_WRITES=1``).
    Refuses (``WritesDisabled``) unless the decision allows writes and ``confirm`` equals the cluster name. A
    failed object (403, conflict, admission error) is reported and the others go on; nothing that
    succeeded is rolled back behind the user's back. Each object's audit record is written as soon as
    the server answered for it (``ok``, ``forbidden``..., ``unknown`` when the connection died after
    the request was sent) and objects never sent get a ``not-sent`` record, so the log says exactly
    which objects changed even when the apply is cut short.
    """
    decision = decision or local_decision(allow_writes)
    if not decision.may_write:
        if decision.reason == WRITES_OFF:
            raise WritesDisabled("writes are disabled: start with --allow-writes or DNSFLEET_ALLOW_WRITES=1")
        raise WritesDisabled(f"writes are disabled: {decision.reason}")
    if confirm.strip() != plan.cluster:
        raise WritesDisabled(f"confirmation does not match: type the cluster name {plan.cluster!r} to apply")
    signed_in = decision.identity.user if decision.impersonate and decision.identity else None
    who = identity or signed_in or kube.identity()

    def record(c: Change, r: Result) -> None:
        audit.append(
            {
                "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "identity": who,
                "cluster": plan.cluster,
                "object": c.ref.as_dict(),
                "mitigation": plan.mitigation,
                "action": c.action,
                "patch": c.body,
                "previous": c.previous,
                "applied": c.applied,
                "result": r.status,
                "message": r.message,
                "batch": plan.id,
            }
        )

    return _run(kube, plan, dry=False, progress=progress, record=record)


def exclude_failed(plan: Plan, dry_results: list[Result]) -> Plan:
    """Block the changes whose dry run failed, so apply sends only what the server accepted."""
    by_ref = {r.ref: r for r in dry_results}
    for c in plan.actionable:
        r = by_ref.get(c.ref)
        if r is not None and not r.ok and r.status != "deferred":
            c.blocked = f"failed the dry run ({r.status}): {r.message}"
    return plan


def all_or_nothing_problems(plan: Plan, dry_results: list[Result] | None) -> list[str]:
    """Why an all-or-nothing plan must not be applied at all (empty: it may): a blocked change, a
    change without a dry run, a dry run that did not pass (``deferred`` is checked again at apply)."""
    by_ref = {r.ref: r for r in dry_results or []}
    problems: list[str] = []
    for c in plan.changes:
        r = by_ref.get(c.ref)
        if c.blocked is not None:
            problems.append(f"{c.ref.label()}: {c.blocked}")
        elif r is None:
            problems.append(f"{c.ref.label()}: no dry run")
        elif not r.ok and r.status != "deferred":
            problems.append(f"{c.ref.label()}: failed the dry run ({r.status}): {r.message}")
    return problems


def rollback_plan(kube: Kube, plan: Plan, created: list[Change]) -> Plan:
    """Delete the objects ``created`` (changes of ``plan`` that created them) again, newest first:
    the undo of a partly applied all-or-nothing plan. Each delete carries the live uid and
    resourceVersion as preconditions, so an object someone changed meanwhile is left alone."""
    undo = Plan(cluster=plan.cluster, mitigation="undo-" + plan.mitigation, id=plan.id)
    for c in reversed(created):
        live = kube.get(c.ref)
        if live is None:
            continue
        meta = live.get("metadata") or {}
        undo.changes.append(
            Change(
                ref=c.ref,
                action="delete",
                why=f"delete {c.ref.label()} again: the rest of the plan failed its dry run",
                before=live,
                after=None,
                body={"uid": meta.get("uid"), "resourceVersion": meta.get("resourceVersion")},
                previous=clean(live),
            )
        )
    return undo
