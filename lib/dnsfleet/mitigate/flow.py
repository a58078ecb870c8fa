"""The one mitigation controller: what the dashboard page, ``dnsfleet mitigate`` and
``dnsfleet deploy collector --apply/--undo`` drive.

``Controller`` holds one cluster (a kubeconfig context), the write decision (``dnsfleet.authz``: may
this caller write, and as whom) and the audit log. Every step opens its own client for the cluster,
as the signed-in user when the decision says so (impersonation), and closes it afterwards:

    ctrl = Controller("prod-eu", kubeconfig, decision=authz.local_decision(flag))
    plan = ctrl.plan_resolver_options(targets, {"single-request-reopen": None})
    dry = ctrl.dry_run(plan)
    ctrl.refusal(confirm)                      # None when writes may go ahead (decision, typed name)
    ctrl.apply_blockers(plan, dry, confirm)    # the dashboard's reasons to keep Apply disabled
    results = ctrl.apply(plan, dry, confirm)   # refusal again, then the library's write guard

An all-or-nothing plan (``Plan.all_or_nothing``: the collector's deploy and its undo) is applied only
when every change passed its dry run; a change whose dry run needs a namespace the plan creates is
dry-run once apply has created it, and a failure then deletes that namespace again (``_apply_all``).

Undo reads the audit log (``AuditLog.last_applied``): ``undoable()`` lists the workloads dnsfleet
changed and has not undone, ``plan_undo_resolver_options(refs)`` restores them in one plan. The audit
file is input, not truth: a record undo acts on must be one dnsfleet could have written
(``audit.undo_record_problem``: a kind it patches, ``dnsConfig`` values), else undo refuses it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from dnsfleet.authz import WriteDecision, local_decision
from dnsfleet.kube import Kube, ObjectRef
from dnsfleet.kube.client import DEFAULT_TIMEOUT
from dnsfleet.mitigate import nodelocal
from dnsfleet.mitigate.audit import AuditLog, undo_record_problem
from dnsfleet.mitigate.errors import MitigationError
from dnsfleet.mitigate.plan import (
    Change,
    Plan,
    Progress,
    Result,
    WritesDisabled,
    all_or_nothing_problems,
    apply,
    check_permissions,
    dry_run,
    exclude_failed,
    rollback_plan,
)

if TYPE_CHECKING:
    from dnsfleet.mitigate import resolver_options

T = TypeVar("T")
# resolver_options reads the resolver rules, which load pandas (~0.6 s): imported where it is used.


@dataclass
class Controller:
    """Plans, dry runs, applies and undoes mitigations on one cluster (see the module docstring)."""

    cluster: str  # the kubeconfig context, which is the cluster's name in dnsfleet
    kubeconfig: str | Path | None = None
    decision: WriteDecision = field(default_factory=local_decision)
    timeout: float = DEFAULT_TIMEOUT
    audit: AuditLog = field(default_factory=AuditLog)

    _kube: Kube | None = field(default=None, init=False, repr=False)

    # -- client lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> Controller:
        """Keep one client open for every step until the ``with`` block ends (the command line)."""
        self._kube = self._connect()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._kube is not None:
            self._kube.close()
            self._kube = None

    def _connect(self) -> Kube:
        """A client for the cluster, as the signed-in user when the decision impersonates."""
        who = self.decision.identity if self.decision.impersonate else None
        return Kube.from_kubeconfig(
            self.kubeconfig,
            self.cluster,
            timeout=self.timeout,
            impersonate_user=who.user if who else None,
            impersonate_groups=list(who.groups) if who else (),
        )

    @contextmanager
    def session(self) -> Iterator[Kube]:
        """The open client of a ``with`` block, else a new one closed afterwards."""
        if self._kube is not None:
            yield self._kube
            return
        kube = self._connect()
        try:
            yield kube
        finally:
            kube.close()

    def run(self, fn: Callable[[Kube], T]) -> T:
        with self.session() as kube:
            return fn(kube)

    # -- plans (each with its SelfSubjectAccessReviews done) -----------------------------------------

    def plan_resolver_options(
        self, targets: Iterable[resolver_options.Target], options: Mapping[str, str | None]
    ) -> Plan:
        """Add resolver options to the targets' pod templates (resolvers as the assessment inferred)."""
        from dnsfleet.mitigate import resolver_options

        return self.run(
            lambda kube: check_permissions(
                kube, resolver_options.plan_resolver_options(kube, targets, options)
            )
        )

    def plan_resolver_options_live(
        self, refs: Iterable[ObjectRef], options: Mapping[str, str | None]
    ) -> Plan:
        """The same, each workload's resolver inferred from its live pod template."""
        from dnsfleet.mitigate import resolver_options

        def plan(kube: Kube) -> Plan:
            targets = [resolver_options.target_from_live(kube, ref) for ref in refs]
            return check_permissions(kube, resolver_options.plan_resolver_options(kube, targets, options))

        return self.run(plan)

    def plan_nodelocal(self, **kwargs: Any) -> Plan:
        """Install NodeLocal DNSCache (``nodelocal.plan_nodelocal`` keyword arguments)."""
        return self.run(lambda kube: check_permissions(kube, nodelocal.plan_nodelocal(kube, **kwargs)))

    def plan_undo_nodelocal(self) -> Plan:
        return self.run(lambda kube: check_permissions(kube, nodelocal.plan_undo_nodelocal(kube)))

    def plan_deploy_collector(self, objects: list[dict[str, Any]]) -> Plan:
        """Apply the in-cluster collector's manifests (``deploy.collector_manifests``), all or nothing."""
        from dnsfleet.mitigate import collector

        return self.run(lambda kube: check_permissions(kube, collector.plan_deploy(kube, objects)))

    def plan_undo_deploy_collector(self) -> Plan:
        """Undo the collector deploys on this cluster the audit log records: delete what they created,
        apply back what they changed."""
        from dnsfleet.mitigate import collector

        records = self.audit.records()
        return self.run(lambda kube: check_permissions(kube, collector.plan_undo(kube, records)))

    def undoable(self) -> dict[str, ObjectRef]:
        """Workloads dnsfleet changed with resolver options on this cluster and has not undone, by
        ``namespace/kind/name``."""
        from dnsfleet.mitigate import resolver_options

        records = self.audit.records()
        out: dict[str, ObjectRef] = {}
        for rec in records:
            obj = rec.get("object") or {}
            if rec.get("cluster") != self.cluster or rec.get("mitigation") != resolver_options.MITIGATION:
                continue
            if not all(isinstance(obj.get(k), str) for k in ("kind", "namespace", "name")):
                continue
            ref = ObjectRef(obj["kind"], obj["namespace"], obj["name"])
            key = f"{ref.namespace}/{ref.kind}/{ref.name}"
            if key in out:
                continue
            rec = self.audit.last_applied(self.cluster, ref.as_dict(), resolver_options.MITIGATION, records)
            if rec is not None and undo_record_problem(rec) is None:
                out[key] = ref
        return dict(sorted(out.items()))

    def plan_undo_resolver_options(self, refs: Iterable[ObjectRef]) -> Plan:
        """One plan restoring each workload's previous dnsConfig: from its newest audit record not yet
        undone, else from the object's annotation."""
        from dnsfleet.mitigate import resolver_options

        refs = list(refs)
        if not refs:
            raise MitigationError("choose at least one workload to undo")
        records = self.audit.records()

        def plan(kube: Kube) -> Plan:
            merged = Plan(cluster=kube.cluster, mitigation="undo-" + resolver_options.MITIGATION)
            for ref in refs:
                rec = self.audit.last_applied(
                    kube.cluster, ref.as_dict(), resolver_options.MITIGATION, records
                )
                if rec is not None and (why := undo_record_problem(rec)) is not None:
                    raise MitigationError(
                        f"{ref.label()}: the audit record is not one dnsfleet wrote ({why}); not undone"
                    )
                p = resolver_options.plan_undo_resolver_options(kube, ref, rec)
                merged.changes += p.changes
                merged.notes += [n for n in p.notes if n not in merged.notes]
            return check_permissions(kube, merged)

        return self.run(plan)

    # -- dry run and apply ---------------------------------------------------------------------------

    def dry_run(self, plan: Plan) -> list[Result]:
        return self.run(lambda kube: dry_run(kube, plan))

    def refusal(self, confirm: str) -> str | None:
        """Why no write may happen at all (the decision says no, or the cluster name was not typed);
        None when writes may go ahead. Checked before the cluster is touched and again at apply."""
        if not self.decision.may_write:
            return self.decision.reason
        if confirm.strip() != self.cluster:
            return f"type the cluster name {self.cluster!r} to confirm"
        return None

    def apply_blockers(
        self, plan: Plan, dry: list[Result] | None, confirm: str, applied: bool = False
    ) -> list[str]:
        """Every reason to keep the dashboard's Apply button disabled (empty: it can be pressed): the
        refusal, plus a denied SelfSubjectAccessReview, a dry run not run or failed everywhere, or a
        plan already applied. The command line lets the server decide on denied permissions instead
        (each object then fails as forbidden and is audited)."""
        reasons: list[str] = []
        if not self.decision.may_write:
            reasons.append(self.decision.reason)
        allowed, denied = plan.permitted()
        if not allowed:
            reasons += denied or ["nothing to apply"]
        if not dry:
            reasons.append("run the dry run first")
        elif plan.all_or_nothing:
            reasons += all_or_nothing_problems(plan, dry)
        elif not any(r.ok for r in dry):
            reasons.append("no object passed the dry run")
        if applied:
            reasons.append("this plan was applied; plan again for another change")
        if confirm.strip() != plan.cluster:
            reasons.append(f"type the cluster name {plan.cluster!r} to confirm")
        return reasons

    def apply(
        self, plan: Plan, dry: list[Result], confirm: str, progress: Progress | None = None
    ) -> list[Result]:
        """Apply what passed the dry run (``WritesDisabled`` on a refusal; no results when nothing
        passed). The library's write guard checks the decision again before sending.

        An all-or-nothing plan is applied only when every change passed its dry run (else
        ``MitigationError``, nothing written); see ``_apply_all`` for changes whose dry run waits for
        a namespace the plan creates."""
        if (why := self.refusal(confirm)) is not None:
            raise WritesDisabled(why)
        if plan.all_or_nothing:
            if problems := all_or_nothing_problems(plan, dry):
                raise MitigationError("nothing was applied: " + "; ".join(problems))
            if not plan.changes:
                return []
            return self.run(lambda kube: self._apply_all(kube, plan, confirm, progress))
        exclude_failed(plan, dry)
        if not plan.actionable:
            return []
        return self.run(
            lambda kube: apply(
                kube,
                plan,
                allow_writes=False,
                confirm=confirm,
                audit=self.audit,
                progress=progress,
                decision=self.decision,
            )
        )

    def _apply_all(self, kube: Kube, plan: Plan, confirm: str, progress: Progress | None) -> list[Result]:
        """Apply an all-or-nothing plan whose dry run passed. Changes with a ``deferred`` dry run wait
        for an object the plan creates (their namespace): that object is created first, then they are
        dry-run; if one fails, the objects just created are deleted again (audited as the plan's undo)
        and nothing else is sent."""
        deferred = [c for c in plan.changes if c.needs is not None]

        def part(changes: list[Change]) -> Plan:
            return replace(plan, changes=changes)

        sent = [0]

        def counted(_i: int, _n: int, r: Result) -> None:
            # one count over the parts, as if the plan went out in one piece
            sent[0] += 1
            if progress is not None:
                progress(sent[0], max(len(plan.changes), sent[0]), r)

        def send(p: Plan) -> list[Result]:
            return apply(
                kube,
                p,
                allow_writes=False,
                confirm=confirm,
                audit=self.audit,
                progress=counted,
                decision=self.decision,
            )

        if not deferred:
            return send(plan)
        needed = {c.needs for c in deferred}
        first = [c for c in plan.changes if c.ref in needed]
        done = send(part(first))
        checked: list[Result] = []
        if all(r.ok for r in done):
            checked = dry_run(kube, part([replace(c, needs=None) for c in deferred]))
            if all(r.ok for r in checked):
                return done + send(part([c for c in plan.changes if c.ref not in needed]))
        why = ", ".join(f"{r.ref.label()} ({r.status})" for r in done + checked if not r.ok)
        created = [c for c, r in zip(first, done, strict=True) if r.ok and c.before is None]
        undone = [
            Result(r.ref, r.status, f"{r.message} again (rollback: {why} failed)" if r.ok else r.message)
            for r in (send(rollback_plan(kube, plan, created)) if created else [])
        ]
        again = "; what it created for them was deleted again" if created else ""
        by_ref = {r.ref: r for r in checked}
        rest: list[Result] = []
        for c in plan.changes:
            if c.ref in needed:
                continue
            r = by_ref.get(c.ref)
            if r is not None and not r.ok and c.needs is not None:
                text = f"failed the dry run once {c.needs.label()} existed: {r.message}; nothing sent{again}"
                rest.append(Result(c.ref, r.status, text))
            else:
                rest.append(Result(c.ref, "not-sent", f"not sent: {why} failed{again}"))
        return done + undone + rest
