"""``dnsfleet mitigate verify`` and ``dnsfleet evidence``: did a change work, and what happened over time.

    dnsfleet mitigate verify --prometheus http://prom:9090 [--window 1h] [--settle 10m] [--csv out.csv]
    dnsfleet evidence --prometheus http://prom:9090 --context C --since 6h --until now \\
        [--snapshot in.json.gz --out out.json.gz]

``verify`` reads the audit log and the probe log and prints one verdict per applied change and source
(Prometheus, probe), with the numbers; ``--csv`` writes every row (cluster, node, node x resolver) with
the report's CSV writer. ``evidence`` range-queries one window per cluster; with ``--out`` it stores the
downsampled series in the snapshot (``docs/snapshot.md``), else it prints the per-cluster totals.
Exit codes: 0 done, 2 bad input (one line on stderr).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from dnsfleet.cli.output import EXIT_OK, CliError, render
from dnsfleet.times import parse_iso

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text: str) -> float:
    """``90``, ``90s``, ``30m``, ``1h``, ``2d`` -> seconds (> 0)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text or "")
    if not m or float(m.group(1)) <= 0:
        raise CliError(
            f"bad duration {text!r} (--window, --settle): use e.g. 600, 10m, 1h, 2d (greater than 0)"
        )
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


def when(text: str, now: float) -> float:
    """A point in time: ``now``, an age (``6h`` = 6 hours ago), epoch seconds or ISO-8601 (UTC unless
    it says otherwise)."""
    t = (text or "").strip()
    if t == "now":
        return now
    if re.fullmatch(r"\d+(?:\.\d+)?[smhd]", t):
        return now - duration(t)
    if re.fullmatch(r"\d{9,}(?:\.\d+)?", t):
        return float(t)
    dt = parse_iso(t)
    if dt is None:
        raise CliError(f"bad time {text!r}: use now, an age like 6h, epoch seconds or ISO-8601")
    return dt.timestamp()


def _prom_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--prometheus",
        default=os.environ.get("DNSFLEET_PROMETHEUS") or None,
        help="Prometheus-compatible URL (default $DNSFLEET_PROMETHEUS)",
    )
    p.add_argument("--cluster-label", default="cluster", help="label naming the cluster (default cluster)")
    p.add_argument("--prometheus-timeout", type=float, default=10.0, help="seconds per query (default 10)")


def _source(args: argparse.Namespace) -> Any:
    from dnsfleet.collect.prom import PromSource

    token = os.environ.get("DNSFLEET_PROMETHEUS_TOKEN") or None
    try:
        return PromSource(
            args.prometheus, token=token, cluster_label=args.cluster_label, timeout=args.prometheus_timeout
        )
    except ValueError as e:
        raise CliError(str(e)) from None


def add_verify_parser(steps: Any) -> argparse.ArgumentParser:
    """``mitigate verify`` (registered from ``cli.mitigate``)."""
    s = steps.add_parser("verify", help="before/after verdict of every applied change (Prometheus, probes)")
    s.add_argument("--audit-log", help="audit log path (default $DNSFLEET_AUDIT_LOG or ~/.local/state/...)")
    s.add_argument("--probe-log", help="probe log path (default $DNSFLEET_PROBE_LOG or ~/.local/state/...)")
    _prom_args(s)
    s.add_argument("--context", action="append", default=[], help="only this cluster (repeatable)")
    s.add_argument("--window", default="1h", help="length of the before and after windows (default 1h)")
    s.add_argument("--settle", default="10m", help="rollout time skipped after the change (default 10m)")
    s.add_argument("--snapshot", help="snapshot to find the nodes a workload change affects")
    s.add_argument("--csv", help="write every row (cluster, node, probe) to this CSV file")
    s.add_argument("--nodes", action="store_true", help="also print the per-node rows")
    s.add_argument("-o", "--output", choices=("table", "json", "csv"), default="table")
    s.add_argument("--now", help=argparse.SUPPRESS)  # replaying: evaluate as if it were this time
    s.set_defaults(func=run_verify)
    return s


def verify_frame(args: argparse.Namespace) -> tuple[Any, list[dict[str, Any]]]:
    import pandas as pd

    from dnsfleet.collect.prom import PromClient
    from dnsfleet.evidence import query, verify
    from dnsfleet.mitigate.audit import AuditLog
    from dnsfleet.probe.log import ProbeLog

    window, settle = duration(args.window), duration(args.settle) if args.settle not in ("0", "0s") else 0.0
    now = when(args.now, time.time()) if args.now else time.time()
    fetch = None
    if args.prometheus:
        src = _source(args)

        def fetch(cluster: str, start: float, end: float) -> dict[str, Any]:
            return query.fetch(PromClient(src), cluster, start, end, max_points=query.fine_points(start, end))

    snap = None
    if args.snapshot:
        from dnsfleet.cli.show import load_snapshot

        snap = load_snapshot(args.snapshot)
    results = verify.verify(
        AuditLog(args.audit_log).records(),
        fetch,
        now=now,
        window_s=window,
        settle_s=settle,
        snapshot=snap,
        probe_runs=ProbeLog(args.probe_log).records(),
        clusters=set(args.context) or None,
    )
    rows = verify.rows(results)
    df = pd.DataFrame(rows, columns=list(verify.CSV_COLUMNS))
    return df, rows


def run_verify(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    df, _ = verify_frame(args)
    if args.csv:
        from dnsfleet.report import to_csv_bytes

        Path(args.csv).write_bytes(to_csv_bytes(df))
    if df.empty:
        out.write("no applied change in the audit log\n")
        return EXIT_OK
    shown = df if args.nodes or args.output != "table" else df[df["scope"] == "cluster"]
    if args.output == "table":
        shown = shown[
            ["change_time_utc", "cluster", "mitigation", "source", "node", "resolver", "verdict", "summary"]
        ]
    out.write(render(shown.reset_index(drop=True), args.output))
    if args.csv:
        out.write(f"wrote {len(df)} row(s) to {args.csv}\n")
    return EXIT_OK


def add_evidence_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser("evidence", help="conntrack and CoreDNS series over a window, per node and cluster")
    _prom_args(p)
    p.add_argument(
        "--context",
        action="append",
        default=[],
        help="cluster name (repeatable; with --snapshot: default all)",
    )
    p.add_argument("--since", default="3h", help="window start: age (6h), epoch s or ISO-8601 (default 3h)")
    p.add_argument("--until", default="now", help="window end (default now)")
    p.add_argument("--snapshot", help="snapshot to add the series to (its clusters' node names are used)")
    p.add_argument("--out", help="write the snapshot with the evidence section here")
    p.add_argument("-o", "--output", choices=("table", "json", "csv"), default="table")
    p.set_defaults(func=run_evidence)
    return p


def run_evidence(args: argparse.Namespace, out: TextIO | None = None) -> int:
    import pandas as pd

    from dnsfleet.collect.prom import PromClient
    from dnsfleet.evidence import query

    out = out or sys.stdout
    if not args.prometheus:
        raise CliError("--prometheus URL is required (or set DNSFLEET_PROMETHEUS)")
    if args.out and not args.snapshot:
        raise CliError("--out needs --snapshot (the snapshot to add the evidence to)")
    now = time.time()
    start, end = when(args.since, now), when(args.until, now)
    if not end > start:
        raise CliError("--since must be before --until")
    src = _source(args)
    snap = None
    if args.snapshot:
        from dnsfleet.snapshot import load

        snap = load(args.snapshot)
    clusters = {c["name"]: c for c in (snap or {}).get("clusters") or []}
    names = list(args.context) or list(clusters)
    if not names:
        raise CliError("name at least one --context (or give --snapshot)")
    rows = []
    for name in names:
        c = clusters.get(name) or {}
        nodes = [n["name"] for n in c.get("nodes") or []] or None
        ev = query.fetch(PromClient(src), name, start, end, node_names=nodes)
        if name in clusters:
            clusters[name]["evidence"] = ev
        cl = ev["cluster"]
        rows.append(
            {
                "cluster": name,
                "from_utc": datetime.fromtimestamp(ev["start"], UTC).strftime("%Y-%m-%dT%H:%MZ"),
                "to_utc": datetime.fromtimestamp(ev["end"], UTC).strftime("%Y-%m-%dT%H:%MZ"),
                "step_s": ev["step"],
                "nodes": len(ev["nodes"]),
                "insert_failed": _total(cl.get("insert_failed")),
                "drop": _total(cl.get("drop")),
                "qps_mean": _mean(cl.get("qps")),
                "servfail_share_mean": _mean(cl.get("servfail_share")),
                "note": ev["note"],
            }
        )
    if args.out and snap is not None:
        from dnsfleet.snapshot import save

        save(snap, args.out)
    out.write(render(pd.DataFrame(rows), args.output))
    if args.out:
        out.write(f"wrote {args.out}\n")
    return EXIT_OK


def _total(values: list[float | None] | None) -> float | None:
    got = [v for v in values or [] if v is not None]
    return float(sum(got)) if got else None


def _mean(values: list[float | None] | None) -> float | None:
    got = [v for v in values or [] if v is not None]
    return sum(got) / len(got) if got else None
