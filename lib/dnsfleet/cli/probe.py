"""``dnsfleet probe``: run the DNS probe on a cluster's nodes and print what each node's resolvers saw.

    dnsfleet probe --context C [--nodes SELECTOR] [--resolver glibc,musl] [--image-glibc IMG]
        [--image-musl IMG] [--name api.example.com] [--lookups 20] [--dns-option single-request-reopen]
        [--phase before|after] [--snapshot in.json.gz --out out.json.gz]
    dnsfleet probe --print-rbac

Each run is appended to the probe log (``dnsfleet.probe.log``), which ``dnsfleet mitigate verify`` reads
for the client-side before/after verdict; with ``--out`` the results are also stored in the snapshot as
measured evidence (``probe`` per cluster), which the risk model ranks above inference. Exit codes: 0 the
probe ran, 1 no probe pod produced a result, 2 bad input or the probe may not run (one line on stderr).
Interrupted (Ctrl-C, SIGTERM), it deletes what it created before exiting.
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any, TextIO

from dnsfleet.cli.output import EXIT_OK, EXIT_USAGE, CliError, render


def add_probe_parser(sub: Any) -> argparse.ArgumentParser:
    from dnsfleet.probe.kube import DEFAULT_IMAGES, NAMES

    p = sub.add_parser("probe", help="measure DNS lookups from short-lived pods on chosen nodes")
    p.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    p.add_argument("--context", help="kubeconfig context = cluster name")
    p.add_argument(
        "--nodes", metavar="SELECTOR", help="label selector of the nodes to probe (default: all ready)"
    )
    p.add_argument("--max-nodes", type=int, default=10, help="probe at most this many nodes (default 10)")
    p.add_argument("--resolver", default="glibc,musl", help="glibc, musl or both (default glibc,musl)")
    p.add_argument("--image-glibc", default=DEFAULT_IMAGES["glibc"], help="glibc image with python3")
    p.add_argument("--image-musl", default=DEFAULT_IMAGES["musl"], help="musl image with python3")
    p.add_argument("--name", help=f"a name to look up besides {', '.join(NAMES)}")
    p.add_argument("--no-default-names", action="store_true", help="look up only --name")
    p.add_argument("--lookups", type=int, default=20, help="lookups per name and pod (default 20)")
    p.add_argument("--concurrency", type=int, default=10, help="lookups in flight per pod (default 10)")
    p.add_argument("--deadline", type=int, default=120, help="pod activeDeadlineSeconds (default 120)")
    p.add_argument(
        "--dns-option",
        action="append",
        default=[],
        metavar="NAME[:VALUE]",
        help="dnsConfig option for the probe pods (repeatable), e.g. to probe single-request-reopen",
    )
    p.add_argument("--phase", choices=("before", "after"), help="mark the run as before/after a change")
    p.add_argument("--probe-log", help="probe log path (default $DNSFLEET_PROBE_LOG or ~/.local/state/...)")
    p.add_argument("--snapshot", help="snapshot to add the results to (with --out)")
    p.add_argument("--out", help="write the snapshot with the probe results here")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per API call (default 10)")
    p.add_argument("--print-rbac", action="store_true", help="print the ClusterRole the probe needs and exit")
    p.add_argument("-o", "--output", choices=("table", "json", "csv"), default="table")
    p.set_defaults(func=run_probe)
    return p


def options(args: argparse.Namespace) -> Any:
    from dnsfleet.probe.kube import NAMES, ProbeOptions

    resolvers = tuple(r.strip() for r in args.resolver.split(",") if r.strip())
    dns_opts = []
    for o in args.dns_option:
        name, _, value = o.partition(":")
        if not name.strip():
            raise CliError(f"bad --dns-option {o!r}: NAME or NAME:VALUE")
        dns_opts.append((name.strip(), value.strip() or None))
    if args.no_default_names and not args.name:
        raise CliError("--no-default-names needs --name")
    try:
        return ProbeOptions(
            resolvers=resolvers,
            images={"glibc": args.image_glibc, "musl": args.image_musl},
            node_selector=args.nodes,
            max_nodes=args.max_nodes,
            names=() if args.no_default_names else NAMES,
            extra_name=args.name,
            lookups=args.lookups,
            concurrency=args.concurrency,
            deadline_s=args.deadline,
            dns_options=tuple(dns_opts),
        )
    except ValueError as e:
        raise CliError(str(e)) from None


def probe_cluster(
    args: argparse.Namespace, phase: str | None = None, batch: str | None = None, err: TextIO | None = None
) -> dict[str, Any]:
    """Run the probe on ``args.context`` and append the run to the probe log; returns the run."""
    from dnsfleet.kube import Kube, KubeError
    from dnsfleet.probe.kube import ProbeRefused, ProbeRun
    from dnsfleet.probe.log import ProbeLog

    err = err or sys.stderr
    if not args.context:
        raise CliError("--context is required (the kubeconfig context of the cluster)")
    opts = options(args)
    previous = signal.getsignal(signal.SIGTERM)

    def terminate(_sig: int, _frame: Any) -> None:
        raise KeyboardInterrupt  # the run's finally deletes what it created

    signal.signal(signal.SIGTERM, terminate)
    try:
        kube = Kube.from_kubeconfig(args.kubeconfig, args.context, timeout=args.timeout)
        try:
            run = ProbeRun(kube, opts, progress=lambda m: err.write(f"{args.context}: {m}\n")).run()
        finally:
            kube.close()
    except (ProbeRefused, KubeError) as e:
        raise CliError(str(e)) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    run["phase"], run["batch"] = phase or getattr(args, "phase", None), batch
    ProbeLog(getattr(args, "probe_log", None)).append(run)
    return run


def result_rows(run: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for r in run["results"]:
        rep = r.get("report") or {}
        rows.append(
            {
                "node": r["node"],
                "resolver": r["resolver"],
                "status": r["status"],
                "lookups": rep.get("lookups"),
                "p50_s": rep.get("p50_s"),
                "p90_s": rep.get("p90_s"),
                "p99_s": rep.get("p99_s"),
                "max_s": rep.get("max_s"),
                "ge_1s": rep.get("ge_1s"),
                "ge_2_5s": rep.get("ge_2_5s"),
                "ge_5s": rep.get("ge_5s"),
                "errors": rep.get("errors"),
            }
        )
    return rows


def run_probe(args: argparse.Namespace, out: TextIO | None = None) -> int:
    import pandas as pd

    out = out or sys.stdout
    if args.print_rbac:
        from dnsfleet.probe.kube import rbac_yaml

        out.write(rbac_yaml())
        return EXIT_OK
    if args.out and not args.snapshot:
        raise CliError("--out needs --snapshot (the snapshot to add the probe results to)")
    run = probe_cluster(args)
    rows = result_rows(run)
    out.write(render(pd.DataFrame(rows), args.output))
    for n in run.get("notes") or []:
        sys.stderr.write(f"note: {n}\n")
    if args.out:
        from dnsfleet.probe.measured import attach
        from dnsfleet.snapshot import load, save

        snap = load(args.snapshot)
        attach(snap, run)
        save(snap, args.out)
        out.write(f"wrote {args.out}\n")
    return EXIT_OK if any(r["status"] == "ok" for r in run["results"]) else EXIT_USAGE - 1


# -- probe before / probe after a mitigation (``dnsfleet mitigate apply --probe``) ----------------------


def add_around_args(s: argparse.ArgumentParser) -> None:
    """The ``--probe`` flags of ``mitigate apply``."""
    from dnsfleet.probe.kube import DEFAULT_IMAGES

    s.add_argument("--probe", action="store_true", help="run the DNS probe before the apply and after it")
    s.add_argument("--probe-wait", type=float, default=60.0, help="seconds between apply and probe after")
    s.add_argument("--probe-resolver", default="glibc,musl", help="resolvers to probe (default glibc,musl)")
    s.add_argument("--probe-lookups", type=int, default=20, help="lookups per name and pod (default 20)")
    s.add_argument("--probe-nodes", metavar="SELECTOR", help="label selector of the nodes to probe")
    s.add_argument(
        "--probe-name", help="look up only this name (default: the kubernetes and kube-dns Services)"
    )
    s.add_argument("--probe-log", help="probe log path (default $DNSFLEET_PROBE_LOG or ~/.local/state/...)")
    s.add_argument("--image-glibc", default=DEFAULT_IMAGES["glibc"], help="glibc probe image")
    s.add_argument("--image-musl", default=DEFAULT_IMAGES["musl"], help="musl probe image")


def _around_args(args: argparse.Namespace, dns_options: list[str]) -> argparse.Namespace:
    return argparse.Namespace(
        kubeconfig=args.kubeconfig,
        context=args.context,
        nodes=args.probe_nodes,
        max_nodes=10,
        resolver=args.probe_resolver,
        image_glibc=args.image_glibc,
        image_musl=args.image_musl,
        name=args.probe_name,
        no_default_names=bool(args.probe_name),
        lookups=args.probe_lookups,
        concurrency=10,
        deadline=120,
        dns_option=dns_options,
        probe_log=args.probe_log,
        timeout=args.timeout,
    )


def _summary(run: dict[str, Any]) -> str:
    ok = [r for r in run["results"] if r["status"] == "ok"]
    lookups = sum(r["report"]["lookups"] for r in ok)
    slow = sum(r["report"]["ge_2_5s"] for r in ok)
    return f"{slow}/{lookups} lookups >= 2.5 s on {len({r['node'] for r in ok})} node(s)"


def probe_before(args: argparse.Namespace, batch: str, out: TextIO) -> None:
    """Probe with the pods' default DNS settings, before the change."""
    run = probe_cluster(_around_args(args, []), phase="before", batch=batch)
    out.write(f"probe before: {_summary(run)}\n")


def probe_after(args: argparse.Namespace, batch: str, out: TextIO, sleep: Any = None) -> None:
    """Probe after the change: resolver options are probed with the options just applied (probe pods
    are new pods, the workload's own are not touched); NodeLocal DNSCache with the defaults."""
    import time

    (sleep or time.sleep)(max(0.0, args.probe_wait))
    opts = []
    if args.mitigation == "resolver-options":
        for o in args.option:
            name, _, value = o.partition("=")
            opts.append(f"{name.strip()}:{value.strip()}" if value.strip() else name.strip())
    run = probe_cluster(_around_args(args, opts), phase="after", batch=batch)
    out.write(f"probe after: {_summary(run)} (dnsfleet mitigate verify compares them)\n")
