"""The collector side of the snapshot store: ``scan --in-cluster --cluster-name --store``,
``deploy collector`` (the manifests, as plain YAML; or diffed, applied and undone through the mitigation
controller) and ``store compact`` (index compaction + retention).

``scan`` keeps its own flow (``cli.scan``); it calls ``scan_in_cluster`` instead of the kubeconfig scan
when ``--in-cluster`` is given, and ``write_to_store`` after scoring when ``--store`` is.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, TextIO

from dnsfleet.cli.output import EXIT_OK, CliError


def add_store_scan_args(p: argparse.ArgumentParser) -> None:
    """``scan``'s collector flags."""
    p.add_argument(
        "--in-cluster",
        action="store_true",
        help="scan the cluster this pod runs in, with its service account (needs --cluster-name)",
    )
    p.add_argument(
        "--cluster-name", metavar="NAME", help="the cluster's name in the store (with --in-cluster)"
    )
    p.add_argument(
        "--store",
        metavar="URL",
        help="also write each cluster's snapshot and index row to this store (a directory or s3://BUCKET/PREFIX)",
    )


def check_scan_args(args: argparse.Namespace) -> None:
    """Raise CliError for flag combinations that cannot work."""
    if args.in_cluster:
        if not args.cluster_name:
            raise CliError("--in-cluster needs --cluster-name (the name the store files this cluster under)")
        if args.kubeconfig or args.contexts or args.all_contexts:
            raise CliError(
                "--in-cluster uses the pod's service account: drop --kubeconfig/--context/--all-contexts"
            )
        if not os.environ.get("KUBERNETES_SERVICE_HOST"):
            raise CliError("--in-cluster: KUBERNETES_SERVICE_HOST is not set (not running in a pod?)")
    elif args.cluster_name:
        raise CliError("--cluster-name applies to --in-cluster scans (kubeconfig scans use context names)")
    if args.store:  # a bad URL or an unwritable directory fails before the scan, not after it
        from dnsfleet.store import SnapshotStore, StoreError

        try:
            SnapshotStore(args.store)
        except StoreError as e:
            raise CliError(f"--store: {e}") from None


def scan_in_cluster(
    args: argparse.Namespace, prometheus: Any, progress: Any
) -> tuple[dict[str, Any], str | None]:
    """Scan this pod's cluster; returns the snapshot and the collector id (the kube-system namespace
    UID, None when unreadable), which lets the store tell two deployments with one name apart."""
    from dnsfleet.collect import scan_cluster
    from dnsfleet.kube import ClusterFailed, Target, new_api_client
    from dnsfleet.kube.client import Kube
    from dnsfleet.kube.errors import KubeError
    from dnsfleet.snapshot import new_snapshot

    target = Target(args.cluster_name, None, None)
    cluster = scan_cluster(target, prometheus, progress, args.timeout, not args.no_scrape)
    uid = None
    try:
        kube = Kube(new_api_client(target, args.timeout), args.cluster_name, args.timeout)
        try:
            uid = (
                (kube.request("GET", "/api/v1/namespaces/kube-system").get("metadata") or {}).get("uid")
            ) or None
        finally:
            kube.close()
    except (ClusterFailed, KubeError):
        uid = None
    return new_snapshot([cluster], source="live"), uid


def write_to_store(
    url: str, snap: dict[str, Any], clusters_frame: Any, collector_id: str | None, err: TextIO
) -> None:
    """One snapshot object and index row per cluster. Raises CliError naming the store problem."""
    from dnsfleet.store import SnapshotStore, StoreError, summary_row

    risk: dict[str, dict[str, Any]] = {}
    if clusters_frame is not None and "score" in getattr(clusters_frame, "columns", ()):
        for r in clusters_frame.astype(object).where(clusters_frame.notna(), None).to_dict(orient="records"):
            risk[str(r["cluster"])] = r
    try:
        st = SnapshotStore(url)
        for c in snap.get("clusters") or []:
            row = st.write_scan(c, summary_row(c, risk.get(c["name"])), collector_id=collector_id)
            err.write(f"stored {c['name']} scan {row['scan_id']} in {st.url}\n")
    except StoreError as e:
        raise CliError(f"store: {e}") from None


def load_store_snapshot(url: str, err: TextIO) -> dict[str, Any]:
    """The newest usable scan of each cluster in the store, its notes on ``err`` (one line each)."""
    from dnsfleet.store import SnapshotStore, StoreError

    try:
        latest = SnapshotStore(url).latest()
    except StoreError as e:
        raise CliError(f"store: {e}") from None
    for cluster, notes in sorted(latest.notes.items()):
        for n in notes:
            err.write(f"note: {cluster}: {n}\n")
    for n in latest.fleet_notes:
        err.write(f"note: {n}\n")
    if not latest.snapshot["clusters"]:
        raise CliError(f"store {url}: no scans yet")
    return latest.snapshot


# -- history -----------------------------------------------------------------------------------------
def add_history_parser(sub: Any) -> None:
    from dnsfleet.cli.output import FORMATS

    h = sub.add_parser(
        "history",
        help="per-cluster risk over time from a snapshot store, regressions flagged",
        description="One row per cluster per scan from the store index (scan time = the store's clock).",
    )
    h.add_argument(
        "--store", metavar="URL", help="store URL (default $DNSFLEET_STORE, else the local default)"
    )
    h.add_argument("--cluster", action="append", metavar="C", help="only this cluster (repeat)")
    h.add_argument("--regressions", action="store_true", help="only the scans flagged as regressions")
    h.add_argument("-o", "--output", choices=FORMATS, default="table", help="output format (csv for a sheet)")
    h.set_defaults(func=cmd_history)


HISTORY_TABLE = (
    "cluster",
    "scan_time",
    "level",
    "score",
    "exposed_pods",
    "unknown_pods",
    "nodes",
    "regression_why",
)


def cmd_history(args: argparse.Namespace) -> int:
    from dnsfleet.cli.output import write_summary
    from dnsfleet.store import SnapshotStore, StoreError
    from dnsfleet.store.history import history_frame

    try:
        idx = SnapshotStore(store_url(args.store)).read_index()
    except StoreError as e:
        raise CliError(f"store: {e}") from None
    for cluster, notes in sorted(idx.notes.items()):
        for n in notes:
            sys.stderr.write(f"note: {cluster}: {n}\n")
    df = history_frame(idx, args.cluster)
    if args.regressions:
        df = df[df["regression"]]
    if args.output == "table":
        df = df[list(HISTORY_TABLE)].assign(scan_time=df["scan_time"].dt.strftime("%Y-%m-%d %H:%M:%S"))
    elif args.output == "json":
        df = df.assign(
            scan_time=df["scan_time"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
            collected_at=df["collected_at"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
    write_summary(df.reset_index(drop=True), args.output, sys.stdout)
    return EXIT_OK


# -- deploy collector --------------------------------------------------------------------------------
DEPLOY_DESCRIPTION = """\
Print Namespace, ServiceAccount, read-only ClusterRole/Role + bindings and a CronJob meeting the
restricted Pod Security Standard, as plain YAML for a GitOps repository (the default). Credentials for
the store come from a Secret you create (keys AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY); the output
never holds one.

--diff, --apply and --undo go to the cluster of --context through the same flow as `dnsfleet mitigate`:
the plan with per-object diffs against the live objects, permission checks, a server-side dry run of
every object, then (--apply/--undo, with --allow-writes or DNSFLEET_ALLOW_WRITES=1 and --confirm CONTEXT)
a server-side apply as field manager "dnsfleet" (never forced) with one audit record per object. It is
all or nothing: one object blocked or failing its dry run and nothing is written. Objects that already
match are left alone (a second --apply is a no-op). --undo deletes what the deploys created and applies
back what they changed, from the audit log; a namespace holding Secrets is kept.
Exit codes: 0 done (or nothing to do), 1 an object failed or nothing was applied, 2 bad input or refused.
"""


def add_deploy_parser(sub: Any) -> None:
    from dnsfleet.cli.mitigate import add_cluster_args

    d = sub.add_parser(
        "deploy", help="print the manifests of an in-cluster component (plain YAML), or apply/undo them"
    )
    dsub = d.add_subparsers(title="components", metavar="COMPONENT")
    c = dsub.add_parser(
        "collector",
        help="the CronJob that scans its cluster into a store, with read-only RBAC",
        description=DEPLOY_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_argument("--cluster-name", metavar="NAME", help="the cluster's name in the store (required)")
    c.add_argument("--store", metavar="URL", help="s3://BUCKET/PREFIX?endpoint=... (required)")
    c.add_argument("--schedule", default="*/30 * * * *", metavar="CRON", help="cron schedule (*/30 * * * *)")
    c.add_argument("--image", metavar="IMG", help="collector image (default: the Containerfile's tag)")
    c.add_argument("--namespace", default="dnsfleet", metavar="NS", help="namespace (dnsfleet)")
    c.add_argument(
        "--store-secret", default="dnsfleet-store", metavar="NAME", help="Secret with store credentials"
    )
    c.add_argument("--prometheus", metavar="URL", help="Prometheus the collector reads metrics from")
    cluster = c.add_argument_group("the cluster (instead of printing YAML), as for `dnsfleet mitigate`")
    mode = cluster.add_mutually_exclusive_group()
    mode.add_argument(
        "--diff", action="store_true", help="show the plan and diffs against the live objects; writes nothing"
    )
    mode.add_argument(
        "--apply", action="store_true", help="plan, dry run, then apply (needs --allow-writes and --confirm)"
    )
    mode.add_argument(
        "--undo",
        action="store_true",
        help="undo the collector deploys the audit log records (no --cluster-name/--store needed)",
    )
    cluster.add_argument(
        "--dry-run",
        action="store_true",
        help="with --diff: also run the server-side dry run; with --apply/--undo: stop after it",
    )
    add_cluster_args(cluster, writes=True)
    c.set_defaults(func=cmd_deploy_collector)
    d.set_defaults(func=lambda _a: (d.print_help(sys.stderr), 2)[1])


def _collector_objects(args: argparse.Namespace) -> list[dict[str, Any]]:
    from dnsfleet.deploy import DeployError, collector_manifests

    missing = [f for f, v in (("--cluster-name", args.cluster_name), ("--store", args.store)) if not v]
    if missing:
        raise CliError(f"deploy collector needs {' and '.join(missing)}")
    try:
        return collector_manifests(
            args.cluster_name,
            args.store,
            args.schedule,
            image=args.image,
            namespace=args.namespace,
            store_secret=args.store_secret,
            prometheus=args.prometheus,
        )
    except DeployError as e:
        raise CliError(str(e)) from None


def cmd_deploy_collector(args: argparse.Namespace) -> int:
    from dnsfleet.deploy import to_yaml

    if not (args.diff or args.apply or args.undo):
        given = [f for f in ("context", "kubeconfig", "confirm", "impersonate") if getattr(args, f)]
        if given or args.allow_writes or args.dry_run:
            raise CliError(
                "--context, --confirm, --allow-writes and --dry-run go with --diff, --apply or --undo"
            )
        sys.stdout.write(to_yaml(_collector_objects(args)))
        return EXIT_OK
    from dnsfleet.mitigate.errors import FAILURES

    objs = None if args.undo else _collector_objects(args)
    try:
        return _deploy_through_controller(args, objs, sys.stdout)
    except FAILURES as e:
        raise CliError(str(e)) from None


def _deploy_through_controller(
    args: argparse.Namespace, objs: list[dict[str, Any]] | None, out: TextIO
) -> int:
    """The mitigation flow (``dnsfleet.mitigate.flow.Controller``) for the collector's objects."""
    from dnsfleet.cli.mitigate import controller, print_plan, print_results, refuse_early
    from dnsfleet.mitigate.plan import all_or_nothing_problems

    ctrl = controller(args)
    writing = (args.apply or args.undo) and not args.dry_run
    if writing:
        refuse_early(ctrl, args)
    with ctrl:
        plan = ctrl.plan_undo_deploy_collector() if objs is None else ctrl.plan_deploy_collector(objs)
        print_plan(plan, out)
        if not plan.changes:
            out.write("nothing to " + ("undo" if args.undo else "change") + f" on {plan.cluster}\n")
            return EXIT_OK
        if args.diff and not args.dry_run:
            return EXIT_OK
        allowed, reasons = plan.permitted()
        if not allowed:
            for r in reasons:
                out.write(f"! {r}\n")
        checked = ctrl.dry_run(plan)
        print_results("server-side dry run", checked, out)
        problems = all_or_nothing_problems(plan, checked)
        if not writing:
            return EXIT_OK if not problems else 1
        if problems:
            out.write("# nothing was applied: every object must pass its dry run\n")
            return 1
        results = ctrl.apply(
            plan,
            checked,
            args.confirm or "",
            progress=lambda i, n, r: out.write(f"[{i}/{n}] {r.ref.label()}: {r.status}\n"),
        )
        print_results("undo" if args.undo else "apply", results, out)
        out.write(f"audit log: {ctrl.audit.path}\n")
        return EXIT_OK if all(r.ok for r in results) else 1


# -- store maintenance -------------------------------------------------------------------------------
def add_store_parser(sub: Any) -> None:
    s = sub.add_parser("store", help="maintain a snapshot store (compaction, retention)")
    ssub = s.add_subparsers(title="actions", metavar="ACTION")
    c = ssub.add_parser("compact", help="merge the index rows; with --keep-*, drop older scans")
    c.add_argument(
        "--store", metavar="URL", help="store URL (default $DNSFLEET_STORE, else the local default)"
    )
    c.add_argument("--keep-days", type=float, metavar="N", help="drop scans older than N days")
    c.add_argument("--keep-scans", type=int, metavar="N", help="keep each cluster's newest N scans")
    c.set_defaults(func=cmd_store_compact)
    s.set_defaults(func=lambda _a: (s.print_help(sys.stderr), 2)[1])


def store_url(arg: str | None) -> str | None:
    return arg or os.environ.get("DNSFLEET_STORE") or None


def cmd_store_compact(args: argparse.Namespace) -> int:
    from dnsfleet.store import Retention, SnapshotStore, StoreError

    try:
        ret = Retention(args.keep_days, args.keep_scans)
        st = SnapshotStore(store_url(args.store))
        got = st.compact(ret)
    except StoreError as e:
        raise CliError(f"store: {e}") from None
    print(
        f"{st.url}: {got['rows']} index rows kept, {got['merged_objects']} index objects merged, "
        f"{got['dropped_scans']} scans dropped"
    )
    return EXIT_OK
