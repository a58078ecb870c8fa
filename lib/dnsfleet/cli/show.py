"""``dnsfleet show`` / ``report`` / ``demo``: a saved snapshot or the bundled demo fleet, scored."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from dnsfleet.cli.output import EXIT_OK, CliError, add_output_args, fail_on, summary_frame, write_summary


def add_parsers(sub: Any) -> None:
    s = sub.add_parser("show", help="rank clusters from a snapshot or the demo fleet")
    _add_source(s)
    add_output_args(s)
    s.set_defaults(func=cmd_show)

    r = sub.add_parser("report", help="write CSV reports (clusters, nodes, workloads, recommendations)")
    _add_source(r)
    r.add_argument("--out", required=True, metavar="DIR", help="directory for the CSV files")
    r.set_defaults(func=cmd_report)

    d = sub.add_parser("demo", help="write the bundled demo fleet as a snapshot file")
    d.add_argument("--out", required=True, metavar="FILE", help="snapshot path (.json or .json.gz)")
    d.set_defaults(func=cmd_demo)


def _add_source(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--snapshot", metavar="FILE", help="a snapshot written by 'dnsfleet scan --out'")
    g.add_argument("--demo", action="store_true", help="use the bundled demo fleet")
    g.add_argument("--store", metavar="URL", help="the newest scan of each cluster in a snapshot store")
    p.add_argument("--resolver-map", metavar="FILE", help="CSV 'pattern,resolver' overriding image inference")


def load_snapshot(snapshot: str | None) -> dict[str, Any]:
    """The snapshot file, or the demo fleet when none is named."""
    if snapshot:
        from dnsfleet.snapshot import load

        return load(snapshot)
    from dnsfleet.demo import demo_snapshot

    return demo_snapshot()


def load_assessment(args: argparse.Namespace) -> Any:
    from dnsfleet.engine import analyze
    from dnsfleet.rules.resolver import load_mapping

    if getattr(args, "store", None):
        from dnsfleet.cli.collector import load_store_snapshot

        snap = load_store_snapshot(args.store, sys.stderr)
    else:
        snap = load_snapshot(None if args.demo else args.snapshot)
    mapping = load_mapping(args.resolver_map) if getattr(args, "resolver_map", None) else ()
    return analyze(snap, mapping)


def cmd_show(args: argparse.Namespace) -> int:
    df = summary_frame(load_assessment(args).clusters)
    write_summary(df, args.output, sys.stdout)
    return fail_on(df, args.fail_on, sys.stderr)


def cmd_report(args: argparse.Namespace) -> int:
    from dnsfleet.report import write_reports

    a = load_assessment(args)
    try:
        paths = write_reports(a, args.out)
    except OSError as e:
        raise CliError(f"cannot write reports to {args.out}: {e.strerror}") from None
    for p in paths:
        print(p)
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from dnsfleet.demo import demo_snapshot
    from dnsfleet.snapshot import save

    try:
        print(save(demo_snapshot(), args.out))
    except OSError as e:
        raise CliError(f"cannot write {args.out}: {e.strerror}") from None
    return EXIT_OK
