"""``dnsfleet mitigate plan|apply|undo ...``: the mitigations from the command line.

Every step goes through ``dnsfleet.mitigate.flow.Controller``, as the dashboard's page does. Exit codes:
0 every object ok; 1 at least one object failed (forbidden, conflict, rejected by admission); 2 bad
input or writes refused.

    dnsfleet mitigate plan resolver-options --context C -w shop/Deployment/web -o single-request-reopen
    dnsfleet mitigate apply resolver-options --context C -w shop/Deployment/web -o ndots=2 \\
        --allow-writes --confirm C
    dnsfleet mitigate plan nodelocal --context C [--proxy-mode ipvs] [--yaml out.yaml]
    dnsfleet mitigate undo nodelocal --context C --allow-writes --confirm C
    dnsfleet mitigate plan kernel --snapshot fleet.json.gz --csv upgrade-plan.csv
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

from dnsfleet.authz import Identity, local_decision
from dnsfleet.cli import probe, verify
from dnsfleet.cli.output import EXIT_USAGE
from dnsfleet.cli.show import load_snapshot
from dnsfleet.kube import ObjectRef
from dnsfleet.mitigate import nodelocal
from dnsfleet.mitigate.audit import AuditLog
from dnsfleet.mitigate.errors import FAILURES, MitigationError
from dnsfleet.mitigate.flow import Controller
from dnsfleet.mitigate.objects import to_yaml
from dnsfleet.mitigate.plan import Plan, Result
from dnsfleet.scrub import scrub
from dnsfleet.snapshot import SnapshotError

MITIGATIONS = ("resolver-options", "nodelocal", "kernel")


def add_mitigate_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``mitigate`` to the top-level subparsers; returns its parser."""
    p = subparsers.add_parser("mitigate", help="plan, dry-run, apply and undo mitigations")
    p.set_defaults(func=run_mitigate)
    steps = p.add_subparsers(dest="step", required=True)
    for step, text in (
        ("plan", "show the plan and per-object diffs (reads the cluster, writes nothing)"),
        ("apply", "plan, check permissions, server-side dry run, then apply (needs --allow-writes)"),
        ("undo", "restore the previous dnsConfig / delete the NodeLocal objects dnsfleet created"),
    ):
        s = steps.add_parser(step, help=text)
        s.add_argument("mitigation", choices=MITIGATIONS if step == "plan" else MITIGATIONS[:2])
        add_cluster_args(s, writes=step in ("apply", "undo"))
        s.add_argument(
            "-w",
            "--workload",
            action="append",
            default=[],
            metavar="NS/KIND/NAME",
            help="workload to patch (repeatable); its resolver is inferred from the live pod template",
        )
        if step in ("apply", "undo"):
            s.add_argument("--dry-run", action="store_true", help="stop after the server-side dry run")
        if step == "apply":
            probe.add_around_args(s)
        if step == "plan":
            s.add_argument("--dry-run", action="store_true", help="also run the server-side dry run")
            s.add_argument("--snapshot", help="kernel: snapshot file to assess (default: the demo fleet)")
            s.add_argument("--csv", help="kernel: write the node upgrade plan CSV here")
            s.add_argument("--yaml", help="nodelocal: write the rendered manifests here")
        if step != "undo":
            s.add_argument(
                "-o",
                "--option",
                action="append",
                default=[],
                metavar="NAME[=VALUE]",
                help="resolver option: single-request-reopen, use-vc, ndots=N, timeout=N, attempts=N",
            )
            s.add_argument("--proxy-mode", choices=nodelocal.MODES, help="nodelocal: kube-proxy mode")
            s.add_argument("--local-ip", default=nodelocal.DEFAULT_LOCAL_IP, help="nodelocal: link-local IP")
            s.add_argument("--cluster-domain", help="nodelocal: cluster domain (default cluster.local)")
            s.add_argument("--upstream", action="append", help="nodelocal: upstream server IP (repeatable)")
            s.add_argument("--cni", help="nodelocal: CNI name for the caveats (calico, cilium, ...)")
    verify.add_verify_parser(steps)
    return p


def add_cluster_args(s: argparse.ArgumentParser | argparse._ArgumentGroup, writes: bool) -> None:
    """The flags every command that plans (and, with ``writes``, applies) through the mitigation
    controller takes: the cluster, the API timeout, the audit log, impersonation, the write switch
    and the typed confirmation. ``controller(args)`` turns them into a ``Controller``."""
    s.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    s.add_argument("--context", help="kubeconfig context = cluster name")
    s.add_argument("--timeout", type=float, default=10.0, help="seconds per API call (default 10)")
    s.add_argument("--audit-log", help="audit log path (default $DNSFLEET_AUDIT_LOG or ~/.local/state/...)")
    s.add_argument("--impersonate", help="impersonate this user (needs the impersonate verb)")
    s.add_argument("--impersonate-group", action="append", default=[], help="group to impersonate")
    if writes:
        s.add_argument(
            "--allow-writes", action="store_true", help="enable writes (or DNSFLEET_ALLOW_WRITES=1)"
        )
        s.add_argument("--confirm", help="the cluster name, typed to confirm the write")


def _options(values: list[str]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for v in values:
        name, _, value = v.partition("=")
        out[name.strip()] = value.strip() or None
    return out


def _workload(text: str) -> ObjectRef:
    from dnsfleet.mitigate import resolver_options  # the rules (pandas): only when used

    parts = text.split("/")
    if len(parts) != 3 or not all(parts):
        raise MitigationError(f"workload {text!r}: expected NAMESPACE/KIND/NAME, e.g. shop/Deployment/web")
    kind = {k.lower(): k for k in resolver_options.TEMPLATE_SPEC | resolver_options.NOT_PATCHABLE}.get(
        parts[1].lower(), parts[1]
    )
    return ObjectRef(kind, parts[0], parts[2])


def controller(args: argparse.Namespace) -> Controller:
    """The controller for the ``add_cluster_args`` flags (the write decision: ``--allow-writes`` or
    ``DNSFLEET_ALLOW_WRITES=1``, as ``--impersonate`` when given)."""
    if not args.context:
        raise MitigationError("--context is required (the kubeconfig context of the cluster)")
    who = (
        Identity(args.impersonate, tuple(args.impersonate_group), "command line")
        if args.impersonate
        else None
    )
    if args.impersonate_group and who is None:
        raise MitigationError("--impersonate-group needs --impersonate too")
    return Controller(
        args.context,
        args.kubeconfig,
        decision=local_decision(getattr(args, "allow_writes", False), impersonate=who),
        timeout=args.timeout,
        audit=AuditLog(args.audit_log),
    )


def refuse_early(ctrl: Controller, args: argparse.Namespace) -> None:
    """Refuse a write before touching the cluster: no plan is worth building if it cannot be applied."""
    if ctrl.refusal(args.confirm or "") is None:
        return
    if not ctrl.decision.may_write:
        raise MitigationError("writes are disabled: add --allow-writes or set DNSFLEET_ALLOW_WRITES=1")
    raise MitigationError(f"type the cluster name to confirm: --confirm {args.context}")


def print_plan(plan: Plan, out: TextIO, diffs: bool = True) -> None:
    out.write(f"# {plan.mitigation} on {plan.cluster}: {len(plan.changes)} object(s)\n")
    for c in plan.changes:
        state = f"BLOCKED: {c.blocked}" if c.blocked else c.why
        out.write(f"- {c.ref.label()}: {state}\n")
        for n in c.notes:
            out.write(f"    note: {n}\n")
        if c.commit_instead:
            out.write("    commit instead:\n")
            out.write("".join("      " + line for line in c.commit_instead.splitlines(keepends=True)))
        if c.allowed is False:
            out.write(f"    permission: {c.permission}\n")
        if diffs and not c.blocked:
            out.write("".join("    " + line for line in c.diff().splitlines(keepends=True)))
    for s in plan.skipped:
        out.write(f"- skipped {s.target}: {s.reason}\n")
    for n in plan.notes:
        out.write(f"* {n}\n")


def print_results(title: str, results: list[Result], out: TextIO) -> None:
    out.write(f"# {title}\n")
    for r in results:
        out.write(f"- {r.ref.label()}: {r.status}: {r.message}\n")


def _build_plan(args: argparse.Namespace, ctrl: Controller) -> Plan:
    if args.mitigation == "resolver-options":
        if not args.workload:
            raise MitigationError("give at least one --workload NS/KIND/NAME")
        return ctrl.plan_resolver_options_live([_workload(w) for w in args.workload], _options(args.option))
    return ctrl.plan_nodelocal(
        proxy_mode=args.proxy_mode,
        cluster_domain=args.cluster_domain,
        local_ip=args.local_ip,
        upstream=args.upstream,
        cni=args.cni,
    )


def _build_undo(args: argparse.Namespace, ctrl: Controller) -> Plan:
    if args.mitigation == "nodelocal":
        return ctrl.plan_undo_nodelocal()
    if not args.workload:
        raise MitigationError("give at least one --workload NS/KIND/NAME to undo")
    return ctrl.plan_undo_resolver_options([_workload(w) for w in args.workload])


def _kernel_plan(args: argparse.Namespace, out: TextIO) -> int:
    from dnsfleet.engine import analyze
    from dnsfleet.mitigate import kernel as kernel_mod  # pandas: only for this command

    if not args.snapshot:
        out.write("# no --snapshot given: using the demo fleet\n")
    a = analyze(load_snapshot(args.snapshot))
    plan = kernel_mod.upgrade_plan(a.nodes, a.dns_service)
    data = kernel_mod.upgrade_plan_csv(plan)
    if args.csv:
        Path(args.csv).write_bytes(data)
        out.write(f"wrote {len(plan)} node(s) to {args.csv}\n")
    else:
        out.write(data.decode("utf-8-sig"))
    return 0


def run_mitigate(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run ``dnsfleet mitigate``; errors are one line on stderr."""
    out = out or sys.stdout
    try:
        return _run(args, out)
    except (*FAILURES, SnapshotError) as e:
        sys.stderr.write(f"dnsfleet mitigate: {scrub(str(e))}\n")
        return EXIT_USAGE


def _run(args: argparse.Namespace, out: TextIO) -> int:
    if args.step == "plan" and args.mitigation == "kernel":
        return _kernel_plan(args, out)
    ctrl = controller(args)
    if args.step != "plan" and not args.dry_run:
        refuse_early(ctrl, args)
    with ctrl:
        return _steps(args, ctrl, out)


def _steps(args: argparse.Namespace, ctrl: Controller, out: TextIO) -> int:
    plan = _build_undo(args, ctrl) if args.step == "undo" else _build_plan(args, ctrl)
    print_plan(plan, out)
    if args.step == "plan" and getattr(args, "yaml", None) and args.mitigation == "nodelocal":
        Path(args.yaml).write_text(
            "".join("---\n" + to_yaml(c.after) for c in plan.changes if c.after is not None)
        )
        out.write(f"wrote the rendered manifests to {args.yaml}\n")
    if args.step == "plan" and not args.dry_run:
        return 0
    allowed, reasons = plan.permitted()
    if not allowed and args.step != "plan":
        for r in reasons:
            out.write(f"! {r}\n")
    checked = ctrl.dry_run(plan)
    print_results("server-side dry run", checked, out)
    if args.step == "plan" or args.dry_run:
        return 0 if all(r.ok or r.status == "blocked" for r in checked) else 1
    if getattr(args, "probe", False):
        probe.probe_before(args, plan.id, out)
    results = ctrl.apply(
        plan,
        checked,
        args.confirm or "",
        progress=lambda i, n, r: out.write(f"[{i}/{n}] {r.ref.label()}: {r.status}\n"),
    )
    if not results:
        out.write("nothing to apply\n")
        return 1
    print_results("apply", results, out)
    out.write(f"audit log: {ctrl.audit.path}\n")
    if getattr(args, "probe", False) and any(r.ok for r in results):
        probe.probe_after(args, plan.id, out)
    return 0 if all(r.ok for r in results) else 1
