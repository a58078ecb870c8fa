"""``dnsfleet show`` / ``report`` / ``demo``: a saved snapshot or the bundled demo fleet, scored.

With ``--store URL``, ``show`` reads the store's index only (each cluster's newest row, as its collector
scored it: no snapshot object is read, nothing is scored), ``report`` reads the newest snapshot object
of every cluster and scores them (its CSVs need every pod and node)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any, TextIO

from dnsfleet.cli.output import EXIT_OK, CliError, add_output_args, fail_on, summary_frame, write_summary

if TYPE_CHECKING:
    import pandas as pd


def add_parsers(sub: Any) -> None:
    s = sub.add_parser(
        "show",
        help="rank clusters from a snapshot, a store's index or the demo fleet",
        description="Rank clusters. With --store, from each cluster's newest index row (its collector's "
        "scores; no snapshot object is read): one small read per 1,000 clusters.",
    )
    _add_source(s, store_help="each cluster's newest row of a snapshot store's index (no object read)")
    add_output_args(s)
    s.set_defaults(func=cmd_show)

    r = sub.add_parser(
        "report",
        help="write CSV reports (clusters, nodes, workloads, recommendations)",
        description="Write CSV reports. With --store, the newest snapshot object of every cluster is read "
        "and scored (the reports need every pod and node).",
    )
    _add_source(r, store_help="the newest snapshot object of each cluster in a store, scored here")
    r.add_argument("--out", required=True, metavar="DIR", help="directory for the CSV files")
    r.set_defaults(func=cmd_report)

    d = sub.add_parser("demo", help="write the bundled demo fleet as a snapshot file")
    d.add_argument("--out", required=True, metavar="FILE", help="snapshot path (.json or .json.gz)")
    d.set_defaults(func=cmd_demo)


def _add_source(p: argparse.ArgumentParser, *, store_help: str) -> None:
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--snapshot", metavar="FILE", help="a snapshot written by 'dnsfleet scan --out'")
    g.add_argument("--demo", action="store_true", help="use the bundled demo fleet")
    g.add_argument("--store", metavar="URL", help=store_help)
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


STORE_SUMMARY = (
    "cluster",
    "status",
    "level",
    "score",
    "nodes",
    "pods",
    "exposed_pods",
    "unknown_pods",
    "scan_time",
    "reason",
)


def store_summary(url: str, fmt: str, err: TextIO) -> pd.DataFrame:
    """The summary of a store from its index alone (``dnsfleet.store.overview``): the newest row of
    each cluster, ranked; each cluster's caveats on ``err`` as ``note:`` lines (and as a ``note``
    column in json and csv). ``scan_time`` is the store's clock."""
    from dnsfleet.store import SnapshotStore, StoreError
    from dnsfleet.store.overview import overview_frame
    from dnsfleet.store.snapshots import iso

    try:
        heads = SnapshotStore(url).read_heads()
    except StoreError as e:
        raise CliError(f"store: {e}") from None
    if not heads.rows:
        raise CliError(f"store {url}: no scans yet")
    for n in heads.fleet_notes:
        err.write(f"note: {n}\n")
    df = overview_frame(heads)
    for c, note in zip(df["cluster"], df["note"], strict=True):
        if isinstance(note, str) and note:
            err.write(f"note: {c}: {note}\n")
    df = df.assign(scan_time=[iso(t) if t is not None and t == t else None for t in df["scan_time"]])
    return df[[*STORE_SUMMARY, "note"] if fmt in ("json", "csv") else list(STORE_SUMMARY)]


def cmd_show(args: argparse.Namespace) -> int:
    if args.store:
        if args.resolver_map:
            raise CliError(
                "--resolver-map has no effect on 'show --store': the index holds the collector's scores "
                "(use 'report --store', which scores the newest objects here)"
            )
        df = store_summary(args.store, args.output, sys.stderr)
    else:
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
